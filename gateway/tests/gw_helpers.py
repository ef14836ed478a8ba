"""Helpers shared by the gateway tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import AsyncIterator

import httpx
import numpy as np

from yolo_gateway.app import create_app
from yolo_gateway.settings import Settings
from yolo_tools.local_triton import LocalTriton


@contextlib.asynccontextmanager
async def gateway_app(settings: Settings, wait_for_model: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app in this process (lifespan included), reached through httpx's ASGI transport."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        if wait_for_model:
            for _ in range(300):
                if app.state.triton.signature is not None and app.state.detector.warm:
                    break
                await asyncio.sleep(0.05)
            assert app.state.detector.warm, "model metadata never loaded, or the warm-up never succeeded"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=60) as c:
            c.app = app  # type: ignore[attr-defined]  # keeps the app on the client for tests that reach into its state
            yield c


def triton_stats(triton: LocalTriton, model: str) -> dict[str, int]:
    """Inference and execution counts from Triton's own statistics API."""
    with urllib.request.urlopen(f"{triton.http_url}/v2/models/{model}/stats", timeout=5) as r:
        stats = json.loads(r.read())["model_stats"][0]
    return {
        "inference_count": int(stats.get("inference_count", 0)),
        "execution_count": int(stats.get("execution_count", 0)),
    }


def quiet_stats(triton: LocalTriton, model: str, timeout: float = 5.0) -> dict[str, int]:
    """triton_stats once the counts hold still. A backend reports a batch's statistics after it has
    answered it, so a "before" read right after traffic can miss the last batch and count it in the
    "after": poll, bounded, until two reads 0.2 s apart agree."""
    deadline = time.monotonic() + timeout
    last = triton_stats(triton, model)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = triton_stats(triton, model)
        if now == last:
            return now
        last = now
    return last


def settled_counts(
    tritons: list[LocalTriton], model: str, before: list[int], expected: int, timeout: float = 10.0
) -> list[int]:
    """Inferences each Triton counted since `before`. A backend sends its responses before it
    reports their statistics, so a client can hold every answer while the last batch is not yet
    counted: poll, bounded, until `expected` inferences are counted in all, then return them."""
    deadline = time.monotonic() + timeout
    while True:
        counts = [triton_stats(t, model)["inference_count"] - b for t, b in zip(tritons, before, strict=True)]
        if sum(counts) >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def boxes_of(result: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dets = result["detections"]
    boxes = np.array([[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in dets], np.float32).reshape(-1, 4)
    return boxes, np.array([d["class_id"] for d in dets]), np.array([d["confidence"] for d in dets])
