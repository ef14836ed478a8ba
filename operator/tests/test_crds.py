"""The CRD upgrade the chart's pre-upgrade hook runs (yolo_operator.crds): which CRDs it applies,
what it writes, and that the hook's RBAC names exactly the chart's CRDs. The apply itself runs
against a real API server in k8s-tests/test_pods_release.py's upgrade test."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from yolo_operator import crds

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "yolo-operator"


def test_semver_precedence() -> None:
    order = ["0.1.0-pre.1", "0.1.0-pre.2", "0.1.0-pre.10", "0.1.0-rc.1", "0.1.0", "0.1.1", "0.2.0", "1.0.0"]
    assert sorted(order, key=crds.semver_key) == order
    assert crds.newer("0.2.0", "0.1.0") and not crds.newer("0.1.0", "0.1.0")
    assert not crds.newer("garbage", "0.1.0")  # an annotation that is not a version never blocks an apply
    with pytest.raises(ValueError):
        crds.semver_key("1.2")


def test_the_chart_crds_load_and_each_is_applied_with_its_chart_version() -> None:
    loaded = crds.load(CHART / "crds")
    names = {c["metadata"]["name"] for c in loaded}
    assert "yoloservices.serving.yolo.dev" in names
    m = crds.manifest(loaded[0], "0.2.0")
    assert m["metadata"]["annotations"][crds.VERSION_ANNOTATION] == "0.2.0"
    assert m["metadata"]["labels"] == loaded[0]["metadata"]["labels"]
    assert loaded[0]["metadata"].get("annotations", {}).get(crds.VERSION_ANNOTATION) is None  # not mutated


def test_a_crd_is_applied_unless_a_newer_chart_wrote_it() -> None:
    crd = {"metadata": {"name": "yoloservices.serving.yolo.dev"}}

    def existing(version: str | None) -> dict:
        return {"metadata": {"annotations": {crds.VERSION_ANNOTATION: version} if version else {}}}

    assert crds.plan(crd, None, "0.2.0")[0]  # missing: created
    assert crds.plan(crd, existing(None), "0.2.0")[0]  # as Helm first installed it
    assert crds.plan(crd, existing("0.1.0"), "0.2.0")[0]
    assert crds.plan(crd, existing("0.2.0"), "0.2.0")[0]  # same version: idempotent
    go, why = crds.plan(crd, existing("0.3.0"), "0.2.0")
    assert not go and "0.3.0" in why and "newer" in why


def test_an_empty_folder_is_refused_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("kind: ConfigMap\n")
    assert crds.main(["--version", "0.2.0", str(tmp_path)]) == 1
    assert crds.main(["--version", "not-a-version", str(CHART / "crds")]) == 1


def test_the_hook_mounts_every_chart_crd_and_may_patch_only_those() -> None:
    helm = ROOT / ".bin" / "helm"
    if not helm.exists():
        pytest.fail("no .bin/helm: run `make cluster-build`", pytrace=False)

    def render(*args: str) -> str:
        return subprocess.run(
            [str(helm), "template", "x", str(CHART), *args], text=True, capture_output=True, check=True
        ).stdout

    out = render("-s", "templates/crd-upgrade.yaml")
    docs = {d["kind"]: d for d in yaml.safe_load_all(out) if d}
    assert set(docs) == {"ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Job"}
    for d in docs.values():
        assert d["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"
    names = {c["metadata"]["name"] for c in crds.load(CHART / "crds")}
    files = {p.name for p in (CHART / "crds").glob("*.yaml")}
    assert set(docs["ConfigMap"]["data"]) == files
    patch_rule = next(r for r in docs["ClusterRole"]["rules"] if "patch" in r["verbs"])
    assert set(patch_rule["resourceNames"]) == names
    job = docs["Job"]["spec"]["template"]["spec"]
    (container,) = job["containers"]
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    assert container["command"] == ["python", "-m", "yolo_operator.crds", "--version", str(version), "/crds"]
    assert job["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert "crd-upgrade" not in render("--set", "crds.upgrade=false")
