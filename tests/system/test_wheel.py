"""The seed's system test, against the built wheel installed alone in a fresh virtual env."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

SYSTEM_TEST = """
import sys, oncology_model
from oncology_model import Classifier, Prediction, Tumor
assert "site-packages" in oncology_model.__file__, oncology_model.__file__
assert Classifier().predict(Tumor(4, 1, 2, 1, 2, 1, 1, 1, 1)) == Prediction.BENIGN
assert Classifier().predict(Tumor(*[10] * 9)) == Prediction.MALIGNANT
assert not any(m.startswith(("sklearn", "joblib", "flask")) for m in sys.modules)
print("ok")
"""


def test_wheel_installs_alone_and_predicts(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("oncology_model-*.whl")
    listing = subprocess.run(
        [sys.executable, "-m", "zipfile", "-l", str(wheel)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for bundled in (
        "model.onnx",
        "model.joblib",
        "metadata.json",
        "py.typed",
        "breast-cancer-wisconsin.data",
        "data/README.md",
    ):
        assert bundled in listing, bundled
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    # This environment's pip installs into the fresh one (no ensurepip), without compiling
    # bytecode (onnxruntime's dependency sympy alone is a thousand modules): a fifth of the time.
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-compile", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )  # fmt: skip
    result = subprocess.run(
        [str(python), "-c", SYSTEM_TEST], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    # pandas is the `pandas` extra: without it the scoring CLI says what to install.
    scoring = subprocess.run(
        [str(env_dir / "bin" / "oncology-predict"), "x.csv"], capture_output=True, text=True
    )
    assert scoring.returncode == 2
    assert "pip install 'oncology-model[pandas]'" in scoring.stderr
