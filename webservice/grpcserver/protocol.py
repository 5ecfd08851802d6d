"""The messages and service stubs compiled from grpc_predict_v2.proto (by grpcio-tools, at
install: the Makefile's PROTO rule, the image's builder), and the health service's."""

from __future__ import annotations

from typing import Any

try:
    from webservice.grpcserver import grpc_predict_v2_pb2 as pb
    from webservice.grpcserver import grpc_predict_v2_pb2_grpc as pb_grpc
except ImportError as error:  # a checkout whose proto was never compiled
    raise ImportError(
        "webservice/grpcserver/grpc_predict_v2.proto is not compiled: run `make install` "
        f"(which runs grpcio-tools' protoc) ({error})"
    ) from error

SERVICE_NAME = "inference.GRPCInferenceService"


# grpcio-tools writes the service module without annotations (its messages get a .pyi, its
# stubs do not): these two are the only calls into it, typed here once.
def inference_stub(channel: Any) -> Any:
    """A client of the inference service on a `grpc.Channel`."""
    return pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]


def add_inference_service(servicer: Any, server: Any) -> None:
    """Serve `servicer`'s methods as the inference service on a `grpc.Server`."""
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]


__all__ = ["SERVICE_NAME", "add_inference_service", "inference_stub", "pb", "pb_grpc"]
