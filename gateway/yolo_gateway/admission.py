"""Admission control: a concurrency limit with a short, bounded FIFO queue in front of it.

A request whose body has been read asks for a slot. Up to `limit` requests hold
slots (decode, Triton, NMS) at once; up to `max_queue` more wait, first come first
served, for at most `queue_timeout_s`. Everything past that is shed at once with
503 and Retry-After, so an overload is answered in about `queue_timeout_s` instead
of by a 504 at the deadline, and the requests that are admitted keep their latency.

`active + queued` (+ requests waiting for a cold start, see `waiting()`) is the
gateway's in-flight signal, the autoscaler's input: a slow upload is not in flight
until its body has arrived.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Iterator

from . import metrics
from .errors import GatewayOverloaded


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
            raise self._shed("queue_full", f"gateway overloaded: {self.active} requests running and {len(self._waiters)} queued")

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
        """Free a slot, handing it straight to the oldest live waiter."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves over; `active` is unchanged
                self._publish()
                return
        self.active -= 1
        self._publish()

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
