"""yolo_tools.clients: the one load generator behind the bench, the pod tests' load, the fuzzer and
the routing test, with blocking sends (on its thread pool) and coroutine sends (on its loop)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from yolo_tools.clients import Clients


def _recorder() -> tuple[list[tuple[int, int]], threading.Lock, Callable[[int, int], None]]:
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def send(client: int, i: int) -> None:
        with lock:
            seen.append((client, i))
        time.sleep(0.001)

    return seen, lock, send


def test_every_request_number_is_sent_once_and_the_run_ends_at_max_requests() -> None:
    seen, _, send = _recorder()
    clients = Clients(send, 4, max_requests=200)
    clients.run(limit_s=60)
    assert sorted(i for _, i in seen) == list(range(200))
    assert {c for c, _ in seen} <= {0, 1, 2, 3}
    assert clients.finished() and clients.done() == 200
    assert not any(t.is_alive() for t in threading.enumerate() if t.name.startswith("client"))  # pool and loop


def test_only_the_active_clients_send_and_set_clients_changes_them() -> None:
    seen, lock, send = _recorder()
    clients = Clients(send, 0, max_clients=4).start()
    try:
        time.sleep(0.2)
        assert clients.done() == 0  # none active: nothing sent
        clients.set_clients(2)
        deadline = time.monotonic() + 10
        while clients.done() < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        with lock:
            assert len(seen) >= 20 and {c for c, _ in seen} <= {0, 1}
        clients.set_clients(0)
        time.sleep(0.1)  # a request in flight may finish
        n = clients.done()
        time.sleep(0.2)
        assert clients.done() == n  # none active again: nothing more
    finally:
        clients.stop()
    with pytest.raises(ValueError):
        clients.set_clients(5)
    with pytest.raises(ValueError):
        Clients(send, 3, max_clients=2)


def test_a_rate_caps_how_often_a_client_starts_a_request() -> None:
    seen, _, send = _recorder()
    clients = Clients(send, 1, rate=10).start()
    time.sleep(0.5)
    clients.stop()
    # one request at t=0, then one every 0.1 s: at most 6 in half a second, however fast `send` is
    assert 1 <= len(seen) <= 6


def test_an_exception_in_send_ends_that_request_only_and_stop_raises_it() -> None:
    seen: list[int] = []

    def send(_client: int, i: int) -> None:
        if i == 3:
            raise RuntimeError("request 3 failed")
        seen.append(i)

    clients = Clients(send, 2, max_requests=20)
    with pytest.raises(RuntimeError, match="request 3 failed"):
        clients.run(limit_s=60)
    assert sorted(seen) == [i for i in range(20) if i != 3]


def test_coroutine_sends_run_on_the_callers_loop_with_the_same_rules() -> None:
    """The bench's way: a coroutine `send` on the running loop, no thread per client."""
    seen: list[tuple[int, int]] = []
    in_flight = 0
    peak = 0
    main = threading.get_ident()

    async def send(client: int, i: int) -> None:
        nonlocal in_flight, peak
        assert threading.get_ident() == main
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.002)
        in_flight -= 1
        seen.append((client, i))

    async def go() -> Clients:
        clients = Clients(send, 8, max_requests=100)
        await clients.run_async(limit_s=60)
        return clients

    clients = asyncio.run(go())
    assert sorted(i for _, i in seen) == list(range(100))
    assert peak == 8  # every client had one request in flight at a time, all eight at once
    assert clients.finished() and not clients.blocking


def test_leaving_the_async_block_waits_for_requests_in_flight_and_raises_the_first_error() -> None:
    answered: list[int] = []

    async def send(_client: int, i: int) -> None:
        await asyncio.sleep(0.05)
        if i == 1:
            raise RuntimeError("request 1 failed")
        answered.append(i)

    async def go() -> None:
        async with Clients(send, 2) as clients:
            await asyncio.sleep(0.01)  # requests 0 and 1 in flight
        assert clients.done() == 2  # both ended before the block was left, none started after

    with pytest.raises(RuntimeError, match="request 1 failed"):
        asyncio.run(go())
    assert answered == [0]


def test_stop_waits_no_longer_than_join_s_for_a_request_past_its_bound() -> None:
    release = threading.Event()

    def send(_client: int, _i: int) -> None:
        release.wait(10)  # a stuck request, for the test's sake bounded at 10 s

    clients = Clients(send, 1).start()
    time.sleep(0.05)
    t0 = time.monotonic()
    clients.stop(join_s=0.2)
    assert time.monotonic() - t0 < 6  # join_s, plus the loop thread's 5 s margin at most
    release.set()
