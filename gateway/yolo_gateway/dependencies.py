"""FastAPI dependencies: the process's Detector and Triton client, and a request's detection parameters."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query, Request

from . import parameters
from .pipeline import Detector
from .postprocess import DetectParams
from .triton import TritonService

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
