"""A request's detection parameters: defaults, overrides, class names and ids, and 400s."""

from __future__ import annotations

import pytest

from yolo_gateway.errors import BadParameter
from yolo_gateway.parameters import class_ids, detect_params
from yolo_gateway.settings import Settings

NAMES = ("circle", "square", "triangle")


def test_the_query_overrides_the_service_defaults():
    s = Settings()
    p = detect_params(s, None)
    assert (p.conf, p.iou, p.max_det, p.classes, p.preprocess, p.tier) == (
        s.conf,
        s.iou,
        s.max_det,
        None,
        s.preprocess,
        None,
    )
    q = detect_params(s, NAMES, conf=0.5, iou=0.3, max_det=7, classes=["square"], preprocess="parity", tier="fast")
    assert (q.conf, q.iou, q.max_det, q.classes, q.preprocess, q.tier) == (0.5, 0.3, 7, (1,), "parity", "fast")


def test_classes_by_id_or_name_comma_separated_or_repeated():
    assert class_ids(NAMES, ["triangle,0", "2", " square "]) == (0, 1, 2)
    assert class_ids(NAMES, [",", ""]) is None
    assert class_ids(NAMES, None) is None


@pytest.mark.parametrize(
    ("classes", "message"),
    [(["hexagon"], "unknown class 'hexagon'"), (["3"], "out of range 0..2"), (["-1"], "out of range")],
)
def test_bad_classes_are_400s(classes, message):
    with pytest.raises(BadParameter, match=message):
        class_ids(NAMES, classes)


def test_max_det_over_the_limit_is_a_400():
    s = Settings()
    with pytest.raises(BadParameter, match=f"max_det must be <= {s.max_det_limit}"):
        detect_params(s, None, max_det=s.max_det_limit + 1)
