"""The FastAPI gateway: HTTP images in, detections out.

    uvicorn --factory yolo_gateway.app:create_app     (or: python -m yolo_gateway)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__, errors, metrics
from .errors import BadParameter, GatewayOverloaded, PayloadTooLarge, TritonTimeout, UnsupportedMediaType
from .pipeline import Detector, Upload
from .postprocess import DetectParams
from .schemas import BatchResponse, DetectResponse, ErrorResponse, Health, ModelsResponse
from .settings import Settings
from .triton import TritonService

log = logging.getLogger("yolo_gateway")

DETECT_ROUTES = ("/v1/detect", "/v1/detect/batch")
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


# --------------------------------------------------------------------------- middleware


class RequestContext:
    """Pure ASGI middleware: x-request-id, X-Process-Time, request metrics,
    the in-flight gauge for detection routes, load shedding, and slow-request logs."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = Headers(scope=scope)
        request_id = headers.get("x-request-id") or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        path = scope["path"]
        counted = path in DETECT_ROUTES
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [
                    (b"x-request-id", request_id.encode("latin-1")),
                    (b"x-process-time", f"{(time.perf_counter() - start) * 1e3:.3f}ms".encode()),
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        if counted:
            if self.inflight >= self.settings.max_inflight:
                status = 503
                response = errors.error_response(503, GatewayOverloaded.code, "gateway overloaded, retry later", 1)
                await response(scope, receive, send_wrapper)
                metrics.REQUESTS.labels(path, "503").inc()
                return
            self.inflight += 1
            metrics.INFLIGHT.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if counted:
                self.inflight -= 1
                metrics.INFLIGHT.dec()
            route = scope.get("route")
            metrics.REQUESTS.labels(getattr(route, "path", "unmatched"), str(status)).inc()
            elapsed = time.perf_counter() - start
            if counted:
                metrics.STAGE_SECONDS.labels("total").observe(elapsed)
            if elapsed * 1e3 > self.settings.slow_request_ms:
                log.warning("slow request id=%s path=%s status=%s ms=%.1f", request_id, path, status, elapsed * 1e3)


# --------------------------------------------------------------------------- body


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing with 413 before reading it whole when it is too large."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError as exc:
            raise BadParameter("invalid Content-Length") from exc
        if declared > limit:
            raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_uploads(request: Request, settings: Settings, many: bool) -> list[Upload]:
    """Images from a raw body (image/*) or multipart/form-data (any file fields)."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    body = await read_body(request, settings.max_body_bytes)
    if media != "multipart/form-data":
        if many:
            raise UnsupportedMediaType("the batch endpoint takes multipart/form-data with one file field per image")
        return [Upload(body, media or None)]

    async def stream() -> AsyncIterator[bytes]:
        yield body

    try:
        parser = MultiPartParser(request.headers, stream(), max_files=settings.max_batch_images, max_fields=16)
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadParameter(f"malformed multipart body: {exc.message}") from exc
    files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
    if not files:
        raise BadParameter("multipart body has no file field")
    if not many and len(files) > 1:
        raise BadParameter("/v1/detect takes one image; use /v1/detect/batch for several")
    if len(files) > settings.max_batch_images:
        raise BadParameter(f"at most {settings.max_batch_images} images per request")
    return [Upload(await f.read(), f.content_type) for f in files]


# --------------------------------------------------------------------------- dependencies


def get_detector(request: Request) -> Detector:
    return request.app.state.detector


def get_triton(request: Request) -> TritonService:
    return request.app.state.triton


DetectorDep = Annotated[Detector, Depends(get_detector)]
TritonDep = Annotated[TritonService, Depends(get_triton)]


def detect_params(
    detector: DetectorDep,
    conf: Annotated[float | None, Query(ge=0, le=1, description="confidence threshold")] = None,
    iou: Annotated[float | None, Query(ge=0, le=1, description="NMS IoU threshold")] = None,
    max_det: Annotated[int | None, Query(ge=1, description="detections per image")] = None,
    classes: Annotated[list[str] | None, Query(description="keep these class ids or names (comma-separated or repeated)")] = None,
) -> DetectParams:
    return detector.params(conf, iou, max_det, classes)


ParamsDep = Annotated[DetectParams, Depends(detect_params)]

_binary = {"schema": {"type": "string", "format": "binary"}}
_multipart_one = {"schema": {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}}, "required": ["image"]}}
_multipart_many = {
    "schema": {
        "type": "object",
        "properties": {"images": {"type": "array", "items": {"type": "string", "format": "binary"}}},
        "required": ["images"],
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Bad parameters or malformed multipart",
        413: "Body too large",
        415: "Unsupported content type or image format",
        422: "Empty, corrupt or truncated image, or over the pixel limit",
        429: "Triton's queue is full",
        502: "Triton rejected the request",
        503: "Triton unavailable (circuit open) or gateway overloaded; see Retry-After",
        504: "Deadline exceeded",
    }.items()
}

router = APIRouter()


async def _run(detector: Detector, uploads: list[Upload], params: DetectParams, request: Request) -> list[dict[str, Any]]:
    try:
        async with asyncio.timeout(detector.settings.request_timeout_s):
            return await detector.detect(uploads, params, request.state.request_id)
    except TimeoutError as exc:
        raise TritonTimeout(f"request deadline of {detector.settings.request_timeout_s}s exceeded") from exc


@router.post(
    "/v1/detect",
    response_model=DetectResponse,
    responses=ERRORS,
    summary="Detect objects in one image",
    description="Send the image as the raw body (image/jpeg, image/png, image/webp) or as multipart/form-data.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {**{t: _binary for t in IMAGE_TYPES}, "multipart/form-data": _multipart_one},
        }
    },
)
async def detect(request: Request, detector: DetectorDep, params: ParamsDep) -> Response:
    uploads = await read_uploads(request, detector.settings, many=False)
    (result,) = await _run(detector, uploads, params, request)
    return JSONResponse(result)


@router.post(
    "/v1/detect/batch",
    response_model=BatchResponse,
    responses=ERRORS,
    summary="Detect objects in several images",
    description="multipart/form-data with one file field per image; results come in the same order. "
    "A bad image fails the whole request with the status of its error.",
    openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": _multipart_many}}},
)
async def detect_batch(request: Request, detector: DetectorDep, params: ParamsDep) -> Response:
    uploads = await read_uploads(request, detector.settings, many=True)
    results = await _run(detector, uploads, params, request)
    return JSONResponse({"results": results})


@router.get("/v1/models", response_model=ModelsResponse, responses={503: ERRORS[503]})
async def models(triton: TritonDep) -> Response:
    return JSONResponse({"models": [triton.require_signature().describe()]})


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Response:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}}, summary="Readiness: Triton ready and the model loaded")
async def readyz(request: Request, triton: TritonDep) -> Response:
    if request.app.state.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    if await triton.ready():
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not ready"}, status_code=503)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# --------------------------------------------------------------------------- app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        triton = TritonService(settings)  # the one client and channel of this process
        detector = Detector(settings, triton)
        app.state.triton, app.state.detector, app.state.draining = triton, detector, False
        loader = asyncio.create_task(triton.keep_loading_signature())
        try:
            yield
        finally:
            app.state.draining = True
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loader
            detector.close()
            await triton.close()

    app = FastAPI(
        title="yolo-operator gateway",
        version=__version__,
        description="YOLO object detection over HTTP, served by NVIDIA Triton.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
    )
    app.include_router(router)
    errors.install(app)
    app.add_middleware(RequestContext, settings=settings)
    return app
