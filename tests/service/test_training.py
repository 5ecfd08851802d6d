"""Training: the CLI, the report, determinism, and a user's own data file."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from oncology_model import Classifier, Prediction, Tumor
from oncology_model.dataset import bundled_data_path
from oncology_model.integrity import (
    JOBLIB_FILE,
    METADATA_FILE,
    ONNX_FILE,
    bundled_artifacts_dir,
    sha256_of,
    write_json,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def makefile_date_epoch() -> str:
    """The training date (SOURCE_DATE_EPOCH) `make train` writes into the committed metadata."""
    match = re.search(r"^MODEL_DATE_EPOCH := (\d+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "the Makefile sets MODEL_DATE_EPOCH"
    return match.group(1)


MODEL_DATE_EPOCH = makefile_date_epoch()


def run_training(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oncology_model.training_cli", *args],
        capture_output=True,
        text=True,
        env={"SOURCE_DATE_EPOCH": MODEL_DATE_EPOCH, "PATH": "/usr/bin:/bin"},
        timeout=300,
    )


def start_training(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "oncology_model.training_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"SOURCE_DATE_EPOCH": MODEL_DATE_EPOCH, "PATH": "/usr/bin:/bin"},
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def trainings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's two trainings, run at the same time (one per core, half the wait): the
    bundled data as `make train` runs it (in `bundled/`), and a user's own data (in `own/`) as
    several files, a folder's and one more, trained without --out, with --wheel-dir and one
    candidate."""
    root = tmp_path_factory.mktemp("trained")
    lines = bundled_data_path().read_text().splitlines()
    own = root / "own"
    folder = own / "data"
    folder.mkdir(parents=True)
    (folder / "a.data").write_text("\n".join(lines[:300]) + "\n")
    (folder / "b.data").write_text("\n".join(lines[300:600]) + "\n")
    (folder / ".hidden").write_text("not data\n")
    (own / "c.data").write_text("\n".join(lines[600:650]) + "\n")
    (root / "bundled-onnx.sha256").write_text(
        sha256_of((bundled_artifacts_dir() / ONNX_FILE).read_bytes())
    )
    runs = {
        "bundled": start_training(
            "--out",
            str(root / "bundled" / "artifacts"),
            "--report",
            str(root / "bundled" / "report"),
        ),
        "own": start_training(
            "--data",
            "data",
            "c.data",
            "--no-report",
            "--wheel-dir",
            "dist",
            "--candidates",
            "logistic_regression",
            cwd=own,
        ),
    }
    for name, process in runs.items():
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, f"{name}: {stderr}"
    return root


@pytest.fixture(scope="module")
def trained(trainings: Path) -> Path:
    return trainings / "bundled"


def test_retraining_reproduces_the_committed_artifacts(trained: Path) -> None:
    """Same data, seed, locked libraries and SOURCE_DATE_EPOCH as `make train`: all three
    committed files, metadata.json included, come out byte for byte.

    metadata.json records the Python version; the lock cannot pin its patch level, so on another
    3.11.x the fresh file must equal the committed one once that one field is set to match."""
    for name in (ONNX_FILE, JOBLIB_FILE):
        fresh = (trained / "artifacts" / name).read_bytes()
        committed = (bundled_artifacts_dir() / name).read_bytes()
        assert sha256_of(fresh) == sha256_of(committed), f"{name} differs: run `make train`"
    fresh_path = trained / "artifacts" / METADATA_FILE
    committed_metadata = (bundled_artifacts_dir() / METADATA_FILE).read_bytes()
    recorded = json.loads(committed_metadata)["libraries"]["python"]
    if recorded != platform.python_version():
        metadata = json.loads(fresh_path.read_bytes())
        metadata["libraries"]["python"] = recorded
        write_json(fresh_path, metadata)
    assert fresh_path.read_bytes() == committed_metadata, "metadata.json differs: run `make train`"


def test_metadata_records_what_was_trained(trained: Path) -> None:
    metadata = json.loads((trained / "artifacts" / METADATA_FILE).read_text())
    assert metadata["trained_at"] == "2026-11-21T00:00:00+00:00"  # from SOURCE_DATE_EPOCH
    assert metadata["training_data"]["sha256"] == sha256_of(bundled_data_path().read_bytes())
    assert metadata["training_data"]["rows"] == 699
    for name in (ONNX_FILE, JOBLIB_FILE):
        data = (trained / "artifacts" / name).read_bytes()
        assert metadata["artifacts"][name]["sha256"] == sha256_of(data)
    assert {"scikit-learn", "onnxruntime", "skl2onnx", "numpy", "python"} <= set(
        metadata["libraries"]
    )
    assert [feature["name"] for feature in metadata["features"]] == list(Tumor.FEATURES)
    assert all(f["min"] == 1 and f["max"] == 10 and f["description"] for f in metadata["features"])
    assert 0 < metadata["threshold"] <= 0.5
    assert set(metadata["cross_validation"]["candidates"]) == {
        "logistic_regression",
        "random_forest",
    }


