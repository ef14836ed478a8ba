"""Admission control, as a unit: slots, a FIFO queue, shedding when full or after the wait."""

from __future__ import annotations

import asyncio

import pytest

from yolo_gateway import metrics
from yolo_gateway.admission import Admission
from yolo_gateway.errors import GatewayOverloaded


def _run(coro):
    return asyncio.run(coro)


def test_slots_then_queue_then_shed_at_once():
    async def go() -> None:
        adm = Admission(limit=2, max_queue=1, queue_timeout_s=5)
        await adm.acquire()
        await adm.acquire()
        waiter = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0)
        assert (adm.active, adm.queued) == (2, 1)
        assert metrics.INFLIGHT._value.get() == 3  # running + queued: the autoscaler's signal
        with pytest.raises(GatewayOverloaded) as err:
            await adm.acquire()  # queue full: refused without waiting
        assert err.value.retry_after == 1 and err.value.status == 503
        adm.release()  # the slot moves to the waiter
        await waiter
        assert (adm.active, adm.queued) == (2, 0)
        adm.release()
        adm.release()
        assert (adm.active, adm.queued) == (0, 0)
        assert metrics.INFLIGHT._value.get() == 0

    _run(go())


def test_a_waiter_is_shed_after_the_queue_timeout():
    async def go() -> None:
        adm = Admission(limit=1, max_queue=4, queue_timeout_s=0.05)
        await adm.acquire()
        before = metrics.SHED.labels("queue_timeout")._value.get()
        with pytest.raises(GatewayOverloaded):
            await adm.acquire()
        assert metrics.SHED.labels("queue_timeout")._value.get() == before + 1
        assert (adm.active, adm.queued) == (1, 0)
        adm.release()
        assert adm.active == 0

    _run(go())


def test_the_deadline_caps_the_wait():
    async def go() -> None:
        adm = Admission(limit=1, max_queue=4, queue_timeout_s=60)
        await adm.acquire()
        loop = asyncio.get_running_loop()
        with pytest.raises(GatewayOverloaded):
            await adm.acquire(deadline=loop.time() + 0.05)  # the request's own deadline comes first
        adm.release()

    _run(go())


def test_waiters_are_served_first_come_first_served():
    async def go() -> list[int]:
        adm = Admission(limit=1, max_queue=8, queue_timeout_s=5)
        order: list[int] = []
        await adm.acquire()

        async def one(i: int) -> None:
            async with adm.slot():
                order.append(i)

        tasks = []
        for i in range(5):
            tasks.append(asyncio.create_task(one(i)))
            await asyncio.sleep(0)
        adm.release()
        await asyncio.gather(*tasks)
        assert adm.active == 0
        return order

    assert _run(go()) == [0, 1, 2, 3, 4]


def test_a_cancelled_waiter_gives_its_slot_on():
    async def go() -> None:
        adm = Admission(limit=1, max_queue=8, queue_timeout_s=5)
        await adm.acquire()
        first = asyncio.create_task(adm.acquire())
        second = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0)
        first.cancel()  # the client went away while queued
        await asyncio.sleep(0)
        adm.release()
        await second
        assert (adm.active, adm.queued) == (1, 0)
        adm.release()
        assert adm.active == 0

    _run(go())
