# yolo-operator. `make demo` and `make test` are all a newcomer needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Re-install when pyproject.toml or VERSION changes (the installed metadata carries the version).
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml VERSION 2>/dev/null | sha1sum | cut -c1-12)
TRAIN_VENV ?= .cache/train-venv
# The peers bench's front ends (KServe, Ray Serve, Ultralytics): the 'peers' extra, bench only.
PEERS_VENV ?= .cache/peers-venv
# The platforms `make release` builds and publishes (one image index per image); the tests release the host's.
PLATFORMS ?= linux/amd64,linux/arm64

.PHONY: help venv test test-unit test-triton test-k8s test-pods test-images test-e2e demo serve lint bench model-repo train prod-models version chart-docs clean cluster-build cluster-up cluster-down operator images fuzz k8s-demo autoscale-demo scale-bench release upgrade-test peers-venv

help:
	@echo "make demo         start Triton + the gateway, detect on a fresh image, stop"
	@echo "make k8s-demo     the same on the local cluster: helm install, S3 store, YoloService, detect, all down"
	@echo "make autoscale-demo  a 1x -> 8x -> 1x load step on the cluster, KEDA scaling both tiers: JSON + SVG plot (MODEL=yolov8n: the trained 640 px model)"
	@echo "make scale-bench  1,000 YoloServices at once on kwok nodes: time to Ready, operator memory, API requests (COUNT=...)"
	@echo "make test         every test, all four tiers (installs everything on first use)"
	@echo "make test-unit    tier 1: no Triton, no cluster, no build (minutes)"
	@echo "make test-triton  tier 2: against a real tritonserver from PyPI"
	@echo "make test-k8s     tier 3: the local control plane (built from Go modules once), helm, the operator"
	@echo "make test-pods    tier 4: real pods on the kubelet node: images, KEDA, Prometheus (test-e2e: tiers 3+4)"
	@echo "make test-images  the four images run for real (in test-pods); PLATFORM=linux/arm64 runs the arm64 ones under qemu"
	@echo "make lint         ruff check, ruff format --check and mypy on the runtime packages"
	@echo "make chart-docs   regenerate charts/yolo-operator/README.md from values.yaml"
	@echo "make release      the images (PLATFORMS: amd64 and arm64) and the chart of VERSION to REGISTRY=host[:port] (default: the local cluster's)"
	@echo "make upgrade-test the previous release -> this one -> rollback under load on the local cluster: 0 failures (JSON last)"
	@echo "make version      stamp VERSION (V=x.y.z to change it) into the chart's version and appVersion"
	@echo "make serve        the local stack in the foreground (GATEWAY_PORT, TRITON_*_PORT)"
	@echo "make cluster-up   a real control plane on loopback (built from Go modules once); cluster-down stops it"
	@echo "make operator     run the operator against the current kubeconfig"
	@echo "make bench        benchmarks (QUICK=1 for a short run; ONLY=routing|production|peers|tls|tiers|... for one section)"
	@echo "make fuzz         10^5 fuzzed requests against a gateway in a memory cgroup (COUNT=...)"
	@echo "make model-repo   rebuild the serving ONNX variants from model_repository/source"
	@echo "make train        retrain the bundled detector (needs the 'train' extra: torch, ultralytics)"
	@echo "make prod-models  random-weight YOLOv8n ONNX exports (640/416, static/dynamic, 5 classes, cls/seg/pose) in .cache/prod-models"

$(STAMP): pyproject.toml VERSION
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

# The control plane is built (once, cached) before pytest: a cold build takes ~20 minutes,
# longer than any single test may run.
test: venv cluster-build prod-models
	$(BIN)/python -m pytest

# The tiers (conftest.py's TIERS says which test is in which): each runs alone, in this order in `make test`.
test-unit: venv
	$(BIN)/python -m pytest -m unit

test-triton: venv prod-models
	$(BIN)/python -m pytest -m triton

test-k8s: venv cluster-build
	$(BIN)/python -m pytest -m k8s

test-pods: venv cluster-build prod-models
	YOLO_REAL_NODE=$${YOLO_REAL_NODE:-1} $(BIN)/python -m pytest -m pods

# The image checks alone (docker/tests, also in test-pods): no cluster. PLATFORM=linux/arm64 builds the
# arm64 images and runs them under qemu-user, as `make release` does for every platform it publishes.
PLATFORM ?=
test-images: venv
	IMAGES_TEST_PLATFORM=$(PLATFORM) $(BIN)/python -m pytest -m pods docker/tests

# The upgrade test alone (it is also in `make test`): the previous release (yolo_tools.previous) and this
# one pushed to the cluster's registry, helm install / upgrade / rollback under load; its JSON summary last.
upgrade-test: venv cluster-build
	rm -f .cache/upgrade-summary.json
	YOLO_REAL_NODE=$${YOLO_REAL_NODE:-1} $(BIN)/python -m pytest -s k8s-tests/test_pods_upgrade.py
	@cat .cache/upgrade-summary.json

test-e2e: venv cluster-build prod-models
	$(BIN)/python -m pytest -m "k8s or pods"

cluster-build:
	bash k8s-tests/cluster/build.sh

cluster-up: venv cluster-build
	PYTHONPATH=k8s-tests $(BIN)/python -m cluster up

cluster-down:
	@if test -x $(BIN)/python; then PYTHONPATH=k8s-tests $(BIN)/python -m cluster down; else PYTHONPATH=k8s-tests python3 -m cluster down; fi

operator: venv
	$(BIN)/python -m yolo_operator --all-namespaces

demo: venv
	$(BIN)/python -m yolo_tools.stack demo

