"""The wheel of one model: `python -m oncology_model.release --artifacts DIR --wheel-dir OUT`.

The wheel carries exactly the artifacts of DIR (verified against their metadata first) and takes
the model version as its own version (e.g. 1.0.0+612cf7af8850, a PEP 440 local version), so two
models never share a version in a package index. It is built from the project's source (a
checkout, or the training image's /src) copied to a scratch folder: the source is never modified.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from oncology_model.integrity import METADATA_FILE, ArtifactError, verify_artifacts

VERSION_LINE = re.compile(r'^version = "([^"]+)"$', re.MULTILINE)


def source_root() -> Path:
    """The project checkout this package runs from (editable install or source tree)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise ArtifactError(
            f"no project source at {root} (pyproject.toml): build the wheel from a checkout"
        )
    return root


def build_model_wheel(artifacts: Path, wheel_dir: Path, *, source: Path | None = None) -> Path:
    """Build the wheel carrying `artifacts`, versioned with their model version; return its path."""
    metadata = verify_artifacts(artifacts)
    source = source or source_root()
    pyproject = (source / "pyproject.toml").read_text(encoding="utf-8")
    declared = VERSION_LINE.search(pyproject)
    model_version = str(metadata["model_version"])
    if declared is None or declared.group(1) != metadata["package_version"]:
        raise ArtifactError(
            f"model {model_version} in {artifacts} was trained by oncology-model "
            f"{metadata['package_version']}, but the source at {source} is "
            f"{declared.group(1) if declared else 'unversioned'}: retrain with this source"
        )
    wheel_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="oncology-wheel-") as scratch:
        tree = Path(scratch) / "src"
        tree.mkdir()
        (tree / "pyproject.toml").write_text(
            VERSION_LINE.sub(f'version = "{model_version}"', pyproject, count=1), encoding="utf-8"
        )
        shutil.copy2(source / "README.md", tree / "README.md")
        shutil.copytree(
            source / "oncology_model",
            tree / "oncology_model",
            ignore=shutil.ignore_patterns("__pycache__", "*.onnx", "*.joblib", "*.json"),
        )
        for name in (METADATA_FILE, *metadata["artifacts"]):
            shutil.copy2(artifacts / name, tree / "oncology_model" / "artifacts" / name)
        before = set(wheel_dir.glob("*.whl"))
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
             "--wheel-dir", str(wheel_dir), str(tree)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if pip.returncode != 0:
            raise ArtifactError(f"pip could not build the wheel of {artifacts}:\n{pip.stderr}")
    name = f"oncology_model-{model_version}-py3-none-any.whl"
    wheel = wheel_dir / name
    if not wheel.is_file():
        built = sorted(set(wheel_dir.glob("*.whl")) - before)
        raise ArtifactError(f"expected the wheel {name} in {wheel_dir}, pip built {built}")
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m oncology_model.release", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--artifacts", type=Path, required=True, help="a training output folder")
    parser.add_argument("--wheel-dir", type=Path, required=True, help="where to write the wheel")
    parser.add_argument(
        "--expect-version", help="fail unless the artifacts' model version is this one"
    )
    args = parser.parse_args(argv)
    try:
        metadata = verify_artifacts(args.artifacts)
        if args.expect_version and metadata["model_version"] != args.expect_version:
            raise ArtifactError(
                f"{args.artifacts / METADATA_FILE} holds model {metadata['model_version']}, "
                f"not {args.expect_version}"
            )
        wheel = build_model_wheel(args.artifacts, args.wheel_dir)
    except ArtifactError as exc:
        print(f"oncology-release: {exc}", file=sys.stderr)
        return 1
    print(f"oncology-release: {wheel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
