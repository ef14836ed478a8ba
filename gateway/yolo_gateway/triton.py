"""The one Triton client of a gateway process: metadata, readiness and inference over its channels.

All requests share this client. Its channels (`channels.py`) are one per Triton pod under
`least_loaded` routing (the default; `routing.py` picks the pod with fewer calls outstanding from
this gateway) or one over every pod under `round_robin`, and follow a headless Service's pods. A
call that fails UNAVAILABLE (a pod that was killed or is going away) is retried, with jittered
backoff, on another pod, within the request's deadline and never while the circuit is open
(`failures.py`: the circuit breaker and what each Triton error means).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import numpy as np
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from . import metrics
from .channels import Channels, Resolver, resolve_addresses
from .errors import TritonRejected, TritonUnavailable
from .failures import CircuitBreaker, classify
from .routing import Endpoint
from .settings import Settings
from .signature import ModelSignature, parse_signature

log = logging.getLogger("yolo_gateway.triton")


class TritonService:
    """The process-wide client: metadata, readiness and batched inference."""

    def __init__(self, settings: Settings, resolver: Resolver = resolve_addresses) -> None:
        self.settings = settings
        self.channels = Channels(settings, resolver)
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s)
        self.signature: ModelSignature | None = None  # the primary model (model_name)
        # The other models this gateway routes to (tiers, canary, shadow): name -> signature once read,
        # name -> why not while it is not (a failed canary is reported, and never blocks the primary).
        self.extra_models = sorted(
            {*settings.tiers.values(), settings.canary_model, settings.shadow_model} - {"", settings.model_name}
        )
        self.signatures: dict[str, ModelSignature] = {}
        self.model_errors: dict[str, str] = dict.fromkeys(self.extra_models, "not loaded yet")
        self.serving = asyncio.Event()  # a Triton served the model at the last look (cold-start mode follows it)

    async def close(self) -> None:
        await self.channels.close()

    async def load_signature(self, model: str | None = None) -> ModelSignature:
        """Read a model's signature (default: the primary model's) from Triton."""
        s = self.settings
        name, version = (model, "") if model else (s.model_name, s.model_version)
        timeout = s.infer_timeout_s
        client = self.channels.any_client()
        meta = await client.get_model_metadata(name, version, as_json=True, client_timeout=timeout)
        config = await client.get_model_config(name, version, as_json=True, client_timeout=timeout)
        sig = parse_signature(meta, config)
        log.info("model %s v%s: %s", sig.name, sig.version, sig.describe())
        if model:
            self.signatures[name] = sig
            self.model_errors.pop(name, None)
        else:
            self.signature = sig
        return sig

    async def keep_loading_extras(self) -> None:
        """Background task: read the other models' signatures; one that is missing or broken is
        retried (backing off to 10 s) and reported, and the primary model serves without it."""
        pause = self.settings.metadata_retry_s
        while missing := [m for m in self.extra_models if m not in self.signatures]:
            for model in missing:
                try:
                    await self.load_signature(model)
                except InferenceServerException as exc:
                    self.model_errors[model] = exc.message() or str(exc)
                except Exception as exc:  # a model the gateway cannot serve
                    self.model_errors[model] = str(exc)
                if model in self.model_errors:
                    log.info("model %s not served: %s", model, self.model_errors[model])
                metrics.MODEL_READY.labels(model).set(0 if model in self.model_errors else 1)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)

    def signature_of(self, model: str) -> ModelSignature | None:
        return self.signature if model == self.settings.model_name else self.signatures.get(model)

    async def keep_loading_signature(self) -> None:
        """Background task: retry until the model's metadata is read (Triton may start later)."""
        while self.signature is None:
            try:
                await self.load_signature()
            except InferenceServerException as exc:
                log.info(
                    "waiting for model %s on %s: %s", self.settings.model_name, self.settings.triton_url, exc.message()
                )
            except Exception as exc:  # a model we cannot serve: keep saying so, stay unready
                log.error("cannot serve model %s: %s", self.settings.model_name, exc)
            if self.signature is None:
                await asyncio.sleep(self.settings.metadata_retry_s)

    async def keep_watching(self, waiting: Callable[[], int]) -> None:
        """Background task (cold-start mode): follow whether any Triton serves the model, every
        second, or every 0.25 s while requests wait for one."""
        while True:
            if await self.ready():
                self.serving.set()
            else:
                self.serving.clear()
            await asyncio.sleep(0.25 if waiting() else 1.0)

    async def ready(self) -> bool:
        if self.signature is None or self.breaker.state == CircuitBreaker.OPEN:
            return False
        try:
            return bool(
                await self.channels.any_client().is_model_ready(
                    self.settings.model_name, self.settings.model_version, client_timeout=1.0
                )
            )
        except InferenceServerException:
            return False

    def require_signature(self) -> ModelSignature:
        if self.signature is None:
            raise TritonUnavailable("the model is not loaded yet", retry_after=self.settings.metadata_retry_s)
        return self.signature

    async def infer(
        self, batch: np.ndarray, request_id: str, timeout_s: float, sig: ModelSignature | None = None
    ) -> dict[str, np.ndarray]:
        """One Triton call for a batch of images to one model (default: the primary); returns output
        name → array with batch axis. UNAVAILABLE is retried (at most `infer_retries` times, jittered
        backoff) within `timeout_s`."""
        primary = sig is None or sig.name == self.settings.model_name
        sig = sig or self.require_signature()
        version = self.settings.model_version if primary else ""
        inp = InferInput(sig.input_name, list(batch.shape), sig.input_dtype)
        inp.set_data_from_numpy(batch)
        outputs = [InferRequestedOutput(n) for n in sig.output_names]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        backoff = self.settings.retry_backoff_s
        self.breaker.before_call()
        pool = self.channels.pool
        tried: set[str] = set()
        for attempt in range(self.settings.infer_retries + 1):
            ep: Endpoint | None = pool.pick(tried) if pool else None
            if ep is not None and pool is not None:
                pool.begin(ep)
            try:
                result = await (ep.client if ep else self.channels.client).infer(
                    sig.name,
                    [inp],
                    model_version=version,
                    outputs=outputs,
                    request_id=request_id,
                    client_timeout=max(deadline - loop.time(), 0.001),
                )
            except InferenceServerException as exc:
                error, kind, is_failure = classify(exc)
                metrics.TRITON_ERRORS.labels(kind).inc()
                if kind == "unavailable" and ep is not None and pool is not None:
                    pool.avoid(ep)  # retried on another pod, and passed over for a moment
                    tried.add(ep.address)
                pause = backoff * (2**attempt) * random.uniform(0.5, 1.5)
                if (
                    kind == "unavailable"
                    and attempt < self.settings.infer_retries
                    and self.breaker.state != CircuitBreaker.OPEN
                    and loop.time() + pause < deadline
                ):
                    # Another pod may serve it; only the call's final outcome counts for the breaker,
                    # so one killed pod among several does not open the circuit for all of them.
                    metrics.TRITON_RETRIES.inc()
                    await asyncio.sleep(pause)
                    continue
                if is_failure:
                    self.breaker.failure()
                else:
                    self.breaker.release()
                retry = self.breaker.retry_after() if self.breaker.state == CircuitBreaker.OPEN else 1.0
                raise error(
                    f"Triton: {exc.message()}", retry_after=retry if error is not TritonRejected else None
                ) from exc
            except asyncio.CancelledError:
                self.breaker.release()
                raise
            finally:
                if ep is not None and pool is not None:
                    pool.end(ep)
            self.breaker.success()
            self.serving.set()
            return {n: result.as_numpy(n) for n in sig.output_names}
        raise AssertionError("unreachable")  # pragma: no cover
