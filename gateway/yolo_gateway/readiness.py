"""Readiness around the pipeline: the warm-up that /readyz waits for, and the cold start, where
requests wait (bounded) for a Triton tier scaled to zero to serve."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import numpy as np
import simplejpeg

from .admission import memory_limit_bytes, rss_bytes
from .errors import GatewayError, GatewayOverloaded, TritonUnavailable
from .parameters import detect_params

if TYPE_CHECKING:
    from .pipeline import Detector

log = logging.getLogger("yolo_gateway")


async def keep_warming_up(detector: Detector) -> None:
    """Background task: once the model is known, one detection through the whole pipeline
    (decode, letterbox, Triton, NMS) before the gateway reports ready (`detector.warm`), so the
    first user request pays for no thread start, first-call initialisation or cold channel."""
    from .pipeline import Upload

    s, triton = detector.settings, detector.triton
    image = simplejpeg.encode_jpeg(np.full((64, 64, 3), 114, np.uint8), colorspace="RGB")
    loop = asyncio.get_running_loop()
    tiers = set(s.tiers.values())  # the current version's other configs: part of being ready
    while not detector.warm:
        if triton.signature is not None and tiers <= {s.model_name, *triton.signatures}:
            biggest = max(sig.tensor_bytes for sig in [triton.signature, *triton.signatures.values()])
            detector.admission.fit_memory(
                biggest, s.max_concurrency, s.admission_memory_fraction, memory_limit_bytes(), rss_bytes()
            )
            try:
                await detector.detect(
                    [Upload(image, "image/jpeg")],
                    detect_params(s, None),
                    "warmup",
                    loop.time() + s.request_timeout_s,
                    warmup=True,
                )
                detector.warm = True
                log.info("warm: one detection through the pipeline")
                return
            except GatewayError as exc:  # Triton not serving yet: try again
                log.info("warm-up: %s", exc.message)
        await asyncio.sleep(s.metadata_retry_s)


async def wait_for_triton(detector: Detector) -> float:
    """Cold-start mode (`cold_start_timeout_s` > 0, Triton may be scaled to zero): wait, bounded,
    until a Triton serves the model; return the seconds waited. The waiting request counts as in
    flight and as Triton demand, which is what activates the Triton tier from zero."""
    s, triton, admission = detector.settings, detector.triton, detector.admission
    if not s.cold_start_timeout_s or triton.serving.is_set():
        return 0.0
    if admission.cold >= s.cold_start_max_waiting:
        raise GatewayOverloaded(f"{admission.cold} requests already wait for Triton to start", retry_after=5)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with admission.waiting():
        try:
            await asyncio.wait_for(triton.serving.wait(), s.cold_start_timeout_s)
        except TimeoutError:
            raise TritonUnavailable(
                f"no Triton served the model within {s.cold_start_timeout_s:g}s (the tier is scaled to zero and starting)",
                retry_after=5,
            ) from None
    waited = loop.time() - start
    if waited > 0.5:
        log.info("cold start: waited %.1fs for a Triton", waited)
    return waited
