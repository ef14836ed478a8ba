"""Request pipeline: bytes → (thread pool) decode + letterbox → Triton → (thread pool) NMS → JSON dict.

The stages are `Detector.prepare` (preprocess.py), `Detector.infer` (triton.py, then
postprocess.py's decoders) and the JSON of `detect`. Around them, each in its own module: the
route to a tier or the canary (variants.py), the inference cache (cache.py), shadow traffic
(shadow.py), the warm-up and cold start (readiness.py), the request's parameters (parameters.py)
and admission (admission.py).

CPU work runs off the event loop in one bounded thread pool (OpenCV, numpy and
libjpeg release the GIL), so one process uses the pod's cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import metrics
from .admission import Admission
from .cache import InferenceCache
from .errors import (
    TritonOverloaded,
    TritonRejected,
    TritonTimeout,
    TritonUnavailable,
)
from .postprocess import DECODERS, Detections, DetectParams, decode_end2end, detections_json
from .preprocess import Prepared, prepare_image
from .settings import Settings
from .shadow import Shadow
from .signature import ModelSignature
from .triton import TritonService
from .variants import CANARY, Route, VariantPicker, same_input

log = logging.getLogger("yolo_gateway")


@dataclass(frozen=True, slots=True)
class Upload:
    data: bytes
    content_type: str | None


def _postprocess(
    sig: ModelSignature, outputs: dict[str, np.ndarray], prepared: list[Prepared], p: DetectParams
) -> tuple[list[Detections], float]:
    t0 = time.perf_counter()
    results = []
    for i, item in enumerate(prepared):
        if sig.output_format == "end2end":
            num_dets, boxes, scores, classes = (outputs[n][i] for n in sig.output_names)
            det = decode_end2end(num_dets, boxes, scores, classes, p)
        else:
            det = DECODERS[sig.output_format](outputs[sig.output_names[0]][i], p)
        det.boxes = item.letterbox.to_original(det.boxes)
        results.append(det)
    return results, time.perf_counter() - t0


def _key(p: Prepared) -> np.ndarray:
    """An image's cache key: prepare_image computes its fingerprint whenever the cache is on."""
    if p.fingerprint is None:
        raise RuntimeError("the inference cache needs the image's fingerprint (prepare_image(hash_image=True))")
    return p.fingerprint


