"""The FastAPI gateway: HTTP images in, detections out.

uvicorn --factory yolo_gateway.app:create_app     (or: python -m yolo_gateway)

The app is put together here: its lifespan holds the one Triton client (triton.py) and the
Detector (pipeline.py); routes.py has the API, body.py reads a request's images, dependencies.py
hands the routes what they need, middleware.py wraps every request, auth.py checks API keys,
errors.py maps typed errors to HTTP codes in one place, and server.py runs it under uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from . import __version__, errors, readiness
from .auth import APIKeys
from .middleware import RequestContext
from .pipeline import Detector
from .responses import JSONResponse
from .routes import router
from .settings import Settings
from .triton import TritonService

log = logging.getLogger("yolo_gateway")


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
            asyncio.create_task(triton.channels.keep_resolving()),
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
