# Oncology classifier: package, web service, image and cluster rollout.
# `make help` lists the targets. Variables can be set on the command line: `make run PORT=9000`.

PYTHON ?= python3
PIPENV := PIPENV_VENV_IN_PROJECT=1 PIPENV_VERBOSITY=-1 $(PYTHON) -m pipenv
VENV := .venv
PY := $(VENV)/bin/python
# pip compiles each installed module to bytecode one at a time: half of `make test`'s install.
# The installs skip it and COMPILE does it on every core (packages' own tests left out), once:
# compiling on first import instead costs more, in every process, where bytecode is not written.
SYNC := $(PIPENV) sync --extra-pip-args=--no-compile
COMPILE := $(PY) -m compileall -q -j 0 -x '/tests?/' $(VENV)/lib
# Two installs into the same .venv: what serving needs (`make run`), then everything else.
SERVING := $(VENV)/.serving
INSTALLED := $(VENV)/.installed
ARTIFACTS := oncology_model/artifacts
# The gRPC service's proto, compiled at install by protoc from grpcio-tools (the lock's `build`
# category: never in the runtime image) into modules beside it, which git ignores.
PROTO := webservice/grpcserver/grpc_predict_v2.proto
PROTOC := -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=.
# The training date written into the committed metadata.json, fixed so that `make train` and the
# reproducibility test (tests/service/test_training.py) give byte-identical artifacts; change it when you
# retrain on purpose. 1795219200 is 2026-11-21T00:00:00Z.
MODEL_DATE_EPOCH := 1795219200
# `make test` runs the suite on every core (pytest-xdist), whole modules per worker so that a
# module's server or training is started once; `make test workers=0` runs it in one process.
workers ?= auto

version := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
# The model an image is built around: a training output folder (`make image model=DIR`); without
# it, the bundled model (the image build trains it again, deterministically).
model ?=
model_dir := $(or $(model),oncology_model/artifacts)
# Image tags name the model: its version from metadata.json, `+` replaced by `-`
# (1.0.0+612cf7af8850 -> oncology-webservice:1.0.0-612cf7af8850). image, publish, deploy and
# train-job all use image_version; set it on the command line to deploy a tag without the artifacts.
model_version = $(shell $(PYTHON) -c 'import json, sys; print(json.load(open(sys.argv[1]))["model_version"])' $(model_dir)/metadata.json 2>/dev/null)
image_version = $(subst +,-,$(model_version))
# Images and rollout (`make image deploy tag=registry/oncology-webservice team_label=oncology`).
tag ?= oncology-webservice
training_tag ?= $(tag)-training
team_label ?= oncology
registry ?=
base_image ?= python:3.11-slim-bookworm
# Extra `docker build` flags, e.g. DOCKER_BUILD_FLAGS="--network host" (the image test sets it).
DOCKER_BUILD_FLAGS ?=
# The package index `make publish-model` uploads to (its upload URL), with twine from its own venv.
index ?=
TWINE := build/twine-venv/bin/twine
TWINE_PIN := twine==7.0.0
WHEEL_DIR := build/wheel
# Where `make image` puts the artifacts of model=DIR for the build (empty: the build trains).
MODEL_STAGE := build/image-model
# Linters and validators for the image and manifests, kept out of the app's environment.
TOOLS := .tools/.installed
TOOLS_BIN := .tools/bin
TRIVY_SKIP := --skip-dirs .venv --skip-dirs .tools --skip-dirs build --skip-dirs dist --skip-dirs .git

.DEFAULT_GOAL := help

# Variables whose values `make help` shows in place of their names.
HELP_VARIABLES := tag training_tag version image_version model_dir team_label registry base_image

.PHONY: help
help: ## Show this help
	@if [ -t 1 ]; then colour='\033[36m'; plain='\033[0m'; else colour=; plain=; fi; \
	grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
	sed $(foreach v,$(HELP_VARIABLES),-e 's|$$($(v))|$($(v))|g') | \
	awk -v on="$$colour" -v off="$$plain" \
		'BEGIN {FS = ":.*?## "}; {printf "  %s%-17s%s %s\n", on, $$1, off, $$2}'

.PHONY: install
install: $(INSTALLED) ## Create .venv from Pipfile.lock: serving, training, test and lint tools

