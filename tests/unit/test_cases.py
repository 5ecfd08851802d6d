"""Confirmed cases back into training: `oncology-cases export` writes the record's confirmed
cases as a data file training reads, with its manifest; training checks and keeps the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient

from oncology_model.dataset import DatasetError, load_dataset, load_datasets
from tests.conftest import ClosingClient
from webservice import create_app
from webservice.records import cases

TUMORS: list[dict[str, int | None]] = [
    {"clump_thickness": 5, "uniformity_of_cell_size": 1, "uniformity_of_cell_shape": 1,
     "marginal_adhesion": 1, "single_epithelial_cell_size": 2, "bare_nuclei": None,
     "bland_chromatin": 3, "normal_nucleoli": 1, "mitoses": 1},
    {"clump_thickness": 10, "uniformity_of_cell_size": 10, "uniformity_of_cell_shape": 10,
     "marginal_adhesion": 8, "single_epithelial_cell_size": 7, "bare_nuclei": 10,
     "bland_chromatin": 9, "normal_nucleoli": 7, "mitoses": 1},
]  # fmt: skip


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cases.sqlite3'}"


@pytest.fixture
def client(database: str) -> FlaskClient:
    app = create_app({"TESTING": True, "DATABASE_URL": database})
    app.test_client_class = ClosingClient
    return app.test_client()


def predict(client: FlaskClient, tumors: list[dict[str, int | None]]) -> list[str]:
    answer = client.post("/v1/predictions/batch", json={"tumors": tumors}).get_json()
    return [prediction["prediction_id"] for prediction in answer["predictions"]]


def confirm(client: FlaskClient, prediction_id: str, outcome: str, **extra: object) -> None:
    body = {"outcome": outcome, "source": "histology", **extra}
    response = client.put(f"/v1/predictions/{prediction_id}/outcome", json=body)
    assert response.status_code in (200, 201), response.get_json()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Where the export goes: a folder of its own, as training reads every file of a folder."""
    (tmp_path / "export").mkdir()
    return tmp_path / "export"


def export(database: str, out: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setenv("ONCOLOGY_DATABASE_URL", database)
    return cases.main(["export", "-o", str(out), *args])


def test_confirmed_cases_export_as_training_data_with_their_latest_outcome(
    client: FlaskClient, database: str, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, unconfirmed, erased = predict(client, [*TUMORS, *TUMORS])
    confirm(client, first, "malignant")
    confirm(client, first, "benign", corrects=True)  # a correction: the latest value exports
    confirm(client, second, "malignant")
    confirm(client, erased, "malignant")
    assert client.delete(f"/v1/predictions/{erased}").status_code == 200
    out = folder / "cases.csv"
    assert export(database, out, monkeypatch) == 0

    lines = out.read_text().splitlines()
    assert lines[0] == ",".join(cases.COLUMNS)
    assert lines[1:] == [f"{first},5,1,1,1,2,,3,1,1,2", f"{second},10,10,10,8,7,10,9,7,1,4"]
    data = load_dataset(path=out)  # what oncology-train --data and oncology-compare read
    assert list(data.sample_ids) == [first, second]  # the prediction ids, as text
    assert np.isnan(data.X[0, 5]) and list(data.y) == [0, 1]
    (manifest,) = data.manifests
    assert manifest["rows"] == 2 and manifest["rows_per_class"] == {"benign": 1, "malignant": 1}
    assert manifest["file"] == "cases.csv" and unconfirmed not in out.read_text()
    assert manifest["query"]["since"] is None and manifest["schema_revision"]


def test_the_window_selects_and_nothing_is_written_without_cases(
    client: FlaskClient,
    database: str,
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (prediction_id,) = predict(client, TUMORS[:1])
    confirm(client, prediction_id, "benign")
    out = folder / "cases.csv"
    assert export(database, out, monkeypatch, "--track", "canary") == 1
    assert "no confirmed case in the window: nothing written" in capsys.readouterr().err
    assert list(folder.iterdir()) == []
    assert export(database, out, monkeypatch, "--since", "2999-01-01") == 1
    assert export(database, out, monkeypatch, "--track", "stable", "--until", "2999-01-01") == 0
    manifest = json.loads((folder / "cases.csv.manifest.json").read_text())
    assert manifest["query"]["track"] == "stable" and manifest["query"]["until"] == "2999-01-01"
    assert "exported 1 confirmed case (1 benign, 0 malignant)" in capsys.readouterr().err
    assert export(database, folder / "nowhere" / "cases.csv", monkeypatch) == 1
    assert "folder" in capsys.readouterr().err


def test_a_file_changed_after_export_is_refused_for_training(
    client: FlaskClient, database: str, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    predicted = predict(client, TUMORS)
    for prediction_id, outcome in zip(predicted, ("benign", "malignant"), strict=True):
        confirm(client, prediction_id, outcome)
    out = folder / "cases.csv"
    assert export(database, out, monkeypatch) == 0
    assert len(load_datasets([folder]).y) == 2  # a folder: the manifest is not data
    out.write_text(out.read_text().replace(",4\n", ",2\n"))
    with pytest.raises(DatasetError, match=r"cases.csv does not match its manifest"):
        load_dataset(path=out)
