"""Shadow traffic: a share of the answered requests mirrored to the shadow model in the
background. Its answers are never returned and nothing waits for them; what it found is compared
with what the request was answered with (box match, class agreement) in the metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from . import metrics
from .postprocess import Detections, DetectParams
from .preprocess import Prepared
from .signature import ModelSignature
from .variants import agreement, same_input

if TYPE_CHECKING:
    from .pipeline import Detector, Upload

log = logging.getLogger("yolo_gateway")


class Shadow:
    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.tasks: set[asyncio.Task[None]] = set()  # mirrored calls in flight
        self._logged = -1e9

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()

    def mirror(
        self,
        uploads: list[Upload],
        sig: ModelSignature,
        prepared: list[Prepared],
        detections: list[Detections],
        params: DetectParams,
        request_id: str,
    ) -> None:
        """Start the shadow's call for an answered request. Skipped (counted) while too many are in flight."""
        s = self.detector.settings
        shadow = self.detector.triton.signature_of(s.shadow_model)
        if shadow is None or len(self.tasks) >= s.shadow_max_inflight:
            metrics.SHADOW_REQUESTS.labels("skipped").inc()
            return
        task = asyncio.create_task(self._call(uploads, sig, shadow, prepared, detections, params, request_id))
        self.tasks.add(task)
        metrics.SHADOW_INFLIGHT.set(len(self.tasks))

        def done(t: asyncio.Task[None]) -> None:
            self.tasks.discard(t)
            metrics.SHADOW_INFLIGHT.set(len(self.tasks))

        task.add_done_callback(done)

    async def _call(
        self,
        uploads: list[Upload],
        sig: ModelSignature,
        shadow: ModelSignature,
        prepared: list[Prepared],
        detections: list[Detections],
        params: DetectParams,
        request_id: str,
    ) -> None:
        d = self.detector
        start = time.perf_counter()
        try:
            if not same_input(sig, shadow):
                prepared = await d.prepare(uploads, shadow, params)
            deadline = asyncio.get_running_loop().time() + d.settings.infer_timeout_s
            theirs, _, _ = await d.infer(
                shadow, prepared, params, f"shadow-{request_id}", deadline, start, demand=False
            )
        except Exception as exc:  # a broken shadow is reported, never raised
            metrics.SHADOW_REQUESTS.labels("error").inc()
            if time.monotonic() - self._logged > 10:
                self._logged = time.monotonic()
                log.warning("shadow %s failed: %s", shadow.name, getattr(exc, "message", exc))
            return
        metrics.SHADOW_LATENCY.observe(time.perf_counter() - start)
        for ours, other in zip(detections, theirs, strict=True):
            boxes, classes = agreement(ours, other)
            metrics.SHADOW_BOX_MATCH.observe(boxes)
            if classes is not None:
                metrics.SHADOW_CLASS_AGREEMENT.observe(classes)
        metrics.SHADOW_REQUESTS.labels("ok").inc()