def test_report_has_figures_with_spread_and_plots(trained: Path) -> None:
    report = json.loads((trained / "report" / "report.json").read_text())
    chosen = report["cross_validation"]["chosen"]
    for name in ("roc_auc", "accuracy", "sensitivity", "specificity", "brier"):
        assert set(chosen[name]) == {"mean", "std", "min", "max"}
    assert len(report["per_fold"][report["chosen"]]) == 25
    assert sum(report["pooled_out_of_fold_confusion_matrix"].values()) == 699 * 5
    for plot in ("roc_curve.png", "calibration_curve.png", "confusion_matrix.png"):
        assert (trained / "report" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_on_a_users_own_files(trainings: Path) -> None:
    classifier = Classifier(artifacts_dir=trainings / "own" / "build" / "model")
    assert classifier.metadata["training_data"]["rows"] == 650
    assert classifier.predict(Tumor(4, 1, 2, 1, 2, 1, 1, 1, 1)) == Prediction.BENIGN


def test_training_on_a_folder_and_files_writes_build_model_and_the_wheel(trainings: Path) -> None:
    """Several files (a folder's, in name order, hidden files skipped) are one training set;
    without --out the artifacts go to build/model, never into the installed package;
    --wheel-dir builds the wheel carrying exactly those artifacts, versioned with the model
    version."""
    own = trainings / "own"
    out = own / "build" / "model"
    metadata = json.loads((out / METADATA_FILE).read_text())
    assert metadata["training_data"]["rows"] == 650
    assert metadata["training_data"]["file"] == "a.data, b.data, c.data"
    assert metadata["candidate"] == "logistic_regression"
    assert set(metadata["cross_validation"]["candidates"]) == {"logistic_regression"}
    bundled_before = (trainings / "bundled-onnx.sha256").read_text()
    assert sha256_of((bundled_artifacts_dir() / ONNX_FILE).read_bytes()) == bundled_before
    version = metadata["model_version"]
    assert version.startswith(metadata["package_version"] + "+")
    (wheel,) = (own / "dist").glob("*.whl")
    assert wheel.name == f"oncology_model-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        for name in (ONNX_FILE, JOBLIB_FILE, METADATA_FILE):
            packed = archive.read(f"oncology_model/artifacts/{name}")
            assert packed == (out / name).read_bytes(), name
        assert (
            f"Version: {version}"
            in archive.read(f"oncology_model-{version}.dist-info/METADATA").decode()
        )


def test_an_unknown_candidate_is_refused_naming_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from oncology_model.training_cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--candidates", "logistic_regression", "xgboost"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "--candidates" in error and "'xgboost'" in error
    assert "logistic_regression" in error and "random_forest" in error


def test_serving_pipeline_is_the_same_model() -> None:
    """The folded export equals the calibrated pipeline; other pipelines pass unchanged."""
    import numpy as np

    from oncology_model.dataset import load_dataset
    from oncology_model.reference import load_reference_pipeline
    from oncology_model.training import CANDIDATES, build_pipeline, serving_pipeline

    reference = load_reference_pipeline()
    folded = serving_pipeline(reference)
    assert [name for name, _ in folded.steps] == ["impute", "model"]
    X = np.random.default_rng(3).integers(1, 11, size=(5000, 9)).astype(float)
    X[::5, 5] = np.nan
    np.testing.assert_allclose(
        folded.predict_proba(X), reference.predict_proba(X), atol=1e-12, rtol=0
    )
    data = load_dataset()
    forest = next(c for c in CANDIDATES if c.name == "random_forest")
    pipeline = build_pipeline(forest, data.sample_ids, data.y, seed=1)
    pipeline.fit(data.X, data.y)
    assert serving_pipeline(pipeline) is pipeline


def test_bad_data_file_exits_non_zero_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from oncology_model.training_cli import main

    data = tmp_path / "broken.data"
    data.write_text("1,2,3\n")
    result = run_training("--data", str(data), "--out", str(tmp_path / "a"), "--no-report")
    assert result.returncode == 1
    assert "broken.data, line 1: expected 11 columns" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "a").exists()
    # The same CLI in this process (no second start-up): the bad one of several files is named,
    # whichever position it has, and an empty folder is refused.
    good = tmp_path / "good.data"
    good.write_text(bundled_data_path().read_text())
    assert main(["--data", str(good), str(data), "--out", str(tmp_path / "a")]) == 1
    assert "broken.data, line 1: expected 11 columns" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "a")]) == 1
    assert "empty holds no files" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
