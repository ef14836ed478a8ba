"""Model-repository variants for tests and benchmarks, derived from the committed local models.

Needs the `local` extra (onnx, and tritonclient's protobuf model config).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2

from .prepare import prepare

ROOT = Path(__file__).resolve().parents[2]
LOCAL_REPO = ROOT / "model_repository" / "local"
SOURCE_ONNX = ROOT / "model_repository" / "source" / "yolov8t-shapes.onnx"

Config = model_config_pb2.ModelConfig


def read_config(path: Path) -> Config:
    return text_format.Parse(path.read_text(), Config())


def copy_model(repo: Path, name: str) -> Path:
    """Copy a committed local model (the model.py symlink becomes a file)."""
    shutil.copytree(LOCAL_REPO / name, repo / name)
    return repo / name


def write_variant(
    repo: Path,
    name: str,
    base: str = "yolo",
    edit: Callable[[Config], None] | None = None,
    onnx_model: onnx.ModelProto | None = None,
    **prepare_options: object,
) -> Path:
    """A model beside `base`: a prepared ONNX variant (or base's own), and base's config edited."""
    target = repo / name
    (target / "1").mkdir(parents=True)
    shutil.copy(LOCAL_REPO / base / "1" / "model.py", target / "1" / "model.py")
    summary = None
    if onnx_model is not None:
        onnx.save(onnx_model, str(target / "1" / "model.onnx"))
    elif prepare_options:
        summary = prepare(SOURCE_ONNX, target / "1" / "model.onnx", **prepare_options)
    else:
        shutil.copy(LOCAL_REPO / base / "1" / "model.onnx", target / "1" / "model.onnx")
    cfg = read_config(LOCAL_REPO / base / "config.pbtxt")
    cfg.name = name
    if summary and summary["input_layout"] == "fp32-nchw":
        h, w = summary["imgsz"]
        cfg.input[0].data_type = model_config_pb2.TYPE_FP32
        del cfg.input[0].dims[:]
        cfg.input[0].dims.extend([3, h, w])
    if summary and summary["output_format"] == "v5":
        a, b = cfg.output[0].dims
        del cfg.output[0].dims[:]
        cfg.output[0].dims.extend([b, a + 1])
    if edit is not None:
        edit(cfg)
    (target / "config.pbtxt").write_text(text_format.MessageToString(cfg))
    return target


def constant_detector(output: np.ndarray, height: int, width: int) -> onnx.ModelProto:
    """A near-free model with the real signature: uint8 [B,H,W,3] in, a fixed raw output out.

    It still reads its input (a max over the image, times zero), so the bytes
    travel and are touched, but there is no network: it isolates the gateway.
    """
    out = np.asarray(output, np.float32)
    images = helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", height, width, 3])
    result = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", *out.shape])
    nodes = [
        helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["f"], ["m"], axes=[1, 2, 3], keepdims=1),  # [B,1,1,1]
        helper.make_node("Reshape", ["m", "shape"], ["m3"]),  # [B,1,1]
        helper.make_node("Mul", ["m3", "zero"], ["z"]),
        helper.make_node("Add", ["z", "const"], ["output0"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(out, "const"),
    ]
    graph = helper.make_graph(nodes, "constant_detector", [images], [result], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
