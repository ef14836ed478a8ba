"""The bench's load, perf_analyzer-style.

Closed loop: `concurrency` clients of the project's one load generator (yolo_tools.clients, which
the tests and the fuzzer use too) each send the next request as soon as the previous one returns.
Open loop: requests start on a fixed schedule whatever the latency. Measurement is windowed:
windows of `window_s` seconds, and a point is stable once `stable_windows` consecutive windows
agree on throughput within `tolerance`. Reported: p50/p95/p99 latency, requests/s, errors by
status.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import numpy as np

from ..clients import Clients

Send = Callable[[int], Awaitable[int]]  # request index -> status code


@dataclass
class Window:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    started: float = 0.0
    ended: float = 0.0
    completed: int = 0  # requests that ended in the window, wherever they started

    @property
    def rps(self) -> float:
        return len(self.latencies) / max(1e-9, self.ended - self.started)


@dataclass
class LoadResult:
    mode: str
    concurrency: int | None
    rate: float | None
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    errors: dict[str, int]
    stable: bool
    windows: int
    # completions per second over the windows, every request that ended in one counted: `rps`
    # counts only requests that started and ended in the same window, which undercounts when a
    # request takes a good part of a window (a slow model under load)
    completed_rps: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _summarise(
    mode: str, windows: list[Window], concurrency: int | None, rate: float | None, stable: bool
) -> LoadResult:
    lat = np.array([x for w in windows for x in w.latencies]) * 1e3
    statuses: Counter = Counter()
    for w in windows:
        statuses.update(w.statuses)
    seconds = sum(w.ended - w.started for w in windows)
    q = np.percentile(lat, [50, 95, 99]) if len(lat) else np.zeros(3)
    return LoadResult(
        mode=mode,
        concurrency=concurrency,
        rate=rate,
        requests=len(lat),
        seconds=round(seconds, 3),
        rps=round(len(lat) / max(seconds, 1e-9), 2),
        p50_ms=round(float(q[0]), 3),
        p95_ms=round(float(q[1]), 3),
        p99_ms=round(float(q[2]), 3),
        mean_ms=round(float(lat.mean()) if len(lat) else 0.0, 3),
        errors={str(k): v for k, v in statuses.items() if k != 200},
        stable=stable,
        windows=len(windows),
        completed_rps=round(sum(w.completed for w in windows) / max(seconds, 1e-9), 2),
    )


def _is_stable(windows: list[Window], n: int, tolerance: float) -> bool:
    if len(windows) < n:
        return False
    rates = [w.rps for w in windows[-n:]]
    mean = sum(rates) / n
    return mean > 0 and all(abs(r - mean) / mean <= tolerance for r in rates)


async def closed_loop(
    send: Send,
    concurrency: int,
    window_s: float = 5.0,
    stable_windows: int = 3,
    tolerance: float = 0.10,
    max_windows: int = 6,
    warmup_s: float = 1.0,
) -> LoadResult:
    """`concurrency` clients of the project's load generator (yolo_tools.clients), each sending the
    next request as soon as its answer is in. Run until `stable_windows` windows agree (or
    `max_windows`); report those windows."""
    windows: list[Window] = []
    current = Window(started=time.perf_counter() + warmup_s)

    async def timed(_client: int, i: int) -> None:
        t0 = time.perf_counter()
        try:
            status = await send(i)
        except Exception:  # a transport error is a result, not a crash of the benchmark
            status = 599
        t1 = time.perf_counter()
        if t0 >= current.started:
            current.latencies.append(t1 - t0)
            current.statuses[status] += 1
        if t1 >= current.started:
            current.completed += 1

    async with Clients(timed, concurrency, max_requests=1 << 62):
        await asyncio.sleep(warmup_s)
        while True:
            await asyncio.sleep(window_s)
            current.ended = time.perf_counter()
            windows.append(current)
            current = Window(started=current.ended)
            if _is_stable(windows, stable_windows, tolerance) or len(windows) >= max_windows:
                break
    stable = _is_stable(windows, stable_windows, tolerance)
    return _summarise("closed", windows[-stable_windows:] if stable else windows, concurrency, None, stable)


async def open_loop(send: Send, rate: float, duration_s: float = 10.0, window_s: float = 5.0) -> LoadResult:
    """Start requests at a fixed rate for `duration_s`, however many are in flight; latencies
    include any queueing. A schedule of arrivals, not clients, so not yolo_tools.clients."""
    windows = [Window(started=time.perf_counter())]
    pending: set[asyncio.Task] = set()
    start = time.perf_counter()
    n = int(rate * duration_s)

    async def one(i: int, due: float) -> None:
        try:
            status = await send(i)
        except Exception:
            status = 599
        w = windows[-1]
        w.latencies.append(time.perf_counter() - due)
        w.statuses[status] += 1
        w.completed += 1

    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if time.perf_counter() - windows[-1].started >= window_s:
            windows[-1].ended = time.perf_counter()
            windows.append(Window(started=windows[-1].ended))
        t = asyncio.create_task(one(i, due))
        pending.add(t)
        t.add_done_callback(pending.discard)
    await asyncio.gather(*pending, return_exceptions=True)
    windows[-1].ended = time.perf_counter()
    return _summarise("open", windows, None, rate, True)


Request = tuple[str, bytes, dict[str, str]]  # (path, body, headers) of one HTTP POST


def http_sender(url: str, requests: list[Request], *, ssl: Any = True, keep_alive: bool = True) -> Any:
    """An async context manager class whose `send(i)` POSTs requests[i % len] to `url` on one
    aiohttp session (no connection limit) and returns the status: the bench's one HTTP client.
    `ssl`: aiohttp's (an SSLContext for https; False: no verification); `keep_alive=False`: a new
    connection per request."""

    class Sender:
        async def __aenter__(self) -> Send:
            connector = aiohttp.TCPConnector(limit=0, force_close=not keep_alive, ssl=ssl)
            self.session = aiohttp.ClientSession(connector=connector)

            async def send(i: int) -> int:
                path, body, headers = requests[i % len(requests)]
                async with self.session.post(url + path, data=body, headers=headers) as r:
                    await r.read()
                    return r.status

            return send

        async def __aexit__(self, *exc: object) -> None:
            await self.session.close()

    return Sender


def jpeg_requests(jpegs: list[bytes], query: str = "") -> list[Request]:
    """POST /v1/detect of each JPEG, as the gateway takes it."""
    return [(f"/v1/detect{query}", j, {"content-type": "image/jpeg"}) for j in jpegs]


# --------------------------------------------------------------------------- process and server counters


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (and its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """A process's CPU seconds by kind of thread, from /proc/<pid>/task: `event_loop` (the main
    thread: HTTP, the framework, gRPC calls), `pool` (the other threads that keep the process's
    name: the CPU pool's decode, letterbox and NMS, and grpc.aio's completion-queue poller, a
    Python thread too) and `grpc` (gRPC core's own named threads). Threads that ended are not
    counted."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {"event_loop": 0.0, "pool": 0.0, "grpc": 0.0}
    with open(f"/proc/{pid}/comm") as f:
        process_name = f.read().strip()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue  # the thread ended meanwhile
        kind = "event_loop" if task == str(pid) else "pool" if name == process_name else "grpc"
        out[kind] += (int(fields[11]) + int(fields[12])) / ticks
    return out


def machine_cpu_seconds() -> dict[str, float]:
    """The machine's CPU seconds so far, all cores, from /proc/stat: busy (user, nice, system,
    irq, softirq), idle (idle, iowait) and steal (taken by the hypervisor for other guests)."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "busy": (user + nice + system + irq + softirq) / ticks,
        "idle": (idle + iowait) / ticks,
        "steal": steal / ticks,
    }


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its live descendants (tritonserver and its
    python-backend stubs, which run the models here), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(entry))
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0.0)
        todo += children.get(p, [])
    return total


def schedstat_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process's live threads from /proc/<pid>/task/*/schedstat: nanosecond
    resolution, where /proc/<pid>/stat counts 10 ms ticks (for short idle samples)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            continue  # the thread ended meanwhile
    return total / 1e9


TENSOR_BYTES = {
    "TYPE_FP32": 4,
    "TYPE_FP16": 2,
    "TYPE_UINT8": 1,
    "TYPE_INT8": 1,
    "TYPE_INT32": 4,
    "TYPE_INT64": 8,
    "TYPE_BOOL": 1,
}


def triton_config(http_url: str, model: str) -> dict:
    """The config Triton loaded for `model` (its JSON form)."""
    with urllib.request.urlopen(f"{http_url}/v2/models/{model}/config", timeout=5) as r:
        return json.loads(r.read())


def wire_bytes(config: dict, observed: dict[str, list[int]] | None = None) -> dict:
    """Bytes one image puts on the wire to and from Triton: every input and output tensor of a
    loaded config (batch dimension excluded), from its dims and data type. `observed`: tensor
    name -> the shape a real response had (batch excluded), for dims the config leaves dynamic."""

    def size(tensors: list[dict]) -> int:
        total = 0
        for t in tensors:
            dims = [int(d) for d in (observed or {}).get(t["name"], t["dims"])]
            if any(d < 0 for d in dims):
                raise ValueError(f"tensor {t['name']} has a dynamic dimension {dims}: its size is not fixed")
            total += TENSOR_BYTES[t["data_type"]] * int(np.prod(dims))
        return total

    inputs, outputs = size(config["input"]), size(config["output"])
    return {"input": inputs, "output": outputs, "total": inputs + outputs}


def input_encoding(config: dict) -> tuple[str, str, int, int]:
    """(dtype, layout, height, width) of a loaded config's single image input: uint8 NHWC
    ([H, W, 3]) or fp32 NCHW ([3, H, W]), batch dimension excluded."""
    (inp,) = config["input"]
    dims = [int(d) for d in inp["dims"]]
    dtype = inp["data_type"].removeprefix("TYPE_")
    if dims[-1] == 3:
        return dtype, "NHWC", dims[0], dims[1]
    return dtype, "NCHW", dims[1], dims[2]


def triton_stats(http_url: str, model: str) -> dict:
    with urllib.request.urlopen(f"{http_url}/v2/models/{model}/stats", timeout=5) as r:
        return json.loads(r.read())["model_stats"][0]


def triton_split(before: dict, after: dict) -> dict:
    """Server-side split per request (queue, compute input/infer/output, in ms) and batching, from two snapshots."""

    def delta(stat: str, key: str) -> float:
        return float(after["inference_stats"][stat][key]) - float(before["inference_stats"][stat][key])

    success = delta("success", "count") or 1.0
    out = {
        k: round(delta(k, "ns") / success / 1e6, 3)
        for k in ("queue", "compute_input", "compute_infer", "compute_output")
    }
    inferences = int(after["inference_count"]) - int(before["inference_count"])
    executions = int(after["execution_count"]) - int(before["execution_count"])
    out["inferences"] = inferences
    out["executions"] = executions
    out["mean_batch"] = round(inferences / executions, 2) if executions else 0.0
    sizes = {}
    prev = {b["batch_size"]: int(b["compute_infer"]["count"]) for b in before.get("batch_stats", [])}
    for b in after.get("batch_stats", []):
        n = int(b["compute_infer"]["count"]) - prev.get(b["batch_size"], 0)
        if n:
            sizes[int(b["batch_size"])] = n
    out["batch_sizes"] = dict(sorted(sizes.items()))
    return out


def burst(port: int, body: bytes, n: int, limit_s: float = 60.0) -> dict:
    """`n` requests at once on `n` pre-opened raw sockets (no client library in the way):
    status counts and latency percentiles per status, from the moment all were sent."""
    import selectors  # noqa: PLC0415
    import socket  # noqa: PLC0415

    request = (
        f"POST /v1/detect HTTP/1.1\r\nHost: bench\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    socks = [socket.create_connection(("127.0.0.1", port), timeout=limit_s) for _ in range(n)]
    sel = selectors.DefaultSelector()
    start = time.perf_counter()
    for s in socks:
        s.sendall(request)
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
    latencies: dict[int, list[float]] = {}
    retry_after = 0
    end = time.monotonic() + limit_s
    while len(sel.get_map()) and time.monotonic() < end:
        for key, _ in sel.select(1):
            buf: bytearray = key.data
            try:
                chunk = key.fileobj.recv(65536)  # type: ignore[union-attr]  # only sockets are registered with the selector
            except OSError:
                chunk = b""
            buf += chunk
            head, sep, rest = bytes(buf).partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = next((int(x.split(b":")[1]) for x in lines if x.lower().startswith(b"content-length:")), 0)
            if chunk and not (sep and len(rest) >= length):
                continue
            code = int(lines[0].split()[1]) if sep else 0  # 0: closed without a response
            latencies.setdefault(code, []).append((time.perf_counter() - start) * 1e3)
            retry_after += any(x.lower().startswith(b"retry-after:") for x in lines)
            sel.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]  # only sockets are registered with the selector
    for key in list(sel.get_map().values()):
        latencies.setdefault(-1, []).append(limit_s * 1e3)  # no answer in time
        key.fileobj.close()  # type: ignore[union-attr]  # only sockets are registered with the selector
    return {
        "requests": n,
        "statuses": {str(c): len(v) for c, v in sorted(latencies.items())},
        "with_retry_after": retry_after,
        "p50_ms": {str(c): round(float(np.percentile(v, 50)), 1) for c, v in sorted(latencies.items())},
        "p95_ms": {str(c): round(float(np.percentile(v, 95)), 1) for c, v in sorted(latencies.items())},
    }
