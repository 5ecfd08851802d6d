"""`oncology-quality`: is it right? The record's realized and estimated quality, and the canary's
verdict on outcomes (`webservice.records.quality`), read from the record's database
(ONCOLOGY_DATABASE_URL, as the service and `oncology-db` read it).

    oncology-quality [--since D] [--until D] [--model-version V] [--track T] [--json]
    oncology-quality compare --candidate canary --baseline stable [--versions] [--since D] [--json]

`compare` exits 0 for PROMOTE, 3 for WAIT and 4 for ROLL BACK (1: it could not judge), so that
`make canary-verdict` can gate `make promote`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from webservice.records.cli import with_database
from webservice.records.quality import (
    PROMOTE,
    ROLL_BACK,
    WAIT,
    Group,
    Plan,
    Window,
    groups,
    quality,
    verdict,
)
from webservice.records.store import RecordStore

EXIT_CODES = {PROMOTE: 0, WAIT: 3, ROLL_BACK: 4}


def _day(text: str) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), tzinfo=dt.UTC)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oncology-quality", description=__doc__.split("\n")[0])
    parser.add_argument("--since", type=_day, help="answered on or after, YYYY-MM-DD (UTC)")
    parser.add_argument("--until", type=_day, help="answered before, YYYY-MM-DD (UTC)")
    parser.add_argument("--json", action="store_true", help="the report as JSON")
    commands = parser.add_subparsers(dest="command")
    compare = commands.add_parser("compare", help="the candidate's verdict against the baseline")
    compare.add_argument("--candidate", default="canary", help="a track (default canary)")
    compare.add_argument("--baseline", default="stable", help="a track (default stable)")
    compare.add_argument(
        "--versions", action="store_true", help="candidate and baseline are model versions"
    )
    # Also after `compare` (SUPPRESS: given before it, the value stays)
    compare.add_argument("--since", type=_day, default=argparse.SUPPRESS)
    compare.add_argument("--until", type=_day, default=argparse.SUPPRESS)
    compare.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    defaults = Plan()
    for name, value in defaults.__dict__.items():
        compare.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--model-version", help="only this model version")
    parser.add_argument("--track", help="only this track (stable, canary)")
    args = parser.parse_args(argv)

    def run(engine: sa.Engine, config: dict[str, Any]) -> int:
        store = RecordStore(engine)
        if args.command == "compare":
            return _compare(store, args)
        window = Window(args.since, args.until, args.model_version, args.track)
        report = quality(store, window, validation=served_validation(config["ARTIFACTS_DIR"]))
        print(json.dumps(report, indent=2) if args.json else table(report))
        return 0

    return with_database("oncology-quality", run)


def _compare(store: RecordStore, args: argparse.Namespace) -> int:
    by = "version" if args.versions else "track"
    field = "model_version" if args.versions else "track"
    window = Window(args.since, args.until)
    found = {getattr(group, field): group for group in groups(store, window, by=by)}
    sides = []
    for role, name in (("candidate", args.candidate), ("baseline", args.baseline)):
        if name not in found:
            print(
                f"oncology-quality: no answers of the {role} {name} in the window", file=sys.stderr
            )
        sides.append(found.get(name) or (Group(name, "*") if args.versions else Group("*", name)))
    plan = Plan(
        args.sensitivity_margin, args.specificity_margin, args.malignant_cases, args.benign_cases
    )
    result = verdict(sides[0], sides[1], plan)
    result["candidate"]["name"], result["baseline"]["name"] = args.candidate, args.baseline
    print(json.dumps(result, indent=2) if args.json else verdict_table(result))
    return EXIT_CODES[result["verdict"]]


def served_validation(artifacts_dir: str | None) -> dict[str, Any]:
    """The cross-validation figures of the model this installation serves (its metadata.json),
    by version: what the realized figures are read against."""
    from pathlib import Path

    from oncology_model import storage
    from oncology_model.integrity import METADATA_FILE, bundled_artifacts_dir

    try:
        if artifacts_dir and storage.is_url(artifacts_dir):
            url = storage.ObjectUrl.parse(artifacts_dir).child(METADATA_FILE)
            metadata = json.loads(storage.read_bytes(url, limit=16 * 1024 * 1024))
        else:
            folder = Path(artifacts_dir) if artifacts_dir else bundled_artifacts_dir()
            metadata = json.loads((folder / METADATA_FILE).read_text())
        return {metadata["model_version"]: metadata["cross_validation"]["chosen"]}
    except (OSError, ValueError, KeyError):
        return {}


def _rate(figure: dict[str, Any]) -> str:
    if figure["value"] is None:
        return f"{'-':>6} {'':>15} {0:>5}"
    interval = f"[{figure['low']:.3f}, {figure['high']:.3f}]"
    return f"{figure['value']:>6.3f} {interval:>15} {figure['cases']:>5}"


def table(report: dict[str, Any]) -> str:
    """The quality report for a terminal: one block per model version and track."""
    lines = []
    if not report["groups"]:
        return "no answers on record in this window"
    for group in report["groups"]:
        answered, confirmed = group["answered"], group["confirmed"]
        lines += [
            f"model {group['model_version']}, track {group['track']}: "
            f"{answered['malignant'] + answered['benign']} answers, "
            f"{confirmed['cases']} confirmed "
            f"({_share(confirmed['of_malignant_answers'])} of malignant answers, "
            f"{_share(confirmed['of_benign_answers'])} of benign ones)",
            f"  {'figure':<12} {'value':>6} {'95 % Wilson':>15} {'cases':>5}  "
            f"{'estimated':>9}  {'validation':>10}",
        ]
        validation = group.get("validation", {})
        for name in ("sensitivity", "specificity", "ppv", "npv"):
            estimated = group["estimated"][name]
            checked = validation.get(name, {}).get("mean") if validation else None
            lines.append(
                f"  {name:<12} {_rate(group['realized'][name])}  "
                f"{_number(estimated):>9}  {_number(checked):>10}"
            )
        confusion = group["confusion"]
        lines.append(
            f"  confirmed: {confusion['tp']} true positives, {confusion['fp']} false positives, "
            f"{confusion['fn']} false negatives, {confusion['tn']} true negatives; Brier "
            f"{_number(group['realized']['brier'])}"
        )
        lines += [f"  ! {warning}" for warning in group["warnings"]]
        lines.append("")
    lines.append("estimated: from the probabilities of every answer (calibration assumed, CBPE)")
    return "\n".join(lines)


def verdict_table(result: dict[str, Any]) -> str:
    candidate, baseline = result["candidate"]["name"], result["baseline"]["name"]
    lines = [f"{'figure':<12} {candidate:>30} {baseline:>30} {'difference (interval)':>28}  margin"]
    for name, metric in result["metrics"].items():
        difference = metric["difference"]
        shown = (
            f"{difference['value']:+.3f} [{difference['low']:+.3f}, {difference['high']:+.3f}]"
            if difference["value"] is not None
            else "-"
        )
        lines.append(
            f"{name:<12} {_rate(metric['candidate']):>30} {_rate(metric['baseline']):>30} "
            f"{shown:>28}  -{metric['margin']:.2f}"
        )
    level = next(iter(result["metrics"].values()))["difference"]["level"]
    lines.append(f"(rate, 95 % Wilson interval, confirmed cases; difference at {level:.1%})")
    lines.append(f"{result['verdict']}: {result['why']}")
    needed = result["needed"]
    if result["verdict"] == WAIT:
        lines.append(
            "needed: "
            + "; ".join(
                f"{role} {n['malignant']} malignant and {n['benign']} benign confirmed outcomes"
                for role, n in needed.items()
            )
        )
    return "\n".join(lines)


def _share(part: dict[str, Any]) -> str:
    return "-" if part["share"] is None else f"{part['share']:.0%}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
