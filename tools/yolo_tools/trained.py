"""The trained production-size model's contract, shared by its training and parity tools
(model_repository/tools: train_production.py, ultralytics_predictions.py), the tests, the bench
and the autoscale demo.

The model is Ultralytics' stock YOLOv8n (80 classes, COCO's names), trained on
yolo_tools.synthetic scenes with each shape labelled by a COCO id (SHAPE_IDS), and exported at
640 px as `yolo export` does by default (batch fixed to 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .synthetic import encode, make_scene

ROOT = Path(__file__).resolve().parents[2]
TRAINED = ROOT / "model_repository" / "trained"
ONNX = TRAINED / "yolov8n-shapes80-640.onnx"
CARD = TRAINED / "yolov8n-shapes80.json"
PREDICTIONS = TRAINED / "ultralytics-predictions.json"
DESCRIBED = "trained YOLOv8n (3.2 M parameters, 640 px, 80 classes; the default static export)"

# circle, rectangle, triangle -> COCO ids 32 (sports ball), 62 (tv) and 11 (stop sign): the first,
# middle and last thirds of the 80 class rows.
SHAPE_IDS = (32, 62, 11)

# The parity scenes: both sides of the comparison with Ultralytics' predictor draw these.
PARITY_SCENES = {"seed": 2024, "count": 24, "width": 1280, "height": 720, "max_objects": 10, "min_objects": 2}
# Both sides use the gateway's defaults (Ultralytics' own IoU default is 0.7).
PARITY_PARAMS = {"conf": 0.25, "iou": 0.45, "max_det": 300}


def parity_scenes() -> list[tuple[bytes, np.ndarray, np.ndarray]]:
    """(JPEG at quality 90, ground-truth boxes, COCO class ids) per parity scene."""
    p = PARITY_SCENES
    rng = np.random.default_rng(p["seed"])
    out = []
    for _ in range(p["count"]):
        s = make_scene(rng, p["width"], p["height"], p["max_objects"], p["min_objects"])
        out.append((encode(s, ".jpg", 90), s.boxes, np.array([SHAPE_IDS[c] for c in s.classes], np.int64)))
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def matched_ious(
    ref_boxes: np.ndarray, ref_classes: np.ndarray, boxes: np.ndarray, classes: np.ndarray, threshold: float = 0.5
) -> list[float]:
    """Greedy one-to-one pairs of the same class at IoU >= threshold, best IoU first: their IoUs."""
    ious = iou_matrix(ref_boxes, boxes)
    ious[np.asarray(ref_classes)[:, None] != np.asarray(classes)[None, :]] = -1
    out = []
    while ious.size and ious.max() >= threshold:
        i, j = np.unravel_index(int(ious.argmax()), ious.shape)
        out.append(float(ious[i, j]))
        ious[i, :] = -1
        ious[:, j] = -1
    return out
