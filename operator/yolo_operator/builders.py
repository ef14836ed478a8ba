"""Pure builders: one function per child object, (spec, meta) -> manifest dict.

No cluster access here. Owner references are added by the reconciler
(`kopf.adopt`), so these functions stay pure and unit-testable.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass
from typing import Any

from . import __version__
from .spec import GROUP, YoloServiceSpec

TRITON_HTTP, TRITON_GRPC, TRITON_METRICS = 8000, 8001, 8002
GATEWAY_PORT = 8080
MODELS_DIR = "/models"
PRESTOP_SECONDS = 5
# Triton stays up this long after its pod leaves the Service: gateways re-resolve the headless
# Service every 2 s (plus DNS caching) and stop sending to it before it starts to drain.
TRITON_PRESTOP_SECONDS = 10
TRITON_EXIT_TIMEOUT_SECONDS = 30
TRITON_PENDING_METRIC = "nv_inference_pending_request_count"
GATEWAY_INFLIGHT_METRIC = "yolo_gateway_inflight_requests"
GATEWAY_TRITON_METRIC = "yolo_gateway_triton_requests"  # in a Triton call or waiting for one (cold start)
OWNER_LABEL = f"{GROUP}/yoloservice"


@dataclass(frozen=True)
class Meta:
    """What the builders need to know about the YoloService object itself."""

    name: str
    namespace: str
    generation: int = 1

    @classmethod
    def from_body(cls, body: Any) -> Meta:
        m = body["metadata"]
        return cls(m["name"], m["namespace"], int(m.get("generation", 1) or 1))


# --------------------------------------------------------------------------- names and labels


def names(meta: Meta) -> dict[str, str]:
    n = meta.name
    return {
        "config": f"{n}-model-config",
        "triton": f"{n}-triton",
        "gateway": f"{n}-gateway",
        "service": n,
    }


def selector_labels(meta: Meta, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "yolo-service",
        "app.kubernetes.io/instance": meta.name,
        "app.kubernetes.io/component": component,
    }


def labels(meta: Meta, component: str) -> dict[str, str]:
    return {
        **selector_labels(meta, component),
        "app.kubernetes.io/part-of": "yolo-operator",
        "app.kubernetes.io/managed-by": "yolo-operator",
        "app.kubernetes.io/version": __version__,
        OWNER_LABEL: meta.name,
    }


def _metadata(meta: Meta, name: str, component: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": meta.namespace, "labels": labels(meta, component)}
    if annotations:
        md["annotations"] = annotations
    return md


# --------------------------------------------------------------------------- Triton model config


def _pb_list(values: list[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def render_config_pbtxt(spec: YoloServiceSpec) -> str:
    """The Triton model configuration (protobuf text format) for the production backends."""
    m, t = spec.model, spec.triton
    s, nc = m.input_size, len(m.class_names)
    platform = "tensorrt_plan" if m.format == "tensorrt" else "onnxruntime_onnx"
    if m.format == "end2end":
        outputs = [
            ("num_dets", "TYPE_INT32", [1]),
            ("det_boxes", "TYPE_FP32", [m.max_detections, 4]),
            ("det_scores", "TYPE_FP32", [m.max_detections]),
            ("det_classes", "TYPE_INT32", [m.max_detections]),
        ]
    else:
        outputs = [("output0", "TYPE_FP32", [4 + nc, m.num_anchors])]
    db, qp = t.dynamic_batching, t.dynamic_batching.queue_policy
    kind = "KIND_GPU" if t.gpus else "KIND_CPU"
    count = t.instances_per_gpu
    lines = [
        f'name: "{m.name}"',
        f'platform: "{platform}"',
        f"max_batch_size: {t.max_batch_size}",
        "input [",
        f'  {{ name: "images", data_type: TYPE_UINT8, dims: {_pb_list([s, s, 3])} }}',
        "]",
        "output [",
        ",\n".join(f'  {{ name: "{n}", data_type: {d}, dims: {_pb_list(dims)} }}' for n, d, dims in outputs),
        "]",
        "dynamic_batching {",
    ]
    if db.preferred_batch_sizes:
        lines.append(f"  preferred_batch_size: {_pb_list(sorted(set(db.preferred_batch_sizes)))}")
    lines.append(f"  max_queue_delay_microseconds: {db.max_queue_delay_microseconds}")
    if qp.enabled:
        lines += [
            "  default_queue_policy {",
            f"    timeout_action: {qp.timeout_action}",
            f"    default_timeout_microseconds: {qp.timeout_microseconds}",
            "    allow_timeout_override: true",
            f"    max_queue_size: {qp.max_queue_size}",
            "  }",
        ]
    lines += [
        "}",
        # One inference on the model's real input before the model reports ready: the first
        # user request does not pay for lazy initialisation (CUDA, TensorRT, onnxruntime arenas).
        f'model_warmup [ {{ name: "zeros", batch_size: 1, inputs {{ key: "images", value: {{ data_type: TYPE_UINT8, dims: {_pb_list([s, s, 3])}, zero_data: true }} }} }} ]',
        f"instance_group [ {{ kind: {kind}, count: {count} }} ]",
        "version_policy: { latest: { num_versions: 1 } }",
        f'parameters {{ key: "class_names", value: {{ string_value: {json.dumps(json.dumps(m.class_names))} }} }}',
    ]
    if m.format in ("onnx", "end2end") and t.gpus:
        lines += [
            "optimization { execution_accelerators { gpu_execution_accelerator: [ {",
            '  name: "tensorrt"',
            '  parameters { key: "precision_mode", value: "FP16" }',
            '  parameters { key: "max_workspace_size_bytes", value: "1073741824" }',
            "} ] } }",
        ]
    return "\n".join(lines) + "\n"


def build_model_configmap(spec: YoloServiceSpec, meta: Meta) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(meta, names(meta)["config"], "model-config"),
        "data": {"config.pbtxt": render_config_pbtxt(spec)},
    }


# --------------------------------------------------------------------------- pod security


def pod_security_context() -> dict[str, Any]:
    """Pod Security Standard "restricted"."""
    return {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(read_only_root: bool = True) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
    }


def _http_probe(path: str, **timing: int) -> dict[str, Any]:
    """An HTTP GET probe on the container port named "http"."""
    return {"httpGet": {"path": path, "port": "http"}, **timing}


def _resources(r: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.requests:
        out["requests"] = {k: str(v) for k, v in r.requests.items()}
    if r.limits:
        out["limits"] = {k: str(v) for k, v in r.limits.items()}
    return out


def _deployment(
    meta: Meta, name: str, component: str, *, pod_annotations: dict[str, str], pod_spec: dict[str, Any], autoscaled: bool, replicas: int
) -> dict[str, Any]:
    """A Deployment that rolls one pod at a time with no capacity dip. Under an HPA it carries
    no `replicas` at all: the HPA owns that field and the operator never fights it."""
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(meta, name, component),
        "spec": {
            "selector": {"matchLabels": selector_labels(meta, component)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": labels(meta, component), "annotations": pod_annotations}, "spec": pod_spec},
        },
    }
    if not autoscaled:
        deployment["spec"]["replicas"] = replicas
    return deployment


# --------------------------------------------------------------------------- Triton


def _fetch_script(spec: YoloServiceSpec) -> str:
    m = spec.model
    ext = "plan" if m.format == "tensorrt" else "onnx"
    target = f"{MODELS_DIR}/{m.name}/1/model.{ext}"
    src = m.source
    if src.pvc is not None:
        fetch = f"cp {shlex.quote('/source/' + src.pvc.path.lstrip('/'))} {target}"
    elif src.scheme == "s3":
        fetch = f"aws s3 cp --only-show-errors {shlex.quote(src.uri or '')} {target}"
    elif src.scheme == "gs":
        fetch = f"gcloud storage cp {shlex.quote(src.uri or '')} {target}"
    else:
        fetch = f"curl -fsSL --retry 5 --retry-connrefused -o {target} {shlex.quote(src.uri or '')}"
    return " && ".join(
        [
            "set -eu",
            f"mkdir -p {MODELS_DIR}/{m.name}/1",
            f"cp /config/config.pbtxt {MODELS_DIR}/{m.name}/config.pbtxt",
            fetch,
            f"test -s {target}",
        ]
    )


def _fetcher(spec: YoloServiceSpec) -> dict[str, Any]:
    src = spec.model.source
    mounts = [{"name": "models", "mountPath": MODELS_DIR}, {"name": "model-config", "mountPath": "/config", "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"}]
    container: dict[str, Any] = {
        "name": "fetch-model",
        "image": spec.fetcher_image,
        "command": ["/bin/sh", "-c", _fetch_script(spec)],
        "env": [{"name": "HOME", "value": "/tmp"}],
        # The log tail becomes the termination message: the YoloService's condition quotes it.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security_context(),
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "volumeMounts": mounts,
    }
    if src.pvc is not None:
        mounts.append({"name": "source", "mountPath": "/source", "readOnly": True})
    if src.secret_ref is not None:
        # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION, or a GCP key file under /credentials
        container["envFrom"] = [{"secretRef": {"name": src.secret_ref.name}}]
        if src.scheme == "gs":
            mounts.append({"name": "credentials", "mountPath": "/credentials", "readOnly": True})
            container["env"].append({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/credentials/key.json"})
    return container


def _place(pod_spec: dict[str, Any], tier: Any) -> None:
    """Node selector, tolerations and affinity of a tier, where set."""
    if tier.node_selector:
        pod_spec["nodeSelector"] = dict(tier.node_selector)
    if tier.tolerations:
        pod_spec["tolerations"] = list(tier.tolerations)
    if tier.affinity:
        pod_spec["affinity"] = tier.affinity


def build_triton_deployment(spec: YoloServiceSpec, meta: Meta) -> dict[str, Any]:
    t = spec.triton
    n = names(meta)
    config_hash = _digest(render_config_pbtxt(spec))
    volumes: list[dict[str, Any]] = [
        {"name": "models", "emptyDir": {}},
        {"name": "model-config", "configMap": {"name": n["config"]}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
    ]
    src = spec.model.source
    if src.pvc is not None:
        volumes.append({"name": "source", "persistentVolumeClaim": {"claimName": src.pvc.claim_name, "readOnly": True}})
    if src.secret_ref is not None and src.scheme == "gs":
        volumes.append({"name": "credentials", "secret": {"secretName": src.secret_ref.name}})
    container = {
        "name": "triton",
        "image": t.image,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "command": ["tritonserver"],
        "args": [
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
        ],
        "ports": [
            {"name": "http", "containerPort": TRITON_HTTP, "protocol": "TCP"},
            {"name": "grpc", "containerPort": TRITON_GRPC, "protocol": "TCP"},
            {"name": "metrics", "containerPort": TRITON_METRICS, "protocol": "TCP"},
        ],
        "resources": _resources(t.resources),
        "securityContext": container_security_context(),
        "startupProbe": _http_probe("/v2/health/ready", periodSeconds=5, failureThreshold=120, timeoutSeconds=3),
        "readinessProbe": _http_probe("/v2/health/ready", periodSeconds=5, failureThreshold=3, timeoutSeconds=3),
        "livenessProbe": _http_probe("/v2/health/live", periodSeconds=10, failureThreshold=6, timeoutSeconds=5),
        # Leave the Service first; then SIGTERM, and Triton finishes what it holds (exit timeout).
        "lifecycle": {"preStop": {"sleep": {"seconds": TRITON_PRESTOP_SECONDS}}},
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    pod_spec: dict[str, Any] = {
        "securityContext": pod_security_context(),
        "terminationGracePeriodSeconds": TRITON_PRESTOP_SECONDS + TRITON_EXIT_TIMEOUT_SECONDS + 5,
        "initContainers": [_fetcher(spec)],
        "containers": [container],
        "volumes": volumes,
    }
    _place(pod_spec, t)
    if not t.tolerations and t.gpus:
        pod_spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(TRITON_METRICS),
        "prometheus.io/path": "/metrics",
        f"{GROUP}/config-hash": config_hash,  # a new model config rolls the pods
    }
    return _deployment(meta, n["triton"], "triton", pod_annotations=annotations, pod_spec=pod_spec, autoscaled=t.autoscaling.enabled, replicas=t.replicas)


def build_triton_service(spec: YoloServiceSpec, meta: Meta) -> dict[str, Any]:
    """Headless: the gateway's one gRPC channel resolves every pod and round-robins over them."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(meta, names(meta)["triton"], "triton"),
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


