"""Turn a plain exported YOLO ONNX into a serving variant (graph surgery, no torch).

    python -m yolo_tools.prepare model.onnx -o serving.onnx [--end2end] [--format raw|v5]

Input: an Ultralytics-style export, fp32 NCHW input `[B, 3, H, W]` in 0..1 and
one raw output `[B, 4+nc, N]` (cx, cy, w, h, class scores).

- `--input uint8-nhwc` (default): the graph takes uint8 `[B, H, W, 3]` RGB and
  does the cast, the transpose and the /255 itself, so the wire carries 1 byte a
  pixel instead of 4 (1.2 MB instead of 4.9 MB for one 640x640 image).
- `--end2end`: class-aware NMS folded into the graph. Outputs `num_dets [B,1]`
  int32, `det_boxes [B,K,4]` xyxy fp32, `det_scores [B,K]` fp32 and
  `det_classes [B,K]` int32, padded to K = --max-det, the same names as
  TensorRT's EfficientNMS. The IoU threshold and a score floor are fixed here.
- `--format v5`: a YOLOv5-style output `[B, N, 5+nc]` with an objectness column
  (obj = the best class score, class columns = score / obj), so obj * cls gives
  back the same scores. Used to prove the gateway decodes every layout.

Needs the `onnx` package (the `models` extra), never the gateway at runtime.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RAW_OUTPUT = "output0"
END2END_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")
# [cx, cy, w, h] @ M = [x1, y1, x2, y2]
_CXCYWH_TO_XYXY = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [-0.5, 0, 0.5, 0], [0, -0.5, 0, 0.5]], np.float32)


class PrepareError(ValueError):
    """The source ONNX is not a plain YOLO export this tool understands."""


def _dim(d: onnx.TensorShapeProto.Dimension) -> int | str:
    return d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")


def _shape(vi: onnx.ValueInfoProto) -> list[int | str]:
    return [_dim(d) for d in vi.type.tensor_type.shape.dim]


class _Graph:
    """Small helper to append nodes and constants with unique names."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.g = model.graph
        self._n = 0

    def name(self, base: str) -> str:
        self._n += 1
        return f"prep_{base}_{self._n}"

    def const(self, base: str, value: np.ndarray) -> str:
        name = self.name(base)
        self.g.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: int | list[str] = 1, **attrs: object) -> list[str]:
        outs = [self.name(op.lower()) for _ in range(outputs)] if isinstance(outputs, int) else outputs
        self.g.node.append(helper.make_node(op, inputs, outs, name=self.name(op), **attrs))
        return outs


