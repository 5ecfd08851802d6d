"""Audit the locked dependencies (all Pipfile.lock categories) for known vulnerabilities.

`make security` exports the lock with hashes (`pipenv requirements`) and runs this: pip-audit
checks exactly those pins (`--require-hashes --disable-pip`: no resolution, no installation),
and any vulnerability fails the run unless the exceptions file lists its id (or an alias) with a
reason. When the vulnerability service answers for none of the packages (no network to it), the
run says so and passes, or fails with --strict: nothing was audited.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

_EXCEPTION = re.compile(r"(?P<id>[A-Za-z0-9][A-Za-z0-9._:-]*)\s+(?P<reason>\S.*)")


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


def judge(report: dict[str, Any], exceptions: dict[str, str], *, strict: bool) -> int:
    """Print the findings; 0 when every vulnerability has an exception, else 1."""
    dependencies = report["dependencies"]
    skipped = [d for d in dependencies if "skip_reason" in d]
    audited = len(dependencies) - len(skipped)
    if dependencies and not audited:
        print(
            f"pip-audit: NOT AUDITED: its vulnerability service answered for none of the "
            f"{len(dependencies)} locked packages, so nothing was checked (e.g. "
            f"{skipped[0]['skip_reason']}); AUDIT_STRICT=1 makes this fail"
        )
        return 1 if strict else 0
    failures = [f"{d['name']}: {d['skip_reason']}" for d in skipped]
    accepted, seen = [], set()
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
        print(f"pip-audit: exception {stale} matches nothing in the lock any more: remove it")
    print(f"pip-audit: {audited} locked packages audited, {len(failures)} problems")
    for line in failures:
        print(f"pip-audit: FAILED: {line}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pip-audit", default="pip-audit", help="the pip-audit executable")
    parser.add_argument("--requirements", type=Path, required=True, help="the exported lock")
    parser.add_argument("--exceptions", type=Path, required=True)
    parser.add_argument("--strict", action="store_true", help="fail when nothing was audited")
    args = parser.parse_args()
    try:
        exceptions = read_exceptions(args.exceptions)
    except ExceptionsError as error:
        print(error, file=sys.stderr)
        return 1
    return judge(audit(args.pip_audit, args.requirements), exceptions, strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
