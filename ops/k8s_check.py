"""`make k8s-check`: the manifests and the Dockerfile, checked offline as strictly as we can.

1. `kubectl kustomize k8s/` builds; with the training and batch-scoring Jobs and their volumes,
   everything validates with `kubernetes-validate --strict` against several Kubernetes versions.
2. `kubectl set image --local` on the Deployment succeeds for the container the Makefile's
   `deploy` target names (it fails when the name is wrong).
3. hadolint finds nothing in the Dockerfile; checkov passes on k8s/ and the Dockerfile, with every
   skipped check listed and justified in .checkov.yaml.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES_VERSIONS = ("1.30.0", "1.32.0", "1.34.0")


def run(*command: str) -> str:
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        print(output)
        raise SystemExit(f"k8s-check: failed: {' '.join(command)}")
    return output


def skipped_checks(config: Path) -> list[str]:
    """The check ids listed under `skip-check:` in checkov's YAML config."""
    skipped, listing = [], False
    for line in config.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            listing = line.startswith("skip-check:")
        elif listing and line.strip().startswith("- "):
            skipped.append(line.strip()[2:].strip())
    return skipped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tools", type=Path, required=True, help="bin folder of the linters")
    tools = parser.parse_args().tools.resolve()

    rendered = run("kubectl", "kustomize", "k8s")
    with tempfile.TemporaryDirectory() as scratch:
        bundle = Path(scratch) / "all.yaml"
        # generateName is for `kubectl create`; the schema check wants a concrete name.
        jobs = [
            re.sub(r"generateName: (\S+-)\n", r"name: \1check\n", path.read_text())
            for folder in ("training", "batch")
            for path in sorted((ROOT / "k8s" / folder).glob("*.yaml"))
        ]
        bundle.write_text("\n---\n".join([rendered, *jobs]))
        for version in KUBERNETES_VERSIONS:
            print(run(str(tools / "kubernetes-validate"), "--strict", "-k", version, str(bundle)))

    updated = run(
        "kubectl", "set", "image", "--local", "-f", "k8s/deployment.yaml",
        "oncology-webservice=registry.example/oncology-webservice:0.0.0-check", "-o", "yaml",
    )  # fmt: skip
    assert "image: registry.example/oncology-webservice:0.0.0-check" in updated, updated

    print(
        run(str(tools / "hadolint"), "--failure-threshold", "style", "Dockerfile")
        or "hadolint: clean"
    )
    checkov = (str(tools / "checkov"), "--config-file", ".checkov.yaml")
    print(run(*checkov, "--directory", "k8s"))
    print(run(*checkov, "--file", "Dockerfile"))
    # checkov does not run the checks its config skips, so its own summary says "Skipped checks: 0".
    skipped = skipped_checks(ROOT / ".checkov.yaml")
    print(
        f"checkov: {len(skipped)} checks skipped by .checkov.yaml (each justified there): "
        + ", ".join(skipped)
    )
    print("k8s-check: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
