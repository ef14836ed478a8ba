"""Pure builders: one function per child object, (spec, meta) -> manifest dict, one module per
child kind (as KServe keeps one reconciler per child):

    model_config     the generated config.pbtxt and its ConfigMap
    triton           the Triton Deployment and its headless Service
    gateway          the gateway Deployment and its Service
    pdb              PodDisruptionBudgets
    network_policy   NetworkPolicies: who may open which port of each tier
    service_monitor  the ServiceMonitor
    autoscaling      HPAs and KEDA ScaledObjects, and the PromQL they scale on
    common           names, labels, constants, what every pod shares

No cluster access here.
Owner references are added by the reconciler (`kopf.adopt`), so these functions stay pure and
unit-testable. Everything is re-exported here: `from yolo_operator import builders as b`.
"""

from __future__ import annotations

from .common import (
    GATEWAY_INFLIGHT_METRIC,
    GATEWAY_PORT,
    GATEWAY_TRITON_METRIC,
    MODELS_DIR,
    OWNER_LABEL,
    PRESTOP_SECONDS,
    TRITON_EXIT_TIMEOUT_SECONDS,
    TRITON_GRPC,
    TRITON_HTTP,
    TRITON_METRICS,
    TRITON_PENDING_METRIC,
    TRITON_PRESTOP_SECONDS,
    Meta,
    container_security_context,
    labels,
    names,
    object_metadata,
    pod_security_context,
    selector_labels,
)
from .gateway import (
    API_KEYS_DIR,
    GATEWAY_METRICS_TLS_PORT_NAME,
    TLS_DIR,
    TRITON_CA_DIR,
    build_gateway_deployment,
    build_gateway_service,
    triton_target,
)
from .model_config import (
    build_model_configmap,
    configmap_key,
    model_configs,
    model_plan,
    model_plans,
    render_config_pbtxt,
)
from .network_policy import build_gateway_network_policy, build_triton_network_policy
from .pdb import build_pdb
from .service_monitor import build_service_monitor
from .triton import TRITON_TLS_DIR, build_triton_deployment, build_triton_service, fetcher_container

__all__ = [
    "API_KEYS_DIR",
    "GATEWAY_INFLIGHT_METRIC",
    "GATEWAY_METRICS_TLS_PORT_NAME",
    "GATEWAY_PORT",
    "GATEWAY_TRITON_METRIC",
    "MODELS_DIR",
    "Meta",
    "OWNER_LABEL",
    "PRESTOP_SECONDS",
    "TLS_DIR",
    "TRITON_CA_DIR",
    "TRITON_EXIT_TIMEOUT_SECONDS",
    "TRITON_GRPC",
    "TRITON_HTTP",
    "TRITON_METRICS",
    "TRITON_PENDING_METRIC",
    "TRITON_PRESTOP_SECONDS",
    "TRITON_TLS_DIR",
    "build_gateway_deployment",
    "build_gateway_network_policy",
    "build_gateway_service",
    "build_model_configmap",
    "build_pdb",
    "build_service_monitor",
    "build_triton_deployment",
    "build_triton_network_policy",
    "build_triton_service",
    "configmap_key",
    "container_security_context",
    "fetcher_container",
    "labels",
    "model_configs",
    "model_plan",
    "model_plans",
    "names",
    "object_metadata",
    "pod_security_context",
    "render_config_pbtxt",
    "selector_labels",
    "triton_target",
]
