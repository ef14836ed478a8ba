"""An ONNX file -> the facts Triton and the gateway need, read from its tensors and from the
metadata that Ultralytics writes (names, imgsz, task). A file that is not a YOLO detector the
gateway can serve raises ModelIncompatible, naming the tensor and the shape that are wrong."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import onnx

from .facts import (
    END2END_OUTPUTS,
    ModelFacts,
    ModelIncompatible,
    Overrides,
    Tensor,
    apply_overrides,
    default_names,
    num_anchors,
)

DTYPES = {
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.UINT8: "TYPE_UINT8",
    onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.INT64: "TYPE_INT64",
}
IMAGE_DTYPES = ("TYPE_FP32", "TYPE_UINT8", "TYPE_FP16")
TASKS = {
    "classify": "an image classifier",
    "segment": "a segmentation model",
    "pose": "a pose model",
    "obb": "an oriented-box model",
}

Dim = int | str  # a fixed size, or a symbolic one (its name, or "?")


@dataclass(frozen=True)
class Inspection:
    model: onnx.ModelProto
    facts: ModelFacts
    batch: Dim  # the file's batch axis: an int when the export fixed it


def shape(vi: onnx.ValueInfoProto) -> list[Dim]:
    return [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
        for d in vi.type.tensor_type.shape.dim
    ]


def _dtype(vi: onnx.ValueInfoProto) -> str:
    t = vi.type.tensor_type.elem_type
    known = DTYPES.get(onnx.TensorProto.DataType.ValueType(t))
    if known is not None:
        return known
    return onnx.TensorProto.DataType.Name(t) if t in onnx.TensorProto.DataType.values() else str(t)


def _desc(vi: onnx.ValueInfoProto) -> str:
    return f"{vi.name} {shape(vi)}"


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _names(meta: dict[str, str]) -> tuple[str, ...] | None:
    """Ultralytics writes `names` as a Python dict literal {0: 'person', ...}; a list works too."""
    try:
        value = ast.literal_eval(meta["names"])
    except (KeyError, ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if isinstance(value, dict) and value and sorted(value) == list(range(len(value))):
        return tuple(str(value[i]) for i in range(len(value)))
    if isinstance(value, (list, tuple)) and value:
        return tuple(str(v) for v in value)
    return None


def _imgsz(meta: dict[str, str]) -> tuple[int, int] | None:
    try:
        value = ast.literal_eval(meta["imgsz"])
    except (KeyError, ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    value = [value, value] if isinstance(value, int) else list(value)
    return (int(value[0]), int(value[-1])) if value and all(isinstance(v, int) and v > 0 for v in value) else None


def load(path: str | Path) -> onnx.ModelProto:
    size = Path(path).stat().st_size
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and friends: the file is not an ONNX model
        raise ModelIncompatible(
            f"the file ({size} bytes) is not a readable ONNX model ({type(exc).__name__}: {exc}); is it truncated or corrupt?"
        ) from exc
    if not model.graph.node or not model.graph.output:
        raise ModelIncompatible(f"the file ({size} bytes) holds no ONNX graph; is it truncated or corrupt?")
    newest = onnx.defs.onnx_opset_version()
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx") and op.version > newest:
            raise ModelIncompatible(
                f"the model needs ONNX opset {op.version}; this runtime supports up to {newest}: export with a lower opset"
            )
    return model


def _image_input(model: onnx.ModelProto, o: Overrides, meta: dict[str, str]) -> tuple[Tensor, str, Dim]:
    weights = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise ModelIncompatible(
            f"a detector takes one image input; this file takes {len(inputs)}: {', '.join(_desc(i) for i in inputs)}"
        )
    vi = inputs[0]
    dims, dtype = shape(vi), _dtype(vi)
    if dtype not in IMAGE_DTYPES:
        raise ModelIncompatible(f"input {_desc(vi)} is {dtype}; an image input is float32, float16 or uint8")
    if len(dims) != 4 or 3 not in (dims[1], dims[3]):
        raise ModelIncompatible(f"input {_desc(vi)} is not an image batch: expected [B, 3, H, W] or [B, H, W, 3]")
    layout = "NCHW" if dims[1] == 3 else "NHWC"
    hw = dims[2:4] if layout == "NCHW" else dims[1:3]
    if not all(isinstance(d, int) for d in hw):
        size = (o.input_size, o.input_size) if o.input_size else _imgsz(meta)
        if size is None:
            raise ModelIncompatible(
                f"input {_desc(vi)} has a dynamic size and the file names no imgsz: set model.inputSize"
            )
        hw = [size[0], size[1]]
    h, w = int(hw[0]), int(hw[1])
    if h % 32 or w % 32:
        raise ModelIncompatible(f"input {_desc(vi)}: {h}x{w} is not a multiple of 32, the largest YOLO stride")
    return Tensor(vi.name, dtype, (3, h, w) if layout == "NCHW" else (h, w, 3)), layout, dims[0]


def _raw_output(vi: onnx.ValueInfoProto, h: int, w: int, names: tuple[str, ...] | None) -> tuple[Tensor, str, int]:
    """[B, 4+nc, N] (raw: YOLOv8/11), [B, N, 5+nc] (v5) or [B, N, 4+nc] (raw_t); symbolic N allowed.
    A symbolic dimension stays -1 in the config: Triton's onnxruntime backend compares output
    shapes exactly (CompareDimsSupported), so a dynamic export's [B, 84, anchors] is [84, -1]."""
    dims, dtype = shape(vi), _dtype(vi)
    n = num_anchors(h, w)
    where = f"output {_desc(vi)}"
    if dtype not in ("TYPE_FP32", "TYPE_FP16"):
        raise ModelIncompatible(f"{where} is {dtype}; a raw detector output is float")
    if len(dims) != 3:
        kind = " (a classifier's scores?)" if len(dims) == 2 else ""
        raise ModelIncompatible(
            f"{where} has rank {len(dims)}{kind}: a detector's raw output is [B, 4+nc, {n}] or [B, {n}, 5+nc]"
        )
    a, b = dims[1], dims[2]

    def anchors(d: Dim) -> bool:  # N per cell: 1 (v8/v11, anchor-free) or 3 (v5's anchor boxes)
        return not isinstance(d, int) or d in (n, 3 * n)

    if isinstance(a, int) and anchors(b) and not anchors(a):
        fmt, nc, out = "raw", a - 4, (a, b if isinstance(b, int) else -1)
    elif isinstance(b, int) and anchors(a):
        if names is not None and b == 4 + len(names):
            fmt, nc = "raw_t", b - 4
        else:
            fmt, nc = "v5", b - 5
        out = (a if isinstance(a, int) else -1, b)
    else:
        raise ModelIncompatible(f"{where} fits no YOLO layout for a {h}x{w} input ({n} anchors at strides 8, 16, 32)")
    if nc < 1:
        raise ModelIncompatible(f"{where} leaves no class channels ({fmt} layout)")
    return Tensor(vi.name, dtype, out), fmt, nc


