"""End-to-end fixtures: the real control plane, the chart installed by helm, and the operator
running as a local process authenticated as the chart's own ServiceAccount."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from e2e_helpers import (
    CHART,
    GROUP,
    RELEASE,
    RELEASE_NS,
    ROOT,
    Kube,
    OperatorProcess,
    cluster,
    run,
    sa_kubeconfig,
    wait_for,
)


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    """Build (once, cached) and start the control plane; tear it down afterwards."""
    build = run("bash", str(ROOT / "k8s-tests" / "cluster" / "build.sh"), check=False)
    if build.returncode != 0:
        pytest.fail(f"cannot build the control plane (Go and the Go module proxy are needed, or set YOLO_K8S_BIN):\n{build.stderr[-4000:]}", pytrace=False)
    reuse = cluster.status(quiet=True)
    try:
        kubeconfig = cluster.up()
    except cluster.ClusterError as exc:
        pytest.fail(f"the control plane did not start: {exc}", pytrace=False)
    yield Kube(kubeconfig)
    if not reuse and not os.environ.get("YOLO_CLUSTER_KEEP"):
        cluster.down()


@pytest.fixture(scope="session")
def chart(kube: Kube) -> Iterator[str]:
    """helm install the chart (CRDs, RBAC, peering, operator Deployment)."""
    kube.helm("upgrade", "--install", RELEASE, str(CHART), "-n", RELEASE_NS, "--create-namespace", "--wait=false", "--set", "operator.resyncSeconds=3")
    wait_for(
        "the CRD to be Established",
        lambda: any(c["type"] == "Established" and c["status"] == "True" for c in (kube.get("crd", f"yoloservices.{GROUP}") or {}).get("status", {}).get("conditions", [])),
    )
    yield RELEASE


@pytest.fixture(scope="session")
def operator(kube: Kube, chart: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    tmp = tmp_path_factory.mktemp("operator")
    op = OperatorProcess(sa_kubeconfig(kube, tmp / "sa.kubeconfig"), tmp / "operator.log").start()
    yield op
    op.stop()
    assert not op.forbidden(), "the operator hit RBAC denials:\n" + "\n".join(op.forbidden()[:20])
