"""What several kinds of tests share: the example tumors, assertions on problem+json answers and
metrics pages, random tumor frames, and a check for the Debian tools the tests drive."""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from flask.testing import FlaskClient

from oncology_model import FEATURES
from oncology_model.verify import SEED_TUMOR


def require_debian_package(executable: str, package: str) -> None:
    """Fail, naming the install command, when `executable` is missing: tests install nothing
    (`make system-packages` or `.ci/run` do)."""
    if not Path(executable).exists():
        pytest.fail(
            f"{executable} is missing: run `make system-packages` (or apt-get install {package})"
        )


SEED_JSON = SEED_TUMOR.to_dict()
MALIGNANT_JSON = dict.fromkeys(SEED_JSON, 10)


PROBLEM_KEYS = {"type", "title", "status", "detail", "errors"}


def problem(response: Any, status: int) -> dict[str, Any]:
    """Assert `response` is an RFC 9457 problem with `status`, and return its body."""
    assert response.status_code == status, response.data
    assert response.status == f"{status} {HTTPStatus(status).phrase}"  # one casing everywhere
    assert response.content_type == "application/problem+json"
    body = response.get_json(force=True)
    assert set(body) == PROBLEM_KEYS
    assert body["status"] == status
    assert body["title"] == HTTPStatus(status).phrase
    assert body["type"].startswith("urn:oncology:problem:")
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def tumors_frame(n: int = 300, seed: int = 3) -> pd.DataFrame:
    """Random tumors, some scores not measured, indexed by sample labels."""
    rng = np.random.default_rng(seed)
    X = rng.integers(1, 11, size=(n, 9)).astype(float)
    X[rng.random(X.shape) < 0.08] = np.nan
    frame = pd.DataFrame(X, columns=list(FEATURES), index=[f"S-{i}" for i in range(n)])
    frame["notes"] = "kept by the caller, ignored here"
    return frame


def json_tumors(frame: pd.DataFrame) -> list[dict[str, int | None]]:
    return [
        {name: None if np.isnan(v) else int(v) for name, v in zip(FEATURES, row, strict=True)}
        for row in frame[list(FEATURES)].to_numpy()
    ]


def scrape(client: FlaskClient) -> dict[str, float]:
    """The metrics page as {'name{labels}': value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    samples = {}
    for line in response.get_data(as_text=True).splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def log_lines(captured: str) -> list[dict[str, Any]]:
    """The JSON lines of captured output; lines end at "\n" only (see `access_records`)."""
    return [json.loads(line) for line in captured.split("\n") if line.startswith("{")]


PREDICTION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def without_ids(answer: Any) -> Any:
    """An answer (JSON, or CSV bytes) with its prediction ids, which are new on every answer,
    checked (valid UUIDv7, all different) and replaced by "-", so that two answers compare."""
    found: list[str] = []

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            if value.get("name") == "prediction_id" and "data" in value:  # a V2 output
                found.extend(value["data"])
                return {**value, "data": "-"}
            if "prediction_id" in value:
                found.append(value["prediction_id"])
            return {k: "-" if k == "prediction_id" else strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    if isinstance(answer, bytes):
        lines = answer.decode().splitlines()
        assert lines[0].startswith("prediction_id,")
        found = [line.split(",", 1)[0] for line in lines[1:]]
        stripped: Any = "\n".join(line.split(",", 1)[1] for line in lines).encode()
    else:
        stripped = strip(answer)
    assert all(PREDICTION_ID.fullmatch(i) for i in found), found
    assert len(set(found)) == len(found)
    return stripped


def assert_same_answer(through_lane: Any, through_flask: Any) -> None:
    """The prediction lane's answer and the flask-restx resource's to the same request: the same
    status line, Content-Type and JSON (prediction ids aside: each answer has new ones)."""
    assert through_lane.status == through_flask.status
    assert through_lane.headers["Content-Type"] == through_flask.headers["Content-Type"]
    assert without_ids(through_lane.get_json()) == without_ids(json.loads(through_flask.get_data()))
