"""oncology-train as a command: bad data exits non-zero naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from oncology_model.dataset import bundled_data_path
from tests.unit.test_training import run_training


def test_bad_data_file_exits_non_zero_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from oncology_model.training import main

    data = tmp_path / "broken.data"
    data.write_text("1,2,3\n")
    result = run_training("--data", str(data), "--out", str(tmp_path / "a"), "--no-report")
    assert result.returncode == 1
    assert "broken.data, line 1: expected 11 columns" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "a").exists()
    # The same CLI in this process (no second start-up): the bad one of several files is named,
    # whichever position it has, and an empty folder is refused.
    good = tmp_path / "good.data"
    good.write_text(bundled_data_path().read_text())
    assert main(["--data", str(good), str(data), "--out", str(tmp_path / "a")]) == 1
    assert "broken.data, line 1: expected 11 columns" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "a")]) == 1
    assert "empty holds no files" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
