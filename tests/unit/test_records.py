"""The prediction record: ids on every answer, the record behind each, outcomes joined to it,
the writer's buffer when the database is away, migrations, retention and erasure.

In one process against real SQLite files; the same against PostgreSQL, with real signals and a
database stopped under load, is in tests/service/test_records_durability.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from oncology_model.datamodel import FEATURES
from tests.conftest import ClosingClient
from tests.helpers import MALIGNANT_JSON, PREDICTION_ID, SEED_JSON, log_lines, problem, scrape
from webservice import create_app
from webservice.records import cli, ids
from webservice.records.outcomes import MAX_BULK
from webservice.records.quality import Window, groups
from webservice.records.schema import answers
from webservice.records.store import (
    AnswerRecord,
    RecordStore,
    current_revision,
    downgrade,
    engine_for,
    head_revision,
    pack,
    upgrade,
)
from webservice.records.writer import RecordWriter

OUTCOME = {"outcome": "malignant", "source": "histology", "confirmed_on": "2026-12-01"}


def make_app(tmp_path: Path, **settings: Any) -> Flask:
    config = {"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'records.sqlite3'}"}
    application = create_app({**config, **settings})
    application.test_client_class = ClosingClient
    return application


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make_app(tmp_path)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def record_of(client: FlaskClient, prediction_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/predictions/{prediction_id}")
    assert response.status_code == 200, response.get_data()
    return dict(response.get_json())


# Prediction ids


def test_ids_are_uuid7_in_time_order_and_name_their_answer_and_position() -> None:
    first, later = ids.new_block(), None
    time.sleep(0.002)
    later = ids.new_block()
    batch = ids.ids(first, 3)
    assert all(PREDICTION_ID.fullmatch(i) for i in batch) and len(set(batch)) == 3
    assert batch == sorted(batch) and ids.ids(later, 1)[0] > batch[-1]
    assert ids.parse(batch[2]) == (batch[0], 2)
    assert abs(ids.answered_ms(batch[0]) - time.time() * 1000) < 5000
    for bad in (
        "",
        "x" * 36,
        batch[0].upper(),
        batch[0][:14] + "4" + batch[0][15:],
        batch[0] + "0",
    ):
        assert ids.parse(bad) is None


def test_a_single_prediction_is_packed_as_a_batch_of_one_would_be() -> None:
    """The plain-Python packing of a single prediction's row gives the numpy one's bytes."""
    row = [5.0, 1.0, 10.0, 1.0, 2.0, float("nan"), 3.0, 1.0, 1.0]
    single = an_answer(1)._replace(rows=[row], malignant=[0.123456], flags=[True])
    batch = single._replace(
        rows=np.array([row]), malignant=np.array([0.123456]), flags=np.array([True])
    )
    assert pack(single) == pack(batch)
    assert pack(single)["scores"] == bytes([5, 1, 10, 1, 2, 0, 3, 1, 1])


def test_every_route_answers_ids_that_look_up_the_record(client: FlaskClient) -> None:
    single = client.post("/v1/predictions", json=SEED_JSON, headers={"X-Request-ID": "req-a"})
    batch = client.post("/v1/predictions/batch", json={"tumors": [SEED_JSON, MALIGNANT_JSON]})
    as_csv = client.post(
        "/v1/predictions/batch",
        data="clump_thickness,uniformity_of_cell_size,uniformity_of_cell_shape,"
        "marginal_adhesion,single_epithelial_cell_size,bare_nuclei,bland_chromatin,"
        "normal_nucleoli,mitoses\n10,10,10,10,10,,10,10,10\n",
        content_type="text/csv",
        headers={"Accept": "text/csv"},
    )
    v2 = client.post(
        "/v2/models/oncology/infer",
        json={
            "inputs": [
                {
                    "name": "tumors",
                    "shape": [1, 9],
                    "datatype": "INT32",
                    "data": list(SEED_JSON.values()),
                }
            ]
        },
    )
    csv_row = next(csv.DictReader(io.StringIO(as_csv.get_data(as_text=True))))
    v2_ids = {o["name"]: o for o in v2.get_json()["outputs"]}["prediction_id"]["data"]
    found = {
        single.get_json()["prediction_id"]: (SEED_JSON, "benign"),
        batch.get_json()["predictions"][0]["prediction_id"]: (SEED_JSON, "benign"),
        batch.get_json()["predictions"][1]["prediction_id"]: (MALIGNANT_JSON, "malignant"),
        csv_row["prediction_id"]: (
            {**dict.fromkeys(FEATURES, 10), "bare_nuclei": None},
            "malignant",
        ),
        v2_ids[0]: (SEED_JSON, "benign"),
    }
    assert len(found) == 5
    for prediction_id, (tumor, diagnosis) in found.items():
        record = record_of(client, prediction_id)
        assert record["prediction_id"] == prediction_id
        assert record["tumor"] == tumor  # as received, null kept
        assert record["prediction"] == diagnosis
        assert record["model_version"] == client.get("/v1/model").get_json()["version"]
        assert record["track"] == "stable" and record["caller"] == "anonymous"
        assert record["outcome"] is None and record["history"] == []
    assert record_of(client, single.get_json()["prediction_id"])["request_id"] == "req-a"
    answered = single.get_json()
    record = record_of(client, answered["prediction_id"])
    assert record["probabilities"] == answered["probabilities"]
    assert record["threshold"] == answered["threshold"]


def test_the_track_is_recorded(tmp_path: Path) -> None:
    canary = make_app(tmp_path, TRACK="canary").test_client()
    prediction_id = canary.post("/v1/predictions", json=SEED_JSON).get_json()["prediction_id"]
    assert record_of(canary, prediction_id)["track"] == "canary"


# Case references


def test_case_references_by_header_batch_array_and_csv_column(client: FlaskClient) -> None:
    single = client.post("/v1/predictions", json=SEED_JSON, headers={"Case-Reference": "S26-1"})
    batch = client.post(
        "/v1/predictions/batch",
        json={"tumors": [SEED_JSON, SEED_JSON], "case_references": [None, "S26-2"]},
    )
    header = ",".join(["case_reference", *FEATURES])
    rows = "\n".join(["S26-3," + ",".join(map(str, SEED_JSON.values())).replace("None", "")])
    as_csv = client.post(
        "/v1/predictions/batch", data=f"{header}\n{rows}\n", content_type="text/csv"
    )
    assert single.status_code == batch.status_code == as_csv.status_code == 200
    expected = {
        single.get_json()["prediction_id"]: "S26-1",
        batch.get_json()["predictions"][0]["prediction_id"]: None,
        batch.get_json()["predictions"][1]["prediction_id"]: "S26-2",
        as_csv.get_json()["predictions"][0]["prediction_id"]: "S26-3",
    }
    for prediction_id, reference in expected.items():
        assert record_of(client, prediction_id)["case_reference"] == reference


@pytest.mark.parametrize(
    ("request_args", "field"),
    [
        (
            {"path": "/v1/predictions", "json": SEED_JSON, "headers": {"Case-Reference": "a b"}},
            "Case-Reference",
        ),
        (
            {
                "path": "/v1/predictions/batch",
                "json": {"tumors": [SEED_JSON], "case_references": ["x" * 65]},
            },
            "case_references[0]",
        ),
        (
            {
                "path": "/v1/predictions/batch",
                "json": {"tumors": [SEED_JSON], "case_references": ["a", "b"]},
            },
            "case_references",
        ),
        (
            {
                "path": "/v1/predictions/batch",
                "content_type": "text/csv",
                "data": "case_reference," + ",".join(FEATURES) + "\n<x>," + "1," * 8 + "1\n",
            },
            "row 1.case_reference",
        ),
    ],
)
def test_a_bad_case_reference_is_named(
    client: FlaskClient, request_args: dict[str, Any], field: str
) -> None:
    errors = problem(client.post(**request_args), 422)["errors"]
    assert field in errors, errors
    assert "accession number" in errors[field] or "one case reference" in errors[field]


def test_medical_data_never_reaches_the_log(
    client: FlaskClient, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    answer = client.post(
        "/v1/predictions", json=MALIGNANT_JSON, headers={"Case-Reference": "SECRET-ACC-42"}
    ).get_json()
    client.put(f"/v1/predictions/{answer['prediction_id']}/outcome", json=OUTCOME)
    client.get(f"/v1/predictions/{answer['prediction_id']}")
    out = capfd.readouterr().out
    assert len(log_lines(out)) >= 3
    assert "SECRET-ACC-42" not in out and "histology" not in out
    assert str(answer["probabilities"]["malignant"]) not in out


# Outcomes


def test_an_outcome_is_applied_repeated_refused_when_contradicting_and_corrected(
    client: FlaskClient,
) -> None:
    prediction_id = client.post("/v1/predictions", json=SEED_JSON).get_json()["prediction_id"]
    path = f"/v1/predictions/{prediction_id}/outcome"
    created = client.put(path, json=OUTCOME)
    assert created.status_code == 201
    assert created.headers["Location"] == f"/v1/predictions/{prediction_id}"
    assert created.get_json()["status"] == "applied"
    stored = created.get_json()["record"]["outcome"]
    assert {k: stored[k] for k in OUTCOME} == OUTCOME and stored["recorded_by"] == "anonymous"
    again = client.put(path, json=OUTCOME)
    assert again.status_code == 200 and again.get_json()["status"] == "unchanged"
    benign = {**OUTCOME, "outcome": "benign"}
    conflict = problem(client.put(path, json=benign), 409)
    assert "already has the outcome malignant" in conflict["detail"]
    assert "corrects" in conflict["errors"]["outcome"]
    assert record_of(client, prediction_id)["outcome"]["outcome"] == "malignant"
    corrected = client.put(path, json={**benign, "corrects": True})
    assert corrected.status_code == 200 and corrected.get_json()["status"] == "corrected"
    record = record_of(client, prediction_id)
    assert record["outcome"]["outcome"] == "benign"
    (earlier,) = record["history"]
    assert earlier["outcome"] == "malignant" and earlier["replaced_by"] == "anonymous"


def test_unknown_and_malformed_ids_and_outcomes_are_named(client: FlaskClient) -> None:
    unknown = ids.ids(ids.new_block(now_ms=1_700_000_000_000), 1)[0]
    body = problem(client.put(f"/v1/predictions/{unknown}/outcome", json=OUTCOME), 404)
    assert unknown in body["detail"]
    assert unknown in problem(client.get(f"/v1/predictions/{unknown}"), 404)["detail"]
    for hostile in ("nonsense", "0" * 36, "'%3B%20DROP%20TABLE%20answers", "%00" * 12):
        body = problem(client.get(f"/v1/predictions/{hostile}"), 422)
        assert "UUIDv7" in body["errors"]["prediction_id"]
    prediction_id = client.post("/v1/predictions", json=SEED_JSON).get_json()["prediction_id"]
    path = f"/v1/predictions/{prediction_id}/outcome"
    tomorrow_plus = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    body = problem(
        client.put(
            path,
            json={
                "outcome": "maybe",
                "source": "",
                "confirmed_on": tomorrow_plus,
                "corrects": "yes",
                "note": 1,
            },
        ),
        422,
    )
    assert set(body["errors"]) == {"outcome", "source", "confirmed_on", "corrects", "note"}
    assert "benign or malignant" in body["errors"]["outcome"]
    assert "not after today" in body["errors"]["confirmed_on"]
    assert problem(client.put(path, json={"source": "histology"}), 422)["errors"] == {
        "outcome": "is required: benign or malignant"
    }
    assert problem(client.put(path, data="x", content_type="text/plain"), 415)
    assert record_of(client, prediction_id)["outcome"] is None


def test_an_outcome_sent_right_after_the_answer_is_joined(tmp_path: Path) -> None:
    """The writer would not write for a minute: the outcome flushes it, then joins."""
    client = make_app(tmp_path, RECORDS_FLUSH_SECONDS=60.0).test_client()
    prediction_id = client.post("/v1/predictions", json=SEED_JSON).get_json()["prediction_id"]
    assert client.put(f"/v1/predictions/{prediction_id}/outcome", json=OUTCOME).status_code == 201


def test_ten_thousand_outcomes_in_bulk_are_joined_and_answered_per_row(
    client: FlaskClient,
) -> None:
    tumors = [SEED_JSON, MALIGNANT_JSON] * (MAX_BULK // 2)
    answers = client.post("/v1/predictions/batch", json={"tumors": tumors}).get_json()
    predicted = [a["prediction_id"] for a in answers["predictions"]]
    first = client.put(f"/v1/predictions/{predicted[0]}/outcome", json=OUTCOME)
    assert first.status_code == 201
    unknown = ids.ids(ids.new_block(now_ms=1_700_000_000_000), 1)[0]
    outcomes = [
        {
            "prediction_id": pid,
            "outcome": "benign" if i % 2 == 0 else "malignant",
            "source": "histology",
        }
        for i, pid in enumerate(predicted[: MAX_BULK - 1])
    ]
    outcomes[1]["outcome"] = "benign"  # a malignant answer confirmed benign: a false positive
    outcomes.append({"prediction_id": unknown, **OUTCOME})
    response = client.post("/v1/outcomes", json={"outcomes": outcomes})
    assert response.status_code == 200
    body = response.get_json()
    assert len(body["results"]) == MAX_BULK
    assert [r["row"] for r in body["results"]] == list(range(1, MAX_BULK + 1))
    assert body["results"][0] == {
        "row": 1,
        "prediction_id": predicted[0],
        "status": "conflict",
        "stored_outcome": "malignant",
    }
    assert body["results"][-1] == {"row": MAX_BULK, "prediction_id": unknown, "status": "unknown"}
    assert body["summary"] == {
        "applied": MAX_BULK - 2,
        "unchanged": 0,
        "corrected": 0,
        "conflict": 1,
        "unknown": 1,
        "erased": 0,
    }
    assert record_of(client, predicted[1])["outcome"]["outcome"] == "benign"
    assert record_of(client, predicted[2])["outcome"]["outcome"] == "benign"
    again = client.post("/v1/outcomes", json={"outcomes": outcomes[1:3]}).get_json()
    assert [r["status"] for r in again["results"]] == ["unchanged", "unchanged"]
    too_many = problem(client.post("/v1/outcomes", json={"outcomes": [*outcomes, OUTCOME]}), 422)
    assert "10,000" in too_many["errors"]["outcomes"]


def test_bulk_outcomes_as_csv_and_by_case_reference(client: FlaskClient) -> None:
    batch = client.post(
        "/v1/predictions/batch",
        json={"tumors": [SEED_JSON] * 3, "case_references": ["C-1", "C-1", "C-2"]},
    ).get_json()["predictions"]
    body = (
        "prediction_id,case_reference,outcome,source,confirmed_on,corrects\n"
        ",C-1,benign,histology,2026-11-30,\n"
        ",C-9,benign,histology,,\n"
        f"{batch[2]['prediction_id']},,malignant,follow-up,,false\n"
    )
    answer = client.post("/v1/outcomes", data=body, content_type="text/csv").get_json()
    assert [(r["row"], r.get("prediction_id"), r["status"]) for r in answer["results"]] == [
        (1, batch[0]["prediction_id"], "applied"),
        (1, batch[1]["prediction_id"], "applied"),
        (2, None, "unknown"),
        (3, batch[2]["prediction_id"], "applied"),
    ]
    assert record_of(client, batch[1]["prediction_id"])["outcome"]["confirmed_on"] == "2026-11-30"
    bad = problem(
        client.post(
            "/v1/outcomes", data="outcome,source,colour\nbenign,x,red\n", content_type="text/csv"
        ),
        422,
    )
    assert set(bad["errors"]) == {"header.colour"}
    bad = problem(
        client.post("/v1/outcomes", json={"outcomes": [{"outcome": "benign", "source": "x"}]}),
        422,
    )
    assert "exactly one" in bad["errors"]["outcomes[0].prediction_id"]


# Erasure


def test_a_prediction_can_be_erased_and_stays_erased(client: FlaskClient) -> None:
    answers = client.post(
        "/v1/predictions/batch",
        json={"tumors": [SEED_JSON, MALIGNANT_JSON], "case_references": ["E-1", "E-2"]},
    ).get_json()["predictions"]
    gone, kept = answers[0]["prediction_id"], answers[1]["prediction_id"]
    client.put(f"/v1/predictions/{gone}/outcome", json=OUTCOME)
    first = client.delete(f"/v1/predictions/{gone}")
    assert first.status_code == 200 and first.get_json()["status"] == "erased"
    again = client.delete(f"/v1/predictions/{gone}")  # idempotent
    assert again.status_code == 200 and again.get_json()["status"] == "already erased"
    body = problem(client.get(f"/v1/predictions/{gone}"), 404)
    assert body["detail"].endswith("was erased.") and body["type"].endswith("erased-prediction")
    assert problem(client.put(f"/v1/predictions/{gone}/outcome", json=OUTCOME), 404)
    assert record_of(client, kept)["tumor"] == MALIGNANT_JSON  # its neighbour is untouched
    by_case = client.post(
        "/v1/outcomes", json={"outcomes": [{"case_reference": "E-1", **OUTCOME}]}
    ).get_json()
    assert by_case["results"][0]["status"] == "unknown"  # its case reference is gone too


# Records off, required, and the writer's buffer


def test_with_records_off_answers_keep_their_ids_and_records_are_not_found(
    tmp_path: Path,
) -> None:
    client = make_app(tmp_path, RECORDS="off").test_client()
    answer = client.post("/v1/predictions", json=SEED_JSON).get_json()
    assert PREDICTION_ID.fullmatch(answer["prediction_id"])
    body = problem(client.get(f"/v1/predictions/{answer['prediction_id']}"), 404)
    assert "ONCOLOGY_RECORDS=off" in body["detail"]
    assert not (tmp_path / "records.sqlite3").exists()


def store_at(path: Path) -> RecordStore:
    engine = engine_for(f"sqlite:///{path}")
    return RecordStore(engine)


def an_answer(tumors: int = 1, *, at: dt.datetime | None = None) -> AnswerRecord:
    block = ids.new_block()
    rows = np.full((tumors, 9), 3.0)
    return AnswerRecord(
        ids.first_id(block),
        at or dt.datetime.now(dt.UTC),
        "1.0.0",
        "stable",
        "test",
        "req",
        0.5,
        rows,
        [0.25] * tumors,
        [False] * tumors,
    )


def metric(name: str, labels: str = "") -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(name, dict(p.split("=") for p in labels.split(",") if p))
    return value or 0.0


def test_while_the_database_is_away_the_buffer_holds_then_drains(tmp_path: Path) -> None:
    """A SQLite file in a folder that does not exist yet: every write fails until it does."""
    missing = tmp_path / "not-yet"
    writer = RecordWriter(
        store_at(missing / "r.sqlite3"), capacity=100, interval=0.02, required=False
    )
    errors_before = metric("oncology_prediction_records_write_errors_total")
    written_before = metric("oncology_prediction_records_written_total")
    for _ in range(10):
        writer.add(an_answer(5))
    assert not writer.flush(timeout=0.3)
    assert writer.pending == 50 and writer.accepting
    assert metric("oncology_prediction_records_write_errors_total") > errors_before
    missing.mkdir()
    upgrade(engine_for(f"sqlite:///{missing / 'r.sqlite3'}"))
    assert writer.flush(timeout=10)
    assert writer.pending == 0
    assert store_at(missing / "r.sqlite3").count_tumors() == 50
    assert metric("oncology_prediction_records_written_total") - written_before == 50


def test_a_full_buffer_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "not-yet" / "r.sqlite3"
    writer = RecordWriter(store_at(path), capacity=20, interval=0.02, required=False)
    dropped_before = metric("oncology_prediction_records_dropped_total", "reason=full")
    answers = [an_answer(5) for _ in range(6)]
    for answer in answers:
        writer.add(answer)
    assert writer.pending == 20
    assert metric("oncology_prediction_records_dropped_total", "reason=full") - dropped_before == 10
    path.parent.mkdir()
    upgrade(engine_for(f"sqlite:///{path}"))
    assert writer.flush(timeout=10)
    kept = store_at(path).exists([a.first_id for a in answers])
    assert kept == {a.first_id for a in answers[2:]}  # the newest four


def test_a_full_buffer_waits_for_a_reachable_database_rather_than_drop(tmp_path: Path) -> None:
    """Backpressure: a buffer of 10 tumors, a writer due only every minute, answers of 5 tumors:
    each request that fills the buffer waits for the writer, and nothing is dropped."""
    path = tmp_path / "r.sqlite3"
    upgrade(engine_for(f"sqlite:///{path}"))
    writer = RecordWriter(store_at(path), capacity=10, interval=60, required=False)
    dropped_before = metric("oncology_prediction_records_dropped_total", "reason=full")
    answers = [an_answer(5) for _ in range(12)]
    for answer in answers:
        writer.add(answer)
    assert metric("oncology_prediction_records_dropped_total", "reason=full") == dropped_before
    assert writer.flush(timeout=10)
    assert store_at(path).exists([a.first_id for a in answers]) == {a.first_id for a in answers}


def test_required_records_refuse_predictions_and_readiness_when_the_buffer_is_full(
    tmp_path: Path,
) -> None:
    app = make_app(
        tmp_path,
        RECORDS="required",
        RECORDS_BUFFER=3,
        RECORDS_FLUSH_SECONDS=0.02,
        DATABASE_URL=f"sqlite:///{tmp_path / 'away' / 'r.sqlite3'}",
    )
    client = app.test_client()
    for _ in range(3):
        assert client.post("/v1/predictions", json=SEED_JSON).status_code == 200
    refused = problem(client.post("/v1/predictions", json=SEED_JSON), 503)
    assert "ONCOLOGY_RECORDS=required" in refused["detail"]
    assert client.post("/v1/predictions/batch", json={"tumors": [SEED_JSON]}).status_code == 503
    assert client.get("/readyz").status_code == 503
    (tmp_path / "away").mkdir()
    upgrade(engine_for(f"sqlite:///{tmp_path / 'away' / 'r.sqlite3'}"))
    assert app.extensions["oncology"].recorder.flush(timeout=10)
    assert client.get("/readyz").status_code == 200
    assert client.post("/v1/predictions", json=SEED_JSON).status_code == 200


def test_the_record_metrics_are_on_the_page(client: FlaskClient) -> None:
    client.post("/v1/predictions/batch", json={"tumors": [SEED_JSON] * 4})
    client.application.extensions["oncology"].recorder.flush(timeout=5)
    page = scrape(client)
    for name in ("queued_total", "written_total", "pending", "write_seconds_count"):
        assert f"oncology_prediction_records_{name}" in page, name


# Migrations, retention, export


def test_migrations_from_empty_and_from_the_previous_revision(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    assert current_revision(engine) is None
    upgrade(engine, "0002")
    assert current_revision(engine) == "0002"
    answer = an_answer(2)
    with engine.begin() as connection:  # as the previous revision's service wrote it
        connection.execute(answers.insert(), pack(answer))
    upgrade(engine)
    assert current_revision(engine) == head_revision() == "0003"
    store = RecordStore(engine)
    assert store.count_tumors() == 2
    # 0003 added the day rows of the answers already on record
    (group,) = groups(store, Window())
    assert group.answered.tolist() == [2, 0] and group.expected[0].sum() == pytest.approx(2)
    second = ids.ids(answer.first_id[:-6], 2)[1]
    record = store.record(second)
    assert record is not None and record["tumor"] == dict.fromkeys(FEATURES, 3)
    downgrade(engine, "0001")
    assert "outcomes" not in sa.inspect(engine).get_table_names()
    upgrade(engine)


def test_purge_deletes_what_is_past_the_retention_with_its_outcomes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'p.sqlite3'}"
    monkeypatch.setenv("ONCOLOGY_DATABASE_URL", url)
    assert cli.main(["upgrade"]) == 0
    store = RecordStore(engine_for(url))
    now = dt.datetime.now(dt.UTC)
    old, recent = an_answer(3, at=now - dt.timedelta(days=401)), an_answer(2, at=now)
    store.write([old, recent])
    from webservice.records.outcomes import report

    store.apply_outcomes([report(OUTCOME, prediction_id=old.first_id)], by="lab")
    assert cli.main(["purge"]) == 0
    assert "purged 1 answer (3 tumors)" in capsys.readouterr().out
    assert store.count_tumors() == 2 and store.record(old.first_id) is None
    monkeypatch.setenv("ONCOLOGY_RETENTION_DAYS", "1")
    assert cli.main(["purge", "--days", "400"]) == 0 and store.count_tumors() == 2


def test_export_lists_each_tumor_with_its_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'e.sqlite3'}"
    monkeypatch.setenv("ONCOLOGY_DATABASE_URL", url)
    client = make_app(tmp_path, DATABASE_URL=url).test_client()
    answers = client.post(
        "/v1/predictions/batch", json={"tumors": [SEED_JSON, {**SEED_JSON, "mitoses": None}]}
    ).get_json()["predictions"]
    client.put(f"/v1/predictions/{answers[1]['prediction_id']}/outcome", json=OUTCOME)
    out = tmp_path / "export.csv"
    assert cli.main(["export", "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["prediction_id"] for r in rows] == [a["prediction_id"] for a in answers]
    assert rows[1]["mitoses"] == "" and rows[1]["outcome"] == "malignant"
    assert rows[0]["outcome"] == "" and rows[0]["prediction"] == "benign"
    assert cli.main(["export", "--confirmed-only", "-o", str(out)]) == 0
    assert len(list(csv.DictReader(out.open()))) == 1


def test_the_cli_names_a_bad_database_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ONCOLOGY_DATABASE_URL", "mysql://someone:secret@db/x")
    assert cli.main(["upgrade"]) == 1
    err = capsys.readouterr().err
    assert "neither SQLite nor PostgreSQL" in err and "secret" not in err


def test_the_openapi_document_lists_the_record_operations(client: FlaskClient) -> None:
    paths = client.get("/swagger.json").get_json()["paths"]
    assert set(paths["/v1/predictions/{prediction_id}"]) >= {"get", "delete"}
    assert "put" in paths["/v1/predictions/{prediction_id}/outcome"]
    assert "post" in paths["/v1/outcomes"]
    assert json.dumps(paths).count("outcome") > 3
