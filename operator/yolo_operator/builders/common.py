"""Names, labels, constants and the parts every pod shares (security contexts, probes, resources, placement)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..spec import GROUP

TRITON_HTTP, TRITON_GRPC, TRITON_METRICS = 8000, 8001, 8002
GATEWAY_PORT = 8080
MODELS_DIR = "/models"
ENGINE_CACHE_DIR = "/trt-cache"  # TensorRT engines and timing cache (triton.engineCache), GPU services
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


# On every child: the child watch selects on it (handlers.MANAGED_SELECTOR), so it is defined once.
MANAGED_BY = {"app.kubernetes.io/managed-by": "yolo-operator"}


def labels(meta: Meta, component: str) -> dict[str, str]:
    return {
        **selector_labels(meta, component),
        "app.kubernetes.io/part-of": "yolo-operator",
        **MANAGED_BY,
        "app.kubernetes.io/version": __version__,
        OWNER_LABEL: meta.name,
    }


def object_metadata(meta: Meta, name: str, component: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": meta.namespace, "labels": labels(meta, component)}
    if annotations:
        md["annotations"] = annotations
    return md


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


def http_probe(path: str, scheme: str = "HTTP", **timing: int) -> dict[str, Any]:
    """An HTTP GET probe on the container port named "http" (HTTPS: the kubelet does not verify)."""
    get: dict[str, Any] = {"path": path, "port": "http"}
    if scheme != "HTTP":
        get["scheme"] = scheme
    return {"httpGet": get, **timing}


def container_resources(r: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.requests:
        out["requests"] = {k: str(v) for k, v in r.requests.items()}
    if r.limits:
        out["limits"] = {k: str(v) for k, v in r.limits.items()}
    return out


def deployment_manifest(
    meta: Meta,
    name: str,
    component: str,
    *,
    pod_annotations: dict[str, str],
    pod_spec: dict[str, Any],
    autoscaled: bool,
    replicas: int,
) -> dict[str, Any]:
    """A Deployment that rolls one pod at a time with no capacity dip. Under an HPA it carries
    no `replicas` at all: the HPA owns that field and the operator never fights it."""
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_metadata(meta, name, component),
        "spec": {
            "selector": {"matchLabels": selector_labels(meta, component)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels(meta, component), "annotations": pod_annotations},
                "spec": pod_spec,
            },
        },
    }
    if not autoscaled:
        deployment["spec"]["replicas"] = replicas
    return deployment


def add_pull_secrets(pod_spec: dict[str, Any], spec: Any) -> None:
    """The service's imagePullSecrets, where set: both tiers pull the project's images."""
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s.name} for s in spec.image_pull_secrets]


def place_pods(pod_spec: dict[str, Any], tier: Any) -> None:
    """Node selector, tolerations and affinity of a tier, where set."""
    if tier.node_selector:
        pod_spec["nodeSelector"] = dict(tier.node_selector)
    if tier.tolerations:
        pod_spec["tolerations"] = list(tier.tolerations)
    if tier.affinity:
        pod_spec["affinity"] = tier.affinity


def short_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