$(SERVING): Pipfile.lock pyproject.toml $(PROTO)
	@$(PYTHON) -m pipenv --version >/dev/null 2>&1 || { \
		echo "==> Installing pipenv for $(PYTHON) (once)"; $(PYTHON) -m pip install --quiet pipenv; }
	@echo "==> Installing what serving needs into $(VENV) from Pipfile.lock: numpy, onnxruntime, \
	flask, flask-restx, gunicorn and its C parser, orjson, prometheus-client, grpcio (about 10 s; the first time \
	about 25 s: pip compiles the parser and keeps the wheel in its cache)"
	@$(SYNC) --categories packages
	@echo "==> Compiling $(PROTO) (the gRPC service's messages) with grpcio-tools' protoc"
	@$(SYNC) --categories build
	@$(PY) $(PROTOC) $(PROTO)
	@echo "==> Compiling them to bytecode on every core"
	@$(COMPILE) >/dev/null
	@echo "==> Installing this project (oncology_model, webservice) into $(VENV), editable"
	@PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --disable-pip-version-check --no-deps \
		--no-compile --no-build-isolation --editable .
	@touch $@

$(INSTALLED): $(SERVING)
	@echo "==> Installing training, test and lint tools into $(VENV) from Pipfile.lock: \
	scikit-learn, pandas, matplotlib, pytest, schemathesis, playwright, ruff, \
	mypy... (about 30 s)"
	@$(SYNC) --categories "packages train dev-packages"
	@echo "==> Compiling them to bytecode on every core (about 20 s)"
	@$(COMPILE) >/dev/null
	@touch $@

# Debian packages the service and the tests drive for real, by the executable that shows each is
# there: nginx (the front the service runs behind), Chromium (browser tests), Prometheus and
# promtool (monitoring tests), wrk (load in bench and reliability), PostgreSQL (the prediction
# record's tests and `make k8s-play`: harness/postgres.py; its server's programs are off PATH, so
# postgresql-common's pg_lsclusters, which comes with it, shows it). Installed with apt when
# missing and run as root; tests themselves install nothing.
NGINX := $(or $(shell command -v nginx 2>/dev/null),/usr/sbin/nginx)
SYSTEM_PACKAGES := nginx:nginx chromium:chromium prometheus:prometheus promtool:prometheus wrk:wrk \
	pg_lsclusters:postgresql
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends

$(NGINX):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "==> Installing Debian's nginx: the service runs behind it (about 10 s, once)"; \
		apt-get update -qq && $(APT_INSTALL) nginx >/dev/null; \
	else echo "nginx is needed (the service runs behind it): sudo apt-get install nginx"; exit 2; fi

.PHONY: system-packages
system-packages: ## Install the Debian packages the tests drive (nginx, chromium, prometheus, wrk, postgresql) when missing
	@missing=$$(for pair in $(SYSTEM_PACKAGES); do \
		command -v "$${pair%%:*}" >/dev/null || echo "$${pair##*:}"; done | sort -u); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "==> Installing Debian's" $$missing; \
			apt-get update -qq && $(APT_INSTALL) $$missing >/dev/null; \
		else echo "missing Debian packages: sudo apt-get install" $$missing; exit 2; fi; fi

.PHONY: train
train: $(INSTALLED) ## Train, evaluate and export the bundled model (report in build/report/)
	@echo "==> Training into $(ARTIFACTS) (2 candidates x 5 repeats x 5 folds on every core, \
	then the chosen one on all rows; about 25 s on 2 cores); report in build/report"
	SOURCE_DATE_EPOCH=$(MODEL_DATE_EPOCH) PYTHONUNBUFFERED=1 $(PY) -m oncology_model.training_cli \
		--out $(ARTIFACTS) --report build/report

.PHONY: run
run: $(SERVING) $(NGINX) ## Serve the API on http://127.0.0.1:8080 (nginx in front of gunicorn) and gRPC on 8081 (HOST, PORT, WORKERS, GRPC_PORT from the env)
	@echo "==> Serving on http://$${HOST:-127.0.0.1}:$${PORT:-8080} (Swagger UI at /docs): nginx \
	in front of gunicorn, and gRPC (Open Inference Protocol) on port $${GRPC_PORT:-8081}, once the \
	settings check out; Ctrl-C stops them all"
	$(PY) -m webservice.serve

.PHONY: test
test: $(INSTALLED) system-packages docs ## Run the test suite on every core (workers=N to choose)
	$(PY) -m pytest --numprocesses $(workers) --dist loadscope

# `make coverage`: the same suite measuring the lines of oncology_model and webservice that ran in
# the test processes (the servers the tests start run in processes of their own, not measured).
COVERAGE_DIR := build/coverage

