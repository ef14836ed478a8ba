"""The child cache (cache.py): reconcile reads children from watch events, GETs stale ones, and an
older read never overwrites a newer event."""

from __future__ import annotations

import threading

import pytest

from yolo_operator import cache as cache_mod
from yolo_operator.cache import ChildCache, slim


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def obj(rv: str, **extra) -> dict:
    return {
        "kind": "Service",
        "metadata": {"name": "s", "namespace": "ns", "resourceVersion": rv, "managedFields": [{"manager": "x"}]},
        **extra,
    }


@pytest.fixture
def cache() -> tuple[ChildCache, Clock, list[str]]:
    clock = Clock()
    c = ChildCache(ttl=300, clock=clock)
    c.enabled = True
    return c, clock, []


def fetcher(calls: list[str], answer):
    def fetch():
        calls.append("GET")
        return answer

    return fetch


def test_an_observed_child_is_read_without_a_get(cache):
    c, _, calls = cache
    c.observe("Service", "ns", "s", obj("5"))
    got = c.read("Service", "ns", "s", fetcher(calls, obj("1")))
    assert got["metadata"]["resourceVersion"] == "5" and calls == []
    assert "managedFields" not in got["metadata"]  # slimmed: no decision reads them
    c.observe("Service", "ns", "s", None)  # DELETED, or its labels stripped (it left the selection)
    assert c.read("Service", "ns", "s", fetcher(calls, obj("6"))) is None and calls == []


def test_a_miss_gets_once_then_serves_the_answer_until_the_ttl(cache):
    c, clock, calls = cache
    assert c.read("Service", "ns", "s", fetcher(calls, None)) is None  # 404: absent
    assert c.read("Service", "ns", "s", fetcher(calls, obj("1"))) is None
    assert calls == ["GET"]
    clock.t = 299
    c.read("Service", "ns", "s", fetcher(calls, obj("1")))
    assert calls == ["GET"]
    clock.t = 300  # stale: a watch that missed a deletion hides nothing for longer than this
    assert c.read("Service", "ns", "s", fetcher(calls, obj("2")))["metadata"]["resourceVersion"] == "2"
    assert calls == ["GET", "GET"]


def test_a_read_in_flight_never_overwrites_a_newer_event(cache):
    c, _, _ = cache

    def slow_get():
        # the object is deleted while our GET (which saw it) is on its way back
        c.observe("Service", "ns", "s", None)
        return obj("7")

    assert c.read("Service", "ns", "s", slow_get)["metadata"]["resourceVersion"] == "7"  # this pass sees its own answer
    assert c.read("Service", "ns", "s", lambda: pytest.fail("the event's entry is fresh")) is None  # the event stands


def test_our_own_writes_are_recorded_unless_an_event_overtook_them(cache):
    c, _, calls = cache
    c.written("Service", "ns", "s", obj("3"), c.token())
    assert c.read("Service", "ns", "s", fetcher(calls, None))["metadata"]["resourceVersion"] == "3" and calls == []
    c.written("Service", "ns", "s", None, c.token())  # deleted by us
    assert c.read("Service", "ns", "s", fetcher(calls, obj("4"))) is None and calls == []
    # our apply is sent; someone deletes the object; its DELETED event arrives before our answer
    token = c.token()
    c.observe("Service", "ns", "s", None)
    c.written("Service", "ns", "s", obj("5"), token)
    assert c.read("Service", "ns", "s", fetcher(calls, obj("6"))) is None and calls == []  # the event stands


def test_disabled_or_unwatched_kinds_always_get(cache):
    c, _, calls = cache
    c.observe("ServiceMonitor", "ns", "m", {"kind": "ServiceMonitor", "metadata": {"name": "m"}})
    c.read("ServiceMonitor", "ns", "m", fetcher(calls, None))  # not watched: no events keep it fresh
    c.enabled = False  # no child watch running (e.g. reconcile called on its own)
    c.observe("Service", "ns", "s", obj("1"))
    c.read("Service", "ns", "s", fetcher(calls, obj("1")))
    c.written("Service", "ns", "s", obj("2"), c.token())  # nothing recorded while disabled
    c.read("Service", "ns", "s", fetcher(calls, obj("1")))
    assert calls == ["GET", "GET", "GET"]
    off = ChildCache(ttl=0)
    off.enabled = True
    off.read("Service", "ns", "s", fetcher(calls, None))
    off.read("Service", "ns", "s", fetcher(calls, None))
    assert len(calls) == 5


def test_absences_of_deleted_services_are_pruned(cache, monkeypatch):
    c, clock, _ = cache
    monkeypatch.setattr(cache_mod, "PRUNE_EVERY", 10)
    for i in range(5):
        c.observe("Service", "ns", f"gone-{i}", None)
    c.observe("Service", "ns", "kept", obj("1"))
    clock.t = 301
    for i in range(4):
        c.observe("ConfigMap", "ns", f"new-{i}", None)  # the 10th event sweeps
    assert len(c) == 5  # 'kept' and the 4 fresh absences; the 5 old absences are gone


