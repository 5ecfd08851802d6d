# Oncology classifier: package, web service, image and cluster rollout.
# `make help` lists the targets. Variables can be set on the command line: `make run PORT=9000`.

PYTHON ?= python3
PIPENV := PIPENV_VENV_IN_PROJECT=1 PIPENV_VERBOSITY=-1 $(PYTHON) -m pipenv
VENV := .venv
PY := $(VENV)/bin/python
# Two installs into the same .venv: what serving needs (`make run`), then everything else.
SERVING := $(VENV)/.serving
INSTALLED := $(VENV)/.installed
ARTIFACTS := oncology_model/artifacts
# The training date written into the committed metadata.json, fixed so that `make train` and the
# reproducibility test (tests/test_training.py) give byte-identical artifacts; change it when you
# retrain on purpose. 1795219200 is 2026-11-21T00:00:00Z.
MODEL_DATE_EPOCH := 1795219200

version := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
# Images and rollout (`make image deploy tag=registry/oncology-webservice team_label=oncology`).
tag ?= oncology-webservice
training_tag ?= $(tag)-training
team_label ?= oncology
registry ?=
base_image ?= python:3.11-slim-bookworm
# Linters and validators for the image and manifests, kept out of the app's environment.
TOOLS := .tools/.installed
TOOLS_BIN := .tools/bin
TRIVY_SKIP := --skip-dirs .venv --skip-dirs .tools --skip-dirs build --skip-dirs dist --skip-dirs .git

.DEFAULT_GOAL := help

# Variables whose values `make help` shows in place of their names.
HELP_VARIABLES := tag training_tag version team_label registry base_image

.PHONY: help
help: ## Show this help
	@if [ -t 1 ]; then colour='\033[36m'; plain='\033[0m'; else colour=; plain=; fi; \
	grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
	sed $(foreach v,$(HELP_VARIABLES),-e 's|$$($(v))|$($(v))|g') | \
	awk -v on="$$colour" -v off="$$plain" \
		'BEGIN {FS = ":.*?## "}; {printf "  %s%-14s%s %s\n", on, $$1, off, $$2}'

.PHONY: install
install: $(INSTALLED) ## Create .venv from Pipfile.lock: serving, training, test and lint tools

$(SERVING): Pipfile.lock pyproject.toml
	@$(PYTHON) -m pipenv --version >/dev/null 2>&1 || { \
		echo "==> Installing pipenv for $(PYTHON) (once)"; $(PYTHON) -m pip install --quiet pipenv; }
	@echo "==> Installing what serving needs into $(VENV) from Pipfile.lock: numpy, onnxruntime, \
	flask, flask-restx, gunicorn, orjson, prometheus-client (about 15 s)"
	@$(PIPENV) sync --categories packages
	@echo "==> Installing this project (oncology_model, webservice) into $(VENV), editable"
	@PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --disable-pip-version-check --no-deps \
		--no-build-isolation --editable .
	@touch $@

$(INSTALLED): $(SERVING)
	@echo "==> Installing training, test and lint tools into $(VENV) from Pipfile.lock: \
	scikit-learn, pandas, matplotlib, pytest, schemathesis, playwright, ruff, \
	mypy... (about 60 s)"
	@$(PIPENV) sync --categories "packages train dev-packages"
	@touch $@

.PHONY: train
train: $(INSTALLED) ## Train, evaluate and export the bundled model (report in build/report/)
	@echo "==> Training into $(ARTIFACTS) (2 candidates x 5 repeats x 5 folds, then the \
	chosen one on all rows; about 40 s); report in build/report"
	SOURCE_DATE_EPOCH=$(MODEL_DATE_EPOCH) PYTHONUNBUFFERED=1 $(PY) -m oncology_model.training \
		--out $(ARTIFACTS) --report build/report

