"""A user's own Ultralytics export on the real node, named by `model.source` alone: the default
`yolo export` (640 px, 80 classes, batch fixed to 1) goes Ready only once its batch axis was made
dynamic, then answers a burst of 96 concurrent requests in batches and detects accurately through
its Service; a segmentation export is refused with ModelIncompatible, naming what the file is.
The default export is the trained production-size model (model_repository/trained: YOLOv8n, 640 px,
80 classes); the segmentation export is one of `make prod-models`' random-weight files
(.cache/prod-models). Both are uploaded to the cluster's S3 store."""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import s3
from e2e_helpers import Kube, wait_for
from pod_helpers import (
    BUCKET,
    Store,
    condition,
    cpu_sample,
    detect,
    gateway_url,
    ready_pods,
    triton_model_json,
    triton_served,
    wait_ready,
)

from yolo_tools.synthetic import encode, make_scene
from yolo_tools.trained import ONNX as TRAINED
from yolo_tools.trained import matched_ious, parity_scenes

pytestmark = pytest.mark.timeout(900)

MODELS = Path(__file__).resolve().parents[1] / ".cache" / "prod-models"
FILES = {"static": TRAINED, "seg": MODELS / "yolov8n-seg-640.onnx"}
# Through the Service, on the parity scenes' ground truth (same class, IoU >= 0.5); measured
# figures are printed, the README and gateway/tests/test_trained_model.py have them.
MIN_PRECISION = MIN_RECALL = 0.85
# One pod per tier, small requests: the node has two cores and the shared sample runs beside it.
SMALL = {
    "triton.replicas": 1,
    "triton.autoscaling": {"enabled": False},
    "triton.resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "3Gi"}},
    "gateway.replicas": 1,
    "gateway.autoscaling": {"enabled": False},
    "gateway.resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    "podDisruptionBudget": {"enabled": False},
}
BURST = 96
# A 640 px model on two shared cores answers a burst of 96 in seconds optimized (8.3 s measured) and
# in about a minute plain: the gateway takes them all and waits up to that long (gateway.admission;
# the defaults suit the small bundled model). The gateway
# fits its concurrency to its memory: optimized (the CPU default, uint8 input, NMS in the graph) its
# 1 GiB holds all 96; plain (fp32 tensors, raw output, 27 MB a request) it held about 27.
PATIENT = {
    "gateway.admission": {
        "maxConcurrency": BURST,
        "maxQueue": BURST,
        "queueTimeoutSeconds": 150,
        "inferTimeoutSeconds": 150,
        "requestTimeoutSeconds": 180,
    }
}


@pytest.fixture(scope="module")
def uploaded(real_node: Kube, store: Store, pods_ns: str, in_cluster_operator: str) -> dict[str, str]:
    """The exports in the store, under prod/<file>; their s3:// URIs by role."""
    missing = [str(f) for f in FILES.values() if not f.exists()]
    assert not missing, f"{missing} missing: run `make prod-models` (make test does)"
    real_node.apply(store.secret(pods_ns))
    uris = {}
    for role, path in FILES.items():
        status, body = s3.request(
            "PUT", f"{store.endpoint}/{BUCKET}/prod/{path.name}", store.creds, path.read_bytes(), timeout=120
        )
        assert status == 200, (status, body[:300])
        uris[role] = f"s3://{BUCKET}/prod/{path.name}"
    return uris


def _service(name: str, uri: str) -> dict[str, Any]:
    obj = cpu_sample(name, **SMALL, **PATIENT)
    obj["spec"]["model"] = {
        "name": "yolo",
        "source": {"uri": uri, "secretRef": {"name": "model-store"}},
    }  # nothing else
    return obj


