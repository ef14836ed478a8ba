"""The file inspection, the batch-axis rewrite and the config they give, on small ONNX graphs
built here (onnx.helper) and on the bundled export. No Triton: what Triton's onnxruntime
backend accepts is checked by tools/tests/test_standin_rules.py and the pod tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2

from yolo_modelprep import cli
from yolo_modelprep.batch import check_batch, fixed_first_dims, make_batchable
from yolo_modelprep.config import plan, render
from yolo_modelprep.facts import ModelIncompatible, Overrides, SpecContradictsModel, from_overrides
from yolo_modelprep.inspect import inspect, load

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "model_repository" / "source" / "yolov8t-shapes.onnx"
NAMES = "{0: 'cat', 1: 'dog', 2: 'bird'}"


def detector(
    size: int = 64, nc: int = 3, batch: int | str = 1, meta: dict[str, str] | None = None, opset: int = 17
) -> onnx.ModelProto:
    """A tiny graph shaped like an Ultralytics export: images [B,3,S,S] -> output0 [B,4+nc,N].
    A 1x1 conv to 4+nc channels at stride 8 gives one row of N per cell; the other strides are
    padded in with a Pad, and the [B, C, N] view comes from a Reshape whose constant shape holds
    the traced batch, as a static export's does."""
    n = sum((size // s) ** 2 for s in (8, 16, 32))
    c = 4 + nc
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((c, 3, 8, 8)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([batch if isinstance(batch, int) else 0, c, -1], np.int64), "shape")
    pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, n - (size // 8) ** 2], np.int64), "pads")
    nodes = [
        helper.make_node("Conv", ["images", "w"], ["conv"], strides=[8, 8]),
        helper.make_node("Reshape", ["conv", "shape"], ["flat"]),
        helper.make_node("Pad", ["flat", "pads"], ["output0"]),
    ]
    g = helper.make_graph(
        nodes,
        "det",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, c, n])],
        [w, shape, pads],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    for k, v in {
        "task": "detect",
        "names": NAMES if nc == 3 else "",
        "imgsz": f"[{size}, {size}]",
        **(meta or {}),
    }.items():
        if v:
            model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    return model


def _plan(max_batch: int = 16, **model: object) -> dict:
    return plan(
        name="yolo",
        platform="onnxruntime_onnx",
        max_batch_size=max_batch,
        max_queue_delay_microseconds=500,
        instance_kind="KIND_CPU",
        instance_count=1,
        model=model,
    )


def _parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_the_bundled_export_is_read_from_its_own_file():
    facts = inspect(load(BUNDLED)).facts
    # a dynamic export: its output stays [7, -1] (the backend compares output shapes exactly)
    assert (
        facts.summary()
        == "input images fp32-nchw 320x320, output raw (output0 [7, -1]), 3 classes (names from the file)"
    )
    assert facts.class_names == ("circle", "rectangle", "triangle")
    cfg = _parse(render(_plan(), facts))
    assert (cfg.max_batch_size, cfg.input[0].name, list(cfg.input[0].dims)) == (16, "images", [3, 320, 320])
    assert [list(o.dims) for o in cfg.output] == [[7, -1]] and json.loads(cfg.parameters["class_names"].string_value)[
        2
    ] == "triangle"


def test_a_fixed_batch_is_rewritten_and_checked_at_batch_two():
    insp = inspect(detector(batch=1))
    assert insp.batch == 1
    model, facts, reason = make_batchable(insp)
    assert reason == "BatchAxisRewritten" and facts.batchable and "1 Reshape shapes" in facts.batch_note
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert check_batch(model, facts.input, 3) is None  # any batch, not only the one checked
    assert check_batch(insp.model, facts.input) is not None  # the export as it came does not batch


def test_a_graph_whose_batch_onnxruntime_pins_is_refused_not_crash_looped():
    """A Reshape whose shape is computed at run time from a 1 the rewrite cannot see: onnxruntime
    still infers output0 [1, ...], which Triton's onnxruntime backend refuses under any
    max_batch_size > 0. Before Triton sees it, that is ModelIncompatible, naming the tensor."""
    m = detector(batch=1)
    # A Reshape whose shape is computed from a constant the rewrite does not touch (a Concat of 1 and the rest).
    g = m.graph
    g.initializer.extend(
        [
            numpy_helper.from_array(np.array([1], np.int64), "one"),
            numpy_helper.from_array(np.array([7, -1], np.int64), "rest"),
        ]
    )
    g.node.insert(0, helper.make_node("Concat", ["one", "rest"], ["computed"], axis=0))
    g.node[2].input[1] = "computed"
    with pytest.raises(ModelIncompatible, match=r"output0 \[1, 7, 84\]: onnxruntime fixes its first dimension"):
        make_batchable(inspect(m))


def test_a_fixed_batch_export_under_max_batch_size_1_gets_a_dynamic_first_dimension():
    """The plan asks for one image per execution (maxBatchSize 1): still max_batch_size 1 > 0 in the
    config, so the served file's first dimension must be dynamic as onnxruntime infers it, Reshapes
    included (a make autoscale-demo run on the real node crash-looped Triton before this)."""
    insp = inspect(detector(batch=1))
    assert fixed_first_dims(insp.model) == ["images [1, 3, 64, 64]", "output0 [1, 7, 84]"]
    model, facts, reason = make_batchable(insp, want_batch=False)
    assert reason == "Unbatched" and not facts.batchable and "max_batch_size 1" in facts.batch_note
    assert fixed_first_dims(model) == []
    assert _parse(render(_plan(1), facts)).max_batch_size == 1
    assert check_batch(model, facts.input, 1) is None


def test_a_dynamic_export_is_served_as_exported():
    insp = inspect(detector(batch="batch"))
    model, facts, reason = make_batchable(insp)
    assert (reason, model is insp.model, facts.batchable) == ("ServedAsExported", True, True)


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: detector(meta={"task": "classify"}), "an image classifier (metadata task=classify"),
        (lambda: detector(meta={"task": "segment"}), "a segmentation model"),
        (lambda: detector(meta={"task": "pose"}), "a pose model"),
        (
            lambda: _with_output_shape(detector(meta={"task": ""}), [1, 1000]),
            "output output0 [1, 1000] has rank 2 (a classifier's scores?)",
        ),
        (
            lambda: _with_output_shape(detector(), [1, 7, 999]),
            "output output0 [1, 7, 999] fits no YOLO layout for a 64x64 input (84 anchors",
        ),
        (
            lambda: _second_output(detector()),
            "this file has 2: output0 [1, 7, 84], protos [1, 32, 16, 16] (mask prototypes",
        ),
        (lambda: _with_input_shape(detector(), [1, 1, 64, 64]), "input images [1, 1, 64, 64] is not an image batch"),
        (lambda: detector(opset=99), "needs ONNX opset 99"),
    ],
)
def test_files_the_gateway_cannot_serve_name_the_tensor(build, needle, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(build(), str(path))
    with pytest.raises(ModelIncompatible) as err:
        inspect(load(path))
    assert needle in str(err.value) and err.value.reason == "ModelIncompatible"


@pytest.mark.parametrize("data", [b"", b"not a model at all", BUNDLED.read_bytes()[:100_000]])
def test_corrupt_and_truncated_files(data, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    with pytest.raises(ModelIncompatible, match=r"truncated or corrupt"):
        load(path)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (
            Overrides(class_names=("a", "b")),
            "model.classNames has 2 names, but the file's output output0 [7, 84] has 3 class channels",
        ),
        (Overrides(input_size=128), "model.inputSize is 128, but the file's input images is 64x64"),
        (Overrides(input="uint8-nhwc"), "model.input is uint8-nhwc, but the file's input images is fp32-nchw"),
        (Overrides(output="v5"), "model.output is v5, but the file's outputs (output0 [7, 84]) are raw"),
    ],
)
def test_a_cr_that_contradicts_the_file_is_refused(overrides, needle):
    with pytest.raises(SpecContradictsModel) as err:
        inspect(detector(), overrides)
    assert needle in str(err.value) and err.value.reason == "SpecContradictsModel"