.PHONY: run
run: $(SERVING) ## Serve the API with gunicorn on http://127.0.0.1:8080 (HOST, PORT, WORKERS from the env)
	@echo "==> Starting gunicorn on http://$${HOST:-127.0.0.1}:$${PORT:-8080} (Swagger UI at /docs); \
	Ctrl-C stops it"
	$(VENV)/bin/gunicorn -c gunicorn.conf.py 'webservice:create_app()'

.PHONY: test
test: $(INSTALLED) ## Run the test suite
	$(PY) -m pytest

.PHONY: package
package: train ## Train, test and build the wheel into dist/
	$(PY) -m pytest
	rm -rf dist
	$(PY) -m build --wheel --no-isolation --outdir dist .

.PHONY: bench
bench: $(INSTALLED) ## Benchmark against the HTTP floor (BENCH_ARGS=--mlserver adds MLServer); build/bench/
	$(PY) -m bench.run $(BENCH_ARGS)

.PHONY: reliability
reliability: $(INSTALLED) ## Soak, worker crash, reload/shutdown, bad input and bad artifacts, on loopback
	$(PY) -m reliability.run

.PHONY: security
security: $(TOOLS) ## bandit (medium+), trivy config (HIGH/CRITICAL) and trivy's secret scan
	$(TOOLS_BIN)/bandit -q -r oncology_model webservice ops bench reliability gunicorn.conf.py -ll
	$(TOOLS_BIN)/trivy config --skip-check-update --severity HIGH,CRITICAL --exit-code 1 \
		$(TRIVY_SKIP) .
	$(TOOLS_BIN)/trivy fs --skip-db-update --skip-check-update --scanners secret --exit-code 1 \
		$(TRIVY_SKIP) .

.PHONY: lint
lint: $(INSTALLED) ## ruff (lint and format) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

.PHONY: format
format: $(INSTALLED) ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: clean
clean: ## Remove build output and caches (keeps .venv and the committed model)
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis .schemathesis
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

# --- image and cluster ------------------------------------------------------------------------

.PHONY: image
image: ## Build the runtime image $(tag):$(version) and the training image $(training_tag):$(version)
	docker build --build-arg BASE_IMAGE=$(base_image) \
		--build-arg VERSION=$(version) -t $(tag):$(version) .
	docker build --build-arg BASE_IMAGE=$(base_image) \
		--build-arg VERSION=$(version) --target training -t $(training_tag):$(version) .

.PHONY: publish
publish: ## Tag and push both images to a registry (make publish registry=ghcr.io/acme)
	@test -n "$(registry)" || { echo "set registry=HOST/NAMESPACE"; exit 2; }
	docker tag $(tag):$(version) $(registry)/$(tag):$(version)
	docker tag $(training_tag):$(version) $(registry)/$(training_tag):$(version)
	docker push $(registry)/$(tag):$(version)
	docker push $(registry)/$(training_tag):$(version)

.PHONY: deploy
deploy: ## Roll the Deployment(s) labelled app/team out to $(tag):$(version), then wait
	kubectl set image deployments -l app=oncology-webservice,team=$(team_label) oncology-webservice=$(tag):$(version)
	kubectl rollout status deployments -l app=oncology-webservice,team=$(team_label) --timeout=5m

.PHONY: train-job
train-job: ## Run the training Job in the cluster with $(training_tag):$(version)
	kubectl apply -f k8s/training/output-volume.yaml -f k8s/training/network-policy.yaml
	kubectl set image --local -f k8s/training/job.yaml training=$(training_tag):$(version) -o yaml \
		| kubectl create -f -

.PHONY: image-test
image-test: ## Build the images for real and run the container read-only (starts dockerd if needed)
	$(PYTHON) ops/image_test.py --image $(tag):$(version) --training-image $(training_tag):$(version) \
		--version $(version)

$(TOOLS): ops/tools-requirements.txt
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet -r ops/tools-requirements.txt
	@touch $@

.PHONY: k8s-check
k8s-check: $(TOOLS) ## Validate k8s/ strictly for several Kubernetes versions, lint Dockerfile and manifests
	$(PYTHON) ops/k8s_check.py --tools $(TOOLS_BIN)
