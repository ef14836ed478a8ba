"""Which Triton pod takes a call: the one this gateway has fewer calls outstanding on.

`least_loaded` (the default) keeps one gRPC channel, one HTTP/2 connection, per Triton pod and
picks a pod per call by the power of two random choices: two pods drawn at random, the one with
fewer calls in flight from this gateway wins (a tie is broken at random). A slow pod (a busy node, a
warming pod, a throttled CPU, a shared GPU) keeps its calls longer, so it is picked less, and the
tail follows the fast pods instead of the slowest one. A pod that just answered UNAVAILABLE is
passed over for `AVOID_S` while another is there, and a retry never goes back to a pod that failed
the same call, while another is there.

`round_robin` is the previous behaviour: one channel over every pod, gRPC's round_robin policy.

The same process-wide client serves every request (`triton.TritonService`); this module only
chooses among its channels.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from tritonclient.grpc.aio import InferenceServerClient

from . import metrics

AVOID_S = 1.0


@dataclass(eq=False)
class Endpoint:
    address: str  # host:port, as the channel's target
    client: InferenceServerClient
    outstanding: int = 0  # calls this gateway has in flight on it
    avoid_until: float = 0.0


class LeastLoaded:
    """The per-pod channels and the pick."""

    def __init__(
        self,
        make_client: Callable[[str], InferenceServerClient],
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.make_client = make_client
        self.rng = rng or random.Random()
        self.clock = clock
        self.endpoints: dict[str, Endpoint] = {}

    def update(self, addresses: Collection[str]) -> list[InferenceServerClient]:
        """Follow a new set of pods: channels to new ones; the removed ones' clients are returned
        for the caller to close once their calls are done."""
        removed = [self.endpoints.pop(a) for a in list(self.endpoints) if a not in addresses]
        for a in addresses:
            if a not in self.endpoints:
                self.endpoints[a] = Endpoint(a, self.make_client(a))
                metrics.TRITON_OUTSTANDING.labels(a).set(0)
        for ep in removed:
            with contextlib.suppress(KeyError):  # another client in this process may have removed it
                metrics.TRITON_OUTSTANDING.remove(ep.address)
        return [ep.client for ep in removed]

    def pick(self, exclude: Collection[str] = ()) -> Endpoint | None:
        """Power of two random choices over the pods not excluded and not avoided (falling back
        to the excluded or avoided ones when nothing else is left)."""
        now = self.clock()
        every = list(self.endpoints.values())
        fresh = [e for e in every if e.address not in exclude]
        candidates = [e for e in fresh if e.avoid_until <= now] or fresh or every
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        a, b = self.rng.sample(candidates, 2)
        if a.outstanding != b.outstanding:
            return a if a.outstanding < b.outstanding else b
        return a  # sample() already drew the pair in random order

    def begin(self, ep: Endpoint) -> None:
        ep.outstanding += 1
        metrics.TRITON_OUTSTANDING.labels(ep.address).set(ep.outstanding)

    def end(self, ep: Endpoint) -> None:
        ep.outstanding -= 1
        if ep.address in self.endpoints:  # a removed pod's series is gone already
            metrics.TRITON_OUTSTANDING.labels(ep.address).set(ep.outstanding)

    def avoid(self, ep: Endpoint) -> None:
        ep.avoid_until = self.clock() + AVOID_S


def static_addresses(url: str) -> list[str] | None:
    """host:port of each endpoint of an ``ipv4:a:p,b:p`` or ``ipv6:[a]:p,...`` target, or of a
    plain ``host:port``; None for targets that name no fixed endpoints (``dns:///``, ``unix:``)."""
    for scheme in ("ipv4:", "ipv6:"):
        if url.startswith(scheme):
            return [a for a in url[len(scheme) :].split(",") if a]
    if url.startswith(("dns:", "unix:")) or "/" in url:
        return None
    return [url]
