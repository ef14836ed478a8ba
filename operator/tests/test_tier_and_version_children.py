"""Latency tiers, canary and shadow in the operator: the spec, the generated Triton configs, the
fetcher's layout of the model repository (run for real against a loopback HTTP server), the
gateway's environment (validated by the gateway's own Settings) and status.models."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from google.protobuf import text_format
from op_helpers import META, ROOT, sample_spec
from tritonclient.grpc import model_config_pb2

from yolo_operator import builders as b
from yolo_operator.children import desired_children
from yolo_operator.spec import InvalidSpec, parse_spec
from yolo_operator.status import served_models

# The design's three tiers for one model.
TIERS = [
    {
        "name": "streaming",
        "maxBatchSize": 8,
        "maxQueueDelayMicroseconds": 100,
        "instances": 3,
        "preserveOrdering": True,
    },
    {"name": "balanced", "maxBatchSize": 64, "maxQueueDelayMicroseconds": 500, "instances": 2, "default": True},
    {"name": "batch", "maxBatchSize": 128, "maxQueueDelayMicroseconds": 5000, "instances": 1},
]
CANARY = {"source": {"uri": "https://models.example/yolo-v2.onnx"}, "percent": 10}
SHADOW = {"source": {"uri": "https://models.example/yolo-v3.onnx"}, "percent": 5}


def _children(spec: dict) -> dict[tuple[str, str], dict]:
    return {
        (c.kind, c.name): c.manifest
        for c in desired_children(parse_spec(spec), META, service_monitor_crd=True)
        if c.manifest
    }


def _parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _gateway_env(children: dict) -> dict[str, str]:
    (container,) = children[("Deployment", "shapes-gateway")]["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


def test_each_tier_is_a_model_config_with_its_own_batching():
    spec = parse_spec(sample_spec(tiers=TIERS))
    assert spec.model_names() == {
        "tier:streaming": "yolo-streaming",
        "tier:balanced": "yolo",
        "tier:batch": "yolo-batch",
    }
    configs = {name: _parse(text) for name, text in b.model_configs(spec).items()}
    want = {"yolo-streaming": (8, 100, 3, True), "yolo": (64, 500, 2, False), "yolo-batch": (128, 5000, 1, False)}
    for name, (batch, delay, count, ordered) in want.items():
        cfg = configs[name]
        assert cfg.name == name and cfg.max_batch_size == batch
        assert cfg.dynamic_batching.max_queue_delay_microseconds == delay
        assert cfg.dynamic_batching.preserve_ordering is ordered
        assert cfg.instance_group[0].count == count
        assert cfg.input[0].name == "images" and list(cfg.model_warmup[0].inputs["images"].dims) == [320, 320, 3]
    cm = _children(sample_spec(tiers=TIERS))[("ConfigMap", "shapes-model-config")]
    assert sorted(cm["data"]) == [
        "yolo-batch.json",
        "yolo-streaming.json",
        "yolo.json",
    ]  # the plans the init container renders
    assert json.loads(cm["data"]["yolo.json"])["max_batch_size"] == 64  # the default tier keeps model.name


def test_without_a_default_the_first_tier_is_it():
    spec = parse_spec(sample_spec(tiers=[{k: v for k, v in t.items() if k != "default"} for t in TIERS]))
    assert spec.default_tier.name == "streaming" and spec.model_names()["tier:streaming"] == "yolo"


def test_gateway_environment_routes_tiers_canary_and_shadow():
    from yolo_gateway.settings import Settings  # noqa: PLC0415 - the gateway package, in the same dev environment

    env = _gateway_env(_children(sample_spec(tiers=TIERS, canary=CANARY, shadow=SHADOW)))
    assert json.loads(env["YOLO_GATEWAY_TIERS"]) == {
        "streaming": "yolo-streaming",
        "balanced": "yolo",
        "batch": "yolo-batch",
    }
    prefix = Settings.model_config["env_prefix"]
    settings = Settings(
        **{k[len(prefix) :].lower(): (json.loads(v) if k.endswith("_TIERS") else v) for k, v in env.items()}
    )
    assert settings.default_tier == "balanced" and settings.model_name == "yolo"
    assert (settings.canary_model, settings.canary_percent) == ("yolo-canary", 10)
    assert (settings.shadow_model, settings.shadow_percent) == ("yolo-shadow", 5)
    # Without tiers or versions the gateway's environment names none of them.
    assert not {k for k in _gateway_env(_children(sample_spec())) if "TIER" in k or "CANARY" in k or "SHADOW" in k}


def test_canary_and_shadow_are_models_on_the_same_triton_pods():
    children = _children(sample_spec(canary=CANARY, shadow=SHADOW))
    cm = children[("ConfigMap", "shapes-model-config")]
    assert sorted(cm["data"]) == ["yolo-canary.json", "yolo-shadow.json", "yolo.json"]
    assert (
        json.loads(cm["data"]["yolo-canary.json"])["max_batch_size"]
        == json.loads(cm["data"]["yolo.json"])["max_batch_size"]
    )
    pod = children[("Deployment", "shapes-triton")]["spec"]["template"]["spec"]
    (triton,) = pod["containers"]
    assert "--exit-on-error=false" in triton["args"]  # a broken canary does not stop Triton
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/models/yolo/ready"
    assert triton["startupProbe"]["httpGet"]["path"] == "/v2/models/yolo/ready"
    plain = _children(sample_spec())[("Deployment", "shapes-triton")]["spec"]["template"]["spec"]["containers"][0]
    assert (
        "--exit-on-error=false" not in plain["args"]
        and plain["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    )


def test_a_new_canary_rolls_the_triton_pods():
    key = "serving.yolo.dev/config-hash"

    def pod_template(spec: dict) -> dict:
        return _children(spec)[("Deployment", "shapes-triton")]["spec"]["template"]

    a, c = pod_template(sample_spec()), pod_template(sample_spec(canary=CANARY))
    assert a["metadata"]["annotations"][key] != c["metadata"]["annotations"][key]
    moved = pod_template(sample_spec(canary={**CANARY, "source": {"uri": "https://models.example/yolo-v4.onnx"}}))
    assert moved["spec"]["initContainers"] != c["spec"]["initContainers"]


def test_status_reports_every_version():
    spec = parse_spec(sample_spec(tiers=TIERS[:2], canary=CANARY, shadow=SHADOW))
    assert served_models(spec) == [
        {
            "name": "yolo-streaming",
            "role": "current",
            "tier": "streaming",
            "default": False,
            "source": "https://models.example.com/yolov8t-shapes/model.onnx",
        },
        {
            "name": "yolo",
            "role": "current",
            "tier": "balanced",
            "default": True,
            "source": "https://models.example.com/yolov8t-shapes/model.onnx",
        },
        {"name": "yolo-canary", "role": "canary", "source": "https://models.example/yolo-v2.onnx", "percent": 10},
        {"name": "yolo-shadow", "role": "shadow", "source": "https://models.example/yolo-v3.onnx", "percent": 5},
    ]


@pytest.mark.parametrize(
    "patch,message",
    [
        ({"tiers": [TIERS[0], TIERS[0]]}, "unique"),
        ({"tiers": [{**TIERS[0], "default": True}, TIERS[1]]}, "at most one tier"),
        ({"tiers": [{"name": "canary"}]}, "canary"),
        ({"tiers": [{"name": "Fast_Lane"}]}, "tiers.name"),
        ({"canary": {**CANARY, "percent": 120}}, "canary.percent"),
        ({"shadow": {"source": {"pvc": {"claimName": "other", "path": "m.onnx"}}, "percent": 5}}, "model's own claim"),
        ({"canary": {"source": {"uri": "s3://b/m.onnx", "secretRef": {"name": "other"}}, "percent": 5}}, "credentials"),
    ],
)
def test_invalid_tiers_and_versions_are_explained(patch, message):
    with pytest.raises(InvalidSpec, match=message):
        parse_spec(sample_spec(**patch))


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def file_server(tmp_path: Path):
    served = tmp_path / "served"
    served.mkdir()
    handler = lambda *a, **kw: _Files(*a, directory=str(served), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_fetcher_lays_out_every_model_and_leaves_a_broken_canary_out(tmp_path, file_server):
    """The init container's script, run by sh against a loopback server: the tiers share the
    model's file, the shadow gets its own, and the canary (a 404) is left out with a message,
    while the pod's start goes on."""
    served, url = file_server
    bundled = (
        ROOT / "model_repository" / "local" / "yolo" / "1" / "model.onnx"
    ).read_bytes()  # what the sample's fields say
    (served / "yolo.onnx").write_bytes(bundled)
    (served / "yolo-v3.onnx").write_bytes(bundled)
    spec = sample_spec(
        tiers=TIERS,
        canary={"source": {"uri": f"{url}/missing.onnx"}, "percent": 10},
        shadow={"source": {"uri": f"{url}/yolo-v3.onnx"}, "percent": 5},
    )
    spec["model"]["source"] = {"uri": f"{url}/yolo.onnx"}
    children = _children(spec)
    config = tmp_path / "config"
    config.mkdir()
    for key, text in children[("ConfigMap", "shapes-model-config")]["data"].items():
        (config / key).write_text(text)
    models = tmp_path / "models"
    init = children[("Deployment", "shapes-triton")]["spec"]["template"]["spec"]["initContainers"][0]
    script = init["command"][-1].replace(b.MODELS_DIR + "/", f"{models}/").replace("/config/", f"{config}/")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # yolo-model-prepare
    script = script.replace("--report /dev/termination-log", f"--report {tmp_path / 'report'}")
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "canary: fetching or preparing its model failed; yolo-canary is left out" in done.stderr
    assert json.loads((tmp_path / "report").read_text())["reason"] == "ServedAsExported"
    assert sorted(p.name for p in models.iterdir()) == ["yolo", "yolo-batch", "yolo-shadow", "yolo-streaming"]
    for name in ("yolo", "yolo-batch", "yolo-streaming"):
        assert (models / name / "1" / "model.onnx").read_bytes() == bundled  # a dynamic-batch export is served as it is
        assert _parse((models / name / "config.pbtxt").read_text()).name == name
    assert (models / "yolo-streaming" / "1" / "model.onnx").stat().st_ino == (
        models / "yolo" / "1" / "model.onnx"
    ).stat().st_ino
    assert _parse((models / "yolo-shadow" / "config.pbtxt").read_text()).name == "yolo-shadow"
    # A shadow that is no model is left out too; the current version's file that is no model stops the pod, saying why.
    (served / "yolo-v3.onnx").write_bytes(b"not a model")
    shutil.rmtree(models)
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and "shadow: fetching or preparing its model failed" in done.stderr, done.stderr
    assert not (models / "yolo-shadow").exists()
    (served / "yolo.onnx").write_bytes(bundled[: len(bundled) // 2])  # a truncated download
    shutil.rmtree(models)
    failed = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert failed.returncode != 0 and failed.stderr.strip().splitlines()[-1].startswith("ModelIncompatible: "), (
        failed.stderr
    )
    # The current version's own file is not optional: without it the pod does not start.
    (served / "yolo.onnx").unlink()
    shutil.rmtree(models)
    failed = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert failed.returncode != 0
