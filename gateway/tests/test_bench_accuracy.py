"""The bench's accuracy measure (mAP50, precision/recall) on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from yolo_tools.bench.accuracy import Prediction, average_precision, map50, precision_recall
from yolo_tools.synthetic import Scene

SCENE = Scene(np.zeros((100, 100, 3), np.uint8), np.array([[0, 0, 10, 10], [50, 50, 70, 70]], np.float32), np.array([0, 1]))


def _pred(boxes, scores, classes) -> Prediction:
    return Prediction(np.array(boxes, np.float64).reshape(-1, 4), np.array(scores, np.float64), np.array(classes, np.int64))


def test_perfect_and_empty_predictions():
    perfect = _pred(SCENE.boxes, [0.9, 0.8], SCENE.classes)
    assert map50([perfect], [SCENE], 2) == 1.0
    assert precision_recall([perfect], [SCENE], 0.25) == (1.0, 1.0)
    assert map50([_pred([], [], [])], [SCENE], 2) == 0.0


def test_a_confident_false_positive_costs_precision_not_recall():
    # class 0: a wrong box ranked above the right one -> AP 0.5; class 1 perfect -> mAP 0.75
    pred = _pred([[80, 0, 90, 10], [0, 0, 10, 10], [50, 50, 70, 70]], [0.95, 0.9, 0.8], [0, 0, 1])
    assert map50([pred], [SCENE], 2) == pytest.approx(0.75)
    assert precision_recall([pred], [SCENE], 0.25) == (pytest.approx(2 / 3), 1.0)
    assert precision_recall([pred], [SCENE], 0.92) == (0.0, 0.0)  # only the false positive is that confident


def test_wrong_class_or_low_iou_is_no_match():
    pred = _pred([[0, 0, 10, 10], [55, 55, 75, 75]], [0.9, 0.9], [1, 1])  # class wrong; IoU 0.39
    assert map50([pred], [SCENE], 2) == 0.0
    assert average_precision(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == 1.0
