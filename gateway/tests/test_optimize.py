"""model.optimize: the init container's graph rewrites on a plain export (uint8 NHWC input, NMS in
the graph), served by a real tritonserver through the gateway next to the plain file.

- On the bundled trained detector (320 px, 3 classes, dynamic export) the optimized and the plain
  variant of one file give the same detections: same classes, boxes within 1 px.
- On the production-size default export (YOLOv8n, 640 px, 80 classes, random weights, from
  `make prod-models`) the optimized variant serves, and the bytes one image puts on the wire to
  and from Triton shrink to under a fifth (the tensors' sizes, from the loaded configs).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from gw_helpers import boxes_of, gateway_app

from yolo_gateway.settings import Settings
from yolo_modelprep.cli import prepare
from yolo_operator.builders import model_plan
from yolo_operator.spec import parse_spec
from yolo_tools.devrepo import SOURCE_ONNX
from yolo_tools.local_triton import LocalTriton, TritonPorts
from yolo_tools.synthetic import encode, make_scene

PROD = Path(__file__).parents[2] / ".cache" / "prod-models" / "yolov8n-640-static.onnx"
FILES = {"shapes": SOURCE_ONNX, "shapes_opt": SOURCE_ONNX, "v8n": PROD, "v8n_opt": PROD}
BYTES = {"TYPE_FP32": 4, "TYPE_UINT8": 1, "TYPE_INT32": 4, "TYPE_FP16": 2}


def _spec(name: str):
    on = name.endswith("_opt")  # the plain variants say so: a bare spec on CPUs is optimized
    optimize = {"uint8Input": on, "nms": on}
    return parse_spec(
        {
            "model": {"name": name, "optimize": optimize, "source": {"uri": "https://models.example/m.onnx"}},
            "triton": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}, "maxBatchSize": 8},
        }
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    if not PROD.is_file():
        pytest.fail(f"{PROD} is missing: run `make prod-models` first", pytrace=False)
    repo = tmp_path_factory.mktemp("optimize_repo")
    reports = {}
    for name, file in FILES.items():
        (repo / name / "1").mkdir(parents=True)
        shutil.copy(file, repo / name / "1" / "model.onnx")
        reports[name] = prepare(
            repo / name / "1" / "model.onnx", [(model_plan(_spec(name)), repo / name / "config.pbtxt")]
        )
    with LocalTriton(repo, TritonPorts.free(), log_path=repo.parent / "triton.log") as server:
        yield server, reports


def test_the_report_says_what_was_rewritten(served):
    _, reports = served
    for name in ("shapes_opt", "v8n_opt"):
        assert reports[name]["optimized"] == ["uint8 NHWC input", "NMS in the graph (IoU 0.45, up to 100 boxes)"], (
            reports[name]
        )
        assert "input images uint8-nhwc" in reports[name]["message"] and "output end2end" in reports[name]["message"]
    assert (
        reports["v8n_opt"]["reason"] == "BatchAxisRewritten" and reports["shapes_opt"]["reason"] == "ServedAsExported"
    )
    assert reports["v8n"]["optimized"] == [] and "optimized" not in reports["v8n"]["message"]


def test_optimized_and_plain_give_the_same_detections(served):
    server, _ = served
    rng = np.random.default_rng(20261203)
    scenes = [make_scene(rng, *size) for size in [(640, 480), (1280, 720), (480, 640), (800, 450)] * 5]

    async def go() -> int:
        compared = 0
        async with (
            gateway_app(Settings(triton_url=server.grpc_target, model_name="shapes")) as plain,
            gateway_app(Settings(triton_url=server.grpc_target, model_name="shapes_opt")) as opt,
        ):
            for scene in scenes:
                image = encode(scene)
                a = await plain.post("/v1/detect", content=image, headers={"content-type": "image/jpeg"})
                b = await opt.post("/v1/detect", content=image, headers={"content-type": "image/jpeg"})
                assert a.status_code == b.status_code == 200, (a.text, b.text)
                boxes_a, classes_a, _ = boxes_of(a.json())
                boxes_b, classes_b, _ = boxes_of(b.json())
                order_a, order_b = np.lexsort(boxes_a.T[::-1]), np.lexsort(boxes_b.T[::-1])
                assert list(classes_a[order_a]) == list(classes_b[order_b]), (classes_a, classes_b)
                assert np.abs(boxes_a[order_a] - boxes_b[order_b]).max(initial=0) <= 1.0
                compared += len(classes_a)
        return compared

    assert asyncio.run(go()) >= 20  # the scenes hold objects, and both variants found them


def test_the_optimized_production_export_serves_with_a_fifth_of_the_bytes(served):
    server, _ = served

    async def go() -> dict[str, int]:
        per_image = {}
        for name in ("v8n", "v8n_opt"):
            async with gateway_app(Settings(triton_url=server.grpc_target, model_name=name)) as c:
                r = await c.post(
                    "/v1/detect",
                    content=encode(make_scene(np.random.default_rng(1), 1280, 720)),
                    headers={"content-type": "image/jpeg"},
                )
                assert r.status_code == 200 and "detections" in r.json(), r.text
            with urllib.request.urlopen(
                f"{server.http_url}/v2/models/{name}/config", timeout=5
            ) as resp:  # the config Triton loaded
                config = json.loads(resp.read())
            tensors = [*config["input"], *config["output"]]
            per_image[name] = sum(BYTES[t["data_type"]] * int(np.prod([int(d) for d in t["dims"]])) for t in tensors)
        return per_image

    sizes = asyncio.run(go())
    # plain: 4,915,200 in + 2,822,400 out; optimized: 1,228,800 in + 2,404 out
    assert sizes == {
        "v8n": 3 * 640 * 640 * 4 + 84 * 8400 * 4,
        "v8n_opt": 640 * 640 * 3 + 4 + 100 * 4 * 4 + 100 * 4 + 100 * 4,
    }, sizes
    assert sizes["v8n_opt"] / sizes["v8n"] <= 0.2
    print(
        f"\n[wire] YOLOv8n 640/80, bytes per image to and from Triton: plain {sizes['v8n']:,}, optimized {sizes['v8n_opt']:,} ({sizes['v8n_opt'] / sizes['v8n']:.3f})"
    )
