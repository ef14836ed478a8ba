"""Production-size exports, prepared as the operator's init container prepares them and served by a
real tritonserver through the gateway.

The files are Ultralytics YOLOv8n exports with random weights (seed 0), made by `make prod-models`
into .cache/prod-models: the default export (batch fixed to 1), the same network exported with a
dynamic batch, a 416 px export and a 5-class one. Each is served from a BARE YoloService (nothing
but the model's source), so everything in its config.pbtxt (tensors, class names, the batch axis)
comes from the file, through `yolo_modelprep.cli.prepare` and the operator's `model_plan`.

Random weights score every class at about 1.6e-4 at most, so requests pass a tiny `conf`.
"""

from __future__ import annotations

import ast
import asyncio
import json
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from gw_helpers import boxes_of, gateway_app, quiet_stats, settled_counts, triton_stats

from yolo_gateway.settings import Settings
from yolo_modelprep.cli import prepare
from yolo_operator.builders import model_plan
from yolo_operator.spec import parse_spec
from yolo_tools.local_triton import LocalTriton, TritonPorts
from yolo_tools.synthetic import encode, make_scene

PROD_MODELS = Path(__file__).parents[2] / ".cache" / "prod-models"
# served name -> the export it is prepared from
MODELS = {
    "static640": "yolov8n-640-static.onnx",
    "dyn640": "yolov8n-640-dynamic.onnx",
    "s416": "yolov8n-416-static.onnx",
    "c5": "yolov8n-5cls-640-static.onnx",
}
TINY_CONF = {"conf": "0.00001"}  # random weights: the best class score is about 1.6e-4
BURST = 96
MAX_BATCH = 8


def bare_spec(name: str):
    """A YoloService that names only the model's source (the file says everything else), with the
    file's graph kept as exported (optimization, on by default for CPUs, has its tests in
    test_optimize.py): these tests are of the inspection and the batch rewrite."""
    return parse_spec(
        {
            "model": {
                "name": name,
                "source": {"uri": "https://models.example/m.onnx"},
                "optimize": {"uint8Input": False, "nms": False},
            },
            "triton": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}, "maxBatchSize": MAX_BATCH},
        }
    )


@dataclass
class Served:
    triton: LocalTriton
    repo: Path
    reports: dict[str, dict]
    names: dict[str, tuple[str, ...]]  # the class names each file's metadata carries (manifest.json)


def _file_names(manifest: dict, file: str) -> tuple[str, ...]:
    names = ast.literal_eval(manifest["files"][file]["metadata"]["names"])
    return tuple(names[i] for i in range(len(names)))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    missing = [f for f in ("manifest.json", *MODELS.values()) if not (PROD_MODELS / f).is_file()]
    if missing:
        pytest.fail(f"{PROD_MODELS} lacks {', '.join(missing)}: run `make prod-models` first", pytrace=False)
    manifest = json.loads((PROD_MODELS / "manifest.json").read_text())
    repo = tmp_path_factory.mktemp("prod_repo")
    reports = {}
    for name, file in MODELS.items():
        (repo / name / "1").mkdir(parents=True)
        shutil.copy(PROD_MODELS / file, repo / name / "1" / "model.onnx")
        reports[name] = prepare(
            repo / name / "1" / "model.onnx", [(model_plan(bare_spec(name)), repo / name / "config.pbtxt")]
        )
    names = {name: _file_names(manifest, file) for name, file in MODELS.items()}
    with LocalTriton(repo, TritonPorts.free(), log_path=repo.parent / "triton.log") as server:
        yield Served(server, repo, reports, names)


def loaded_config(triton: LocalTriton, model: str) -> dict:
    """The config Triton loaded, from its own API."""
    with urllib.request.urlopen(f"{triton.http_url}/v2/models/{model}/config", timeout=5) as r:
        return json.loads(r.read())


def settings(served: Served, model: str, **kw) -> Settings:
    return Settings(triton_url=served.triton.grpc_target, model_name=model, **kw)


def scene_jpeg(seed: int) -> bytes:
    return encode(make_scene(np.random.default_rng(seed), 1280, 720))


