"""The FastAPI gateway: HTTP images in, detections out.

uvicorn --factory yolo_gateway.app:create_app     (or: python -m yolo_gateway)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Security
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__, auth, errors, metrics, parameters, readiness, server
from .auth import APIKeys
from .errors import BadParameter, PayloadTooLarge, RequestTimeout, TritonTimeout, UnsupportedMediaType
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


# --------------------------------------------------------------------------- body


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body before the request's deadline (408 after it), refusing with 413 before
    reading it whole when it is too large (the server then drains the rest, bounded)."""
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
    try:
        async with asyncio.timeout_at(request.state.deadline):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError as exc:
        request.scope["state"][server.CUT] = True  # a slow client: close, do not drain
        raise RequestTimeout(f"request body not received within the deadline ({size} bytes so far)") from exc
    except ClientDisconnect as exc:
        raise RequestTimeout("the client disconnected before sending the whole body") from exc
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

    async def stream() -> AsyncGenerator[bytes, None]:
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


# Dependencies are `async def`: FastAPI runs plain `def` ones in a thread pool, a hand-off per
# request that queues behind every other request under load.


async def get_detector(request: Request) -> Detector:
    return request.app.state.detector


async def get_triton(request: Request) -> TritonService:
    return request.app.state.triton


DetectorDep = Annotated[Detector, Depends(get_detector)]
TritonDep = Annotated[TritonService, Depends(get_triton)]


async def detect_params(
    detector: DetectorDep,
    conf: Annotated[float | None, Query(ge=0, le=1, description="confidence threshold")] = None,
    iou: Annotated[float | None, Query(ge=0, le=1, description="NMS IoU threshold")] = None,
    max_det: Annotated[int | None, Query(ge=1, description="detections per image")] = None,
    classes: Annotated[
        list[str] | None, Query(description="keep these class ids or names (comma-separated or repeated)")
    ] = None,
    preprocess: Annotated[
        Literal["fast", "parity"] | None,
        Query(
            description="fast (default): DCT-scaled decode, INTER_AREA; parity: Ultralytics' own preprocessing, for comparing with its validation numbers"
        ),
    ] = None,
    tier: Annotated[
        str | None,
        Query(
            max_length=63,
            description="a latency tier the service declares (spec.tiers; GET /v1/models lists them); empty: the default tier",
        ),
    ] = None,
) -> DetectParams:
    names = detector.triton.require_signature().class_names if classes else None
    return parameters.detect_params(detector.settings, names, conf, iou, max_det, classes, preprocess, tier or None)


ParamsDep = Annotated[DetectParams, Depends(detect_params)]

_binary = {"schema": {"type": "string", "format": "binary"}}
_multipart_one = {
    "schema": {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}}, "required": ["image"]}
}
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
        408: "Request headers or body not received within the deadline",
        413: "Body too large",
        415: "Unsupported content type or image format",
        422: "Empty, corrupt or truncated image, or over the pixel limit",
        429: "Triton's queue is full",
        502: "Triton rejected the request",
        503: "Triton unavailable (circuit open) or gateway overloaded (shed at once); see Retry-After",
        504: "Deadline exceeded",
    }.items()
}

router = APIRouter()
CLIENT = Security(auth.require_client)  # API keys, when the gateway has a key folder (auth.py)


async def _run(detector: Detector, request: Request, params: DetectParams, many: bool) -> list[dict[str, Any]]:
    """Read the images, wait for an admission slot, detect: all before the request's deadline.
    A full queue refuses the request before its body is read (the server drains it)."""
    detector.admission.check()
    uploads = await read_uploads(request, detector.settings, many=many)
    deadline = request.state.deadline + await readiness.wait_for_triton(detector)
    async with detector.admission.slot(deadline):
        try:
            async with asyncio.timeout_at(deadline):
                return await detector.detect(uploads, params, request.state.request_id, deadline)
        except TimeoutError as exc:
            raise TritonTimeout(f"request deadline of {detector.settings.request_timeout_s:g}s exceeded") from exc


