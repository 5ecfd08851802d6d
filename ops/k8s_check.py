"""`make k8s-check`: the manifests and the Dockerfile, checked offline as strictly as we can.

1. `kubectl kustomize k8s/` builds, and so does k8s/ with the postgres component and with the
   model-from-storage one; with the training, batch-scoring (on claims and from the bucket) and
   migration Jobs and their volumes, everything validates with
   `kubernetes-validate --strict` against several Kubernetes versions, except CloudNativePG's
   Cluster: no schema of it is at hand offline (the tests check its fields,
   tests/system/test_k8s.py), and kubernetes-validate's warning for it is the only one allowed.
2. `kubectl set image --local` succeeds for the containers the Makefile's `deploy` and
   `migrate-job` targets name, on the Deployment, the migration Job and the purge CronJob (it fails
   when a name is wrong); the component's JSON patch applies to the migration Job.
3. hadolint finds nothing in the Dockerfile; checkov passes on k8s/ and the Dockerfile, with every
   skipped check listed and justified in .checkov.yaml.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES_VERSIONS = ("1.30.0", "1.32.0", "1.34.0")
POSTGRES_COMPONENT = ROOT / "k8s" / "components" / "postgres"
STORAGE_COMPONENT = ROOT / "k8s" / "components" / "model-from-storage"
# Kinds without a schema here, each checked by the tests instead.
UNVALIDATED_KINDS = ("Cluster",)


def run(*command: str) -> str:
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        print(output)
        raise SystemExit(f"k8s-check: failed: {' '.join(command)}")
    return output


MIGRATE_JOB = "k8s/records/migrate-job.yaml"


def with_component(scratch: Path, component: Path) -> str:
    """`kubectl kustomize` of an overlay holding k8s/ and `component`, as the component's
    comment tells an operator to write it (kustomize takes relative paths only)."""
    overlay = scratch / f"overlay-{component.name}"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        f"resources: [{os.path.relpath(ROOT / 'k8s', overlay)}]\n"
        f"components: [{os.path.relpath(component, overlay)}]\n"
    )
    return run("kubectl", "kustomize", str(overlay))


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
        with_postgres = with_component(Path(scratch), POSTGRES_COMPONENT)
        with_storage = with_component(Path(scratch), STORAGE_COMPONENT)
        bundle = Path(scratch) / "all.yaml"
        # generateName is for `kubectl create`; the schema check wants a concrete name.
        jobs = [
            re.sub(r"generateName: (\S+-)\n", r"name: \1check\n", path.read_text())
            for folder in ("training", "batch")
            for path in sorted((ROOT / "k8s" / folder).glob("*.yaml"))
        ]
        migration = re.sub(
            r"generateName: (\S+-)\n", r"name: \1check\n", (ROOT / MIGRATE_JOB).read_text()
        )
        bundle.write_text("\n---\n".join([rendered, with_postgres, with_storage, *jobs, migration]))
        for version in KUBERNETES_VERSIONS:
            output = run(str(tools / "kubernetes-validate"), "--strict", "-k", version, str(bundle))
            print(output)
            unvalidated = [line for line in output.splitlines() if line.startswith("WARN")]
            for line in unvalidated:
                if not any(f"kind {kind} " in line for kind in UNVALIDATED_KINDS):
                    raise SystemExit(f"k8s-check: a manifest validated against no schema: {line}")
            print(
                f"kubernetes-validate {version}: {len(unvalidated)} CloudNativePG Cluster(s) "
                "without a schema offline, checked by tests/system/test_k8s.py"
            )

    image = "registry.example/oncology-webservice:0.0.0-check"
    for manifest, container in (
        ("k8s/deployment.yaml", "oncology-webservice"),
        (MIGRATE_JOB, "oncology-db"),
        ("k8s/records/purge-cronjob.yaml", "oncology-db"),
    ):
        updated = run(
            "kubectl", "set", "image", "--local", "-f", manifest, f"{container}={image}",
            "-o", "yaml",
        )  # fmt: skip
        assert f"image: {image}" in updated, updated
    patched = run(
        "kubectl", "patch", "--local", "-f", MIGRATE_JOB, "--type", "json",
        "--patch-file", str((POSTGRES_COMPONENT / "database-url.yaml").relative_to(ROOT)),
        "-o", "yaml",
    )  # fmt: skip
    assert "name: oncology-records-app" in patched, patched

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
