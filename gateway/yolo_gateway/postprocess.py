"""Decoding of YOLO outputs and class-aware NMS: pure, vectorised numpy + OpenCV.

Three output layouts, chosen from the model's metadata (see `signature.py`):

- ``raw``: Ultralytics v8/v11, ``[4+nc, N]`` per image: cx, cy, w, h, class scores;
- ``raw_t``: the same, transposed, ``[N, 4+nc]``;
- ``v5``: YOLOv5 style, ``[N, 5+nc]``: cx, cy, w, h, objectness, class scores,
  where a box's score is objectness × class score;
- ``end2end``: NMS already done in the graph: num_dets, det_boxes (xyxy),
  det_scores, det_classes.

NMS is OpenCV's batched (class-aware) NMS in C++: no Python loop over candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class DetectParams:
    conf: float
    iou: float
    max_det: int
    classes: tuple[int, ...] | None = None  # keep only these class ids
    max_nms: int = 10_000
    preprocess: str = "fast"  # or "parity": Ultralytics' own decode, resize and box mapping (preprocess.py)
    tier: str | None = None  # the latency tier the request asked for (variants.py); None: the default


@dataclass(slots=True)
class Detections:
    boxes: np.ndarray  # [K, 4] xyxy, float32
    scores: np.ndarray  # [K] float32
    classes: np.ndarray  # [K] int

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.scores)


def nms(boxes_cxcywh: np.ndarray, scores: np.ndarray, classes: np.ndarray, p: DetectParams) -> Detections:
    """Class-aware greedy NMS on candidates that already passed the confidence filter.

    Greedy NMS visits boxes by descending score, and a box is kept or dropped by
    the boxes kept before it alone. So NMS over the best-scored prefix keeps
    exactly the leading boxes of NMS over everything: run it on a prefix and
    grow the prefix only while fewer than `max_det` boxes survive. With a low
    `conf` (thousands of candidates) this bounds the work by `max_det`, where
    OpenCV alone would compare every box with every kept one.
    """
    n = len(scores)
    if n == 0:
        return Detections.empty()
    order = np.argsort(-scores, kind="stable")[: p.max_nms]
    xywh = boxes_cxcywh[order].astype(np.float32, copy=True)
    xywh[:, :2] -= xywh[:, 2:] / 2  # top-left corner, as OpenCV wants
    scores, classes = scores[order].astype(np.float32), classes[order].astype(np.int32)
    n = len(order)
    k = min(n, max(4 * p.max_det, 256))
    while True:
        # OpenCV's stubs say Sequence[float] and Sequence[int]; it takes ndarrays natively (no copy).
        picked = cv2.dnn.NMSBoxesBatched(xywh[:k], scores[:k], classes[:k], p.conf, p.iou)  # type: ignore[arg-type]
        keep = np.sort(np.asarray(picked, np.int64).reshape(-1))  # prefix order is score order
        if len(keep) >= p.max_det or k == n:
            break
        k = min(n, 4 * k)
    keep = keep[: p.max_det]
    xyxy = xywh[keep].copy()
    xyxy[:, 2:] += xyxy[:, :2]
    return Detections(xyxy, scores[keep], classes[keep].astype(np.int64))


def decode_scores(boxes_cxcywh: np.ndarray, class_scores: np.ndarray, p: DetectParams) -> Detections:
    """Best class per box, confidence filter, then NMS.

    `class_scores` is [nc, N] (channels first, as the raw layout stores it). As in
    Ultralytics, a `classes` filter applies after the best class is chosen.
    """
    best = class_scores.max(0)
    cand = np.flatnonzero(best > p.conf)  # the prefilter: most of N is dropped here
    cls = class_scores[:, cand].argmax(0)
    if p.classes is not None:
        keep = np.isin(cls, p.classes)
        cand, cls = cand[keep], cls[keep]
    if len(cand) == 0:
        return Detections.empty()
    return nms(boxes_cxcywh[cand], best[cand], cls, p)


def decode_raw(out: np.ndarray, p: DetectParams) -> Detections:
    """[4+nc, N] → detections in model-input pixels."""
    best = out[4:].max(0)
    sub = out[:, best > p.conf]
    return decode_scores(sub[:4].T, sub[4:], p)


def decode_raw_t(out: np.ndarray, p: DetectParams) -> Detections:
    """[N, 4+nc] → detections."""
    return decode_raw(out.T, p)


def decode_v5(out: np.ndarray, p: DetectParams) -> Detections:
    """[N, 5+nc] with objectness → detections (score = obj × class score)."""
    obj = out[:, 4]
    cand = np.flatnonzero(obj > p.conf)  # obj × cls ≤ obj, so this filter loses nothing
    sub = out[cand]
    scores = sub[:, 5:] * sub[:, 4:5]
    return decode_scores(sub[:, :4], scores.T, p)


def decode_end2end(
    num_dets: np.ndarray, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, p: DetectParams
) -> Detections:
    """In-graph NMS outputs for one image → detections above `conf`, at most `max_det`."""
    n = int(np.asarray(num_dets).reshape(-1)[0])
    boxes, scores, classes = boxes[:n], scores[:n], classes[:n].astype(np.int64)
    keep = scores > p.conf
    if p.classes is not None:
        keep &= np.isin(classes, p.classes)
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(-scores[idx], kind="stable")][: p.max_det]
    return Detections(boxes[idx].astype(np.float32), scores[idx].astype(np.float32), classes[idx])


DECODERS = {"raw": decode_raw, "raw_t": decode_raw_t, "v5": decode_v5}


def detections_json(det: Detections, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The response's detections: boxes in the original image's pixels (2 decimals), scores (4)."""
    boxes = np.round(det.boxes.astype(np.float64), 2).tolist()
    scores = np.round(det.scores.astype(np.float64), 4).tolist()
    out = []
    for (x1, y1, x2, y2), score, cls in zip(boxes, scores, det.classes.tolist(), strict=True):
        name = names[cls] if 0 <= cls < len(names) else str(cls)
        out.append(
            {"class_id": cls, "class_name": name, "confidence": score, "box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2}}
        )
    return out
