"""CSV on POST /v1/predictions/batch: the same answers, validation, limits and errors as JSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from oncology_model import FEATURES, InvalidTumorError
from oncology_model.datamodel import cell_error, cell_value
from oncology_model.validation import validate_cells
from tests.helpers import SEED_JSON, json_tumors, problem, tumors_frame, without_ids
from webservice import create_app

CSV_HEADERS = {"Content-Type": "text/csv", "Accept": "text/csv"}


def as_csv(tumors: list[dict[str, Any]], order: list[str] | None = None) -> str:
    names = order or list(FEATURES)
    lines = [",".join(names)]
    lines += [",".join("" if t[n] is None else str(t[n]) for n in names) for t in tumors]
    return "\n".join(lines) + "\n"


def read_answer(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200, response.data
    assert response.content_type == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


@pytest.mark.parametrize("explain", [False, True])
def test_csv_answers_equal_the_json_answers(client: FlaskClient, explain: bool) -> None:
    tumors = json_tumors(tumors_frame(500))
    query = "?explain=true" if explain else ""
    expected = client.post(f"/v1/predictions/batch{query}", json={"tumors": tumors}).get_json()
    order = list(reversed(FEATURES))  # columns in any order
    rows = read_answer(
        client.post(
            f"/v1/predictions/batch{query}", data=as_csv(tumors, order), headers=CSV_HEADERS
        )
    )
    assert len(rows) == len(tumors)
    for row, answer in zip(rows, expected["predictions"], strict=True):
        assert row["prediction"] == answer["prediction"]
        assert float(row["malignant_probability"]) == answer["probabilities"]["malignant"]
        assert row["imputed"] == ";".join(answer["imputed"])
        if explain:
            assert [float(row[f"contribution_{n}"]) for n in FEATURES] == list(
                answer["contributions"].values()
            )
        else:
            assert "contribution_mitoses" not in row


def test_csv_in_json_out_and_json_in_csv_out(client: FlaskClient) -> None:
    tumors = [SEED_JSON, {**SEED_JSON, "bare_nuclei": None}]
    expected = client.post("/v1/predictions/batch", json={"tumors": tumors}).get_json()
    response = client.post("/v1/predictions/batch", data=as_csv(tumors), content_type="text/csv")
    assert response.content_type == "application/json"
    assert without_ids(response.get_json()) == without_ids(expected)
    rows = read_answer(
        client.post(
            "/v1/predictions/batch", json={"tumors": tumors}, headers={"Accept": "text/csv"}
        )
    )
    assert [r["imputed"] for r in rows] == ["", "bare_nuclei"]
    preferred = client.post(
        "/v1/predictions/batch", json={"tumors": tumors},
        headers={"Accept": "text/csv;q=0.5, application/json"},
    )  # fmt: skip
    assert preferred.content_type == "application/json"


def test_csv_body_with_bom_crlf_quotes_and_question_marks(client: FlaskClient) -> None:
    body = '\ufeff"' + '","'.join(FEATURES) + '"\r\n' + "5,1,1,1,2,?,3,1,1\r\n\r\n"
    rows = read_answer(
        client.post("/v1/predictions/batch", data=body.encode(), headers=CSV_HEADERS)
    )
    assert [r["imputed"] for r in rows] == ["bare_nuclei"]


def test_bad_cells_are_named_by_row_and_column_all_at_once(client: FlaskClient) -> None:
    good = ",".join(["1"] * 9)
    body = "\n".join(
        [",".join(FEATURES), good, "0,1,1,1,1,1,1,1,x", good, "1,1", "1,1,1,1,1,1,1,1,2.5"]
    )
    response = client.post("/v1/predictions/batch", data=body, headers=CSV_HEADERS)
    errors = problem(response, 422)["errors"]
    assert set(errors) == {"row 2.clump_thickness", "row 2.mitoses", "row 4", "row 5.mitoses"}
    assert "out of range" in errors["row 2.clump_thickness"]
    assert "'x' is not a number" in errors["row 2.mitoses"]
    assert errors["row 4"] == "has 2 cells; the header has 9"
    assert "not a whole number" in errors["row 5.mitoses"]


def test_bad_headers_are_named(client: FlaskClient) -> None:
    names = [*FEATURES[:-1], "mitosis", "clump_thickness"]
    body = ",".join(names) + "\n" + ",".join(["1"] * 10) + "\n"
    errors = problem(client.post("/v1/predictions/batch", data=body, headers=CSV_HEADERS), 422)[
        "errors"
    ]
    assert set(errors) == {"header.mitosis", "header.mitoses", "header.clump_thickness"}
    assert errors["header.mitoses"].startswith("is missing: the header names the nine features")
    assert errors["header.mitosis"].startswith("is not a feature name")
    assert errors["header.clump_thickness"] == "appears more than once"


def test_header_problems_are_told_even_without_rows(client: FlaskClient) -> None:
    body = ",".join(FEATURES[:-1]) + "\n"
    errors = problem(client.post("/v1/predictions/batch", data=body, headers=CSV_HEADERS), 422)[
        "errors"
    ]
    assert errors == {
        "header.mitoses": "is missing: the header names the nine features, in any order: "
        + ", ".join(FEATURES),
        "rows": "has 0 rows: must be 1 to 10000 rows after the header",
    }


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"tumors": [SEED_JSON]}),
        json.dumps({"tumors": [SEED_JSON, SEED_JSON]}, indent=2),
        "  " + json.dumps([SEED_JSON]),
    ],
)
def test_json_sent_as_csv_is_told_which_content_type_to_send(
    client: FlaskClient, body: str
) -> None:
    answer = problem(client.post("/v1/predictions/batch", data=body, headers=CSV_HEADERS), 400)
    assert answer["errors"] == {
        "body": "not valid CSV: it looks like JSON: send JSON with Content-Type: "
        "application/json, or CSV (a header row of the feature names, then rows) as text/csv"
    }


@pytest.mark.parametrize(
    ("body", "status", "key"),
    [
        (b"", 400, "body"),
        (b"\xff\xfe", 400, "body"),
        (",".join(FEATURES).encode() + b"\n", 422, "rows"),
        (b'"unclosed\n', 400, "body"),
    ],
)
def test_empty_or_broken_csv_bodies(
    client: FlaskClient, body: bytes, status: int, key: str
) -> None:
    assert (
        key
        in problem(client.post("/v1/predictions/batch", data=body, headers=CSV_HEADERS), status)[
            "errors"
        ]
    )


def test_csv_limits_are_the_json_limits(tmp_path: Any) -> None:
    app = create_app({"TESTING": True, "MAX_BATCH": 3, "MAX_BODY_BYTES": 2000})
    client = app.test_client()
    body = as_csv([SEED_JSON] * 4)
    assert (
        "4 rows"
        in problem(client.post("/v1/predictions/batch", data=body, headers=CSV_HEADERS), 422)[
            "errors"
        ]["rows"]
    )
    big = as_csv([SEED_JSON] * 3) + "\n" * 2000
    problem(client.post("/v1/predictions/batch", data=big, headers=CSV_HEADERS), 413)


def test_other_types_are_415_naming_both(client: FlaskClient) -> None:
    response = client.post("/v1/predictions/batch", data="x", content_type="text/plain")
    assert "text/csv" in problem(response, 415)["detail"]


def test_flask_resource_answers_csv_exactly_as_the_lane(
    client: FlaskClient, client_without_lane: FlaskClient
) -> None:
    body = as_csv([SEED_JSON, {**SEED_JSON, "mitoses": None}])
    through_lane = client.post("/v1/predictions/batch", data=body, headers=CSV_HEADERS)
    through_flask = client_without_lane.post(
        "/v1/predictions/batch", data=body, headers=CSV_HEADERS
    )
    assert through_lane.headers["Content-Type"] == through_flask.headers["Content-Type"]
    assert without_ids(through_lane.get_data()) == without_ids(through_flask.get_data())
    assert np.isfinite([float(r["malignant_probability"]) for r in read_answer(through_lane)]).all()


CELLS = st.one_of(
    st.sampled_from(
        ["", "?", " 3 ", "5.0", "05", "2.5", "11", "0", "-1", "x", "nan", "inf", "1e1"]
    ),
    st.integers(1, 10).map(str),
    st.text(max_size=3),
)


@given(st.lists(st.lists(CELLS, min_size=9, max_size=9), min_size=1, max_size=6))
@settings(max_examples=150, deadline=None)
def test_csv_validation_agrees_with_the_cell_rule(records: list[list[str]]) -> None:
    """`validate_cells` (with its fast path) accepts exactly what `cell_error` accepts, with the
    values `cell_value` gives, and names every bad cell."""
    expected = {
        f"row {n}.{name}": error
        for n, record in enumerate(records, start=1)
        for name, text in zip(FEATURES, record, strict=True)
        if (error := cell_error(text)) is not None
    }
    try:
        rows = validate_cells(list(FEATURES), records)
    except InvalidTumorError as exc:
        assert exc.errors == expected
        return
    assert not expected
    values = [[cell_value(text) for text in record] for record in records]
    assert np.array_equal(
        rows, np.array([[np.nan if v is None else v for v in r] for r in values], float),
        equal_nan=True,
    )  # fmt: skip


def test_openapi_documents_csv_on_the_batch_endpoint(client: FlaskClient) -> None:
    operation = client.get("/swagger.json").get_json()["paths"]["/v1/predictions/batch"]["post"]
    assert operation["consumes"] == ["application/json", "text/csv"]
    assert {"application/json", "text/csv", "application/problem+json"} == set(
        operation["produces"]
    )
    assert "text/csv" in operation["description"]


def test_csv_batches_and_rejections_are_counted_like_json(client: FlaskClient) -> None:
    from tests.helpers import delta, scrape

    before = scrape(client)
    client.post("/v1/predictions/batch", data=as_csv([SEED_JSON] * 3), headers=CSV_HEADERS)
    body = ",".join(FEATURES) + ",mitosis\n" + "1," * 9 + "1\n"
    client.post("/v1/predictions/batch", data=body, headers=CSV_HEADERS)
    bad = ",".join(FEATURES) + "\n" + "1," * 8 + "11\n1,1\n"
    client.post("/v1/predictions/batch", data=bad, headers=CSV_HEADERS)
    after = scrape(client)
    assert delta(before, after, 'oncology_predictions_total{prediction="benign"}') == 3
    assert delta(before, after, "oncology_batch_size_count") == 3
    rejected = 'oncology_rejected_values_total{field="%s"}'
    assert delta(before, after, rejected % "unknown_field") == 1  # header.mitosis
    assert delta(before, after, rejected % "mitoses") == 1  # row 1.mitoses
    assert delta(before, after, rejected % "rows") == 1  # row 2: wrong width
