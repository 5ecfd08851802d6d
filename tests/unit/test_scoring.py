"""`oncology-predict`: files scored in blocks, answers equal to the API's, no record lost."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from flask.testing import FlaskClient

from bench.scoring import generate
from oncology_model import FEATURES, Classifier
from oncology_model.dataset import UCI_COLUMNS
from oncology_model.scoring import main
from tests.helpers import json_tumors


def read_output(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_uci_file_scored_in_blocks_equals_the_json_api(
    tmp_path: Path, client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = tmp_path / "cases.data", tmp_path / "scored.csv"
    generate(source, 2_500)
    assert main([str(source), "-o", str(target), "--block-lines", "1000", "--explain"]) == 0
    assert "scored 2,500 records" in capsys.readouterr().err
    scored = read_output(target)
    assert list(scored.columns[:11]) == list(UCI_COLUMNS)
    assert list(scored.columns[11:14]) == ["prediction", "malignant_probability", "imputed"]
    # the records are kept verbatim, predictions appended
    lines = target.read_text().splitlines()[1:]
    assert [line.split(",")[:11] for line in lines] == [
        line.split(",") for line in source.read_text().splitlines()
    ]
    scores = scored[list(FEATURES)].replace("?", np.nan).astype(float)
    tumors = json_tumors(scores)
    for start in range(0, len(tumors), 1000):
        part = tumors[start : start + 1000]
        answers = client.post("/v1/predictions/batch?explain=true", json={"tumors": part})
        for row, answer in zip(
            scored.iloc[start : start + 1000].itertuples(), answers.get_json()["predictions"],
            strict=True,
        ):  # fmt: skip
            assert row.prediction == answer["prediction"]
            assert float(row.malignant_probability) == pytest.approx(
                answer["probabilities"]["malignant"], abs=1e-6
            )
            assert row.imputed == ";".join(answer["imputed"])
            assert float(row.contribution_mitoses) == pytest.approx(
                answer["contributions"]["mitoses"], abs=1e-6
            )


def test_headered_file_keeps_its_other_columns(tmp_path: Path, classifier: Classifier) -> None:
    source, target = tmp_path / "export.csv", tmp_path / "scored.csv"
    names = ["patient", *reversed(FEATURES), "note"]
    rows = [
        ["P-1", *["1"] * 9, "plain"],
        ["P-2", *["10"] * 8, "", '"with, comma"'],
        ["P-3", *["5"] * 4, "", *["5"] * 4, "x"],
    ]
    source.write_text("\n".join(",".join(r) for r in [names, *rows]) + "\n")
    assert main([str(source), "-o", str(target)]) == 0
    scored = read_output(target)
    assert scored["patient"].tolist() == ["P-1", "P-2", "P-3"]
    assert scored["note"].tolist() == ["plain", "with, comma", "x"]
    assert scored["imputed"].tolist() == ["", "clump_thickness", "single_epithelial_cell_size"]
    frame = scored[list(FEATURES)].replace("", np.nan).astype(float)
    expected = classifier.predict_frame(frame)
    assert scored["prediction"].tolist() == expected["prediction"].tolist()


def bad_file(path: Path) -> None:
    good = "1000025,5,1,1,1,2,1,3,1,1,2"
    path.write_text(
        "\n".join(
            [
                good,
                "1000026,5,1,1,1,2,1,3,1,11,2",
                good,
                "1000027,5,1",
                good,
                "x,x,1,1,1,2,1,3,1,1,2",
            ]
        )
        + "\n"
    )


def test_bad_records_stop_the_run_naming_them_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = tmp_path / "cases.data", tmp_path / "scored.csv"
    bad_file(source)
    target.write_text("yesterday's results\n")
    assert main([str(source), "-o", str(target)]) == 1
    err = capsys.readouterr().err
    assert "line 2: mitoses '11': 11 is out of range" in err
    assert "line 4: expected 11 columns, found 3" in err
    assert "line 6: clump_thickness 'x': 'x' is not a number" in err
    assert f"{target} was not written" in err
    assert target.read_text() == "yesterday's results\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_errors_file_takes_the_bad_records_and_none_is_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target, errors = tmp_path / "cases.data", tmp_path / "scored.csv", tmp_path / "bad.csv"
    bad_file(source)
    assert (
        main([str(source), "-o", str(target), "--errors", str(errors), "--block-lines", "2"]) == 0
    )
    err = capsys.readouterr().err
    assert "3 bad records written to" in err
    assert re.search(r"scored 3 records into .* in (\d+ ms|\d+\.\d s);", err), err
    set_aside = list(csv.DictReader(io.StringIO(errors.read_text())))
    assert [r["line"] for r in set_aside] == ["2", "4", "6"]
    assert "mitoses '11'" in set_aside[0]["reason"]
    assert set_aside[1]["record"] == "1000027,5,1"
    assert len(read_output(target)) + len(set_aside) == len(source.read_text().splitlines())


def test_a_header_without_every_feature_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "export.csv"
    source.write_text(",".join(FEATURES[:-1]) + ",mitosis\n" + "1," * 8 + "1\n")
    assert main([str(source), "-o", str(tmp_path / "out.csv")]) == 2
    assert "mitoses is missing" in capsys.readouterr().err
