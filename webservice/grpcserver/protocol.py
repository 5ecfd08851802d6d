"""The messages and service stubs compiled from grpc_predict_v2.proto (by grpcio-tools, at
install: the Makefile's PROTO rule, the image's builder), and the health service's."""

from __future__ import annotations

try:
    from webservice.grpcserver import grpc_predict_v2_pb2 as pb
    from webservice.grpcserver import grpc_predict_v2_pb2_grpc as pb_grpc
except ImportError as error:  # a checkout whose proto was never compiled
    raise ImportError(
        "webservice/grpcserver/grpc_predict_v2.proto is not compiled: run `make install` "
        f"(which runs grpcio-tools' protoc) ({error})"
    ) from error

SERVICE_NAME = "inference.GRPCInferenceService"

__all__ = ["SERVICE_NAME", "pb", "pb_grpc"]
