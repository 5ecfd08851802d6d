"""`make monitoring-rules`: the PrometheusRule of k8s/components/monitoring/, made from the one
source of the rules, monitoring/rules.yaml (`--check` fails when the committed file differs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "monitoring" / "rules.yaml"
TARGET = ROOT / "k8s" / "components" / "monitoring" / "prometheus-rule.yaml"

HEADER = """\
# Generated from monitoring/rules.yaml by `make monitoring-rules`: edit that file, not this one.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: oncology-webservice
  labels:
    app: oncology-webservice
    team: oncology
spec:
"""


def prometheus_rule(rules: str) -> str:
    """The rule groups of `rules` (a Prometheus rule file) as the spec of a PrometheusRule."""
    lines = rules.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "".join(f"  {line}".rstrip() + "\n" for line in lines[start:])
    return HEADER + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    wanted = prometheus_rule(SOURCE.read_text())
    if parser.parse_args().check:
        if not TARGET.exists() or TARGET.read_text() != wanted:
            print(f"{TARGET} is not made from {SOURCE}: run `make monitoring-rules`")
            return 1
        return 0
    TARGET.write_text(wanted)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
