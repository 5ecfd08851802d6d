"""What every gRPC call goes through, as every HTTP request goes through `Observability` and
`BearerAuth`: a request id (`x-request-id` metadata in, and out in the trailing metadata), the
bearer token of the `authorization` metadata (the same tokens file, permissions and messages),
one JSON access-log line, the call's metrics, and errors as gRPC statuses with the message REST
V2 gives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import grpc

from webservice.auth import HOW, HOW_GRPC, UNAUTHENTICATED, authenticate
from webservice.grpcserver.protocol import SERVICE_NAME
from webservice.observability import (
    ANONYMOUS,
    new_request_id,
    request_id,
    valid_request_id,
    write_access_line,
)
from webservice.problems import Problem, as_problem
from webservice.tally import record_grpc_request
from webservice.tokens import TokenFile

# The HTTP status of a Problem as the gRPC status a client sees.
CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}
# The methods, and the permission each needs with a tokens file (None: open, as /v2/health/*).
METHODS: dict[str, str | None] = {
    "ServerLive": None,
    "ServerReady": None,
    "ModelReady": "predict",
    "ServerMetadata": "predict",
    "ModelMetadata": "predict",
    "ModelInfer": "predict",
}

Method = Callable[[Any, str], Any]


def observed(
    servicer: Any, *, tokens: TokenFile | None, model_version: str, access_log: bool
) -> SimpleNamespace:
    """The servicer's methods, each wrapped as a gRPC method (request, context), for
    `add_inference_service`."""
    return SimpleNamespace(
        **{
            name: _Call(
                name, getattr(servicer, name), permission, tokens, model_version, access_log
            )
            for name, permission in METHODS.items()
        }
    )


class _Call:
    """One method, observed: see the module docstring."""

    def __init__(
        self,
        name: str,
        method: Method,
        permission: str | None,
        tokens: TokenFile | None,
        model_version: str,
        access_log: bool,
    ) -> None:
        self.name = name
        self.path = f"/{SERVICE_NAME}/{name}"
        self.method = method
        self.tokens = tokens if permission is not None else None
        self.permission = permission
        self.model_version = model_version
        self.access_log = access_log

    def __call__(self, request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        metadata = dict(context.invocation_metadata())
        incoming = metadata.get("x-request-id")
        rid = incoming if isinstance(incoming, str) and valid_request_id(incoming) else None
        rid = rid or new_request_id()
        token = request_id.set(rid)
        # In the trailing metadata, sent with the status: initial metadata sent on its own costs
        # a separate write per call (about a tenth of a single inference's CPU).
        context.set_trailing_metadata((("x-request-id", rid),))
        caller, code = ANONYMOUS, grpc.StatusCode.OK
        try:
            if self.tokens is not None:
                header = metadata.get("authorization")
                name, refusal = authenticate(
                    header if isinstance(header, str) else None, self.tokens, self.permission
                )
                caller = name or UNAUTHENTICATED
                if refusal is not None:
                    raise refusal
            return self.method(request, caller)
        except Exception as error:
            problem = as_problem(error, "RPC", self.path)
            code = CODES.get(problem.status, grpc.StatusCode.INTERNAL)
            if isinstance(error, Problem) and "Retry-After" in problem.headers:
                context.set_trailing_metadata(
                    (("x-request-id", rid), ("retry-after", problem.headers["Retry-After"]))
                )
            context.abort(code, problem.detail.replace(HOW, HOW_GRPC))
        finally:
            request_id.reset(token)
            self.finish(code, caller, started, rid)

    def finish(self, code: grpc.StatusCode, caller: str, started: float, rid: str) -> None:
        """Count the call and write its access-log line."""
        elapsed = time.perf_counter() - started
        status = code.name
        record_grpc_request(self.name, status, elapsed, caller)
        if self.access_log:
            write_access_line(
                self.name, self.path, status, elapsed, rid, caller, self.model_version,
                protocol="grpc",
            )  # fmt: skip
