"""`make scale-bench`: N YoloServices (default 1,000) created at once on kwok nodes, a benchmark, not a test.

On the local control plane (started here unless one runs), with the chart installed and the operator
running as a local process under the chart's ServiceAccount, as in the e2e tests:

1. kwok nodes with room for every pod (1,000 pods each) join the cluster;
2. N YoloServices (CPU Triton, fixed replicas: 2 pods and 9 children each) are applied at once;
3. until all are Ready at their generation: the time, the operator's peak RSS, and its API
   requests per second, counted in the apiserver's audit log (its ServiceAccount's requests only);
4. until all have settled (kopf's create handlers finished too: they see Ready on their next
   retry, a few seconds after a child event's reconcile has set it), with the requests between;
5. then a steady state of `--steady` seconds (several resyncs of every service): the operator's
   writes (create, update, patch, delete) to the services and their children, which should be 0,
   and its reads; the leader's peering keep-alives are counted apart.

Writes bench/results/scale.json and prints a summary (BENCHMARKS.md, "The operator at scale").
Everything goes only to the cluster that this project starts on loopback.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from e2e_helpers import (
    GROUP,
    ROOT,
    Kube,
    OperatorProcess,
    cluster,
    install_chart,
    sa_kubeconfig,
    sample,
)

NS = "scale"
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
PEERING = {"clusterkopfpeerings", "kopfpeerings"}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def audit_events(since: float, until: float) -> list[dict[str, Any]]:
    """The operator's requests, by the apiserver's own record, whose stage ended in [since, until) (epoch s)."""
    out = []
    for path in sorted(cluster.AUDIT_LOG.parent.glob("operator*.log")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("user", {}).get("username") != cluster.OPERATOR_USER or e.get("stage") != "ResponseComplete":
                continue
            t = datetime.fromisoformat(e["stageTimestamp"].replace("Z", "+00:00")).timestamp()
            if since <= t < until:
                out.append(e)
    return out


def by_verb(events: list[dict[str, Any]]) -> dict[str, int]:
    return dict(collections.Counter(e["verb"] for e in events).most_common())


def service(i: int) -> dict[str, Any]:
    small = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}
    return sample(
        f"svc-{i:04d}",
        **{
            "triton.resources": small,
            "triton.autoscaling": {"enabled": False},
            "gateway.autoscaling": {"enabled": False},
            "gateway.replicas": 1,
        },
    )


def counts(kube: Kube) -> tuple[int, int, int]:
    """(Ready at their generation, settled, total). Settled: Ready, and kopf has finished its
    handlers too (no progress left in status, the last-handled configuration written). A child
    event's reconcile sets Ready first; the create handler's own retry sees it up to a few seconds
    later and only then writes its completion (a status patch of ours, kopf's annotation patch and
    its progress clean-up). The steady state starts once every service has settled."""
    items = kube.items("yoloservices", NS)
    ready = settled = 0
    for y in items:
        status = y.get("status") or {}
        conds = {c["type"]: c for c in status.get("conditions", [])}
        if (
            conds.get("Ready", {}).get("status") == "True"
            and status.get("observedGeneration") == y["metadata"]["generation"]
        ):
            ready += 1
            handled = f"{GROUP}/last-handled-configuration" in (y["metadata"].get("annotations") or {})
            if handled and not (status.get("kopf") or {}).get("progress"):
                settled += 1
    return ready, settled, len(items)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=3, help="kwok nodes added, 1,000 pods each")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds to wait for all Ready")
    ap.add_argument("--resync", type=float, default=30, help="the operator's resync period (the chart's default)")
    ap.add_argument("--steady", type=float, default=90, help="seconds of steady state measured after all are Ready")
    ap.add_argument(
        "--keep", action="store_true", help="leave the cluster, the services and the operator's log for a post-mortem"
    )
    ap.add_argument("--verbose", action="store_true", help="the operator's debug log")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    args = ap.parse_args()

    reuse = cluster.status(quiet=True)
    kube = Kube(cluster.up())
    tmp = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    op: OperatorProcess | None = None
    result: dict[str, Any] = {"count": args.count, "resync_s": args.resync}
    try:
        install_chart(kube)
        nodes = [
            cluster.node_manifest(
                f"scale-node-{i}",
                {"node.kubernetes.io/instance-type": "scale"},
                {"cpu": "1000", "memory": "4Ti", "pods": "1000"},
                [],
            )
            for i in range(args.nodes)
        ]
        kube.apply({"apiVersion": "v1", "kind": "List", "items": nodes})
        kube.kubectl("create", "namespace", NS, check=False)

        op = OperatorProcess(
            sa_kubeconfig(kube, tmp / "sa.kubeconfig"),
            tmp / "operator.log",
            identity="scale-bench",
            resync_seconds=args.resync,
            verbose=args.verbose,
        )
        op.start()
        assert op.proc is not None
        time.sleep(5)  # its start-up requests are not the services'
        base_rss = rss_mib(op.proc.pid)

        print(f"[scale] applying {args.count} YoloServices", flush=True)
        start, t_start = time.monotonic(), time.time()
        for a in range(0, args.count, 100):
            kube.apply(
                {"apiVersion": "v1", "kind": "List", "items": [service(i) for i in range(a, min(a + 100, args.count))]},
                "-n",
                NS,
            )
        applied = time.monotonic() - start
        peak_rss, progress = base_rss, []
        ready = settled = 0
        ready_at: float | None = None
        while time.monotonic() - start < args.timeout:
            peak_rss = max(peak_rss, rss_mib(op.proc.pid))
            ready, settled, total = counts(kube)
            t = round(time.monotonic() - start, 1)
            progress.append({"t": t, "ready": ready, "settled": settled, "rss_mib": round(rss_mib(op.proc.pid), 1)})
            print(
                f"[scale] {t:7.1f}s  {ready}/{total} Ready, {settled} settled  operator RSS {progress[-1]['rss_mib']:.0f} MiB",
                flush=True,
            )
            if ready == args.count and ready_at is None:
                ready_at, t_ready = t, time.time()
            if settled == args.count:
                break
            for _ in range(10):  # the RSS more often than the (heavier) list
                time.sleep(0.5)
                peak_rss = max(peak_rss, rss_mib(op.proc.pid))
        all_settled = time.monotonic() - start
        t_settled = time.time()
        if ready_at is None:
            ready_at, t_ready = all_settled, t_settled
        all_ready = ready_at
        events = audit_events(t_start, t_ready)
        tail = audit_events(t_ready, t_settled)
        result.update(
            {
                "applied_s": round(applied, 1),
                "all_ready": ready == args.count,
                "ready": ready,
                "all_ready_s": round(all_ready, 1),
                "operator_rss_mib": {"idle": round(base_rss, 1), "peak": round(peak_rss, 1)},
                "api_requests": len(events),
                "api_requests_per_s": round(len(events) / max(all_ready, 1e-9), 1),
                "api_requests_per_service": round(len(events) / args.count, 1),
                "api_by_verb": by_verb(events),
                "all_settled": settled == args.count,
                "all_settled_s": round(all_settled, 1),
                "ready_to_settled": {"api_requests": len(tail), "api_by_verb": by_verb(tail)},
                "progress": progress,
            }
        )
        print(f"[scale] steady state for {args.steady:.0f}s", flush=True)
        t0 = time.time()
        time.sleep(args.steady)
        steady = audit_events(t0, time.time())
        keepalives = [e for e in steady if e["verb"] in WRITES and e.get("objectRef", {}).get("resource") in PEERING]
        writes = [e for e in steady if e["verb"] in WRITES and e not in keepalives]
        log = op.log.read_text(errors="replace")
        result["steady"] = {
            "seconds": args.steady,
            "resyncs": int(args.steady // args.resync) * args.count,
            "api_requests": len(steady),
            "api_by_verb": by_verb(steady),
            "writes": len(writes),  # to YoloServices and their children; the leader's keep-alives apart
            "peering_keepalives": len(keepalives),
            "writes_per_resync": round(len(writes) / max(1, int(args.steady // args.resync) * args.count), 4),
            "write_examples": [
                f"{e['verb']} {e['objectRef'].get('resource')}/{e['objectRef'].get('name')}" for e in writes[:10]
            ],
            # a loop shows as one object written again and again; a tail as many objects written once
            "writes_by_object": dict(
                collections.Counter(
                    f"{e['objectRef'].get('resource')}/{e['objectRef'].get('name')}"
                    + (f"/{e['objectRef']['subresource']}" if e["objectRef"].get("subresource") else "")
                    for e in writes
                ).most_common(10)
            ),
            "operator_rss_mib": round(rss_mib(op.proc.pid), 1),
        }
        result["operator_errors"] = sum(1 for line in log.splitlines() if "[ERROR" in line)
    finally:
        if op:
            op.stop()
            print(f"[scale] the operator's log: {op.log}")
        if not args.keep:
            kube.kubectl("delete", "namespace", NS, "--wait=false", check=False)
            kube.kubectl("delete", "node", *[f"scale-node-{i}" for i in range(args.nodes)], "--wait=false", check=False)
            if not reuse:
                cluster.down()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    summary = {k: v for k, v in result.items() if k != "progress"}
    print(json.dumps(summary, indent=1))
    print(f"[scale] wrote {args.out}")
    return 0 if result.get("all_ready") and result.get("all_settled") else 1


if __name__ == "__main__":
    sys.exit(main())