def load_plain(path: str | Path, imgsz: tuple[int, int] | None = None) -> tuple[onnx.ModelProto, int, int]:
    """Load and check a plain export; return (model, input height, input width).

    A dynamic-shape export gets its H and W fixed from `imgsz`, or else from
    the `imgsz` metadata that Ultralytics writes, since Triton serves fixed sizes.
    """
    model = onnx.load(str(path))
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise PrepareError("expected one input and one output (a plain YOLO export)")
    inp = model.graph.input[0]
    shape = _shape(inp)
    if len(shape) != 4 or shape[1] != 3:
        raise PrepareError(f"expected input [B, 3, H, W], got {shape}")
    out_shape = _shape(model.graph.output[0])
    if len(out_shape) != 3 or not isinstance(out_shape[1], int):
        raise PrepareError(f"expected a raw output [B, 4+nc, N], got {out_shape}")
    if imgsz is None and not (isinstance(shape[2], int) and isinstance(shape[3], int)):
        meta = {p.key: p.value for p in model.metadata_props}
        try:
            imgsz = tuple(json.loads(meta["imgsz"]))  # type: ignore[assignment]
        except (KeyError, ValueError) as exc:
            raise PrepareError(f"input size is dynamic ({shape}); pass --imgsz") from exc
    if imgsz is not None:
        h, w = int(imgsz[0]), int(imgsz[-1])
        dims = inp.type.tensor_type.shape.dim
        dims[2].Clear()
        dims[2].dim_value = h
        dims[3].Clear()
        dims[3].dim_value = w
        out_dims = model.graph.output[0].type.tensor_type.shape.dim
        out_dims[2].Clear()
        out_dims[2].dim_value = sum((h // s) * (w // s) for s in (8, 16, 32))
        shape = _shape(inp)
    return model, int(shape[2]), int(shape[3])


def _uint8_nhwc_input(gr: _Graph, height: int, width: int) -> None:
    g = gr.g
    old = g.input[0]
    name = old.name
    internal = gr.name("images_f32")
    for n in g.node:
        for i, x in enumerate(n.input):
            if x == name:
                n.input[i] = internal
    batch = _shape(old)[0]
    g.input.remove(old)
    g.input.insert(0, helper.make_tensor_value_info(name, TensorProto.UINT8, [batch, height, width, 3]))
    (as_float,) = gr.node("Cast", [name], to=TensorProto.FLOAT)
    (nchw,) = gr.node("Transpose", [as_float], perm=[0, 3, 1, 2])
    scale = gr.const("inv255", np.array(1.0 / 255.0, np.float32))
    # Prepend: these nodes must come before their consumers (topological order).
    pre = list(g.node)[-2:]
    mul = helper.make_node("Mul", [nchw, scale], [internal], name=gr.name("Mul"))
    body = list(g.node)[:-2]
    del g.node[:]
    g.node.extend([*pre, mul, *body])


def _replace_outputs(gr: _Graph, outputs: list[onnx.ValueInfoProto]) -> None:
    del gr.g.output[:]
    gr.g.output.extend(outputs)


def _end2end(gr: _Graph, conf: float, iou: float, max_det: int) -> None:
    raw = gr.g.output[0].name
    (t,) = gr.node("Transpose", [raw], perm=[0, 2, 1])  # [B, N, 4+nc]
    starts, ends, axis = gr.const("s0", np.array([0], np.int64)), gr.const("e4", np.array([4], np.int64)), gr.const("ax2", np.array([2], np.int64))
    (cxcywh,) = gr.node("Slice", [t, starts, ends, axis])
    (boxes,) = gr.node("MatMul", [cxcywh, gr.const("to_xyxy", _CXCYWH_TO_XYXY)])  # [B, N, 4]
    big = gr.const("big", np.array([1 << 30], np.int64))
    ax1 = gr.const("ax1", np.array([1], np.int64))
    (scores,) = gr.node("Slice", [raw, gr.const("s4", np.array([4], np.int64)), big, ax1])  # [B, nc, N]
    (selected,) = gr.node(
        "NonMaxSuppression",
        [boxes, scores, gr.const("max_out", np.array([max_det], np.int64)), gr.const("iou", np.array([iou], np.float32)), gr.const("conf", np.array([conf], np.float32))],
    )  # [K, 3] = (batch, class, box)
    (picked,) = gr.node("GatherND", [scores, selected])
    (zeros,) = gr.node("Mul", [scores, gr.const("zero", np.array(0.0, np.float32))])
    (kept,) = gr.node("ScatterND", [zeros, selected, picked])  # NMS survivors keep their score
    (flat,) = gr.node("Flatten", [kept], axis=1)  # [B, nc*N]
    values, index = gr.node("TopK", [flat, gr.const("k", np.array([max_det], np.int64))], outputs=2, axis=-1)
    (shape,) = gr.node("Shape", [scores])
    (n_boxes,) = gr.node("Gather", [shape, gr.const("i2", np.array(2, np.int64))])
    (cls,) = gr.node("Div", [index, n_boxes])
    (box_i,) = gr.node("Mod", [index, n_boxes])
    (box_i3,) = gr.node("Unsqueeze", [box_i, gr.const("axm1", np.array([-1], np.int64))])
    gr.node("GatherND", [boxes, box_i3], outputs=["det_boxes"], batch_dims=1)
    gr.node("Identity", [values], outputs=["det_scores"])
    gr.node("Cast", [cls], outputs=["det_classes"], to=TensorProto.INT32)
    (positive,) = gr.node("Greater", [values, gr.const("zero_f", np.array(0.0, np.float32))])
    (count,) = gr.node("Cast", [positive], to=TensorProto.INT32)
    gr.node("ReduceSum", [count, ax1], outputs=["num_dets"], keepdims=1)
    b = "batch"
    _replace_outputs(
        gr,
        [
            helper.make_tensor_value_info("num_dets", TensorProto.INT32, [b, 1]),
            helper.make_tensor_value_info("det_boxes", TensorProto.FLOAT, [b, max_det, 4]),
            helper.make_tensor_value_info("det_scores", TensorProto.FLOAT, [b, max_det]),
            helper.make_tensor_value_info("det_classes", TensorProto.INT32, [b, max_det]),
        ],
    )


def _v5(gr: _Graph, nc: int) -> None:
    raw = gr.g.output[0].name
    internal = gr.name("raw")
    for n in gr.g.node:
        for i, x in enumerate(n.output):
            if x == raw:
                n.output[i] = internal
    (t,) = gr.node("Transpose", [internal], perm=[0, 2, 1])  # [B, N, 4+nc]
    ax = gr.const("ax2", np.array([2], np.int64))
    (box,) = gr.node("Slice", [t, gr.const("s0", np.array([0], np.int64)), gr.const("e4", np.array([4], np.int64)), ax])
    (cls,) = gr.node("Slice", [t, gr.const("s4", np.array([4], np.int64)), gr.const("big", np.array([1 << 30], np.int64)), ax])
    (obj,) = gr.node("ReduceMax", [cls], axes=[2], keepdims=1)
    (safe,) = gr.node("Max", [obj, gr.const("eps", np.array(1e-9, np.float32))])
    (norm,) = gr.node("Div", [cls, safe])
    gr.node("Concat", [box, obj, norm], outputs=[RAW_OUTPUT], axis=2)
    n = _shape(gr.g.output[0])[2]
    _replace_outputs(gr, [helper.make_tensor_value_info(RAW_OUTPUT, TensorProto.FLOAT, ["batch", n, 5 + nc])])


def prepare(
    source: str | Path,
    dest: str | Path,
    *,
    input_layout: str = "uint8-nhwc",
    end2end: bool = False,
    output_format: str = "raw",
    conf: float = 0.01,
    iou: float = 0.45,
    max_det: int = 100,
    imgsz: tuple[int, int] | None = None,
) -> dict[str, object]:
    """Write a serving variant of `source` to `dest`; return a summary of its signature."""
    model, height, width = load_plain(source, imgsz)
    nc = int(_shape(model.graph.output[0])[1]) - 4  # type: ignore[operator]
    if nc < 1:
        raise PrepareError("output has no class channels")
    if end2end and output_format != "raw":
        raise PrepareError("--end2end replaces the raw output; it cannot be combined with --format v5")
    gr = _Graph(model)
    # Name the graph's single output as the gateway and configs expect.
    old_out = model.graph.output[0].name
    if old_out != RAW_OUTPUT:
        for n in model.graph.node:
            for i, x in enumerate(n.output):
                if x == old_out:
                    n.output[i] = RAW_OUTPUT
        model.graph.output[0].name = RAW_OUTPUT
    if input_layout == "uint8-nhwc":
        _uint8_nhwc_input(gr, height, width)
    elif input_layout != "fp32-nchw":
        raise PrepareError(f"unknown input layout {input_layout!r}")
    if end2end:
        _end2end(gr, conf, iou, max_det)
    elif output_format == "v5":
        _v5(gr, nc)
    elif output_format != "raw":
        raise PrepareError(f"unknown output format {output_format!r}")
    meta = {p.key: p.value for p in model.metadata_props}
    summary: dict[str, object] = {
        "input_layout": input_layout,
        "output_format": "end2end" if end2end else output_format,
        "imgsz": [height, width],
        "nc": nc,
    }
    if end2end:
        summary.update(nms_iou=iou, nms_conf=conf, max_det=max_det)
    meta["yolo_serving"] = json.dumps(summary)
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(model)
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dest))
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--input", dest="input_layout", choices=["uint8-nhwc", "fp32-nchw"], default="uint8-nhwc")
    ap.add_argument("--end2end", action="store_true", help="fold class-aware NMS into the graph")
    ap.add_argument("--format", dest="output_format", choices=["raw", "v5"], default="raw")
    ap.add_argument("--conf", type=float, default=0.01, help="end2end: score floor baked into the graph")
    ap.add_argument("--iou", type=float, default=0.45, help="end2end: IoU threshold baked into the graph")
    ap.add_argument("--max-det", type=int, default=100, help="end2end: detections per image (padded)")
    ap.add_argument("--imgsz", type=int, nargs="+", help="fix a dynamic input size: H [W]")
    args = ap.parse_args(argv)
    try:
        summary = prepare(
            args.source,
            args.output,
            input_layout=args.input_layout,
            end2end=args.end2end,
            output_format=args.output_format,
            conf=args.conf,
            iou=args.iou,
            max_det=args.max_det,
            imgsz=tuple(args.imgsz) if args.imgsz else None,
        )
    except (PrepareError, FileNotFoundError, onnx.checker.ValidationError) as exc:
        raise SystemExit(f"prepare: {exc}") from exc
    print(json.dumps({"output": args.output, **summary}))


if __name__ == "__main__":
    main()
