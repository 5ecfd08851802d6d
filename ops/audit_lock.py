"""Audit the locked dependencies (all Pipfile.lock categories) for known vulnerabilities.

`make security` exports the lock with hashes (`pipenv requirements`) and runs this: pip-audit
checks exactly those pins (`--require-hashes --disable-pip`: no resolution, no installation),
and any vulnerability fails the run unless the exceptions file lists its id (or an alias) with a
reason.

Where pip-audit's service does not answer for a package (its per-version PyPI endpoint or OSV
unreachable), PyPI's project JSON stands in: it lists the known vulnerabilities (the same OSV
data) of the project's latest release, so it audits every package locked at its latest release.
A package locked behind its latest release, or that neither source answers for, is NOT AUDITED:
the run names it and passes, or fails with --strict.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

_EXCEPTION = re.compile(r"(?P<id>[A-Za-z0-9][A-Za-z0-9._:-]*)\s+(?P<reason>\S.*)")
_PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;]+)")
PYPI_JSON = "https://pypi.org/pypi"


class ExceptionsError(ValueError):
    """The exceptions file breaks its format: the message names the line."""


def read_exceptions(path: Path) -> dict[str, str]:
    """{vulnerability id: reason} from `ID  reason` lines; `#` comments and blank lines skipped."""
    exceptions: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _EXCEPTION.fullmatch(line)
        if match is None:
            raise ExceptionsError(
                f"{path} line {number}: expected `ID  reason` (a reason is required)"
            )
        exceptions[match["id"]] = match["reason"]
    return exceptions


def audit(pip_audit: str, requirements: Path) -> dict[str, Any]:
    """pip-audit's JSON report of `requirements`."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        result = subprocess.run(
            [
                pip_audit, "-r", str(requirements), "--require-hashes", "--disable-pip",
                "--progress-spinner", "off", "--format", "json", "--output", str(report),
            ],
            capture_output=True, text=True, check=False, timeout=900,
        )  # fmt: skip
        if not report.exists():
            raise SystemExit(f"pip-audit failed (exit {result.returncode}):\n{result.stderr}")
        return dict(json.loads(report.read_text()))


def locked_versions(requirements: Path) -> dict[str, str]:
    """{normalised name: version} of the `name==version` pins of an exported lock."""
    pins = (_PIN.match(line) for line in requirements.read_text().splitlines())
    return {_normalise(pin["name"]): pin["version"] for pin in pins if pin}


def latest_release_audit(name: str, version: str, *, index: str = PYPI_JSON) -> dict[str, Any]:
    """A dependency entry in pip-audit's format from PyPI's project JSON at `index`.

    Its `vulnerabilities` are those of the latest release only: an older pin stays skipped.
    """
    url = f"{index}/{name}/json"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # nosec B310: https or loopback
            project = json.load(response)
        latest = project["info"]["version"]
        found = project.get("vulnerabilities") or []
    except (OSError, ValueError, KeyError, TypeError) as error:
        return {"name": name, "version": version, "skip_reason": f"{url} did not answer ({error})"}
    if latest != version:
        reason = f"PyPI's vulnerability data covers only the latest release, {latest}"
        return {"name": name, "version": version, "skip_reason": reason}
    vulns = [
        {"id": v["id"], "aliases": v.get("aliases") or [], "fix_versions": v.get("fixed_in") or []}
        for v in found
    ]
    return {"name": name, "version": version, "vulns": vulns}


def fill_in(report: dict[str, Any], pins: dict[str, str], *, index: str) -> dict[str, Any]:
    """`report` with each package pip-audit skipped audited by `latest_release_audit` instead."""

    def entry(dependency: dict[str, Any]) -> dict[str, Any]:
        version = pins.get(_normalise(dependency["name"]))
        if "skip_reason" not in dependency or version is None:
            return dependency
        return latest_release_audit(dependency["name"], version, index=index)

    with ThreadPoolExecutor(max_workers=8) as pool:  # one small request per package
        dependencies = list(pool.map(entry, report["dependencies"]))
    return {**report, "dependencies": dependencies}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def judge(report: dict[str, Any], exceptions: dict[str, str], *, strict: bool) -> int:
    """Print the findings: 1 for a vulnerability without an exception, or, when `strict`, for a
    package not audited; else 0."""
    dependencies = report["dependencies"]
    skipped = [d for d in dependencies if "skip_reason" in d]
    failures, accepted, seen = [], [], set()
    for dependency in dependencies:
        for vulnerability in dependency.get("vulns", []):
            ids = [vulnerability["id"], *vulnerability.get("aliases", [])]
            known = next((i for i in ids if i in exceptions), None)
            where = f"{dependency['name']} {dependency['version']}: {vulnerability['id']}"
            if known is None:
                fixed = ", ".join(vulnerability.get("fix_versions", [])) or "none yet"
                failures.append(f"{where} (fixed in: {fixed})")
            else:
                seen.add(known)
                accepted.append(f"{where}: accepted: {exceptions[known]}")
    for line in accepted:
        print(f"pip-audit: {line}")
    for stale in sorted(set(exceptions) - seen):
        print(f"pip-audit: exception {stale} matches nothing audited: remove it once unneeded")
    print(
        f"pip-audit: {len(dependencies) - len(skipped)} of {len(dependencies)} locked packages "
        f"audited, {len(failures)} known vulnerabilities without an exception"
    )
    for dependency in skipped:
        name, version = dependency["name"], dependency.get("version", "")
        print(f"pip-audit: NOT AUDITED: {name} {version}: {dependency['skip_reason']}")
    if skipped:
        print(f"pip-audit: {len(skipped)} not audited; AUDIT_STRICT=1 makes that fail the run")
    for line in failures:
        print(f"pip-audit: FAILED: {line}")
    return 1 if failures or (strict and skipped) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pip-audit", default="pip-audit", help="the pip-audit executable")
    parser.add_argument("--requirements", type=Path, required=True, help="the exported lock")
    parser.add_argument("--exceptions", type=Path, required=True)
    parser.add_argument(
        "--pypi-json", default=PYPI_JSON, help="PyPI's JSON API, for what pip-audit skips"
    )
    parser.add_argument("--strict", action="store_true", help="fail when a package is not audited")
    args = parser.parse_args()
    try:
        exceptions = read_exceptions(args.exceptions)
    except ExceptionsError as error:
        print(error, file=sys.stderr)
        return 1
    report = audit(args.pip_audit, args.requirements)
    report = fill_in(report, locked_versions(args.requirements), index=args.pypi_json)
    return judge(report, exceptions, strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
