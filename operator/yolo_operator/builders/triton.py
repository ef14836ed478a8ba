"""The Triton Deployment (the model fetcher init container, Triton, probes) and its headless Service."""

from __future__ import annotations

import shlex
from typing import Any

from ..spec import GROUP, ModelSource, YoloServiceSpec
from .common import (
    ENGINE_CACHE_DIR,
    MODELS_DIR,
    TRITON_EXIT_TIMEOUT_SECONDS,
    TRITON_GRPC,
    TRITON_HTTP,
    TRITON_METRICS,
    TRITON_PRESTOP_SECONDS,
    Meta,
    add_pull_secrets,
    container_resources,
    container_security_context,
    deployment_manifest,
    http_probe,
    names,
    object_metadata,
    place_pods,
    pod_security_context,
    selector_labels,
    short_digest,
)
from .model_config import build_model_configmap, configmap_key

# oci:// fetches write {"uri", "digest"} here, one file per model; the end of the script adds them
# to the init container's report (status.models records each digest).
DIGESTS_DIR = "/tmp/digests"
TRITON_TLS_DIR = "/etc/yolo-triton/tls"
# Triton reads its certificate once, at start: a missing file is one TLSInvalid line (the
# condition's reason and message), not a server that failed to start for reasons in its log.
_TLS_CHECK = (
    'for f in tls.crt tls.key; do [ -s "$TLS_DIR/$f" ] || { echo "TLSInvalid: $f is missing from the Secret '
    '$TLS_SECRET ($TLS_DIR/$f)"; exit 1; }; done; exec tritonserver "$@"'
)
DOCKER_CONFIG_FILE = "/credentials/.dockerconfigjson"


def _fetch_command(src: ModelSource, target: str, model: str) -> str:
    if src.scheme == "oci":
        plain = " --plain-http" if src.plain_http else ""
        return f"fetch-model{plain} --digest-file {DIGESTS_DIR}/{model} {shlex.quote(src.uri or '')} {target}"
    if src.pvc is not None:
        return f"cp {shlex.quote('/source/' + src.pvc.path.lstrip('/'))} {target}"
    if src.scheme == "s3":
        return f"aws s3 cp --only-show-errors {shlex.quote(src.uri or '')} {target}"
    if src.scheme == "gs":
        return f"gcloud storage cp {shlex.quote(src.uri or '')} {target}"
    return f"curl -fsSL --retry 5 --retry-connrefused -o {target} {shlex.quote(src.uri or '')}"


def _prepare_command(target: str, plans: list[tuple[str, str]], report: bool = False) -> str:
    """yolo-model-prepare (yolo_modelprep.cli): read the file, lay the CR's fields over it, make its
    batch axis dynamic where needed, and write each model's config.pbtxt from its plan."""
    args = " ".join(f"--plan /config/{configmap_key(model)}={folder}/config.pbtxt" for model, folder in plans)
    return f"yolo-model-prepare {'--report /dev/termination-log ' if report else ''}--model {target} {args}"


def fetch_script(spec: YoloServiceSpec) -> str:
    """Fetch the model (a failure fails the pod: nothing to serve), prepare it (a file that cannot
    be served fails the pod too, and its reason becomes the condition's) and lay out every model
    of the service: the tiers share its file (hard links, made after the preparation); the
    canary's and the shadow's files are fetched and prepared too, and a failure there leaves
    that model out, said in the log, and the current version serves."""
    m = spec.model
    oci = any(src.scheme == "oci" for src in (m.source, *(v.source for v in spec.variants.values())))
    ext = "plan" if m.format == "tensorrt" else "onnx"
    target = f"{MODELS_DIR}/{m.name}/1/model.{ext}"
    roles = spec.model_names()
    shared = [model for role, model in roles.items() if model == m.name or role.startswith("tier:")]
    steps = [
        "set -eu",
        *(f"mkdir -p {MODELS_DIR}/{model}/1" for model in shared),
        *([f"mkdir -p {DIGESTS_DIR}"] if oci else []),
        _fetch_command(m.source, target, m.name),
        f"test -s {target}",
    ]
    steps.append(_prepare_command(target, [(model, f"{MODELS_DIR}/{model}") for model in shared], report=True))
    steps += [f"ln {target} {MODELS_DIR}/{model}/1/model.{ext}" for model in shared if model != m.name]
    for role, model in roles.items():
        if model in shared:
            continue
        folder = f"{MODELS_DIR}/{model}"
        file = f"{folder}/1/model.{ext}"
        fetch = f"{_fetch_command(spec.variants[role].source, file, model)} && test -s {file} && {_prepare_command(file, [(model, folder)])}"
        why = shlex.quote(
            f"{role}: fetching or preparing its model failed; {model} is left out and the current version serves alone"
        )
        steps += [f"mkdir -p {folder}/1", f"{{ {fetch} ; }} || {{ echo {why} >&2 ; rm -rf {folder} ; }}"]
    if oci:
        steps.append(f"fetch-model --report-digests {DIGESTS_DIR} /dev/termination-log")
    # One command per line under `set -eu`: any failure stops the script, except the optional
    # fetches, whose `||` catches their own failure only.
    return "\n".join(steps)


