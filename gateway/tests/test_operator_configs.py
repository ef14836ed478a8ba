"""The operator's generated Triton configs, loaded by a real tritonserver and served through the
gateway: every input (uint8 NHWC, fp32 NCHW) and output (raw, YOLOv5 objectness, end2end) the CR
can name, as a YoloService without a GPU gets them
(`platform: onnxruntime_onnx`, KIND_CPU, model_warmup; served here, as in the CPU Triton image,
by the python-based onnxruntime backend). Each config is written as the init container writes it:
the operator's plan, then yolo-model-prepare on the file."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest
from gw_helpers import boxes_of, gateway_app, triton_stats

from yolo_gateway.settings import Settings
from yolo_modelprep.cli import prepare as prepare_model
from yolo_operator.builders import model_plan, render_config_pbtxt
from yolo_operator.spec import parse_spec
from yolo_tools.devrepo import LOCAL_REPO, SOURCE_ONNX
from yolo_tools.local_triton import LocalTriton, TritonPorts
from yolo_tools.prepare import prepare
from yolo_tools.synthetic import CLASS_NAMES, encode, make_scene, match

# served name -> (the CR's model fields, the ONNX: a committed one, or prepare()'s options on the source export)
FORMATS: dict[str, tuple[dict, str | dict]] = {
    "yolo": ({"format": "onnx"}, "yolo"),
    "yolo_e2e": ({"format": "end2end"}, "yolo_end2end"),
    "yolo_v5": ({"format": "onnx", "output": "v5"}, {"output_format": "v5"}),
    "yolo_fp32": ({"format": "onnx", "input": "fp32-nchw"}, {"input_layout": "fp32-nchw"}),
    "yolo_fp32_e2e": (
        {"format": "onnx", "input": "fp32-nchw", "output": "end2end"},
        {"input_layout": "fp32-nchw", "end2end": True},
    ),
}
GATEWAY_FORMAT = {"raw": "raw", "v5": "v5", "end2end": "end2end"}


def _spec(name: str, model: dict):
    return parse_spec(
        {
            "model": {
                "name": name,
                "input": "uint8-nhwc",
                **model,
                "inputSize": 320,
                "classNames": list(CLASS_NAMES),
                "optimize": {"uint8Input": False, "nms": False},  # the CR alone describes the served graph
                "source": {"uri": "https://models.example/m.onnx"},
            },
            "triton": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}, "maxBatchSize": 8},
        }
    )


@pytest.fixture(scope="module")
def operator_triton(tmp_path_factory: pytest.TempPathFactory):
    repo = tmp_path_factory.mktemp("operator_repo")
    for name, (model, source) in FORMATS.items():
        (repo / name / "1").mkdir(parents=True)
        if isinstance(source, dict):
            prepare(SOURCE_ONNX, repo / name / "1" / "model.onnx", imgsz=(320, 320), **source)
        else:
            shutil.copy(LOCAL_REPO / source / "1" / "model.onnx", repo / name / "1" / "model.onnx")
        report = prepare_model(
            repo / name / "1" / "model.onnx", [(model_plan(_spec(name, model)), repo / name / "config.pbtxt")]
        )
        assert report["reason"] == "ServedAsExported", report
        # The CR writes every field here, so the file's config is the one the CR alone describes.
        assert (repo / name / "config.pbtxt").read_text() == render_config_pbtxt(_spec(name, model))
    with LocalTriton(repo, TritonPorts.free(), log_path=repo.parent / "triton.log") as server:
        yield server


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_generated_config_loads_warms_up_and_detects(operator_triton, name):
    model, _ = FORMATS[name]
    spec = _spec(name, model)
    config = render_config_pbtxt(spec)
    assert "model_warmup" in config and "KIND_CPU" in config and 'platform: "onnxruntime_onnx"' in config
    # The warm-up ran before the model reported ready: one execution before any request.
    assert triton_stats(operator_triton, name) == {"inference_count": 1, "execution_count": 1}

    async def go() -> tuple[int, int, int]:
        tp = fp = fn = 0
        rng = np.random.default_rng(20261122)  # the held-out scenes of the accuracy test
        sizes = [(640, 480), (1280, 720), (480, 640), (1024, 1024), (800, 450)]
        async with gateway_app(Settings(triton_url=operator_triton.grpc_target, model_name=name)) as c:
            sig = c.app.state.triton.signature
            assert sig.output_format == GATEWAY_FORMAT[spec.model.output_layout or "raw"]
            assert (sig.input_dtype, sig.layout) == (
                ("FP32", "NCHW") if spec.model.input == "fp32-nchw" else ("UINT8", "NHWC")
            )
            for i in range(30):
                scene = make_scene(rng, *sizes[i % len(sizes)])
                r = await c.post("/v1/detect", content=encode(scene), headers={"content-type": "image/jpeg"})
                assert r.status_code == 200, r.text
                boxes, classes, _ = boxes_of(r.json())
                a, b, m = match(boxes, classes, scene.boxes, scene.classes, 0.5)
                tp, fp, fn = tp + a, fp + b, fn + m
        return tp, fp, fn

    tp, fp, fn = asyncio.run(go())
    assert tp / max(1, tp + fp) >= 0.9 and tp / max(1, tp + fn) >= 0.9, (tp, fp, fn)
