"""The project's one load generator: clients that each send a request, wait for its answer and
send the next. The bench's closed loop (yolo_tools.bench.loadgen), the pod tests' load and the
autoscaling step (k8s-tests/load.py), the fuzzer (yolo_tools.fuzz) and the gateway's routing test
all run on it.

`max_clients` clients, of which the first `clients` are active (`set_clients` changes that while
they run). Each active client takes the next request number, calls `send(client, i)`, which makes
one request and returns when it is answered, and then takes the next; with `rate`, a client starts
at most `rate` requests a second. Bounded in count and time: at most `max_requests` requests in
all, numbered 0, 1, 2, … across the clients, and stopping waits for every client (each within
`join_s`, a request's bound). An exception in `send` ends nothing but that request; the first one
is raised when the clients stop.

Every client is a task on one asyncio loop. `send` is either

- a coroutine function: the bench's aiohttp sender, where one process keeps up to 64 requests in
  flight and the generator's own CPU must stay far below the gateway's on the same two cores; or
- a plain blocking function (urllib, http.client), which runs on a thread of the generator's own
  pool, one per client: what the clients the tests stand in for do (one connection per request,
  or one kept-alive connection per client).

From async code: `async with Clients(...) as c:` or `await c.run_async(limit_s)`. From blocking
code: `start()` / `stop()` / `run(limit_s)` run the loop on a thread of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import threading
import time
from collections.abc import Awaitable, Callable

# (client, request number) -> None once answered; a coroutine function or a blocking one
Send = Callable[[int, int], None] | Callable[[int, int], Awaitable[None]]
IDLE_S = 0.05  # how often an inactive client looks again


class Clients:
    def __init__(
        self,
        send: Send,
        clients: int,
        *,
        max_clients: int | None = None,
        rate: float | None = None,
        max_requests: int = 200_000,
    ) -> None:
        if not 0 <= clients <= (max_clients or clients):
            raise ValueError(f"clients {clients} not in [0, max_clients {max_clients}]")
        self.send, self.clients, self.max_requests = send, clients, max_requests
        self.size = max_clients or clients
        self.period = 1.0 / rate if rate else 0.0
        self.blocking = not inspect.iscoroutinefunction(send)
        self._taken = 0  # request numbers handed out
        self._done = 0  # requests answered (or failed)
        self._error: BaseException | None = None
        self._lock = threading.Lock()  # set_clients and the counters are read from other threads
        self._stopping = False
        self._wake: asyncio.Event | None = None  # set when stopping: ends the clients' pauses
        self._tasks: list[asyncio.Task] = []
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None  # the loop's, when started from blocking code
        self.join_s = 30.0  # how long stopping waits for a request in flight

    def set_clients(self, n: int) -> None:
        if not 0 <= n <= self.size:
            raise ValueError(f"clients {n} not in [0, {self.size}]")
        with self._lock:
            self.clients = n

    def done(self) -> int:
        """Requests answered so far."""
        with self._lock:
            return self._done

    def finished(self) -> bool:
        """Every one of `max_requests` answered."""
        return self.done() >= self.max_requests

    # ------------------------------------------------------------------ the clients

    def _take(self, client: int) -> int | None:
        with self._lock:
            if self._stopping or client >= self.clients or self._taken >= self.max_requests:
                return None
            self._taken += 1
            return self._taken - 1

    async def _pause(self, seconds: float) -> None:
        if seconds > 0 and self._wake is not None and not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), seconds)

    async def _client(self, client: int) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            i = self._take(client)
            if i is None:
                await self._pause(IDLE_S)
                continue
            start = time.monotonic()
            try:
                if self._pool is not None:
                    await loop.run_in_executor(self._pool, self.send, client, i)
                else:
                    await self.send(client, i)  # type: ignore[misc]  # a coroutine function: not self.blocking
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - kept for the stop to raise; the others go on
                with self._lock:
                    self._error = self._error or exc
            with self._lock:
                self._done += 1
            if self.period:
                await self._pause(self.period - (time.monotonic() - start))

    # ------------------------------------------------------------------ from async code

    async def __aenter__(self) -> Clients:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self.blocking:
            self._pool = concurrent.futures.ThreadPoolExecutor(max(1, self.size), thread_name_prefix="client-pool")
        self._tasks = [asyncio.create_task(self._client(c), name=f"client-{c}") for c in range(self.size)]
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        await self.aclose()
        if exc_type is None and self._error is not None:
            raise self._error

    async def aclose(self) -> None:
        """Stop taking requests and wait for every client: a request in flight ends first, within
        `join_s`."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        late: set[asyncio.Task] = set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=self.join_s)
            for t in late:  # a send past its bound: a blocking one's thread is left to end on its own
                t.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=not late, cancel_futures=True)

    async def run_async(self, limit_s: float) -> None:
        """Until all `max_requests` are answered or `limit_s` has passed; then stop."""
        async with self:
            deadline = time.monotonic() + limit_s
            while not self.finished() and time.monotonic() < deadline:
                await asyncio.sleep(IDLE_S)

    # ------------------------------------------------------------------ from blocking code

    def start(self) -> Clients:
        """Run the clients on a loop of their own, on a thread of its own, until stop()."""
        started = threading.Event()

        async def main() -> None:
            async with self:
                started.set()
                assert self._wake is not None
                await self._wake.wait()  # stop() sets it

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:  # noqa: BLE001 - a send's exception: stop() raises it
                with self._lock:
                    self._error = self._error or exc
            finally:
                started.set()

        self._thread = threading.Thread(target=run, daemon=True, name="clients-loop")
        self._thread.start()
        started.wait()
        return self

    def stop(self, join_s: float = 30.0) -> None:
        """Stop taking requests and wait for every client (each within `join_s`, a request's bound);
        raise the first exception a `send` raised."""
        with self._lock:
            self._stopping = True
        self.join_s = join_s
        if self._thread is not None and self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                self._loop.call_soon_threadsafe(self._wake.set)
            self._thread.join(join_s + 5)
        with self._lock:
            error = self._error
        if error is not None:
            raise error

    def run(self, limit_s: float) -> None:
        """start(), until all `max_requests` are answered or `limit_s` has passed, then stop()."""
        self.start()
        deadline = time.monotonic() + limit_s
        while not self.finished() and time.monotonic() < deadline:
            time.sleep(IDLE_S)
        self.stop()