def fetcher_container(spec: YoloServiceSpec) -> dict[str, Any]:
    src = spec.model.source
    mounts = [
        {"name": "models", "mountPath": MODELS_DIR},
        {"name": "model-config", "mountPath": "/config", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    container: dict[str, Any] = {
        "name": "fetch-model",
        "image": spec.fetcher_image,
        "command": ["/bin/sh", "-c", fetch_script(spec)],
        "env": [{"name": "HOME", "value": "/tmp"}],
        # The log tail becomes the termination message: the YoloService's condition quotes it.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security_context(),
        # The batch check runs the model in onnxruntime: a 640 px YOLOv8n at batch 2 peaks near 0.6 GiB.
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}},
        "volumeMounts": mounts,
    }
    if src.pvc is not None:
        mounts.append({"name": "source", "mountPath": "/source", "readOnly": True})
    if src.secret_ref is not None and src.scheme == "oci":
        # A kubernetes.io/dockerconfigjson Secret, as for image pulls: the file, not env.
        mounts.append({"name": "credentials", "mountPath": "/credentials", "readOnly": True})
        container["env"].append({"name": "DOCKER_CONFIG_FILE", "value": DOCKER_CONFIG_FILE})
    elif src.secret_ref is not None:
        # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION, or a GCP key file under /credentials
        container["envFrom"] = [{"secretRef": {"name": src.secret_ref.name}}]
        if src.scheme == "gs":
            mounts.append({"name": "credentials", "mountPath": "/credentials", "readOnly": True})
            container["env"].append({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/credentials/key.json"})
    return container


def build_triton_deployment(spec: YoloServiceSpec, meta: Meta) -> dict[str, Any]:
    t = spec.triton
    n = names(meta)
    config_hash = short_digest("".join(build_model_configmap(spec, meta)["data"].values()))
    volumes: list[dict[str, Any]] = [
        {"name": "models", "emptyDir": {}},
        {"name": "model-config", "configMap": {"name": n["config"]}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
    ]
    src = spec.model.source
    if src.pvc is not None:
        volumes.append({"name": "source", "persistentVolumeClaim": {"claimName": src.pvc.claim_name, "readOnly": True}})
    if spec.builds_engines:
        volumes.append({"name": "trt-cache", **t.engine_cache.volume_source()})
    # A first TensorRT engine build of a 640 px YOLO takes minutes: the startup probe waits that long.
    startup = t.startup_timeout_seconds or (1200 if spec.builds_engines else 600)
    if src.secret_ref is not None and src.scheme in ("gs", "oci"):
        volumes.append({"name": "credentials", "secret": {"secretName": src.secret_ref.name}})
    # With a canary or shadow, the pod is ready when the current version is (strict readiness would
    # also wait for them, and they may be broken).
    ready_path = f"/v2/models/{spec.model.name}/ready" if spec.variants else "/v2/health/ready"
    tls: list[str] = []
    if t.tls.secret_ref is not None:
        tls = [
            "--grpc-use-ssl=true",
            f"--grpc-server-cert={TRITON_TLS_DIR}/tls.crt",
            f"--grpc-server-key={TRITON_TLS_DIR}/tls.key",
        ]
        # Optional: a missing Secret or key is _TLS_CHECK's TLSInvalid, not a pod in ContainerCreating.
        volumes.append(
            {"name": "tls", "secret": {"secretName": t.tls.secret_ref.name, "defaultMode": 0o440, "optional": True}}
        )
    container = {
        "name": "triton",
        "image": t.image,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "command": ["/bin/sh", "-c", _TLS_CHECK, "tritonserver"] if tls else ["tritonserver"],
        **(
            {
                "env": [
                    {"name": "TLS_DIR", "value": TRITON_TLS_DIR},
                    {"name": "TLS_SECRET", "value": t.tls.secret_ref.name},
                ]
            }
            if t.tls.secret_ref is not None
            else {}
        ),
        "args": [
            *tls,
            f"--model-repository={MODELS_DIR}",
            "--model-control-mode=none",
            "--strict-readiness=true",
            f"--exit-timeout-secs={TRITON_EXIT_TIMEOUT_SECONDS}",
            f"--http-port={TRITON_HTTP}",
            f"--grpc-port={TRITON_GRPC}",
            f"--metrics-port={TRITON_METRICS}",
            "--allow-metrics=true",
            "--grpc-keepalive-time=10000",
            "--grpc-keepalive-timeout=5000",
            "--grpc-keepalive-permit-without-calls=1",
            "--grpc-http2-max-pings-without-data=0",
            "--log-verbose=0",
            # A canary or shadow that fails to load must not stop Triton: the current version serves alone.
            *(["--exit-on-error=false"] if spec.variants else []),
        ],
        "ports": [
            {"name": "http", "containerPort": TRITON_HTTP, "protocol": "TCP"},
            {"name": "grpc", "containerPort": TRITON_GRPC, "protocol": "TCP"},
            {"name": "metrics", "containerPort": TRITON_METRICS, "protocol": "TCP"},
        ],
        "resources": container_resources(t.resources),
        "securityContext": container_security_context(),
        "startupProbe": http_probe(ready_path, periodSeconds=5, failureThreshold=-(-startup // 5), timeoutSeconds=3),
        "readinessProbe": http_probe(ready_path, periodSeconds=5, failureThreshold=3, timeoutSeconds=3),
        "livenessProbe": http_probe("/v2/health/live", periodSeconds=10, failureThreshold=6, timeoutSeconds=5),
        # Leave the Service first; then SIGTERM, and Triton finishes what it holds (exit timeout).
        "lifecycle": {"preStop": {"sleep": {"seconds": TRITON_PRESTOP_SECONDS}}},
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "dshm", "mountPath": "/dev/shm"},
            *([{"name": "trt-cache", "mountPath": ENGINE_CACHE_DIR}] if spec.builds_engines else []),
            *([{"name": "tls", "mountPath": TRITON_TLS_DIR, "readOnly": True}] if tls else []),
        ],
    }
    pod_spec: dict[str, Any] = {
        "securityContext": pod_security_context(),
        "terminationGracePeriodSeconds": TRITON_PRESTOP_SECONDS + TRITON_EXIT_TIMEOUT_SECONDS + 5,
        "initContainers": [fetcher_container(spec)],
        "containers": [container],
        "volumes": volumes,
    }
    place_pods(pod_spec, t)
    add_pull_secrets(pod_spec, spec)
    if not t.tolerations and t.gpus:
        pod_spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(TRITON_METRICS),
        "prometheus.io/path": "/metrics",
        f"{GROUP}/config-hash": config_hash,  # a new model config rolls the pods
    }
    return deployment_manifest(
        meta,
        n["triton"],
        "triton",
        pod_annotations=annotations,
        pod_spec=pod_spec,
        autoscaled=t.autoscaling.enabled,
        replicas=t.replicas,
    )


def build_triton_service(spec: YoloServiceSpec, meta: Meta) -> dict[str, Any]:
    """Headless: the gateway's one gRPC channel resolves every pod and round-robins over them."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_metadata(meta, names(meta)["triton"], "triton"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": False,
            "selector": selector_labels(meta, "triton"),
            "ports": [
                {"name": "grpc", "port": TRITON_GRPC, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
                {"name": "http", "port": TRITON_HTTP, "targetPort": "http", "protocol": "TCP"},
                {"name": "metrics", "port": TRITON_METRICS, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }
