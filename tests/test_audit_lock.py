"""`make security`'s lock audit: which pip-audit findings fail the build (ops/audit_lock.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ops.audit_lock import ExceptionsError, judge, read_exceptions


def report(*dependencies: dict[str, Any]) -> dict[str, Any]:
    """A report in pip-audit's JSON format (`--format json`)."""
    return {"dependencies": list(dependencies), "fixes": []}


CLEAN = {"name": "flask", "version": "3.1.3", "vulns": []}
VULNERABLE = {
    "name": "jinja2",
    "version": "3.1.2",
    "vulns": [
        {
            "id": "GHSA-h5c8-rqwp-cp95",
            "fix_versions": ["3.1.3"],
            "aliases": ["CVE-2024-22195"],
            "description": "...",
        }
    ],
}
UNREACHABLE = "Dependency not found on PyPI and could not be audited: flask (3.1.3)"


def test_a_vulnerability_without_an_exception_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert judge(report(CLEAN, VULNERABLE), {}, strict=False) == 1
    assert "FAILED: jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 (fixed in: 3.1.3)" in capsys.readouterr().out


def test_an_exception_by_id_or_alias_accepts_it(capsys: pytest.CaptureFixture[str]) -> None:
    for known in ("GHSA-h5c8-rqwp-cp95", "CVE-2024-22195"):
        assert judge(report(CLEAN, VULNERABLE), {known: "not reachable here"}, strict=False) == 0
        assert "accepted: not reachable here" in capsys.readouterr().out


def test_a_stale_exception_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert judge(report(CLEAN), {"PYSEC-2000-1": "old"}, strict=False) == 0
    assert "PYSEC-2000-1 matches nothing in the lock any more" in capsys.readouterr().out


def test_nothing_audited_is_said_and_fails_when_strict(capsys: pytest.CaptureFixture[str]) -> None:
    skipped = {"name": "flask", "skip_reason": UNREACHABLE}
    assert judge(report(skipped, skipped), {}, strict=False) == 0
    assert "NOT AUDITED" in capsys.readouterr().out
    assert judge(report(skipped, skipped), {}, strict=True) == 1


def test_a_package_the_service_does_not_know_fails() -> None:
    assert judge(report(CLEAN, {"name": "x", "skip_reason": UNREACHABLE}), {}, strict=False) == 1


def test_every_exception_needs_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "exceptions.txt"
    path.write_text("# header\nGHSA-h5c8-rqwp-cp95   dev-only tool, never in the image\n")
    assert read_exceptions(path) == {"GHSA-h5c8-rqwp-cp95": "dev-only tool, never in the image"}
    path.write_text("GHSA-h5c8-rqwp-cp95\n")
    with pytest.raises(ExceptionsError, match="line 1: expected `ID  reason`"):
        read_exceptions(path)


def test_the_projects_exceptions_file_is_valid() -> None:
    read_exceptions(Path(__file__).resolve().parents[1] / "ops" / "vulnerability-exceptions.txt")
