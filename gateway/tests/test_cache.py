"""The inference cache: its hash and bounds as pure units, then through the app and a real Triton."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
from gw_helpers import gateway_app

from yolo_gateway.cache import InferenceCache
from yolo_gateway.preprocess import prepare_image
from yolo_gateway.settings import Settings
from yolo_tools.synthetic import encode, make_scene

JPEG = {"content-type": "image/jpeg"}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def fp_of(img_bgr: np.ndarray) -> np.ndarray:
    """The fingerprint the gateway computes: of the letterboxed input of the JPEG-encoded frame."""
    data = cv2.imencode(".jpg", img_bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    return prepare_image(
        data, None, in_w=320, in_h=320, layout="NHWC", dtype="UINT8", max_pixels=10**8, hash_image=True
    ).fingerprint


def test_noise_stays_within_the_default_difference_and_new_objects_do_not():
    base = make_scene(np.random.default_rng(0), 960, 540).image
    f0 = fp_of(base).astype(np.int16)
    for k in range(5):
        noisy = np.clip(base + np.random.default_rng(k).normal(0, 4, base.shape), 0, 255).astype(np.uint8)
        assert np.abs(fp_of(noisy) - f0).max() <= Settings().cache_max_difference, "sensor noise hits"
    for k in range(5):
        changed = base.copy()
        cv2.rectangle(changed, (100 + 150 * k, 200), (140 + 150 * k, 280), (255, 255, 255), -1)  # a 40x80 object
        assert np.abs(fp_of(changed) - f0).max() > Settings().cache_max_difference, "a new object misses"


def fp(value: int) -> np.ndarray:
    return np.full((64, 64), value, np.uint8)


def test_hits_only_within_the_difference_the_same_group_and_the_ttl():
    clock = Clock()
    c = InferenceCache(max_entries=10, ttl_s=5, max_difference=3, clock=clock)
    g = (640, 480, "yolo", "1", 0.25)
    c.put(fp(100), g, "dets")
    assert c.get(fp(100), g) == "dets"
    assert c.get(fp(103), g) == "dets", "3 levels everywhere"
    one_block = fp(100)
    one_block[10, 20] = 104
    assert c.get(one_block, g) is None, "one block 4 levels off: over the threshold, never answered"
    assert c.get(fp(100), (640, 481, "yolo", "1", 0.25)) is None, "another size"
    assert c.get(fp(100), (640, 480, "yolo", "1", 0.5)) is None, "other parameters"
    clock.t = 5.1
    assert c.get(fp(100), g) is None and len(c) == 0, "expired and dropped"
    exact = InferenceCache(max_entries=10, ttl_s=5, max_difference=0, clock=clock)
    exact.put(fp(100), g, "dets")
    assert exact.get(fp(101), g) is None, "0: identical fingerprints only"


def test_bounded_in_entries_least_recently_used_out():
    c = InferenceCache(max_entries=3, ttl_s=100, max_difference=0)
    for v in range(3):
        c.put(fp(v * 50), ("g",), v)
    assert c.get(fp(0), ("g",)) == 0  # now the most recent
    c.put(fp(200), ("g",), 3)
    assert len(c) == 3 and c.get(fp(50), ("g",)) is None, "the least recently used went out"
    assert [c.get(fp(v), ("g",)) for v in (0, 100, 200)] == [0, 2, 3]


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
            assert not (await c.post("/v1/detect?conf=0.5", content=frame, headers=JPEG)).json()["cached"], (
                "other parameters"
            )
            files = [
                ("images", ("a.jpg", frame, "image/jpeg")),
                ("images", ("b.jpg", encode(make_scene(np.random.default_rng(23), 640, 480)), "image/jpeg")),
            ]
            batch = (await c.post("/v1/detect/batch", files=files)).json()["results"]
            assert [r["cached"] for r in batch] == [True, False] and batch[0]["detections"] == first["detections"]
            assert (count("hit") - hits, count("miss") - misses) == (2, 4)

    asyncio.run(go())
