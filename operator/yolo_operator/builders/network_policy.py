"""NetworkPolicies, one per tier: who may open which port of the service's pods.

Triton's pods take gRPC (8001) only from this service's own gateway pods, and metrics (8002)
only from the operator's `metricsFrom` peers (the namespace Prometheus runs in); no pod may
open its HTTP port (8000: inference and model control), which nothing of ours uses. The
gateway's pods take 8080 (the API and its /metrics) from anyone, or, when the YoloService
names `networkPolicy.gatewayFrom`, only from those peers and the metrics peers.

Ingress only: egress is left to the cluster's own policies (the fetcher downloads models, and
the gateway resolves Triton's Service through the cluster DNS). The kubelet's probes come from
the node, which NetworkPolicy implementations admit.
"""

from __future__ import annotations

from typing import Any

from ..spec import YoloServiceSpec
from .common import GATEWAY_PORT, TRITON_GRPC, TRITON_METRICS, Meta, names, object_metadata, selector_labels


def _port(number: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": number}]


def _policy(meta: Meta, component: str, ingress: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_metadata(meta, names(meta)[component], component),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(meta, component)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def build_triton_network_policy(
    spec: YoloServiceSpec, meta: Meta, metrics_from: list[dict[str, Any]]
) -> dict[str, Any]:
    """gRPC from this service's gateway pods; metrics from `metrics_from` (no rule when it is
    empty: an empty `from` would admit every pod); nothing else, so port 8000 is closed."""
    ingress: list[dict[str, Any]] = [
        {"from": [{"podSelector": {"matchLabels": selector_labels(meta, "gateway")}}], "ports": _port(TRITON_GRPC)}
    ]
    if metrics_from:
        ingress.append({"from": [dict(p) for p in metrics_from], "ports": _port(TRITON_METRICS)})
    return _policy(meta, "triton", ingress)


def build_gateway_network_policy(
    spec: YoloServiceSpec, meta: Meta, metrics_from: list[dict[str, Any]]
) -> dict[str, Any]:
    """Port 8080 from any client, or from `gatewayFrom` and the metrics peers when it is set."""
    peers = [p.manifest() for p in spec.network_policy.gateway_from]
    rule: dict[str, Any] = {"ports": _port(GATEWAY_PORT)}
    if peers:
        rule["from"] = peers + [dict(p) for p in metrics_from]
    return _policy(meta, "gateway", [rule])
