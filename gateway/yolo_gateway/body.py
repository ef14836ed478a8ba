"""Reading a request's images: the raw body or multipart/form-data, within the deadline and the size limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from . import server
from .errors import BadParameter, PayloadTooLarge, RequestTimeout, UnsupportedMediaType
from .pipeline import Upload
from .settings import Settings

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")


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
