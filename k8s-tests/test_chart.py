"""The chart and the operator's output, checked by the real API server (server-side dry-run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from e2e_helpers import CHART, ROOT, Kube

from yolo_operator.builders import Meta
from yolo_operator.children import desired_children
from yolo_operator.spec import parse_spec

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
DRY_NS = "chart-dryrun"  # not the e2e release's namespace: helm must own what it installs there


@pytest.fixture(scope="module")
def dry_run_namespaces(kube: Kube) -> None:
    for ns in (DRY_NS, "team-a", "team-b", "dryrun"):
        kube.kubectl("create", "namespace", ns, check=False)
    # the CRDs must exist for custom objects to be dry-run
    kube.kubectl("apply", "--server-side", "-f", str(CHART / "crds"))


def test_helm_lint_strict(kube: Kube):
    for values in [None, *CI_VALUES]:
        args = ["lint", "--strict", str(CHART)] + (["-f", str(values)] if values else [])
        out = kube.helm(*args).stdout
        assert "0 chart(s) failed" in out, out


def test_values_schema_rejects_bad_values(kube: Kube):
    r = kube.helm("template", "x", str(CHART), "--set", "rbac.clusterWide=maybe", check=False)
    assert r.returncode != 0 and "clusterWide" in r.stderr
    r = kube.helm("template", "x", str(CHART), "--set", "unknownKey=1", check=False)
    assert r.returncode != 0 and "unknownKey" in r.stderr
    # two replicas without peering would both act on every YoloService
    r = kube.helm(
        "template",
        "x",
        str(CHART),
        "--set",
        "operator.replicas=2",
        "--set",
        "operator.peering.enabled=false",
        check=False,
    )
    assert r.returncode != 0 and "needs operator.peering.enabled" in r.stderr


def test_ha_values_run_standbys_with_rolling_updates(kube: Kube):
    docs = _render(kube, CHART / "ci" / "ha-values.yaml")
    dep = next(d for d in docs if d["kind"] == "Deployment")
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", (
        "a stable kopf peering identity per pod"
    )
    assert env["YOLO_OPERATOR_PEERING_LIFETIME"]["value"] == "8"
    single = next(d for d in _render(kube, CHART / "ci" / "default-values.yaml") if d["kind"] == "Deployment")
    assert single["spec"]["replicas"] == 1 and single["spec"]["strategy"]["type"] == "Recreate"


def _render(kube: Kube, values: Path) -> list[dict]:
    out = kube.helm("template", "yolo-operator", str(CHART), "-n", DRY_NS, "-f", str(values), "--include-crds").stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_every_rendered_object_passes_server_side_dry_run(kube: Kube, dry_run_namespaces: None, values: Path):
    docs = _render(kube, values)
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount"} <= kinds
    for d in docs:
        labels = d["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "yolo-operator", (d["kind"], d["metadata"]["name"])
        if d["kind"] != "CustomResourceDefinition":
            assert labels.get("app.kubernetes.io/name") and labels.get("app.kubernetes.io/instance"), d["metadata"][
                "name"
            ]
    # Pods are admitted only if their ServiceAccount exists, which a dry-run never creates: create those first.
    accounts = [d for d in docs if d["kind"] == "ServiceAccount"]
    kube.apply({"apiVersion": "v1", "kind": "List", "items": accounts}, "--server-side", "--field-manager=chart-test")
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    r = kube.kubectl(
        "apply",
        "--dry-run=server",
        "--server-side",
        "--field-manager=chart-test",
        "-f",
        "-",
        input_text=body,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("(server dry run)") == len(docs)


def test_namespaced_values_create_roles_not_cluster_roles(kube: Kube):
    docs = _render(kube, CHART / "ci" / "namespaced-values.yaml")
    roles = [(d["kind"], d["metadata"].get("namespace")) for d in docs if d["kind"] in ("Role", "ClusterRole")]
    assert ("Role", "team-a") in roles and ("Role", "team-b") in roles
    hooks = [d for d in docs if (d["metadata"].get("annotations") or {}).get("helm.sh/hook") == "pre-upgrade"]
    # The one cluster-scoped right beyond discovery: the pre-upgrade hook's, on CRDs only (CRDs are
    # cluster-scoped), for the length of an upgrade (deleted when it succeeds; crds.upgrade=false drops it).
    (hook_role,) = [d for d in hooks if d["kind"] == "ClusterRole"]
    assert {g for r in hook_role["rules"] for g in r["resources"]} == {"customresourcedefinitions"}
    assert {d["kind"] for d in hooks} == {"ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Job"}
    cluster_roles = [d for d in docs if d["kind"] == "ClusterRole" and d not in hooks]
    assert len(cluster_roles) == 1 and cluster_roles[0]["metadata"]["name"].endswith("-framework")
    for rule in cluster_roles[0]["rules"]:  # cluster-wide rights are read-only discovery
        assert set(rule["verbs"]) <= {"get", "list", "watch", "patch"}
        assert "yoloservices" not in rule["resources"]
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args and "--all-namespaces" not in args
    assert dep["spec"]["strategy"] == {"type": "Recreate"} and dep["spec"]["replicas"] == 1


@pytest.mark.parametrize("variant", ["sample", "no-autoscaling", "end2end-pvc", "tensorrt-s3"])
def test_operator_output_passes_server_side_dry_run(kube: Kube, dry_run_namespaces: None, variant: str):
    spec = yaml.safe_load((ROOT / "examples" / "yoloservice.yaml").read_text())["spec"]
    if variant == "no-autoscaling":
        spec["triton"]["autoscaling"] = {"enabled": False}
        spec["gateway"]["autoscaling"] = {"enabled": False}
    elif variant == "end2end-pvc":
        spec["model"].update(format="end2end", source={"pvc": {"claimName": "models", "path": "yolo/e2e.onnx"}})
    elif variant == "tensorrt-s3":
        spec["model"].update(format="tensorrt", source={"uri": "s3://bucket/yolo.plan", "secretRef": {"name": "aws"}})
    objs = [
        c.manifest
        for c in desired_children(parse_spec(spec), Meta("dry", "dryrun"), service_monitor_crd=False)
        if c.manifest
    ]
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})
    r = kube.kubectl(
        "apply",
        "--dry-run=server",
        "--server-side",
        "--field-manager=yolo-operator",
        "-f",
        "-",
        input_text=body,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("(server dry run)") == len(objs)
