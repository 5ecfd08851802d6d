"""`oncology-verify`: check a model's artifacts before serving them (exit 1 if they fail).

Verifies the hash of every artifact the metadata lists (the ONNX model and the joblib reference),
loads the ONNX model, and runs the known-answer self-check (the project's seed tumor is benign).
Serving runs the same checks at start-up for the ONNX model, the one file it reads.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from oncology_model.classifier import Classifier
from oncology_model.datamodel import Prediction, Tumor
from oncology_model.integrity import ArtifactError, bundled_artifacts_dir, verify_artifacts
from oncology_model.storage import location

SEED_TUMOR = Tumor(4, 1, 2, 1, 2, 1, 1, 1, 1)


def verified_classifier(*, artifacts_dir: Path | None = None) -> Classifier:
    """A Classifier whose artifacts verified and which passes the known-answer self-check."""
    classifier = Classifier(artifacts_dir=artifacts_dir)
    if classifier.predict(SEED_TUMOR) is not Prediction.BENIGN:
        raise ArtifactError("self-check failed: the known benign seed tumor is not benign")
    return classifier


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oncology-verify", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--artifacts",
        type=location,
        help="artifact folder, or s3://BUCKET/PREFIX/ of a model version (default: the bundled)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="oncology-verify-") as scratch:
        try:
            from oncology_model.model_storage import local_model

            artifacts = (
                None if args.artifacts is None else local_model(args.artifacts, Path(scratch))
            )
            verify_artifacts(artifacts or bundled_artifacts_dir())
            classifier = verified_classifier(artifacts_dir=artifacts)
        except ArtifactError as exc:
            print(f"oncology-verify: {exc}", file=sys.stderr)
            return 1
    print(f"oncology-verify: model {classifier.model_version} verified and self-checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
