"""Admission control: a concurrency limit with a short, bounded FIFO queue in front of it.

A request whose body has been read asks for a slot. Up to `limit` requests hold
slots (decode, Triton, NMS) at once; up to `max_queue` more wait, first come first
served, for at most `queue_timeout_s`. Everything past that is shed at once with
503 and Retry-After, so an overload is answered in about `queue_timeout_s` instead
of by a 504 at the deadline, and the requests that are admitted keep their latency.

`active + queued` (+ requests waiting for a cold start, see `waiting()`) is the
gateway's in-flight signal, the autoscaler's input: a slow upload is not in flight
until its body has arrived.

The limit also fits the pod's memory (`fit_memory`): a request in flight holds its
tensors several times over (the array, the gRPC request and response, the output
array): about 27 MB for a 640 px, 80-class fp32 model, measured, against 5 MB for the
bundled one. 64 of those would outgrow a 1 GiB container, and an OOM kill loses every
request in flight; so once the model is known the limit drops to what the memory
holds, and the rest wait in the queue or are shed with 503.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from . import metrics
from .errors import GatewayOverloaded

log = logging.getLogger("yolo_gateway")
# Fixed cost of a request beside its tensors: the body, the decoded image, the JSON (measured).
REQUEST_OVERHEAD_BYTES = 4 * 1024 * 1024
# Copies of the tensors a request holds at its peak (measured: 27 MB for 7.7 MB of tensors).
TENSOR_COPIES = 3


def memory_limit_bytes() -> int | None:
    """This container's memory limit (cgroup v2, then v1); None when there is none."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text == "max" or not text.isdigit() or int(text) >= 1 << 60:
            return None
        return int(text)
    return None


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Admission:
    def __init__(self, limit: int, max_queue: int, queue_timeout_s: float) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.active = 0
        self.cold = 0  # requests waiting for a Triton to exist (scaled to zero), before they ask for a slot
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        metrics.ADMISSION_LIMIT.set(limit)
        self._publish()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def _publish(self) -> None:
        metrics.INFLIGHT.set(self.active + len(self._waiters) + self.cold)
        metrics.ADMISSION_ACTIVE.set(self.active)
        metrics.ADMISSION_QUEUED.set(len(self._waiters))

    def _shed(self, reason: str, message: str) -> GatewayOverloaded:
        metrics.SHED.labels(reason).inc()
        return GatewayOverloaded(message, retry_after=1)

    def check(self) -> None:
        """Refuse at the door, before the body is even read, when the queue is already full."""
        if self.active >= self.limit and len(self._waiters) >= self.max_queue:
            raise self._shed(
                "queue_full", f"gateway overloaded: {self.active} requests running and {len(self._waiters)} queued"
            )

    async def acquire(self, deadline: float | None = None) -> None:
        """Take a slot, waiting at most `queue_timeout_s` (and never past `deadline`, loop time)."""
        if self.active < self.limit and not self._waiters:
            self.active += 1
            self._publish()
            return
        self.check()
        loop = asyncio.get_running_loop()
        wait = self.queue_timeout_s
        if deadline is not None:
            wait = min(wait, deadline - loop.time())
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self._publish()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), max(wait, 0))
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():  # granted just as the wait ran out: keep it
                return
            waiter.cancel()
            raise self._shed("queue_timeout", f"gateway overloaded: no slot within {self.queue_timeout_s:g}s") from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted, but the request is gone: pass the slot on
            else:
                waiter.cancel()
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            self._publish()

    def release(self) -> None:
        """Free a slot, handing it straight to the oldest live waiter (unless the limit was lowered
        below the slots in use: then the slot goes)."""
        while self._waiters and self.active <= self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves over; `active` is unchanged
                self._publish()
                return
        self.active -= 1
        self._publish()

    def fit_memory(self, tensor_bytes: int, configured: int, fraction: float, limit_bytes: int | None, rss: int) -> int:
        """Lower the limit to what `fraction` of the memory left under `limit_bytes` holds, at
        `tensor_bytes` of tensors a request (never above `configured`, never below 1); waiters get
        the slots a higher limit frees. Returns the new limit."""
        limit = configured
        if limit_bytes and fraction > 0:
            per_request = TENSOR_COPIES * tensor_bytes + REQUEST_OVERHEAD_BYTES
            fits = max(1, int((limit_bytes - rss) * fraction) // per_request)
            limit = min(configured, fits)
            if limit < configured:
                log.warning(
                    "admission: %d requests at once, not %d: the model's tensors take about %.0f MB a request "
                    "and the container's memory limit is %.0f MB (%.0f MB in use)",
                    limit,
                    configured,
                    per_request / 1e6,
                    limit_bytes / 1e6,
                    rss / 1e6,
                )
        self.limit = limit
        metrics.ADMISSION_LIMIT.set(limit)
        while self._waiters and self.active < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self.active += 1
        self._publish()
        return limit

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Count a request that waits for a cold start as in flight (and in the Triton tier's demand)."""
        self.cold += 1
        self._publish()
        metrics.COLD_WAITING.inc()
        metrics.TRITON_REQUESTS.inc()
        try:
            yield
        finally:
            self.cold -= 1
            self._publish()
            metrics.COLD_WAITING.dec()
            metrics.TRITON_REQUESTS.dec()

    @contextlib.asynccontextmanager
    async def slot(self, deadline: float | None = None) -> AsyncIterator[None]:
        await self.acquire(deadline)
        try:
            yield
        finally:
            self.release()
