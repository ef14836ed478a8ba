"""The HTTP server: uvicorn with httptools and uvloop, plus bounds for hostile clients.

uvicorn alone has no deadline for a request's headers (a slowloris client holds
its connection for as long as it likes), closes a `Connection: close` request's
socket as soon as the response is written even when the client is still sending
its body (the client then sees a reset instead of its 413), and discards an unread
body for as long as the client keeps sending. `GatewayProtocol` adds:

- **one deadline per request, from its first byte**: the headers must arrive
  before it or the client gets 408 and the connection is closed. The time of the
  first byte is handed to the app (`scope["state"][REQUEST_START]`, loop time), whose
  body read and processing run under the same deadline;
- **a bounded drain**: after an early response (413, 408, ...) the rest of the body
  is read and thrown away, at most `drain_max_bytes` within `drain_timeout_s`, so
  that every client, whatever library it uses, can read the response; past either
  bound the connection is cut;
- **a body read in fewer rounds**: reading pauses at 1 MiB unread instead of uvicorn's 64 KiB;
- a response the app marks with `scope["state"][CUT] = True` (a 408 for a slow body)
  closes the connection at once instead of draining it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from . import metrics, tls

REQUEST_START = "yolo.request_start"
CUT = "yolo.cut"
# uvicorn pauses reading a request's body whenever 64 KiB wait unread, so a 1080p JPEG (300-600 KB)
# arrives in stop-and-go rounds through the event loop. The app reads the whole body into memory
# anyway (up to max_body_bytes), so buffering up to 1 MiB before the route reads it bounds nothing
# that matters, and a typical image arrives without a pause: 0.8-1.3 ms less latency at c=1
# (BENCHMARKS.md, "The CPU budget by library", "Tried this time").
BODY_HIGH_WATER = 1024 * 1024


class _DeferredClose:
    """The transport as the request cycle sees it: `close()` waits until the body is drained."""

    def __init__(self, transport: asyncio.Transport, protocol: GatewayProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def close(self) -> None:
        self._protocol.close_after_body()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatewayProtocol(HttpToolsProtocol):
    request_timeout_s: float = 10.0
    drain_max_bytes: int = 64 * 1024 * 1024
    drain_timeout_s: float = 5.0

    _reported = False  # the runtime, reported once: httptools (this class) on whichever loop runs it

    # uvicorn's protocols take the asyncio.Transport a server gives them; BaseProtocol says BaseTransport.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not GatewayProtocol._reported:
            GatewayProtocol._reported = True
            loop = type(asyncio.get_running_loop())
            metrics.RUNTIME.info({"loop": loop.__module__.split(".")[0], "http": "httptools"})
        self._headers_done = True  # no request started yet
        self._message_done = True
        self._close_pending = False
        self._drained = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._drain_timer: asyncio.TimerHandle | None = None
        # A connection that never sends a request is closed at the deadline too.
        self._deadline = self.loop.call_later(self.request_timeout_s, self._on_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def _cancel_timers(self) -> None:
        for timer in (self._deadline, self._drain_timer):
            if timer is not None:
                timer.cancel()
        self._deadline = self._drain_timer = None

    # ------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        now = self.loop.time()
        self.scope["state"][REQUEST_START] = now
        self._headers_done = False
        self._message_done = False
        self._drained = 0
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_at(now + self.request_timeout_s, self._on_deadline)

    def on_headers_complete(self) -> None:
        self._headers_done = True
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        real = self.transport
        self.transport = _DeferredClose(real, self)  # type: ignore[assignment]  # the new cycle keeps this one
        try:
            super().on_headers_complete()
        finally:
            self.transport = real

    def on_body(self, body: bytes) -> None:
        if self.cycle is not None and self.cycle.response_complete:
            self._drained += len(body)
            if self._drained > self.drain_max_bytes:
                self._close_now()
                return
        # uvicorn's own on_body, with a higher pause threshold (BODY_HIGH_WATER)
        if (
            self.cycle is None
            or self.cycle.response_complete
            or (self.parser.should_upgrade() and self._should_upgrade())
        ):
            return
        self.cycle.body += body
        if len(self.cycle.body) > BODY_HIGH_WATER:
            self.flow.pause_reading()
        self.cycle.message_event.set()

    def on_message_complete(self) -> None:
        self._message_done = True
        super().on_message_complete()
        if self._close_pending:
            self._close_now()
        elif self._drain_timer is not None:  # drained in time: the connection lives on
            self._drain_timer.cancel()
            self._drain_timer = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._message_done and not self.transport.is_closing():
            self._arm_drain()

    # ------------------------------------------------------------------ closing

    def _arm_drain(self) -> None:
        if self._drain_timer is None:
            self._drain_timer = self.loop.call_later(self.drain_timeout_s, self._close_now)

    def close_after_body(self) -> None:
        cut = self.cycle is not None and self.cycle.scope["state"].get(CUT)
        if cut or self._message_done or self.transport.is_closing():
            self._close_now()
        else:
            self._close_pending = True
            self._arm_drain()

    def _close_now(self) -> None:
        self._cancel_timers()
        if not self.transport.is_closing():
            self.transport.close()

    def _on_deadline(self) -> None:
        self._deadline = None
        if self._headers_done and self._message_done:  # idle: nothing was sent
            self._close_now()
        elif not self._headers_done:
            self._send_408()

    def _send_408(self) -> None:
        body = orjson.dumps(
            {
                "error": {
                    "code": "request_timeout",
                    "message": f"request headers not received within {self.request_timeout_s:g}s",
                }
            }
        )
        head = (
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nx-request-id: {uuid.uuid4().hex}\r\nconnection: close\r\n\r\n"
        )
        if not self.transport.is_closing():
            self.transport.write(head.encode("latin-1") + body)
        self._close_now()


def protocol_class(request_timeout_s: float, drain_max_bytes: int, drain_timeout_s: float) -> type[GatewayProtocol]:
    """A `GatewayProtocol` bound to these limits (uvicorn instantiates the class itself)."""
    return type(
        "BoundGatewayProtocol",
        (GatewayProtocol,),
        {
            "request_timeout_s": request_timeout_s,
            "drain_max_bytes": drain_max_bytes,
            "drain_timeout_s": drain_timeout_s,
        },
    )


def run(
    app: Any,
    *,
    host: str,
    port: int,
    request_timeout_s: float,
    drain_max_bytes: int,
    drain_timeout_s: float,
    tls_files: tls.TLSFiles | None = None,
    tls_reload_s: float = 10.0,
    **kw: Any,
) -> None:
    """Serve `app` (uvloop, the gateway's protocol); with `tls_files`, HTTPS only, the pair
    reloaded into the live SSLContext when it changes (tls.Reloader)."""
    if tls_files is not None:
        kw |= {"ssl_certfile": str(tls_files.certfile), "ssl_keyfile": str(tls_files.keyfile)}
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=protocol_class(request_timeout_s, drain_max_bytes, drain_timeout_s),
        **kw,
    )
    config.load()  # builds config.ssl, the context every new connection's handshake uses
    reloader = tls.Reloader(config.ssl, tls_files, tls_reload_s).start() if tls_files and config.ssl else None
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        if reloader is not None:
            reloader.stop()
    if not server.started:  # as uvicorn.run: a failed start (the port taken) is an exit code
        raise SystemExit(3)
