"""An upgrade from the previous release to this one, and a rollback, under steady load (`make
upgrade-test`; also part of `make test`).

The previous release (yolo_tools.previous: the newest older `v*` tag, else a pinned commit of this
repository built by its own scripts) and this checkout's release (the session's `released`
fixture) are both in the cluster's registry. The cluster starts as the previous release left it:
its CRDs (put back in place of newer ones an earlier test installed: Helm never replaces a CRD), then `helm install` of its chart
from oci://, watching one namespace, with only placement, pull secret and scope overridden. A
YoloService with two pods per tier serves steady load through the whole test while

  0. `helm upgrade` to this release with an operator image the registry lacks fails in the CRD
     hook, before anything else changes: the previous release keeps serving, its pods untouched;
  1. `helm upgrade` installs this release: its pre-upgrade hook applies the new CRDs in place, the
     new operator takes over the existing YoloService, and only pods whose template changed are
     replaced (the test says which fields changed);
  2. the upgraded operator still acts on the old object: a spec change is reconciled;
  3. `helm rollback` goes back to the previous release; the CRDs stay at the newer version.

Nothing may fail: every request answers 200. The summary (from and to versions, requests,
failures, the pods replaced and why, the images the pods ran) is printed as one JSON line and
written to .cache/upgrade-summary.json, which `make upgrade-test` prints last."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import ROOT, Kube, cluster, wait_for
from load import Load, summary
from pod_helpers import (
    Store,
    cpu_sample,
    dockerconfig_secret,
    gateway_url,
    is_ready,
    pods,
    released_chart_overrides,
    service_answers,
)
from test_pods import load_images

from yolo_tools import previous as prev
from yolo_tools import release as rel

pytestmark = pytest.mark.timeout(1500)

registry = cluster.registry
NS = "yolo-upgrade"
RELEASE_NAME = "yolo-upgrade"
NAME = "steady"
PULL_SECRET = "registry-credentials"
CRD = "yoloservices.serving.yolo.dev"
MISSING_TAG = "0.0.0-not-in-the-registry"
SUMMARY = ROOT / ".cache" / "upgrade-summary.json"
TIERS = ("triton", "gateway")
SERVICE = {
    "triton.replicas": 2,
    "triton.autoscaling": {"enabled": False},
    "triton.resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}},
    "gateway.replicas": 2,
    "gateway.autoscaling": {"enabled": False},
    "gateway.resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
    "imagePullSecrets": [{"name": PULL_SECRET}],
}


@pytest.fixture(scope="module")
def previous(real_node: Kube, images: None, released: dict[str, str]) -> prev.Previous:
    """The previous release in the registry (built once per registry: its chart tag is the mark)."""
    p = prev.find()
    user, password = registry.credentials(cluster.STATE)
    if p.version not in registry.tags("charts/yolo-operator", (user, password)):
        try:
            prev.build(p, registry.REGISTRY, {"REGISTRY_USERNAME": user, "REGISTRY_PASSWORD": password})
        except rel.ReleaseError as exc:
            pytest.fail(f"cannot build the previous release {p.version} ({p.commit[:12]}): {exc}", pytrace=False)
    else:
        prev.export(p)  # its CRDs are read from its tree
    return p


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list) and obj and all(isinstance(x, dict) and "name" in x for x in obj):
        out = {}
        for x in obj:  # containers, env, volumes, ports: by name, not by position
            out.update(_flatten({k: v for k, v in x.items() if k != "name"}, f"{prefix}[{x['name']}]"))
        return out
    return {prefix: obj}


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The pod template's fields that differ, each as `path: old -> new` (values cut short)."""
    a, b = _flatten(before), _flatten(after)

    def short(v: Any) -> str:
        s = json.dumps(v) if v is not None else "(none)"
        return s if len(s) <= 60 else s[:57] + "..."

    return [f"{k}: {short(a.get(k))} -> {short(b.get(k))}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def snapshot(kube: Kube) -> dict[str, Any]:
    snap: dict[str, Any] = {}
    for tier in TIERS:
        dep = kube.get("deployment", f"{NAME}-{tier}", NS)
        assert dep, f"no Deployment {NAME}-{tier}"
        snap[tier] = {
            "template": dep["spec"]["template"],
            "pods": {p["metadata"]["uid"]: p["metadata"]["name"] for p in pods(kube, NS, NAME, tier)},
        }
    return snap


def settled(kube: Kube, version: str, replicas: dict[str, int], timeout: float = 420) -> None:
    """Both tiers run only `version`'s images, rolled out, every pod Ready; the YoloService Ready at
    its generation."""
    tag = f":{version}"
    seen: dict[str, Any] = {}

    def check() -> bool:
        for tier in TIERS:
            dep = kube.get("deployment", f"{NAME}-{tier}", NS) or {}
            spec = (dep.get("spec") or {}).get("template", {}).get("spec", {})
            refs = [c["image"] for c in spec.get("initContainers", []) + spec.get("containers", [])]
            st = dep.get("status") or {}
            live = pods(kube, NS, NAME, tier)
            seen[tier] = {"images": refs, "status": st, "pods": [p["metadata"]["name"] for p in live]}
            if not refs or not all(r.endswith(tag) for r in refs):
                return False
            if st.get("observedGeneration") != dep["metadata"]["generation"]:
                return False
            want = replicas[tier]
            if not (st.get("updatedReplicas") == st.get("readyReplicas") == st.get("replicas") == want):
                return False
            if len(live) != want or not all(is_ready(p) for p in live):
                return False
        obj = kube.get("yoloservice", NAME, NS) or {}
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in obj.get("status", {}).get("conditions", []))
        return ready and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]

    try:
        wait_for(f"{NAME} settled on {version}", check, timeout=timeout, interval=1)
    except AssertionError as exc:
        got = kube.kubectl("get", "pods,events", "-n", NS, "-o", "wide", check=False).stdout[-4000:]
        raise AssertionError(f"{exc}\n{json.dumps(seen, indent=1)[-3000:]}\n{got}") from None