# cluster up, images, helm install (ci/local-values.yaml), S3 store, examples/yoloservice-cpu.yaml,
# one detection through the gateway Service, then everything down. k8s-tests/demo.py
k8s-demo: venv cluster-build
	$(BIN)/python k8s-tests/demo.py

# the same cluster, the autoscaled CPU sample, a 1x -> 8x -> 1x load step: bench/results/autoscale.{json,svg}
# (reaction times in BENCHMARKS.md). k8s-tests/autoscale_demo.py
autoscale-demo: venv cluster-build
	$(BIN)/python k8s-tests/autoscale_demo.py

# N YoloServices (default 1,000) at once on kwok nodes: time to all Ready, the operator's memory and
# API requests/s (the apiserver's audit log), then writes per resync in steady state: bench/results/scale.json
scale-bench: venv cluster-build
	$(BIN)/python k8s-tests/scale_bench.py $(if $(COUNT),--count $(COUNT),)

serve: venv
	$(BIN)/python -m yolo_tools.stack serve

bench: venv prod-models $(if $(filter peers,$(ONLY)),peers-venv,)
	$(BIN)/python -m yolo_tools.bench $(if $(filter-out 0,$(QUICK)),--quick,) $(if $(ONLY),--only $(ONLY),)

fuzz: venv
	$(BIN)/python -m yolo_tools.fuzz --count $(or $(COUNT),100000)

# ruff's rules and format (pyproject.toml) on every Python file; mypy on the runtime packages
# (gateway, operator, modelprep: what the images carry), with no untyped definitions there.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The one version source is VERSION: `make version V=x.y.z` writes it, and (with or without V) stamps
# it into the chart's version and appVersion. pyproject.toml reads VERSION itself; the default image
# tags follow (the chart's appVersion, the operator's __version__). operator/tests/test_version.py checks.
version:
	@if [ -n "$(V)" ]; then echo "$(V)" > VERSION; fi
	@# The shell reads VERSION when the line runs (make's $$(shell) would read it before the line above wrote it).
	v=$$(cat VERSION); sed -i -E "s/^version: .*/version: $$v/; s/^appVersion: .*/appVersion: \"$$v\"/" charts/yolo-operator/Chart.yaml
	@echo "version $$(cat VERSION): VERSION, charts/yolo-operator/Chart.yaml (run make venv to refresh the installed metadata)"

# The chart's README from values.yaml's `# --` comments (helm-docs conventions); a unit test checks it.
chart-docs: venv
	$(BIN)/python -m yolo_tools.chartdocs

model-repo: venv
	$(BIN)/python model_repository/tools/build_repository.py

train:
	@test -x $(TRAIN_VENV)/bin/python || $(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/pip install -q -e '.[train]'
	$(TRAIN_VENV)/bin/python model_repository/tools/train.py --work .cache/train
	$(MAKE) model-repo

# make bench ONLY=peers: KServe, Ray Serve and Ultralytics in a venv of their own (several GB: torch, ray), made once.
peers-venv:
	@$(PEERS_VENV)/bin/python -c 'import kserve, ray.serve, ultralytics' 2>/dev/null || { \
		test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV); \
		$(PEERS_VENV)/bin/pip install -q --upgrade pip; \
		$(PEERS_VENV)/bin/pip install -q -e '.[peers]'; }

# Production-size test models with random weights, exported by Ultralytics (AGPL-3.0, this tool and
# train.py only, never at runtime) into .cache/prod-models (git-ignored) with a manifest.json; cached.
# The venv is made from the 'train' extra when missing. model_repository/tools/export_models.py
prod-models:
	@$(TRAIN_VENV)/bin/python -c 'import ultralytics, onnx, onnxruntime' 2>/dev/null || { \
		test -x $(TRAIN_VENV)/bin/python || $(PYTHON) -m venv $(TRAIN_VENV); \
		$(TRAIN_VENV)/bin/pip install -q -e '.[train]'; }
	$(TRAIN_VENV)/bin/python model_repository/tools/export_models.py --out .cache/prod-models $(if $(FORCE),--force,)

# Container images with buildah, offline (a local Debian base, host-built wheelhouses; run for real by
# docker/tests/test_images.py in the pods tier); pushed to the local cluster's registry when it runs (localhost:15000/yolo-operator/<name>:dev-<hash>,
# recorded in .cluster/registry/dev-images.json), from which its node pulls them. docker/build-images.py
images:
	$(PYTHON) docker/build-images.py

# One version (VERSION) to a registry: the four images as REGISTRY/yolo-operator/<name>:VERSION and the chart
# as oci://REGISTRY/charts/yolo-operator (its reference is the last line). tools/yolo_tools/release.py. The default
# REGISTRY is the local cluster's (make cluster-up: localhost:15000, its credentials read from .cluster/registry).
# PLATFORMS: each image is one index over them; the foreign one (arm64 here) builds under qemu-user. Every
# platform's images pass docker/tests (run under qemu for a foreign one) before anything is pushed.
release: venv
	$(PYTHON) docker/build-images.py --no-push --platform $(PLATFORMS)
	for p in $$(echo '$(PLATFORMS)' | tr ',' ' '); do \
		IMAGES_TEST_PLATFORM=$$p $(BIN)/python -m pytest -q -m pods docker/tests || exit 1; done
	$(BIN)/python -m yolo_tools.release --platforms $(PLATFORMS) $(if $(REGISTRY),--registry $(REGISTRY),) $(if $(VERSION),--version $(VERSION),) $(if $(filter-out 0,$(PLAIN_HTTP)),--plain-http,)

clean:
	rm -rf .cache .pytest_cache
