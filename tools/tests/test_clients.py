"""yolo_tools.clients: the client threads behind the pod tests' load and the fuzzer."""

from __future__ import annotations

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
    assert not any(t.is_alive() for t in threading.enumerate() if t.name.startswith("client-"))


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
