"""Pure postprocessing: class-aware NMS against a reference, and the three output layouts."""

from __future__ import annotations

import numpy as np
import pytest

from yolo_gateway.postprocess import DetectParams, decode_end2end, decode_raw, decode_raw_t, decode_v5


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def reference(raw: np.ndarray, p: DetectParams) -> list[tuple[int, float, tuple[float, ...]]]:
    """Plain-Python greedy class-aware NMS, the textbook definition."""
    boxes = raw[:4].T
    scores = raw[4:]
    cands = []
    for i in range(raw.shape[1]):
        c = int(scores[:, i].argmax())
        s = float(scores[c, i])
        if s > p.conf and (p.classes is None or c in p.classes):
            cx, cy, w, h = boxes[i]
            cands.append((s, c, np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])))
    cands.sort(key=lambda t: -t[0])
    kept: list[tuple[float, int, np.ndarray]] = []
    for s, c, b in cands:
        if len(kept) == p.max_det:
            break
        if all(kc != c or _iou(b, kb) <= p.iou for _, kc, kb in kept):
            kept.append((s, c, b))
    return [(c, s, tuple(b)) for s, c, b in kept[: p.max_det]]


def make_raw(rng: np.random.Generator, nc: int = 3, n: int = 2100, clusters: int = 12) -> np.ndarray:
    """A realistic raw output: clusters of overlapping boxes around a few objects, plus noise."""
    raw = np.zeros((4 + nc, n), np.float32)
    raw[0:2] = rng.uniform(0, 320, (2, n))
    raw[2:4] = rng.uniform(4, 60, (2, n))
    raw[4:] = rng.uniform(0, 0.2, (nc, n))
    for k in range(clusters):
        idx = rng.choice(n, 15, replace=False)
        centre = rng.uniform(40, 280, 2)
        raw[0:2, idx] = centre[:, None] + rng.normal(0, 3, (2, 15))
        raw[2:4, idx] = rng.uniform(30, 80, 2)[:, None] + rng.normal(0, 2, (2, 15))
        raw[4 + k % nc, idx] = rng.uniform(0.3, 0.95, 15)
    return raw


def _as_tuples(det) -> list[tuple[int, float, tuple[float, ...]]]:
    return [(int(c), float(s), tuple(b)) for b, s, c in zip(det.boxes, det.scores, det.classes, strict=True)]


def _assert_same(got, want) -> None:
    assert len(got) == len(want)
    for (gc, gs, gb), (wc, ws, wb) in zip(got, want, strict=True):
        assert gc == wc and gs == pytest.approx(ws, abs=1e-6)
        np.testing.assert_allclose(gb, wb, atol=1e-3)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    "params", [DetectParams(0.25, 0.45, 300), DetectParams(0.5, 0.7, 5), DetectParams(0.1, 0.3, 300, classes=(0, 2))]
)
def test_raw_decode_matches_reference_nms(seed, params):
    raw = make_raw(np.random.default_rng(seed))
    _assert_same(_as_tuples(decode_raw(raw, params)), reference(raw, params))


@pytest.mark.parametrize("max_det", [1, 20, 300])
def test_low_conf_prefix_nms_is_exact(max_det):
    """conf 0.001: every one of 2100 boxes is a candidate; the prefix shortcut must not change the answer."""
    raw = make_raw(np.random.default_rng(11))
    p = DetectParams(0.001, 0.45, max_det)
    got = _as_tuples(decode_raw(raw, p))
    assert len(got) == max_det
    _assert_same(got, reference(raw, p))


def test_nms_is_class_aware():
    # two identical boxes of different classes both survive; same class: one survives
    raw = np.zeros((6, 3), np.float32)
    raw[:4] = np.array([[100, 100, 50, 50]] * 3, np.float32).T
    raw[4, 0], raw[5, 1], raw[4, 2] = 0.9, 0.8, 0.7
    det = decode_raw(raw, DetectParams(0.25, 0.45, 100))
    assert sorted(det.classes.tolist()) == [0, 1]
    assert det.scores.tolist() == pytest.approx([0.9, 0.8])


def test_empty_and_all_below_threshold():
    raw = np.zeros((7, 100), np.float32)
    assert len(decode_raw(raw, DetectParams(0.25, 0.45, 100))) == 0
    raw[4:] = 0.2
    assert len(decode_raw(raw, DetectParams(0.25, 0.45, 100))) == 0


def test_max_nms_caps_candidates_and_keeps_the_best():
    raw = make_raw(np.random.default_rng(9))
    full = decode_raw(raw, DetectParams(0.25, 0.45, 300))
    capped = decode_raw(raw, DetectParams(0.25, 0.45, 300, max_nms=50))
    assert capped.scores.max() == pytest.approx(full.scores.max())
    assert len(capped) <= len(full)


def test_transposed_and_v5_layouts_decode_to_the_same_boxes():
    raw = make_raw(np.random.default_rng(3))
    p = DetectParams(0.25, 0.45, 300)
    want = _as_tuples(decode_raw(raw, p))
    _assert_same(_as_tuples(decode_raw_t(np.ascontiguousarray(raw.T), p)), want)
    cls = raw[4:].T
    obj = cls.max(1, keepdims=True)
    v5 = np.concatenate([raw[:4].T, obj, cls / np.maximum(obj, 1e-9)], 1)
    got = _as_tuples(decode_v5(v5, p))
    assert [g[0] for g in got] == [w[0] for w in want]
    np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], atol=1e-5)


def test_end2end_filters_by_count_conf_classes_and_max_det():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 2, 2], [9, 9, 9, 9]], np.float32)
    scores = np.array([0.9, 0.3, 0.6, 0.99], np.float32)  # the 4th is padding beyond num_dets
    classes = np.array([0, 1, 2, 0], np.int32)
    det = decode_end2end(np.array([3], np.int32), boxes, scores, classes, DetectParams(0.25, 0.45, 100))
    assert det.scores.tolist() == pytest.approx([0.9, 0.6, 0.3])
    det = decode_end2end(np.array([3], np.int32), boxes, scores, classes, DetectParams(0.5, 0.45, 1))
    assert det.classes.tolist() == [0]
    det = decode_end2end(np.array([3], np.int32), boxes, scores, classes, DetectParams(0.1, 0.45, 10, classes=(1, 2)))
    assert det.classes.tolist() == [2, 1]
