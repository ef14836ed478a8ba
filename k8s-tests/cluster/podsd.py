"""Pod discovery for the cluster's Prometheus, as a file_sd target file.

Debian's Prometheus is built without Kubernetes service discovery, so this small process
does that part: every `--interval` seconds it lists the real node's pods and writes those
annotated `prometheus.io/scrape: "true"` (Running, with an IP) to `--out`, in Prometheus's
file_sd format, labelled as a `role: pod` scrape job with the usual relabelling would be:
`namespace`, `pod`, `node`, `__metrics_path__` from `prometheus.io/path`, `__scheme__` from
`prometheus.io/scheme` and the address
from `prometheus.io/port`. Prometheus re-reads the file when it changes.

    python podsd.py --kubeconfig .cluster/kubeconfig --node yolo-node-0 --out targets.json

It runs as a cluster component (metrics_pipeline.py) and stops with the cluster; it also
stops by itself after `--max-hours`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

SCRAPE, PORT, PATH, SCHEME = "prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path", "prometheus.io/scheme"


def targets(pods: list[Any]) -> list[dict[str, Any]]:
    out = []
    for pod in pods:
        ann = pod.metadata.annotations or {}
        if (
            ann.get(SCRAPE) != "true"
            or pod.status.phase != "Running"
            or not pod.status.pod_ip
            or pod.metadata.deletion_timestamp
        ):
            continue
        labels = {
            "namespace": pod.metadata.namespace,
            "pod": pod.metadata.name,
            "node": pod.spec.node_name or "",
            "__metrics_path__": ann.get(PATH, "/metrics"),
        }
        if ann.get(SCHEME) in ("http", "https"):
            labels["__scheme__"] = ann[SCHEME]  # a gateway serving HTTPS only
        for k, v in (pod.metadata.labels or {}).items():
            if k.startswith("app.kubernetes.io/"):
                labels[re.sub(r"[^a-zA-Z0-9_]", "_", k)] = v
        port = ann.get(PORT, "80")
        out.append({"targets": [f"{pod.status.pod_ip}:{port}"], "labels": labels})
    return sorted(out, key=lambda t: t["targets"][0])


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--max-hours", type=float, default=24.0)
    args = ap.parse_args(argv)
    config.load_kube_config(args.kubeconfig)
    core = client.CoreV1Api()
    write_atomic(args.out, "[]")
    last = "[]"
    end = time.monotonic() + args.max_hours * 3600
    while time.monotonic() < end:
        try:
            pods = core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={args.node}", _request_timeout=10
            ).items
            text = json.dumps(targets(pods), indent=1)
            if text != last:
                write_atomic(args.out, text)
                last = text
        except Exception as exc:  # the apiserver restarting: keep the last targets, try again
            print(f"podsd: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
