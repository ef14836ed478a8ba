"""End to end on the real control plane: helm install, apply, update, drift, validation,
restarts and deletion, with the operator running as the chart's ServiceAccount."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
from e2e_helpers import GROUP, RELEASE, RELEASE_NS, Kube, OperatorProcess, condition, sample, wait_for, wait_reason

NS = "e2e"


@pytest.fixture(scope="module")
def ns(kube: Kube, operator: OperatorProcess) -> str:
    kube.kubectl("create", "namespace", NS, check=False)
    return NS


def ready(kube: Kube, name: str, namespace: str = NS) -> dict:
    def check() -> dict | None:
        obj = kube.get("yoloservice", name, namespace)
        c = condition(obj, "Ready")
        if (
            obj
            and c.get("status") == "True"
            and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
        ):
            return obj
        return None

    return wait_for(f"YoloService {name} Ready", check, timeout=120)


CHILD_KINDS = ("configmap", "deployment", "service", "hpa", "pdb", "networkpolicy")


def children(kube: Kube, name: str, namespace: str = NS) -> dict[str, list[dict]]:
    sel = f"app.kubernetes.io/instance={name},app.kubernetes.io/managed-by=yolo-operator"
    return {k: kube.items(k, namespace, sel) for k in CHILD_KINDS}


def _plan(configmap: dict) -> dict:
    """The model's plan in its model-config ConfigMap: the operator's half of config.pbtxt (the init
    container renders the rest from the model file)."""
    return json.loads(configmap["data"]["yolo.json"])


def test_chart_installs_crd_and_rbac(kube: Kube, chart: str):
    crd = kube.get("crd", f"yoloservices.{GROUP}")
    assert crd["spec"]["names"]["shortNames"] == ["ys"]
    assert kube.get("serviceaccount", "yolo-operator", RELEASE_NS)
    role = kube.get("clusterrole", "yolo-operator")
    verbs = {(tuple(r.get("apiGroups", [])), tuple(r["resources"])): r["verbs"] for r in role["rules"]}
    assert all("*" not in v for v in verbs.values()), "no wildcard verbs"
    assert all("*" not in res for (_, res) in verbs), "no wildcard resources"
    assert not any("secrets" in res for (_, res) in verbs), "the operator reads no Secrets"
    assert kube.get("clusterkopfpeering", "yolo-operator")
    # least privilege really bites: the ServiceAccount cannot read Secrets or create Pods
    sa = f"system:serviceaccount:{RELEASE_NS}:yolo-operator"
    assert kube.kubectl("auth", "can-i", "list", "secrets", "--as", sa, check=False).stdout.strip() == "no"
    assert (
        kube.kubectl("auth", "can-i", "create", "pods", "-n", "default", "--as", sa, check=False).stdout.strip() == "no"
    )
    assert kube.kubectl("auth", "can-i", "patch", "deployments", "-n", "default", "--as", sa).stdout.strip() == "yes"


def test_sample_becomes_ready_with_every_child(kube: Kube, ns: str):
    kube.apply(sample("shapes"), "-n", ns)
    obj = ready(kube, "shapes")
    uid = obj["metadata"]["uid"]
    kids = children(kube, "shapes")
    assert {c["metadata"]["name"] for c in kids["configmap"]} == {"shapes-model-config"}
    assert {c["metadata"]["name"] for c in kids["deployment"]} == {"shapes-triton", "shapes-gateway"}
    assert {c["metadata"]["name"] for c in kids["service"]} == {"shapes-triton", "shapes"}
    assert {c["metadata"]["name"] for c in kids["hpa"]} == {"shapes-triton", "shapes-gateway"}
    assert {c["metadata"]["name"] for c in kids["pdb"]} == {"shapes-triton", "shapes-gateway"}
    assert {c["metadata"]["name"] for c in kids["networkpolicy"]} == {"shapes-triton", "shapes-gateway"}
    for group in kids.values():
        for child in group:
            (ref,) = child["metadata"]["ownerReferences"]
            assert ref["uid"] == uid and ref["kind"] == "YoloService" and ref["controller"] is True
    plan = _plan(kids["configmap"][0])
    assert plan["max_batch_size"] == 16 and plan["dynamic_batching"]["preferred_batch_sizes"] == [8, 16]
    status = obj["status"]
    assert status["url"] == f"http://shapes.{ns}.svc.cluster.local:80"
    assert {c["type"] for c in status["conditions"]} == {
        "ModelCompatible",
        "TritonReady",
        "GatewayReady",
        "AutoscalingReady",
        "NetworkPolicy",
        "Ready",
    }
    assert all(c["observedGeneration"] == obj["metadata"]["generation"] for c in status["conditions"])
    assert all(c["reason"][0].isupper() and " " not in c["reason"] for c in status["conditions"])

    def applied_events() -> list[str]:
        events = kube.items("events", ns)
        return [e["message"] for e in events if e["involvedObject"].get("uid") == uid and e.get("reason") == "Applied"]

    messages = wait_for("Events for what the operator applied", applied_events)
    assert any("Deployment/shapes-triton" in m for m in messages), messages


def test_triton_pods_run_only_on_gpu_nodes(kube: Kube, ns: str):
    ready(kube, "shapes")
    nodes = {n["metadata"]["name"]: n for n in kube.items("nodes")}

    def placed() -> tuple[list[dict], list[dict]] | None:
        # Ready needs one available pod per tier: the gateway's second replica may still be
        # waiting for the scheduler then, so wait until every pod has a node.
        triton = kube.items("pods", ns, "app.kubernetes.io/instance=shapes,app.kubernetes.io/component=triton")
        gateway = kube.items("pods", ns, "app.kubernetes.io/instance=shapes,app.kubernetes.io/component=gateway")
        everyone = triton + gateway
        done = (
            triton
            and gateway
            and all(p["spec"].get("nodeName") and p["status"].get("phase") == "Running" for p in everyone)
        )
        return (triton, gateway) if done else None

    triton, gateway = wait_for("every pod of both tiers scheduled and Running", placed, timeout=60, interval=0.5)
    for pod in triton:
        node = nodes[pod["spec"]["nodeName"]]
        assert "nvidia.com/gpu" in node["status"]["allocatable"], pod["spec"]["nodeName"]
        assert pod["status"]["phase"] == "Running"
    for pod in gateway:
        assert "nvidia.com/gpu" not in nodes[pod["spec"]["nodeName"]]["status"]["allocatable"]


def test_printer_columns(kube: Kube, ns: str):
    ready(kube, "shapes")
    out = kube.kubectl("get", "ys", "-n", ns).stdout
    header, row = out.splitlines()[:2]
    assert header.split()[:6] == ["NAME", "READY", "TRITON", "GATEWAY", "URL", "AGE"]
    assert row.split()[:2] == ["shapes", "True"] and f"http://shapes.{ns}.svc.cluster.local:80" in row


def test_batching_change_updates_config_and_rolls_triton(kube: Kube, ns: str):
    before = kube.get("deployment", "shapes-triton", ns)["spec"]["template"]["metadata"]["annotations"][
        f"{GROUP}/config-hash"
    ]
    kube.kubectl(
        "patch",
        "ys",
        "shapes",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps(
            {
                "spec": {
                    "triton": {
                        "maxBatchSize": 32,
                        "dynamicBatching": {"preferredBatchSizes": [16, 32], "maxQueueDelayMicroseconds": 500},
                    }
                }
            }
        ),
    )
    wait_for(
        "the new model plan", lambda: _plan(kube.get("configmap", "shapes-model-config", ns))["max_batch_size"] == 32
    )
    db = _plan(kube.get("configmap", "shapes-model-config", ns))["dynamic_batching"]
    assert db["preferred_batch_sizes"] == [16, 32] and db["max_queue_delay_microseconds"] == 500
    after = kube.get("deployment", "shapes-triton", ns)["spec"]["template"]["metadata"]["annotations"][
        f"{GROUP}/config-hash"
    ]
    assert after != before
    ready(kube, "shapes")


def test_edited_or_deleted_children_are_restored(kube: Kube, ns: str, operator: OperatorProcess):
    """Within 5 s, by the operator's watch on its children (its log says which event), not only
    by the resync timer."""
    log_start = operator.log.stat().st_size
    kube.kubectl("set", "image", "deployment/shapes-gateway", "gateway=evil/image:latest", "-n", ns)
    kube.kubectl("delete", "service", "shapes", "-n", ns)
    kube.kubectl("delete", "hpa", "shapes-triton", "-n", ns)
    kube.kubectl("delete", "configmap", "shapes-model-config", "-n", ns)
    # stripped labels take the Service out of the watch's selection: the API server says DELETED
    kube.kubectl("label", "service", "shapes-triton", "app.kubernetes.io/managed-by-", "-n", ns)
    wait_for(
        "the gateway image restored",
        lambda: (
            kube.get("deployment", "shapes-gateway", ns)["spec"]["template"]["spec"]["containers"][0]["image"]
            != "evil/image:latest"
        ),
        timeout=5,
    )
    wait_for("the gateway Service recreated", lambda: kube.get("service", "shapes", ns), timeout=5)
    wait_for("the Triton HPA recreated", lambda: kube.get("hpa", "shapes-triton", ns), timeout=5)
    wait_for("the model ConfigMap recreated", lambda: kube.get("configmap", "shapes-model-config", ns), timeout=5)
    wait_for(
        "the Triton Service's labels put back",
        lambda: (
            kube.get("service", "shapes-triton", ns)["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by")
            == "yolo-operator"
        ),
        timeout=5,
    )

    def seen() -> bool:
        window = operator.log_since(log_start)
        return all(
            f"{what} DELETED" in window
            for what in (
                "Service/shapes",
                "HorizontalPodAutoscaler/shapes-triton",
                "ConfigMap/shapes-model-config",
                "Service/shapes-triton",
            )
        )

    wait_for("the operator's log naming the child events it reacted to", seen, timeout=5)


def test_scaling_under_an_hpa_is_not_overwritten(kube: Kube, ns: str):
    ready(kube, "shapes")
    kube.kubectl("scale", "deployment/shapes-gateway", "--replicas=5", "-n", ns)
    obj = kube.get("yoloservice", "shapes", ns)
    time.sleep(10)  # three resyncs (3 s each): the replicas are still the user's/HPA's, not the operator's
    dep = json.loads(
        kube.kubectl("get", "deployment", "shapes-gateway", "-n", ns, "-o", "json", "--show-managed-fields").stdout
    )
    assert dep["spec"]["replicas"] == 5
    owners = {
        f["manager"]: f.get("fieldsV1", {}) for f in dep["metadata"]["managedFields"] if f.get("operation") == "Apply"
    }
    assert "f:replicas" not in json.dumps(owners.get("yolo-operator", {}))
    assert kube.get("yoloservice", "shapes", ns)["metadata"]["generation"] == obj["metadata"]["generation"]


def test_disabling_autoscaling_deletes_the_hpas(kube: Kube, ns: str):
    patch = {
        "spec": {
            "triton": {"autoscaling": {"enabled": False}, "replicas": 2},
            "gateway": {"autoscaling": {"enabled": False}, "replicas": 3},
        }
    }
    kube.kubectl("patch", "ys", "shapes", "-n", ns, "--type=merge", "-p", json.dumps(patch))
    wait_for("both HPAs deleted", lambda: not kube.items("hpa", ns, "app.kubernetes.io/instance=shapes"))
    wait_for(
        "replicas from the spec",
        lambda: (
            kube.get("deployment", "shapes-triton", ns)["spec"]["replicas"] == 2
            and kube.get("deployment", "shapes-gateway", ns)["spec"]["replicas"] == 3
        ),
    )
    obj = ready(kube, "shapes")
    assert condition(obj, "AutoscalingReady")["reason"] == "AutoscalingDisabled"


def test_network_policies_follow_the_spec_and_say_what_is_wrong(kube: Kube, ns: str):
    """Both policies with the service; a gatewayFrom peer that selects no pod, and a policy the API
    refuses, are NetworkPolicy conditions that say which (Ready stays True: the service serves
    either way); switched off, both are deleted; a misspelt selector key is an InvalidSpec, never a
    selector that selects every pod."""
    name, sel = "netpol", "app.kubernetes.io/instance=netpol"

    def policy_condition(reason: str) -> dict | None:
        obj = kube.get("yoloservice", name, ns)
        c = condition(obj, "NetworkPolicy")
        fresh = obj and c.get("observedGeneration") == obj["metadata"]["generation"]
        return c if fresh and c.get("reason") == reason else None

    def patch(spec: dict) -> None:
        kube.kubectl("patch", "ys", name, "-n", ns, "--type=merge", "-p", json.dumps({"spec": spec}))

    kube.apply(sample(name), "-n", ns)
    ready(kube, name, ns)
    assert wait_for("NetworkPolicy Applied", lambda: policy_condition("Applied"))["status"] == "True"
    policies = {p["metadata"]["name"]: p for p in kube.items("networkpolicy", ns, sel)}
    assert set(policies) == {"netpol-triton", "netpol-gateway"}
    grpc, metrics = policies["netpol-triton"]["spec"]["ingress"]
    assert grpc["ports"] == [{"port": 8001, "protocol": "TCP"}]
    assert grpc["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    assert metrics["ports"] == [{"port": 8002, "protocol": "TCP"}]

    patch({"networkPolicy": {"gatewayFrom": [{"podSelector": {"matchLabels": {"app": "nobody"}}}]}})
    nobody = wait_for("NetworkPolicy PeerMatchesNothing", lambda: policy_condition("PeerMatchesNothing"))
    assert "gatewayFrom[0]" in nobody["message"] and "nobody" in nobody["message"], nobody
    own = {"matchLabels": {"app.kubernetes.io/instance": name}}  # the service's own pods: they exist
    in_ns = {"matchLabels": {"kubernetes.io/metadata.name": ns}}
    patch({"networkPolicy": {"gatewayFrom": [{"namespaceSelector": in_ns, "podSelector": own}]}})
    wait_for("NetworkPolicy Applied with a peer that selects pods", lambda: policy_condition("Applied"))

    patch({"networkPolicy": {"gatewayFrom": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}})  # not a CIDR
    refused = wait_for("NetworkPolicy ApplyFailed", lambda: policy_condition("ApplyFailed"))
    assert refused["status"] == "False" and "NetworkPolicy/netpol-gateway" in refused["message"], refused
    assert "cidr" in refused["message"].lower(), refused
    assert condition(ready(kube, name, ns), "Ready")["status"] == "True"

    patch({"networkPolicy": {"gatewayFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}})
    wait_for("NetworkPolicy Applied again", lambda: policy_condition("Applied"))
    gateway = kube.get("networkpolicy", "netpol-gateway", ns)
    assert gateway["spec"]["ingress"][0]["from"][0] == {"ipBlock": {"cidr": "10.0.0.0/8"}}

    patch({"networkPolicy": {"enabled": False}})
    wait_for("both policies deleted", lambda: not kube.items("networkpolicy", ns, sel))
    assert wait_for("NetworkPolicy Disabled", lambda: policy_condition("Disabled"))["status"] == "False"
    assert condition(ready(kube, name, ns), "Ready")["status"] == "True"
    patch({"networkPolicy": {"enabled": True}})
    wait_for("both policies back", lambda: len(kube.items("networkpolicy", ns, sel)) == 2)
    wait_for("NetworkPolicy Applied once more", lambda: policy_condition("Applied"))
    kube.kubectl("delete", "ys", name, "-n", ns)

    typo = sample("netpol-typo", **{"networkPolicy.gatewayFrom": [{"podSelector": {"matchLabel": {"a": "b"}}}]})
    kube.apply(typo, "-n", ns)

    assert "matchLabel" in wait_reason(kube, "netpol-typo", ns, "Ready", "InvalidSpec")["message"]
    assert not kube.items("networkpolicy", ns, "app.kubernetes.io/instance=netpol-typo")
    kube.kubectl("delete", "ys", "netpol-typo", "-n", ns)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"triton.autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas must be <= maxReplicas"),
        (
            {"model.source": {"uri": "https://x/m.onnx", "pvc": {"claimName": "c", "path": "p"}}},
            "exactly one of model.source.uri and model.source.pvc",
        ),
        (
            {"triton.maxBatchSize": 8, "triton.dynamicBatching": {"preferredBatchSizes": [16]}},
            "preferredBatchSizes must not exceed maxBatchSize",
        ),
        ({"model.inputSize": 330}, "multiple of 32"),
        ({"model.format": "yolov99"}, "Unsupported value"),
        ({"model.source": {"uri": "ftp://x/m.onnx"}}, "should match"),
        ({"triton.autoscaling": {"minReplicas": 0, "engine": "hpa"}}, "scale to zero) needs KEDA"),
        ({"gateway.autoscaling": {"minReplicas": 0}}, "should be greater than or equal to 1"),
        ({"gateway.auth": {"enabled": True}}, "gateway.auth.enabled needs gateway.auth.secretRef"),
        (
            {"tiers": [{"name": "a", "default": True}, {"name": "b", "default": True}]},
            "at most one tier is the default",
        ),
        ({"tiers": [{"name": "a"}, {"name": "a", "maxBatchSize": 2}]}, "Duplicate value"),
        ({"tiers": [{"name": "canary"}]}, "the tier names canary and shadow are taken"),
        ({"canary": {"source": {"uri": "https://x/m.onnx"}, "percent": 150}}, "should be less than or equal to 100"),
        ({"shadow": {"percent": 5}}, "source: Required value"),
        ({"triton.engineCache": {"volume": "hostPath"}}, "volume hostPath needs hostPath"),
        (
            {"model.format": "tensorrt", "model.classNames": None},
            "set model.input, model.inputSize and model.classNames",
        ),
        ({"gateway.admission": {"inferTimeoutSeconds": 0}}, "should be greater than 0"),
    ],
)
def test_schema_and_cel_reject_invalid_specs(kube: Kube, ns: str, patch: dict, message: str):
    r = kube.apply(sample("invalid", **patch), "-n", ns, check=False)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr


def test_semantically_invalid_spec_gets_a_condition(kube: Kube, ns: str):
    kube.apply(sample("dupes", **{"model.classNames": ["cat", "dog", "cat"]}), "-n", ns)

    c = wait_reason(kube, "dupes", ns, "Ready", "InvalidSpec")
    assert c["status"] == "False" and "duplicates" in c["message"] and "cat" in c["message"]
    assert not kube.items("deployment", ns, "app.kubernetes.io/instance=dupes")
    kube.kubectl("delete", "ys", "dupes", "-n", ns)


def test_operator_restart_mid_reconcile_converges(kube: Kube, ns: str, operator: OperatorProcess):
    names = [f"multi-{i}" for i in range(3)]
    for n in names:
        kube.apply(sample(n), "-n", ns)
    operator.kill()  # in the middle of reconciling them
    operator.start()
    for n in names:
        ready(kube, n)
    for n in names:
        kids = children(kube, n)
        assert (
            len(kids["deployment"]) == 2
            and len(kids["service"]) == 2
            and len(kids["hpa"]) == 2
            and len(kids["configmap"]) == 1
        )
    owned = {
        c["metadata"]["ownerReferences"][0]["name"]
        for c in kube.items("deployment", ns, "app.kubernetes.io/managed-by=yolo-operator")
    }
    live = {y["metadata"]["name"] for y in kube.items("yoloservices", ns)}
    assert owned <= live, "no orphans"


def test_no_op_reconcile_writes_nothing(kube: Kube, ns: str, operator: OperatorProcess):
    ready(kube, "multi-0")
    sel = "app.kubernetes.io/instance=multi-0"

    def versions() -> dict[str, str]:
        out = {}
        for kind in CHILD_KINDS:
            for c in kube.items(kind, ns, sel):
                out[f"{kind}/{c['metadata']['name']}"] = c["metadata"]["resourceVersion"]
        y = kube.get("yoloservice", "multi-0", ns)
        out["ys"] = y["metadata"]["resourceVersion"]
        return out

    # First let the world settle: the HPAs' first evaluations move AutoscalingReady a few seconds
    # after Ready. An operator that wrote on every resync (3 s) would never get 6 quiet seconds.
    last = {"v": versions(), "since": time.monotonic()}

    def quiet() -> bool:
        now = versions()
        if {k: v for k, v in now.items() if not k.startswith("deployment/")} != {
            k: v for k, v in last["v"].items() if not k.startswith("deployment/")
        }:
            last.update(v=now, since=time.monotonic())
        return time.monotonic() - last["since"] >= 6

    wait_for("6 s without a change to the service or its children", quiet, timeout=60, interval=1)
    before = versions()
    ys_before = kube.get("yoloservice", "multi-0", ns)
    log_start = operator.log.stat().st_size
    time.sleep(10)  # three resync timers
    after = versions()
    window = operator.log_since(log_start)
    assert "Timer 'resync'" in window, "the resync timer ran in the window"
    applied = [line for line in window.splitlines() if line.startswith("applied [")]
    assert not applied, f"a steady-state resync sent apply requests: {applied}"
    # Deployments' status may move (kwok); spec-managed objects must not change at all
    changed = {k for k in before if before[k] != after.get(k) and not k.startswith("deployment/")}
    assert not changed, (
        f"resyncs wrote to {changed}: {json.dumps(ys_before)} -> {json.dumps(kube.get('yoloservice', 'multi-0', ns))}"
    )


def test_deleting_a_yoloservice_garbage_collects_every_child(kube: Kube, ns: str):
    kube.kubectl("delete", "ys", "multi-1", "-n", ns, "--wait=true", "--timeout=60s")

    def gone() -> bool:
        kids = children(kube, "multi-1")
        return not any(kids.values()) and not kube.items("pods", ns, "app.kubernetes.io/instance=multi-1")

    wait_for("the garbage collector to remove every child", gone, timeout=90)


def standing_by(kube: Kube, op: OperatorProcess, over: OperatorProcess, log_from: int = 0) -> bool:
    """`op` is in the chart's peering with a lower priority than the live `over`, and paused: kopf
    starts every watch-stream paused until peering says otherwise, and logs only the resumption."""
    peers = (kube.get("clusterkopfpeering", "yolo-operator") or {}).get("status") or {}
    mine, theirs = peers.get(op.identity), peers.get(over.identity)
    return bool(
        mine and theirs and mine["priority"] < theirs["priority"]
    ) and "Resuming operations" not in op.log_since(log_from)


def test_a_standby_operator_takes_over_within_15s_of_a_sigkill(
    kube: Kube, ns: str, operator: OperatorProcess, tmp_path: Path
):
    """Leader election (kopf peering, the chart's ClusterKopfPeering): a second operator waits while
    the first lives, and serves within 15 s of the leader's SIGKILL (its keep-alive's lifetime, 10 s);
    the killed one, restarted, is the standby, and a clean exit (SIGTERM) hands over at once."""
    standby = OperatorProcess(operator.kubeconfig, tmp_path / "standby.log").start()
    try:
        wait_for(
            "the younger operator to join the peering, a standby",
            lambda: standing_by(kube, standby, over=operator),
            timeout=30,
        )
        kube.apply(sample("led", **{"triton.resources": SMALL}), "-n", ns)
        ready(kube, "led")
        assert "applied [" not in standby.log_since(), "the standby wrote nothing while the leader lived"

        operator.kill()
        killed = time.monotonic()
        kube.apply(sample("failover", **{"triton.resources": SMALL}), "-n", ns)
        wait_for(
            "the standby to reconcile a new YoloService",
            lambda: kube.get("deployment", "failover-triton", ns),
            timeout=30,
            interval=0.25,
        )
        failover = time.monotonic() - killed
        print(f"\n[failover] SIGKILLed leader -> the standby applied a new service's children in {failover:.1f}s")
        assert failover <= 15, failover
        ready(kube, "failover")

        mark = operator.log.stat().st_size
        operator.start()  # the old leader comes back younger: now the standby
        wait_for(
            "the restarted operator to join as the standby",
            lambda: standing_by(kube, operator, over=standby, log_from=mark),
            timeout=30,
        )
        stopped = time.monotonic()
        standby.stop()  # SIGTERM: kopf marks itself gone on the way out
        wait_for(
            "the restarted operator to resume",
            lambda: "Resuming operations" in operator.log_since(mark),
            timeout=15,
            interval=0.25,
        )
        print(f"[failover] clean exit -> the standby resumed in {time.monotonic() - stopped:.1f}s")
        kube.kubectl(
            "patch",
            "ys",
            "failover",
            "-n",
            ns,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"triton": {"maxBatchSize": 8, "dynamicBatching": {"preferredBatchSizes": [8]}}}}),
        )
        wait_for(
            "the resumed leader to act",
            lambda: _plan(kube.get("configmap", "failover-model-config", ns))["max_batch_size"] == 8,
            timeout=20,
        )
    finally:
        standby.stop()
        if not operator.running():
            operator.start()
        for name in ("led", "failover"):
            kube.kubectl("delete", "ys", name, "-n", ns, "--wait=false", check=False)


SMALL = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"memory": "128Mi"},
}  # no GPU: the kwok CPU node holds them


def test_sigkill_every_30s_through_20_cycles_converges_without_orphans(kube: Kube, ns: str, operator: OperatorProcess):
    """Chaos: 20 create/update/delete cycles of 10 YoloServices, one every 7.5 s (or as fast as the
    API server takes them), while the operator is SIGKILLed (and restarted, as a pod would be) at
    the start of every fourth cycle: about every 30 s, and 4 times whatever the machine's speed. Afterwards every survivor matches its
    last spec (Ready at its generation, the config of the last cycle, one of each child) and nothing
    of the deleted ones remains: no YoloService, no child, no orphan."""
    names = [f"chaos-{i}" for i in range(10)]
    rng = random.Random(13)
    deleted: set[str] = set()
    t0 = time.monotonic()
    kills = 0
    for cycle in range(20):
        if cycle and cycle % 4 == 0:  # cycles 4, 8, 12 and 16: counted in cycles, not wall time
            operator.kill()
            operator.start()
            kills += 1
        spec = {
            "triton.resources": SMALL,
            "triton.maxBatchSize": 16 + cycle,
            "triton.dynamicBatching": {"preferredBatchSizes": [8], "maxQueueDelayMicroseconds": 100 + cycle},
            "gateway.autoscaling.minReplicas": 1,
        }
        kube.apply({"apiVersion": "v1", "kind": "List", "items": [sample(n, **spec) for n in names]}, "-n", ns)
        deleted = set(rng.sample(names, 3))
        kube.kubectl("delete", "ys", *sorted(deleted), "-n", ns, "--wait=false", check=False)
        while time.monotonic() < t0 + 7.5 * (cycle + 1):
            time.sleep(0.2)
    assert kills == 4, kills
    done = time.monotonic()
    survivors = [n for n in names if n not in deleted]
    last = 16 + 19

    def converged() -> bool:
        live = {
            y["metadata"]["name"]: y
            for y in kube.items("yoloservices", ns)
            if y["metadata"]["name"].startswith("chaos-")
        }
        if set(live) != set(survivors):
            return False
        for n in survivors:
            obj = live[n]
            if (
                condition(obj, "Ready").get("status") != "True"
                or obj["status"].get("observedGeneration") != obj["metadata"]["generation"]
            ):
                return False
        return True

    wait_for("the survivors Ready at their last spec and the deleted ones gone", converged, timeout=180, interval=2)
    print(f"\n[chaos] {kills} SIGKILLs in 20 cycles; converged {time.monotonic() - done:.1f}s after the last cycle")
    uids = {y["metadata"]["uid"] for y in kube.items("yoloservices", ns)}

    def clean() -> bool:  # the garbage collector removes the deleted services' children
        return all(not any(children(kube, n).values()) for n in deleted)

    wait_for("nothing left of the deleted services", clean, timeout=90, interval=2)
    for n in survivors:
        kids = children(kube, n)
        counts = {k: len(v) for k, v in kids.items()}
        assert counts == {k: 1 if k == "configmap" else 2 for k in CHILD_KINDS}, (n, counts)
        plan = _plan(kids["configmap"][0])
        assert plan["max_batch_size"] == last and plan["dynamic_batching"]["max_queue_delay_microseconds"] == 119, (
            n,
            plan,
        )

    def orphans() -> list[str]:  # children of these services whose owner is not a live YoloService
        bad = []
        for kind in CHILD_KINDS:
            for child in kube.items(kind, ns, "app.kubernetes.io/managed-by=yolo-operator"):
                refs = child["metadata"].get("ownerReferences") or []
                if child["metadata"]["name"].startswith("chaos-") and (
                    not refs or any(r["uid"] not in uids for r in refs)
                ):
                    bad.append(f"{kind}/{child['metadata']['name']}")
        return bad

    wait_for("no orphans", lambda: not orphans(), timeout=60, interval=2)
    kube.kubectl("delete", "ys", *survivors, "-n", ns, "--wait=false", check=False)


def test_helm_uninstall_is_clean(kube: Kube, ns: str, operator: OperatorProcess):
    """Last: with no YoloServices left, uninstalling leaves nothing of the release behind (CRDs stay, as Helm's policy is)."""
    for y in kube.items("yoloservices", ns):
        kube.kubectl("delete", "ys", y["metadata"]["name"], "-n", ns, "--wait=true", "--timeout=60s")
    wait_for(
        "every child collected",
        lambda: not kube.items("deployment", ns, "app.kubernetes.io/managed-by=yolo-operator"),
        timeout=90,
    )
    operator.stop()
    kube.helm("uninstall", RELEASE, "-n", RELEASE_NS, "--wait", "--timeout=60s")
    selector = f"app.kubernetes.io/instance={RELEASE}"
    for kind in ("deployment", "serviceaccount", "configmap", "role", "rolebinding"):
        assert not kube.items(kind, RELEASE_NS, selector), kind
    for kind in ("clusterrole", "clusterrolebinding", "clusterkopfpeering"):
        assert not [
            o for o in kube.items(kind) if o["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == RELEASE
        ], kind
    assert kube.get("crd", f"yoloservices.{GROUP}"), "CRDs in crds/ are kept on uninstall"
