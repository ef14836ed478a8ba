"""Autoscaling children: one autoscaler per tier (a KEDA ScaledObject where KEDA is installed,
else an HPA), the operator's PromQL, and a scaling behaviour that is fast up and stabilized down."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from op_helpers import META, sample_spec

from yolo_operator import autoscaling as a
from yolo_operator.children import desired_children
from yolo_operator.spec import parse_spec

GOLDEN = Path(__file__).parent / "golden"
PROM = "http://prometheus.monitoring.svc:9090"


def _kinds(spec: dict, keda: bool) -> dict[str, bool]:
    return {c.ref: c.manifest is not None for c in desired_children(parse_spec(spec), META, False, keda, PROM) if "Scal" in c.kind or "Horizontal" in c.kind}


def test_keda_when_installed_and_hpas_otherwise_never_both():
    assert _kinds(sample_spec(), keda=True) == {
        "HorizontalPodAutoscaler/shapes-triton": False, "ScaledObject/shapes-triton": True,
        "HorizontalPodAutoscaler/shapes-gateway": False, "ScaledObject/shapes-gateway": True,
    }
    assert _kinds(sample_spec(), keda=False) == {"HorizontalPodAutoscaler/shapes-triton": True, "HorizontalPodAutoscaler/shapes-gateway": True}
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
    spec = parse_spec(sample_spec())
    q = a.triton_query(spec, META)
    assert q == 'sum(nv_inference_pending_request_count{namespace="vision",pod=~"shapes-triton-[a-z0-9]+-[a-z0-9]+",model="yolo"})'
    assert a.gateway_query(META) == 'sum(yolo_gateway_inflight_requests{namespace="vision",pod=~"shapes-gateway-[a-z0-9]+-[a-z0-9]+"})'
    qt = parse_spec(sample_spec(**{"triton.autoscaling": {"metric": "queueTime", "targetQueueTimeMicroseconds": 20000}}))
    so = a.build_scaled_object(qt, META, "triton", PROM)
    (trigger,) = so["spec"]["triggers"]
    assert trigger["metricType"] == "Value" and trigger["metadata"]["threshold"] == "20000"
    assert "rate(nv_inference_queue_duration_us" in trigger["metadata"]["query"]
    hpa = a.build_triton_hpa(qt, META)
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == a.TRITON_QUEUE_TIME_METRIC


def test_the_queue_time_metric_has_a_prometheus_adapter_rule():
    rules = (Path(__file__).resolve().parents[2] / "charts/yolo-operator/templates/prometheus-adapter-rules.yaml").read_text()
    for name in (a.TRITON_QUEUE_TIME_METRIC, "nv_inference_pending_request_count", "yolo_gateway_inflight_requests"):
        assert f"as: {name}" in rules


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
    assert [t["type"] for t in tr["spec"]["triggers"]] == ["prometheus"]
    assert tr["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shapes-triton"}
    assert "replicas" not in tr["spec"]  # KEDA's HPA owns the Deployment's replicas
