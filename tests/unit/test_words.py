"""Numbers in messages agree with their words."""

from __future__ import annotations

from oncology_model.words import counted, duration


def test_counts_agree_with_their_nouns() -> None:
    assert counted(1, "bad record") == "1 bad record"
    assert counted(0, "bad record") == "0 bad records"
    assert counted(12_000, "record") == "12,000 records"
    assert counted(2, "caller", "callers") == "2 callers"


def test_durations_never_read_zero() -> None:
    assert duration(0.00001) == "1 ms"
    assert duration(0.0346) == "35 ms"
    assert duration(2.44) == "2.4 s"
