"""End-to-end fixtures: the real control plane, the chart installed by helm, and the operator
running as a local process authenticated as the chart's own ServiceAccount.

The pod tests (test_pods.py) use a second set, below: the project's images in the real node's
containerd, the object store, and the chart's operator running IN the cluster as a pod on the
real node. Only one operator may act on a namespace, so the two operators never overlap: the
in-cluster one watches only the pod tests' namespace (rbac.clusterWide=false), and its fixture
first stops any local operator, then installs or upgrades the same release with the local values.
That holds whichever tier runs: the pods tier alone (`make test-pods`) installs the release from
nothing, and in `make test` the root conftest.py runs the whole k8s tier before the pods tier,
whatever order the files were collected in."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from e2e_helpers import (
    RELEASE,
    ROOT,
    Kube,
    OperatorProcess,
    cluster,
    install_chart,
    run,
    sa_kubeconfig,
    wait_for,
)


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    """Build (once, cached) and start the control plane; tear it down afterwards."""
    build = run("bash", str(ROOT / "k8s-tests" / "cluster" / "build.sh"), check=False)
    if build.returncode != 0:
        pytest.fail(
            f"cannot build the control plane (Go and the Go module proxy are needed, or set YOLO_K8S_BIN):\n{build.stderr[-4000:]}",
            pytrace=False,
        )
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
    install_chart(kube, "--set", "operator.resyncSeconds=3")
    yield RELEASE


@pytest.fixture(scope="session")
def operator(kube: Kube, chart: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    tmp = tmp_path_factory.mktemp("operator")
    op = OperatorProcess(sa_kubeconfig(kube, tmp / "sa.kubeconfig"), tmp / "operator.log").start()
    yield op
    op.stop()
    assert not op.forbidden(), "the operator hit RBAC denials:\n" + "\n".join(op.forbidden()[:20])


# ----------------------------------------------------------------------------- pods on the real node

PODS_NS = "yolo-pods"


def _delete_namespace(kube: Kube, ns: str) -> None:
    if kube.get("namespace", ns):
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        wait_for(f"namespace {ns} to be gone", lambda: kube.get("namespace", ns) is None, timeout=180, interval=1)


@pytest.fixture(scope="session")
def real_node(kube: Kube) -> Kube:
    if not cluster.node_marker().exists():
        if cluster.realnode.mode() == "on":
            pytest.fail("YOLO_REAL_NODE=1 but the cluster has no real node", pytrace=False)
        pytest.skip(
            f"this cluster has no real node ({', '.join(cluster.realnode.missing(cluster.BIN)) or 'YOLO_REAL_NODE=0'})"
        )
    return kube


@pytest.fixture(scope="session")
def images(real_node: Kube) -> None:
    """The four images (docker/build-images.py: cached, seconds when nothing changed), pushed to
    the cluster's registry, and the store's, imported into the real node's containerd."""
    from pod_helpers import build_and_push_images

    build_and_push_images()


@pytest.fixture(scope="session")
def released(real_node: Kube, images: None) -> dict[str, str]:
    """`make release` to the cluster's registry (images built by the `images` fixture); the
    pushed image -> digest. The node's copies of those references are removed first, so the pods
    below can only have them by pulling."""
    from pod_helpers import ctr

    from yolo_tools import release as rel

    registry = cluster.registry
    if not cluster.registry_marker().exists():
        pytest.fail(f"the cluster has no registry ({', '.join(registry.missing(cluster.BIN))})", pytrace=False)
    version = rel.version_file()
    target = rel.Release(version, registry.REGISTRY, plain_http=True)
    for name in rel.IMAGES:
        ctr("images", "rm", target.image(name), check=False)
    user, password = registry.credentials(cluster.STATE)
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{registry.URL}/v2/_catalog", timeout=5)  # noqa: S310 - our loopback registry
    assert anonymous.value.code == 401
    # A registry that refuses the push: a clear message, exit 1, nothing published.
    before = registry.catalog((user, password))
    wrong = {"REGISTRY_USERNAME": user, "REGISTRY_PASSWORD": password + "x"}
    r = run(sys.executable, "-m", "yolo_tools.release", "--registry", registry.REGISTRY, check=False, env=wrong)
    assert r.returncode == 1 and r.stderr.startswith("release: buildah failed"), r.stderr[-2000:]
    assert "unauthorized" in r.stderr.lower() or "authentication required" in r.stderr.lower(), r.stderr[-2000:]
    assert registry.catalog((user, password)) == before
    # `make release` with its defaults: the local cluster's registry and its credentials.
    r = run(sys.executable, "-m", "yolo_tools.release", check=False)
    assert r.returncode == 0, f"make release failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    digests = {}
    for line in r.stdout.splitlines():
        if line.startswith(registry.REGISTRY + "/") and "@sha256:" in line:
            ref, digest = line.split("@", 1)
            digests[ref] = digest
    assert set(digests) == {target.image(n) for n in rel.IMAGES}, r.stdout
    assert f"helm install yolo-operator oci://{registry.REGISTRY}/charts/yolo-operator --version {version}" in r.stdout
    assert r.stdout.splitlines()[-1] == f"oci://{registry.REGISTRY}/charts/yolo-operator:{version}"
    # The registry holds what was pushed: each image and the chart, at the version.
    auth = (user, password)
    repos = registry.catalog(auth)
    for name in rel.IMAGES:
        assert version in registry.tags(f"yolo-operator/{name}", auth), repos
    assert version in registry.tags("charts/yolo-operator", auth), repos
    return digests


@pytest.fixture(scope="session")
def store(real_node: Kube, images: None) -> Iterator[object]:
    """versitygw in the namespace yolo-store, seeded with the bundled model; the same file over HTTP."""
    from pod_helpers import STORE_NS, Store

    _delete_namespace(real_node, STORE_NS)  # a run that was interrupted left it: start clean
    yield Store(real_node).deploy()
    _delete_namespace(real_node, STORE_NS)


@pytest.fixture(scope="session")
def pods_ns(real_node: Kube) -> Iterator[str]:
    """The pod tests' namespace, enforcing the restricted Pod Security Standard."""
    from pod_helpers import registry_pull_secret

    _delete_namespace(real_node, PODS_NS)
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    real_node.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PODS_NS, "labels": labels}})
    wait_for(
        "kube-root-ca.crt in the namespace", lambda: real_node.get("configmap", "kube-root-ca.crt", PODS_NS), timeout=30
    )
    registry_pull_secret(real_node, PODS_NS)  # its pods pull the project's images from the cluster's registry
    yield PODS_NS
    _delete_namespace(real_node, PODS_NS)


@pytest.fixture(scope="session")
def in_cluster_operator(real_node: Kube, images: None, pods_ns: str) -> Iterator[str]:
    """helm install the chart with ci/local-values.yaml: the operator as a pod on the real node,
    from localhost/yolo-operator/operator:dev, under the chart's RBAC, watching only pods_ns."""
    from pod_helpers import install_operator, uninstall_operator

    for op in OperatorProcess.started:
        op.stop()
    install_operator(real_node, [pods_ns])
    yield RELEASE
    for y in real_node.items("yoloservices", pods_ns):  # while the operator runs: it removes its finalizers
        real_node.kubectl(
            "delete", "ys", y["metadata"]["name"], "-n", pods_ns, "--wait=true", "--timeout=60s", check=False
        )
    uninstall_operator(real_node)
