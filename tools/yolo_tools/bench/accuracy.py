"""Detection accuracy on held-out synthetic scenes: mAP50 (all-point interpolated AP per class, the
VOC/Ultralytics way, IoU 0.5), and precision/recall at an operating confidence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..synthetic import Scene, match


@dataclass
class Prediction:
    boxes: np.ndarray  # [K, 4] xyxy
    scores: np.ndarray  # [K]
    classes: np.ndarray  # [K]


def from_response(result: dict) -> Prediction:
    dets = result["detections"]
    return Prediction(
        np.array([[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in dets], np.float64).reshape(-1, 4),
        np.array([d["confidence"] for d in dets], np.float64),
        np.array([d["class_id"] for d in dets], np.int64),
    )


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    union = np.prod(box[2:] - box[:2]) + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) - inter
    return inter / np.maximum(union, 1e-9)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (all-point interpolation)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[1.0], precision, [0.0]])
    p = np.flip(np.maximum.accumulate(np.flip(p)))
    i = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[i + 1] - r[i]) * p[i + 1]))


def map50(predictions: list[Prediction], scenes: list[Scene], num_classes: int) -> float:
    """Mean over classes of AP at IoU 0.5: each class's detections over all images, most confident
    first, each matched to the best unmatched ground-truth box of its class."""
    aps = []
    for c in range(num_classes):
        gts = [s.boxes[s.classes == c].astype(np.float64) for s in scenes]
        total = sum(len(g) for g in gts)
        if total == 0:
            continue
        found = [
            (float(score), i, box)
            for i, p in enumerate(predictions)
            for box, score, cls in zip(p.boxes, p.scores, p.classes, strict=True)
            if cls == c
        ]
        found.sort(key=lambda x: -x[0])
        used = [np.zeros(len(g), bool) for g in gts]
        tp = np.zeros(len(found))
        for k, (_, i, box) in enumerate(found):
            if len(gts[i]):
                ious = _iou(box, gts[i])
                ious[used[i]] = -1
                j = int(ious.argmax())
                if ious[j] >= 0.5:
                    used[i][j] = True
                    tp[k] = 1
        ctp = np.cumsum(tp)
        recall = ctp / total
        precision = ctp / np.arange(1, len(found) + 1) if len(found) else np.zeros(0)
        aps.append(average_precision(recall, precision))
    return float(np.mean(aps)) if aps else 0.0


def precision_recall(predictions: list[Prediction], scenes: list[Scene], conf: float) -> tuple[float, float]:
    tp = fp = fn = 0
    for p, s in zip(predictions, scenes, strict=True):
        keep = p.scores >= conf
        a, b, c = match(p.boxes[keep], p.classes[keep], s.boxes, s.classes, 0.5)
        tp, fp, fn = tp + a, fp + b, fn + c
    return tp / max(1, tp + fp), tp / max(1, tp + fn)
