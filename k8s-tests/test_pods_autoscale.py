"""Autoscaling on queue depth, on the real node, under real load from the host.

(Named test_pods_* so that it runs after test_pods.py and after the kwok tests: it shares their
session fixtures, the in-cluster operator's helm release among them, which test_chart.py and
test_e2e.py must not find installed.)

The cluster's Prometheus scrapes the pods, KEDA (operator and external metrics API server) turns
the operator's ScaledObjects into HPAs, and the kube-controller-manager's HPA controller scales
the Deployments. Load is closed-loop clients sending images to the gateway's ClusterIP Service.
Two CPUs give no more throughput with more replicas, so these tests assert decisions, that new
pods serve, stability, draining and that nothing fails, never speed.

- A step from 1 to 8 clients raises the Triton tier's desired replicas within 30 s, and the new
  pods serve; under 3 minutes of the same load desired replicas change at most once once settled;
  back at 1 client both tiers return to their minimum within the configured window, with 0
  failed requests while pods are removed; >= 99.9 % of all requests succeed (Knative's SLO).
- Scale to zero: an idle Triton tier goes to 0 replicas, the YoloService stays Ready, and
  requests that arrive then wait in the gateway until a Triton pod is up: all of them succeed.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from pathlib import Path

import numpy as np
import pytest
from autoscale_helpers import MAX_REPLICAS, TEST_BEHAVIOR, run_step, scaler_sample
from e2e_helpers import Kube, wait_for
from pod_helpers import condition, detect, gateway_url, service_answers, wait_ready

from yolo_tools.synthetic import encode, make_scene

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(1500)  # the first test may build the images (cold: ~6 min)


def images(n: int = 12, seed: int = 11) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [encode(make_scene(rng, 480, 360), ".jpg") for _ in range(n)]


@pytest.fixture(scope="module")
def autoscaling(real_node: Kube, store, pods_ns: str, in_cluster_operator: str) -> tuple[Kube, str, str]:
    from e2e_helpers import cluster

    if not cluster.metrics_marker().exists():
        pytest.fail(
            "the cluster runs the real node but not Prometheus and KEDA (see `make cluster-up` / `python -m cluster status`)",
            pytrace=False,
        )
    real_node.apply(store.secret(pods_ns))
    return real_node, pods_ns, cluster.metrics.PROMETHEUS_URL


def scaled_object_ready(kube: Kube, ns: str, name: str) -> None:
    def ok() -> bool:
        so = kube.get("scaledobject", name, ns)
        return bool(so) and condition(so, "Ready").get("status") == "True"

    wait_for(f"ScaledObject {name} Ready", ok, timeout=90, interval=1)


def test_load_step_scales_up_holds_steady_and_drains_down(autoscaling):
    kube, ns, prometheus = autoscaling
    name = "scaler"
    kube.apply(scaler_sample(name), "-n", ns)
    try:
        obj = wait_ready(kube, name, ns, timeout=300)
        assert condition(obj, "AutoscalingReady")["reason"] == "AutoscalersActive", condition(obj, "AutoscalingReady")
        for tier in ("triton", "gateway"):
            scaled_object_ready(kube, ns, f"{name}-{tier}")
            assert kube.get("hpa", f"keda-hpa-{name}-{tier}", ns), "KEDA made the tier's HPA"
            assert not kube.get("hpa", f"{name}-{tier}", ns), "and the operator made none of its own"
        analysis, record = run_step(
            str(kube.kubeconfig),
            ns,
            name,
            gateway_url(kube, name, ns),
            images(),
            prometheus,
            log=lambda m: print(f"\n[autoscale] {m}"),
        )
        print("\n" + json.dumps(analysis, indent=1))
        (ROOT / ".cache").mkdir(exist_ok=True)
        (ROOT / ".cache" / "autoscale-test.json").write_text(
            json.dumps(record, indent=1)
        )  # for a failure's post-mortem
        triton = analysis["tiers"]["triton"]
        assert triton["baseline_desired"] == 1
        assert triton["step_to_decision_s"] is not None and triton["step_to_decision_s"] <= 30, (
            "8x load raised Triton's desired replicas within 30 s"
        )
        assert triton["peak_desired"] > 1
        # every new Triton pod that was Ready for 15 s of the peak served (gateways re-resolve every 2 s)
        settled = [p for p, s in triton["new_pods_ready_s"].items() if s >= 15]
        assert settled and all(triton["new_pods_served"][p] > 0 for p in settled), (
            f"every new Triton pod served: {triton}"
        )
        for tier, t in analysis["tiers"].items():
            assert t["desired_changes_after_settling"] <= 1, f"{tier} flapped under steady load: {t}"
            # the configured window: the queries' 30 s smoothing, the stabilization window, then one
            # pod per 10 s; plus KEDA's 5 s polling, the 2 s scrape and the HPA's 2 s sync
            bound = 30 + TEST_BEHAVIOR["scaleDown"]["stabilizationWindowSeconds"] + 10 * (MAX_REPLICAS - 1) + 20
            assert t["release_to_scaled_down_s"] is not None and t["release_to_scaled_down_s"] <= bound, (
                f"{tier} scaled down within {bound}s: {t}"
            )
        down = analysis["phases"]["scale_down"]
        assert down["requests"] > 0 and down["ok"] == down["requests"], (
            f"0 failures while pods drain: {down}; {record['failures'][:5]}"
        )
        assert analysis["success_ratio"] >= 0.999, f"{analysis['phases']}; {record['failures'][:5]}"
        assert not record["sampler_errors"] or len(record["sampler_errors"]) < 10, record["sampler_errors"]
    finally:
        kube.kubectl("delete", "ys", name, "-n", ns, "--wait=true", "--timeout=90s", check=False)


def test_scale_to_zero_and_back_without_503s(autoscaling):
    kube, ns, _ = autoscaling
    name = "sleeper"
    zero = {"minReplicas": 0, "maxReplicas": 2, "idleSeconds": 15, "coldStartTimeoutSeconds": 120}
    kube.apply(
        scaler_sample(name, **{"triton.autoscaling": {**scaler_sample(name)["spec"]["triton"]["autoscaling"], **zero}}),
        "-n",
        ns,
    )
    try:
        wait_ready(kube, name, ns, timeout=300)
        scaled_object_ready(kube, ns, f"{name}-triton")
        deployment = f"{name}-triton"

        def at_zero() -> bool:
            dep = kube.get("deployment", deployment, ns)
            left = kube.items("pods", ns, f"app.kubernetes.io/instance={name},app.kubernetes.io/component=triton")
            return dep["spec"].get("replicas") == 0 and not left

        wait_for("the idle Triton tier at 0 replicas", at_zero, timeout=120, interval=1)
        obj = kube.get("yoloservice", name, ns)
        assert condition(obj, "Ready")["status"] == "True", obj["status"]
        assert condition(obj, "TritonReady")["reason"] == "ScaledToZero"
        url = gateway_url(kube, name, ns)
        service_answers(url)  # KEDA may scale Triton to zero within seconds of creation: Ready that early
        body = images(1)[0]
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(6) as pool:  # bounded: 6 requests, each with a 150 s timeout
            results = list(pool.map(lambda _: (detect(url, body, timeout=150), time.monotonic() - start), range(6)))
        statuses = [r[0][0] for r in results]
        waited = max(r[1] for r in results)
        print(f"\n[autoscale] cold start: 6 requests at zero, all answered after {waited:.1f}s: {statuses}")
        assert statuses == [200] * 6, [r[0][2][:200] for r in results]
        assert all(b'"detections"' in r[0][2] for r in results)
        dep = kube.get("deployment", deployment, ns)
        assert dep["spec"]["replicas"] >= 1 and (dep["status"].get("readyReplicas") or 0) >= 1
    finally:
        kube.kubectl("delete", "ys", name, "-n", ns, "--wait=true", "--timeout=90s", check=False)
