"""The one Triton client of a gateway process: its channels and the pick of a pod (its circuit breaker
and error mapping: failures.py).

All requests share this client. Routing (`routing.py`, YOLO_GATEWAY_ROUTING): `least_loaded`
(the default) holds one channel per Triton pod and sends each call to the pod with fewer calls
outstanding from this gateway (power of two random choices); `round_robin` holds one channel over
every pod and lets gRPC's ``round_robin`` policy spread the calls. Either applies to a target that
names several endpoints (``ipv4:a:8001,b:8001``) or a headless Service (``dns:///``).

A ``dns:///name:port`` target (a headless Service) is resolved by the gateway itself
every ``resolve_interval_s``: gRPC's own DNS resolver only looks again when a
connection breaks, so Triton pods added by a scale-up would get no traffic. When the
set of addresses changes, the new pods get channels at once and the removed pods' channels
close once their calls are done. A call that fails UNAVAILABLE (a pod that was killed or is
going away) is retried, with jittered backoff, on another pod, within the request's deadline
and never while the circuit is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from . import metrics
from .errors import TritonRejected, TritonUnavailable
from .failures import CircuitBreaker, classify
from .routing import Endpoint, LeastLoaded, static_addresses
from .settings import Settings
from .signature import ModelSignature, parse_signature

log = logging.getLogger("yolo_gateway.triton")


def channel_args(settings: Settings) -> list[tuple[str, Any]]:
    return [
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
        ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
        ("grpc.keepalive_time_ms", settings.grpc_keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", settings.grpc_keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # Come back fast after Triton restarts: gRPC's default backoff grows to 120 s.
        ("grpc.initial_reconnect_backoff_ms", settings.grpc_reconnect_backoff_ms),
        ("grpc.min_reconnect_backoff_ms", settings.grpc_reconnect_backoff_ms),
        ("grpc.max_reconnect_backoff_ms", settings.grpc_reconnect_backoff_ms * 4),
        ("grpc.dns_min_time_between_resolutions_ms", 5_000),
        ("grpc.enable_retries", 0),
    ]


def new_client(settings: Settings, target: str) -> InferenceServerClient:
    """A client (one gRPC channel) to `target`, the only way this module makes one: clear text,
    or TLS when `triton_ca_file` is set, verified against that CA under the name
    `triton_tls_name` (a pod is dialled by its IP; its certificate names the Triton Service)."""
    args = channel_args(settings)
    if not settings.triton_ca_file:
        return InferenceServerClient(target, channel_args=args)
    if settings.triton_tls_name:
        args.append(("grpc.ssl_target_name_override", settings.triton_tls_name))
    return InferenceServerClient(target, ssl=True, root_certificates=settings.triton_ca_file, channel_args=args)


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_addresses(host: str, port: int) -> list[str]:
    """The sorted, distinct addresses of a name (A and AAAA records)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def dns_target(url: str) -> tuple[str, int] | None:
    """(host, port) of a ``dns:///host:port`` target, else None."""
    if not url.startswith("dns:///"):
        return None
    host, _, port = url[len("dns:///") :].rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


def ip_target(addresses: list[str], port: int) -> str:
    v6 = [a for a in addresses if ":" in a]
    if v6 and len(v6) == len(addresses):
        return "ipv6:" + ",".join(f"[{a}]:{port}" for a in addresses)
    return "ipv4:" + ",".join(f"{a}:{port}" for a in addresses if ":" not in a)


