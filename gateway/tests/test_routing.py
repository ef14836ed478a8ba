"""least_loaded routing's pick, on its own (routing.py): fewer calls in flight wins, a failed or
avoided pod is passed over while another is there, and pods come and go with the DNS answer.
The clients are placeholders: no call is made here (the triton tier sends real ones)."""

from __future__ import annotations

import random
from collections import Counter

from yolo_gateway.routing import LeastLoaded, static_addresses


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def pool(*addresses: str, clock: Clock | None = None) -> LeastLoaded:
    p = LeastLoaded(lambda a: f"client:{a}", rng=random.Random(0), clock=clock or Clock())  # type: ignore[arg-type,return-value]  # placeholders: no call is made
    p.update(list(addresses))
    return p


def test_the_pod_with_fewer_calls_in_flight_wins_every_pair():
    p = pool("a:1", "b:1")
    for _ in range(5):
        p.begin(p.endpoints["a:1"])
    assert {p.pick().address for _ in range(100)} == {"b:1"}


def test_equal_pods_share_evenly_and_a_busy_one_gets_less():
    p = pool("a:1", "b:1", "c:1", "d:1")
    picks = Counter(p.pick().address for _ in range(4000))
    assert min(picks.values()) > 850, picks  # 1,000 each, give or take
    p.begin(p.endpoints["a:1"])  # one call in flight on a: it loses every pair it is drawn in
    picks = Counter(p.pick().address for _ in range(4000))
    assert picks["a:1"] == 0 and min(picks[k] for k in ("b:1", "c:1", "d:1")) > 1100, picks


def test_power_of_two_choices_spreads_a_burst_evenly():
    p = pool(*(f"p{i}:1" for i in range(8)))
    for _ in range(64):  # 64 calls in flight at once, none finished
        p.begin(p.pick())
    loads = sorted(e.outstanding for e in p.endpoints.values())
    assert loads[-1] - loads[0] <= 3, loads


def test_a_retry_goes_to_another_pod_and_an_unavailable_pod_is_avoided_for_a_moment():
    clock = Clock()
    p = pool("a:1", "b:1", "c:1", clock=clock)
    assert {p.pick(exclude={"a:1", "b:1"}).address for _ in range(20)} == {"c:1"}
    assert p.pick(exclude={"a:1", "b:1", "c:1"}) is not None  # nothing else left: any pod
    p.avoid(p.endpoints["a:1"])
    assert "a:1" not in {p.pick().address for _ in range(200)}
    clock.t += 1.5
    assert "a:1" in {p.pick().address for _ in range(200)}


def test_pods_come_and_go_with_the_answer():
    p = pool("a:1", "b:1")
    removed = p.update(["b:1", "c:1"])
    assert removed == ["client:a:1"] and sorted(p.endpoints) == ["b:1", "c:1"]
    assert p.endpoints["c:1"].client == "client:c:1"
    assert pool().pick() is None


def test_static_targets():
    assert static_addresses("ipv4:127.0.0.1:8001,127.0.0.2:8001") == ["127.0.0.1:8001", "127.0.0.2:8001"]
    assert static_addresses("ipv6:[::1]:8001") == ["[::1]:8001"]
    assert static_addresses("host:8001") == ["host:8001"]
    assert static_addresses("dns:///triton:8001") is None and static_addresses("unix:///run/t.sock") is None