def test_a_default_static_export_is_made_batchable_and_answers_a_burst_of_96(
    real_node: Kube, pods_ns: str, uploaded: dict[str, str]
):
    kube, ns, name = real_node, pods_ns, "v8n-static"
    kube.apply(_service(name, uploaded["static"]), "-n", ns)
    try:
        obj = wait_ready(kube, name, ns, timeout=420)
        model = wait_for(
            "ModelCompatible",
            lambda: (
                (c := condition(kube.get("yoloservice", name, ns), "ModelCompatible")).get("status") == "True" and c
            ),
            timeout=60,
        )
        assert model["reason"] == "BatchAxisRewritten", model
        assert (
            "640x640" in model["message"]
            and "80 classes (names from the file)" in model["message"]
            and "fixed the batch to 1" in model["message"]
        )
        assert condition(obj, "Ready")["status"] == "True"
        url = gateway_url(kube, name, ns)
        rng = np.random.default_rng(21)
        images = [encode(make_scene(rng, 1280, 720), ".jpg") for _ in range(4)]
        (triton,) = ready_pods(kube, ns, name, "triton")
        before = triton_served(triton["status"]["podIP"])
        # The metadata the gateway serves: the file's own names, the rewritten batch axis.
        status, _, body = wait_for(
            "the gateway to answer",
            lambda: (r := detect(url, images[0], timeout=60))[0] == 200 and r,
            timeout=120,
            interval=2,
        )
        assert status == 200 and "detections" in json.loads(body)
        started = time.monotonic()

        def timed(i: int) -> tuple[int, dict, bytes]:
            t0 = time.monotonic()
            status, headers, body = detect(url, images[i % len(images)], timeout=200)
            return status, headers, body + f" after {time.monotonic() - t0:.1f}s".encode()

        with ThreadPoolExecutor(BURST) as pool:
            results = list(pool.map(timed, range(BURST)))
        took = time.monotonic() - started
        failed = [(r[0], r[2][:200]) for r in results if r[0] != 200]
        if failed:
            logs = kube.kubectl("logs", "-n", ns, f"deployment/{name}-gateway", "--tail=30", check=False).stdout
            events = kube.kubectl("get", "events", "-n", ns, "--sort-by=.lastTimestamp", check=False).stdout[-3000:]
            raise AssertionError(
                f"{len(failed)} of {BURST} failed: {failed[:5]}\ngateway log:\n{logs}\nevents:\n{events}"
            )
        # Triton counts a request a moment after it answers it: read once the count settles (bounded).
        wait_for(
            f"Triton's count of the {BURST + 1} requests",
            lambda: triton_served(triton["status"]["podIP"]) - before == BURST + 1,
            timeout=10,
            interval=0.5,
        )
        stats = _stats(triton["status"]["podIP"])
        # The gateway fitted its concurrency to its memory: no OOM kill (it would have lost every request in flight).
        (gateway,) = ready_pods(kube, ns, name, "gateway")
        assert [c["restartCount"] for c in gateway["status"]["containerStatuses"]] == [0], gateway["status"]
        with urllib.request.urlopen(f"http://{gateway['status']['podIP']}:8080/metrics", timeout=5) as r:  # noqa: S310 - our pod
            limit = next(
                float(line.split()[-1])
                for line in r.read().decode().splitlines()
                if line.startswith("yolo_gateway_admission_limit ")
            )
        assert 1 <= limit <= BURST, limit
        # Optimized on the way in, the CPU default: uint8 NHWC input, NMS in the graph.
        config = triton_model_json(triton["status"]["podIP"], "yolo", "config")
        inputs = [(i["data_type"], [int(d) for d in i["dims"]]) for i in config["input"]]
        assert inputs == [("TYPE_UINT8", [640, 640, 3])], config
        assert "det_boxes" in {o["name"] for o in config["output"]}, config
        # Real batches on the rewritten graph: fewer executions than images (a batch-1 graph could not).
        assert stats["execution_count"] < stats["inference_count"], stats
        print(
            f"\n[v8n-static] {BURST} concurrent 1280x720 requests: {BURST} x 200 in {took:.1f}s; Triton {stats}; gateway admission limit {limit:.0f}"
        )
        # Accuracy through the Service: the parity scenes, one after another, against their ground truth.
        tp = fp = fn = 0
        for jpeg, gt_boxes, gt_classes in parity_scenes():
            status, _, body = detect(url, jpeg, timeout=60)
            assert status == 200, body[:300]
            dets = json.loads(body)["detections"]
            boxes = np.array([[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in dets], np.float32).reshape(-1, 4)
            pairs = len(matched_ious(gt_boxes, gt_classes, boxes, np.array([d["class_id"] for d in dets])))
            tp, fp, fn = tp + pairs, fp + len(dets) - pairs, fn + len(gt_boxes) - pairs
        precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
        print(
            f"[v8n-static] through the Service: precision {precision:.3f}, recall {recall:.3f} ({tp} TP, {fp} FP, {fn} FN)"
        )
        assert precision >= MIN_PRECISION and recall >= MIN_RECALL, (precision, recall)
    finally:
        kube.kubectl("delete", "ys", name, "-n", ns, "--wait=true", "--timeout=120s", check=False)


def test_a_segmentation_export_is_refused_with_a_condition(real_node: Kube, pods_ns: str, uploaded: dict[str, str]):
    kube, ns, name = real_node, pods_ns, "v8n-seg"
    kube.apply(_service(name, uploaded["seg"]), "-n", ns)
    try:

        def refused() -> dict[str, Any] | None:
            obj = kube.get("yoloservice", name, ns)
            ready = condition(obj or {}, "Ready")
            return obj if ready.get("reason") == "ModelIncompatible" else None

        obj = wait_for("Ready=False with reason ModelIncompatible", refused, timeout=240, interval=2)
        ready, model = condition(obj, "Ready"), condition(obj, "ModelCompatible")
        assert (
            ready["status"] == "False"
            and "a segmentation model" in ready["message"]
            and "output1 [1, 32, 160, 160]" in ready["message"]
        )
        assert (model["status"], model["reason"]) == ("False", "ModelIncompatible"), model
        assert all(c["observedGeneration"] == obj["metadata"]["generation"] for c in obj["status"]["conditions"])
    finally:
        kube.kubectl("delete", "ys", name, "-n", ns, "--wait=true", "--timeout=120s", check=False)


def _stats(pod_ip: str) -> dict[str, int]:
    (m,) = triton_model_json(pod_ip, "yolo", "stats")["model_stats"]
    return {"inference_count": int(m["inference_count"]), "execution_count": int(m["execution_count"])}
