"""Autoscaling on queue depth: the PromQL, the scaling behaviour, and KEDA ScaledObjects.

Two engines, one signal per tier:

- **KEDA** (the default where the cluster serves `keda.sh/v1alpha1` ScaledObjects): a
  ScaledObject per tier with Prometheus triggers on the queries below. KEDA makes and
  owns the HPA (`keda-hpa-<name>`); the operator then deletes its own HPA of that tier.
  Only KEDA scales a tier to zero (`triton.autoscaling.minReplicas: 0`).
- **HPA** on Pods metrics through prometheus-adapter (`build_*_hpa`, with the adapter
  rules the chart ships).

The queries are the operator's, and assume the labels every Kubernetes pod scrape job
adds (`namespace`, `pod`). Pods of a Deployment are `<deployment>-<hash>-<suffix>`, so
the pod pattern matches exactly one tier of one YoloService.

| tier | trigger | query (sum over the tier's pods) | target |
|---|---|---|---|
| Triton | `pending-requests` | `nv_inference_pending_request_count` (each gauge averaged over 30 s) | `targetPendingRequests` per pod (AverageValue) |
| Triton | `queue-time` (metric: queueTime) | rate of `nv_inference_queue_duration_us` / rate of `nv_inference_request_success` | `targetQueueTimeMicroseconds` (Value), as Triton's chart and SuperSONIC scale |
| Triton | `gateway-demand` | `yolo_gateway_triton_requests` over the gateway pods: requests in a Triton call or waiting for a Triton | `targetPendingRequests` + one full batch per pod (AverageValue); activation > 0 |
| gateway | `gateway-work` | `yolo_gateway_inflight_requests - yolo_gateway_triton_requests`: requests the gateway itself works on or queues | `targetInflightRequests` per pod |

**Coordinated tiers.** A request in the gateway is either the gateway's own work (body,
decode, letterbox, NMS, its admission queue) or Triton's demand (in a Triton call, or
waiting for a Triton to start). Each tier scales on its own share, so a slow Triton tier
makes Triton scale, not the gateway (more gateways would only add CPU), and a CPU-bound
gateway tier scales itself without touching Triton's. Triton also sees the demand the
gateway holds back: its own queue counts only what has reached it, and with scale to
zero there is no Triton to count anything, so `gateway-demand` is what activates the tier
from zero (KEDA activation: any request waiting). Gateways follow new Triton pods within
`resolveIntervalSeconds` (2 s) through the headless Service, and a new gateway pod is
ready only after a warm-up detection, so neither tier sends traffic to a pod that cannot
serve it yet.

Behaviour (unless the CR sets `autoscaling.behavior`): scale up at once (no stabilization,
+100 % or +4 pods per 15 s, whichever is more); scale down after a stabilization window
(Triton 120 s, the gateway 60 s), one pod a minute, so pods drain and the count does not
flap on a bursty signal.
"""

from __future__ import annotations

from typing import Any

from ..spec import GatewayAutoscaling, TritonAutoscaling, YoloServiceSpec
from . import common as b

KEDA_API = "keda.sh/v1alpha1"
TRITON_QUEUE_TIME_METRIC = "nv_inference_queue_duration_per_request_us"  # a prometheus-adapter rule (the chart's)
GATEWAY_WORK_METRIC = "yolo_gateway_work_requests"  # a prometheus-adapter rule: in flight minus Triton-bound
SCALE_DOWN_WINDOW_S = {"triton": 120, "gateway": 60}
# Gauges scraped every few seconds are bursty (0, 5, 1, ...): each query averages them over this window,
# so one spike does not add pods. It delays a scale-up decision by a fraction of the window only
# (the average crosses the target well before the window is over), and activation from zero not at all.
SMOOTHING = "30s"


def _pods(meta: b.Meta, component: str) -> str:
    return f'namespace="{meta.namespace}",pod=~"{b.names(meta)[component]}-[a-z0-9]+-[a-z0-9]+"'


def triton_query(spec: YoloServiceSpec, meta: b.Meta) -> str:
    sel = _pods(meta, "triton")  # every model of the service's pods: its tiers, canary and shadow too
    if spec.triton.autoscaling.metric == "queueTime":
        return (
            f"sum(rate(nv_inference_queue_duration_us{{{sel}}}[1m]))"
            f" / clamp_min(sum(rate(nv_inference_request_success{{{sel}}}[1m])), 1)"
        )
    return f"sum(avg_over_time({b.TRITON_PENDING_METRIC}{{{sel}}}[{SMOOTHING}]))"


def gateway_demand_query(meta: b.Meta) -> str:
    """Triton's demand as the gateways see it: requests in a Triton call or waiting for a Triton."""
    return f"sum(avg_over_time({b.GATEWAY_TRITON_METRIC}{{{_pods(meta, 'gateway')}}}[{SMOOTHING}]))"


