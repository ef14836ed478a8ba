"""Pure ASGI middleware: each request's id, deadline, metrics and slow-request log, and a JSON 500 for a bug."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import errors, metrics, server
from .settings import Settings

log = logging.getLogger("yolo_gateway")

DETECT_ROUTES = ("/v1/detect", "/v1/detect/batch")


class RequestContext:
    """Pure ASGI middleware, outermost of the app's own: x-request-id, X-Process-Time, the
    request's deadline (from its first byte, as the server measured it), request metrics,
    slow-request logs, and a JSON 500 for a bug that keeps the connection usable."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        state = scope.setdefault("state", {})
        first_byte = state.get(server.REQUEST_START, loop.time())
        state["deadline"] = first_byte + self.settings.request_timeout_s
        headers = Headers(scope=scope)
        request_id = headers.get("x-request-id") or uuid.uuid4().hex
        state["request_id"] = request_id
        path = scope["path"]
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                extra = [
                    (b"x-request-id", request_id.encode("latin-1")),
                    (b"x-process-time", f"{(time.perf_counter() - start) * 1e3:.3f}ms".encode()),
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error id=%s path=%s", request_id, path)
            if started:
                raise  # a broken response: the server must close the connection
            status = 500
            await errors.unexpected_error_response()(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            metrics.REQUESTS.labels(getattr(route, "path", "unmatched"), str(status)).inc()
            elapsed = time.perf_counter() - start
            if path in DETECT_ROUTES:
                metrics.STAGE_SECONDS.labels("total").observe(elapsed)
            if elapsed * 1e3 > self.settings.slow_request_ms:
                log.warning("slow request id=%s path=%s status=%s ms=%.1f", request_id, path, status, elapsed * 1e3)
