"""The release gate: `oncology-compare` judges a candidate model against the serving one.

A real degraded candidate (trained on 20 % flipped labels) is refused in `make image-test`, which
trains it anyway; here the rule is tested on figures, and the command on real artifacts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from oncology_model.compare import GateRule, roc_auc
from oncology_model.dataset import bundled_data_path, count_seen, load_dataset, row_fingerprints
from oncology_model.integrity import JOBLIB_FILE, METADATA_FILE, bundled_artifacts_dir

BASELINE = {"roc_auc": 0.995, "sensitivity": 0.99, "specificity": 0.97, "brier": 0.025}


def run_compare(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oncology_model.compare", *args],
        capture_output=True, text=True, cwd=cwd, timeout=300,
    )  # fmt: skip


def test_the_rule_accepts_a_candidate_within_the_tolerances() -> None:
    candidate = {"roc_auc": 0.992, "sensitivity": 0.975, "specificity": 0.945, "brier": 0.03}
    assert GateRule().refusals(candidate, BASELINE) == []
    assert GateRule().refusals(candidate, BASELINE, seed_benign=False) == [
        "self-check: the known benign seed tumor is called malignant"
    ]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"roc_auc": 0.979}, "ROC AUC 0.9790 < minimum 0.98"),
        ({"sensitivity": 0.969}, "sensitivity 0.9690 < minimum 0.97"),
        ({"roc_auc": 0.985}, "ROC AUC 0.9850 is 0.0100 below the baseline's 0.9950"),
        ({"specificity": 0.93}, "specificity 0.9300 is 0.0400 below the baseline's 0.9700"),
        ({"brier": 0.04}, "Brier score 0.0400 is 0.0150 above the baseline's 0.0250"),
    ],
)
def test_the_rule_refuses_naming_the_figure(change: dict[str, float], reason: str) -> None:
    refusals = GateRule().refusals({**BASELINE, **change}, BASELINE)
    assert refusals and refusals[0].startswith(reason), refusals


def test_roc_auc_counts_ties_as_half() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 500)
    p = np.round(rng.random(500) * 0.6 + y * 0.3, 1)  # many ties
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_the_bundled_model_against_itself_is_accepted(tmp_path: Path) -> None:
    result = run_compare("--candidate", str(bundled_artifacts_dir()), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ACCEPTED" in result.stdout
    assert "decisions that flip: 0 of 699 bundled rows, 0 of 10000 random inputs" in result.stdout
    report = json.loads((tmp_path / "build/gate/compare.json").read_text())
    assert report["accepted"] is True
    assert report["evaluation"] == {
        "source": "the bundled data",
        "holdout": False,
        "rows": 699,
        "malignant": 241,
    }
    for role in ("candidate", "baseline"):
        assert report[role]["evaluation_rows_trained_on"] == 699
        assert report[role]["figures_optimistic"] is True
        assert f"{role}*: optimistic: trained on 699 of these 699 rows" in result.stdout
    assert "candidate*  baseline*" in result.stdout
    assert "Judge on rows neither model was trained on: --holdout" in result.stdout
    for figure in report["figures"].values():
        assert figure["difference"] == 0
    assert report["figures"]["roc_auc"]["candidate"] >= 0.98


def test_a_holdout_is_what_both_are_judged_on(tmp_path: Path) -> None:
    rows = bundled_data_path().read_text().splitlines()
    (tmp_path / "holdout.data").write_text("\n".join(rows[::7]) + "\n")
    result = run_compare(
        "--candidate", str(bundled_artifacts_dir()), "--holdout", "holdout.data", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "build/gate/compare.json").read_text())
    assert report["evaluation"]["source"] == "holdout.data"
    assert report["evaluation"]["rows"] == len(rows[::7])


def test_each_model_is_told_how_many_evaluation_rows_it_was_trained_on(tmp_path: Path) -> None:
    """A candidate whose metadata records half the bundled rows as its training rows, judged on
    a holdout of other rows: its figures are not optimistic; a model from before training rows
    were recorded, on rows that are not its training file, is unknown (and starred)."""
    rows = bundled_data_path().read_text().splitlines()
    (tmp_path / "half.data").write_text("\n".join(rows[::2]) + "\n")
    half = load_dataset(path=tmp_path / "half.data")
    holdout_rows = [row for row in rows[1::2] if row not in set(rows[::2])]
    (tmp_path / "holdout.data").write_text("\n".join(holdout_rows) + "\n")
    holdout = load_dataset(path=tmp_path / "holdout.data")
    candidate = tmp_path / "candidate"
    shutil.copytree(bundled_artifacts_dir(), candidate)
    metadata = json.loads((candidate / METADATA_FILE).read_text())
    metadata["training_rows"]["distinct"] = row_fingerprints(half)
    (candidate / METADATA_FILE).write_text(json.dumps(metadata))
    baseline = tmp_path / "baseline"
    shutil.copytree(bundled_artifacts_dir(), baseline)
    del metadata["training_rows"]
    (baseline / METADATA_FILE).write_text(json.dumps(metadata))

    result = run_compare(
        "--candidate", "candidate", "--baseline", "baseline", "--holdout", "holdout.data",
        cwd=tmp_path,
    )  # fmt: skip
    report = json.loads((tmp_path / "build/gate/compare.json").read_text())
    seen = count_seen(holdout, row_fingerprints(half))
    assert 0 < seen < holdout.n_rows  # duplicates of training rows among the other half
    assert report["candidate"]["evaluation_rows_trained_on"] == seen
    assert report["candidate"]["figures_optimistic"] is True
    assert report["baseline"]["evaluation_rows_trained_on"] is None
    assert report["baseline"]["figures_optimistic"] is True
    assert f"candidate*: optimistic: trained on {seen} of these {holdout.n_rows} rows" in (
        result.stdout
    )
    assert "baseline*: unknown how many of these rows it was trained on" in result.stdout
    assert "--holdout FILE" not in result.stdout  # a holdout was given


def test_unusable_input_exits_2_naming_the_file(tmp_path: Path) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(bundled_artifacts_dir(), tampered)
    with (tampered / JOBLIB_FILE).open("ab") as file:
        file.write(b"\0")
    result = run_compare("--candidate", str(tampered), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{tampered / JOBLIB_FILE} fails verification" in result.stderr
    assert "Traceback" not in result.stderr

    result = run_compare("--candidate", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert result.returncode == 2 and "metadata.json is missing (no folder" in result.stderr
    assert "oncology-train --out DIR" in result.stderr and "make train" not in result.stderr

    (tmp_path / "benign.data").write_text("1,1,1,1,1,1,1,1,1,1,2\n")
    result = run_compare(
        "--candidate", str(bundled_artifacts_dir()), "--holdout", "benign.data", cwd=tmp_path
    )
    assert result.returncode == 2 and "benign.data: the evaluation rows need both" in result.stderr

    result = run_compare(cwd=tmp_path)
    assert result.returncode == 2 and "--candidate" in result.stderr