# --------------------------------------------------------------------------- gateway


def triton_target(meta: Meta) -> str:
    return f"dns:///{names(meta)['triton']}.{meta.namespace}.svc.cluster.local:{TRITON_GRPC}"


def build_gateway_deployment(spec: YoloServiceSpec, meta: Meta) -> dict[str, Any]:
    g = spec.gateway
    env = {
        "YOLO_GATEWAY_TRITON_URL": triton_target(meta),
        "YOLO_GATEWAY_MODEL_NAME": spec.model.name,
        "YOLO_GATEWAY_HOST": "0.0.0.0",
        "YOLO_GATEWAY_PORT": str(GATEWAY_PORT),
        "YOLO_GATEWAY_MAX_BODY_BYTES": str(g.limits.max_body_bytes),
        "YOLO_GATEWAY_MAX_PIXELS": str(g.limits.max_pixels),
        "YOLO_GATEWAY_MAX_BATCH_IMAGES": str(g.limits.max_batch_images),
        "YOLO_GATEWAY_CONF": str(g.defaults.conf),
        "YOLO_GATEWAY_IOU": str(g.defaults.iou),
        "YOLO_GATEWAY_MAX_DET": str(g.defaults.max_det),
        "YOLO_GATEWAY_SHUTDOWN_GRACE_S": str(g.shutdown_grace_seconds),
        # Triton may be scaled to zero: the gateway stays ready and holds requests while it starts.
        "YOLO_GATEWAY_COLD_START_TIMEOUT_S": str(spec.triton.autoscaling.cold_start_timeout_seconds if spec.triton.autoscaling.scale_to_zero else 0),
    }
    container = {
        "name": "gateway",
        "image": g.image,
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"}],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "resources": _resources(g.resources),
        "securityContext": container_security_context(),
        "readinessProbe": _http_probe("/readyz", periodSeconds=5, failureThreshold=2, timeoutSeconds=2),
        "livenessProbe": _http_probe("/healthz", periodSeconds=10, failureThreshold=3, timeoutSeconds=2),
        # Endpoints drop the pod before uvicorn stops accepting; then in-flight requests drain.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(GATEWAY_PORT), "prometheus.io/path": "/metrics"}
    pod_spec = {
        "securityContext": pod_security_context(),
        "terminationGracePeriodSeconds": PRESTOP_SECONDS + g.shutdown_grace_seconds + 5,
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    _place(pod_spec, g)
    return _deployment(meta, names(meta)["gateway"], "gateway", pod_annotations=annotations, pod_spec=pod_spec, autoscaled=g.autoscaling.enabled, replicas=g.replicas)


def build_gateway_service(spec: YoloServiceSpec, meta: Meta) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(meta, names(meta)["service"], "gateway"),
        "spec": {
            "type": spec.service.type,
            "selector": selector_labels(meta, "gateway"),
            "ports": [
                {"name": "http", "port": spec.service.port, "targetPort": "http", "protocol": "TCP"},
                # The same server's /metrics, under the port name the ServiceMonitor scrapes on both tiers.
                {"name": "metrics", "port": GATEWAY_PORT, "targetPort": "http", "protocol": "TCP"},
            ],
        },
    }


# --------------------------------------------------------------------------- disruption and monitoring


def build_pdb(spec: YoloServiceSpec, meta: Meta, component: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(meta, names(meta)[component], component),
        "spec": {"maxUnavailable": spec.pod_disruption_budget.max_unavailable, "selector": {"matchLabels": selector_labels(meta, component)}},
    }


def build_service_monitor(spec: YoloServiceSpec, meta: Meta) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _metadata(meta, meta.name, "monitoring"),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/instance": meta.name, OWNER_LABEL: meta.name}},
            # Port "metrics" on both Services: Triton's 8002, the gateway's 8080. (Triton's "http"
            # port has no /metrics: scraping it, as an earlier version did, got 404s.)
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
