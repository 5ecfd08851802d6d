"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), beside gunicorn.

`python -m webservice.grpcserver` serves it on GRPC_PORT (8081); `webservice.serve` starts it
with nginx and gunicorn. `protocol` holds the messages compiled from grpc_predict_v2.proto at
install, `servicer` the six methods (thin: protobuf to and from `webservice.openinference`, the
protocol's one implementation), `calls` what every call goes through (request id, bearer token,
access log, metrics, errors as statuses), `server` the process (health, graceful stop).
Importing the package loads nothing.
"""
