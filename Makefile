# Oncology classifier: package, web service, image and cluster rollout.
# `make help` lists the targets. Variables can be set on the command line: `make run PORT=9000`.

PYTHON ?= python3
PIPENV := PIPENV_VENV_IN_PROJECT=1 PIPENV_VERBOSITY=-1 $(PYTHON) -m pipenv
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
MODEL := oncology_model/artifacts/model.onnx
TRAINING_INPUTS := oncology_model/data/breast-cancer-wisconsin.data oncology_model/training.py \
	oncology_model/dataset.py oncology_model/datamodel.py

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

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

.PHONY: install
install: $(INSTALLED) ## Create .venv from Pipfile.lock (installs pipenv if missing)

$(INSTALLED): Pipfile.lock pyproject.toml
	@$(PYTHON) -m pipenv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet pipenv
	$(PIPENV) sync --categories "packages train dev-packages"
	@touch $@

.PHONY: train
train: $(INSTALLED) ## Train, evaluate and export the model (report in build/report/)
	$(PY) -m oncology_model.training

$(MODEL): $(TRAINING_INPUTS) | $(INSTALLED)
	$(PY) -m oncology_model.training

.PHONY: run
run: $(MODEL) ## Serve the API with gunicorn on http://127.0.0.1:8080 (HOST, PORT, WORKERS from the env)
	$(VENV)/bin/gunicorn -c gunicorn.conf.py 'webservice:create_app()'

.PHONY: test
test: $(MODEL) ## Run the test suite
	$(PY) -m pytest

.PHONY: package
package: train ## Train, test and build the wheel into dist/
	$(PY) -m pytest
	rm -rf dist
	$(PY) -m build --wheel --no-isolation --outdir dist .

.PHONY: bench
bench: $(MODEL) ## Benchmark against the HTTP floor (BENCH_ARGS=--mlserver adds MLServer); build/bench/
	$(PY) -m bench.run $(BENCH_ARGS)

.PHONY: reliability
reliability: $(MODEL) ## Soak, worker crash, reload/shutdown, bad input and bad artifacts, on loopback
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
clean: ## Remove build output, caches and trained artifacts (keeps .venv)
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	rm -f oncology_model/artifacts/model.* oncology_model/artifacts/metadata.json
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

# --- image and cluster ------------------------------------------------------------------------

.PHONY: image
image: ## Build the runtime image $(tag):$(version) and the training image $(training_tag):$(version)
	docker build --build-arg BASE_IMAGE=$(base_image) \
		--build-arg VERSION=$(version) -t $(tag):$(version) .
	docker build --build-arg BASE_IMAGE=$(base_image) \
		--build-arg VERSION=$(version) --target training -t $(training_tag):$(version) .

.PHONY: publish
publish: ## Tag and push both images to $(registry) (e.g. make publish registry=ghcr.io/acme)
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

.PHONY: batch-job
batch-job: ## Score the input volume's cases.csv into the output volume, with $(training_tag):$(version)
	kubectl apply -f k8s/batch/volumes.yaml -f k8s/batch/network-policy.yaml
	kubectl set image --local -f k8s/batch/job.yaml scoring=$(training_tag):$(version) -o yaml \
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
