"""A release as a user meets it: `make release` pushes the four images and the chart of VERSION to
the cluster's OCI registry (distribution, localhost:15000, started by cluster-up), then
`helm install oci://.../charts/yolo-operator --version VERSION` installs the operator with the
chart's own defaults, and a YoloService serves detections from the released images: the real
node's containerd pulled every one of them from the registry (the image IDs are the digests the
release pushed), under the chart's default pull policy.

The released operator runs in its own namespace and watches only it (rbac.clusterWide=false), so
it never meets the pod tests' operator, which watches only theirs."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from e2e_helpers import Kube, cluster, run, wait_for
from pod_helpers import PLACEMENT, Store, cpu_sample, ctr, detect, gateway_url, pods, wait_ready

from yolo_tools import release as rel
from yolo_tools.synthetic import encode, make_scene

pytestmark = pytest.mark.timeout(900)

registry = cluster.registry
NS = "yolo-release"
RELEASE_NAME = "yolo-release"
SMALL = {
    "triton.replicas": 1,
    "triton.autoscaling": {"enabled": False},
    "triton.resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}},
    "gateway.replicas": 1,
    "gateway.autoscaling": {"enabled": False},
    "gateway.resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
    "podDisruptionBudget": {"enabled": False},
}


@pytest.fixture(scope="module")
def released(real_node: Kube, images: None) -> dict[str, str]:
    """`make release` to the cluster's registry (images built by the `images` fixture); the
    pushed image -> digest. The node's copies of those references are removed first, so the pods
    below can only have them by pulling."""
    if not cluster._registry_marker().exists():
        pytest.fail(f"the cluster has no registry ({', '.join(registry.missing(cluster.BIN))})", pytrace=False)
    version = rel.version_file()
    target = rel.Release(version, registry.REGISTRY, plain_http=True)
    for name in rel.IMAGES:
        ctr("images", "rm", target.image(name), check=False)
    r = run(
        sys.executable,
        "-m",
        "yolo_tools.release",
        "--registry",
        registry.REGISTRY,
        "--plain-http",
        check=False,
    )
    assert r.returncode == 0, f"make release failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    digests = {}
    for line in r.stdout.splitlines():
        if line.startswith(registry.REGISTRY + "/") and "@sha256:" in line:
            ref, digest = line.split("@", 1)
            digests[ref] = digest
    assert set(digests) == {target.image(n) for n in rel.IMAGES}, r.stdout
    assert f"helm install yolo-operator oci://{registry.REGISTRY}/charts/yolo-operator --version {version}" in r.stdout
    # The registry holds what was pushed: each image and the chart, at the version.
    repos = registry.catalog()
    for name in rel.IMAGES:
        assert version in registry.tags(f"yolo-operator/{name}"), repos
    assert version in registry.tags("charts/yolo-operator"), repos
    return digests


@pytest.fixture(scope="module")
def installed(real_node: Kube, released: dict[str, str], store: Store) -> Iterator[str]:
    """helm install from oci:// with the chart's defaults, placed on the real node, watching NS."""
    kube = real_node
    if kube.get("namespace", NS):
        kube.helm("uninstall", RELEASE_NAME, "-n", NS, "--wait", "--timeout=60s", check=False)
        kube.kubectl("delete", "namespace", NS, "--wait=true", "--timeout=180s", check=False)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    r = kube.helm(
        "install",
        RELEASE_NAME,
        f"oci://{registry.REGISTRY}/charts/yolo-operator",
        "--version",
        rel.version_file(),
        "--plain-http",
        "-n",
        NS,
        "--set",
        "rbac.clusterWide=false",
        "--set",
        "operator.resyncSeconds=10",
        "--set-json",
        f"nodeSelector={json.dumps(PLACEMENT['nodeSelector'])}",
        "--set-json",
        f"tolerations={json.dumps(PLACEMENT['tolerations'])}",
        "--wait",
        "--timeout=300s",
        check=False,
    )
    if r.returncode != 0:
        got = kube.kubectl("get", "pods,events", "-n", NS, "-o", "wide", check=False).stdout
        raise AssertionError(f"helm install from the registry failed:\n{r.stderr[-3000:]}\n{got}")
    kube.apply(store.secret(NS))
    yield NS
    for y in kube.items("yoloservices", NS):  # while the operator runs: it removes its finalizers
        kube.kubectl("delete", "ys", y["metadata"]["name"], "-n", NS, "--wait=true", "--timeout=60s", check=False)
    kube.helm("uninstall", RELEASE_NAME, "-n", NS, "--wait", "--timeout=90s", check=False)
    kube.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def _images(pod: dict[str, Any]) -> list[tuple[str, str]]:
    """(the image the pod asks for, the image ID the node ran) per container. The status's own
    `image` may name another tag of the same image (the node also holds the :dev import of it),
    so the reference comes from the spec and the registry digest from the status."""
    spec, st = pod["spec"], pod.get("status") or {}
    wanted = {c["name"]: c["image"] for c in spec.get("initContainers", []) + spec["containers"]}
    ran = st.get("initContainerStatuses", []) + st.get("containerStatuses", [])
    return [(wanted[c["name"]], c["imageID"]) for c in ran]


def test_a_released_chart_installs_from_the_registry_and_serves_from_the_released_images(
    real_node: Kube, released: dict[str, str], installed: str
) -> None:
    kube, ns, name = real_node, installed, "released"
    version = rel.version_file()
    # The operator itself: the released image, pulled from the registry at the pushed digest.
    (op,) = [p for p in kube.items("pods", ns) if "operator" in p["spec"]["containers"][0]["image"]]
    want = rel.Release(version, registry.REGISTRY).image("operator")
    assert _images(op) == [(want, f"{want.rsplit(':', 1)[0]}@{released[want]}")], _images(op)
    assert op["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"

    kube.apply(cpu_sample(name, **SMALL), "-n", ns)
    wait_ready(kube, name, ns, timeout=420)
    url = gateway_url(kube, name, ns)
    scene = encode(make_scene(np.random.default_rng(22), 480, 360), ".jpg")
    status, _, body = wait_for(
        "a detection from the released gateway", lambda: (r := detect(url, scene))[0] == 200 and r, timeout=60
    )
    assert "detections" in json.loads(body)
    # Every container of the service runs a released image that the node pulled from the registry.
    seen = {}
    for component in ("triton", "gateway"):
        for p in pods(kube, ns, name, component):
            for image, image_id in _images(p):
                seen[image] = image_id
    expected = {rel.Release(version, registry.REGISTRY).image(n) for n in ("gateway", "triton-cpu", "model-fetcher")}
    assert set(seen) == expected, seen
    for image, image_id in seen.items():
        assert image_id == f"{image.rsplit(':', 1)[0]}@{released[image]}", (image, image_id)
