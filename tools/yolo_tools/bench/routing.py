"""`make bench ONLY=routing`: round robin against least-loaded routing, side by side in one run.

Two real Tritons serve the bundled model, each in a cgroup with a CPU quota, as pods with CPU
limits are: first one of them with half the other's CPU ("throttled"), then two equal ones
("equal"). For each pair the bench measures its capacity (a closed loop of 16 clients through a
gateway), then offers 80 % of it at a fixed rate (an open loop: latencies include queueing)
through a gateway routing round robin and then through one routing least-loaded, and reports
requests/s, p50/p95/p99, errors and each Triton's share (from its statistics API).

Targets (issue 23): throttled, least-loaded p99 <= 0.5 x round robin's; equal, within 5 %.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..local_triton import CpuQuota, LocalTriton, TritonPorts
from .loadgen import triton_stats

if TYPE_CHECKING:  # pragma: no cover
    from .__main__ import Bench

# scenario -> CPU cores of Triton A and Triton B (a cgroup quota each)
SCENARIOS = {"throttled": (0.5, 0.25), "equal": (0.5, 0.5)}
LOAD = 0.8  # of the pair's measured capacity
MODEL = "yolo"


def run(bench: Bench, repo: Path) -> list[dict[str, Any]]:
    if not CpuQuota.available():
        raise SystemExit("the routing bench needs a writable cgroup with a CPU controller (root)")
    rows: list[dict[str, Any]] = []
    for scenario, (cores_a, cores_b) in SCENARIOS.items():
        a = LocalTriton(repo, TritonPorts.free(), log_path=bench.work / f"routing-{scenario}-a.log")
        b = LocalTriton(repo, TritonPorts.free(), log_path=bench.work / f"routing-{scenario}-b.log")
        with a, b, CpuQuota(f"bench-{scenario}-a", cores_a) as qa, CpuQuota(f"bench-{scenario}-b", cores_b) as qb:
            assert a.process is not None and b.process is not None
            qa.add_group(a.process.pid)
            qb.add_group(b.process.pid)
            target = f"ipv4:127.0.0.1:{a.ports.grpc},127.0.0.1:{b.ports.grpc}"
            gw = bench.with_gateway(MODEL, triton_url=target, routing="least_loaded")
            try:
                capacity = bench.loop(bench.gateway_sender(gw.url), 16)
            finally:
                gw.stop()
            rate = round(LOAD * capacity.completed_rps, 1)
            print(
                f"routing, {scenario} (Triton A {cores_a:g} core, B {cores_b:g}): capacity {capacity.completed_rps:.1f}"
                f" requests/s; offering {rate:g}/s",
                flush=True,
            )
            for routing in ("round_robin", "least_loaded"):
                gw = bench.with_gateway(MODEL, triton_url=target, routing=routing)
                try:
                    before = [triton_stats(t.http_url, MODEL)["inference_count"] for t in (a, b)]
                    result = bench.loop(bench.gateway_sender(gw.url), 0, rate=rate)
                    after = [triton_stats(t.http_url, MODEL)["inference_count"] for t in (a, b)]
                finally:
                    gw.stop()
                served = [y - x for x, y in zip(before, after, strict=True)]
                row = {
                    "scenario": scenario,
                    "cores": {"a": cores_a, "b": cores_b},
                    "routing": routing,
                    "capacity_rps": capacity.completed_rps,
                    **result.to_dict(),
                    "served": {"a": served[0], "b": served[1]},
                    "share_b": round(served[1] / max(1, sum(served)), 3),
                }
                print(
                    f"  {routing:<13} {result.completed_rps:6.1f} rps  p50 {result.p50_ms:7.1f}  p95 {result.p95_ms:7.1f}"
                    f"  p99 {result.p99_ms:7.1f} ms  errors {sum(result.errors.values())}  B's share {row['share_b']:.2f}",
                    flush=True,
                )
                rows.append(row)
    return rows


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(r["scenario"], r["routing"]): r for r in rows}
    out = []
    if ("throttled", "least_loaded") in by and ("throttled", "round_robin") in by:
        ratio = by["throttled", "least_loaded"]["p99_ms"] / max(1e-9, by["throttled", "round_robin"]["p99_ms"])
        out.append(
            {
                "target": "throttled pair: least-loaded p99 <= 0.5 x round robin's",
                "value": round(ratio, 3),
                "met": ratio <= 0.5,
            }
        )
    if ("equal", "least_loaded") in by and ("equal", "round_robin") in by:
        ll, rr = by["equal", "least_loaded"], by["equal", "round_robin"]
        p99 = ll["p99_ms"] / max(1e-9, rr["p99_ms"])
        rps = ll["completed_rps"] / max(1e-9, rr["completed_rps"])
        out.append(
            {
                "target": "equal pair: least-loaded p99 within 5 % of round robin's (<= 1.05 x)",
                "value": round(p99, 3),
                "met": p99 <= 1.05,
            }
        )
        out.append(
            {
                "target": "equal pair: least-loaded requests/s within 5 % of round robin's (>= 0.95 x)",
                "value": round(rps, 3),
                "met": rps >= 0.95,
            }
        )
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "## Routing: round robin against least-loaded (bundled model, 1080p JPEGs)",
        "",
        "Two real Tritons in CPU-quota cgroups, an open loop at 80 % of the pair's measured capacity, one",
        "gateway per routing, side by side in one run (`make bench ONLY=routing`).",
        "",
        "| pair (cores A / B) | routing | offered /s | completed /s | p50 ms | p95 ms | p99 ms | errors | B's share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} ({r['cores']['a']:g} / {r['cores']['b']:g}) | {r['routing']} | {r['rate']:g} |"
            f" {r['completed_rps']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} |"
            f" {sum(r['errors'].values())} | {r['share_b']:.2f} |"
        )
    lines += ["", "| target | value | met |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['value']} | {'yes' if t['met'] else 'no'} |" for t in targets(rows)]
    return "\n".join(lines) + "\n"
