"""Graph surgery on a plain YOLO export (onnx only, no torch): the serving variants that
`yolo-model-prepare` makes on the way in (model.optimize) and `yolo_tools.prepare` makes offline.

- `uint8_nhwc_input`: the graph takes uint8 [B, H, W, 3] RGB and casts, transposes and divides by
  255 itself: 1 byte a pixel on the wire instead of 4.
- `end2end`: class-aware NMS folded into the graph, one label a box (its best class); outputs num_dets [B,1], det_boxes [B,K,4]
  (xyxy), det_scores [B,K], det_classes [B,K], TensorRT EfficientNMS's names, padded to K.
- `v5`: a YOLOv5-style output [B, N, 5+nc] with objectness (used to prove the gateway decodes it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RAW_OUTPUT = "output0"
END2END_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")
# [cx, cy, w, h] @ M = [x1, y1, x2, y2]
_CXCYWH_TO_XYXY = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [-0.5, 0, 0.5, 0], [0, -0.5, 0, 0.5]], np.float32)


def dim(d: onnx.TensorShapeProto.Dimension) -> int | str:
    return d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")


def dims_of(vi: onnx.ValueInfoProto) -> list[int | str]:
    return [dim(d) for d in vi.type.tensor_type.shape.dim]


class Graph:
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

    def node(self, op: str, inputs: list[str], outputs: int | list[str] = 1, **attrs: Any) -> list[str]:
        outs = [self.name(op.lower()) for _ in range(outputs)] if isinstance(outputs, int) else outputs
        self.g.node.append(helper.make_node(op, inputs, outs, name=self.name(op), **attrs))
        return outs


def uint8_nhwc_input(gr: Graph, height: int, width: int) -> None:
    g = gr.g
    old = g.input[0]
    name = old.name
    internal = gr.name("images_f32")
    for n in g.node:
        for i, x in enumerate(n.input):
            if x == name:
                n.input[i] = internal
    batch = dims_of(old)[0]
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


def _replace_outputs(gr: Graph, outputs: list[onnx.ValueInfoProto]) -> None:
    del gr.g.output[:]
    gr.g.output.extend(outputs)


def end2end(gr: Graph, conf: float, iou: float, max_det: int) -> None:
    raw = gr.g.output[0].name
    (t,) = gr.node("Transpose", [raw], perm=[0, 2, 1])  # [B, N, 4+nc]
    starts, ends, axis = (
        gr.const("s0", np.array([0], np.int64)),
        gr.const("e4", np.array([4], np.int64)),
        gr.const("ax2", np.array([2], np.int64)),
    )
    (cxcywh,) = gr.node("Slice", [t, starts, ends, axis])
    (boxes,) = gr.node("MatMul", [cxcywh, gr.const("to_xyxy", _CXCYWH_TO_XYXY)])  # [B, N, 4]
    big = gr.const("big", np.array([1 << 30], np.int64))
    ax1 = gr.const("ax1", np.array([1], np.int64))
    (all_scores,) = gr.node("Slice", [raw, gr.const("s4", np.array([4], np.int64)), big, ax1])  # [B, nc, N]
    # One label a box, its best class, as the gateway's NMS and Ultralytics' predictor decide:
    # the other classes' scores are zeroed (TopK rather than ReduceMax, whose axes moved to an
    # input in opset 18).
    best, _ = gr.node("TopK", [all_scores, gr.const("k1", np.array([1], np.int64))], outputs=2, axis=1)  # [B, 1, N]
    (is_best,) = gr.node("Equal", [all_scores, best])
    (mask,) = gr.node("Cast", [is_best], to=TensorProto.FLOAT)
    (scores,) = gr.node("Mul", [all_scores, mask])
    (selected,) = gr.node(
        "NonMaxSuppression",
        [
            boxes,
            scores,
            gr.const("max_out", np.array([max_det], np.int64)),
            gr.const("iou", np.array([iou], np.float32)),
            gr.const("conf", np.array([conf], np.float32)),
        ],
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


def v5(gr: Graph, nc: int) -> None:
    raw = gr.g.output[0].name
    internal = gr.name("raw")
    for n in gr.g.node:
        for i, x in enumerate(n.output):
            if x == raw:
                n.output[i] = internal
    (t,) = gr.node("Transpose", [internal], perm=[0, 2, 1])  # [B, N, 4+nc]
    ax = gr.const("ax2", np.array([2], np.int64))
    (box,) = gr.node("Slice", [t, gr.const("s0", np.array([0], np.int64)), gr.const("e4", np.array([4], np.int64)), ax])
    (cls,) = gr.node(
        "Slice", [t, gr.const("s4", np.array([4], np.int64)), gr.const("big", np.array([1 << 30], np.int64)), ax]
    )
    (obj,) = gr.node("ReduceMax", [cls], axes=[2], keepdims=1)
    (safe,) = gr.node("Max", [obj, gr.const("eps", np.array(1e-9, np.float32))])
    (norm,) = gr.node("Div", [cls, safe])
    gr.node("Concat", [box, obj, norm], outputs=[RAW_OUTPUT], axis=2)
    n = dims_of(gr.g.output[0])[2]
    _replace_outputs(gr, [helper.make_tensor_value_info(RAW_OUTPUT, TensorProto.FLOAT, ["batch", n, 5 + nc])])
