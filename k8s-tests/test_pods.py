"""The real thing on the real node: the chart's operator running in the cluster from its image,
the CPU sample (examples/yoloservice-cpu.yaml) fetched from an in-cluster S3 store, Triton
(triton-cpu) and the gateway as real pods, and traffic from the host through the gateway's
ClusterIP Service: accuracy, round robin over the headless Service, scale-up, probes, rollouts
and a SIGKILL under load, Pod Security, and bad model sources.

One YoloService (`yolo`) is shared by the tests in order; each test leaves it Ready. Load comes
from the host, each request on a new connection (urllib), as a load balancer's clients' would."""

from __future__ import annotations

import copy
import hashlib
import json
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
import s3
from e2e_helpers import Kube, wait_for
from load import Load, summary
from pod_helpers import (
    BUCKET,
    HTTP_MODEL_URL,
    KEY,
    MODEL_FILE,
    PLACEMENT,
    REGISTRY_SECRET,
    STORE_NS,
    Store,
    condition,
    cpu_sample,
    ctr,
    detect,
    dev_images,
    gateway_url,
    is_ready,
    local_images,
    pods,
    ready_pods,
    registry_pull_secret,
    rollout_done,
    triton_served,
    wait_ready,
)

from yolo_tools.synthetic import encode, make_scene, match

pytestmark = pytest.mark.timeout(900)  # the first test includes building the images (cold: ~6 min)

NAME = "yolo"
SIZES = [(640, 480), (1280, 720), (480, 640), (1024, 1024), (800, 450)]


