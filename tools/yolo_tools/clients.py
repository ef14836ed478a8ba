"""Client threads that send requests one after another: the load of the pod tests, the autoscaling
step and the fuzzer (k8s-tests/load.py and yolo_tools.fuzz build on it).

`max_clients` threads, of which the first `clients` are active (`set_clients` changes that while
they run). Each active client takes the next request number, calls `send(client, i)`, which
makes one request and returns when it is answered, and then takes the next; with `rate`, a
client starts at most `rate` requests a second. Bounded in count and time: at most
`max_requests` requests in all, numbered 0, 1, 2, … across the clients, and `stop()` joins every
thread. An exception in `send` ends nothing but that request; the first one is raised by `stop()`.

The bench measures throughput with its own asyncio loop instead (yolo_tools.bench.loadgen):
there one process drives hundreds of requests in flight, and the generator's CPU must stay far
below the gateway's. Here each client is a thread running blocking I/O, which is what the
clients these tools stand in for (one connection per request, or one kept-alive connection per
client) do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Send = Callable[[int, int], None]  # (client, request number) -> None, once answered


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
        self.period = 1.0 / rate if rate else 0.0
        self._taken = 0  # request numbers handed out
        self._done = 0  # requests answered (or failed)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, args=(c,), daemon=True, name=f"client-{c}")
            for c in range(max_clients or clients)
        ]

    def set_clients(self, n: int) -> None:
        if not 0 <= n <= len(self._threads):
            raise ValueError(f"clients {n} not in [0, {len(self._threads)}]")
        with self._lock:
            self.clients = n

    def _take(self, client: int) -> int | None:
        with self._lock:
            if client >= self.clients or self._taken >= self.max_requests:
                return None
            self._taken += 1
            return self._taken - 1

    def _work(self, client: int) -> None:
        while not self._stop.is_set():
            i = self._take(client)
            if i is None:
                self._stop.wait(0.05)
                continue
            start = time.monotonic()
            try:
                self.send(client, i)
            except BaseException as exc:  # noqa: BLE001 - kept for stop() to raise; the others go on
                with self._lock:
                    self._error = self._error or exc
            with self._lock:
                self._done += 1
            self._stop.wait(max(0.0, self.period - (time.monotonic() - start)))

    def start(self) -> Clients:
        for t in self._threads:
            t.start()
        return self

    def done(self) -> int:
        """Requests answered so far."""
        with self._lock:
            return self._done

    def finished(self) -> bool:
        """Every one of `max_requests` answered."""
        return self.done() >= self.max_requests

    def stop(self, join_s: float = 30.0) -> None:
        """Stop taking requests and join every client (each within `join_s`, a request's bound)."""
        self._stop.set()
        for t in self._threads:
            if t.ident is not None:  # started
                t.join(join_s)
        if self._error is not None:
            raise self._error

    def run(self, limit_s: float) -> None:
        """start(), until all `max_requests` are answered or `limit_s` has passed, then stop()."""
        self.start()
        deadline = time.monotonic() + limit_s
        while not self.finished() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stop()