@router.post(
    "/v1/detect",
    dependencies=[CLIENT],
    response_model=DetectResponse,
    responses=ERRORS,
    summary="Detect objects in one image",
    description="Send the image as the raw body (image/jpeg, image/png, image/webp) or as multipart/form-data.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {**dict.fromkeys(IMAGE_TYPES, _binary), "multipart/form-data": _multipart_one},
        }
    },
)
async def detect(request: Request, detector: DetectorDep, params: ParamsDep) -> Response:
    (result,) = await _run(detector, request, params, many=False)
    return JSONResponse(result)


@router.post(
    "/v1/detect/batch",
    dependencies=[CLIENT],
    response_model=BatchResponse,
    responses=ERRORS,
    summary="Detect objects in several images",
    description="multipart/form-data with one file field per image; results come in the same order. "
    "A bad image fails the whole request with the status of its error.",
    openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": _multipart_many}}},
)
async def detect_batch(request: Request, detector: DetectorDep, params: ParamsDep) -> Response:
    results = await _run(detector, request, params, many=True)
    return JSONResponse({"results": results})


@router.get(
    "/v1/models",
    dependencies=[CLIENT],
    response_model=ModelsResponse,
    responses={503: ERRORS[503]},
    summary="The models served, and the routes to them",
)
async def models(triton: TritonDep) -> Response:
    s = triton.settings
    primary = triton.require_signature()
    routes: list[dict[str, Any]] = [
        {"role": "tier", "tier": t, "model": m, "percent": None} for t, m in sorted(s.tiers.items())
    ]
    if not routes:
        routes.append({"role": "current", "tier": None, "model": s.model_name, "percent": None})
    if s.canary_model:
        routes.append(
            {"role": "canary", "tier": s.default_tier or None, "model": s.canary_model, "percent": s.canary_percent}
        )
    if s.shadow_model:
        routes.append(
            {"role": "shadow", "tier": s.default_tier or None, "model": s.shadow_model, "percent": s.shadow_percent}
        )
    for r in routes:
        sig = triton.signature_of(r["model"])
        r["served"] = sig is not None
        r["error"] = None if sig is not None else triton.model_errors.get(r["model"], "not loaded yet")
    loaded = [primary, *(triton.signatures[m] for m in triton.extra_models if m in triton.signatures)]
    return JSONResponse(
        {"models": [sig.describe() for sig in loaded], "routes": routes, "default_tier": s.default_tier or None}
    )


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Response:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health}},
    summary="Readiness: Triton ready and the model loaded",
)
async def readyz(request: Request, triton: TritonDep) -> Response:
    if request.app.state.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    detector = request.app.state.detector
    if detector.settings.cold_start_timeout_s:  # Triton may be at zero: requests wait for it here, so stay ready
        if detector.warm and triton.serving.is_set():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "ready: no Triton serves the model now; requests wait for one (cold start)"})
    if not detector.warm:
        return JSONResponse({"status": "warming up"}, status_code=503)
    if await triton.ready():
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not ready"}, status_code=503)


@router.get("/metrics", include_in_schema=False, dependencies=[Security(auth.require_client_for_metrics)])
async def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# --------------------------------------------------------------------------- app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.api_keys_dir:
            app.state.api_keys = APIKeys(settings)  # refuses to start without a usable key folder
            log.info("API keys: %d clients in %s", len(app.state.api_keys.keys), settings.api_keys_dir)
        triton = TritonService(settings)  # the one client and channel of this process
        detector = Detector(settings, triton)
        app.state.triton, app.state.detector, app.state.draining = triton, detector, False
        background = [
            asyncio.create_task(triton.keep_loading_signature()),
            asyncio.create_task(triton.keep_loading_extras()),
            asyncio.create_task(triton.keep_resolving()),
            asyncio.create_task(readiness.keep_warming_up(detector)),
        ]
        if settings.cold_start_timeout_s:
            background.append(asyncio.create_task(triton.keep_watching(lambda: detector.admission.cold)))
        try:
            yield
        finally:
            app.state.draining = True
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            detector.close()
            await triton.close()

    app = FastAPI(
        title="yolo-operator gateway",
        version=__version__,
        description="YOLO object detection over HTTP, served by NVIDIA Triton.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        # FastAPI asks the OTel providers and the environment on every request unless told not to
        telemetry=None if settings.opentelemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.api_keys = None  # no keys asked for, unless the lifespan reads a key folder
    app.include_router(router)
    errors.install(app)
    app.add_middleware(RequestContext, settings=settings)
    return app
