"""Typed gateway errors. Each carries its HTTP status; `install` maps them in one place."""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response


class GatewayError(Exception):
    status = 500
    code = "internal_error"
    close_connection = False  # answer with `Connection: close`
    headers: dict[str, str] = {}  # noqa: RUF012 - read-only per class

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class BadParameter(GatewayError):
    status, code = 400, "bad_parameter"


class Unauthorized(GatewayError):
    status, code = 401, "unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="yolo-gateway"'}  # noqa: RUF012 - read-only per class


class Forbidden(GatewayError):
    status, code = 403, "forbidden"


class RateLimited(GatewayError):
    """A client past its token bucket (spec.gateway.auth.rateLimit)."""

    status, code = 429, "rate_limited"


class RequestTimeout(GatewayError):
    """The client did not send its request (headers and body) before the deadline."""

    status, code = 408, "request_timeout"
    close_connection = True


class PayloadTooLarge(GatewayError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(GatewayError):
    status, code = 415, "unsupported_media_type"


class InvalidImage(GatewayError):
    status, code = 422, "invalid_image"


class GatewayOverloaded(GatewayError):
    status, code = 503, "gateway_overloaded"


class TritonOverloaded(GatewayError):
    """Triton rejected the request: its queue is full."""

    status, code = 429, "triton_queue_full"


class TritonUnavailable(GatewayError):
    """Triton cannot be reached, the model is not loaded, or the circuit is open."""

    status, code = 503, "triton_unavailable"


class TritonTimeout(GatewayError):
    status, code = 504, "triton_timeout"


class TritonRejected(GatewayError):
    """Triton answered with an error that is not about load or reachability."""

    status, code = 502, "triton_error"


def error_response(
    status: int,
    code: str,
    message: str,
    retry_after: float | None = None,
    close_connection: bool = False,
    extra_headers: dict[str, str] | None = None,
) -> Response:
    headers = dict(extra_headers or {})
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    if close_connection:
        headers["Connection"] = "close"
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def unexpected_error_response() -> Response:
    """A bug, never bad input: still JSON, and the connection stays usable."""
    return error_response(500, GatewayError.code, "internal error")


def install(app: FastAPI) -> None:
    """Register the one mapping from exceptions to JSON error responses. Anything else
    (a bug) is answered by `unexpected_error_response` in the app's outer middleware,
    which, unlike Starlette's ServerErrorMiddleware, does not re-raise and so keeps the
    keep-alive connection and the `x-request-id` header."""

    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.retry_after, exc.close_connection, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "body"))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return error_response(400, "bad_parameter", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, "http_error", str(exc.detail))
