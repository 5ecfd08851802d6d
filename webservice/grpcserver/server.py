"""`python -m webservice.grpcserver`: the Open Inference Protocol's gRPC service, one process.

Start: the settings are checked (`config.startup_problem`, one line and exit 1), the model is
loaded and verified as in every gunicorn worker (`Service`), then the server listens on
HOST:GRPC_PORT (8081) with `inference.GRPCInferenceService` and the gRPC health service
(`grpc.health.v1`, for Kubernetes' gRPC probes): the service "" and `inference.GRPCInferenceService`
are SERVING while the model is ready (as /readyz), `liveness` while the process runs. Requests
larger than ONCOLOGY_MAX_BODY_BYTES get RESOURCE_EXHAUSTED from gRPC itself, and so do calls
beyond ONCOLOGY_MAX_REQUESTS_IN_PROGRESS at once.

Stop (SIGTERM, SIGINT): health turns NOT_SERVING, new calls are refused (UNAVAILABLE), every
call under way is answered within GRACEFUL_TIMEOUT, then the metrics are flushed and the buffered
prediction records written. `webservice.serve` runs it beside gunicorn (GRPC_WORKERS processes
sharing the port, SO_REUSEPORT).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from concurrent import futures
from importlib import metadata
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from webservice.config import load_config, startup_problem
from webservice.grpcserver import calls
from webservice.grpcserver.protocol import SERVICE_NAME, add_inference_service
from webservice.grpcserver.servicer import InferenceServicer
from webservice.metrics import record_served
from webservice.observability import configure_logging
from webservice.service import Service, init_records
from webservice.tally import TALLY
from webservice.tokens import TokenFile

log = logging.getLogger(__name__)

DEFAULT_PORT = 8081
# Threads answering calls: a call is CPU work under the GIL. Two keep one call computing while
# the next is handed over; more only contend for the GIL: measured at 16 connections, a single
# inference cost the process 235 us of CPU with 2 threads, 255 with 4, 340 with 8 (and 320 with 1,
# which waits on every hand-over). gRPC's own threads do the network.
THREADS = 2
LIVENESS = "liveness"
HEALTH_SECONDS = 0.5  # how often the health service follows the Service's readiness
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def port() -> int:
    """GRPC_PORT from the environment (8081 by default)."""
    return int(os.environ.get("GRPC_PORT", str(DEFAULT_PORT)))


class GrpcServer:
    """The gRPC server around one Service: built, started, and stopped gracefully."""

    def __init__(
        self, service: Service, settings: dict[str, Any], *, reuse_port: bool = False
    ) -> None:
        self.service = service
        tokens = TokenFile(settings["TOKENS_FILE"]) if settings["TOKENS_FILE"] else None
        servicer = InferenceServicer(service, version=_version(), max_batch=settings["MAX_BATCH"])
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="grpc-call"),
            options=[
                ("grpc.max_receive_message_length", settings["MAX_BODY_BYTES"]),
                ("grpc.so_reuseport", 1 if reuse_port else 0),
            ],
            maximum_concurrent_rpcs=settings["MAX_REQUESTS_IN_PROGRESS"],
        )
        add_inference_service(
            calls.observed(
                servicer,
                tokens=tokens,
                model_version=service.model_version,
                access_log=settings["ACCESS_LOG"],
            ),
            self.server,
        )
        self.health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.health.set(LIVENESS, SERVING)
        self.readiness: int | None = None
        self.follow_readiness()
        self.stopping = threading.Event()

    def listen(self, address: str) -> int:
        """Listen on HOST:PORT (PORT 0: a free one); the port, 0 when it cannot be bound."""
        return int(self.server.add_insecure_port(address))

    def follow_readiness(self) -> None:
        """The health of "" and the inference service: the Service's readiness, now (set when it
        changes: each set is a message to every Watch stream)."""
        status = SERVING if self.service.ready else NOT_SERVING
        if status != self.readiness:
            self.readiness = status
            for name in ("", SERVICE_NAME):
                self.health.set(name, status)

    def serve(self) -> None:
        """Answer until `stopping` is set, the health following the Service's readiness."""
        self.server.start()
        while not self.stopping.wait(HEALTH_SECONDS):
            self.follow_readiness()

    def stop(self, grace: float) -> None:
        """Refuse new calls, answer those under way (at most `grace` seconds), then flush the
        metrics and write the buffered records."""
        self.service.shutting_down = True
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        TALLY.flush()
        if self.service.recorder is not None:
            self.service.recorder.close(max(1.0, grace / 2))


def main() -> int:
    problem = startup_problem()
    if problem:
        print(f"oncology-grpc: cannot start: {problem}", file=sys.stderr)
        return 1
    settings = load_config()
    configure_logging(settings["LOG_LEVEL"])
    service = Service(artifacts_dir=settings["ARTIFACTS_DIR"])
    service.track = settings["TRACK"]
    TALLY.set_model(service.model_version, service.track)
    record_served(service.model_version, service.track)
    init_records(service, settings)  # the same record as gunicorn's workers
    server = GrpcServer(service, settings, reuse_port=os.environ.get("GRPC_REUSE_PORT") == "1")
    address = f"{os.environ.get('HOST', '127.0.0.1')}:{port()}"
    if not server.listen(address):
        print(f"oncology-grpc: cannot listen on {address}", file=sys.stderr)
        return 1

    def on_stop(signum: int, frame: FrameType | None) -> None:
        server.stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_stop)
    log.info("gRPC (Open Inference Protocol) on %s, model %s", address, service.model_version)
    server.serve()
    server.stop(float(os.environ.get("GRACEFUL_TIMEOUT", "20")))
    return 0


def _version() -> str:
    try:
        return metadata.version("oncology-model")
    except metadata.PackageNotFoundError:
        return "0+unknown"
