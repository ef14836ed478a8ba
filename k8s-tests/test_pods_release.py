"""A release as a user meets it: `make release` pushes the four images and the chart of VERSION to
the cluster's OCI registry (distribution, localhost:15000, started by cluster-up), then
`helm install oci://.../charts/yolo-operator --version VERSION` installs the operator with the
chart's own defaults, and a YoloService serves detections from the released images: the real
node's containerd pulled every one of them from the registry (the image IDs are the digests the
release pushed), under the chart's default pull policy. The registry asks for credentials, as a
private one does: the release pushes with them, helm pulls the chart with them, and the pods pull
with an imagePullSecret (the chart's `imagePullSecrets` for the operator, the YoloService's
`imagePullSecrets` for Triton, the fetcher and the gateway); anonymous requests get 401.

The released operator runs in its own namespace and watches only it (rbac.clusterWide=false), so
it never meets the pod tests' operator, which watches only theirs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from e2e_helpers import Kube, cluster, wait_for
from pod_helpers import (
    Store,
    condition,
    cpu_sample,
    detect,
    dockerconfig_secret,
    gateway_url,
    pods,
    released_chart_overrides,
    wait_ready,
)

from yolo_tools import release as rel
from yolo_tools.synthetic import encode, make_scene

pytestmark = pytest.mark.timeout(900)

registry = cluster.registry
NS = "yolo-release"
RELEASE_NAME = "yolo-release"
PULL_SECRET = "registry-credentials"
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
def installed(
    real_node: Kube, released: dict[str, str], store: Store, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """helm install from oci:// with the chart's defaults, placed on the real node, watching NS,
    pulling with the registry's credentials."""
    kube = real_node
    user, password = registry.credentials(cluster.STATE)
    authfile = rel.write_authfile(registry.REGISTRY, user, password, tmp_path_factory.mktemp("auth") / "auth.json")
    if kube.get("namespace", NS):
        kube.helm("uninstall", RELEASE_NAME, "-n", NS, "--wait", "--timeout=60s", check=False)
        kube.kubectl("delete", "namespace", NS, "--wait=true", "--timeout=180s", check=False)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    kube.apply(dockerconfig_secret(PULL_SECRET, authfile.read_bytes(), NS))
    chart = [f"oci://{registry.REGISTRY}/charts/yolo-operator", "--plain-http", "--registry-config", str(authfile)]
    # A chart version that does not exist: helm says so and installs nothing.
    missing = kube.helm("install", RELEASE_NAME, *chart, "--version", "99.0.0", "-n", NS, check=False)
    assert missing.returncode != 0 and "99.0.0" in missing.stderr and "not found" in missing.stderr, missing.stderr
    assert kube.helm("status", RELEASE_NAME, "-n", NS, check=False).returncode != 0
    # Overridden: placement on the real node, the pull secret, and the scope (this namespace only,
    # so that it never meets the pod tests' operator). Everything else is the chart's default.
    r = kube.helm(
        "install",
        RELEASE_NAME,
        *chart,
        "--version",
        rel.version_file(),
        "-n",
        NS,
        *released_chart_overrides(PULL_SECRET),
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
    `image` may name another tag of the same image (the node also holds the dev tag of the same image),
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

    # Without the pull secret the node cannot pull the service's images (none is on the node yet,
    # and the registry refuses anonymous pulls): TritonReady says so, naming the image, and so does
    # Ready, which is False.
    kube.apply(cpu_sample("no-secret", **SMALL), "-n", ns)
    seen: dict[str, Any] = {}

    def refused() -> dict[str, Any] | None:
        obj = kube.get("yoloservice", "no-secret", ns) or {}
        seen.update(status=obj.get("status"))
        triton = condition(obj, "TritonReady")
        return triton if triton.get("reason") == "ImagePullFailed" else None

    try:
        triton = wait_for("TritonReady ImagePullFailed without the pull secret", refused, timeout=180, interval=2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nstatus: {json.dumps(seen.get('status'), indent=1)}") from None
    assert triton["status"] == "False" and registry.REGISTRY in triton["message"], triton
    ready = condition(kube.get("yoloservice", "no-secret", ns) or {}, "Ready")
    assert ready["status"] == "False" and "ImagePull" in ready["message"], ready
    kube.kubectl("delete", "ys", "no-secret", "-n", ns, "--wait=true", "--timeout=60s")

    kube.apply(cpu_sample(name, imagePullSecrets=[{"name": PULL_SECRET}], **SMALL), "-n", ns)
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
