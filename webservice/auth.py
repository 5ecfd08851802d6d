"""Bearer tokens: a WSGI middleware that lets only known callers reach the protected endpoints.

On only when a tokens file is configured (`ONCOLOGY_TOKENS_FILE` for the API,
`ONCOLOGY_METRICS_TOKENS_FILE` for /metrics); otherwise it is not in the stack at all. The probes
and the documentation stay open; every other path (unknown ones too) needs
`Authorization: Bearer <token>`, whose line in the tokens file grants the permission the route
needs (`routes.Route.permission`; 403 naming it otherwise). The caller's name goes into the
environ for the access log and the metrics; the token goes nowhere.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from webservice.middleware import WSGIApp
from webservice.observability import CALLER
from webservice.problems import Problem, send_problem
from webservice.routes import Access, Route, route_of
from webservice.tokens import TokenFile

REALM = "oncology"
UNAUTHENTICATED = "unauthenticated"
HOW = "send the header Authorization: Bearer <token>"
HOW_GRPC = "send the metadata authorization: Bearer <token>"  # the same, as gRPC callers say it


def _refusal(status: int, error: str | None, field: str, rule: str, detail: str) -> Problem:
    challenge = f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")
    return Problem(
        status,
        detail,
        {field: rule},
        kind="unauthorized" if status == 401 else "token-in-query",
        headers={"WWW-Authenticate": challenge},
    )


MISSING = _refusal(
    401, None, "Authorization", f"is required: {HOW}", f"This endpoint needs a token: {HOW}."
)
WRONG_SCHEME = _refusal(
    401,
    None,
    "Authorization",
    f"must use the Bearer scheme: {HOW}",
    f"Only bearer tokens are accepted: {HOW}.",
)
INVALID = _refusal(
    401,
    "invalid_token",
    "Authorization",
    "the bearer token is not valid (unknown, revoked or malformed)",
    "The bearer token is not valid.",
)
IN_QUERY = _refusal(
    400,
    "invalid_request",
    "access_token",
    f"tokens are never accepted in the query string: {HOW}",
    f"Tokens are never accepted in the query string: {HOW}.",
)


class BearerAuth:
    """Answer 401 (problem+json, `WWW-Authenticate: Bearer`) before any work unless the request
    carries a token of the tokens file its path needs; a token in the query string gets 400."""

    def __init__(self, app: WSGIApp, *, api: TokenFile | None, metrics: TokenFile | None) -> None:
        self.app = app
        self.tokens: dict[Access, TokenFile | None] = {"api": api, "metrics": metrics, "open": None}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        route = route_of(path)
        tokens = self.tokens[route.access]
        if tokens is None:
            return self.app(environ, start_response)
        refusal = _check(environ, tokens, route)
        if refusal is None:
            return self.app(environ, start_response)
        if refusal.status != 403:  # a 403's caller is known: its name stays in log and metrics
            environ[CALLER] = UNAUTHENTICATED
        return send_problem(refusal, path, start_response)  # {"error": ...} under /v2


def _check(environ: dict[str, Any], tokens: TokenFile, route: Route) -> Problem | None:
    """None when the request names a known caller (set in the environ) whose token grants what
    the route needs, else the refusal."""
    query = environ.get("QUERY_STRING")
    if query and "access_token" in query and "access_token" in parse_qs(query, True):
        return IN_QUERY
    needed = route.permission if route.access == "api" else None
    name, refusal = authenticate(environ.get("HTTP_AUTHORIZATION"), tokens, needed)
    if name is not None:
        environ[CALLER] = name
    return refusal


def authenticate(
    header: str | None, tokens: TokenFile, permission: str | None
) -> tuple[str | None, Problem | None]:
    """The caller an Authorization value (HTTP's header, gRPC's metadata) names, if any, and the
    refusal (None: let it through): 401 without a known bearer token, 403 when the token does
    not grant `permission` (None: any known token will do)."""
    if header is None:
        return None, MISSING
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None, WRONG_SCHEME
    caller = tokens.identify(token.strip())
    if caller is None:
        return None, INVALID
    if permission is not None and permission not in caller.permissions:
        return caller.name, forbidden(caller.name, permission)
    return caller.name, None


def forbidden(name: str, needed: str) -> Problem:
    """403: a known caller whose token does not grant what the path needs."""
    return Problem(
        403,
        f"The token of {name} does not grant the permission {needed}, which this needs.",
        {"Authorization": f"needs a token with the permission {needed}"},
    )