.PHONY: coverage
coverage: $(INSTALLED) system-packages docs ## Run the test suite with line coverage: build/coverage/ (html/, coverage.json) for make upload-report
	rm -rf $(COVERAGE_DIR) && mkdir -p $(COVERAGE_DIR)
	COVERAGE_FILE=$(COVERAGE_DIR)/.coverage $(PY) -m pytest --numprocesses $(workers) --dist loadscope \
		--cov=oncology_model --cov=webservice --cov-report=term:skip-covered \
		--cov-report=html:$(COVERAGE_DIR)/html --cov-report=json:$(COVERAGE_DIR)/coverage.json

.PHONY: test-unit
test-unit: $(INSTALLED) ## Run the unit tests alone (one process each: no server, network or subprocess; under 30 s)
	$(PY) -m pytest tests/unit --numprocesses $(workers) --dist loadscope

.PHONY: package
package: train ## Train, test and build the wheel into dist/
	$(PY) -m pytest
	rm -rf dist
	$(PY) -m build --wheel --no-isolation --outdir dist .

# What `make upload-report` puts under <bucket>/<model version of model_dir>/ (each when present).
bucket ?=
report_dir ?= build/report
gate_json ?= build/gate/compare.json
coverage_report ?= $(COVERAGE_DIR)
bench_dir ?= build/bench

.PHONY: upload-report
upload-report: $(SERVING) ## Upload the report, gate JSON, coverage and bench figures to bucket=s3://BUCKET[/PREFIX]/<model version>/ (AWS credentials from the env)
	@test -n "$(bucket)" || { echo "make upload-report bucket=s3://BUCKET[/PREFIX]"; exit 2; }
	$(PY) -m ops.upload_report --bucket "$(bucket)" --model "$(model_dir)" --report "$(report_dir)" \
		--gate "$(gate_json)" --coverage "$(coverage_report)" --bench "$(bench_dir)"

.PHONY: bench
bench: $(INSTALLED) system-packages ## Benchmark against the HTTP floor (BENCH_ARGS=--mlserver adds MLServer); build/bench/
	$(PY) -m bench.run $(BENCH_ARGS)

.PHONY: interop
interop: $(INSTALLED) system-packages ## tritonclient and the kserve SDK (own venv, build/interop) against the live server, V2
	$(PY) -m ops.interop

.PHONY: reliability
reliability: $(INSTALLED) system-packages ## Soak, worker crash, reload/shutdown, bad input and bad artifacts, on loopback
	$(PY) -m reliability.run

.PHONY: security
security: $(TOOLS) $(INSTALLED) ## bandit, trivy config and secret scans, pip-audit of the whole lock
	$(TOOLS_BIN)/bandit -q -r oncology_model webservice ops harness bench reliability gunicorn.conf.py -ll
	$(TOOLS_BIN)/trivy config --skip-check-update --severity HIGH,CRITICAL --exit-code 1 \
		$(TRIVY_SKIP) .
	$(TOOLS_BIN)/trivy fs --skip-db-update --skip-check-update --scanners secret --exit-code 1 \
		$(TRIVY_SKIP) .
	@mkdir -p build/security
	$(PIPENV) requirements --hash --categories "packages train dev-packages build" \
		| grep -v '^-e ' > build/security/locked-requirements.txt
	$(PYTHON) -m ops.audit_lock --pip-audit $(TOOLS_BIN)/pip-audit \
		--requirements build/security/locked-requirements.txt \
		--exceptions ops/vulnerability-exceptions.txt $(if $(AUDIT_STRICT),--strict)

.PHONY: token
token: $(SERVING) ## Make a bearer token for name=CALLER [permissions=predict,outcomes,records]: printed once, with its line
	@test -n "$(name)" || { echo "set name=CALLER"; exit 2; }
	@$(PY) -m webservice.tokens new '$(name)' $(if $(permissions),'$(permissions)')

.PHONY: lint
lint: $(INSTALLED) ## ruff (lint and format) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

.PHONY: format
format: $(INSTALLED) ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The documentation site's tools, in their own virtual environment.
DOCS_VENV := build/docs-venv
DOCS := $(DOCS_VENV)/.installed

$(DOCS): docs/requirements.txt
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/pip install --quiet --disable-pip-version-check -r docs/requirements.txt
	@touch $@

.PHONY: docs
docs: $(DOCS) ## Build the documentation site into build/site (strict: broken links and anchors fail)
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict --quiet

.PHONY: docs-serve
docs-serve: $(DOCS) ## Serve the documentation site on http://127.0.0.1:8000, rebuilt as you edit
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8000

.PHONY: clean
clean: ## Remove build output and caches (keeps .venv and the committed model)
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis .schemathesis
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

# --- image and cluster ------------------------------------------------------------------------

