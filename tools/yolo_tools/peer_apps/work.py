"""The per-request work that the gateway does, for the peers that call Triton themselves.

Decode and letterbox (yolo_gateway.preprocess), the raw YOLO decode with class-aware NMS and the
boxes mapped back (yolo_gateway.postprocess), and the gateway's JSON for each detection: the same
functions, the same parameters (the gateway's defaults: conf 0.25, IoU 0.45, 100 detections), so
that a comparison of front ends is not one of preprocessing.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from yolo_gateway.postprocess import DetectParams, decode_raw, detections_json
from yolo_gateway.preprocess import Prepared, prepare_image

PARAMS = DetectParams(conf=0.25, iou=0.45, max_det=100)
MAX_PIXELS = 40_000_000  # the gateway's default decompression-bomb guard


@dataclass(frozen=True)
class Work:
    model: str  # the Triton model
    size: int  # its square input, fp32 NCHW in 0..1
    input_name: str
    output_name: str  # raw [4 + classes, anchors]
    names: tuple[str, ...]

    def prepare(self, data: bytes) -> Prepared:
        return prepare_image(
            data, "image/jpeg", in_w=self.size, in_h=self.size, layout="NCHW", dtype="FP32", max_pixels=MAX_PIXELS
        )

    def finish(self, output: np.ndarray, prepared: Prepared) -> list[dict[str, Any]]:
        """One image's raw output (no batch axis) -> the gateway's detections JSON."""
        det = decode_raw(output, PARAMS)
        det.boxes = prepared.letterbox.to_original(det.boxes)
        return detections_json(det, self.names)


def add_arguments(ap: argparse.ArgumentParser, server: bool = True) -> None:
    """The model's flags; `server`: also --port and --triton (KServe has its own: --http_port,
    --predictor_host)."""
    if server:
        ap.add_argument("--port", type=int, required=True, help="the HTTP port to serve on (127.0.0.1)")
        ap.add_argument("--triton", required=True, help="Triton's gRPC address, host:port")
    ap.add_argument("--triton-model", required=True, help="the Triton model")
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--input-name", default="images")
    ap.add_argument("--output-name", default="output0")
    ap.add_argument("--names", default="[]", help="the class names, a JSON list")


def from_args(args: argparse.Namespace) -> Work:
    return Work(args.triton_model, args.size, args.input_name, args.output_name, tuple(json.loads(args.names)))