def _end2end_outputs(outputs: dict[str, onnx.ValueInfoProto], o: Overrides) -> tuple[Tensor, ...]:
    tensors = []
    for name in END2END_OUTPUTS:
        vi = outputs[name]
        dims = shape(vi)[1:]  # symbolic -> -1, as the backend compares output shapes exactly
        tensors.append(Tensor(name, _dtype(vi), tuple(d if isinstance(d, int) else -1 for d in dims)))
    return tuple(tensors)


def inspect(model: onnx.ModelProto, o: Overrides | None = None) -> Inspection:
    o = o or Overrides()
    meta = metadata(model)
    task = meta.get("task")
    if task and task != "detect":
        outs = ", ".join(_desc(v) for v in model.graph.output)
        raise ModelIncompatible(
            f"the file is {TASKS.get(task, f'a {task!r} model')} (metadata task={task}; outputs {outs}): the gateway serves detectors (task detect)"
        )
    inp, layout, batch = _image_input(model, o, meta)
    h, w = (inp.dims[1], inp.dims[2]) if layout == "NCHW" else (inp.dims[0], inp.dims[1])
    file_names = _names(meta)
    outputs = {v.name: v for v in model.graph.output}
    if set(END2END_OUTPUTS) <= set(outputs):
        fmt, tensors = "end2end", _end2end_outputs(outputs, o)
        names = o.class_names or file_names
        if not names:
            raise ModelIncompatible(
                f"an end2end model's outputs ({', '.join(END2END_OUTPUTS)}) carry class ids only, and the file names no classes: set model.classNames"
            )
        names_from = "spec" if o.class_names else "file"
    elif len(outputs) == 1:
        out, fmt, nc = _raw_output(model.graph.output[0], h, w, o.class_names or file_names)
        tensors = (out,)
        names, names_from = (
            (file_names, "file") if file_names and len(file_names) == nc else (default_names(nc), "default")
        )
    else:
        listed = ", ".join(_desc(v) for v in model.graph.output)
        raise ModelIncompatible(
            f"a detector has one raw output or the end2end outputs ({', '.join(END2END_OUTPUTS)}); this file has {len(outputs)}: {listed}"
            + (" (mask prototypes: a segmentation model?)" if len(outputs) == 2 else "")
        )
    facts = ModelFacts(inp, layout, tensors, fmt, tuple(names), names_from=names_from)
    # The CR's fields: input_size already fixed a dynamic size above; the rest must agree.
    return Inspection(model, apply_overrides(facts, o), batch)