.PHONY: model-version
model-version: ## Print the model version of $(model_dir) and the image tag it gives
	@test -n "$(image_version)" || { echo "no model version: $(model_dir)/metadata.json is missing \
	or unreadable (make train, or model=DIR, or image_version=TAG)"; exit 2; }
	@echo "model $(model_version) in $(model_dir): image tag $(image_version)"

$(TWINE):
	$(PYTHON) -m venv build/twine-venv
	build/twine-venv/bin/pip install --quiet $(TWINE_PIN)

.PHONY: publish-model
publish-model: model-version $(INSTALLED) $(TWINE) ## Upload the wheel of $(model_dir) (version: the model version) to index=URL, login from TWINE_USERNAME/TWINE_PASSWORD
	@test -n "$(index)" || { echo "set index=URL (the index's upload URL)"; exit 2; }
	$(PY) -m oncology_model.release --artifacts $(model_dir) --wheel-dir $(WHEEL_DIR)
	$(TWINE) upload --verbose --non-interactive --disable-progress-bar --repository-url $(index) \
		$(WHEEL_DIR)/oncology_model-$(model_version)-py3-none-any.whl

.PHONY: image
image: model-version ## Build $(tag):$(image_version) and $(training_tag):$(image_version) (model=DIR: around DIR's model)
	rm -rf $(MODEL_STAGE) && mkdir -p $(MODEL_STAGE)
	$(if $(model),cp -R $(model)/. $(MODEL_STAGE)/)
	docker build $(DOCKER_BUILD_FLAGS) --build-arg BASE_IMAGE=$(base_image) \
		--build-arg MODEL_VERSION=$(model_version) -t $(tag):$(image_version) .
	docker build $(DOCKER_BUILD_FLAGS) --build-arg BASE_IMAGE=$(base_image) \
		--build-arg MODEL_VERSION=$(model_version) --target training -t $(training_tag):$(image_version) .

.PHONY: publish
publish: model-version ## Tag and push both images to a registry (make publish registry=HOST[:PORT]/NAMESPACE)
	@test -n "$(registry)" || { echo "set registry=HOST[:PORT]/NAMESPACE"; exit 2; }
	docker tag $(tag):$(image_version) $(registry)/$(tag):$(image_version)
	docker tag $(training_tag):$(image_version) $(registry)/$(training_tag):$(image_version)
	docker push $(registry)/$(tag):$(image_version)
	docker push $(registry)/$(training_tag):$(image_version)

.PHONY: deploy
deploy: ## Roll the Deployment(s) labelled app/team out to $(tag):$(image_version) (after migrate-job), then wait
	kubectl set image deployments -l app=oncology-webservice,team=$(team_label) oncology-webservice=$(tag):$(image_version)
	kubectl rollout status deployments -l app=oncology-webservice,team=$(team_label) --timeout=5m
	kubectl set image cronjobs -l $(RECORDS) oncology-db=$(tag):$(image_version)

# Canary and rollback: the Deployments labelled app/team, and track: stable or canary (k8s/).
ROLLOUT := app=oncology-webservice,team=$(team_label)
# The prediction record's Jobs (k8s/records/): the purge CronJob follows the stable image.
RECORDS := app=oncology-records,team=$(team_label)
# The service container's image in a Deployment, as kubectl's jsonpath reads it.
SERVICE_IMAGE := {.spec.template.spec.containers[?(@.name=="oncology-webservice")].image}
# What `make rollback` undoes: the canary, or after a promote `track=stable,canary`.
track ?= canary

.PHONY: canary
canary: model-version ## Roll the canary Deployment (one pod) out to $(tag):$(image_version), then wait
	kubectl set image deployments -l $(ROLLOUT),track=canary oncology-webservice=$(tag):$(image_version)
	kubectl rollout status deployments -l $(ROLLOUT),track=canary --timeout=5m

# The canary judged on confirmed outcomes (docs/quality.md), in a stable pod, which reads the
# record: since=YYYY-MM-DD (the canary's start) counts only answers from then on.
since ?=
.PHONY: canary-verdict
canary-verdict: ## The canary judged on outcomes: PROMOTE (exit 0), WAIT (3) or ROLL BACK (4) [since=DAY]
	kubectl exec deployment/oncology-webservice -c oncology-webservice -- oncology-quality compare --candidate canary --baseline stable$(if $(since), --since $(since))

.PHONY: promote
promote: $(if $(force),,canary-verdict) ## Roll the stable Deployment out to the canary's image, once canary-verdict says PROMOTE (force=1 skips it), then wait
	image=$$(kubectl get deployments -l $(ROLLOUT),track=canary \
		-o jsonpath='{range .items[*]}$(SERVICE_IMAGE){" "}{end}') && \
	set -- $$image && test $$# = 1 || { echo "want one canary Deployment, found: $$image"; exit 2; } && \
	kubectl set image deployments -l $(ROLLOUT),track=stable oncology-webservice=$$1 && \
	kubectl rollout status deployments -l $(ROLLOUT),track=stable --timeout=5m && \
	kubectl set image cronjobs -l $(RECORDS) oncology-db=$$1

