"""The load the pod tests, the autoscaling tests and the demos send to a gateway Service.

One `Load`: `max_clients` clients of the project's load generator (yolo_tools.clients, which the
bench and the fuzzer drive too), each on a thread of its own (a blocking send), of
which `clients` are active (`set_clients` changes that, the autoscaling step does). Each active
client sends a request on a new connection (as a load balancer's clients would), waits for the
answer and sends the next; with `rate`, it sends at most `rate` requests a second. Bounded in
count and time: at most `max_requests` requests in all, each with a `timeout`, and `stop()` joins
every thread. Times are seconds since `t0`. An https:// gateway is verified with `context`.

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

from yolo_tools.clients import Clients


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
        self.stride = stride or max_clients or clients  # client c sends images c, c + stride, ...
        self.t0 = time.monotonic() if t0 is None else t0
        self.requests: list[Request] = []
        self.steps: list[tuple[float, int]] = [(self.now(), clients)]  # (t, clients)
        self._sent = Counter[int]()  # per client
        self._lock = threading.Lock()
        self._clients = Clients(self._send, clients, max_clients=max_clients, rate=rate, max_requests=max_requests)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def set_clients(self, n: int) -> None:
        self._clients.set_clients(n)
        with self._lock:
            self.steps.append((self.now(), n))

    def _send(self, client: int, _i: int) -> None:
        image = self.images[(client + self._sent[client] * self.stride) % len(self.images)]
        self._sent[client] += 1  # only this client's thread counts its own
        start = self.now()
        status, headers, body = detect(self.url, image, timeout=self.timeout, context=self.context)
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

    def start(self) -> Load:
        self._clients.start()
        return self

    def stop(self) -> list[Request]:
        self._clients.stop(self.timeout + 5)
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
