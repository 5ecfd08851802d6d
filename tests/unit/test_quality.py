"""Is it right? Realized quality from outcomes against figures computed here independently, the
intervals against scipy's, the estimate from probabilities, verification bias, and the canary's
verdict (PROMOTE, WAIT, ROLL BACK) with its exit codes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from scipy.stats import binomtest

from oncology_model.dataset import load_dataset
from tests.conftest import ClosingClient
from tests.helpers import delta, problem, scrape
from webservice import create_app
from webservice.records import ids, quality_cli
from webservice.records.quality import (
    PROMOTE,
    ROLL_BACK,
    WAIT,
    Plan,
    Window,
    groups,
    newcombe,
    verdict,
    wilson,
)
from webservice.records.store import AnswerRecord, RecordStore, engine_for, upgrade


@pytest.mark.parametrize(("k", "n"), [(0, 5), (5, 5), (3, 10), (140, 150), (1, 1000), (0, 1)])
def test_wilson_intervals_match_scipy(k: int, n: int) -> None:
    reference = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson(k, n) == pytest.approx((reference.low, reference.high), abs=1e-9)


@pytest.mark.parametrize(("k1", "n1", "k2", "n2"), [(56, 70, 48, 80), (9, 10, 3, 10), (5, 5, 0, 7)])
def test_newcombe_intervals_are_built_from_the_two_wilson_intervals(
    k1: int, n1: int, k2: int, n2: int
) -> None:
    """Newcombe 1998, method 10, from scipy's Wilson intervals; his first worked example
    (56/70 against 48/80) gives 0.0524 to 0.3339."""
    one = binomtest(k1, n1).proportion_ci(method="wilson")
    two = binomtest(k2, n2).proportion_ci(method="wilson")
    p1, p2 = k1 / n1, k2 / n2
    low = p1 - p2 - np.sqrt((p1 - one.low) ** 2 + (two.high - p2) ** 2)
    high = p1 - p2 + np.sqrt((one.high - p1) ** 2 + (p2 - two.low) ** 2)
    assert newcombe(k1, n1, k2, n2) == pytest.approx((low, high), abs=1e-9)
    if (k1, n1, k2, n2) == (56, 70, 48, 80):
        assert newcombe(k1, n1, k2, n2) == pytest.approx((0.0524, 0.3339), abs=5e-5)


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'q.sqlite3'}"})
    app.test_client_class = ClosingClient
    return app.test_client()


def as_tumors(rows: np.ndarray) -> list[dict[str, int | None]]:
    from oncology_model.datamodel import FEATURES

    return [
        {name: None if np.isnan(v) else int(v) for name, v in zip(FEATURES, row, strict=True)}
        for row in rows
    ]


def test_the_699_bundled_cases_with_their_classes_give_the_confusion_counts_computed_here(
    client: FlaskClient,
) -> None:
    data = load_dataset()
    before = scrape(client)
    answers = client.post(
        "/v1/predictions/batch",
        json={"tumors": as_tumors(data.X), "case_references": [str(s) for s in data.sample_ids]},
    ).get_json()["predictions"]
    predicted = np.array([a["prediction"] == "malignant" for a in answers])
    probability = np.array([a["probabilities"]["malignant"] for a in answers])
    truth = data.y.astype(bool)
    outcomes = [
        {
            "prediction_id": a["prediction_id"],
            "outcome": "malignant" if y else "benign",
            "source": "UCI label",
        }
        for a, y in zip(answers, truth, strict=True)
    ]
    assert client.post("/v1/outcomes", json={"outcomes": outcomes}).status_code == 200
    report = client.get("/v1/quality").get_json()
    (group,) = report["groups"]
    tp = int((predicted & truth).sum())
    fp = int((predicted & ~truth).sum())
    fn = int((~predicted & truth).sum())
    tn = int((~predicted & ~truth).sum())
    assert group["confusion"] == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    assert tp + fn == 241 and tn + fp == 458
    assert group["answered"] == {
        "malignant": int(predicted.sum()),
        "benign": int((~predicted).sum()),
    }
    realized = group["realized"]
    for name, (k, n) in {
        "sensitivity": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "ppv": (tp, tp + fp),
        "npv": (tn, tn + fn),
    }.items():
        reference = binomtest(k, n).proportion_ci(method="wilson")
        assert realized[name]["value"] == pytest.approx(k / n)
        assert (realized[name]["low"], realized[name]["high"]) == pytest.approx(
            (reference.low, reference.high), abs=1e-9
        )
    assert realized["brier"] == pytest.approx(float(((probability - truth) ** 2).mean()))
    assert sum(row["cases"] for row in realized["calibration"]) == 699
    # CBPE: a probability is the chance of malignant; expected counts are sums of them.
    expected = group["estimated"]["expected"]
    assert expected["tp"] == pytest.approx(float(probability[predicted].sum()))
    assert expected["fn"] == pytest.approx(float(probability[~predicted].sum()))
    assert expected["tn"] == pytest.approx(float((1 - probability[~predicted]).sum()))
    assert group["validation"]["sensitivity"]["mean"] > 0.9  # the model card's, beside it
    # The same in the metrics: confirmed cases as outcomes arrived, expected ones as answered.
    after = scrape(client)
    version = group["model_version"]

    def counted(name: str, predicted: str, outcome: str) -> float:
        key = (
            f'{name}{{model_version="{version}",outcome="{outcome}",predicted="{predicted}",'
            'track="stable"}'
        )
        return delta(before, after, key)

    assert counted("oncology_confirmed_cases_total", "malignant", "malignant") == tp
    assert counted("oncology_confirmed_cases_total", "benign", "malignant") == fn
    assert counted("oncology_confirmed_cases_total", "benign", "benign") == tn
    assert counted("oncology_expected_cases_total", "malignant", "malignant") == pytest.approx(
        expected["tp"], abs=1e-3
    )
    assert counted("oncology_expected_cases_total", "benign", "benign") == pytest.approx(
        expected["tn"], abs=1e-3
    )
    assert f'oncology_model_validation{{figure="sensitivity",model_version="{version}"}}' in after
    assert group["warnings"] == []
    assert group["confirmed"]["of_benign_answers"]["share"] == 1.0


def test_verification_bias_is_named(client: FlaskClient) -> None:
    data = load_dataset()
    answers = client.post("/v1/predictions/batch", json={"tumors": as_tumors(data.X)}).get_json()[
        "predictions"
    ]
    outcomes = [
        {
            "prediction_id": a["prediction_id"],
            "outcome": "malignant" if y else "benign",
            "source": "histology",
        }
        for i, (a, y) in enumerate(zip(answers, data.y, strict=True))
        if a["prediction"] == "malignant" or i % 10 == 0
    ]
    client.post("/v1/outcomes", json={"outcomes": outcomes})
    (group,) = client.get("/v1/quality").get_json()["groups"]
    (warning,) = group["warnings"]
    assert warning.startswith("verification bias: 10% of benign answers are confirmed against 100%")


def test_quality_filters_and_their_errors(client: FlaskClient) -> None:
    client.post("/v1/predictions", json=as_tumors(load_dataset().X[:1])[0])
    assert len(client.get("/v1/quality?track=stable").get_json()["groups"]) == 1
    assert client.get("/v1/quality?track=canary").get_json()["groups"] == []
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    assert client.get(f"/v1/quality?since={tomorrow}").get_json()["groups"] == []
    body = problem(client.get("/v1/quality?since=yesterday&colour=red"), 422)
    assert set(body["errors"]) == {"since", "colour"}


# The canary's verdict


def store_with(tmp_path: Path, cases: dict[str, tuple[int, int, int, int]]) -> str:
    """A record where each track has (tp, fn, tn, fp) confirmed cases."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp_path / 'v.sqlite3'}"
    engine = engine_for(url)
    upgrade(engine)
    store = RecordStore(engine)
    from webservice.records.outcomes import Report

    for track, (tp, fn, tn, fp) in cases.items():
        flags = [True] * tp + [False] * fn + [False] * tn + [True] * fp
        truth = ["malignant"] * (tp + fn) + ["benign"] * (tn + fp)
        block = ids.new_block()
        n = len(flags)
        store.write(
            [
                AnswerRecord(
                    ids.first_id(block),
                    dt.datetime.now(dt.UTC),
                    f"v-{track}",
                    track,
                    "t",
                    "r",
                    0.5,
                    np.full((n, 9), 5.0),
                    [0.9 if f else 0.1 for f in flags],
                    flags,
                )
            ]
        )
        store.apply_outcomes(
            [
                Report(pid, None, outcome, "histology", None, False)
                for pid, outcome in zip(ids.ids(block, n), truth, strict=True)
            ],
            by="lab",
        )
    engine.dispose()
    return url


