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


def test_the_limit_fits_the_containers_memory_once_the_model_is_known():
    """A 640 px, 80-class fp32 model holds about 27 MB a request in flight (measured): in a 1 GiB
    container with 130 MB in use, 27 fit, not the configured 64; the bundled model's 5 MB fit 64."""
    from yolo_gateway.signature import ModelSignature

    def sig(dtype: str, size: int, nc: int) -> ModelSignature:
        return ModelSignature(
            "m", "1", "images", dtype, "NCHW", size, size, 8, "raw", ("output0",), tuple(f"c{i}" for i in range(nc))
        )

    big, small = sig("FP32", 640, 80), sig("UINT8", 320, 3)
    assert big.tensor_bytes == 640 * 640 * 3 * 4 + 4 * 8400 * 85 and small.tensor_bytes == 320 * 320 * 3 + 4 * 2100 * 8
    gib, used = 1 << 30, 130 << 20
    adm = Admission(limit=64, max_queue=64, queue_timeout_s=5)
    assert adm.fit_memory(big.tensor_bytes, 64, 0.8, gib, used) == 27 == adm.limit
    assert metrics.ADMISSION_LIMIT._value.get() == 27
    assert adm.fit_memory(small.tensor_bytes, 64, 0.8, gib, used) == 64  # never above what is configured
    assert adm.fit_memory(big.tensor_bytes, 64, 0.8, None, used) == 64  # no limit, nothing to fit
    assert adm.fit_memory(big.tensor_bytes, 64, 0.0, gib, used) == 64  # switched off
    assert adm.fit_memory(big.tensor_bytes, 64, 0.8, 150 << 20, used) == 1  # never below one


def test_a_raised_limit_lets_waiters_in_and_a_lowered_one_lets_slots_go():
    async def go() -> None:
        adm = Admission(limit=1, max_queue=4, queue_timeout_s=5)
        await adm.acquire()
        waiters = [asyncio.create_task(adm.acquire()) for _ in range(2)]
        await asyncio.sleep(0)
        assert (adm.active, adm.queued) == (1, 2)
        adm.fit_memory(1, 3, 0.8, None, 0)  # no memory limit: the configured 3
        await asyncio.gather(*waiters)
        assert (adm.active, adm.queued) == (3, 0)
        adm.fit_memory(1, 1, 0.8, None, 0)  # lowered to 1 with 3 in use
        late = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0)
        adm.release()  # 3 -> 2 in use: still above the limit, the waiter keeps waiting
        await asyncio.sleep(0)
        assert (adm.active, adm.queued, late.done()) == (2, 1, False)
        adm.release()
        adm.release()  # 1 -> the waiter takes it over
        await late
        assert (adm.active, adm.queued) == (1, 0)

    _run(go())
