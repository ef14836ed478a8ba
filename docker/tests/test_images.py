"""The four images `make images` builds, run for real (pods tier: they need buildah, root and the
build; no cluster). Each container runs as uid 1000 on the host network, loopback only:

- the operator image renders a YoloService's model config, init container and Triton arguments;
- the model-fetcher runs that init container against stand-ins for http, S3 and GCS on loopback,
  signed and authenticated as the real stores would ask, and refuses a wrong checksum;
- triton-cpu serves what it fetched (the onnxruntime platform through the operator's config) and
  model_repository/local (the python backend) with the operator's own arguments;
- the gateway image carries its runtime only and detects through that Triton over gRPC;
- every image has the entrypoint and user its Deployment relies on.

A failed check leaves the containers' logs in .cache/images/verify.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import image_runner as ir
import pytest

from yolo_tools.local_triton import free_port

# The first test may build the images: cold, about 6 min natively, 15-20 min under emulation.
pytestmark = pytest.mark.timeout(900 if ir.platform().native else 3600)

ONNX = ir.ROOT / "model_repository" / "local" / "yolo" / "1" / "model.onnx"
SCHEMES = ("http", "s3", "gs", "gskey")

# What the operator renders for a YoloService naming only its model source (the file says the rest).
RENDER = r"""
import json, sys
from yolo_operator import builders
from yolo_operator.spec import parse_spec
uri, name, image, secret = sys.argv[1:5]
source = {"uri": uri, **({"secretRef": {"name": secret}} if secret else {})}
spec = parse_spec({"model": {"name": name, "source": source},
                   "triton": {"image": image, "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}}})
meta = builders.Meta("smoke", "default")
init = builders.fetcher_container(spec)
print(json.dumps({"plans": builders.build_model_configmap(spec, meta)["data"], "command": init["command"],
                  "env": init["env"],
                  "triton_args": builders.build_triton_deployment(spec, meta)["spec"]["template"]["spec"]["containers"][0]["args"]}))
"""

GATEWAY_IMPORTS = r"""
import importlib.util, yolo_gateway.app, cv2, simplejpeg, orjson, tritonclient.grpc, uvicorn, PIL
for other in ("yolo_tools", "yolo_operator", "onnx", "pytriton"):
    assert importlib.util.find_spec(other) is None, f"the gateway image carries {other}"
print("gateway imports ok", cv2.__version__)
"""


@pytest.fixture(scope="module")
def refs() -> dict[str, str]:
    if os.geteuid() != 0:
        pytest.fail("the image checks run buildah as root, as make images does", pytrace=False)
    return ir.build_images()


@pytest.fixture(scope="module")
def work() -> Path:
    path = ir.ROOT / ".cache" / "images" / "verify"  # kept after a failure: the containers' logs are there
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.chmod(path, 0o777)
    return path


@pytest.fixture(scope="module")
def stand_in() -> Iterator[tuple[int, list[str]]]:
    with ir.store(ONNX.read_bytes()) as (port, hits):
        yield port, hits


@pytest.fixture(scope="module")
def rendered(refs: dict[str, str], stand_in: tuple[int, list[str]]) -> dict[str, dict[str, Any]]:
    """scheme -> what the operator image renders for a YoloService with that source."""
    port = stand_in[0]
    sources = {
        "http": (f"http://127.0.0.1:{port}/models/yolo.onnx", ""),
        "s3": ("s3://bucket/models/yolo.onnx", "s3-credentials"),
        "gs": ("gs://bucket/models/yolo.onnx", ""),
        "gskey": ("gs://bucket/models/yolo.onnx", "gcs-key"),
    }
    out = {}
    for scheme, (uri, secret) in sources.items():
        text = ir.check_in(
            refs["operator"], ["python", "-c", RENDER, uri, "yolo_" + scheme, refs["triton-cpu"], secret]
        )
        out[scheme] = json.loads(text.strip().splitlines()[-1])
    return out


def _store_env(scheme: str, port: int) -> dict[str, str]:
    """What points each client at the stand-in instead of the real store."""
    return {
        "http": {},
        "s3": {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "smoke",
            "AWS_SECRET_ACCESS_KEY": "smoke-secret",
            "AWS_REGION": "us-east-1",
        },
        "gs": {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"},
        "gskey": {"GCS_ENDPOINT_URL": f"http://127.0.0.1:{port}"},
    }[scheme]


@pytest.fixture(scope="module")
def credentials(work: Path, stand_in: tuple[int, list[str]]) -> Path:
    """A service-account key file whose token_uri is the stand-in."""
    creds = work / "credentials"
    creds.mkdir()
    pem = subprocess.run(["openssl", "genrsa", "2048"], check=True, text=True, capture_output=True).stdout
    key = {
        "type": "service_account",
        "project_id": "smoke",
        "private_key_id": "1",
        "private_key": pem,
        "client_email": "smoke@smoke.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"http://127.0.0.1:{stand_in[0]}/token",
    }
    (creds / "key.json").write_text(json.dumps(key))
    os.chmod(creds / "key.json", 0o644)
    return creds


@pytest.fixture(scope="module")
def fetched(
    refs: dict[str, str],
    rendered: dict[str, dict[str, Any]],
    work: Path,
    stand_in: tuple[int, list[str]],
    credentials: Path,
) -> Path:
    """The model repository the model-fetcher image wrote, running the operator's init container
    (its command and env) once for each store."""
    models = work / "models"
    models.mkdir()
    os.chmod(models, 0o777)
    for scheme, r in rendered.items():
        cfg = work / f"config-{scheme}"
        cfg.mkdir()
        for key, text in r["plans"].items():
            (cfg / key).write_text(text)
        env = {e["name"]: e["value"] for e in r["env"]} | _store_env(scheme, stand_in[0])
        volumes = [f"{models}:/models", f"{cfg}:/config:ro", f"{work}:/tmp", f"{credentials}:/credentials:ro"]
        ir.check_in(refs["model-fetcher"], r["command"], env=env, volumes=volumes)
    return models


def test_the_operator_image_runs_its_cli_and_renders_a_yoloservice(
    refs: dict[str, str], rendered: dict[str, dict[str, Any]]
) -> None:
    assert "usage" in ir.check_in(refs["operator"], ["python", "-m", "yolo_operator", "--help"]).lower()
    for scheme, r in rendered.items():
        assert r["plans"] and r["command"], (scheme, r)
        assert any(a.startswith("--model-repository") for a in r["triton_args"]), r["triton_args"]
    env = {e["name"]: e["value"] for e in rendered["gskey"]["env"]}
    assert env.get("GOOGLE_APPLICATION_CREDENTIALS") == "/credentials/key.json", env


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_model_fetcher_runs_the_operators_init_container(scheme: str, fetched: Path) -> None:
    got = fetched / f"yolo_{scheme}" / "1" / "model.onnx"
    assert got.exists(), f"the {scheme} init container wrote no {got}"
    # yolo-model-prepare rewrote the fetched file as a CPU service's default asks (NMS in the graph;
    # the bundled model's input is uint8 already) and wrote the config Triton reads from the result.
    # The fetch alone is byte-exact: test_fetch_model_checks_the_sha256_and_reads_s3.
    config = (got.parent.parent / "config.pbtxt").read_text()
    assert 'name: "images"' in config and 'name: "det_boxes"' in config, config
    assert got.read_bytes() != ONNX.read_bytes()


def test_the_stores_were_asked_as_the_real_ones_ask(fetched: Path, stand_in: tuple[int, list[str]]) -> None:
    hits = stand_in[1]
    assert any("auth=AWS4-HMAC-SHA256 Credential=smoke/" in h for h in hits), hits  # S3: SigV4-signed
    assert any(h == "POST /token" for h in hits), hits  # GCS key file: a token from its token_uri
    assert any("auth=Bearer " in h for h in hits), hits  # ... then sent as a bearer


def test_fetch_model_checks_the_sha256_and_reads_s3(
    refs: dict[str, str], work: Path, stand_in: tuple[int, list[str]]
) -> None:
    fetcher, blob = refs["model-fetcher"], ONNX.read_bytes()
    url = f"http://127.0.0.1:{stand_in[0]}/models/yolo.onnx"
    vol = [f"{work}:/tmp"]
    ir.check_in(
        fetcher,
        ["fetch-model", "--sha256", hashlib.sha256(blob).hexdigest(), url, "/tmp/direct/model.onnx"],
        volumes=vol,
    )
    s3 = ["fetch-model", "s3://bucket/models/yolo.onnx", "/tmp/direct-s3/model.onnx"]
    ir.check_in(fetcher, s3, env=_store_env("s3", stand_in[0]), volumes=vol)
    assert (work / "direct" / "model.onnx").read_bytes() == blob
    assert (work / "direct-s3" / "model.onnx").read_bytes() == blob
    wrong = ir.run_in(fetcher, ["fetch-model", "--sha256", "0" * 64, url, "/tmp/bad/model.onnx"], volumes=vol)
    assert wrong.returncode != 0, "fetch-model accepted a wrong sha256"
    assert "sha256" in (wrong.stdout + wrong.stderr).lower(), wrong.stderr[-2000:]
    assert not (work / "bad" / "model.onnx").exists() and not (work / "bad" / "model.onnx.part").exists()


@pytest.fixture(scope="module")
def triton(
    refs: dict[str, str], rendered: dict[str, dict[str, Any]], fetched: Path, work: Path
) -> Iterator[tuple[str, int]]:
    """triton-cpu with the operator's own arguments on the fetched repository, plus
    model_repository/local: (its HTTP base URL, its gRPC port)."""
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    ours = ("--http-port", "--grpc-port", "--metrics-port")
    args = [a for a in rendered["http"]["triton_args"] if not a.startswith(ours)]
    args += [f"--http-port={http_port}", f"--grpc-port={grpc_port}", f"--metrics-port={metrics_port}"]
    args += ["--model-repository=/srv/repo/local"]
    args += ["--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1"]
    vols = [f"{fetched}:/models:ro", f"{ir.ROOT / 'model_repository'}:/srv/repo:ro"]
    with ir.background(refs["triton-cpu"], ["tritonserver", *args], work, "triton", volumes=vols) as (proc, log):
        base = f"http://127.0.0.1:{http_port}"
        ir.wait_ready(f"{base}/v2/health/ready", proc, "tritonserver", 180, log)
        yield base, grpc_port


@pytest.mark.parametrize("model", ["yolo", "yolo_end2end", *(f"yolo_{s}" for s in SCHEMES)])
def test_triton_cpu_serves_the_fetched_and_the_local_models(model: str, triton: tuple[str, int]) -> None:
    status, body = ir.http_call(f"{triton[0]}/v2/models/{model}/ready")
    assert status == 200, f"model {model} not ready: {status} {body[:300]!r}"
    image = bytes(range(256)) * 1200
    if model == "yolo":  # the python backend, the bundled model's raw output
        shape, data = ir.infer_v2(triton[0], model, image)
        assert shape == [1, 7, 2100] and len(data) == 4 * 7 * 2100, (shape, len(data))
    if model == "yolo_http":  # the onnxruntime platform's stand-in, the graph optimized as on CPUs by default
        shape, data = ir.infer_v2(triton[0], model, image, output="det_boxes")
        assert shape == [1, 100, 4] and len(data) == 4 * 100 * 4, (shape, len(data))


def test_the_gateway_image_carries_its_runtime_only(refs: dict[str, str]) -> None:
    assert "gateway imports ok" in ir.check_in(refs["gateway"], ["python", "-c", GATEWAY_IMPORTS])


def test_the_gateway_image_detects_through_triton_cpu(
    refs: dict[str, str], triton: tuple[str, int], work: Path
) -> None:
    port = free_port()
    env = {
        "YOLO_GATEWAY_TRITON_URL": f"127.0.0.1:{triton[1]}",
        "YOLO_GATEWAY_MODEL_NAME": "yolo_http",
        "YOLO_GATEWAY_HOST": "127.0.0.1",
        "YOLO_GATEWAY_PORT": str(port),
    }
    cmd = ["python", "-m", "yolo_gateway"]
    with ir.background(refs["gateway"], cmd, work, "gateway", env=env, volumes=[f"{work}:/tmp"]) as (proc, log):
        ir.wait_ready(f"http://127.0.0.1:{port}/readyz", proc, "gateway", 90, log)
        png = ir.png(480, 360)
        status, body = ir.http_call(
            f"http://127.0.0.1:{port}/v1/detect", png, {"Content-Type": "image/png"}, 30 * ir.slowdown()
        )
    assert status == 200, f"/v1/detect: {status} {body[:300]!r}\n{ir.errors(log)}"
    assert isinstance(json.loads(body)["detections"], list)


@pytest.mark.parametrize(
    ("name", "entrypoint"),
    [
        ("gateway", ["python", "-m", "yolo_gateway"]),
        ("operator", ["python", "-m", "yolo_operator"]),
        ("triton-cpu", ["tritonserver"]),
        ("model-fetcher", ["fetch-model"]),
    ],
)
def test_each_image_has_the_entrypoint_and_user_its_deployment_expects(
    name: str, entrypoint: list[str], refs: dict[str, str]
) -> None:
    cfg = ir.image_config(refs[name])
    assert cfg.get("Entrypoint") == entrypoint, cfg
    assert cfg.get("User") == "1000:1000", cfg


@pytest.mark.parametrize("name", ["gateway", "operator", "triton-cpu", "model-fetcher"])
def test_each_image_is_built_for_the_platform_under_test(name: str, refs: dict[str, str]) -> None:
    """What a node's runtime matches against its own platform in a release's index."""
    info = ir.build_module().image_info(refs[name])
    assert info is not None
    plat = ir.platform()
    assert (info["OCIv1"]["os"], info["OCIv1"]["architecture"]) == ("linux", plat.arch), info["OCIv1"]
    assert ir.check_in(refs[name], ["uname", "-m"]).strip() == plat.machine  # what its programs see
