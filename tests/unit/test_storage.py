"""`s3://` locations and what a failed object store operation says (no store needed here: the
store itself is tested in tests/service/test_storage.py and test_serve_from_storage.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import (
    ClientError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from oncology_model.storage import (
    ObjectUrl,
    content_type,
    is_url,
    location,
    storage_error,
)

URL = ObjectUrl("models", "v1/model.onnx")


def test_locations_are_paths_or_urls() -> None:
    assert location("s3://models/v1/") == ObjectUrl("models", "v1/")
    assert ObjectUrl.parse("s3://models/v1/").is_prefix and not URL.is_prefix
    assert location("models/v1") == Path("models/v1")
    assert is_url("s3://b/k") and not is_url(Path("s3://b/k")) and not is_url("b/k")
    assert str(ObjectUrl("b", "models").child("1.0.0+abc/")) == "s3://b/models/1.0.0+abc/"
    assert URL.name == "model.onnx" and ObjectUrl("b", "").child("x").key == "x"
    with pytest.raises(ValueError, match="names no bucket"):
        ObjectUrl.parse("s3:///key")


def client_error(code: str, status: int) -> ClientError:
    answer = {
        "Error": {"Code": code, "Message": "..."},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(answer, "GetObject")


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            client_error("NoSuchBucket", 404),
            "s3://models/v1/model.onnx: the bucket models does not exist",
        ),
        (client_error("NoSuchKey", 404), "s3://models/v1/model.onnx does not exist"),
        (client_error("InvalidAccessKeyId", 403), "refused the credentials (InvalidAccessKeyId)"),
        (client_error("SignatureDoesNotMatch", 403), "refused the credentials"),
        (client_error("PreconditionFailed", 412), "already exists and is never overwritten"),
        (NoCredentialsError(), "no AWS credentials found"),
        (ParamValidationError(report="Invalid bucket name"), "cannot be asked for: "),
        (ReadTimeoutError(endpoint_url="http://store"), "the object store stopped answering"),
        (ConnectionResetError(), "the transfer broke off (ConnectionResetError)"),
    ],
)
def test_a_failure_says_what_went_wrong_with_which_object(error: Exception, message: str) -> None:
    assert message in str(storage_error(URL, error))


def test_objects_are_stored_with_their_content_type() -> None:
    assert content_type("report/report.json") == "application/json"
    assert content_type("report/roc.png") == "image/png"
    assert content_type("scored.csv") == "text/csv"
    assert content_type("dist/oncology_model-1.0.0-py3-none-any.whl") == "application/zip"
    assert content_type("model.onnx") == "application/octet-stream"