def crd_has_network_policy(kube: Kube) -> bool:
    crd = kube.get("crd", CRD)
    if not crd:
        return False
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return "networkPolicy" in version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]


def replaced(before: dict[str, Any], after: dict[str, Any], phase: str) -> list[dict[str, Any]]:
    """The pods of `before` that are gone in `after`, each with why (its template's changes). A
    tier whose template did not change must have kept every pod."""
    out = []
    for tier in TIERS:
        why = changed_fields(before[tier]["template"], after[tier]["template"])
        gone = sorted(set(before[tier]["pods"]) - set(after[tier]["pods"]))
        if not why:
            assert not gone, f"{phase}: {tier} pods replaced though the pod template did not change: {gone}"
        else:
            assert gone, f"{phase}: the {tier} pod template changed ({why}) but no pod was replaced"
        print(f"{phase}: {tier} template changes: {why or 'none'}; replaced {len(gone)} pods")
        out += [{"phase": phase, "tier": tier, "pod": before[tier]["pods"][u], "why": why} for u in gone]
    return out


def images_ran(kube: Kube) -> list[str]:
    refs = set()
    for tier in TIERS:
        for p in pods(kube, NS, NAME, tier):
            refs |= {c["image"] for c in p["spec"].get("initContainers", []) + p["spec"]["containers"]}
    for p in kube.items("pods", NS):
        if p["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "operator":
            refs |= {c["image"] for c in p["spec"]["containers"]}
    return sorted(refs)


def test_an_upgrade_and_a_rollback_under_load_lose_nothing(
    real_node: Kube, released: dict[str, str], previous: prev.Previous, store: Store, tmp_path: Path
) -> None:
    kube = real_node
    current = rel.version_file()
    user, password = registry.credentials(cluster.STATE)
    authfile = rel.write_authfile(registry.REGISTRY, user, password, tmp_path / "auth.json")
    if kube.get("namespace", NS):
        kube.helm("uninstall", RELEASE_NAME, "-n", NS, "--wait", "--timeout=90s", check=False)
        kube.kubectl("delete", "namespace", NS, "--wait=true", "--timeout=180s", check=False)
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": labels}})
    kube.apply(dockerconfig_secret(PULL_SECRET, authfile.read_bytes(), NS))
    kube.apply(store.secret(NS))
    chart = [f"oci://{registry.REGISTRY}/charts/yolo-operator", "--plain-http", "--registry-config", str(authfile)]
    values = released_chart_overrides(PULL_SECRET)

    def helm(*args: str) -> None:
        t0 = time.monotonic()
        r = kube.helm(*args, "-n", NS, "--wait", "--timeout=300s", check=False)
        if r.returncode != 0:
            got = kube.kubectl("get", "pods,jobs,events", "-n", NS, "-o", "wide", check=False).stdout[-4000:]
            raise AssertionError(f"helm {args[0]} failed:\n{r.stderr[-3000:]}\n{got}")
        print(f"helm {args[0]}: {time.monotonic() - t0:.0f}s")

    try:
        # The cluster as the previous release left it: its CRDs (a replace: Helm never touches a
        # CRD that exists), its chart, its operator.
        if kube.get("crd", CRD):
            kube.kubectl("replace", "-f", str(previous.source / "charts" / "yolo-operator" / "crds"))
        assert not crd_has_network_policy(kube), "the previous release's CRD already has spec.networkPolicy"
        helm("install", RELEASE_NAME, *chart, "--version", previous.version, *values)
        kube.apply(cpu_sample(NAME, **SERVICE), "-n", NS)
        settled(kube, previous.version, {"triton": 2, "gateway": 2})
        url = gateway_url(kube, NAME, NS)
        service_answers(url)
        ran = {previous.version: images_ran(kube)}
        restarted: list[dict[str, Any]] = []
        with Load(url, load_images(), clients=4, rate=4) as load:
            load.wait_count(40, timeout=60)
            # 0. A failed upgrade leaves the previous release serving: this release's chart with an
            # operator image the registry does not have. The CRD hook's Job (that image) never starts,
            # so the upgrade fails there, before Helm changes anything else.
            before = snapshot(kube)
            operator_before = kube.get("deployment", f"{RELEASE_NAME}-yolo-operator", NS)
            assert operator_before, f"no operator Deployment {RELEASE_NAME}-yolo-operator"
            bad = kube.helm(
                "upgrade", RELEASE_NAME, *chart, "--version", current, *values, "--set", f"image.tag={MISSING_TAG}",
                "-n", NS, "--wait", "--timeout=40s", check=False,
            )  # fmt: skip
            assert bad.returncode != 0 and "pre-upgrade" in bad.stderr, bad.stderr[-2000:]
            history = json.loads(kube.helm("history", RELEASE_NAME, "-n", NS, "-o", "json").stdout)
            assert [(h["revision"], h["status"]) for h in history] == [(1, "deployed"), (2, "failed")], history
            assert not crd_has_network_policy(kube), "the failed upgrade changed the CRD"
            operator_after = kube.get("deployment", f"{RELEASE_NAME}-yolo-operator", NS) or {}
            assert operator_after.get("spec") == operator_before.get("spec"), "the failed upgrade changed the operator"
            load.wait_count(load.count() + 20, timeout=60)
            assert not replaced(before, snapshot(kube), "failed upgrade")
            # 1. Upgrade: the hook applies the new CRDs in place; the new operator rolls only what changed.
            before = snapshot(kube)
            helm("upgrade", RELEASE_NAME, *chart, "--version", current, *values)
            assert crd_has_network_policy(kube), "helm upgrade left the previous CRD in place"
            crd = kube.get("crd", CRD) or {}
            assert crd["metadata"]["annotations"].get("serving.yolo.dev/chart-version") == current
            wait_for("the CRD hook's Job deleted after it succeeded", lambda: not kube.items("jobs", NS), timeout=60)
            settled(kube, current, {"triton": 2, "gateway": 2})
            load.wait_count(load.count() + 40, timeout=60)
            after = snapshot(kube)
            restarted += replaced(before, after, "upgrade")
            ran[current] = images_ran(kube)
            # 2. The upgraded operator reconciles the object the previous one created.
            kube.kubectl("patch", "ys", NAME, "-n", NS, "--type=merge", "-p", '{"spec":{"gateway":{"replicas":3}}}')
            settled(kube, current, {"triton": 2, "gateway": 3})
            load.wait_count(load.count() + 20, timeout=60)
            # 3. Rollback to the previous release (revision 1; 2 is the failed upgrade), still under
            # load; the CRDs stay at the newer version.
            before = snapshot(kube)
            helm("rollback", RELEASE_NAME, "1")
            settled(kube, previous.version, {"triton": 2, "gateway": 3})
            load.wait_count(load.count() + 40, timeout=60)
            restarted += replaced(before, snapshot(kube), "rollback")
            assert crd_has_network_policy(kube), "the rollback took the newer CRD's fields away"
        outcomes = load.requests
        failed = [o for o in outcomes if o.status != 200]
        result = {
            "from_version": previous.version,
            "from_commit": previous.commit,
            "to_version": current,
            "requests": len(outcomes),
            "failed_requests": len(failed),
            "restarted_pods": restarted,
            "images": ran,
        }
        SUMMARY.parent.mkdir(parents=True, exist_ok=True)
        SUMMARY.write_text(json.dumps(result) + "\n")
        print(json.dumps(result))
        assert len(outcomes) >= 150, summary(outcomes)
        assert not failed, summary(outcomes)
    finally:
        for y in kube.items("yoloservices", NS):
            kube.kubectl("delete", "ys", y["metadata"]["name"], "-n", NS, "--wait=true", "--timeout=90s", check=False)
        kube.helm("uninstall", RELEASE_NAME, "-n", NS, "--wait", "--timeout=90s", check=False)
        kube.kubectl("delete", "namespace", NS, "--wait=false", check=False)
        if not crd_has_network_policy(kube):  # stopped before the upgrade: the session's CRDs back
            crds = ROOT / "charts" / "yolo-operator" / "crds"
            kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
