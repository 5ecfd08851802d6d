# Multi-stage build of the oncology web service.
#   builder: installs the locked dependencies (compiling gunicorn's C parser), takes the model
#            given to `make image model=DIR` (verified) or trains it (deterministic, ~20 s),
#            builds the wheel around it
#   training: the builder's training environment as a non-root image, for the Kubernetes training Job
#   runtime (last, the default): only what serving needs, nginx in front of gunicorn and the gRPC
#            service beside them, as a fixed non-root UID, read-only friendly
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# pipenv only exports the lock; it never reaches the runtime image.
RUN python3 -m venv /opt/pipenv && /opt/pipenv/bin/pip install --quiet pipenv==2026.10.3
COPY Pipfile Pipfile.lock ./
# Serving reads a model from a bucket with boto3 (docs/storage.md): botocore's descriptions of
# every AWS service are 29 MB, of which serving needs S3's and STS's (web identity credentials in
# Kubernetes); the others are removed from the runtime's environment (7 MB instead of 36).
# gunicorn's C header parser (gunicorn_h1c) is published as source only: a compiler, and Python's
# headers where the base lacks them, build it here and are removed again in the same layer (the
# apt-mark dance of the official images), so neither the training nor the runtime image carries
# a compiler. Not pinned (DL3008): build tools only, whatever the base's Debian release ships.
# hadolint ignore=DL3008
RUN /opt/pipenv/bin/pipenv requirements --hash --categories packages > serve.txt \
    && /opt/pipenv/bin/pipenv requirements --hash --categories "packages train build" > train.txt \
    && apt-mark showmanual > /tmp/base-packages \
    && apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null \
    && include="$(python3 -c 'import sysconfig; print(sysconfig.get_path("include"))')" \
    && { test -f "$include/Python.h" \
         || apt-get install -y -qq --no-install-recommends python3-dev >/dev/null; } \
    && python3 -m venv /opt/train \
    && /opt/train/bin/pip install --quiet --require-hashes -r train.txt \
    && /opt/train/bin/pip install --quiet setuptools==84.2.1 \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --quiet --require-hashes -r serve.txt \
    && find /opt/venv/lib/python3*/site-packages/botocore/data -mindepth 1 -maxdepth 1 -type d \
        ! -name s3 ! -name sts -exec rm -rf {} + \
    && apt-mark auto '.*' >/dev/null \
    && xargs --no-run-if-empty apt-mark manual < /tmp/base-packages >/dev/null \
    && apt-get purge -y -qq --auto-remove -o APT::AutoRemove::RecommendsImportant=false >/dev/null \
    && rm -rf /var/lib/apt/lists/* /tmp/base-packages
COPY pyproject.toml README.md ./
COPY oncology_model ./oncology_model
# The gRPC service's messages, compiled here by grpcio-tools (the lock's build category, in the
# builder's training environment only) and copied into the runtime image.
COPY webservice/grpcserver/grpc_predict_v2.proto ./webservice/grpcserver/
RUN /opt/train/bin/python -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. \
        webservice/grpcserver/grpc_predict_v2.proto
# `make image model=DIR` stages DIR's artifacts here; left empty, the build trains as it always has.
COPY build/image-model /model
# The model version the image is tagged with (make image reads it from the artifacts' metadata).
ARG MODEL_VERSION=""
RUN test -n "$MODEL_VERSION" || { echo "build with make image (--build-arg MODEL_VERSION)"; exit 1; } \
    && /opt/train/bin/pip install --quiet --no-deps --no-build-isolation --editable . \
    && if [ -n "$(ls -A /model)" ]; then /opt/train/bin/oncology-verify --artifacts /model; \
       else /opt/train/bin/oncology-train --out /model --report /src/build/report; fi \
    && /opt/train/bin/python -m oncology_model.release --artifacts /model --wheel-dir /dist \
        --expect-version "$MODEL_VERSION" \
    && /opt/venv/bin/pip install --quiet --no-deps /dist/oncology_model-*.whl \
    && /opt/venv/bin/pip uninstall --quiet --yes pip setuptools \
    && find /opt/venv -depth -type d -name tests -prune -exec rm -rf {} +

FROM builder AS training
# The Job mounts its data at /data (one or more UCI files, or with a header row) and its output at
# /out: artifacts, report, and the wheel carrying exactly those artifacts.
# matplotlib (the report's plots) needs a writable config folder: /tmp is an emptyDir in the Job.
ENV MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
ENTRYPOINT ["/opt/train/bin/oncology-train"]
CMD ["--data", "/data", "--out", "/out/artifacts", "--report", "/out/report", "--wheel-dir", "/out/dist"]

FROM ${BASE_IMAGE} AS runtime
# The model version this image serves (checked against the artifacts in the builder).
ARG MODEL_VERSION=""
LABEL org.opencontainers.image.title="oncology-webservice" \
      org.opencontainers.image.description="Breast-cancer classifier REST API (research example, not a medical device)" \
      org.opencontainers.image.version="${MODEL_VERSION}"
# nginx, the buffering front the service runs behind (webservice.front): Debian's package, from
# the base's release (DL3008: not pinned, like the build tools). Its default site and logs are
# unused: webservice.serve writes the whole configuration at each start.
# hadolint ignore=DL3008
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home --shell /usr/sbin/nologin app \
    && apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends nginx >/dev/null \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/*
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY gunicorn.conf.py ./
COPY webservice ./webservice
COPY --from=builder /src/webservice/grpcserver/grpc_predict_v2_pb2.py \
    /src/webservice/grpcserver/grpc_predict_v2_pb2_grpc.py ./webservice/grpcserver/
# `oncology-db` (migrations, retention, erasure, export: the Kubernetes Jobs run it), `oncology-quality`
# and `oncology-cases` (confirmed cases as training data), and a folder
# for the prediction record's default SQLite file (mount a volume there to keep it; Kubernetes
# uses PostgreSQL instead, see k8s/).
RUN /opt/venv/bin/python -m compileall -q /app \
    && printf '#!/bin/sh\nexec python -m webservice.records "$@"\n' > /usr/local/bin/oncology-db \
    && printf '#!/bin/sh\nexec python -m webservice.records.quality_cli "$@"\n' \
        > /usr/local/bin/oncology-quality \
    && printf '#!/bin/sh\nexec python -m webservice.records.cases "$@"\n' \
        > /usr/local/bin/oncology-cases \
    && chmod 0755 /usr/local/bin/oncology-db /usr/local/bin/oncology-quality \
        /usr/local/bin/oncology-cases \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/oncology
# TMPDIR: nginx's configuration, its temporary files and gunicorn's socket; /dev/shm is what a
# read-only container (`docker run --read-only`) can still write. Kubernetes mounts a volume.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    GRPC_PORT=8081 \
    TMPDIR=/dev/shm \
    PYTHONPATH=/app \
    ONCOLOGY_DATABASE_URL=sqlite:////var/lib/oncology/records.sqlite3
USER 10001:10001
# HTTP (nginx in front of gunicorn) and gRPC (the Open Inference Protocol's service).
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=2)"]
# nginx on PORT in front of gunicorn (on a Unix socket), gRPC on GRPC_PORT: see webservice/serve.py.
ENTRYPOINT ["python", "-m", "webservice.serve"]
