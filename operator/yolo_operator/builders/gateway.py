"""The gateway Deployment (its environment is the gateway's Settings) and its Service."""

from __future__ import annotations

import json
from typing import Any

from ..spec import YoloServiceSpec
from .common import (
    GATEWAY_PORT,
    PRESTOP_SECONDS,
    TRITON_GRPC,
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
)

API_KEYS_DIR = "/etc/yolo-gateway/api-keys"
TLS_DIR = "/etc/yolo-gateway/tls"
TRITON_CA_DIR = "/etc/yolo-gateway/triton-ca"
GATEWAY_METRICS_TLS_PORT_NAME = "metrics-https"  # the ServiceMonitor's HTTPS endpoint scrapes it


def triton_target(meta: Meta) -> str:
    return f"dns:///{names(meta)['triton']}.{meta.namespace}.svc.cluster.local:{TRITON_GRPC}"


def triton_tls_name(meta: Meta) -> str:
    """The name Triton's certificate must carry: its Service's, as the gateways check it."""
    return f"{names(meta)['triton']}.{meta.namespace}.svc"


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
        "YOLO_GATEWAY_MAX_CONCURRENCY": str(g.admission.max_concurrency),
        "YOLO_GATEWAY_MAX_QUEUE": str(g.admission.max_queue),
        "YOLO_GATEWAY_QUEUE_TIMEOUT_S": f"{g.admission.queue_timeout_seconds:g}",
        "YOLO_GATEWAY_INFER_TIMEOUT_S": f"{g.admission.infer_timeout_seconds:g}",
        "YOLO_GATEWAY_REQUEST_TIMEOUT_S": f"{g.admission.request_timeout_seconds:g}",
        "YOLO_GATEWAY_CONF": str(g.defaults.conf),
        "YOLO_GATEWAY_IOU": str(g.defaults.iou),
        "YOLO_GATEWAY_MAX_DET": str(g.defaults.max_det),
        "YOLO_GATEWAY_PREPROCESS": g.defaults.preprocess,
        "YOLO_GATEWAY_SHUTDOWN_GRACE_S": str(g.shutdown_grace_seconds),
        "YOLO_GATEWAY_ROUTING": {"leastLoaded": "least_loaded", "roundRobin": "round_robin"}[g.routing],
        # Triton may be scaled to zero: the gateway stays ready and holds requests while it starts.
        "YOLO_GATEWAY_COLD_START_TIMEOUT_S": str(
            spec.triton.autoscaling.cold_start_timeout_seconds if spec.triton.autoscaling.scale_to_zero else 0
        ),
    }
    models = spec.model_names()
    if spec.default_tier is not None:  # there are tiers
        env["YOLO_GATEWAY_TIERS"] = json.dumps(
            {role.removeprefix("tier:"): m for role, m in models.items() if role.startswith("tier:")}
        )
        env["YOLO_GATEWAY_DEFAULT_TIER"] = spec.default_tier.name
    for role, v in spec.variants.items():
        env[f"YOLO_GATEWAY_{role.upper()}_MODEL"] = models[role]
        env[f"YOLO_GATEWAY_{role.upper()}_PERCENT"] = f"{v.percent:g}"
    if g.cache.enabled:
        env |= {
            "YOLO_GATEWAY_CACHE_TTL_S": f"{g.cache.ttl_seconds:g}",
            "YOLO_GATEWAY_CACHE_MAX_ENTRIES": str(g.cache.max_entries),
            "YOLO_GATEWAY_CACHE_MAX_DIFFERENCE": str(g.cache.max_difference),
        }
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if g.auth.enabled and g.auth.secret_ref is not None:
        env |= {
            "YOLO_GATEWAY_API_KEYS_DIR": API_KEYS_DIR,
            "YOLO_GATEWAY_RATE_LIMIT_PER_S": f"{g.auth.requests_per_second:g}",
            "YOLO_GATEWAY_RATE_LIMIT_BURST": str(g.auth.burst),
            "YOLO_GATEWAY_PROTECT_METRICS": str(g.auth.protect_metrics).lower(),
        }
        # A mounted Secret follows rotations; the gateway re-reads the folder every 10 s.
        mounts.append({"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True})
        volumes.append({"name": "api-keys", "secret": {"secretName": g.auth.secret_ref.name, "defaultMode": 0o440}})
    if g.tls.secret_ref is not None:
        env |= {"YOLO_GATEWAY_TLS_CERTFILE": f"{TLS_DIR}/tls.crt", "YOLO_GATEWAY_TLS_KEYFILE": f"{TLS_DIR}/tls.key"}
        # Optional: a missing Secret (or key) is the gateway's one-line TLSInvalid and the
        # GatewayReady condition, not a pod waiting silently in ContainerCreating. The mounted
        # files follow a rotation; the gateway reloads them without a restart (tls.py).
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
        volumes.append(
            {"name": "tls", "secret": {"secretName": g.tls.secret_ref.name, "defaultMode": 0o440, "optional": True}}
        )
    if spec.triton.tls.secret_ref is not None:
        # Only ca.crt of Triton's Secret: the gateway verifies Triton and never holds its key.
        env |= {
            "YOLO_GATEWAY_TRITON_CA_FILE": f"{TRITON_CA_DIR}/ca.crt",
            "YOLO_GATEWAY_TRITON_TLS_NAME": triton_tls_name(meta),
        }
        mounts.append({"name": "triton-ca", "mountPath": TRITON_CA_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "triton-ca",
                "secret": {
                    "secretName": spec.triton.tls.secret_ref.name,
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    "defaultMode": 0o440,
                    "optional": True,
                },
            }
        )
    scheme = "HTTPS" if g.tls.enabled else "HTTP"
    container = {
        "name": "gateway",
        "image": g.image,
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"}],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "resources": container_resources(g.resources),
        "securityContext": container_security_context(),
        "readinessProbe": http_probe("/readyz", scheme, periodSeconds=5, failureThreshold=2, timeoutSeconds=2),
        "livenessProbe": http_probe("/healthz", scheme, periodSeconds=10, failureThreshold=3, timeoutSeconds=2),
        # The log tail is the termination message: a refused certificate's TLSInvalid line reaches the condition.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # Endpoints drop the pod before uvicorn stops accepting; then in-flight requests drain.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
        "volumeMounts": mounts,
    }
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(GATEWAY_PORT),
        "prometheus.io/path": "/metrics",
    }
    if g.tls.enabled:
        annotations["prometheus.io/scheme"] = "https"
    pod_spec = {
        "securityContext": pod_security_context(),
        "terminationGracePeriodSeconds": PRESTOP_SECONDS + g.shutdown_grace_seconds + 5,
        "containers": [container],
        "volumes": volumes,
    }
    place_pods(pod_spec, g)
    add_pull_secrets(pod_spec, spec)
    return deployment_manifest(
        meta,
        names(meta)["gateway"],
        "gateway",
        pod_annotations=annotations,
        pod_spec=pod_spec,
        autoscaled=g.autoscaling.enabled,
        replicas=g.replicas,
    )


def build_gateway_service(spec: YoloServiceSpec, meta: Meta) -> dict[str, Any]:
    tls = spec.gateway.tls.enabled
    app = {"appProtocol": "https"} if tls else {}
    metrics = GATEWAY_METRICS_TLS_PORT_NAME if tls else "metrics"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_metadata(meta, names(meta)["service"], "gateway"),
        "spec": {
            "type": spec.service.type,
            "selector": selector_labels(meta, "gateway"),
            "ports": [
                {"name": "http", "port": spec.service.port, "targetPort": "http", "protocol": "TCP", **app},
                # The same server's /metrics, under the port name the ServiceMonitor scrapes on both
                # tiers ("metrics-https" when the gateway serves HTTPS only: its own endpoint there).
                {"name": metrics, "port": GATEWAY_PORT, "targetPort": "http", "protocol": "TCP", **app},
            ],
        },
    }
