"""The gateway's gRPC channels to Triton: how one is made (clear text or TLS) and the set it
holds, one channel per Triton pod (`least_loaded`, routing.py) or one over every pod
(`round_robin`), kept in step with a headless Service by resolving it every `resolve_interval_s`.

gRPC's own DNS resolver only looks again when a connection breaks, so Triton pods added by a
scale-up would get no traffic: the gateway resolves a ``dns:///name:port`` target itself. When the
set of addresses changes, the new pods get channels at once and the removed pods' channels close
once their calls are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from tritonclient.grpc.aio import InferenceServerClient

from . import metrics
from .routing import LeastLoaded, static_addresses
from .settings import Settings

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


class Channels:
    """The process's channels to Triton: `client` (the target as given, or over its resolved
    addresses under `round_robin`) and, under `least_loaded`, `pool`, a channel per pod."""

    def __init__(self, settings: Settings, resolver: Resolver = resolve_addresses) -> None:
        self.settings = settings
        self.client = new_client(settings, settings.triton_url)
        self.resolver = resolver
        self.addresses: list[str] = []
        # least_loaded: a channel per pod (from the target's own list, or from each resolution).
        self.pool: LeastLoaded | None = None
        if settings.routing == "least_loaded":
            self.pool = LeastLoaded(lambda address: new_client(settings, address))
            self.pool.update(static_addresses(settings.triton_url) or [])
        self._retired: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        for task in list(self._retired):
            task.cancel()
        await self.client.close()
        for ep in list(self.pool.endpoints.values()) if self.pool else []:
            await ep.client.close()

    def any_client(self) -> InferenceServerClient:
        """A client for a call outside inference (metadata, readiness): the least-loaded pod's."""
        ep = self.pool.pick() if self.pool else None
        return ep.client if ep else self.client

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
