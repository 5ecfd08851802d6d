"""Bearer tokens: who gets in, what they are told when they do not, rotation, attribution."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from tests.conftest import ClosingClient
from tests.helpers import SEED_JSON, log_lines, problem
from webservice import create_app
from webservice.routes import route_of
from webservice.tokens import (
    TokenFile,
    TokensFileError,
    digest,
    main,
    new_token,
    parse,
)

ROOT = Path(__file__).resolve().parents[2]
ALICE, ALICE_LINE = new_token("alice")
BOB, BOB_LINE = new_token("bob")
PROMETHEUS, PROMETHEUS_LINE = new_token("prometheus")
# A lab that may only send outcomes, and an auditor who may also predict and read records.
LAB, LAB_LINE = new_token("lab", ("outcomes",))
AUDITOR, AUDITOR_LINE = new_token("auditor", ("records", "predict"))


def write(path: Path, text: str) -> Path:
    """Replace `path` atomically, as an operator (or Kubernetes) should."""
    partial = path.with_name(path.name + ".new")
    partial.write_text(text)
    partial.replace(path)
    return path


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    folder = tmp_path_factory.mktemp("tokens")
    tokens = write(
        folder / "tokens",
        f"# callers\n{ALICE_LINE}\n\n{BOB_LINE}  # bob's service\n{LAB_LINE}\n{AUDITOR_LINE}\n",
    )
    metrics_tokens = write(folder / "metrics-tokens", PROMETHEUS_LINE + "\n")
    application = create_app(
        {"TESTING": True, "TOKENS_FILE": str(tokens), "METRICS_TOKENS_FILE": str(metrics_tokens)}
    )
    application.test_client_class = ClosingClient
    return application


@pytest.fixture
def client(secured: Flask) -> FlaskClient:
    return secured.test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


PROTECTED = [
    ("POST", "/v1/predictions"),
    ("POST", "/v1/predictions/batch"),
    ("GET", "/v1/model"),
    ("GET", "/v1/predictions"),  # 405 for a caller, 401 for anyone else
    ("GET", "/nowhere"),  # unknown paths too: nothing about the API shows without a token
    ("GET", "/metrics"),
]
PROBES = ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"]
OPEN = [*PROBES, "/docs", "/swagger.json", "/swaggerui/swagger-ui.css"]


def assert_refused(response: Any, error: str | None = None) -> dict[str, Any]:
    assert response.status_code == 401
    assert response.content_type == "application/problem+json"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="oncology"')
    assert (f'error="{error}"' in challenge) if error else ("error=" not in challenge)
    assert response.headers["X-Request-ID"]
    problem: dict[str, Any] = response.get_json(force=True)
    assert set(problem) == {"type", "title", "status", "detail", "errors"}
    assert problem["status"] == 401 and "Authorization" in problem["errors"]
    return problem


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_protected_endpoint_refuses_a_request_without_a_token(
    client: FlaskClient, method: str, path: str
) -> None:
    problem = assert_refused(client.open(path, method=method, json=SEED_JSON))
    assert "Authorization: Bearer <token>" in problem["detail"]


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ("Basic YWxpY2U6c2VjcmV0", None),  # another scheme: no error code (RFC 6750, 3.1)
        ("Bearer", "invalid_token"),
        ("Bearer ", "invalid_token"),
        ("Bearer not-a-token", "invalid_token"),
        (f"Bearer {ALICE[:-1]}", "invalid_token"),  # one character short
        (f"Bearer {ALICE},Bearer {BOB}", "invalid_token"),  # two headers, as gunicorn joins them
        (f"Token {ALICE}", None),
        (ALICE, None),
        ("", None),
    ],
    # Fixed ids: the tokens are random per process, and ids are compared across xdist workers.
    ids=[
        "basic", "bearer-alone", "bearer-space", "not-a-token", "one-short", "two-headers",
        "token-scheme", "no-scheme", "empty",
    ],
)  # fmt: skip
def test_a_missing_or_wrong_token_is_refused(
    client: FlaskClient, header: str, error: str | None
) -> None:
    response = client.post("/v1/predictions", json=SEED_JSON, headers={"Authorization": header})
    problem = assert_refused(response, error)
    assert ALICE not in json.dumps(problem) and BOB not in json.dumps(problem)


def test_a_known_token_gets_an_answer(client: FlaskClient) -> None:
    for token in (ALICE, BOB):
        response = client.post("/v1/predictions", json=SEED_JSON, headers=bearer(token))
        assert response.status_code == 200 and response.get_json()["prediction"] == "benign"
    response = client.post(
        "/v1/predictions", json=SEED_JSON, headers={"Authorization": "bearer " + ALICE}
    )
    assert response.status_code == 200, "the scheme is case-insensitive (RFC 9110, 11.1)"
    batch = client.post("/v1/predictions/batch", json={"tumors": [SEED_JSON]}, headers=bearer(BOB))
    assert batch.status_code == 200
    assert client.get("/v1/model", headers=bearer(ALICE)).status_code == 200
    assert client.get("/v1/predictions", headers=bearer(ALICE)).status_code == 405


def test_metrics_take_only_the_metrics_tokens(client: FlaskClient) -> None:
    assert client.get("/metrics", headers=bearer(PROMETHEUS)).status_code == 200
    assert_refused(client.get("/metrics", headers=bearer(ALICE)), "invalid_token")
    refused = client.post("/v1/predictions", json=SEED_JSON, headers=bearer(PROMETHEUS))
    assert_refused(refused, "invalid_token")


@pytest.mark.parametrize("path", ["/v2", "/v2/models/oncology", "/v2/models/oncology/infer"])
def test_open_inference_protocol_needs_a_token_and_answers_in_its_error_shape(
    client: FlaskClient, path: str
) -> None:
    method = "POST" if path.endswith("/infer") else "GET"
    response = client.open(path, method=method, json={"inputs": []})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="oncology"')
    assert "Authorization: Bearer <token>" in response.get_json(force=True)["error"]
    assert client.open(
        path, method=method, json={"inputs": []}, headers=bearer(ALICE)
    ).status_code in (
        200,
        400,  # the empty tensor list: past the door, refused by the protocol's own validation
    )


@pytest.mark.parametrize("path", OPEN)
def test_probes_and_documentation_stay_open(client: FlaskClient, path: str) -> None:
    assert client.get(path).status_code == 200


@pytest.mark.parametrize(
    "query",
    ["access_token=" + ALICE, "explain=true&access_token=" + ALICE, "access_token="],
    ids=["token", "after-another-parameter", "empty"],
)
def test_a_token_in_the_query_string_is_never_accepted(client: FlaskClient, query: str) -> None:
    response = client.post(f"/v1/predictions?{query}", json=SEED_JSON, headers=bearer(ALICE))
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    assert 'error="invalid_request"' in response.headers["WWW-Authenticate"]
    problem = response.get_json(force=True)
    assert "Authorization: Bearer <token>" in problem["errors"]["access_token"]
    assert ALICE not in response.get_data(as_text=True)


def test_the_caller_is_logged_and_counted_but_the_token_never_is(
    client: FlaskClient, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    client.post("/v1/predictions", json=SEED_JSON, headers=bearer(ALICE))
    client.post("/v1/predictions", json=SEED_JSON, headers=bearer(ALICE[:-1]))
    client.post("/v1/predictions?access_token=" + BOB, json=SEED_JSON)
    client.get("/healthz", headers=bearer(ALICE))
    output = capfd.readouterr()
    lines = log_lines(output.out)
    assert [line["caller"] for line in lines] == [
        "alice",
        "unauthenticated",
        "unauthenticated",
        "anonymous",
    ]
    page = client.get("/metrics", headers=bearer(PROMETHEUS)).get_data(as_text=True)
    counted = 'caller="%s",endpoint="/v1/predictions",method="POST",status="%s"'
    assert counted % ("alice", "200") in page
    assert counted % ("unauthenticated", "401") in page
    assert counted % ("unauthenticated", "400") in page
    for token in (ALICE, ALICE[:-1], BOB, PROMETHEUS):
        for secret in (token, digest(token).hex()):
            assert secret not in output.out + output.err
            assert secret not in page


def test_without_tokens_files_every_caller_is_anonymous(
    app: Flask, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    assert app.test_client().post("/v1/predictions", json=SEED_JSON).status_code == 200
    assert [line["caller"] for line in log_lines(capfd.readouterr().out)] == ["anonymous"]
    assert app.test_client().get("/metrics").status_code == 200


def test_the_document_declares_the_bearer_scheme_on_protected_operations(
    client: FlaskClient,
) -> None:
    document = client.get("/swagger.json").get_json()
    validate(document)
    assert document["securityDefinitions"]["bearer"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "Bearer <token>: a caller's token (`make token name=CALLER`).",
    }
    assert "security" not in document  # open unless an operation says otherwise
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":  # the path's parameters, not an operation
                continue
            if path in PROBES:
                assert "security" not in operation, path
                assert "401" not in operation["responses"], path
                continue
            expected = "metrics_bearer" if path == "/metrics" else "bearer"
            assert operation["security"] == [{expected: []}], (path, method)
            assert operation["responses"]["401"]["schema"] == {"$ref": "#/definitions/Problem"}
            if expected == "bearer":  # Swagger UI tells which permission the token needs
                permission = operation["description"].rsplit("the permission ", 1)[1]
                assert permission == f"`{route_of(path).permission}`.", (path, method)
    described = {
        (path, method): operation["description"].rsplit("the permission ", 1)[-1]
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if path.startswith("/v1/") and method != "parameters"
    }
    assert described[("/v1/predictions", "post")] == "`predict`."
    assert described[("/v1/predictions/{prediction_id}", "delete")] == "`records`."
    assert described[("/v1/outcomes", "post")] == "`outcomes`."


def test_without_tokens_the_document_declares_no_security(app: Flask) -> None:
    document = app.test_client().get("/swagger.json").get_json()
    assert "securityDefinitions" not in document
    assert not any("security" in op for ops in document["paths"].values() for op in ops.values())


# --- the tokens file -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("alice", "line 1: expected NAME:SHA256HEX[:PERMISSION,...]"),
        ("# ok\n\nal ice:" + "0" * 64, "line 3: a caller name is 1 to 64 of"),
        (":" + "0" * 64, "line 1: a caller name is 1 to 64 of"),
        ("x" * 65 + ":" + "0" * 64, "line 1: a caller name is 1 to 64 of"),
        ("anonymous:" + "0" * 64, "line 1: the caller name 'anonymous' is reserved"),
        ("alice:" + ALICE, "line 1: after the colon must come the SHA-256 of the token"),
        ("alice:" + "0" * 63, "line 1: after the colon must come the SHA-256"),
        (f"{ALICE_LINE}\nbob:{ALICE_LINE.split(':')[1]}", "line 2: the same token as line 1"),
    ],
    ids=[
        "no-colon", "space-in-name", "no-name", "long-name", "reserved-name", "token-not-digest",
        "short-digest", "same-token-twice",
    ],
)  # fmt: skip
def test_a_broken_line_is_named_with_its_rule(text: str, rule: str) -> None:
    with pytest.raises(TokensFileError) as raised:
        parse(text, "tokens")
    assert f"tokens {rule}" in str(raised.value)
    assert ALICE not in str(raised.value), "a line's content is never repeated"


def test_a_caller_may_hold_two_tokens_while_rotating() -> None:
    second = new_token("alice")[1].split(":")[1].upper()  # upper-case hex is fine too
    entries = parse(f"{ALICE_LINE}\nalice:{second}\n", "tokens")
    assert [caller.name for _, caller in entries] == ["alice", "alice"]


def test_a_missing_or_broken_file_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(TokensFileError, match="cannot read the tokens file: No such file"):
        create_app({"TESTING": True, "TOKENS_FILE": str(tmp_path / "absent")})
    broken = write(tmp_path / "tokens", f"{ALICE_LINE}\nbob\n")
    with pytest.raises(TokensFileError, match=re.escape("line 2: expected NAME:SHA256HEX[:")):
        create_app({"TESTING": True, "TOKENS_FILE": str(broken)})


def kubernetes_secret(folder: Path, text: str) -> Path:
    """A Secret volume as the kubelet writes it: tokens -> ..data/tokens, ..data -> ..<version>.
    Each call writes a new version and swaps `..data` atomically."""
    version = folder / f"..2026_{len(list(folder.glob('..2026_*'))):02d}"
    version.mkdir()
    (version / "tokens").write_text(text)
    link = folder / "..data_tmp"
    link.symlink_to(version.name)
    link.replace(folder / "..data")
    if not (folder / "tokens").is_symlink():
        (folder / "tokens").symlink_to("..data/tokens")
    return folder / "tokens"


def test_a_swapped_secret_is_read_and_a_broken_one_keeps_the_tokens_in_force(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from webservice.observability import configure_logging

    configure_logging()
    path = kubernetes_secret(tmp_path, ALICE_LINE + "\n")
    tokens = TokenFile(str(path), check_seconds=0)
    assert tokens.caller(ALICE) == "alice" and tokens.caller(BOB) is None
    kubernetes_secret(tmp_path, BOB_LINE + "\n")
    assert tokens.caller(BOB) == "bob" and tokens.caller(ALICE) is None
    capfd.readouterr()
    kubernetes_secret(tmp_path, f"{ALICE_LINE}\n# next\nbob:{BOB}\n")  # the token, not its hash
    assert tokens.caller(BOB) == "bob" and tokens.caller(ALICE) is None
    assert tokens.caller(BOB) == "bob"  # the same broken version is reported once
    errors = [line for line in log_lines(capfd.readouterr().out) if line["level"] == "error"]
    assert len(errors) == 1
    assert "line 3: after the colon must come the SHA-256" in errors[0]["message"]
    assert "keeping the previous 1 tokens" in errors[0]["message"]
    assert BOB not in errors[0]["message"]
    (tmp_path / "..data").unlink()  # the file disappears: keep the tokens, log once
    assert tokens.caller(BOB) == "bob"
    kubernetes_secret(tmp_path, "")  # an empty file is valid: nobody gets in
    assert tokens.caller(BOB) is None


def test_the_file_is_checked_at_most_once_per_period(tmp_path: Path) -> None:
    path = write(tmp_path / "tokens", ALICE_LINE + "\n")
    tokens = TokenFile(str(path), check_seconds=3600)
    write(path, BOB_LINE + "\n")
    assert tokens.caller(ALICE) == "alice", "no stat on every request"
    tokens.refresh()
    assert tokens.caller(BOB) == "bob"


# --- making tokens ---------------------------------------------------------------------------


def test_new_prints_a_token_once_and_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", "billing-service"]) == 0
    output = capsys.readouterr().out
    token = output.split("\n\n")[1].strip()
    line = output.rstrip().splitlines()[-1].strip()
    assert line == f"billing-service:{digest(token).hex()}"
    assert len(token) >= 43 and output.count(token) == 1
    assert main(["new", "not valid"]) == 2
    assert main(["new", "anonymous"]) == 2


def test_check_names_the_line_and_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path / "good", f"{ALICE_LINE}\n{BOB_LINE}\n")
    assert main(["check", str(good)]) == 0
    assert "2 tokens for 2 callers: alice, bob" in capsys.readouterr().out
    bad = write(tmp_path / "bad", f"{ALICE_LINE}\nbob {BOB}\n")
    assert main(["check", str(bad)]) == 1
    assert "line 2: expected NAME:SHA256HEX[:PERMISSION,...]" in capsys.readouterr().err


def test_check_reports_every_bad_line_in_words_that_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = write(tmp_path / "one", f"{ALICE_LINE}\n")
    assert main(["check", str(one)]) == 0
    assert capsys.readouterr().out == f"{one}: 1 token for 1 caller: alice\n"
    bad = write(tmp_path / "bad", f"bob {BOB}\n{ALICE_LINE}\nanonymous:{'0' * 64}\nx:{ALICE}\n")
    assert main(["check", str(bad)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{bad} line 1: expected NAME:SHA256HEX[:PERMISSION,...]",
        f"{bad} line 3: the caller name 'anonymous' is reserved",
        f"{bad} line 4: after the colon must come the SHA-256 of the token as 64 hex digits "
        "(never the token itself)",
    ]
    assert main(["check", str(tmp_path / "absent")]) == 1
    assert capsys.readouterr().err == (
        f"{tmp_path / 'absent'}: cannot read the tokens file: No such file or directory\n"
    )


# --- permissions -----------------------------------------------------------------------------


def test_lines_name_their_permissions_and_two_field_lines_keep_todays_rights() -> None:
    assert LAB_LINE.endswith(":outcomes") and AUDITOR_LINE.endswith(":predict,records")
    entries = dict(parse(f"{ALICE_LINE}\n{LAB_LINE}\n{AUDITOR_LINE}\n", "tokens"))
    permissions = {caller.name: caller.permissions for caller in entries.values()}
    assert permissions == {
        "alice": frozenset({"predict"}),
        "lab": frozenset({"outcomes"}),
        "auditor": frozenset({"predict", "records"}),
    }


@pytest.mark.parametrize(
    "suffix",
    [":", ":predict,", ":admin", ":predict,everything"],
    ids=["empty", "trailing", "unknown", "one-unknown"],
)
def test_a_permission_outside_the_list_is_a_broken_line(suffix: str) -> None:
    with pytest.raises(TokensFileError) as raised:
        parse(ALICE_LINE + suffix, "tokens")
    assert "tokens line 1: permissions are some of predict, outcomes, records" in str(raised.value)


def test_a_token_without_the_permission_is_refused_naming_it(client: FlaskClient) -> None:
    refused = client.post("/v1/predictions", json=SEED_JSON, headers=bearer(LAB))
    body = problem(refused, 403)
    assert body["detail"] == (
        "The token of lab does not grant the permission predict, which this needs."
    )
    assert body["errors"] == {"Authorization": "needs a token with the permission predict"}
    v2 = client.get("/v2/models/oncology", headers=bearer(LAB))
    assert v2.status_code == 403 and "permission predict" in v2.get_json()["error"]
    assert (
        client.post("/v1/predictions", json=SEED_JSON, headers=bearer(AUDITOR)).status_code == 200
    )


def test_predicting_sending_outcomes_and_reading_records_are_separate_permissions(
    client: FlaskClient,
) -> None:
    """alice predicts (two-field line: today's rights), the lab only sends outcomes, the auditor
    predicts and reads records: each is refused what its token does not grant, by name."""
    answer = client.post("/v1/predictions", json=SEED_JSON, headers=bearer(ALICE)).get_json()
    record = f"/v1/predictions/{answer['prediction_id']}"
    outcome = {"outcome": "benign", "source": "histology"}
    for token, method, path, body, permission in [
        (ALICE, "get", record, None, "records"),
        (ALICE, "delete", record, None, "records"),
        (ALICE, "put", record + "/outcome", outcome, "outcomes"),
        (ALICE, "post", "/v1/outcomes", {"outcomes": [outcome]}, "outcomes"),
        (LAB, "get", record, None, "records"),
        (AUDITOR, "put", record + "/outcome", outcome, "outcomes"),
    ]:
        refused = getattr(client, method)(path, json=body, headers=bearer(token))
        assert f"the permission {permission}" in problem(refused, 403)["detail"], (method, path)
    put = client.put(record + "/outcome", json=outcome, headers=bearer(LAB))
    assert put.status_code == 201
    read = client.get(record, headers=bearer(AUDITOR))
    assert read.status_code == 200
    assert read.get_json()["outcome"]["recorded_by"] == "lab"
    assert read.get_json()["caller"] == "alice"


def test_a_refused_callers_name_stays_in_the_log(
    client: FlaskClient, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    client.get("/v1/model", headers=bearer(LAB))
    records = [r for r in log_lines(capfd.readouterr().out) if r.get("event") == "request"]
    assert records[-1]["status"] == 403 and records[-1]["caller"] == "lab"


def test_new_makes_a_line_with_the_permissions_asked_for(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["new", "lab", "outcomes,records"]) == 0
    line = capsys.readouterr().out.rstrip().splitlines()[-1].strip()
    assert line.startswith("lab:") and line.endswith(":outcomes,records")
    assert main(["new", "lab", "admin"]) == 2
    assert "permissions are some of predict, outcomes, records" in capsys.readouterr().err