def test_reports_and_configs_come_from_the_files(served: Served):
    expected = {
        "static640": "BatchAxisRewritten",
        "dyn640": "ServedAsExported",
        "s416": "BatchAxisRewritten",
        "c5": "BatchAxisRewritten",
    }
    for name, reason in expected.items():
        report = served.reports[name]
        assert report["reason"] == reason, report
        assert report["rewritten"] is (reason == "BatchAxisRewritten"), report
        assert report["maxBatchSize"] == MAX_BATCH and report["classes"] == len(served.names[name]), report

    coco = served.names["static640"]
    assert len(coco) == 80 and coco[0] == "person" and coco[-1] == "toothbrush"
    assert served.names["c5"] == ("car", "bus", "truck", "bike", "person")
    size = {"static640": 640, "dyn640": 640, "s416": 416, "c5": 640}
    for name in MODELS:
        text = (served.repo / name / "config.pbtxt").read_text()
        assert f"max_batch_size: {MAX_BATCH}\n" in text, text
        cfg = loaded_config(served.triton, name)
        assert cfg["max_batch_size"] == MAX_BATCH, cfg
        (inp,) = cfg["input"]
        assert (inp["name"], inp["data_type"], [int(d) for d in inp["dims"]]) == (
            "images",
            "TYPE_FP32",
            [3, size[name], size[name]],
        ), inp
        names = json.loads(cfg["parameters"]["class_names"]["string_value"])
        assert tuple(names) == served.names[name], names
        (out,) = cfg["output"]
        nc, anchors = len(served.names[name]), sum((size[name] // s) ** 2 for s in (8, 16, 32))
        # the dynamic export's anchor axis is symbolic: -1 in the config
        assert [int(d) for d in out["dims"]] == [4 + nc, -1 if name == "dyn640" else anchors], out


def test_burst_is_batched_on_the_rewritten_model(served: Served):
    body = scene_jpeg(1)
    model = "static640"

    async def go() -> tuple[list[int], float]:
        # Room for the whole burst: queued in the gateway and at Triton, never shed or timed out.
        s = settings(
            served,
            model,
            max_concurrency=BURST,
            max_queue=BURST,
            queue_timeout_s=150,
            request_timeout_s=150,
            infer_timeout_s=150,
        )
        async with gateway_app(s) as c:
            before = await asyncio.to_thread(quiet_stats, served.triton, model)
            t0 = time.monotonic()
            rs = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        c.post("/v1/detect", params=TINY_CONF, content=body, headers={"content-type": "image/jpeg"})
                        for _ in range(BURST)
                    )
                ),
                timeout=180,
            )
            took = time.monotonic() - t0
            bad = [(r.status_code, r.text[:200]) for r in rs if r.status_code != 200]
            assert not bad, bad
            assert all(r.json()["detections"] for r in rs)
        return [before["inference_count"], before["execution_count"]], took

    (inf0, exec0), took = asyncio.run(go())
    (inferences,) = settled_counts([served.triton], model, [inf0], BURST)
    executions = triton_stats(served.triton, model)["execution_count"] - exec0
    print(f"burst of {BURST}: {took:.1f} s, {inferences} inferences in {executions} executions")
    assert inferences == BURST, inferences
    # Batches of more than one image ran on the model whose batch axis was rewritten (here 96 images
    # ran as about 14 executions; two images per execution on average is a wide margin).
    assert 0 < executions < inferences, (inferences, executions)
    assert executions <= BURST // 2, (inferences, executions)


async def _detect(served: Served, model: str, body: bytes) -> dict:
    async with gateway_app(settings(served, model, request_timeout_s=60, infer_timeout_s=60)) as c:
        r = await c.post("/v1/detect", params=TINY_CONF, content=body, headers={"content-type": "image/jpeg"})
        assert r.status_code == 200, r.text
        return r.json()


def test_rewritten_static_and_dynamic_export_detect_the_same(served: Served):
    body = scene_jpeg(2)

    async def go() -> tuple[dict, dict]:
        return await _detect(served, "static640", body), await _detect(served, "dyn640", body)

    static, dynamic = asyncio.run(asyncio.wait_for(go(), timeout=120))
    sb, sc, _ = boxes_of(static)
    db, dc, _ = boxes_of(dynamic)
    assert len(sb) > 0, static
    assert len(sb) == len(db), (len(sb), len(db))
    # Same weights, same image: each detection of one has its twin in the other (same class, box within 1 px).
    unmatched = list(range(len(db)))
    for box, cls in zip(sb, sc, strict=True):
        twin = next((j for j in unmatched if dc[j] == cls and np.abs(db[j] - box).max() <= 1.0), None)
        assert twin is not None, (box, cls)
        unmatched.remove(twin)


@pytest.mark.parametrize("model", ["s416", "c5"])
def test_other_exports_answer_with_their_own_classes(served: Served, model: str):
    result = asyncio.run(asyncio.wait_for(_detect(served, model, scene_jpeg(3)), timeout=120))
    assert result["model"]["name"] == model
    w, h = result["image"]["width"], result["image"]["height"]
    assert (w, h) == (1280, 720), result["image"]
    dets = result["detections"]
    assert dets, result
    names = served.names[model]
    for d in dets:
        b = d["box"]
        assert 0 <= b["x1"] <= b["x2"] <= w and 0 <= b["y1"] <= b["y2"] <= h, d
        assert 0 <= d["class_id"] < len(names) and d["class_name"] == names[d["class_id"]], d