def judged(url: str) -> dict[str, Any]:
    store = RecordStore(engine_for(url))
    found = {group.track: group for group in groups(store, Window(), by="track")}
    return verdict(found["canary"], found["stable"], Plan())


def test_a_degraded_canary_waits_with_few_outcomes_and_is_rolled_back_with_enough(
    tmp_path: Path,
) -> None:
    """The canary calls most benign tumors malignant: specificity 0.2 against 0.95."""
    few = judged(store_with(tmp_path / "few", {"stable": (3, 0, 5, 0), "canary": (3, 0, 1, 4)}))
    assert few["verdict"] == WAIT  # the early look's 99.9 % interval is still too wide
    assert few["needed"]["candidate"] == {"malignant": 137, "benign": 135}
    enough = judged(
        store_with(tmp_path / "many", {"stable": (45, 5, 95, 5), "canary": (50, 0, 20, 80)})
    )
    assert enough["verdict"] == ROLL_BACK  # early, as the difference is far beyond the margin
    specificity = enough["metrics"]["specificity"]
    assert specificity["worse_beyond_margin"] and specificity["difference"]["level"] == 0.999


def test_a_canary_as_good_as_stable_is_promoted_only_at_the_planned_size(tmp_path: Path) -> None:
    equal = {"stable": (133, 7, 133, 7), "canary": (134, 6, 134, 6)}
    result = judged(store_with(tmp_path / "plan", equal))
    assert result["verdict"] == PROMOTE and result["metrics"]["sensitivity"]["non_inferior"]
    early = judged(
        store_with(tmp_path / "early", {"stable": (95, 5, 95, 5), "canary": (99, 1, 99, 1)})
    )
    assert early["verdict"] == WAIT  # never PROMOTE before the planned size, however good
    assert early["needed"]["candidate"] == {"malignant": 40, "benign": 40}
    worse = judged(
        store_with(tmp_path / "worse", {"stable": (133, 7, 133, 7), "canary": (120, 20, 133, 7)})
    )
    assert worse["verdict"] == ROLL_BACK  # not shown non-inferior at the planned size


def test_compare_exits_by_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = store_with(tmp_path, {"stable": (45, 5, 95, 5), "canary": (50, 0, 20, 80)})
    monkeypatch.setenv("ONCOLOGY_DATABASE_URL", url)
    assert quality_cli.main(["compare", "--candidate", "canary", "--baseline", "stable"]) == 4
    out = capsys.readouterr().out
    assert "ROLL BACK: worse than the baseline beyond the margin" in out
    assert (
        quality_cli.main(["compare", "--malignant-cases", "10", "--benign-cases", "10", "--json"])
        == 4
    )
    assert json.loads(capsys.readouterr().out)["verdict"] == ROLL_BACK
    assert quality_cli.main(["compare", "--candidate", "stable", "--baseline", "stable"]) == 3
    assert "WAIT" in capsys.readouterr().out
    assert quality_cli.main([]) == 0
    table = capsys.readouterr().out
    assert "model v-canary, track canary: 150 answers, 150 confirmed" in table
    assert "sensitivity" in table and "estimated" in table
    monkeypatch.setenv("ONCOLOGY_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert quality_cli.main([]) == 1  # no schema: said in one line
    assert "the database failed" in capsys.readouterr().err
