"""Autoscaling on queue depth: the PromQL, the scaling behaviour, and KEDA ScaledObjects.

Two engines, one signal per tier:

- **KEDA** (the default where the cluster serves `keda.sh/v1alpha1` ScaledObjects): a
  ScaledObject per tier with a Prometheus trigger on the queries below. KEDA makes and
  owns the HPA (`keda-hpa-<name>`); the operator then deletes its own HPA of that tier.
- **HPA** on Pods metrics through prometheus-adapter (`builders.build_*_hpa`, with the
  adapter rules the chart ships).

The queries are the operator's, and assume the labels every Kubernetes pod scrape job
adds (`namespace`, `pod`). Pods of a Deployment are `<deployment>-<hash>-<suffix>`, so
the pod pattern matches exactly one tier of one YoloService.

| tier | metric | query (sum over the tier's pods) | target |
|---|---|---|---|
| Triton | `pendingRequests` | `nv_inference_pending_request_count` | `targetPendingRequests` per pod (AverageValue) |
| Triton | `queueTime` | rate of `nv_inference_queue_duration_us` / rate of `nv_inference_request_success` | `targetQueueTimeMicroseconds` (Value), as Triton's chart and SuperSONIC scale |
| gateway | in flight | `yolo_gateway_inflight_requests` (running + queued, once the body is in) | `targetInflightRequests` per pod |

Behaviour (unless the CR sets `autoscaling.behavior`): scale up at once (no stabilization,
+100 % or +4 pods per 15 s, whichever is more); scale down after a stabilization window
(Triton 120 s, the gateway 60 s), one pod a minute, so pods drain and the count does not
flap on a bursty signal.
"""

from __future__ import annotations

from typing import Any

from . import builders as b
from .spec import YoloServiceSpec

KEDA_API = "keda.sh/v1alpha1"
TRITON_QUEUE_TIME_METRIC = "nv_inference_queue_duration_per_request_us"  # a prometheus-adapter rule (the chart's)
SCALE_DOWN_WINDOW_S = {"triton": 120, "gateway": 60}


def _pods(meta: b.Meta, component: str) -> str:
    return f'namespace="{meta.namespace}",pod=~"{b.names(meta)[component]}-[a-z0-9]+-[a-z0-9]+"'


def triton_query(spec: YoloServiceSpec, meta: b.Meta) -> str:
    sel = f'{_pods(meta, "triton")},model="{spec.model.name}"'
    if spec.triton.autoscaling.metric == "queueTime":
        return (
            f"sum(rate(nv_inference_queue_duration_us{{{sel}}}[1m]))"
            f" / clamp_min(sum(rate(nv_inference_request_success{{{sel}}}[1m])), 1)"
        )
    return f"sum({b.TRITON_PENDING_METRIC}{{{sel}}})"


def gateway_query(meta: b.Meta) -> str:
    return f"sum({b.GATEWAY_INFLIGHT_METRIC}{{{_pods(meta, 'gateway')}}})"


def default_behavior(component: str) -> dict[str, Any]:
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}, {"type": "Pods", "value": 4, "periodSeconds": 15}],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": SCALE_DOWN_WINDOW_S[component],
            "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        },
    }


def behavior(spec: YoloServiceSpec, component: str) -> dict[str, Any]:
    a = spec.triton.autoscaling if component == "triton" else spec.gateway.autoscaling
    return a.behavior or default_behavior(component)


# --------------------------------------------------------------------------- HPA (prometheus-adapter)

def _hpa(meta: b.Meta, component: str, target: str, a: Any, metrics: list[dict[str, Any]]) -> dict[str, Any]:
    hpa: dict[str, Any] = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": b._metadata(meta, target, component),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": a.min_replicas,
            "maxReplicas": a.max_replicas,
            "metrics": metrics,
        },
    }
    hpa["spec"]["behavior"] = a.behavior or default_behavior(component)
    return hpa


def _pods_metric(name: str, average: int) -> dict[str, Any]:
    return {"type": "Pods", "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": str(average)}}}


def build_triton_hpa(spec: YoloServiceSpec, meta: b.Meta) -> dict[str, Any]:
    """Scale Triton on its queue (via prometheus-adapter): pending requests, or queue time per request, per pod."""
    a = spec.triton.autoscaling
    if a.metric == "queueTime":
        metric = _pods_metric(TRITON_QUEUE_TIME_METRIC, a.target_queue_time_microseconds)
    else:
        metric = _pods_metric(b.TRITON_PENDING_METRIC, a.target_pending_requests)
    return _hpa(meta, "triton", b.names(meta)["triton"], a, [metric])


def build_gateway_hpa(spec: YoloServiceSpec, meta: b.Meta) -> dict[str, Any]:
    """Scale the gateway on in-flight requests per pod, and on CPU."""
    a = spec.gateway.autoscaling
    metrics = [_pods_metric(b.GATEWAY_INFLIGHT_METRIC, a.target_inflight_requests)]
    if a.target_cpu_utilization:
        metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": a.target_cpu_utilization}}})
    return _hpa(meta, "gateway", b.names(meta)["gateway"], a, metrics)


# --------------------------------------------------------------------------- KEDA


def _prometheus_trigger(server: str, query: str, threshold: int, metric_type: str, name: str) -> dict[str, Any]:
    return {
        "type": "prometheus",
        "name": name,
        "metricType": metric_type,
        "metadata": {"serverAddress": server, "query": query, "threshold": str(threshold)},
    }


def build_scaled_object(spec: YoloServiceSpec, meta: b.Meta, component: str, prometheus_url: str) -> dict[str, Any]:
    """A KEDA ScaledObject for one tier's Deployment, on its queue depth (and CPU for the gateway)."""
    target = b.names(meta)[component]
    if component == "triton":
        a = spec.triton.autoscaling
        if a.metric == "queueTime":
            triggers = [_prometheus_trigger(prometheus_url, triton_query(spec, meta), a.target_queue_time_microseconds, "Value", "queue-time")]
        else:
            triggers = [_prometheus_trigger(prometheus_url, triton_query(spec, meta), a.target_pending_requests, "AverageValue", "pending-requests")]
    else:
        g = spec.gateway.autoscaling
        triggers = [_prometheus_trigger(prometheus_url, gateway_query(meta), g.target_inflight_requests, "AverageValue", "inflight-requests")]
        if g.target_cpu_utilization:
            triggers.append({"type": "cpu", "metricType": "Utilization", "metadata": {"value": str(g.target_cpu_utilization)}})
        a = g
    return {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        "metadata": b._metadata(meta, target, component),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicaCount": a.min_replicas,
            "maxReplicaCount": a.max_replicas,
            "pollingInterval": 5,
            "cooldownPeriod": 60,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior(spec, component)}},
            "triggers": triggers,
        },
    }


def tier_engine(a: Any, keda_available: bool) -> str | None:
    """The autoscaler of a tier: None when off, else 'keda' or 'hpa' ('auto': KEDA where installed)."""
    if not a.enabled:
        return None
    if a.engine == "auto":
        return "keda" if keda_available else "hpa"
    return a.engine
