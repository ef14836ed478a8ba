"""The autoscaling experiment, shared by k8s-tests/test_pods_autoscale.py and `make autoscale-demo`.

- `scaler_sample()`: the CPU sample with both tiers autoscaled by KEDA on queue depth, sized
  for a 2-CPU node, with a short scale-down window so that a run takes minutes.
- `Load` (load.py): closed-loop load from the host to the gateway's ClusterIP Service; the number of
  concurrent clients (1x, 8x, ...) changes while it runs. Each request is recorded.
- `Sampler`: once a second, what the autoscalers decided and what runs: each tier's HPA
  (made by KEDA) desired and current replicas, the Deployments' ready replicas, and from the
  cluster's Prometheus the queue depths the triggers read.
- `analyse()`: reaction times (load step -> scaling decision -> new pod serving), flapping,
  scale-down time and failures, and per-window rates and p99s for the plot.

Everything goes only to the cluster this project started (its Services, pods and Prometheus).
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

from kubernetes import client, config
from load import Load, Request
from pod_helpers import cpu_sample

# A short scale-down (a 120 s window, one pod per 10 s) so the test sees it within minutes; scale-up
# as the operator's default: at once. Under 8 clients the gateway tier's own work averages ~1.8 in
# all against a target of 2 per pod: it sits on the 1 <-> 2 boundary, and the window must outlast
# its dips. A 20 s window flapped 3 times in one CI run; 60 s flapped twice in a later one
# (1 -> 2 at 75 s, 2 -> 1 at 181 s, 1 -> 2 at 193 s). Replaying that run's 1 s samples through the
# HPA's rule gives the same 2 changes at 60 s and none at 90, 120 or 150 s.
TEST_BEHAVIOR = {
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [{"type": "Pods", "value": 4, "periodSeconds": 5}],
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 120,
        "selectPolicy": "Max",
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 10}],
    },
}
MAX_REPLICAS = 3


def scaler_sample(name: str, **patch: Any) -> dict[str, Any]:
    """Both tiers on KEDA: Triton on its queue and the gateways' Triton-bound requests (1 pending +
    one batch of 1 per pod), the gateway on its own work (2 per pod); no CPU trigger (no
    metrics-server here). Small requests: 1 + 3 Triton pods and 3 gateways fit the 2-CPU node."""
    triton = {
        "enabled": True,
        "engine": "keda",
        "minReplicas": 1,
        "maxReplicas": MAX_REPLICAS,
        "targetPendingRequests": 1,
        "behavior": TEST_BEHAVIOR,
    }
    gateway = {
        "enabled": True,
        "engine": "keda",
        "minReplicas": 1,
        "maxReplicas": MAX_REPLICAS,
        "targetInflightRequests": 2,
        "targetCpuUtilization": 0,
        "behavior": TEST_BEHAVIOR,
    }
    base = {
        "triton.maxBatchSize": 1,  # demand per pod 1 + 1: 8 clients sit well above 3 pods, so the tier rests at its maximum
        "triton.dynamicBatching": {"maxQueueDelayMicroseconds": 2000},
        "triton.resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}},
        "triton.autoscaling": triton,
        "gateway.resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "gateway.autoscaling": gateway,
        "gateway.shutdownGraceSeconds": 15,
        "podDisruptionBudget": {"enabled": False},
    }
    base.update(patch)
    return cpu_sample(name, **base)


# --------------------------------------------------------------------------- samples


@dataclass
class Sample:
    t: float
    desired: dict[str, int]  # tier -> the HPA's desiredReplicas (KEDA's HPA)
    current: dict[str, int]  # tier -> the HPA's currentReplicas
    ready: dict[str, int]  # tier -> ready replicas of the Deployment
    spec: dict[str, int]  # tier -> the Deployment's spec.replicas
    queue: dict[str, float] = field(
        default_factory=dict
    )  # Prometheus: triton_pending, gateway_inflight, gateway_triton
    served: dict[str, dict[str, int]] = field(default_factory=dict)  # tier -> ready pod -> requests it has served


class Sampler:
    """Once a second (a thread, in-process clients: no kubectl per sample), until stop()."""

    def __init__(
        self, kubeconfig: str, namespace: str, name: str, prometheus: str, t0: float, interval: float = 1.0
    ) -> None:
        self.ns, self.name, self.prometheus, self.t0, self.interval = namespace, name, prometheus, t0, interval
        api = config.new_client_from_config(kubeconfig)
        self.apps, self.hpa, self.core = client.AppsV1Api(api), client.AutoscalingV2Api(api), client.CoreV1Api(api)
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def promql(self, query: str) -> float:
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - the cluster's own Prometheus
            result = json.loads(r.read())["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    def _one(self) -> Sample:
        s = Sample(time.monotonic() - self.t0, {}, {}, {}, {})
        for tier in ("triton", "gateway"):
            target = f"{self.name}-{tier}"
            dep = self.apps.read_namespaced_deployment(target, self.ns, _request_timeout=3)
            s.ready[tier] = int(dep.status.ready_replicas or 0)
            s.spec[tier] = int(dep.spec.replicas or 0)
            try:
                h = self.hpa.read_namespaced_horizontal_pod_autoscaler(
                    f"keda-hpa-{target}", self.ns, _request_timeout=3
                )
                s.desired[tier] = int(h.status.desired_replicas or 0)
                s.current[tier] = int(h.status.current_replicas or 0)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
                s.desired[tier] = s.current[tier] = s.spec[tier]  # no HPA: KEDA scaled to zero, or not yet made
        s.served = self._served()
        pods = lambda tier: f'namespace="{self.ns}",pod=~"{self.name}-{tier}-[a-z0-9]+-[a-z0-9]+"'  # noqa: E731
        s.queue = {
            "triton_pending": self.promql(f"sum(nv_inference_pending_request_count{{{pods('triton')}}})"),
            "gateway_inflight": self.promql(f"sum(yolo_gateway_inflight_requests{{{pods('gateway')}}})"),
            "gateway_triton": self.promql(f"sum(yolo_gateway_triton_requests{{{pods('gateway')}}})"),
        }
        return s

    def _served(self) -> dict[str, dict[str, int]]:
        """Each ready pod's own count: Triton's statistics API, the gateway's images counter."""
        out: dict[str, dict[str, int]] = {"triton": {}, "gateway": {}}
        pods = self.core.list_namespaced_pod(
            self.ns, label_selector=f"app.kubernetes.io/instance={self.name}", _request_timeout=3
        ).items
        for pod in pods:
            tier = (pod.metadata.labels or {}).get("app.kubernetes.io/component")
            ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
            if tier not in out or not ready or not pod.status.pod_ip or pod.metadata.deletion_timestamp:
                continue
            try:
                out[tier][pod.metadata.name] = served(tier, pod.status.pod_ip)
            except OSError:
                continue
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                self.samples.append(self._one())
            except Exception as exc:  # the apiserver or Prometheus slow for a moment: record, go on
                self.errors.append(f"{time.monotonic() - self.t0:.1f}s {type(exc).__name__}: {exc}"[:300])
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - start)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def served(tier: str, pod_ip: str) -> int:
    if tier == "triton":
        with urllib.request.urlopen(f"http://{pod_ip}:8000/v2/models/yolo/stats", timeout=2) as r:  # noqa: S310 - our pod
            stats = json.loads(r.read())
        return sum(int(m["inference_stats"]["success"]["count"]) for m in stats.get("model_stats", []))
    with urllib.request.urlopen(f"http://{pod_ip}:8080/metrics", timeout=2) as r:  # noqa: S310 - our pod
        text = r.read().decode()
    return int(
        sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("yolo_gateway_images_total "))
    )


