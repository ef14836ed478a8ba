"""spec.gateway: the HTTP gateway tier (limits, admission, request defaults, autoscaling on
in-flight requests, routing, API keys, TLS, the inference cache)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from .common import Autoscaling, Resources, SecretRef, SpecModel, TLSSpec


class GatewayAutoscaling(Autoscaling):
    min_replicas: int = Field(2, ge=1)
    max_replicas: int = Field(10, ge=1)
    target_inflight_requests: int = Field(32, ge=1, description="average in-flight requests per gateway pod")
    target_cpu_utilization: int | None = Field(
        70, ge=0, le=100, description="0: no CPU metric (clusters without metrics-server)"
    )


class GatewayLimits(SpecModel):
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(40_000_000, ge=1024)
    max_batch_images: int = Field(32, ge=1)


class GatewayDefaults(SpecModel):
    conf: float = Field(0.25, ge=0, le=1)
    iou: float = Field(0.45, ge=0, le=1)
    max_det: int = Field(100, ge=1)
    preprocess: Literal["fast", "parity"] = Field(
        "fast", description="parity: Ultralytics' own decode, resize and box mapping (per request: ?preprocess=)"
    )


class GatewayAuth(SpecModel):
    enabled: bool = False
    secret_ref: SecretRef | None = Field(None, description="a Secret with one key per client: name -> API key")
    requests_per_second: float = Field(0, ge=0, description="per-client rate limit (token bucket); 0: none")
    burst: int = Field(20, ge=1)
    protect_metrics: bool = Field(False, description="/metrics needs a key too (your Prometheus must then send one)")

    @model_validator(mode="after")
    def _secret(self) -> GatewayAuth:
        if self.enabled and self.secret_ref is None:
            raise ValueError("gateway.auth.enabled needs gateway.auth.secretRef: the Secret that holds the API keys")
        return self


class GatewayCache(SpecModel):
    enabled: bool = False
    ttl_seconds: float = Field(10, gt=0, description="how long an image's detections are reused")
    max_entries: int = Field(1024, ge=1, le=1_000_000)
    max_difference: int = Field(
        3,
        ge=0,
        le=255,
        description="grey levels any 5x5 block of the model input may differ by and still hit (3: sensor noise)",
    )


class GatewayAdmission(SpecModel):
    """How much work a gateway pod takes on, and how long it waits: a concurrency limit with a
    short bounded queue (the rest is shed at once with 503 and Retry-After), and the deadlines.
    The defaults suit a small model; a 640 px model on CPUs needs longer deadlines for bursts."""

    max_concurrency: int = Field(64, ge=1, description="requests decoding, at Triton or in NMS at once")
    max_queue: int = Field(64, ge=0, description="requests waiting for a slot; more are shed at once (503)")
    queue_timeout_seconds: float = Field(
        0.1, ge=0, le=600, description="longest wait for a slot before a 503 with Retry-After"
    )
    infer_timeout_seconds: float = Field(
        5.0, gt=0, le=600, description="deadline of each Triton call (its queue included)"
    )
    request_timeout_seconds: float = Field(
        10.0, gt=0, le=600, description="deadline of a whole request from its first byte (408 while reading, else 504)"
    )


class GatewaySpec(SpecModel):
    image: str | None = Field(None, description="empty: the operator's default")
    replicas: int = Field(2, ge=0, description="used when autoscaling is off")
    resources: Resources = Resources(requests={"cpu": "1", "memory": "512Mi"}, limits={"memory": "1Gi"})
    limits: GatewayLimits = GatewayLimits()
    admission: GatewayAdmission = GatewayAdmission()
    defaults: GatewayDefaults = GatewayDefaults()
    autoscaling: GatewayAutoscaling = GatewayAutoscaling()
    shutdown_grace_seconds: int = Field(20, ge=0, le=600)
    routing: Literal["leastLoaded", "roundRobin"] = Field(
        "leastLoaded",
        description="how each gateway spreads calls over the Triton pods: leastLoaded (fewer calls in flight "
        "from this gateway, of two pods drawn at random) or roundRobin",
    )
    auth: GatewayAuth = GatewayAuth()
    tls: TLSSpec = TLSSpec()
    cache: GatewayCache = GatewayCache()
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] | None = None
