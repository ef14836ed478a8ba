"""oci:// model sources against the cluster's registry (distribution, asking for credentials).

The bundled CPU sample model (320 px, 3 classes) is pushed as an OCI artifact with oras-py, as
`oras push REF model.onnx` would push it. Then:

  * the model-fetcher's `fetch-model` (the init container's command) pulls it by tag and by
    digest and writes the manifest digest; a missing tag, an absent digest, refused or missing
    credentials and an artifact that is not a model each fail with one line saying which;
  * a YoloService whose `model.source.uri` is that reference (with a kubernetes.io/dockerconfigjson
    Secret and plainHttp, as this registry speaks HTTP) is Ready on the real node, detects, and
    records the resolved digest in status.models; services from a missing tag and with refused
    credentials get TritonReady=False, ModelFetchFailed, quoting the fetcher.

Pods reach the registry at its read-only copy on the node IP (registry.NODE_REGISTRY)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import oras.client
import pytest
from e2e_helpers import ROOT, Kube, cluster, wait_reason
from pod_helpers import (
    cpu_sample,
    detect,
    dockerconfig_secret,
    gateway_url,
    pods,
    service_answers,
    wait_ready,
)

from yolo_tools import release as rel
from yolo_tools.synthetic import encode, make_scene

pytestmark = pytest.mark.timeout(600)

registry = cluster.registry
FETCHER = ROOT / "docker" / "model-fetcher" / "bin" / "fetch-model"
MODEL = ROOT / "model_repository" / "local" / "yolo" / "1" / "model.onnx"
NODE = registry.NODE_REGISTRY
SECRET = "oci-credentials"
CHEAP = {
    "triton.resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
    "gateway.resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
}


def _dockerconfig(user: str, password: str) -> dict[str, Any]:
    return rel.docker_config(NODE, user, password)


def _push(client: oras.client.OrasClient, ref: str, src: Path, media_type: str, tmp: Path) -> str:
    """oras push ref name:media_type, from a folder holding only that file (the layer's title is its name)."""
    folder = tmp / hashlib.sha256(ref.encode()).hexdigest()[:8]
    folder.mkdir()
    shutil.copy(src, folder / src.name)
    with contextlib.chdir(folder):
        r = client.push(target=ref, files=[f"{src.name}:{media_type}"], disable_path_validation=True)
    assert r.status_code == 201, r.text
    return str(r.headers["Docker-Content-Digest"])


@pytest.fixture(scope="module")
def pushed(real_node: Kube, images: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not cluster.registry_marker().exists():
        pytest.fail(f"the cluster has no registry ({', '.join(registry.missing(cluster.BIN))})", pytrace=False)
    user, password = registry.credentials(cluster.STATE)
    client = oras.client.OrasClient(hostname=registry.REGISTRY, insecure=True, auth_backend="basic")
    client.auth.set_basic_auth(user, password)
    tmp = tmp_path_factory.mktemp("oci")
    return {
        "model": _push(client, f"{registry.REGISTRY}/models/yolo:v1", MODEL, "application/vnd.onnx.model", tmp),
        "readme": _push(client, f"{registry.REGISTRY}/models/readme:v1", ROOT / "README.md", "text/markdown", tmp),
    }


def _fetch(ref: str, tmp: Path, config: dict[str, Any] | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp)}
    if config is not None:
        (tmp / "config.json").write_text(json.dumps(config))
        env["DOCKER_CONFIG_FILE"] = str(tmp / "config.json")
    cmd = [sys.executable, str(FETCHER), "--plain-http", "--digest-file", str(tmp / "digest"), f"oci://{ref}"]
    return subprocess.run([*cmd, str(tmp / "out" / "model.onnx")], text=True, capture_output=True, env=env, timeout=120)


def test_fetch_model_pulls_by_tag_and_digest_and_says_what_is_wrong(pushed: dict[str, str], tmp_path: Path) -> None:
    user, password = registry.credentials(cluster.STATE)
    good = _dockerconfig(user, password)
    for ref in (f"{NODE}/models/yolo:v1", f"{NODE}/models/yolo@{pushed['model']}"):
        r = _fetch(ref, tmp_path, good)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "out" / "model.onnx").read_bytes() == MODEL.read_bytes()
        assert json.loads((tmp_path / "digest").read_text()) == {"uri": f"oci://{ref}", "digest": pushed["model"]}
    absent = "sha256:" + "0" * 64
    for ref, config, says in [
        (f"{NODE}/models/yolo:v9", good, "tag 'v9' not found"),
        (f"{NODE}/models/yolo@{absent}", good, f"digest {absent} not found"),
        (f"{NODE}/models/yolo:v1", _dockerconfig(user, password + "x"), "refused the credentials"),
        (f"{NODE}/models/yolo:v1", None, "asks for credentials"),
        (f"{NODE}/models/readme:v1", good, "is not a model"),
    ]:
        r = _fetch(ref, tmp_path, config)
        assert r.returncode == 1 and says in r.stderr, (ref, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_yoloservice_serves_a_model_from_the_registry_and_records_its_digest(
    real_node: Kube, pods_ns: str, in_cluster_operator: str, pushed: dict[str, str]
) -> None:
    kube, ns = real_node, pods_ns
    user, password = registry.credentials(cluster.STATE)
    kube.apply(dockerconfig_secret(SECRET, json.dumps(_dockerconfig(user, password)).encode()), "-n", ns)
    kube.apply(dockerconfig_secret("oci-wrong", json.dumps(_dockerconfig(user, password + "x")).encode()), "-n", ns)

    def source(ref: str, secret: str = SECRET) -> dict[str, Any]:
        return {"model.source": {"uri": f"oci://{NODE}/{ref}", "secretRef": {"name": secret}, "plainHttp": True}}

    services = {
        "oci": source("models/yolo:v1"),
        "oci-missing": {**source("models/yolo:v9"), "gateway.replicas": 0},
        "oci-refused": {**source("models/yolo:v1", "oci-wrong"), "gateway.replicas": 0},
    }
    try:
        for name, patch in services.items():
            kube.apply(cpu_sample(name, **patch, **CHEAP), "-n", ns)
        obj = wait_ready(kube, "oci", ns, timeout=300)
        (model,) = obj["status"]["models"]
        if model.get("digest") != pushed["model"]:
            reports = [
                (cs.get("state") or {}).get("terminated", {}).get("message")
                for p in pods(kube, ns, "oci", "triton")
                for cs in p["status"].get("initContainerStatuses", [])
            ]
            raise AssertionError(f"status.models {model}; the init containers reported {reports}")
        assert model["source"] == f"oci://{NODE}/models/yolo:v1", model
        url = gateway_url(kube, "oci", ns)
        service_answers(url)
        scene = encode(make_scene(np.random.default_rng(5), 480, 360), ".jpg")
        status, _, body = detect(url, scene)
        assert status == 200 and "detections" in json.loads(body), body[:300]
        for name, says in (("oci-missing", "tag 'v9' not found"), ("oci-refused", "refused the credentials")):
            c = wait_reason(kube, name, ns, "TritonReady", "ModelFetchFailed")
            print(f"\n{name}: TritonReady {c['reason']}: {c['message']}")
            assert c["status"] == "False" and says in c["message"], c
    finally:
        for name in services:
            kube.kubectl("delete", "ys", name, "-n", ns, "--wait=true", "--timeout=90s", check=False)
