"""Pure reconcile decisions: which children should exist, and which need a write.

`desired_children` lists every child the operator manages, with `manifest=None`
for the ones a disabled feature must remove. `needs_apply` compares a desired
manifest with the live object, so that a no-op reconcile issues zero writes and
a child edited by someone else is put back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from . import builders as b
from .builders import autoscaling
from .spec import GROUP, YoloServiceSpec

APPLIED_HASH = f"{GROUP}/applied-hash"


@dataclass(frozen=True)
class Child:
    api_version: str
    kind: str
    name: str
    manifest: dict[str, Any] | None  # None: must not exist

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


def network_policies_enabled(spec: YoloServiceSpec, default: bool) -> bool:
    """The service's own switch, else the operator's default."""
    return default if spec.network_policy.enabled is None else spec.network_policy.enabled


def desired_children(
    spec: YoloServiceSpec,
    meta: b.Meta,
    service_monitor_crd: bool,
    keda_crd: bool = False,
    prometheus_url: str = "",
    network_policies: bool = True,
    metrics_from: tuple[dict[str, Any], ...] | list[dict[str, Any]] = (),
) -> list[Child]:
    """Every child, with None for those that must not exist. Each autoscaled tier gets one
    autoscaler: a KEDA ScaledObject or an HPA (`autoscaling.tier_engine`); the other kind
    is deleted, so that a tier never has two autoscalers fighting over it."""
    n = b.names(meta)
    children: list[tuple[str, str, str, dict[str, Any] | None]] = [
        ("v1", "ConfigMap", n["config"], b.build_model_configmap(spec, meta)),
        ("apps/v1", "Deployment", n["triton"], b.build_triton_deployment(spec, meta)),
        ("v1", "Service", n["triton"], b.build_triton_service(spec, meta)),
        ("apps/v1", "Deployment", n["gateway"], b.build_gateway_deployment(spec, meta)),
        ("v1", "Service", n["service"], b.build_gateway_service(spec, meta)),
    ]
    hpas = {"triton": autoscaling.build_triton_hpa, "gateway": autoscaling.build_gateway_hpa}
    for component, a in (("triton", spec.triton.autoscaling), ("gateway", spec.gateway.autoscaling)):
        engine = autoscaling.tier_engine(a, keda_crd)
        hpa = hpas[component](spec, meta) if engine == "hpa" else None
        children.append(("autoscaling/v2", "HorizontalPodAutoscaler", n[component], hpa))
        if keda_crd:  # without KEDA's CRD there is nothing to create or delete
            so = autoscaling.build_scaled_object(spec, meta, component, prometheus_url) if engine == "keda" else None
            children.append((autoscaling.KEDA_API, "ScaledObject", n[component], so))
    pdb = spec.pod_disruption_budget.enabled
    children += [
        ("policy/v1", "PodDisruptionBudget", n["triton"], b.build_pdb(spec, meta, "triton") if pdb else None),
        ("policy/v1", "PodDisruptionBudget", n["gateway"], b.build_pdb(spec, meta, "gateway") if pdb else None),
    ]
    netpol = network_policies_enabled(spec, network_policies)
    peers = list(metrics_from)
    children += [
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            n["triton"],
            b.build_triton_network_policy(spec, meta, peers) if netpol else None,
        ),
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            n["gateway"],
            b.build_gateway_network_policy(spec, meta, peers) if netpol else None,
        ),
    ]
    if service_monitor_crd:  # without the CRD there is nothing to create or delete
        sm = b.build_service_monitor(spec, meta) if spec.monitoring.service_monitor else None
        children.append(("monitoring.coreos.com/v1", "ServiceMonitor", meta.name, sm))
    return [Child(*c) for c in children]


def manifest_hash(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:20]


def with_hash(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest plus an annotation with its own hash (taken before the annotation is added)."""
    out = json.loads(json.dumps(manifest))
    out["metadata"].setdefault("annotations", {})[APPLIED_HASH] = manifest_hash(manifest)
    return out


def _same_scalar(want: Any, have: Any) -> bool:
    if want == have:
        return True
    if isinstance(want, (str, int, float)) and isinstance(have, (str, int, float)) and not isinstance(want, bool):
        try:  # the API server canonicalises quantities: "0.5" is stored as "500m"
            return parse_quantity(want) == parse_quantity(have)
        except (ValueError, TypeError, ArithmeticError):
            return str(want) == str(have)
    return False


def _zero(value: Any) -> bool:
    """A value the API server leaves out: null, false, "", [] or {} (but 0 is kept: replicas: 0)."""
    if value is None or value is False:
        return True
    return isinstance(value, (str, list, dict)) and not value


def is_subset(want: Any, have: Any) -> bool:
    """True when every field of `want` is in `have` with the same value (server defaults may add more).

    The API server omits zero values (false, "", [], {}; `omitempty`), so a
    field we want at its zero value matches an absent one.
    """
    if isinstance(want, dict):
        return isinstance(have, dict) and all(is_subset(v, have[k]) if k in have else _zero(v) for k, v in want.items())
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(want) == len(have)
            and all(is_subset(w, h) for w, h in zip(want, have, strict=True))
        )
    return _same_scalar(want, have)


def needs_apply(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """Apply when missing, when our last applied manifest changed, or when someone changed our fields."""
    if live is None:
        return True
    applied = (live.get("metadata", {}).get("annotations") or {}).get(APPLIED_HASH)
    if applied != desired["metadata"].get("annotations", {}).get(APPLIED_HASH):
        return True
    return not is_subset(desired, live)
