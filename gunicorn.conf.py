"""gunicorn settings for a CPU-bound service: `gunicorn 'webservice:create_app()'`.

HOST, PORT and WORKERS come from the environment (defaults: 127.0.0.1, 8080, one worker per
available core); BIND (`unix:PATH`) overrides HOST and PORT, as `webservice.serve` does to put
gunicorn behind nginx. Each worker loads and verifies the model once, at start-up.
"""

import gc
import json
import os
import shutil
import signal
import sys
import tempfile

bind = (
    os.environ.get("BIND")
    or f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8080')}"
)
# Sync workers: a prediction is a few microseconds of CPU, so threads or async buy nothing.
worker_class = "sync"
workers = int(os.environ.get("WORKERS", len(os.sched_getaffinity(0))))
# A batch of 10,000 tumors takes well under a second; 30 s only catches a stuck worker.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# On SIGTERM, in-flight requests get this long to finish (Kubernetes' grace period is longer).
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "20"))
# The heartbeat files in memory: no disk writes, and works with a read-only root filesystem
# (Kubernetes mounts an in-memory emptyDir and sets WORKER_TMP_DIR=/tmp).
# /dev/shm is a per-container tmpfs, the place gunicorn's own docs recommend for this.
worker_tmp_dir = os.environ.get("WORKER_TMP_DIR", "/dev/shm")  # nosec B108
# The app writes the access log itself, as JSON lines with request ids (webservice.observability).
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
limit_request_line = 8190
# gunicorn 25.1+ opens a control socket (for `gunicornc`: add workers, reload) under
# $XDG_RUNTIME_DIR or $HOME, which is read-only in the pod ("[ERROR] Control server error").
# The worker count and rollouts are Kubernetes' job: no second control path into the container.
control_socket_disable = True


_own_metrics_dir = []  # the metrics folder on_starting made, removed on exit


def on_starting(server):
    """Before anything listens: refuse a configuration that cannot work (a bad setting, a missing
    or broken tokens file) in one line naming it and the reason, and exit 1. Then the metrics
    shared by all workers: a fresh in-memory folder for prometheus-client."""
    from webservice.config import startup_problem

    problem = startup_problem()
    if problem:
        server.log.error("Cannot start: %s", problem)
        sys.exit(1)
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")  # webservice.serve's, which it removes
    if not folder:
        folder = tempfile.mkdtemp(prefix="oncology-metrics-", dir=worker_tmp_dir)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        _own_metrics_dir.append(folder)
    server.log.info("metrics folder %s", folder)
    _fetch_model_once(server)
    _migrate_once(server)


_own_model_dir = []  # the model folder _fetch_model_once downloaded into, removed on exit


def _fetch_model_once(server):
    """A model in a bucket (ONCOLOGY_ARTIFACTS_DIR=s3://BUCKET/PREFIX/): downloaded and verified
    here, once, before the workers start, and the log says how long it took (a part of the
    start-to-ready time); the workers then load the local copy. When it fails, the workers stay
    unready naming the cause (the missing or altered object, the store that stopped answering)
    without trying again: a download that hangs in a worker would be killed by gunicorn's
    timeout and retried forever instead. `webservice.serve`'s gRPC processes get the same
    outcome (`_hand_over`): the model is downloaded once per pod."""
    from webservice.config import load_config

    source = load_config()["ARTIFACTS_DIR"]
    if not source or not source.startswith("s3://"):
        return
    from oncology_model.integrity import ArtifactError
    from oncology_model.model_storage import DOWNLOAD_FAILED, fetched_model
    from oncology_model.storage import ObjectUrl

    try:
        fetched = fetched_model(ObjectUrl.parse(source))
    except (ArtifactError, OSError) as exc:  # a StorageError is an OSError
        server.log.error("Model not downloaded, the service stays unready: %s", exc)
        os.environ[DOWNLOAD_FAILED] = str(exc)
        _hand_over({DOWNLOAD_FAILED: str(exc)})
        return
    _own_model_dir.append(str(fetched.directory))
    os.environ["ONCOLOGY_ARTIFACTS_DIR"] = str(fetched.directory)
    _hand_over({"ONCOLOGY_ARTIFACTS_DIR": str(fetched.directory)})
    server.log.info("%s", fetched.summary())


def _hand_over(settings):
    """The download's outcome as the workers' settings, in the file the launcher names
    (ONCOLOGY_MODEL_HANDOVER): it starts its gRPC processes with them once gunicorn listens, and
    gunicorn stops after them, so the local copy outlives their loading it."""
    path = os.environ.get("ONCOLOGY_MODEL_HANDOVER")
    if path:
        with open(path, "w") as handover:
            json.dump(settings, handover)


def _migrate_once(server):
    """Migrate the prediction record's database here, once, before the workers start; they then
    leave it alone (ONCOLOGY_DB_MIGRATE=false in their environment)."""
    from webservice.config import load_config

    config = load_config()
    if config["RECORDS"] == "off" or not config["DB_MIGRATE"]:
        return
    from webservice.records.store import engine_for, migrate_at_start

    engine = engine_for(config["DATABASE_URL"])
    if migrate_at_start(engine):
        server.log.info("prediction record's database at its latest schema")
    engine.dispose()
    os.environ["ONCOLOGY_DB_MIGRATE"] = "false"


def child_exit(server, worker):
    """Count what an exited worker answered but never recorded (killed before it could write:
    see webservice.records.writer), then drop its live gauges (its counters stay in the totals)."""
    from prometheus_client import multiprocess

    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        from webservice.metrics import RECORDS_LOST
        from webservice.records.writer import unrecorded

        lost = unrecorded(worker.pid, folder)
        if lost:
            RECORDS_LOST.inc(lost)
            server.log.error(
                "worker %s stopped without writing %d answered tumors to the prediction record",
                worker.pid,
                lost,
            )
    multiprocess.mark_process_dead(worker.pid)


# A graceful stop writes the buffered records within this many seconds (inside graceful_timeout).
RECORDS_CLOSE_SECONDS = max(1.0, graceful_timeout / 2)


def worker_exit(server, worker):
    """Count this worker's last predictions before it goes (see webservice.metrics), and write
    its buffered prediction records."""
    from webservice.tally import TALLY

    TALLY.flush()
    service = getattr(worker.wsgi, "extensions", {}).get("oncology")
    if service is not None and service.recorder is not None:
        service.recorder.close(RECORDS_CLOSE_SECONDS)


def on_exit(server):
    for folder in _own_metrics_dir + _own_model_dir:
        shutil.rmtree(folder, ignore_errors=True)


def post_worker_init(worker):
    """Once the app is loaded: freeze it out of the garbage collector's way, and on SIGTERM
    make /readyz answer 503 at once while in-flight requests finish."""
    # Everything loaded so far (Flask, the model, numpy...) lives as long as the worker:
    # without this, each full collection walks those ~10^5 objects again.
    gc.freeze()
    gunicorn_handler = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        service = getattr(worker.wsgi, "extensions", {}).get("oncology")
        if service is not None:
            service.shutting_down = True
        gunicorn_handler(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