def test_the_cr_names_the_classes_and_sizes_a_dynamic_input():
    facts = inspect(detector(), Overrides(class_names=("x", "y", "z"))).facts
    assert (facts.class_names, facts.names_from) == (("x", "y", "z"), "spec")
    m = _with_input_shape(detector(meta={"imgsz": ""}), [1, 3, "h", "w"])
    with pytest.raises(ModelIncompatible, match="dynamic size and the file names no imgsz: set model.inputSize"):
        inspect(m)
    assert inspect(m, Overrides(input_size=64)).facts.height == 64
    nameless = inspect(detector(nc=5)).facts
    assert (
        nameless.class_names == ("class_0", "class_1", "class_2", "class_3", "class_4")
        and nameless.names_from == "default"
    )


def test_facts_from_the_cr_alone_for_a_tensorrt_plan():
    with pytest.raises(SpecContradictsModel, match="set model.input, model.inputSize, model.classNames"):
        from_overrides(Overrides())
    f = from_overrides(
        Overrides(input="uint8-nhwc", input_size=320, class_names=("a", "b", "c"), output="end2end", max_detections=50)
    )
    assert [t.name for t in f.outputs] == ["num_dets", "det_boxes", "det_scores", "det_classes"] and f.outputs[
        1
    ].dims == (50, 4)


def test_the_command_rewrites_the_file_writes_every_config_and_reports(tmp_path, capsys):
    model = tmp_path / "model.onnx"
    onnx.save(detector(batch=1), str(model))
    plans = []
    for name, batch in (("yolo", 8), ("yolo-batch", 32)):
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(_plan(batch) | {"name": name}))
        plans += ["--plan", f"{p}={tmp_path / name / 'config.pbtxt'}"]
    report = tmp_path / "report"
    assert cli.main(["--model", str(model), *plans, "--report", str(report)]) == 0
    r = json.loads(report.read_text())
    assert (r["reason"], r["rewritten"], r["maxBatchSize"], r["classes"]) == ("BatchAxisRewritten", True, 32, 3)
    assert _parse((tmp_path / "yolo-batch" / "config.pbtxt").read_text()).max_batch_size == 32
    assert load(model).graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    assert cli.main(["--model", str(bad), *plans[:2]]) == cli.EXIT_INCOMPATIBLE
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("ModelIncompatible: the file (")


def _with_output_shape(m: onnx.ModelProto, dims: list) -> onnx.ModelProto:
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("output0", TensorProto.FLOAT, dims))
    return m


def _with_input_shape(m: onnx.ModelProto, dims: list) -> onnx.ModelProto:
    m.graph.input[0].CopyFrom(helper.make_tensor_value_info("images", TensorProto.FLOAT, dims))
    return m


def _second_output(m: onnx.ModelProto) -> onnx.ModelProto:
    m.graph.node.append(helper.make_node("Identity", ["images"], ["protos"]))
    m.graph.output.append(helper.make_tensor_value_info("protos", TensorProto.FLOAT, [1, 32, 16, 16]))
    return m
