"""The inference cache: its hash and bounds as pure units, then through the app and a real Triton."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from gw_helpers import gateway_app

from yolo_gateway.cache import InferenceCache, dhash
from yolo_gateway.settings import Settings
from yolo_gateway.synthetic import encode, make_scene

JPEG = {"content-type": "image/jpeg"}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def rgb(seed: int, w: int = 320, h: int = 320) -> np.ndarray:
    return make_scene(np.random.default_rng(seed), w, h).image[:, :, ::-1].copy()


def test_dhash_is_stable_for_a_repeat_and_far_for_another_scene():
    a, b = rgb(1), rgb(2)
    assert dhash(a) == dhash(a.copy())
    noisy = np.clip(a.astype(np.int16) + np.random.default_rng(0).integers(-2, 3, a.shape), 0, 255).astype(np.uint8)
    assert (dhash(a) ^ dhash(noisy)).bit_count() <= 24, "sensor noise moves few bits"
    assert (dhash(a) ^ dhash(b)).bit_count() > 60, "another scene is far away (256 bits)"
    assert dhash(a) < 2**256


def test_hits_only_within_the_distance_the_same_group_and_the_ttl():
    clock = Clock()
    c = InferenceCache(max_entries=10, ttl_s=5, max_distance=3, clock=clock)
    g = (640, 480, "yolo", "1", 0.25)
    c.put(0b1111, g, "dets")
    assert c.get(0b1111, g) == "dets"
    assert c.get(0b0111, g) == "dets", "1 bit away"
    assert c.get(0b1111 ^ 0b1111_0000, g) is None, "4 bits away: over the threshold, never answered"
    assert c.get(0b1111, (640, 481, "yolo", "1", 0.25)) is None, "another size"
    assert c.get(0b1111, (640, 480, "yolo", "1", 0.5)) is None, "other parameters"
    clock.t = 5.1
    assert c.get(0b1111, g) is None and len(c) == 0, "expired and dropped"
    exact = InferenceCache(max_entries=10, ttl_s=5, max_distance=0, clock=clock)
    exact.put(0b1111, g, "dets")
    assert exact.get(0b0111, g) is None, "distance 0: identical hashes only"


def test_bounded_in_entries_least_recently_used_out():
    c = InferenceCache(max_entries=3, ttl_s=100)
    for h in range(3):
        c.put(h, ("g",), h)
    assert c.get(0, ("g",)) == 0  # 0 is now the most recent
    c.put(3, ("g",), 3)
    assert len(c) == 3 and c.get(1, ("g",)) is None, "1 was the least recently used"
    assert [c.get(h, ("g",)) for h in (0, 2, 3)] == [0, 2, 3]


@pytest.mark.triton
def test_a_repeated_frame_is_answered_from_the_cache(triton):
    from prometheus_client import REGISTRY

    frame = encode(make_scene(np.random.default_rng(21), 960, 540))
    other = encode(make_scene(np.random.default_rng(22), 960, 540))

    def count(result: str) -> float:
        return REGISTRY.get_sample_value("yolo_gateway_cache_total", {"result": result}) or 0.0

    async def go() -> None:
        settings = Settings(triton_url=triton.grpc_target, cache_ttl_s=60, cache_max_entries=16)
        async with gateway_app(settings) as c:
            hits, misses = count("hit"), count("miss")
            first = (await c.post("/v1/detect", content=frame, headers=JPEG)).json()
            again = (await c.post("/v1/detect", content=frame, headers=JPEG)).json()
            assert not first["cached"] and again["cached"]
            assert again["detections"] == first["detections"] and first["detections"]
            assert again["timings_ms"]["infer"] == 0
            assert not (await c.post("/v1/detect", content=other, headers=JPEG)).json()["cached"]
            assert not (await c.post("/v1/detect?conf=0.5", content=frame, headers=JPEG)).json()["cached"], "other parameters"
            files = [("images", ("a.jpg", frame, "image/jpeg")), ("images", ("b.jpg", encode(make_scene(np.random.default_rng(23), 640, 480)), "image/jpeg"))]
            batch = (await c.post("/v1/detect/batch", files=files)).json()["results"]
            assert [r["cached"] for r in batch] == [True, False] and batch[0]["detections"] == first["detections"]
            assert (count("hit") - hits, count("miss") - misses) == (2, 4)

    asyncio.run(go())
