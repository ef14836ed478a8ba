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

import onnx

from yolo_modelprep import graph
from yolo_modelprep.graph import RAW_OUTPUT, Graph, dims_of


class PrepareError(ValueError):
    """The source ONNX is not a plain YOLO export this tool understands."""


def load_plain(path: str | Path, imgsz: tuple[int, int] | None = None) -> tuple[onnx.ModelProto, int, int]:
    """Load and check a plain export; return (model, input height, input width).

    A dynamic-shape export gets its H and W fixed from `imgsz`, or else from
    the `imgsz` metadata that Ultralytics writes, since Triton serves fixed sizes.
    """
    model = onnx.load(str(path))
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise PrepareError("expected one input and one output (a plain YOLO export)")
    inp = model.graph.input[0]
    shape = dims_of(inp)
    if len(shape) != 4 or shape[1] != 3:
        raise PrepareError(f"expected input [B, 3, H, W], got {shape}")
    out_shape = dims_of(model.graph.output[0])
    if len(out_shape) != 3 or not isinstance(out_shape[1], int):
        raise PrepareError(f"expected a raw output [B, 4+nc, N], got {out_shape}")
    if imgsz is None and not (isinstance(shape[2], int) and isinstance(shape[3], int)):
        meta = {p.key: p.value for p in model.metadata_props}
        try:
            imgsz = tuple(json.loads(meta["imgsz"]))  # type: ignore[assignment]  # Ultralytics writes imgsz as a two-item list
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
        shape = dims_of(inp)
    return model, int(shape[2]), int(shape[3])


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
    nc = int(dims_of(model.graph.output[0])[1]) - 4  # type: ignore[operator]  # an exported detector's output has fixed class rows
    if nc < 1:
        raise PrepareError("output has no class channels")
    if end2end and output_format != "raw":
        raise PrepareError("--end2end replaces the raw output; it cannot be combined with --format v5")
    gr = Graph(model)
    # Name the graph's single output as the gateway and configs expect.
    old_out = model.graph.output[0].name
    if old_out != RAW_OUTPUT:
        for n in model.graph.node:
            for i, x in enumerate(n.output):
                if x == old_out:
                    n.output[i] = RAW_OUTPUT
        model.graph.output[0].name = RAW_OUTPUT
    if input_layout == "uint8-nhwc":
        graph.uint8_nhwc_input(gr, height, width)
    elif input_layout != "fp32-nchw":
        raise PrepareError(f"unknown input layout {input_layout!r}")
    if end2end:
        graph.end2end(gr, conf, iou, max_det)
    elif output_format == "v5":
        graph.v5(gr, nc)
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