class Detector:
    def __init__(self, settings: Settings, triton: TritonService) -> None:
        self.settings = settings
        self.triton = triton
        self.pool = ThreadPoolExecutor(max_workers=settings.workers(), thread_name_prefix="yolo-cpu")
        self.admission = Admission(settings.max_concurrency, settings.max_queue, settings.queue_timeout_s)
        self.warm = False  # /readyz waits for one detection through the pipeline
        self.cache = (
            InferenceCache(settings.cache_max_entries, settings.cache_ttl_s, settings.cache_max_difference)
            if settings.cache_ttl_s > 0
            else None
        )
        self.variants = VariantPicker(settings)
        self.shadow = Shadow(self)
        self._canary_logged = -1e9

    @property
    def shadows(self) -> set[asyncio.Task[None]]:
        """The shadow's calls in flight."""
        return self.shadow.tasks

    def close(self) -> None:
        self.shadow.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _signature(self, route: Route) -> ModelSignature:
        sig = self.triton.signature_of(route.model)
        if sig is None:
            if route.model == self.settings.model_name:
                return self.triton.require_signature()
            why = self.triton.model_errors.get(route.model, "not loaded yet")
            raise TritonUnavailable(
                f"tier {route.tier!r}: model {route.model} is not served: {why}",
                retry_after=self.settings.metadata_retry_s,
            )
        return sig

    async def prepare(self, uploads: list[Upload], sig: ModelSignature, params: DetectParams) -> list[Prepared]:
        """Decode and letterbox every upload for this model's input, in the thread pool."""
        s = self.settings
        loop = asyncio.get_running_loop()
        prepare = functools.partial(
            prepare_image,
            in_w=sig.width,
            in_h=sig.height,
            layout=sig.layout,
            dtype=sig.input_dtype,
            max_pixels=s.max_pixels,
            max_scans=s.max_jpeg_scans,
            parity=params.preprocess == "parity",
            hash_image=self.cache is not None,
        )
        return await asyncio.gather(
            *(loop.run_in_executor(self.pool, prepare, u.data, u.content_type) for u in uploads)
        )

    async def detect(
        self, uploads: list[Upload], params: DetectParams, request_id: str, deadline: float, warmup: bool = False
    ) -> list[dict[str, Any]]:
        """Detect on every upload with the model its route picks (tier, canary; variants.py); one
        Triton call per `max_batch_size` images, before `deadline` (loop time)."""
        start = time.perf_counter()
        route = (
            self.variants.primary()
            if warmup
            else self.variants.route(params.tier, self.triton.signature_of(self.settings.canary_model) is not None)
        )
        sig = self._signature(route)
        prepared = await self.prepare(uploads, sig, params)
        try:
            detections, cached, infer_s, post_s = await self._answer(sig, prepared, params, request_id, deadline)
        except (TritonUnavailable, TritonRejected, TritonOverloaded) as exc:
            if route.variant != CANARY:
                raise
            # A failing canary never fails a request: the current version answers it.
            if time.monotonic() - self._canary_logged > 10:  # a line per 10 s, not one per request
                self._canary_logged = time.monotonic()
                log.warning("canary %s failed, the current version answers: %s", route.model, exc.message)
            metrics.VARIANT_REQUESTS.labels("canary_fallback").inc()
            route = Route(self.settings.model_name, route.tier, "canary_fallback")
            current = self._signature(route)
            if not same_input(sig, current):
                prepared = await self.prepare(uploads, current, params)
            sig = current
            detections, cached, infer_s, post_s = await self._answer(sig, prepared, params, request_id, deadline)
        if not warmup:
            if route.variant in ("current", CANARY) and route.default_tier:
                metrics.VARIANT_REQUESTS.labels(route.variant).inc()
            if self.variants.mirror(route):
                self.shadow.mirror(uploads, sig, prepared, detections, params, request_id)
        total_s = time.perf_counter() - start

        if infer_s:
            metrics.STAGE_SECONDS.labels("infer").observe(infer_s)
            metrics.STAGE_SECONDS.labels("postprocess").observe(post_s)
        metrics.IMAGES.inc(len(uploads))
        model = {
            "name": sig.name,
            "version": sig.version,
            "tier": route.tier,
            "variant": CANARY if route.variant == CANARY else "current",
        }
        results = []
        for item, det, hit in zip(prepared, detections, cached, strict=True):
            metrics.STAGE_SECONDS.labels("decode").observe(item.decode_s)
            metrics.STAGE_SECONDS.labels("preprocess").observe(item.preprocess_s)
            metrics.DETECTIONS.inc(len(det))
            results.append(
                {
                    "model": model,
                    "image": {"width": item.letterbox.width, "height": item.letterbox.height},
                    "timings_ms": {
                        "decode": round(item.decode_s * 1e3, 3),
                        "preprocess": round(item.preprocess_s * 1e3, 3),
                        "infer": round(infer_s * 1e3, 3),
                        "postprocess": round(post_s * 1e3, 3),
                        "total": round(total_s * 1e3, 3),
                    },
                    "detections": detections_json(det, sig.class_names),
                    "cached": hit,
                }
            )
        return results

    async def _answer(
        self, sig: ModelSignature, prepared: list[Prepared], params: DetectParams, request_id: str, deadline: float
    ) -> tuple[list[Detections], list[bool], float, float]:
        """Detections per image from the cache or Triton: (detections, from the cache, infer s, NMS s)."""
        t_infer = time.perf_counter()
        group = (sig.name, sig.version, params.conf, params.iou, params.max_det, params.classes, params.preprocess)
        found: list[Detections | None] = [None] * len(prepared)
        if self.cache is not None:
            found = [self.cache.get(_key(p), (p.letterbox.width, p.letterbox.height, *group)) for p in prepared]
        todo = [i for i, f in enumerate(found) if f is None]
        infer_s = post_s = 0.0
        if todo:
            fresh, infer_s, post_s = await self.infer(
                sig, [prepared[i] for i in todo], params, request_id, deadline, t_infer
            )
            for i, det in zip(todo, fresh, strict=True):
                found[i] = det
                if self.cache is not None:
                    p = prepared[i]
                    self.cache.put(_key(p), (p.letterbox.width, p.letterbox.height, *group), det)
        missed = set(todo)
        return [d for d in found if d is not None], [i not in missed for i in range(len(prepared))], infer_s, post_s

    async def infer(
        self,
        sig: ModelSignature,
        prepared: list[Prepared],
        params: DetectParams,
        request_id: str,
        deadline: float,
        t_infer: float,
        demand: bool = True,
    ) -> tuple[list[Detections], float, float]:
        """Triton (one call per max_batch_size images) and NMS for these images. `demand`: the calls
        count in yolo_gateway_triton_requests (a request's; a shadow's are not)."""
        s = self.settings
        loop = asyncio.get_running_loop()
        chunk = sig.max_batch_size or 1
        calls = []
        for i in range(0, len(prepared), chunk):
            part = prepared[i : i + chunk]
            if not sig.max_batch_size:
                batch = part[0].tensor
            else:  # one image: a view with a batch axis, not a copy
                batch = part[0].tensor[None] if len(part) == 1 else np.stack([p.tensor for p in part])
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TritonTimeout("request deadline exceeded before inference")
            calls.append(self.triton.infer(batch, request_id, min(s.infer_timeout_s, remaining), sig))
        with metrics.TRITON_REQUESTS.track_inprogress() if demand else contextlib.nullcontext():
            parts = await asyncio.gather(*calls)
        outputs = {
            n: np.concatenate([p[n] for p in parts]) if len(parts) > 1 else parts[0][n] for n in sig.output_names
        }
        if not sig.max_batch_size:
            outputs = {n: v[None] for n, v in outputs.items()}
        infer_s = time.perf_counter() - t_infer
        detections, post_s = await loop.run_in_executor(self.pool, _postprocess, sig, outputs, prepared, params)
        return detections, infer_s, post_s
