"""Response models: they document the API in OpenAPI. Responses are serialised with orjson from
plain dicts (no per-request validation on the hot path); the tests validate real responses against
these models with extra fields forbidden, so the payload and the schema cannot drift apart."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel as _BaseModel
from pydantic import ConfigDict, Field


class BaseModel(_BaseModel):
    model_config = ConfigDict(extra="forbid")


class Box(BaseModel):
    x1: float
    y1: float
    x2: float
    y2: float


class Detection(BaseModel):
    class_id: int
    class_name: str
    confidence: float = Field(ge=0, le=1)
    box: Box = Field(description="xyxy in original-image pixels, clipped to the image")


class ModelRef(BaseModel):
    name: str = Field(description="the Triton model that answered")
    version: str
    tier: str | None = Field(None, description="the latency tier (spec.tiers); null when the service declares none")
    variant: Literal["current", "canary"] = Field(
        "current", description="canary: the canary version answered (spec.canary)"
    )


class ImageSize(BaseModel):
    width: int
    height: int


class Timings(BaseModel):
    decode: float
    preprocess: float
    infer: float
    postprocess: float
    total: float


class DetectResponse(BaseModel):
    model: ModelRef
    image: ImageSize
    timings_ms: Timings
    cached: bool = Field(False, description="the detections came from the inference cache (spec.gateway.cache)")
    detections: list[Detection]


class BatchResponse(BaseModel):
    results: list[DetectResponse]


class ModelInput(BaseModel):
    name: str
    datatype: str
    layout: str
    height: int
    width: int


class ModelInfo(BaseModel):
    name: str
    version: str
    platform: str
    input: ModelInput
    max_batch_size: int
    output_format: str = Field(description="raw | raw_t | v5 | end2end")
    outputs: list[str]
    class_names: list[str]


class RouteInfo(BaseModel):
    role: Literal["current", "tier", "canary", "shadow"]
    tier: str | None
    model: str
    percent: float | None = Field(description="canary: share served; shadow: share mirrored")
    served: bool = Field(description="the gateway read the model from Triton and routes to it")
    error: str | None = Field(description="why not, when not served")


class ModelsResponse(BaseModel):
    models: list[ModelInfo] = Field(description="the models the gateway has read from Triton")
    routes: list[RouteInfo]
    default_tier: str | None


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: str
