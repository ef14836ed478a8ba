"""The HTTP API: detection, models, health and metrics routes, and their OpenAPI description."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Security
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import auth, readiness
from .body import IMAGE_TYPES, read_uploads
from .dependencies import DetectorDep, ParamsDep, TritonDep
from .errors import TritonTimeout
from .pipeline import Detector
from .postprocess import DetectParams
from .responses import JSONResponse
from .schemas import BatchResponse, DetectResponse, ErrorResponse, Health, ModelsResponse

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
