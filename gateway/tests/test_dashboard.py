"""The chart's Grafana dashboard asks only for metrics that the gateway and Triton really export:
each panel's PromQL is checked against what a real gateway and a real tritonserver serve."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import numpy as np

from yolo_tools.synthetic import encode, make_scene

DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "yolo-operator" / "dashboards" / "yolo-service.json"
# Triton exports its GPU metrics only where there is a GPU (Triton's metrics docs); this CPU machine has none.
GPU_ONLY = {"nv_gpu_utilization"}
NAME = re.compile(r"\b((?:nv|yolo_gateway)_[a-z0-9_]+)\b")


def _exported(url: str) -> set[str]:
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_every_panel_queries_metrics_that_exist(client, triton):
    jpeg = encode(make_scene(np.random.default_rng(5), 640, 480))
    assert client.post("/v1/detect", content=jpeg, headers={"content-type": "image/jpeg"}).status_code == 200
    exported = _exported(f"{client.base_url}/metrics") | _exported(triton.metrics_url)
    dash = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in dash["panels"]]
    for want in (
        "Requests by status",
        "Latency p50 / p95 / p99",
        "Triton batch size (should be > 1)",
        "Triton queue time per request",
        "GPU utilization",
        "Errors and shedding",
        "Replicas",
        "Canary and shadow",
        "Calls in flight per Triton pod (least-loaded routing picks by these)",
    ):
        assert want in titles
    for panel in dash["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(NAME.findall(target["expr"]))
            assert names, target["expr"]
            missing = names - exported - GPU_ONLY
            assert not missing, f"{panel['title']}: {sorted(missing)} not exported"
    for var in dash["templating"]["list"]:
        for name in NAME.findall(json.dumps(var.get("query", ""))):
            assert name in exported, name