def boxes_of(result: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    dets = result["detections"]
    boxes = np.array([[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in dets], np.float32).reshape(-1, 4)
    return boxes, np.array([d["class_id"] for d in dets])


def load_images(n: int = 16, seed: int = 7) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [encode(make_scene(rng, 480, 360), ".jpg") for _ in range(n)]


def patch(kube: Kube, ns: str, spec: dict[str, Any]) -> None:
    kube.kubectl("patch", "ys", NAME, "-n", ns, "--type=merge", "-p", json.dumps({"spec": spec}))


def triton_replicas(kube: Kube, ns: str, n: int) -> list[dict[str, Any]]:
    """Set spec.triton.replicas and wait until exactly n Triton pods are Ready (and no others left)."""
    patch(kube, ns, {"triton": {"replicas": n}})

    def settled() -> tuple[list[dict[str, Any]]] | None:
        every = kube.items("pods", ns, f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=triton")
        ready = [p for p in every if is_ready(p) and not p["metadata"].get("deletionTimestamp")]
        return (ready,) if len(ready) == n and len(every) == n else None

    return wait_for(f"{n} Triton pods Ready", settled, timeout=180, interval=1)[0]


@pytest.fixture(scope="module")
def svc(real_node: Kube, store: Store, pods_ns: str, in_cluster_operator: str) -> dict[str, Any]:
    """The sample, Ready; and, created at once so that they fail while the other tests run, two
    YoloServices whose model cannot be fetched (a wrong URL, wrong credentials)."""
    kube, ns = real_node, pods_ns
    kube.apply(store.secret(ns))
    wrong = s3.Credentials(store.creds.access_key, store.creds.secret_key[::-1] + "x")
    kube.apply(store.secret(ns, "wrong-credentials", wrong))
    kube.apply(cpu_sample(NAME), "-n", ns)
    cheap = {
        "triton.resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "gateway.replicas": 0,
    }
    kube.apply(
        cpu_sample(
            "bad-url", **{"model.source": {"uri": HTTP_MODEL_URL.replace("model.onnx", "missing.onnx")}, **cheap}
        ),
        "-n",
        ns,
    )
    kube.apply(
        cpu_sample(
            "bad-credentials",
            **{"model.source": {"uri": f"s3://{BUCKET}/{KEY}", "secretRef": {"name": "wrong-credentials"}}, **cheap},
        ),
        "-n",
        ns,
    )
    started = time.monotonic()
    obj = wait_ready(kube, NAME, ns, timeout=300)
    print(f"\nthe sample was Ready {time.monotonic() - started:.0f}s after kubectl apply")
    return {"kube": kube, "ns": ns, "obj": obj, "url": gateway_url(kube, NAME, ns)}


def test_store_serves_the_model_and_rejects_wrong_credentials(store: Store):
    data = MODEL_FILE.read_bytes()
    url = f"{store.endpoint}/{BUCKET}/{KEY}"
    status, body = s3.request("GET", url, store.creds, timeout=30)
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    wrong_secret = s3.Credentials(store.creds.access_key, "not-the-secret")
    unknown_key = s3.Credentials("nobody", store.creds.secret_key)
    # versitygw answers an unknown access key with 404 XAdminUserNotFound, the others with 403
    for creds, code in (
        (wrong_secret, b"SignatureDoesNotMatch"),
        (unknown_key, b"XAdminUserNotFound"),
        (None, b"AccessDenied"),
    ):
        status, body = s3.request("GET", url, creds)
        assert status in (403, 404) and b"<Code>" + code in body, (creds, status, body[:300])
    # and the same file over plain HTTP, through the models Service
    kube = store.kube
    http = f"http://{kube.get('service', 'models', STORE_NS)['spec']['clusterIP']}/yolo/model.onnx"

    def fetch() -> bytes:
        try:
            with urllib.request.urlopen(http, timeout=30) as r:  # noqa: S310 - our own cluster's Service
                return r.read()
        except OSError as exc:  # the Service is seconds old: kube-proxy may not have its rules yet
            raise AssertionError(str(exc)) from exc

    body = wait_for("the model over HTTP through the models Service", fetch, timeout=30, interval=0.5)
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


def test_sample_runs_on_the_real_node_and_detects_accurately(svc: dict[str, Any]):
    kube, ns = svc["kube"], svc["ns"]
    want, pushed = local_images(), dev_images()["images"]
    for component, image, name in (
        ("triton", want["tritonCpu"], "triton-cpu"),
        ("gateway", want["gateway"], "gateway"),
    ):
        (pod,) = pods(kube, ns, NAME, component)
        assert pod["spec"]["nodeName"] == "yolo-node-0" and pod["status"]["phase"] == "Running" and is_ready(pod), (
            component
        )
        assert pod["spec"]["containers"][0]["image"] == image
        # pulled from the cluster's registry, with the namespace's pull secret: the digest make images pushed
        assert pod["spec"]["imagePullSecrets"] == [{"name": REGISTRY_SECRET}], pod["spec"].get("imagePullSecrets")
        digest = pushed[name].split("@", 1)[1]
        assert pod["status"]["containerStatuses"][0]["imageID"] == f"{image.rsplit(':', 1)[0]}@{digest}", component
    (triton,) = pods(kube, ns, NAME, "triton")
    assert triton["spec"]["initContainers"][0]["image"] == want["fetcher"]
    assert "nvidia.com/gpu" not in json.dumps(triton["spec"]["containers"][0]["resources"])
    assert (
        condition(svc["obj"], "TritonReady")["status"] == "True"
        and condition(svc["obj"], "GatewayReady")["status"] == "True"
    )

    rng = np.random.default_rng(20261201)  # fresh scenes, never seen in training
    tp = fp = fn = 0
    for i in range(50):
        w, h = SIZES[i % len(SIZES)]
        scene = make_scene(rng, w, h)
        status, _, body = detect(svc["url"], encode(scene, ".jpg"))
        assert status == 200, body[:500]
        result = json.loads(body)
        assert result["image"] == {"width": w, "height": h}
        boxes, classes = boxes_of(result)
        a, b, c = match(boxes, classes, scene.boxes, scene.classes, 0.5)
        tp, fp, fn = tp + a, fp + b, fn + c
    precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
    print(f"\nthrough the gateway Service: precision {precision:.3f}, recall {recall:.3f} (tp {tp}, fp {fp}, fn {fn})")
    assert precision >= 0.9 and recall >= 0.9


def test_every_pod_is_admitted_under_restricted_pod_security(svc: dict[str, Any]):
    kube, ns = svc["kube"], svc["ns"]
    labels = kube.get("namespace", ns)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # enforcement is live: a pod that breaks the standard is refused
    root = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root", "namespace": ns},
        "spec": {
            "containers": [
                {"name": "c", "image": local_images()["gateway"], "securityContext": {"allowPrivilegeEscalation": True}}
            ]
        },
    }
    r = kube.apply(root, "--dry-run=server", check=False)
    assert r.returncode != 0 and "violates PodSecurity" in r.stderr, r.stderr
    # every ReplicaSet of every YoloService got its pods: none was refused at admission
    for rs in kube.items("replicasets", ns):
        failure = [c for c in (rs.get("status") or {}).get("conditions", []) if c["type"] == "ReplicaFailure"]
        assert not failure, (rs["metadata"]["name"], failure)
        assert int((rs.get("status") or {}).get("replicas", 0)) == int(rs["spec"].get("replicas", 0)), rs["metadata"][
            "name"
        ]
    refused = [e["message"] for e in kube.items("events", ns) if e.get("reason") == "FailedCreate"]
    assert not refused, refused
    everything = kube.items("pods", ns)
    assert len(everything) >= 4  # the sample's two, and the bad sources' Triton pods
    assert all(p["spec"]["nodeName"] == "yolo-node-0" for p in everything)


def test_probes_gate_readiness(svc: dict[str, Any]):
    """Triton is not Ready until its model is loaded; a gateway is not Ready while no Triton is."""
    kube, ns = svc["kube"], svc["ns"]
    triton_replicas(kube, ns, 0)
    wait_for(
        "the gateway NotReady with no Triton", lambda: not ready_pods(kube, ns, NAME, "gateway"), timeout=90, interval=1
    )
    patch(kube, ns, {"triton": {"replicas": 1}})
    samples: list[dict[str, Any]] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        every = kube.items("pods", ns, f"app.kubernetes.io/instance={NAME}")
        triton = [p for p in every if p["metadata"]["labels"]["app.kubernetes.io/component"] == "triton"]
        gateway = [p for p in every if p["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"]
        s: dict[str, Any] = {
            "triton_ready": any(is_ready(p) for p in triton),
            "gateway_ready": any(is_ready(p) for p in gateway),
            "running": False,
            "model_ready": False,
        }
        for p in triton:
            st = {c["name"]: c for c in (p["status"].get("containerStatuses") or [])}.get("triton", {})
            if "running" in (st.get("state") or {}) and p["status"].get("podIP"):
                s["running"] = True
                try:
                    with urllib.request.urlopen(
                        f"http://{p['status']['podIP']}:8000/v2/models/yolo/ready", timeout=1
                    ) as r:  # noqa: S310
                        s["model_ready"] = r.status == 200
                except OSError:
                    pass
        samples.append(s)
        if s["gateway_ready"]:
            break
        time.sleep(0.3)
    assert samples and samples[-1]["gateway_ready"], f"the gateway did not become Ready again: {samples[-5:]}"
    # Triton: Ready only with the model loaded, and it was running for a while before that
    assert all(s["model_ready"] for s in samples if s["triton_ready"]), samples
    assert any(s["running"] and not s["triton_ready"] for s in samples), "never saw Triton running but not Ready"
    # the gateway: never Ready while no Triton pod was (one listing: a consistent snapshot)
    assert all(s["triton_ready"] for s in samples if s["gateway_ready"]), samples
    assert not samples[0]["gateway_ready"]
    wait_ready(kube, NAME, ns)


def test_scale_up_under_load_moves_traffic_to_the_new_pod(svc: dict[str, Any]):
    kube, ns = svc["kube"], svc["ns"]
    (old,) = triton_replicas(kube, ns, 1)
    (gw,) = ready_pods(kube, ns, NAME, "gateway")
    with Load(svc["url"], load_images(), clients=4, rate=5) as load:
        load.wait_count(40, timeout=60)
        patch(kube, ns, {"triton": {"replicas": 2}})

        def new_ready() -> dict[str, Any] | None:
            return next(
                (p for p in ready_pods(kube, ns, NAME, "triton") if p["metadata"]["uid"] != old["metadata"]["uid"]),
                None,
            )

        new = wait_for("the new Triton pod Ready", new_ready, timeout=180, interval=0.5)
        t_ready = time.monotonic()
        ips = {"old": old["status"]["podIP"], "new": new["status"]["podIP"]}
        time.sleep(max(0.0, t_ready + 11 - time.monotonic()))
        before = {k: triton_served(ip) for k, ip in ips.items()}
        time.sleep(max(0.0, t_ready + 15 - time.monotonic()))
        after = {k: triton_served(ip) for k, ip in ips.items()}
        outcomes = list(load.requests)
    served = {k: after[k] - before[k] for k in ips}
    share = served["new"] / max(1, sum(served.values()))
    print(
        f"\nscale-up: 11-15 s after the new pod was Ready it served {served['new']} of {sum(served.values())} requests ({share:.0%}); {summary(outcomes)}"
    )
    assert sum(served.values()) >= 20
    assert share >= 0.3, served
    (gw_after,) = ready_pods(kube, ns, NAME, "gateway")
    assert gw_after["metadata"]["uid"] == gw["metadata"]["uid"], "the gateway pod was replaced"
    assert all(c["restartCount"] == 0 for c in gw_after["status"]["containerStatuses"]), "the gateway restarted"
    assert all(o.status == 200 for o in outcomes), summary(outcomes)


def test_calls_spread_over_the_headless_services_pods(svc: dict[str, Any]):
    """Two equal Triton pods behind the headless Service: least-loaded routing (the default) gives
    each a fair share."""
    kube, ns = svc["kube"], svc["ns"]
    tritons = triton_replicas(kube, ns, 2)
    ips = [p["status"]["podIP"] for p in tritons]
    time.sleep(8)  # both in the gateway's resolved set (DNS cache 5 s, re-resolved every 2 s)
    before = [triton_served(ip) for ip in ips]
    images = load_images()
    with Load(svc["url"], images, clients=4, rate=10) as load:
        load.wait_count(200, timeout=120)
    outcomes = load.requests
    assert all(o.status == 200 for o in outcomes), summary(outcomes)

    def served() -> tuple[list[int]] | None:  # Triton counts a request a moment after it answers it
        counts = [triton_served(ip) - b for ip, b in zip(ips, before, strict=True)]
        return (counts,) if sum(counts) >= len(outcomes) else None

    (counts,) = wait_for("Triton's statistics to count every request", served, timeout=10, interval=0.2)
    shares = [s / max(1, sum(counts)) for s in counts]
    print(
        f"\nleast-loaded routing: {len(outcomes)} requests, Triton pods served {counts} ({', '.join(f'{s:.0%}' for s in shares)})"
    )
    assert sum(counts) == len(outcomes), "each request was served once"
    assert min(shares) >= 0.3, counts


def test_a_triton_pod_throttled_by_its_cpu_limit_gets_fewer_requests(svc: dict[str, Any]):
    """Two Triton pods; one is resized in place (the pod's resize subresource) to a CPU limit of
    100m, which the kubelet writes into its cgroup. Under the same load, least-loaded routing (the
    default) sends it measurably fewer requests than its unthrottled peer, and none fails."""
    kube, ns = svc["kube"], svc["ns"]
    slow, fast = triton_replicas(kube, ns, 2)
    name = slow["metadata"]["name"]
    limit = {"requests": {"cpu": "50m"}, "limits": {"cpu": "100m"}}  # a request may not exceed its limit
    resize = {"spec": {"containers": [{"name": "triton", "resources": limit}]}}
    kube.kubectl("patch", "pod", name, "-n", ns, "--subresource", "resize", "-p", json.dumps(resize))

    def limited() -> bool:
        pod = kube.get("pod", name, ns)
        status = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "triton")
        return (status.get("resources") or {}).get("limits", {}).get("cpu") == "100m"

    wait_for("the kubelet to apply the CPU limit", limited, timeout=60, interval=1)
    # the container's own cgroup: cpu.max on cgroup v2, the CFS quota and period on v1
    read = "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us"
    quota = kube.kubectl("exec", name, "-n", ns, "-c", "triton", "--", "sh", "-c", read).stdout.split()
    assert quota == ["10000", "100000"], f"the container's cgroup holds the limit: {quota}"
    ips = {"slow": slow["status"]["podIP"], "fast": fast["status"]["podIP"]}
    time.sleep(8)  # both in the gateway's resolved set (DNS cache 5 s, re-resolved every 2 s)
    before = {k: triton_served(ip) for k, ip in ips.items()}
    try:
        with Load(svc["url"], load_images(), clients=6, rate=10) as load:
            load.wait_count(200, timeout=180)
        outcomes = load.requests

        def served() -> tuple[dict[str, int]] | None:  # Triton counts a request a moment after it answers it
            counts = {k: triton_served(ip) - before[k] for k, ip in ips.items()}
            return (counts,) if sum(counts.values()) >= len(outcomes) else None

        (counts,) = wait_for("Triton's statistics to count every request", served, timeout=15, interval=0.2)
        share = counts["slow"] / max(1, sum(counts.values()))
        print(
            f"\nCPU-limited Triton pod (100m): served {counts['slow']} of {sum(counts.values())} ({share:.0%}); {summary(outcomes)}"
        )
        assert all(o.status == 200 for o in outcomes), summary(outcomes)
        assert share <= 0.35, f"the throttled pod got {share:.0%} (round robin would give it 50 %): {counts}"
    finally:
        kube.kubectl("delete", "pod", name, "-n", ns, "--wait=false", check=False)  # its replacement has no limit
        wait_ready(kube, NAME, ns)


def test_rollouts_under_steady_load_lose_nothing(svc: dict[str, Any]):
    """One pod of each tier, the hardest case: the new pod must take over before the old one goes."""
    kube, ns = svc["kube"], svc["ns"]
    triton_replicas(kube, ns, 1)
    wait_ready(kube, NAME, ns)
    times = {}
    with Load(svc["url"], load_images(), clients=4, rate=5) as load:
        load.wait_count(40, timeout=60)
        for component in ("gateway", "triton"):
            old = {p["metadata"]["uid"] for p in pods(kube, ns, NAME, component)}
            start = time.monotonic()
            kube.kubectl("rollout", "restart", f"deployment/{NAME}-{component}", "-n", ns)
            rollout_done(kube, ns, NAME, component, old)
            times[component] = time.monotonic() - start
            n = load.count()
            load.wait_count(n + 40, timeout=60)  # a few seconds of load after the old pods are gone
        load.wait_count(400, timeout=120)
    outcomes = load.requests
    print(f"\nrollouts: gateway {times['gateway']:.0f}s, triton {times['triton']:.0f}s; {summary(outcomes)}")
    assert len(outcomes) >= 400
    assert all(o.status == 200 for o in outcomes), summary(outcomes)
    wait_ready(kube, NAME, ns)


def test_sigkill_of_a_triton_pod_under_load(svc: dict[str, Any]):
    kube, ns = svc["kube"], svc["ns"]
    tritons = triton_replicas(kube, ns, 2)
    victim = tritons[0]
    cid = next(c for c in victim["status"]["containerStatuses"] if c["name"] == "triton")["containerID"].split(
        "://", 1
    )[1]
    restarts = next(c for c in victim["status"]["containerStatuses"] if c["name"] == "triton")["restartCount"]
    time.sleep(8)  # both pods in the gateway's set
    with Load(svc["url"], load_images(), clients=4, rate=5) as load:
        load.wait_count(60, timeout=60)
        t_kill = load.now()
        ctr("tasks", "kill", "-s", "SIGKILL", cid)

        def back() -> bool:
            p = kube.get("pod", victim["metadata"]["name"], ns)
            st = next(c for c in p["status"]["containerStatuses"] if c["name"] == "triton")
            return st["restartCount"] > restarts and is_ready(p) and triton_served(p["status"]["podIP"]) > 0

        wait_for("the killed Triton restarted, Ready and serving", back, timeout=90, interval=0.5)
        t_back = load.now() - t_kill
        time.sleep(max(0.0, t_kill + 35 - load.now()))
        outcomes = list(load.requests)
    during = [o for o in outcomes if o.end >= t_kill]
    ok = [o for o in during if o.status == 200]
    rate = len(ok) / max(1, len(during))
    failures = [o for o in during if o.status != 200]
    late = [o for o in failures if o.end > t_kill + 30]
    print(
        f"\nSIGKILL: {rate:.1%} of {len(during)} requests after the kill succeeded; the pod served again {t_back:.1f}s after; {summary(during)}"
    )
    assert rate >= 0.9, summary(during)
    assert all(o.status == 503 and o.retry_after for o in failures), summary(failures)
    assert not late, f"failures more than 30 s after the kill: {summary(late)}"
    assert t_back <= 30, f"the killed pod served again only {t_back:.0f}s after the kill"


@pytest.mark.parametrize(
    ("name", "says"),
    [("bad-url", ["missing.onnx", "404"]), ("bad-credentials", ["403", "SignatureDoesNotMatch"])],
)
def test_a_model_that_cannot_be_fetched_gets_a_condition_saying_so(svc: dict[str, Any], name: str, says: list[str]):
    kube, ns = svc["kube"], svc["ns"]

    def failed() -> dict[str, Any] | None:
        obj = kube.get("yoloservice", name, ns)
        c = condition(obj, "TritonReady")
        return obj if c.get("reason") == "ModelFetchFailed" else None

    try:
        obj = wait_for(f"{name}: TritonReady reason ModelFetchFailed", failed, timeout=150, interval=1)
    except AssertionError as exc:
        obj = kube.get("yoloservice", name, ns)
        raise AssertionError(
            f"{exc}\nconditions: {json.dumps((obj or {}).get('status', {}).get('conditions'), indent=1)}"
        ) from None
    triton, ready = condition(obj, "TritonReady"), condition(obj, "Ready")
    print(f"\n{name}: TritonReady {triton['reason']}: {triton['message']}")
    assert triton["status"] == "False" and ready["status"] == "False"
    assert any(s in triton["message"] for s in says), triton["message"]
    assert triton["message"] in ready["message"]


def _post(url: str, image: bytes) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=image, method="POST", headers={"content-type": "image/jpeg"})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:  # noqa: S310 - our gateway Service
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_tiers_a_shadow_and_a_broken_canary_on_real_pods(svc: dict[str, Any]):
    """spec.tiers, spec.shadow and a spec.canary whose file is missing, on the real pods: the fetcher
    leaves the canary out and Triton starts without it; every tier answers; the shadow gets its
    mirror; no request fails. Then the spec goes back to one version, and the service with it."""
    kube, ns = svc["kube"], svc["ns"]
    triton_replicas(kube, ns, 1)
    wait_ready(kube, NAME, ns)
    old = {c: {p["metadata"]["uid"] for p in pods(kube, ns, NAME, c)} for c in ("triton", "gateway")}
    versions = {
        "tiers": [
            {"name": "realtime", "maxBatchSize": 1, "maxQueueDelayMicroseconds": 0},
            {"name": "standard", "default": True, "maxBatchSize": 16, "maxQueueDelayMicroseconds": 2000},
        ],
        "canary": {"source": {"uri": HTTP_MODEL_URL.replace("model.onnx", "missing.onnx")}, "percent": 50},
        "shadow": {"source": {"uri": HTTP_MODEL_URL}, "percent": 50},
    }
    patch(kube, ns, versions)
    for component in ("triton", "gateway"):
        rollout_done(kube, ns, NAME, component, old[component])
    obj = wait_ready(kube, NAME, ns)
    assert [(m["name"], m["role"]) for m in obj["status"]["models"]] == [
        ("yolo-realtime", "current"),
        ("yolo", "current"),
        ("yolo-canary", "canary"),
        ("yolo-shadow", "shadow"),
    ]
    (triton,) = pods(kube, ns, NAME, "triton")
    fetch_log = kube.kubectl("logs", triton["metadata"]["name"], "-n", ns, "-c", "fetch-model").stdout
    assert "canary: fetching or preparing its model failed; yolo-canary is left out" in fetch_log, fetch_log

    def routes() -> dict[str, dict[str, Any]] | None:
        with urllib.request.urlopen(f"{svc['url']}/v1/models", timeout=10) as r:  # noqa: S310 - our gateway Service
            listing = {x["role"] if x["role"] != "tier" else x["tier"]: x for x in json.loads(r.read())["routes"]}
        return listing if listing["shadow"]["served"] else None

    listing = wait_for("the gateway reads the shadow", routes, timeout=60, interval=1)
    assert listing["canary"]["served"] is False and "yolo-canary" in listing["canary"]["error"], listing["canary"]
    assert listing["realtime"]["model"] == "yolo-realtime" and listing["standard"]["served"]
    images = load_images(8)
    seen = []
    for query, model in (("", "yolo"), ("?tier=realtime", "yolo-realtime"), ("?tier=standard", "yolo")):
        for image in images:
            status, body = _post(f"{svc['url']}/v1/detect{query}", image)
            assert status == 200, body
            assert (body["model"]["name"], body["model"]["variant"]) == (model, "current"), body["model"]
            seen.append(body["detections"])
    assert seen[:8] == seen[8:16] == seen[16:], "every tier serves the same weights"
    ip = triton["status"]["podIP"]
    wait_for(
        "the shadow's Triton model served its mirror",
        lambda: triton_served(ip, "yolo-shadow") >= 4,
        timeout=30,
        interval=0.5,
    )
    # Triton counts its model_warmup too, and a request a moment after it answers it
    wait_for(
        "the realtime tier's model counted its requests",
        lambda: triton_served(ip, "yolo-realtime") >= 8 + 1,
        timeout=10,
        interval=0.2,
    )
    assert triton_served(ip, "yolo-realtime") == 8 + 1

    old = {c: {p["metadata"]["uid"] for p in pods(kube, ns, NAME, c)} for c in ("triton", "gateway")}
    patch(kube, ns, {"tiers": None, "canary": None, "shadow": None})
    for component in ("triton", "gateway"):
        rollout_done(kube, ns, NAME, component, old[component])
    obj = wait_ready(kube, NAME, ns)
    assert obj["status"]["models"] == [
        {"name": "yolo", "role": "current", "source": obj["spec"]["model"]["source"]["uri"]}
    ]


# --------------------------------------------------------------------------- NetworkPolicies

PROBE = """
import json, socket, sys
out = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        out[target] = "open"
    except socket.timeout:
        out[target] = "timeout"
    except OSError as exc:
        out[target] = type(exc).__name__
print(json.dumps(out))
"""


def probe(kube: Kube, ns: str, targets: list[str], name: str = "netpol-probe") -> dict[str, str]:
    """A pod in `ns` that opens a TCP connection to each host:port: "open", "timeout" (a dropped
    SYN: what a NetworkPolicy does) or the error. Restricted Pod Security, the gateway's image."""
    kube.kubectl("delete", "pod", name, "-n", ns, "--ignore-not-found", "--wait=true", check=False)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            **copy.deepcopy(PLACEMENT),  # on the real node: a kwok node would only pretend to run it
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "probe",
                    "image": local_images()["gateway"],
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", PROBE, *targets],
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }
    kube.apply(pod)

    def done() -> dict[str, Any] | None:
        p = kube.get("pod", name, ns)
        return p if p and p["status"].get("phase") in ("Succeeded", "Failed") else None

    p = wait_for(f"probe pod {ns}/{name} to finish", done, timeout=120, interval=1)
    logs = kube.kubectl("logs", name, "-n", ns).stdout
    kube.kubectl("delete", "pod", name, "-n", ns, "--wait=false", check=False)
    assert p["status"]["phase"] == "Succeeded", logs
    return dict(json.loads(logs.strip().splitlines()[-1]))


