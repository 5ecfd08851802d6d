"""gunicorn settings for a CPU-bound service: `gunicorn 'webservice:create_app()'`.

HOST, PORT and WORKERS come from the environment (defaults: 127.0.0.1, 8080, one worker per
available core). Each worker loads and verifies the model once, at start-up.
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8080')}"
# Sync workers: a prediction is a few microseconds of CPU, so threads or async buy nothing.
worker_class = "sync"
workers = int(os.environ.get("WORKERS", len(os.sched_getaffinity(0))))
# A batch of 10,000 tumors takes well under a second; 30 s only catches a stuck worker.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# On SIGTERM, in-flight requests get this long to finish (Kubernetes' grace period is longer).
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "20"))
# The heartbeat files in memory: no disk writes, and works with a read-only root filesystem
# (Kubernetes mounts an in-memory emptyDir and sets WORKER_TMP_DIR=/tmp).
worker_tmp_dir = os.environ.get("WORKER_TMP_DIR", "/dev/shm")
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# gunicorn's own cap on a request line and headers, well below any body limit.
limit_request_line = 8190
