"""Synthetic "shapes" scenes: the dataset the bundled detector is trained on.

Pure numpy + OpenCV, so tests, the demo and the benchmarks can make fresh,
never-seen images with exact ground truth. Three classes of filled shapes
(ellipse, rectangle, triangle) at varied scale, aspect and rotation, on
textured backgrounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("circle", "rectangle", "triangle")


@dataclass
class Scene:
    """One generated image (BGR uint8) and its ground-truth boxes in pixels."""

    image: np.ndarray
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # xyxy
    classes: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = rng.integers(0, 4)
    if kind == 0:  # smooth colour gradient
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
        img = c0[None, None, :] * (1 - t) + c1[None, None, :] * t
        img = np.broadcast_to(img, (h, w, 3)).astype(np.float32)
    elif kind == 1:  # low-frequency noise texture
        small = rng.integers(0, 256, (rng.integers(3, 12), rng.integers(3, 12), 3)).astype(np.float32)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    elif kind == 2:  # stripes
        img = np.empty((h, w, 3), np.float32)
        img[:] = rng.integers(0, 256, 3)
        period = int(rng.integers(8, 48))
        colour = rng.integers(0, 256, 3)
        mask = ((np.arange(w)[None, :] + np.arange(h)[:, None] * rng.choice([0, 1])) // period) % 2 == 0
        img[np.broadcast_to(mask, (h, w))] = colour
    else:  # flat colour with clutter lines
        img = np.empty((h, w, 3), np.float32)
        img[:] = rng.integers(0, 256, 3)
        for _ in range(int(rng.integers(3, 12))):
            p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p0, p1, rng.integers(0, 256, 3).tolist(), int(rng.integers(1, 4)))
    img = img + rng.normal(0, rng.uniform(2, 12), (h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _contrasting_colour(rng: np.random.Generator, local_mean: np.ndarray) -> list[int]:
    for _ in range(20):
        c = rng.integers(0, 256, 3)
        if np.abs(c - local_mean).sum() > 150:
            return c.tolist()
    return (255 - local_mean).astype(int).tolist()


def _shape_points(rng: np.random.Generator, cls: int, cx: float, cy: float, size: float) -> np.ndarray:
    aspect = rng.uniform(0.6, 1.6)
    a, b = size * math.sqrt(aspect) / 2, size / math.sqrt(aspect) / 2
    angle = rng.uniform(0, 2 * math.pi)
    if cls == 0:
        t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        pts = np.stack([a * np.cos(t), b * np.sin(t)], 1)
    elif cls == 1:
        pts = np.array([[-a, -b], [a, -b], [a, b], [-a, b]])
    else:
        t = np.array([-math.pi / 2, math.pi / 6, 5 * math.pi / 6]) + rng.uniform(-0.3, 0.3, 3)
        pts = np.stack([a * np.cos(t), b * np.sin(t)], 1)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return pts @ rot.T + np.array([cx, cy])


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros(0)
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def make_scene(
    rng: np.random.Generator,
    width: int = 640,
    height: int = 480,
    max_objects: int = 6,
    min_objects: int = 1,
) -> Scene:
    """Draw a textured background with 1..max_objects non-overlapping shapes."""
    img = _background(rng, height, width)
    boxes: list[np.ndarray] = []
    classes: list[int] = []
    short = min(width, height)
    target = int(rng.integers(min_objects, max_objects + 1))
    for _ in range(target * 10):
        if len(boxes) >= target:
            break
        cls = int(rng.integers(0, len(CLASS_NAMES)))
        size = rng.uniform(0.08, 0.4) * short
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        pts = _shape_points(rng, cls, cx, cy, size)
        box = np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])
        if box[0] < 0 or box[1] < 0 or box[2] > width - 1 or box[3] > height - 1:
            continue
        if len(boxes) and _iou(box, np.array(boxes)).max() > 0.0:
            continue
        x1, y1, x2, y2 = box.astype(int)
        local = img[y1 : y2 + 1, x1 : x2 + 1].reshape(-1, 3).mean(0)
        colour = _contrasting_colour(rng, local)
        cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], colour, cv2.LINE_AA, shift=4)
        boxes.append(box)
        classes.append(cls)
    return Scene(
        image=img,
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        classes=np.array(classes, np.int64),
    )


def encode(scene_or_image: Scene | np.ndarray, fmt: str = ".jpg", quality: int = 90) -> bytes:
    """Encode a BGR image (or a Scene's image) to JPEG/PNG/WebP bytes."""
    img = scene_or_image.image if isinstance(scene_or_image, Scene) else scene_or_image
    params: list[int] = []
    if fmt in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif fmt == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, quality]
    ok, buf = cv2.imencode(fmt, img, params)
    if not ok:  # pragma: no cover - OpenCV always encodes these formats
        raise RuntimeError(f"cannot encode {fmt}")
    return buf.tobytes()


def match(
    pred_boxes: np.ndarray,
    pred_classes: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    iou_threshold: float = 0.5,
) -> tuple[int, int, int]:
    """Greedy one-to-one matching; returns (true positives, false positives, false negatives)."""
    used = np.zeros(len(gt_boxes), bool)
    tp = 0
    for box, cls in zip(pred_boxes, pred_classes, strict=True):
        ious = _iou(np.asarray(box, np.float64), gt_boxes.astype(np.float64))
        ious[(gt_classes != cls) | used] = -1
        if len(ious) and ious.max() >= iou_threshold:
            used[int(ious.argmax())] = True
            tp += 1
    return tp, len(pred_boxes) - tp, len(gt_boxes) - tp
