"""Numbers in messages, in words that agree with them: `1 bad record`, `2 bad records`,
`in 35 ms`, `in 2.4 s`."""

from __future__ import annotations


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`count` and `noun`, plural unless the count is 1, with thousands separators."""
    word = noun if count == 1 else (plural or noun + "s")
    return f"{count:,} {word}"


def duration(seconds: float) -> str:
    """A duration as a person reads it: milliseconds below a second, else seconds."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))} ms"
    return f"{seconds:.1f} s"
