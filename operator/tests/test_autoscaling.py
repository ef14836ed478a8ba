"""Autoscaling children: one autoscaler per tier (a KEDA ScaledObject where KEDA is installed,
else an HPA), the operator's PromQL, and a scaling behaviour that is fast up and stabilized down."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from op_helpers import META, sample_spec

from yolo_operator.builders import autoscaling as a
from yolo_operator.children import desired_children
from yolo_operator.spec import parse_spec

GOLDEN = Path(__file__).parent / "golden"
PROM = "http://prometheus.monitoring.svc:9090"


def _kinds(spec: dict, keda: bool) -> dict[str, bool]:
    return {
        c.ref: c.manifest is not None
        for c in desired_children(parse_spec(spec), META, False, keda, PROM)
        if "Scal" in c.kind or "Horizontal" in c.kind
    }


def test_keda_when_installed_and_hpas_otherwise_never_both():
    assert _kinds(sample_spec(), keda=True) == {
        "HorizontalPodAutoscaler/shapes-triton": False,
        "ScaledObject/shapes-triton": True,
        "HorizontalPodAutoscaler/shapes-gateway": False,
        "ScaledObject/shapes-gateway": True,
    }
    assert _kinds(sample_spec(), keda=False) == {
        "HorizontalPodAutoscaler/shapes-triton": True,
        "HorizontalPodAutoscaler/shapes-gateway": True,
    }
    forced = sample_spec(**{"triton.autoscaling": {"engine": "hpa"}})
    assert _kinds(forced, keda=True)["HorizontalPodAutoscaler/shapes-triton"] is True
    assert _kinds(forced, keda=True)["ScaledObject/shapes-triton"] is False
    off = sample_spec(**{"gateway.autoscaling": {"enabled": False}})
    assert not any(v for k, v in _kinds(off, keda=True).items() if "gateway" in k)


def test_scaled_objects_match_the_golden_manifests():
    spec = parse_spec(sample_spec())
    for child in desired_children(spec, META, False, True, PROM):
        if child.kind != "ScaledObject":
            continue
        path = GOLDEN / f"scaledobject-{child.name}.yaml"
        text = yaml.safe_dump(child.manifest, sort_keys=True)
        if os.environ.get("UPDATE_GOLDEN"):
            path.write_text(text)
        assert text == path.read_text(), f"{path.name} differs from the golden manifest"


def test_queries_select_exactly_one_tier_of_one_service():
    """The pods of one tier of one service; every model on them (latency tiers, canary and shadow
    are models on the same Triton pods, and their queues are the pods' load too)."""
    spec = parse_spec(sample_spec())
    q = a.triton_query(spec, META)
    assert (
        q
        == 'sum(avg_over_time(nv_inference_pending_request_count{namespace="vision",pod=~"shapes-triton-[a-z0-9]+-[a-z0-9]+"}[30s]))'
    )
    gw = 'namespace="vision",pod=~"shapes-gateway-[a-z0-9]+-[a-z0-9]+"'
    inflight, demand = (
        f"avg_over_time(yolo_gateway_inflight_requests{{{gw}}}[30s])",
        f"avg_over_time(yolo_gateway_triton_requests{{{gw}}}[30s])",
    )
    assert a.gateway_query(META) == f"clamp_min(sum({inflight}) - sum({demand}), 0)"
    assert a.gateway_demand_query(META) == f"sum({demand})"
    qt = parse_spec(
        sample_spec(**{"triton.autoscaling": {"metric": "queueTime", "targetQueueTimeMicroseconds": 20000}})
    )
    so = a.build_scaled_object(qt, META, "triton", PROM)
    trigger, demand = so["spec"]["triggers"]
    assert demand["name"] == "gateway-demand"
    assert trigger["metricType"] == "Value" and trigger["metadata"]["threshold"] == "20000"
    assert "rate(nv_inference_queue_duration_us" in trigger["metadata"]["query"]
    hpa = a.build_triton_hpa(qt, META)
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == a.TRITON_QUEUE_TIME_METRIC


def test_the_queue_time_metric_has_a_prometheus_adapter_rule():
    rules = (
        Path(__file__).resolve().parents[2] / "charts/yolo-operator/templates/prometheus-adapter-rules.yaml"
    ).read_text()
    for name in (a.TRITON_QUEUE_TIME_METRIC, "nv_inference_pending_request_count", a.GATEWAY_WORK_METRIC):
        assert f"as: {name}" in rules
    assert "yolo_gateway_inflight_requests" in rules and "yolo_gateway_triton_requests" in rules


@pytest.mark.parametrize("component", ["triton", "gateway"])
def test_behavior_is_fast_up_and_stabilized_down_unless_the_cr_says_otherwise(component):
    spec = parse_spec(sample_spec())
    b = a.behavior(spec, component)
    assert b["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert b["scaleDown"]["stabilizationWindowSeconds"] >= 60
    assert b["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]
    hpa = (a.build_triton_hpa if component == "triton" else a.build_gateway_hpa)(spec, META)
    so = a.build_scaled_object(spec, META, component, PROM)
    assert hpa["spec"]["behavior"] == so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == b
    custom = {"scaleDown": {"stabilizationWindowSeconds": 600}}
    own = parse_spec(sample_spec(**{f"{component}.autoscaling": {"behavior": custom}}))
    assert a.behavior(own, component) == custom


def test_the_gateway_also_scales_on_cpu_and_triton_never_on_gateway_cpu():
    spec = parse_spec(sample_spec())
    gw = a.build_scaled_object(spec, META, "gateway", PROM)
    assert [t["type"] for t in gw["spec"]["triggers"]] == ["prometheus", "cpu"]
    tr = a.build_scaled_object(spec, META, "triton", PROM)
    assert [t["type"] for t in tr["spec"]["triggers"]] == ["prometheus", "prometheus"]
    assert all(
        "gateway" not in t["name"] or "triton_requests" in t["metadata"]["query"] for t in tr["spec"]["triggers"]
    )
    assert tr["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shapes-triton"}
    assert "replicas" not in tr["spec"]  # KEDA's HPA owns the Deployment's replicas


def test_tiers_split_the_gateways_requests_between_them():
    """Coordinated tiers: the gateway scales on its own work (in flight minus Triton-bound), Triton on
    its queue and on the gateways' Triton-bound requests, one full batch per pod above its queue target."""
    spec = parse_spec(
        sample_spec(
            **{
                "triton.maxBatchSize": 8,
                "triton.dynamicBatching": {},
                "triton.autoscaling": {"targetPendingRequests": 2},
            }
        )
    )
    tr = a.build_scaled_object(spec, META, "triton", PROM)["spec"]["triggers"]
    pending, demand = tr
    assert (pending["name"], pending["metricType"], pending["metadata"]["threshold"]) == (
        "pending-requests",
        "AverageValue",
        "2",
    )
    assert (demand["name"], demand["metricType"], demand["metadata"]["threshold"]) == (
        "gateway-demand",
        "AverageValue",
        "10",
    )
    assert demand["metadata"]["activationThreshold"] == "0", "any waiting request activates the tier"
    assert demand["metadata"]["query"] == a.gateway_demand_query(META)
    (work, cpu) = a.build_scaled_object(spec, META, "gateway", PROM)["spec"]["triggers"]
    assert work["metadata"]["query"] == a.gateway_query(META) and cpu["type"] == "cpu"
    no_cpu = parse_spec(sample_spec(**{"gateway.autoscaling": {"targetCpuUtilization": 0}}))
    assert [t["name"] for t in a.build_scaled_object(no_cpu, META, "gateway", PROM)["spec"]["triggers"]] == [
        "gateway-work"
    ]
    assert [m["type"] for m in a.build_gateway_hpa(no_cpu, META)["spec"]["metrics"]] == ["Pods"]


def test_scale_to_zero_is_opt_in_keda_only_and_the_gateway_holds_requests():
    from yolo_operator import builders as b
    from yolo_operator.spec import InvalidSpec

    def cold_start(spec) -> str:
        env = b.build_gateway_deployment(spec, META)["spec"]["template"]["spec"]["containers"][0]["env"]
        return {e["name"]: e["value"] for e in env}["YOLO_GATEWAY_COLD_START_TIMEOUT_S"]

    default = parse_spec(sample_spec())
    so = a.build_scaled_object(default, META, "triton", PROM)["spec"]
    assert so["minReplicaCount"] == 1 and so["cooldownPeriod"] == 60 and cold_start(default) == "0"
    zero = parse_spec(
        sample_spec(**{"triton.autoscaling": {"minReplicas": 0, "idleSeconds": 90, "coldStartTimeoutSeconds": 45}})
    )
    so = a.build_scaled_object(zero, META, "triton", PROM)["spec"]
    assert so["minReplicaCount"] == 0 and so["cooldownPeriod"] == 90
    assert cold_start(zero) == "45"
    assert a.build_triton_hpa(zero, META)["spec"]["minReplicas"] == 1, "an HPA cannot scale to zero"
    with pytest.raises(InvalidSpec, match="scale to zero.*needs KEDA"):
        parse_spec(sample_spec(**{"triton.autoscaling": {"minReplicas": 0, "engine": "hpa"}}))
    with pytest.raises(InvalidSpec, match="minReplicas"):
        parse_spec(sample_spec(**{"gateway.autoscaling": {"minReplicas": 0}}))


def test_every_example_parses_and_the_scale_to_zero_one_asks_for_keda():
    examples = Path(__file__).resolve().parents[2] / "examples"
    specs = {
        p.name: [d for d in yaml.safe_load_all(p.read_text()) if d and d["kind"] == "YoloService"]
        for p in examples.glob("*.yaml")
    }
    assert len(specs) >= 3
    for _name, docs in specs.items():
        for d in docs:
            parse_spec(d["spec"])  # raises InvalidSpec with the field's path
    (zero,) = specs["yoloservice-scale-to-zero.yaml"]
    spec = parse_spec(zero["spec"])
    assert spec.triton.autoscaling.scale_to_zero and spec.triton.autoscaling.engine == "keda"