# --------------------------------------------------------------------------- analysis


def first(samples: list[Sample], after: float, pred: Any) -> float | None:
    for s in samples:
        if s.t >= after and pred(s):
            return s.t
    return None


def changes(samples: list[Sample], tier: str, a: float, b: float) -> int:
    values = [s.desired[tier] for s in samples if a <= s.t < b]
    return sum(1 for x, y in itertools.pairwise(values) if x != y)


def p99(latencies: list[float]) -> float:
    if not latencies:
        return math.nan
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def windows(requests: list[Request], end: float, width: float = 5.0) -> list[dict[str, float | None]]:
    """Per window of `width` seconds (by end time): completed requests/s, failures, p99 latency (ms)."""
    out = []
    for k in range(int(end // width) + 1):
        a, b = k * width, (k + 1) * width
        done = [r for r in requests if a <= r.end < b]
        ok = [r.end - r.start for r in done if r.status == 200]
        out.append(
            {
                "t": b,
                "rps": len(done) / width,
                "failed": len(done) - len(ok),
                "p99_ms": round(p99(ok) * 1e3, 1) if ok else None,
            }
        )
    return out


def record(load: Load, sampler: Sampler, events: dict[str, float], extra: dict[str, Any]) -> dict[str, Any]:
    """Everything a run measured, as JSON-ready data."""
    end = max([r.end for r in load.requests] + [s.t for s in sampler.samples] + [0.0])
    return {
        "events": events,
        "steps": [{"t": t, "clients": n} for t, n in load.steps],
        "samples": [asdict(s) for s in sampler.samples],
        "windows": windows(load.requests, end),
        "requests": {"total": len(load.requests), "ok": sum(r.status == 200 for r in load.requests)},
        "failures": [asdict(r) for r in load.requests if r.status != 200][:50],
        "sampler_errors": sampler.errors[:20],
        **extra,
    }


def analyse(samples: list[Sample], load: Load, events: dict[str, float], min_replicas: int = 1) -> dict[str, Any]:
    """Reaction times and stability, per tier, from the samples and the requests."""
    step, release = events["step"], events["release"]
    before = [s for s in samples if s.t < step]
    out: dict[str, Any] = {"tiers": {}}
    for tier in ("triton", "gateway"):
        base = before[-1].desired[tier] if before else min_replicas
        old_pods = set(before[-1].served.get(tier, {})) if before else set()
        decided = first(samples, step, lambda s, t=tier, b=base: s.desired[t] > b)
        serving = None
        if decided is not None:
            serving = first(
                samples,
                decided,
                lambda s, t=tier, old=old_pods: any(n > 0 for p, n in s.served.get(t, {}).items() if p not in old),
            )
        peak = max([s.desired[tier] for s in samples if step <= s.t < release] or [base])
        down = first(samples, release, lambda s, t=tier: s.desired[t] <= min_replicas and s.spec[t] <= min_replicas)
        new_pods = sorted(
            {p for s in samples if step <= s.t < release for p in s.served.get(tier, {}) if p not in old_pods}
        )
        ready_at = {p: first(samples, step, lambda s, p=p, t=tier: p in s.served.get(t, {})) for p in new_pods}
        out["tiers"][tier] = {
            "baseline_desired": base,
            "peak_desired": peak,
            "step_to_decision_s": None if decided is None else round(decided - step, 1),
            "decision_to_new_pod_serving_s": None
            if serving is None or decided is None
            else round(serving - decided, 1),
            "new_pods": new_pods,
            # the most each served while it was Ready (a pod removed before the load dropped is not in the last sample)
            "new_pods_served": {
                p: max(s.served.get(tier, {}).get(p, 0) for s in samples if step <= s.t < release) for p in new_pods
            },
            # how long each new pod was Ready before the load dropped (a late one may not have served yet)
            "new_pods_ready_s": {p: round(release - t, 1) for p, t in ready_at.items() if t is not None},
            "desired_changes_after_settling": changes(samples, tier, step + 60, release),
            "release_to_scaled_down_s": None if down is None else round(down - release, 1),
        }
    phases = {"base": (0, step), "peak": (step, release), "scale_down": (release, math.inf)}
    out["phases"] = {}
    for phase, (a, b) in phases.items():
        reqs = load.between(a, b)
        ok = sum(r.status == 200 for r in reqs)
        out["phases"][phase] = {
            "requests": len(reqs),
            "ok": ok,
            "p99_ms": round(p99([r.end - r.start for r in reqs if r.status == 200]) * 1e3, 1) if ok else None,
        }
    total = len(load.requests)
    out["success_ratio"] = (sum(r.status == 200 for r in load.requests) / total) if total else 0.0
    return out


def run_step(
    kubeconfig: str,
    namespace: str,
    name: str,
    url: str,
    images: list[bytes],
    prometheus: str,
    base: int = 1,
    peak: int = 8,
    base_s: float = 30,
    peak_s: float = 180,
    down_s: float = 240,
    log: Any = print,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """base x clients for base_s, peak x for peak_s, base x again until both tiers are back at their
    minimum (at most down_s), then 10 s more so the removed pods' last requests are seen.
    Returns (analysis, record)."""
    t0 = time.monotonic()
    sampler = Sampler(kubeconfig, namespace, name, prometheus, t0)
    load = Load(url, images, clients=0, max_clients=16, timeout=30, t0=t0, stride=7).start()
    events: dict[str, float] = {}
    try:
        load.set_clients(base)
        events["base"] = load.now()
        log(f"load {base}x for {base_s:.0f}s")
        time.sleep(base_s)
        load.set_clients(peak)
        events["step"] = load.now()
        log(f"load {peak}x for {peak_s:.0f}s")
        time.sleep(peak_s)
        load.set_clients(base)
        events["release"] = load.now()
        log(f"load {base}x until both tiers are back at their minimum (at most {down_s:.0f}s)")
        deadline = time.monotonic() + down_s
        while time.monotonic() < deadline:
            last = sampler.samples[-1] if sampler.samples else None
            if (
                last
                and last.t > events["release"]
                and all(
                    last.desired[t] <= 1 and last.spec[t] <= 1 and last.ready[t] == 1 for t in ("triton", "gateway")
                )
            ):
                events["scaled_down"] = load.now()
                break
            time.sleep(1)
        time.sleep(10)
        events["end"] = load.now()
    finally:
        load.set_clients(0)
        load.stop()
        sampler.stop()
    analysis = analyse(sampler.samples, load, events)
    return analysis, record(
        load,
        sampler,
        events,
        {
            "analysis": analysis,
            "config": {"base": base, "peak": peak, "base_s": base_s, "peak_s": peak_s, "behavior": TEST_BEHAVIOR},
        },
    )
