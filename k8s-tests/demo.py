"""`make k8s-demo`: the Kubernetes counterpart of `make demo`.

Starts the local cluster (control plane + the real node), builds and imports the images, helm
installs the chart with ci/local-values.yaml (the operator runs as a pod on the real node),
starts an S3 store in the cluster and seeds it with the bundled model, applies
examples/yoloservice-cpu.yaml (placed on the real node), waits until it is Ready, sends a freshly
generated image through the gateway's Service and prints the detections. Then it brings
everything down, also when a step fails: the whole cluster, or, when a cluster was already
running, what the demo added to it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import numpy as np
import pod_helpers as ph
from e2e_helpers import RELEASE_NS, Kube, cluster, wait_for

from yolo_tools.synthetic import CLASS_NAMES, encode, make_scene, match

NS = "yolo-demo"


def step(msg: str) -> None:
    print(f"[k8s-demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def teardown(kube: Kube) -> None:
    for y in kube.items("yoloservices", NS) if kube.get("namespace", NS) else []:
        kube.kubectl("delete", "ys", y["metadata"]["name"], "-n", NS, "--wait=true", "--timeout=60s", check=False)
    ph.uninstall_operator(kube)
    for ns in (NS, ph.STORE_NS):
        kube.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", "--ignore-not-found", check=False)


def demo(kube: Kube) -> None:
    step("images: make images (cached), pushed to the cluster's registry")
    ph.build_and_push_images()
    for ns in (NS, ph.STORE_NS):  # a demo that was interrupted: start clean
        kube.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", "--ignore-not-found", check=False)
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": labels}})
    ph.registry_pull_secret(kube, NS)  # the namespace's pods pull from the cluster's registry
    step(f"helm install the operator (ci/local-values.yaml) into {RELEASE_NS}, watching {NS}")
    ph.install_operator(kube, [NS])
    step("the object store: versitygw in yolo-store, seeded with s3://models/yolo/model.onnx")
    store = ph.Store(kube).deploy()
    kube.apply(store.secret(NS))
    step("kubectl apply examples/yoloservice-cpu.yaml (with the real node's nodeSelector and toleration)")
    kube.apply(ph.cpu_sample("yolo"), "-n", NS)
    start = time.monotonic()
    obj = ph.wait_ready(kube, "yolo", NS, timeout=300)
    step(f"YoloService yolo is Ready after {time.monotonic() - start:.0f}s: {obj['status']['url']}")
    print(kube.kubectl("get", "ys,deploy,svc,pods", "-n", NS, "-o", "wide").stdout, flush=True)

    url = ph.gateway_url(kube, "yolo", NS)
    rng = np.random.default_rng(int(time.time()))
    scene = make_scene(rng, 960, 540, min_objects=3)
    step(f"POST {url}/v1/detect: a freshly generated 960x540 JPEG with {len(scene.boxes)} shapes")
    status, _, body = wait_for(
        "an answer from the gateway", lambda: (r := ph.detect(url, encode(scene, ".jpg")))[0] == 200 and r, timeout=30
    )
    result = json.loads(body)
    for d in result["detections"]:
        b = d["box"]
        print(
            f"  {d['class_name']:<10} {d['confidence']:.2f}  ({b['x1']:.0f}, {b['y1']:.0f}) - ({b['x2']:.0f}, {b['y2']:.0f})"
        )
    print(f"  ground truth: {', '.join(CLASS_NAMES[c] for c in scene.classes)}")
    boxes = np.array(
        [[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in result["detections"]], np.float32
    ).reshape(-1, 4)
    tp, fp, fn = match(boxes, np.array([d["class_id"] for d in result["detections"]]), scene.boxes, scene.classes, 0.5)
    print(
        f"  matched at IoU 0.5: {tp} of {len(scene.boxes)} ({fp} false positives); timings_ms {result['timings_ms']}",
        flush=True,
    )


def run(
    tag: str, body: Callable[[Kube], None], remove: Callable[[Kube], None], missing: Callable[[], str | None]
) -> int:
    """Bring the cluster up (or reuse a running one), run `body`, and take down what it started:
    the whole cluster, or, when one was already running, what `remove` names. `missing()` says
    what the cluster lacks for `body` (None: nothing)."""
    reuse = cluster.status(quiet=True)
    print(
        f"[{tag} {time.strftime('%H:%M:%S')}] cluster up" + (": reusing the running one" if reuse else ""), flush=True
    )
    try:
        kube = Kube(cluster.up())
    except cluster.ClusterError as exc:
        print(f"{tag}: the cluster did not start: {exc}", file=sys.stderr)
        return 1
    lack = missing()
    if lack:
        print(f"{tag}: the cluster has no {lack}", file=sys.stderr)
        if not reuse:
            cluster.down()
        return 1
    rc = 0
    try:
        body(kube)
    except (AssertionError, OSError, KeyError, ValueError) as exc:
        print(f"{tag} failed: {exc}", file=sys.stderr)
        print(ph.operator_logs(kube)[-3000:], file=sys.stderr)
        rc = 1
    finally:
        if reuse:
            print(f"[{tag}] removing what it added (the cluster was already running)", flush=True)
            remove(kube)
        else:
            print(f"[{tag}] cluster down", flush=True)
            cluster.down()
    return rc


def main() -> int:
    def no_node() -> str | None:
        if cluster.node_marker().exists():
            return None
        return f"real node (missing: {', '.join(cluster.realnode.missing(cluster.BIN)) or 'YOLO_REAL_NODE=0'})"

    return run("k8s-demo", demo, teardown, no_node)


if __name__ == "__main__":
    sys.exit(main())
