"""`make security`'s lock audit: which pip-audit findings fail the build (ops/audit_lock.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from harness.threaded import threaded_server
from ops.audit_lock import ExceptionsError, fill_in, judge, locked_versions, read_exceptions


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
    assert "exception PYSEC-2000-1 matches nothing audited" in capsys.readouterr().out


def test_nothing_audited_is_said_and_fails_when_strict(capsys: pytest.CaptureFixture[str]) -> None:
    skipped = {"name": "flask", "skip_reason": UNREACHABLE}
    assert judge(report(skipped, skipped), {}, strict=False) == 0
    assert "NOT AUDITED" in capsys.readouterr().out
    assert judge(report(skipped, skipped), {}, strict=True) == 1


def test_a_package_no_source_audits_is_named_and_fails_when_strict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    unaudited = {"name": "numpy", "version": "2.4.6", "skip_reason": "behind its latest release"}
    assert judge(report(CLEAN, unaudited), {}, strict=False) == 0
    out = capsys.readouterr().out
    assert "1 of 2 locked packages audited" in out
    assert "NOT AUDITED: numpy 2.4.6: behind its latest release" in out
    assert judge(report(CLEAN, unaudited), {}, strict=True) == 1


# --- PyPI's project JSON, where pip-audit's service does not answer ------------------------------

PROJECTS: dict[str, dict[str, Any]] = {
    # Locked at its latest release, with a known vulnerability (PyPI lists the latest's only).
    "ecdsa": {
        "info": {"version": "0.19.2"},
        "vulnerabilities": [
            {"id": "PYSEC-2026-1325", "aliases": ["GHSA-wj6h-64fc-37mp"], "fixed_in": []}
        ],
    },
    "flask": {"info": {"version": "3.1.3"}, "vulnerabilities": []},
    "numpy": {"info": {"version": "2.5.5"}, "vulnerabilities": []},  # the lock holds 2.4.6
}


@pytest.fixture(scope="module")
def pypi_json() -> Iterator[str]:
    """A JSON API on loopback answering /NAME/json from PROJECTS, 404 for anything else."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.strip("/").removesuffix("/json")
            body = json.dumps(PROJECTS[name]).encode() if name in PROJECTS else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with threaded_server(Handler) as url:
        yield url


def test_pypi_json_audits_the_packages_pip_audit_skipped(
    pypi_json: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ecdsa at its latest release has a vulnerability: it fails the run, naming it; numpy,
    locked behind its latest release, and a package PyPI does not know are not audited."""
    lock = tmp_path / "locked-requirements.txt"
    lock.write_text(
        "-i https://pypi.org/simple\n"
        "ecdsa==0.19.2 --hash=sha256:00\n"
        "Flask==3.1.3; python_version >= '3.9' --hash=sha256:00\n"
        "numpy==2.4.6 --hash=sha256:00\n"
        "private-tool==1.0 --hash=sha256:00\n"
    )
    skipped = [
        {"name": name, "skip_reason": UNREACHABLE}
        for name in ("ecdsa", "flask", "numpy", "private-tool")
    ]
    filled = fill_in(report(*skipped), locked_versions(lock), index=pypi_json)
    by_name = {d["name"]: d for d in filled["dependencies"]}
    assert by_name["flask"] == {"name": "flask", "version": "3.1.3", "vulns": []}
    assert by_name["ecdsa"]["vulns"] == [
        {"id": "PYSEC-2026-1325", "aliases": ["GHSA-wj6h-64fc-37mp"], "fix_versions": []}
    ]
    assert "covers only the latest release, 2.5.5" in by_name["numpy"]["skip_reason"]
    assert "/private-tool/json did not answer" in by_name["private-tool"]["skip_reason"]

    assert judge(filled, {}, strict=False) == 1
    out = capsys.readouterr().out
    assert "FAILED: ecdsa 0.19.2: PYSEC-2026-1325 (fixed in: none yet)" in out
    assert "2 of 4 locked packages audited" in out
    assert "NOT AUDITED: numpy 2.4.6" in out and "NOT AUDITED: private-tool 1.0" in out
    accepted = {"GHSA-wj6h-64fc-37mp": "signing is not used here; revisit on the next lock"}
    assert judge(filled, accepted, strict=False) == 0
    assert judge(filled, accepted, strict=True) == 1  # two packages still not audited


def test_every_exception_needs_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "exceptions.txt"
    path.write_text("# header\nGHSA-h5c8-rqwp-cp95   dev-only tool, never in the image\n")
    assert read_exceptions(path) == {"GHSA-h5c8-rqwp-cp95": "dev-only tool, never in the image"}
    path.write_text("GHSA-h5c8-rqwp-cp95\n")
    with pytest.raises(ExceptionsError, match="line 1: expected `ID  reason`"):
        read_exceptions(path)


def test_the_projects_exceptions_file_is_valid() -> None:
    read_exceptions(Path(__file__).resolve().parents[2] / "ops" / "vulnerability-exceptions.txt")