def gateway_query(meta: b.Meta) -> str:
    """The gateway's own work: in flight minus what waits on Triton."""
    sel = _pods(meta, "gateway")
    own = f"sum(avg_over_time({b.GATEWAY_INFLIGHT_METRIC}{{{sel}}}[{SMOOTHING}])) - sum(avg_over_time({b.GATEWAY_TRITON_METRIC}{{{sel}}}[{SMOOTHING}]))"
    return f"clamp_min({own}, 0)"


def demand_per_triton_pod(spec: YoloServiceSpec) -> int:
    """What one Triton pod takes at its target: the target queue plus one full batch per model instance."""
    t = spec.triton
    return t.autoscaling.target_pending_requests + t.max_batch_size * t.instances_per_gpu * max(t.gpus, 1)


def default_behavior(component: str) -> dict[str, Any]:
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 15},
                {"type": "Pods", "value": 4, "periodSeconds": 15},
            ],
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
        "metadata": b.object_metadata(meta, target, component),
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
    return {
        "type": "Pods",
        "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": str(average)}},
    }


def build_triton_hpa(spec: YoloServiceSpec, meta: b.Meta) -> dict[str, Any]:
    """Scale Triton on its queue (via prometheus-adapter): pending requests, or queue time per request, per pod.
    An HPA cannot scale to zero: minReplicas 0 becomes 1 here (the status says so)."""
    a = spec.triton.autoscaling
    if a.metric == "queueTime":
        metric = _pods_metric(TRITON_QUEUE_TIME_METRIC, a.target_queue_time_microseconds)
    else:
        metric = _pods_metric(b.TRITON_PENDING_METRIC, a.target_pending_requests)
    hpa = _hpa(meta, "triton", b.names(meta)["triton"], a, [metric])
    hpa["spec"]["minReplicas"] = max(a.min_replicas, 1)
    return hpa


def build_gateway_hpa(spec: YoloServiceSpec, meta: b.Meta) -> dict[str, Any]:
    """Scale the gateway on its own work per pod (the adapter rule's in-flight minus Triton-bound requests), and on CPU."""
    a = spec.gateway.autoscaling
    metrics = [_pods_metric(GATEWAY_WORK_METRIC, a.target_inflight_requests)]
    if a.target_cpu_utilization:
        metrics.append(
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": a.target_cpu_utilization},
                },
            }
        )
    return _hpa(meta, "gateway", b.names(meta)["gateway"], a, metrics)


# --------------------------------------------------------------------------- KEDA


def _prometheus_trigger(
    server: str, query: str, threshold: int, metric_type: str, name: str, activation: float | None = None
) -> dict[str, Any]:
    md = {"serverAddress": server, "query": query, "threshold": str(threshold)}
    if activation is not None:
        md["activationThreshold"] = f"{activation:g}"
    return {"type": "prometheus", "name": name, "metricType": metric_type, "metadata": md}


def build_scaled_object(spec: YoloServiceSpec, meta: b.Meta, component: str, prometheus_url: str) -> dict[str, Any]:
    """A KEDA ScaledObject for one tier's Deployment, on its queue depth (and CPU for the gateway)."""
    target = b.names(meta)[component]
    extra: dict[str, Any] = {}
    a: TritonAutoscaling | GatewayAutoscaling
    if component == "triton":
        a = spec.triton.autoscaling
        if a.metric == "queueTime":
            own = _prometheus_trigger(
                prometheus_url, triton_query(spec, meta), a.target_queue_time_microseconds, "Value", "queue-time"
            )
        else:
            own = _prometheus_trigger(
                prometheus_url, triton_query(spec, meta), a.target_pending_requests, "AverageValue", "pending-requests"
            )
        demand = _prometheus_trigger(
            prometheus_url,
            gateway_demand_query(meta),
            demand_per_triton_pod(spec),
            "AverageValue",
            "gateway-demand",
            activation=0,
        )
        triggers = [own, demand]
        if a.scale_to_zero:
            extra["cooldownPeriod"] = a.idle_seconds
    else:
        g = spec.gateway.autoscaling
        triggers = [
            _prometheus_trigger(
                prometheus_url, gateway_query(meta), g.target_inflight_requests, "AverageValue", "gateway-work"
            )
        ]
        if g.target_cpu_utilization:
            triggers.append(
                {"type": "cpu", "metricType": "Utilization", "metadata": {"value": str(g.target_cpu_utilization)}}
            )
        a = g
    return {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        "metadata": b.object_metadata(meta, target, component),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicaCount": a.min_replicas,
            "maxReplicaCount": a.max_replicas,
            "pollingInterval": 5,
            "cooldownPeriod": 60,
            **extra,
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
