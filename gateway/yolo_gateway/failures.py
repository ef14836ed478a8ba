"""How the gateway reads a failed Triton call: `classify` maps it to the gateway's error (and so its
HTTP status), a metric kind and whether it says anything about reachability; `CircuitBreaker`
counts the ones that do and, past a threshold, fails calls at once until Triton is tried again."""

from __future__ import annotations

import logging
import time
from typing import Any

from tritonclient.utils import InferenceServerException

from . import metrics
from .errors import GatewayError, TritonOverloaded, TritonRejected, TritonTimeout, TritonUnavailable

log = logging.getLogger("yolo_gateway.triton")


class CircuitBreaker:
    """Closed → (N consecutive connection failures) → open → (reset time) → half-open.

    While open, calls fail at once with 503 and Retry-After. Half-open lets one
    probe call through; its success closes the circuit, its failure re-opens it.
    """

    CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
    _GAUGE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}

    def __init__(self, failures: int, reset_s: float, clock: Any = time.monotonic) -> None:
        self.threshold = failures
        self.reset_s = reset_s
        self.clock = clock
        self.state = self.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self._probing = False
        metrics.CIRCUIT_STATE.set(0)

    def _set(self, state: str) -> None:
        if state != self.state:
            log.warning("circuit breaker %s -> %s", self.state, state)
        self.state = state
        metrics.CIRCUIT_STATE.set(self._GAUGE[state])

    def retry_after(self) -> float:
        return max(0.0, self.reset_s - (self.clock() - self.opened_at))

    def before_call(self) -> None:
        if self.state == self.OPEN:
            if self.clock() - self.opened_at < self.reset_s:
                raise TritonUnavailable("Triton is unavailable (circuit open)", retry_after=self.retry_after())
            self._set(self.HALF_OPEN)
        if self.state == self.HALF_OPEN:
            if self._probing:
                raise TritonUnavailable("Triton is unavailable (circuit half-open, probing)", retry_after=1)
            self._probing = True

    def success(self) -> None:
        self._probing = False
        self.failures = 0
        if self.state != self.CLOSED:
            self._set(self.CLOSED)

    def failure(self) -> None:
        self._probing = False
        self.failures += 1
        if self.state == self.HALF_OPEN or self.failures >= self.threshold:
            self.opened_at = self.clock()
            self._set(self.OPEN)

    def release(self) -> None:
        """A call that proved nothing about reachability (e.g. a 4xx from Triton)."""
        self._probing = False


def classify(exc: InferenceServerException) -> tuple[type[GatewayError], str, bool]:
    """Map a Triton/gRPC error to (gateway error, metric kind, counts against the breaker)."""
    status = (exc.status() or "").upper()
    msg = (exc.message() or str(exc)).lower()
    if "maximum queue size" in msg or "queue is full" in msg or "RESOURCE_EXHAUSTED" in status:
        return TritonOverloaded, "queue_full", False
    if "timeout" in msg and "request" in msg and "DEADLINE" not in status:
        return TritonUnavailable, "queue_timeout", False
    if "DEADLINE_EXCEEDED" in status:
        return TritonTimeout, "deadline", True
    if "UNAVAILABLE" in status or ("CANCELLED" in status and "connect" in msg):
        return TritonUnavailable, "unavailable", True
    if "NOT_FOUND" in status or "not ready" in msg or "unknown model" in msg or "unavailable model" in msg:
        return TritonUnavailable, "model_not_ready", False
    return TritonRejected, "rejected", False
