"""Settings: defaults, then the environment, then the caller's; a bad one is named with what it
takes, before anything starts."""

from __future__ import annotations

import pytest

from webservice.config import load_config, startup_problem


def test_the_environment_overrides_the_defaults_and_the_caller_the_environment() -> None:
    environ = {"ONCOLOGY_MAX_BATCH": "50", "ONCOLOGY_PREDICTION_LANE": "off"}
    assert load_config(environ=environ)["MAX_BATCH"] == 50
    assert load_config(environ=environ)["PREDICTION_LANE"] is False
    assert load_config({"MAX_BATCH": 7}, environ=environ)["MAX_BATCH"] == 7


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ONCOLOGY_HEADER_TIMEOUT", "abc", "a whole number"),
        ("ONCOLOGY_ACCESS_LOG", "maybe", "true or false"),
    ],
)
def test_a_setting_that_does_not_parse_is_named_with_what_it_takes(
    variable: str, value: str, expected: str
) -> None:
    problem = startup_problem({variable: value})
    assert problem is not None
    assert problem.startswith(f"{variable}={value!r} is not a valid ")
    assert problem.endswith(f": expected {expected}")


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"ONCOLOGY_ARTIFACTS_DIR": "s3://"}, "ONCOLOGY_ARTIFACTS_DIR=s3:// names no bucket"),
        (
            {"ONCOLOGY_ARTIFACTS_DIR": "s3://models/v1/", "ONCOLOGY_STORAGE_TIMEOUT": "0"},
            "ONCOLOGY_STORAGE_TIMEOUT='0' is not a number of seconds above 0",
        ),
        ({"ONCOLOGY_ARTIFACTS_DIR": "s3://models/v1/", "ONCOLOGY_RECORDS": "off"}, None),
    ],
)
def test_a_model_in_a_bucket_is_checked_before_anything_starts(
    environ: dict[str, str], problem: str | None
) -> None:
    found = startup_problem(environ)
    assert found == problem or (problem is not None and found and found.startswith(problem))
