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

import base64
import hashlib
import json
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e_helpers import Kube, cluster, run, wait_for
from pod_helpers import (
    Store,
    condition,
    cpu_sample,
    ctr,
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


INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _registry_get(path: str, auth: tuple[str, str], accept: str = MANIFEST) -> bytes:
    req = urllib.request.Request(f"{registry.URL}/v2/{path}", headers={"Accept": accept})
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - our loopback registry
        return bytes(r.read())


def test_a_multi_platform_release_pushes_one_index_per_image_and_a_node_pulls_its_own_platform(
    real_node: Kube, images: None, tmp_path: Path
) -> None:
    """`make release` publishes PLATFORMS (linux/amd64 and linux/arm64): each image name is one OCI
    index over the platforms' builds, the host's tagged <tag> and the other <tag>-<arch> locally.
    Two one-file images, one per platform (from scratch, so built without emulation), go through the
    same push to the cluster's registry: the index names both platforms, each entry is the image of
    that platform (its config and its file say so), and the real node's containerd, pulling the
    index, fetches only its own platform's image. (The images of `make release` themselves are built
    for arm64 under qemu: docs/releasing.md has that run.)"""
    native = rel.native_platform()
    platforms = list(rel.build_images_module().PLATFORMS)
    foreign = next(p for p in platforms if p != native)
    prefix, tag, name = "localhost/yolo-operator-test", "t", "index-probe"
    policy = ["--signature-policy", str(rel.ROOT / ".cache" / "images" / "policy.json")]  # written by `make images`
    built = {}
    for platform in (native, foreign):
        ref = rel.local_ref(name, tag, platform, prefix)
        (tmp_path / "platform.txt").write_text(platform)
        c = run(*rel.buildah("from", *policy, "scratch")).stdout.strip()
        run(*rel.buildah("add", c, str(tmp_path / "platform.txt"), "/platform.txt"))
        run(*rel.buildah("config", "--os", "linux", "--arch", platform.split("/")[1], c))
        run(*rel.buildah("commit", *policy, "--rm", c, ref))
        built[platform] = ref
    auth = registry.credentials(cluster.STATE)
    authfile = rel.write_authfile(registry.REGISTRY, *auth, tmp_path / "auth.json")
    release = rel.Release("0.0.0-index-probe", registry.REGISTRY, plain_http=True, authfile=authfile)
    dest = release.image(name)
    try:
        pushed = rel.push_images(release, tag, [foreign, native], names=(name,), prefix=prefix)
        body = _registry_get(f"yolo-operator/{name}/manifests/{release.version}", auth, accept=INDEX)
        assert pushed == {dest: "sha256:" + hashlib.sha256(body).hexdigest()}  # the printed digest is the index's
        index = json.loads(body)
        assert index["mediaType"] == INDEX, index
        children = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
        assert sorted(children) == sorted(p.split("/")[1] for p in platforms)
        for arch, digest in children.items():
            manifest = json.loads(_registry_get(f"yolo-operator/{name}/manifests/{digest}", auth))
            config = json.loads(_registry_get(f"yolo-operator/{name}/blobs/{manifest['config']['digest']}", auth))
            assert (config["os"], config["architecture"]) == ("linux", arch)
            (tmp_path / "layer").write_bytes(
                _registry_get(f"yolo-operator/{name}/blobs/{manifest['layers'][0]['digest']}", auth)
            )
            with tarfile.open(tmp_path / "layer") as layer:
                member = layer.extractfile("platform.txt")
                assert member is not None and member.read().decode() == f"linux/{arch}"
        # The node resolves the index to its own platform and fetches nothing of the other.
        ctr("images", "pull", "--plain-http", "--user", f"{auth[0]}:{auth[1]}", dest)
        content = ctr("content", "ls", "-q")
        own, other = children[native.split("/")[1]], children[foreign.split("/")[1]]
        assert own in content and other not in content, content
    finally:
        ctr("images", "rm", dest, check=False)
        for ref in built.values():
            run(*rel.buildah("rmi", ref), check=False)
