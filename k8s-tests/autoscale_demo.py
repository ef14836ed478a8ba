"""`make autoscale-demo`: a load step on the local cluster, measured, as JSON and a plot.

Starts the local cluster (control plane, the real node, Prometheus and KEDA), builds and imports
the images, helm installs the operator, seeds the S3 store, applies the autoscaled CPU sample
(k8s-tests/autoscale_helpers.py: both tiers on KEDA ScaledObjects), then sends 1 client for
30 s, 8 clients for 180 s and 1 client until both tiers are back at their minimum. It writes

    bench/results/autoscale.json   every sample (1 s), 5 s windows of rate and p99, the analysis
    bench/results/autoscale.svg    offered load, p99, queue depth and both tiers' replicas over time

(OUT=dir elsewhere) and prints the reaction times: load step -> scaling decision -> new pod
serving, and the scale-down. Then it brings down what it started.

MODEL=bundled (the default) serves the bundled 320 px, 3-class detector on 480x360 images.
MODEL=yolov8n serves the trained production-size model (model_repository/trained: YOLOv8n, 640 px,
80 classes, the default static export), named by `model.source` alone, on 1280x720 images, and
writes autoscale-yolov8n.{json,svg} instead.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import demo
import numpy as np
import pod_helpers as ph
import s3
from autoscale_helpers import run_step, scaler_sample
from e2e_helpers import RELEASE_NS, Kube, cluster
from plot import Panel, Series, write

from yolo_tools.synthetic import encode, make_scene
from yolo_tools.trained import DESCRIBED
from yolo_tools.trained import ONNX as TRAINED

NS = "yolo-autoscale"
NAME = "scaler"
ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("OUT") or ROOT / "bench" / "results")
# MODEL -> (what the record says, the scenes' size, the output files' stem)
MODELS = {
    "bundled": ("bundled yolov8t-shapes (0.9 M parameters, 320 px, 3 classes)", (480, 360), "autoscale"),
    "yolov8n": (
        f"{DESCRIBED}, named by model.source alone",
        (1280, 720),
        "autoscale-yolov8n",
    ),
}


def say(msg: str) -> None:
    print(f"[autoscale-demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def plot(record: dict, path: Path) -> None:
    samples, windows, ev = record["samples"], record["windows"], record["events"]
    steps = record["steps"] + [
        {"t": ev.get("end", 0), "clients": record["steps"][-1]["clients"] if record["steps"] else 0}
    ]
    s = lambda key, sub: [(x["t"], x[key][sub]) for x in samples]  # noqa: E731
    nan = lambda v: math.nan if v is None else v  # noqa: E731
    panels = [
        Panel(
            "Offered load and throughput",
            "",
            [
                Series("clients (closed loop)", [(x["t"], x["clients"]) for x in steps], step=True),
                Series("completed req/s (5 s)", [(w["t"], w["rps"]) for w in windows]),
            ],
        ),
        Panel("Latency", "ms", [Series("p99 (5 s windows)", [(w["t"], nan(w["p99_ms"])) for w in windows])]),
        Panel(
            "Queue depth (Prometheus)",
            "requests",
            [
                Series("gateway in flight", s("queue", "gateway_inflight")),
                Series("gateway → Triton (demand)", s("queue", "gateway_triton")),
                Series("Triton pending", s("queue", "triton_pending")),
            ],
        ),
        Panel(
            "Replicas",
            "pods",
            [
                Series("Triton desired (HPA)", s("desired", "triton"), step=True),
                Series("Triton ready", s("ready", "triton"), step=True, dashed=True),
                Series("gateway desired (HPA)", s("desired", "gateway"), step=True),
                Series("gateway ready", s("ready", "gateway"), step=True, dashed=True),
            ],
            integer=True,
        ),
    ]
    cfg = record["config"]
    markers = [(ev["step"], f"load ×{cfg['peak']}"), (ev["release"], f"load ×{cfg['base']}")]
    if "scaled_down" in ev:
        markers.append((ev["scaled_down"], "both tiers at min"))
    write(
        path,
        panels,
        f"a load step on the local cluster (KEDA on queue depth, 2 CPUs): {cfg.get('model', 'the bundled model')}",
        markers=markers,
    )


def run(kube: Kube) -> None:
    say("images: make images (cached), pushed to the cluster's registry")
    ph.build_and_push_images()
    for ns in (NS, ph.STORE_NS):
        kube.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", "--ignore-not-found", check=False)
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NS, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
        }
    )
    ph.registry_pull_secret(kube, NS)  # the namespace's pods pull from the cluster's registry
    say(f"helm install the operator into {RELEASE_NS}, watching {NS}")
    ph.install_operator(kube, [NS])
    store = ph.Store(kube).deploy()
    kube.apply(store.secret(NS))
    which = os.environ.get("MODEL") or "bundled"
    described, (width, height), stem = MODELS[which]
    sample = scaler_sample(NAME)
    if which == "yolov8n":
        status, body = s3.request(
            "PUT", f"{store.endpoint}/{ph.BUCKET}/prod/{TRAINED.name}", store.creds, TRAINED.read_bytes(), timeout=120
        )
        assert status == 200, (status, body[:300])
        sample["spec"]["model"] = {
            "name": "yolo",
            "source": {"uri": f"s3://{ph.BUCKET}/prod/{TRAINED.name}", "secretRef": {"name": "model-store"}},
        }
        # A 640 px model: 8 clients of 1280x720 images wait seconds, not milliseconds.
        sample["spec"]["gateway"]["admission"] = {"inferTimeoutSeconds": 120, "requestTimeoutSeconds": 150}
    say(f"the autoscaled CPU sample, both tiers on KEDA ScaledObjects, serving the {described}")
    kube.apply(sample, "-n", NS)
    ph.wait_ready(kube, NAME, NS, timeout=480)
    rng = np.random.default_rng(11)
    images = [encode(make_scene(rng, width, height), ".jpg") for _ in range(12)]
    analysis, record = run_step(
        str(kube.kubeconfig), NS, NAME, ph.gateway_url(kube, NAME, NS), images, cluster.metrics.PROMETHEUS_URL, log=say
    )
    record["config"]["model"] = described
    record["config"]["image"] = f"{width}x{height} JPEG"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{stem}.json").write_text(json.dumps(record, indent=1, allow_nan=False))
    plot(record, OUT / f"{stem}.svg")
    say(f"wrote {OUT / f'{stem}.json'} and {OUT / f'{stem}.svg'}")
    print(json.dumps(analysis, indent=1))


def remove(kube: Kube) -> None:
    kube.kubectl("delete", "ys", NAME, "-n", NS, "--wait=true", "--timeout=90s", check=False)
    ph.uninstall_operator(kube)
    for ns in (NS, ph.STORE_NS):
        kube.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", "--ignore-not-found", check=False)


def main() -> int:
    def no_pipeline() -> str | None:
        return (
            None
            if cluster.metrics_marker().exists()
            else "real node with Prometheus and KEDA (make cluster-build; YOLO_REAL_NODE=1)"
        )

    return demo.run("autoscale-demo", run, remove, no_pipeline)


if __name__ == "__main__":
    sys.exit(main())