def test_slim_leaves_the_event_object_alone():
    o = obj("1")
    s = slim(o)
    assert "managedFields" in o["metadata"] and "managedFields" not in s["metadata"]
    assert slim({"metadata": {"name": "x"}}) == {"metadata": {"name": "x"}}


def test_concurrent_reads_and_events_never_leave_an_older_entry():
    """Events stream in while reads GET. Every read misses: each look at the clock is 301 s after
    the one before, so no entry is ever fresh. The server's state changes before its event is
    delivered, as on a real watch. Whatever the interleaving, the entry is never older than the
    last event delivered."""
    ticks = iter(range(0, 10**12, 301))
    lock = threading.Lock()

    def clock() -> float:
        with lock:
            return float(next(ticks))

    c = ChildCache(ttl=300, clock=clock)
    c.enabled = True
    server = {"rv": 0}
    delivered = {"rv": 0}
    stop = threading.Event()
    fetches = []

    def events():
        while not stop.is_set() and server["rv"] < 100_000:
            server["rv"] += 1
            c.observe("Service", "ns", "s", obj(str(server["rv"])))
            delivered["rv"] = server["rv"]

    def fetch():
        fetches.append(1)
        return obj(str(server["rv"]))  # what the API server holds when the GET arrives

    t = threading.Thread(target=events)
    t.start()
    try:
        for _ in range(2000):
            c.read("Service", "ns", "s", fetch)
            floor = delivered["rv"]  # delivered before we look
            entry = int(c._entries[("Service", "ns", "s")][1]["metadata"]["resourceVersion"])
            assert entry >= floor, f"the entry ({entry}) is older than a delivered event ({floor})"
    finally:
        stop.set()
        t.join()
    assert len(fetches) == 2000


def test_a_new_listing_makes_entries_it_did_not_resend_stale(cache):
    """A restarted watch (a paused standby taking over, a 410) lists everything again and sends
    no DELETED for what went meanwhile: what it does not list again is read with a GET."""
    c, clock, calls = cache
    for name in ("a", "b", "gone"):
        c.observe("Service", "ns", name, obj("1"), listing=True)
    clock.t = 10
    c.observe("Service", "ns", "a", obj("2"))  # an ordinary event in between
    assert c.read("Service", "ns", "gone", fetcher(calls, None)) is not None and calls == []
    clock.t = 20  # the watch restarts: "a" and "b" are listed again, "gone" was deleted meanwhile
    c.observe("Service", "ns", "a", obj("2"), listing=True)
    c.observe("Service", "ns", "b", obj("1"), listing=True)
    assert c.read("Service", "ns", "a", fetcher(calls, obj("x")))["metadata"]["resourceVersion"] == "2"
    assert c.read("Service", "ns", "gone", fetcher(calls, None)) is None and calls == ["GET"]
    assert c.read("Service", "ns", "gone", fetcher(calls, obj("x"))) is None and calls == ["GET"]  # recorded
    c.observe("ConfigMap", "ns", "cm", {"kind": "ConfigMap", "metadata": {"name": "cm"}}, listing=True)
    assert c.read("Service", "ns", "b", fetcher(calls, None)) is not None  # another kind's listing changes nothing


def test_listings_are_told_apart_per_namespace(cache):
    """With one watch per namespace, each relists on its own: one namespace's relisting must not
    hide the other's."""
    c, clock, calls = cache
    for ns in ("a", "b"):
        for name in ("kept", "gone"):
            c.observe("Service", ns, name, obj("1"), listing=True)
    clock.t = 10
    c.observe("Service", "a", "kept", obj("1"), listing=True)  # namespace a relists
    clock.t = 20
    c.observe("Service", "b", "kept", obj("1"), listing=True)  # then namespace b
    assert c.read("Service", "b", "gone", fetcher(calls, None)) is None and calls == ["GET"]
    assert c.read("Service", "a", "gone", fetcher(calls, None)) is None and calls == ["GET", "GET"]


def test_an_answer_is_dated_from_when_its_request_left(cache):
    """A GET that left before a listing began is not confirmed by that listing."""
    c, clock, calls = cache
    c.observe("Service", "ns", "other", obj("1"), listing=True)

    def slow_get():
        clock.t = 50
        c.observe("Service", "ns", "other", obj("1"), listing=True)  # a relisting starts meanwhile
        return obj("7")

    clock.t = 40
    c.read("Service", "ns", "s", slow_get)
    assert c.read("Service", "ns", "s", fetcher(calls, obj("8")))["metadata"]["resourceVersion"] == "8" and calls == [
        "GET"
    ]