.PHONY: rollback
rollback: ## Undo the canary's last rollout (kubectl rollout undo; after a promote: track=stable,canary)
	kubectl rollout undo deployments -l '$(ROLLOUT),track in ($(track))'
	kubectl rollout status deployments -l '$(ROLLOUT),track in ($(track))' --timeout=5m

# The Jobs read and write the bucket instead of claims with storage=1 (docs/storage.md): the
# settings, account and egress policy of k8s/components/model-from-storage, applied with them.
storage ?=
STORAGE_COMPONENT := k8s/components/model-from-storage
STORAGE_OBJECTS := -f $(STORAGE_COMPONENT)/settings.yaml -f $(STORAGE_COMPONENT)/service-account.yaml \
	-f $(STORAGE_COMPONENT)/network-policy.yaml

.PHONY: train-job
train-job: ## Run the training Job in the cluster with $(training_tag):$(image_version) (storage=1: from and to the bucket)
	kubectl apply $(if $(storage),$(STORAGE_OBJECTS),-f k8s/training/output-volume.yaml \
		-f k8s/training/data-volume.yaml) -f k8s/training/network-policy.yaml
	kubectl set image --local -f k8s/training/$(if $(storage),job-from-storage,job).yaml \
		training=$(training_tag):$(image_version) -o yaml | kubectl create -f -

# A JSON patch for the migration Job before it is created: with k8s/components/postgres,
# job_patch=k8s/components/postgres/database-url.yaml (the database URL from CloudNativePG's Secret).
job_patch ?=

.PHONY: migrate-job
migrate-job: ## Migrate the record's database with $(tag):$(image_version) (a Job; before deploy or canary), show its log
	@job=$$(kubectl set image --local -f k8s/records/migrate-job.yaml oncology-db=$(tag):$(image_version) -o yaml \
		$(if $(job_patch),| kubectl patch --local -f - --type json --patch-file $(job_patch) -o yaml) \
		| kubectl create -f - -o name) && \
	echo "==> $$job: oncology-db upgrade with $(tag):$(image_version); waiting for it to finish" && \
	for second in $$(seq 0 2 360); do \
		state=" $$(kubectl get $$job -o 'jsonpath={.status.conditions[?(@.status=="True")].type}') "; \
		case "$$state" in *" Complete "*|*" Failed "*) break;; esac; sleep 2; done; \
	kubectl logs $$job; \
	case "$$state" in *" Complete "*) echo "==> $$job completed";; \
		*) echo "==> $$job did not complete (conditions:$$state): kubectl describe $$job"; exit 1;; esac

.PHONY: batch-job
batch-job: ## Score the input volume's cases.csv into the output volume, with $(training_tag):$(image_version) (storage=1: bucket to bucket)
	kubectl apply $(if $(storage),$(STORAGE_OBJECTS),-f k8s/batch/volumes.yaml) \
		-f k8s/batch/network-policy.yaml
	kubectl set image --local -f k8s/batch/$(if $(storage),job-from-storage,job).yaml \
		scoring=$(training_tag):$(image_version) -o yaml | kubectl create -f -

.PHONY: image-test
image-test: $(INSTALLED) ## Build the images; ship a new model through the Job, the gate, a loopback index and registry
	$(PY) -m ops.image_test --image $(tag) --training-image $(training_tag)

# k8s-play redeploys to the model `make image-test` trained as the Job and pushed.
play_next_model ?= build/ship-test/out/artifacts

.PHONY: k8s-play
k8s-play: $(INSTALLED) ## Play k8s/ with podman: pull from build/registry (after image-test), deploy, redeploy, down, the Job
	$(PY) -m ops.k8s_play --first-model $(model_dir) --next-model $(play_next_model)

$(TOOLS): ops/tools-requirements.txt
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet -r ops/tools-requirements.txt
	@touch $@

.PHONY: monitoring-rules
monitoring-rules: ## Make k8s/components/monitoring/prometheus-rule.yaml from monitoring/rules.yaml
	$(PYTHON) -m ops.prometheus_rule

.PHONY: k8s-check
k8s-check: $(TOOLS) ## Validate k8s/ strictly for several Kubernetes versions, lint Dockerfile and manifests
	$(PYTHON) -m ops.k8s_check --tools $(TOOLS_BIN)