def test_network_policies_keep_other_pods_off_triton(svc: dict[str, Any]):
    """Enforced on the real node (kube-network-policies): a pod in the service's namespace and one
    in another namespace cannot open Triton's gRPC, HTTP or metrics ports, on any Triton pod, and
    reach the gateway; a pod in `monitoring` (the chart's default metricsFrom) opens the metrics
    port only; the gateway still detects. Switched off, the policies go and gRPC opens; switched
    back on, it is closed again."""
    kube, ns = svc["kube"], svc["ns"]
    ys = wait_ready(kube, NAME, ns)
    assert condition(ys, "NetworkPolicy")["reason"] == "Applied", condition(ys, "NetworkPolicy")
    tritons = [p["status"]["podIP"] for p in ready_pods(kube, ns, NAME, "triton")]
    gateways = [p["status"]["podIP"] for p in ready_pods(kube, ns, NAME, "gateway")]
    assert tritons and gateways
    grpc, http, metrics = ([f"{ip}:{port}" for ip in tritons] for port in (8001, 8000, 8002))
    api = [f"{ip}:8080" for ip in gateways]
    created = []
    for other in ("netpol-elsewhere", "monitoring"):
        if not kube.get("namespace", other):
            kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
            created.append(other)
        registry_pull_secret(kube, other)  # the probe runs the gateway's image
    try:
        for where in (ns, "netpol-elsewhere"):
            seen = probe(kube, where, grpc + http + metrics + api)
            assert {seen[t] for t in grpc + http + metrics} == {"timeout"}, (where, seen)
            assert {seen[t] for t in api} == {"open"}, (where, seen)
        seen = probe(kube, "monitoring", grpc + http + metrics)
        assert {seen[t] for t in metrics} == {"open"} and {seen[t] for t in grpc + http} == {"timeout"}, seen
        code, _, _ = detect(svc["url"], load_images(1)[0])
        assert code == 200, "the gateway's own pods still reach Triton"

        patch(kube, ns, {"networkPolicy": {"enabled": False}})
        sel = f"app.kubernetes.io/instance={NAME}"
        wait_for("both policies deleted", lambda: not kube.items("networkpolicy", ns, sel), timeout=60)
        assert wait_for("gRPC open without them", lambda: probe(kube, ns, grpc[:1])[grpc[0]] == "open", timeout=90)
        patch(kube, ns, {"networkPolicy": {"enabled": True}})
        wait_for("both policies back", lambda: len(kube.items("networkpolicy", ns, sel)) == 2, timeout=60)
        assert wait_for("gRPC closed again", lambda: probe(kube, ns, grpc[:1])[grpc[0]] == "timeout", timeout=90)
        assert condition(wait_ready(kube, NAME, ns), "NetworkPolicy")["reason"] == "Applied"
    finally:
        patch(kube, ns, {"networkPolicy": None})
        for other in created:
            kube.kubectl("delete", "namespace", other, "--wait=false", check=False)
