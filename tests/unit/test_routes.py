"""The route table: what the OpenAPI document, access control, the metrics and the lane read."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.helpers import SEED_JSON
from webservice.routes import OTHER, ROUTES, access, endpoint_label, route_of


def test_the_document_lists_exactly_the_documented_routes(client: FlaskClient) -> None:
    documented = set(client.get("/swagger.json").get_json()["paths"])
    assert documented == {route.path for route in ROUTES if route.documented}


def test_every_route_is_served(client: FlaskClient) -> None:
    """Each route answers something other than 404 at a concrete path of its own."""
    version = client.get("/v1/model").get_json()["version"]
    prediction_id = client.post("/v1/predictions", json=SEED_JSON).get_json()["prediction_id"]
    for route in ROUTES:
        path = route.path.format(
            model_name="oncology",
            model_version=version,
            asset="swagger-ui-bundle.js",
            prediction_id=prediction_id,
        )
        method = "get"
        if route.lane or path == "/v1/outcomes":
            method = "post"
        elif path.endswith("/outcome"):
            method = "put"
        response = getattr(client, method)(path, json={})
        assert response.status_code != 404, (route.path, response.status_code)


def test_client_chosen_parts_never_reach_a_label() -> None:
    assert endpoint_label("/v2/models/anything-a-client-says/versions/x/infer") == (
        "/v2/models/infer"
    )
    assert endpoint_label("/v2/models/a/b/c/d") == "other"
    assert endpoint_label("/admin") == "other"
    assert route_of("/nowhere") is OTHER


def test_access_is_open_only_for_probes_and_documentation() -> None:
    opened = {route.path for route in ROUTES if route.access == "open"}
    assert opened == {
        "/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/docs", "/swagger.json",
        "/swaggerui/{asset}",
    }  # fmt: skip
    assert access("/swaggerui/lib/swagger-ui.css") == "open"
    assert access("/metrics") == "metrics"
    assert access("/v2/models/oncology/infer") == "api"
    assert access("/unknown") == "api", "nothing shows without a token"
