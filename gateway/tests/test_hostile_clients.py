"""Hostile clients against the real gateway process (uvicorn, httptools) and a real Triton:
slow headers and bodies, oversized bodies from every common client, overload, bugs.

Each test bounds its own loops in count and time, and sends traffic only to loopback."""

from __future__ import annotations

import asyncio
import http.client
import json
import select
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import aiohttp
import httpx
import numpy as np
import pytest
import requests
import uvicorn

from yolo_gateway import server
from yolo_gateway.app import create_app
from yolo_gateway.settings import Settings
from yolo_tools import fuzz
from yolo_tools.local_triton import LocalTriton, free_port
from yolo_tools.stack import GatewayProcess
from yolo_tools.synthetic import encode, make_scene

LIMIT = 1024 * 1024
DEADLINE_S = 2.0


@pytest.fixture(scope="module")
def strict(triton: LocalTriton, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway with a short deadline, a small body limit and room for only 2 + 2 requests."""
    env = {
        "YOLO_GATEWAY_TRITON_URL": triton.grpc_target,
        "YOLO_GATEWAY_REQUEST_TIMEOUT_S": str(DEADLINE_S),
        "YOLO_GATEWAY_MAX_BODY_BYTES": str(LIMIT),
        "YOLO_GATEWAY_DRAIN_MAX_BYTES": str(8 * LIMIT),
        "YOLO_GATEWAY_DRAIN_TIMEOUT_S": "3",
        "YOLO_GATEWAY_MAX_CONCURRENCY": "2",
        "YOLO_GATEWAY_MAX_QUEUE": "2",
        "YOLO_GATEWAY_QUEUE_TIMEOUT_S": "0.05",
    }
    logs = tmp_path_factory.mktemp("strict")
    with GatewayProcess(free_port(), env, log_path=logs / "gateway.log") as gw:
        yield gw


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    return encode(make_scene(np.random.default_rng(7), 640, 480))


def _connect(gw: GatewayProcess, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.port), timeout=timeout)


def _read_all(s: socket.socket, limit_s: float = 10) -> bytes:
    """Everything the server sends until it closes (bounded in time)."""
    s.settimeout(limit_s)
    data = b""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


def _readable(s: socket.socket, wait_s: float) -> bool:
    return bool(select.select([s], [], [], wait_s)[0])


def _metric(gw: GatewayProcess, name: str) -> float:
    """The sum of a metric's samples over its labels."""
    with urllib.request.urlopen(gw.url + "/metrics", timeout=5) as r:
        values = [
            float(line.rsplit(" ", 1)[1])
            for line in r.read().decode().splitlines()
            if line.startswith((name + " ", name + "{"))
        ]
    assert values, f"{name} not exported"
    return sum(values)


# --------------------------------------------------------------------------- slow clients


def test_slow_headers_get_408_at_the_deadline(strict):
    lines = 40  # a slowloris trickle, one header line every 0.25 s: 10 s, five times the deadline
    with _connect(strict) as s:
        s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n")
        sent = 0
        for i in range(lines):
            try:
                s.sendall(f"X-Slow-{i}: y\r\n".encode())
            except OSError:
                break
            sent += 1
            if _readable(s, 0.25):  # the server answered while the client was still trickling
                break
        response = _read_all(s)
    assert response.startswith(b"HTTP/1.1 408"), response[:200]
    assert b"x-request-id:" in response.lower() and b"request_timeout" in response
    assert sent < lines, "cut at the deadline, not when the client gave up"


def test_a_silent_connection_is_closed_at_the_deadline(strict):
    with _connect(strict) as s:
        s.settimeout(DEADLINE_S + 5)
        assert s.recv(1) == b""  # closed by the server (a TimeoutError here fails the test)


def test_slow_body_gets_408_and_is_never_in_flight(strict, jpeg):
    body = jpeg
    inflight_seen = []
    with _connect(strict) as s:
        s.sendall(
            f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        for i in range(40):  # ~10 bytes every 0.1 s: far slower than the deadline allows
            try:
                s.sendall(body[i * 10 : (i + 1) * 10])
            except OSError:
                break
            if i % 5 == 0:
                inflight_seen.append(_metric(strict, "yolo_gateway_inflight_requests"))
            time.sleep(0.1)
        response = _read_all(s)
    assert response.startswith(b"HTTP/1.1 408"), response[:200]
    assert b"request_timeout" in response and b"connection: close" in response.lower()
    assert inflight_seen and set(inflight_seen) == {0.0}, "a slow upload is not in flight until its body is in"


# --------------------------------------------------------------------------- 413 for every client


def _big() -> bytes:
    return b"\xff\xd8\xff" + b"\0" * (3 * LIMIT)


def _assert_413(status: int, body: bytes) -> None:
    assert status == 413, body[:200]
    assert json.loads(body)["error"]["code"] == "payload_too_large"


def test_413_reaches_urllib(strict):
    req = urllib.request.Request(strict.url + "/v1/detect", data=_big(), headers={"content-type": "image/jpeg"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)  # sends Connection: close, the case that used to reset
    _assert_413(err.value.code, err.value.read())


def test_413_reaches_requests_httpx_and_aiohttp(strict):
    r = requests.post(strict.url + "/v1/detect", data=_big(), headers={"content-type": "image/jpeg"}, timeout=10)
    _assert_413(r.status_code, r.content)
    r2 = httpx.post(strict.url + "/v1/detect", content=_big(), headers={"content-type": "image/jpeg"}, timeout=10)
    _assert_413(r2.status_code, r2.content)

    async def with_aiohttp() -> tuple[int, bytes]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(strict.url + "/v1/detect", data=_big(), headers={"content-type": "image/jpeg"}) as resp,
        ):
            return resp.status, await resp.read()

    _assert_413(*asyncio.run(with_aiohttp()))


def test_413_reaches_curl_with_and_without_expect(strict, tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(_big())
    for extra in ([], ["-H", "Expect:"]):  # curl sends Expect: 100-continue for large bodies by default
        out = subprocess.run(
            [
                "curl",
                "-sS",
                "--max-time",
                "10",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "-H",
                "content-type: image/jpeg",
                *extra,
                "--data-binary",
                f"@{path}",
                strict.url + "/v1/detect",
            ],
            capture_output=True,
            timeout=20,
            check=False,
        )
        body, _, code = out.stdout.rpartition(b"\n")
        _assert_413(int(code), body)


def test_413_streamed_body_with_connection_close(strict):
    """No Content-Length (chunked): the limit is found while streaming, then the rest is drained."""
    with _connect(strict) as s:
        s.sendall(
            b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        chunk = b"\0" * 65536
        for _ in range(3 * LIMIT // len(chunk)):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        s.sendall(b"0\r\n\r\n")
        response = _read_all(s)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]


def test_draining_is_bounded_in_bytes(strict):
    """A body far over the drain bound is cut, not read for ever."""
    declared = 1 << 40
    sent = 0
    with _connect(strict) as s:
        s.sendall(
            f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {declared}\r\n\r\n".encode()
        )
        chunk = b"\0" * 65536
        with pytest.raises(OSError):  # reset or broken pipe once the server stops draining
            for _ in range(64 * 8 * LIMIT // len(chunk)):  # 8x the drain bound at most
                sent += s.send(chunk)
    assert sent < 64 * 8 * LIMIT


def test_keep_alive_connection_survives_a_413(strict, jpeg):
    conn = http.client.HTTPConnection("127.0.0.1", strict.port, timeout=10)
    conn.request("POST", "/v1/detect", body=_big(), headers={"content-type": "image/jpeg"})
    r = conn.getresponse()
    r.read()
    assert r.status == 413
    conn.request("POST", "/v1/detect", body=jpeg, headers={"content-type": "image/jpeg"})
    r = conn.getresponse()
    assert r.status == 200, r.read()[:200]
    conn.close()


# --------------------------------------------------------------------------- overload


def test_overload_is_shed_at_once_with_retry_after(strict, jpeg):
    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
        async with httpx.AsyncClient(base_url=strict.url, timeout=20, limits=limits) as c:
            return await asyncio.gather(
                *(c.post("/v1/detect", content=jpeg, headers={"content-type": "image/jpeg"}) for _ in range(60))
            )

    before = _metric(strict, "yolo_gateway_shed_total")
    responses = asyncio.run(burst())
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes  # no 504 at the deadline
    assert codes.count(200) >= 2 and codes.count(503) >= 1  # the two slots served; the rest shed
    for r in responses:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "gateway_overloaded"
            assert "x-request-id" in r.headers
    assert _metric(strict, "yolo_gateway_shed_total") - before == codes.count(503)
    assert _metric(strict, "yolo_gateway_inflight_requests") == 0
    assert _metric(strict, "yolo_gateway_admission_limit") == 2


# --------------------------------------------------------------------------- a bug is still JSON, and the connection survives


@pytest.fixture
def buggy_server() -> Iterator[int]:
    """The real app and server protocol, with one route that raises: the one fault that
    input cannot cause, injected because the gateway has no such bug to trigger."""
    app = create_app(Settings(triton_url="127.0.0.1:1", metadata_retry_s=60))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("injected bug")

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        log_level="critical",
        http=server.protocol_class(5.0, LIMIT, 1.0),
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    try:
        yield port
    finally:
        srv.should_exit = True
        thread.join(10)


def test_unexpected_error_is_json_with_request_id_and_keeps_the_connection(buggy_server):
    conn = http.client.HTTPConnection("127.0.0.1", buggy_server, timeout=5)
    conn.request("GET", "/boom", headers={"x-request-id": "bug-1"})
    r = conn.getresponse()
    body = json.loads(r.read())
    assert r.status == 500 and body["error"]["code"] == "internal_error"
    assert r.getheader("x-request-id") == "bug-1"
    conn.request("GET", "/healthz")  # the same connection: the next, innocent request works
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}
    conn.close()


# --------------------------------------------------------------------------- fuzzing


def test_fuzzed_requests_get_no_500_no_hang_no_reset(triton, tmp_path):
    """A bounded fuzz run (make fuzz runs 10^5) against a gateway in a 1.5 GiB memory cage."""
    report = fuzz.fuzz_gateway(triton.grpc_target, count=3000, seed=11, memory_mb=1536, workers=4, log_dir=tmp_path)
    print(
        f"\nfuzz: {report.count} inputs, statuses {dict(report.statuses)}, RSS {report.rss_before_mb} -> "
        f"{report.rss_after_mb} MB (peak {report.rss_peak_mb}), {report.memory_limit}"
    )
    assert report.failures == [] and report.hangs == 0 and report.resets == 0
    assert report.count == 3000
    assert {200, 400, 415, 422} <= set(report.statuses), "the mutations reach every outcome"
