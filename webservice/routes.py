"""Every path the service answers, in one table that the rest reads.

The prediction lane takes the routes marked `lane` (POST) before Flask; access control asks
`access` which tokens a path needs; the metrics label a request with `endpoint_label`, never with
a part the client chose; the OpenAPI document lists exactly the `documented` routes (a test
checks it). The front (nginx, `webservice.front`) knows none of this: it passes every path on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Access = Literal["open", "api", "metrics"]
"""Who may call: anyone (probes, documentation), API callers, or metrics readers."""


@dataclass(frozen=True)
class Route:
    """A path the service answers; `{name}` marks a part the client chooses."""

    path: str
    access: Access
    label: str  # the metrics' endpoint label: bounded, whatever the client sends
    lane: bool = False  # POST answered by the prediction lane
    documented: bool = True  # an operation of the OpenAPI document
    permission: str = "predict"  # what an API caller's token must grant (`webservice.tokens`)


MODEL = "/v2/models/{model_name}"
VERSION = MODEL + "/versions/{model_version}"

ROUTES: tuple[Route, ...] = (
    Route("/v1/predictions", "api", "/v1/predictions", lane=True),
    Route("/v1/predictions/batch", "api", "/v1/predictions/batch", lane=True),
    Route("/v1/predictions/{prediction_id}", "api", "/v1/predictions/record", permission="records"),
    Route(
        "/v1/predictions/{prediction_id}/outcome",
        "api",
        "/v1/predictions/outcome",
        permission="outcomes",
    ),
    Route("/v1/outcomes", "api", "/v1/outcomes", permission="outcomes"),
    Route("/v1/quality", "api", "/v1/quality", permission="records"),
    Route("/v1/model", "api", "/v1/model"),
    Route("/healthz", "open", "/healthz"),
    Route("/readyz", "open", "/readyz"),
    Route("/metrics", "metrics", "/metrics"),
    Route("/swagger.json", "open", "/swagger.json", documented=False),
    Route("/docs", "open", "/docs", documented=False),
    Route("/swaggerui/{asset}", "open", "/swaggerui", documented=False),
    Route("/v2", "api", "/v2"),
    Route("/v2/health/live", "open", "/v2/health/live"),
    Route("/v2/health/ready", "open", "/v2/health/ready"),
    Route(MODEL, "api", "/v2/models/metadata"),
    Route(VERSION, "api", "/v2/models/metadata"),
    Route(MODEL + "/ready", "api", "/v2/models/ready"),
    Route(VERSION + "/ready", "api", "/v2/models/ready"),
    Route(MODEL + "/infer", "api", "/v2/models/infer", lane=True),
    Route(VERSION + "/infer", "api", "/v2/models/infer", lane=True),
)

OTHER = Route("{unknown}", "api", "other", documented=False)
"""What an unknown path counts as: it needs an API token (nothing shows without one)."""

_EXACT = {route.path: route for route in ROUTES if "{" not in route.path}
# Paths with parts the client chooses; `{asset}` may span folders (Swagger UI's files).
_PATTERNS = [
    (
        re.compile(
            re.sub(r"\\\{(\w+)\\\}", lambda m: ".+" if m.group(1) == "asset" else "[^/]+",
                   re.escape(route.path)) + "$"
        ),
        route,
    )
    for route in ROUTES
    if "{" in route.path
]  # fmt: skip


def route_of(path: str) -> Route:
    """The route a request's path is, or `OTHER`."""
    route = _EXACT.get(path)
    if route is not None:
        return route
    if path.startswith(("/v2/models/", "/swaggerui/", "/v1/predictions/")):
        for pattern, candidate in _PATTERNS:
            if pattern.match(path):
                return candidate
    return OTHER


def endpoint_label(path: str) -> str:
    """The metrics' label for a path: its route's, `other` for an unknown one."""
    return route_of(path).label


def access(path: str) -> Access:
    """Which tokens a path needs."""
    return route_of(path).access
