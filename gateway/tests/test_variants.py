"""Routing among tiers, canary and shadow, and the shadow's agreement measure: pure, no Triton."""

from __future__ import annotations

import numpy as np
import pytest

from yolo_gateway.errors import BadParameter
from yolo_gateway.postprocess import Detections
from yolo_gateway.settings import Settings
from yolo_gateway.variants import Split, VariantPicker, agreement


@pytest.mark.parametrize("percent", [0, 0.5, 5, 10, 25, 33.33, 50, 99, 100])
def test_split_is_exact_in_every_window(percent):
    split = Split(percent)
    taken = [split.take() for _ in range(10_000)]
    assert sum(taken) == round(percent * 100)
    for start in range(0, 10_000, 100):  # any 100 consecutive requests hold the share, +-1
        assert abs(sum(taken[start : start + 100]) - percent) <= 1


def _dets(boxes, classes, scores=None) -> Detections:
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    return Detections(
        boxes, np.array(scores if scores is not None else [0.9] * len(boxes), np.float32), np.array(classes, np.int64)
    )


def test_agreement_matches_boxes_at_iou_half_and_compares_classes():
    a = _dets([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], [0, 1, 2])
    assert agreement(a, a) == (1.0, 1.0)
    shifted = _dets([[1, 0, 11, 10], [20, 20, 40, 40]], [0, 2])  # IoU 0.82 and 1.0; one class differs; one box missing
    boxes, classes = agreement(a, shifted)
    assert boxes == pytest.approx(2 / 3) and classes == pytest.approx(1 / 2)
    far = _dets([[5, 5, 15, 15]], [0])  # IoU 0.14: no match
    assert agreement(_dets([[0, 0, 10, 10]], [0]), far) == (0.0, None)
    assert agreement(Detections.empty(), Detections.empty()) == (1.0, None)
    assert agreement(a, Detections.empty()) == (0.0, None)


def test_agreement_matches_each_box_once():
    one = _dets([[0, 0, 10, 10]], [0])
    two = _dets([[0, 0, 10, 10], [0, 0, 10, 10]], [0, 0], [0.9, 0.8])
    assert agreement(two, one) == (0.5, 1.0)


def test_router_routes_tiers_and_the_canary_share():
    s = Settings(
        model_name="yolo",
        tiers={"fast": "yolo-fast", "std": "yolo"},
        default_tier="std",
        canary_model="yolo-canary",
        canary_percent=50,
    )
    router = VariantPicker(s)
    assert router.route("fast", canary_served=True).model == "yolo-fast"  # tier requests never count toward the canary
    routes = [router.route(None, canary_served=True) for _ in range(4)] + [
        router.route("std", canary_served=True) for _ in range(4)
    ]
    assert [r.variant for r in routes] == ["current", "canary"] * 4
    assert {r.tier for r in routes} == {"std"}
    assert router.route(None, canary_served=False).variant in ("current", "canary_unavailable")
    with pytest.raises(BadParameter, match="unknown tier 'turbo'"):
        router.route("turbo", canary_served=True)
    with pytest.raises(BadParameter, match="declares no tiers"):
        VariantPicker(Settings()).route("fast", canary_served=True)


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"tiers": {"fast": "yolo-fast"}, "default_tier": "std"}, "not one of the tiers"),
        ({"tiers": {"fast": "yolo-fast"}, "default_tier": "fast"}, "must be served by model_name"),
        ({"default_tier": "fast"}, "needs tiers"),
    ],
)
def test_settings_refuse_an_inconsistent_tier_map(kw, message):
    with pytest.raises(ValueError, match=message):
        Settings(**kw)
