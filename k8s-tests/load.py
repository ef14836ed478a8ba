"""The load the pod tests, the autoscaling tests and the demos send to a gateway Service.

One `Load`: `max_clients` client threads, of which `clients` are active (`set_clients` changes
that, the autoscaling step does). Each active client sends a request on a new connection (as a
load balancer's clients would), waits for the answer and sends the next; with `rate`, it sends at
most `rate` requests a second. Bounded in count and time: at most `max_requests` requests in all,
each with a `timeout`, and `stop()` joins every thread. Times are seconds since `t0`. An https://
gateway is verified with `context`.

    with Load(url, images, clients=4, rate=5) as load:   # the pod tests: steady load
        load.wait_count(200, timeout=120)
    load = Load(url, images, clients=0, max_clients=16, t0=t0).start()   # the autoscaling step
    load.set_clients(8)
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass

from e2e_helpers import wait_for
from pod_helpers import detect


@dataclass
class Request:
    start: float  # seconds since the load's t0
    end: float
    status: int  # the HTTP status; -1 for a 200 without detections, 0 when no answer came
    retry_after: str | None = None
    detail: str = ""


class Load:
    def __init__(
        self,
        url: str,
        images: list[bytes],
        clients: int = 4,
        rate: float | None = None,
        max_clients: int | None = None,
        max_requests: int = 200_000,
        timeout: float = 15.0,
        t0: float | None = None,
        stride: int | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.url, self.images, self.timeout, self.context = url, images, timeout, context
        self.stride = stride or max_clients or clients  # client i sends images i, i + stride, ...
        self.period = 1.0 / rate if rate else 0.0
        self.max_requests = max_requests
        self.t0 = time.monotonic() if t0 is None else t0
        self.requests: list[Request] = []
        self.clients = clients
        self.steps: list[tuple[float, int]] = [(self.now(), clients)]  # (t, clients)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(max_clients or clients)
        ]

    def now(self) -> float:
        return time.monotonic() - self.t0

    def set_clients(self, n: int) -> None:
        assert 0 <= n <= len(self._threads)
        with self._lock:
            self.clients = n
            self.steps.append((self.now(), n))

    def _work(self, i: int) -> None:
        n = i
        while not self._stop.is_set():
            with self._lock:
                active = i < self.clients and len(self.requests) < self.max_requests
            if not active:
                self._stop.wait(0.05)
                continue
            start = self.now()
            status, headers, body = detect(
                self.url, self.images[n % len(self.images)], timeout=self.timeout, context=self.context
            )
            n += self.stride
            ok = status == 200 and b'"detections"' in body
            request = Request(
                start,
                self.now(),
                status if ok or status != 200 else -1,
                headers.get("Retry-After") or headers.get("retry-after"),
                "" if ok else f"{status}: {body[:160].decode(errors='replace')}",
            )
            with self._lock:
                self.requests.append(request)
            self._stop.wait(max(0.0, self.period - (self.now() - start)))

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> list[Request]:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        return self.requests

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def wait_count(self, n: int, timeout: float) -> None:
        wait_for(f"{n} requests sent", lambda: self.count() >= n, timeout=timeout, interval=0.2)

    def between(self, a: float, b: float) -> list[Request]:
        """The requests that started in [a, b)."""
        with self._lock:
            return [r for r in self.requests if a <= r.start < b]

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def summary(requests: list[Request]) -> str:
    c = Counter(r.status for r in requests)
    details = Counter(r.detail for r in requests if r.status != 200)
    return f"{len(requests)} requests, statuses {dict(c)}; failures: {dict(details.most_common(5))}"