class TritonService:
    """The process-wide client: metadata, readiness and batched inference."""

    def __init__(self, settings: Settings, resolver: Resolver = resolve_addresses) -> None:
        self.settings = settings
        self.client = new_client(settings, settings.triton_url)
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s)
        self.signature: ModelSignature | None = None  # the primary model (model_name)
        # The other models this gateway routes to (tiers, canary, shadow): name -> signature once read,
        # name -> why not while it is not (a failed canary is reported, and never blocks the primary).
        self.extra_models = sorted(
            {*settings.tiers.values(), settings.canary_model, settings.shadow_model} - {"", settings.model_name}
        )
        self.signatures: dict[str, ModelSignature] = {}
        self.model_errors: dict[str, str] = dict.fromkeys(self.extra_models, "not loaded yet")
        self.resolver = resolver
        self.addresses: list[str] = []
        # least_loaded: a channel per pod (from the target's own list, or from each resolution).
        self.pool: LeastLoaded | None = None
        if settings.routing == "least_loaded":
            self.pool = LeastLoaded(lambda address: new_client(settings, address))
            self.pool.update(static_addresses(settings.triton_url) or [])
        self.serving = asyncio.Event()  # a Triton served the model at the last look (cold-start mode follows it)
        self._retired: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        for task in list(self._retired):
            task.cancel()
        await self.client.close()
        for ep in list(self.pool.endpoints.values()) if self.pool else []:
            await ep.client.close()

    def _client(self) -> InferenceServerClient:
        """A client for a call outside inference (metadata, readiness): the least-loaded pod's."""
        ep = self.pool.pick() if self.pool else None
        return ep.client if ep else self.client

    # ------------------------------------------------------------------ endpoints

    async def refresh_endpoints(self) -> bool:
        """Resolve a dns:/// target once; swap to a channel over the new addresses if they changed."""
        target = dns_target(self.settings.triton_url)
        if target is None:
            return False
        try:
            addresses = await self.resolver(*target)
        except OSError as exc:  # keep the channel we have: a DNS hiccup must not drop every pod
            log.info("resolving %s: %s", target[0], exc)
            return False
        if not addresses or addresses == self.addresses:
            return False
        log.info("Triton endpoints for %s: %s -> %s", target[0], self.addresses or "(gRPC's resolver)", addresses)
        self.addresses = addresses
        if self.pool is not None:
            first = not self.pool.endpoints
            retired = self.pool.update([f"[{a}]:{target[1]}" if ":" in a else f"{a}:{target[1]}" for a in addresses])
            if first:  # the channel over gRPC's own resolver served until now: one connection per pod from here on
                retired.append(self.client)
        else:
            retired, self.client = (
                [self.client],
                new_client(self.settings, ip_target(addresses, target[1])),
            )
        metrics.TRITON_ENDPOINTS.set(len(addresses))
        for old in retired:
            task = asyncio.create_task(self._retire(old))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)
        return True

    async def _retire(self, client: InferenceServerClient) -> None:
        """Close a replaced channel once the calls it carries are done (they have deadlines)."""
        try:
            await asyncio.sleep(self.settings.infer_timeout_s + 1)
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    async def keep_resolving(self) -> None:
        """Background task: follow the pods behind a headless Service."""
        interval = self.settings.resolve_interval_s
        if not interval or dns_target(self.settings.triton_url) is None:
            return
        while True:
            await self.refresh_endpoints()
            await asyncio.sleep(interval)

    async def load_signature(self, model: str | None = None) -> ModelSignature:
        """Read a model's signature (default: the primary model's) from Triton."""
        s = self.settings
        name, version = (model, "") if model else (s.model_name, s.model_version)
        timeout = s.infer_timeout_s
        client = self._client()
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
                await self._client().is_model_ready(
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
        tried: set[str] = set()
        for attempt in range(self.settings.infer_retries + 1):
            ep: Endpoint | None = self.pool.pick(tried) if self.pool else None
            if ep is not None and self.pool is not None:
                self.pool.begin(ep)
            try:
                result = await (ep.client if ep else self.client).infer(
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
                if kind == "unavailable" and ep is not None and self.pool is not None:
                    self.pool.avoid(ep)  # retried on another pod, and passed over for a moment
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
                if ep is not None and self.pool is not None:
                    self.pool.end(ep)
            self.breaker.success()
            self.serving.set()
            return {n: result.as_numpy(n) for n in sig.output_names}
        raise AssertionError("unreachable")  # pragma: no cover
