"""Gateway settings, from the environment with the prefix YOLO_GATEWAY_."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="YOLO_GATEWAY_", protected_namespaces=())

    # Triton
    triton_url: str = Field(
        "127.0.0.1:8001",
        description="gRPC target: host:port, dns:///name:port (a headless Service: every pod behind it) "
        "or ipv4:a:port,b:port",
    )
    routing: Literal["least_loaded", "round_robin"] = Field(
        "least_loaded",
        description="how calls spread over Triton pods: least_loaded (a channel per pod; the one with fewer "
        "calls in flight from this gateway, of two drawn at random) or round_robin (one channel, gRPC's policy)",
    )
    model_name: str = "yolo"
    model_version: str = Field("", description="empty: Triton's latest")
    infer_timeout_s: float = Field(5.0, gt=0, description="deadline of each Triton call")
    request_timeout_s: float = Field(
        10.0,
        gt=0,
        description="deadline of a whole request from its first byte: headers, body (408 after it), processing (504)",
    )
    grpc_keepalive_time_ms: int = 10_000
    grpc_keepalive_timeout_ms: int = 5_000
    grpc_max_message_bytes: int = 256 * 1024 * 1024
    grpc_reconnect_backoff_ms: int = Field(500, description="initial and max/4 reconnect backoff")
    metadata_retry_s: float = 1.0
    resolve_interval_s: float = Field(
        2.0, ge=0, description="dns:/// targets: re-resolve this often and move to the new set of pods at once (0: off)"
    )
    infer_retries: int = Field(
        2, ge=0, description="retries of a call that failed UNAVAILABLE (another pod may serve it)"
    )
    retry_backoff_s: float = Field(0.05, gt=0, description="first retry's backoff; doubles, with jitter")

    # Tiers, canary and shadow (variants.py): more models of the same service on the same Triton pods
    tiers: dict[str, str] = Field(
        default_factory=dict,
        description='latency tiers: tier name -> Triton model ({"streaming": "yolo-streaming", "balanced": "yolo"}); '
        "a request picks one with ?tier=, and one without gets default_tier (model_name)",
    )
    default_tier: str = Field("", description="the tier that model_name serves (one of tiers' names)")
    canary_model: str = Field(
        "", description="a Triton model that serves canary_percent of the default tier's requests for real"
    )
    canary_percent: float = Field(0.0, ge=0, le=100)
    shadow_model: str = Field(
        "", description="a Triton model that gets a mirror of shadow_percent of the default tier's requests"
    )
    shadow_percent: float = Field(0.0, ge=0, le=100)
    shadow_max_inflight: int = Field(
        16, ge=1, description="mirrored calls at once; more are skipped (counted), never queued"
    )

    cold_start_timeout_s: float = Field(
        0.0,
        ge=0,
        description="Triton may be scaled to zero: the gateway stays ready without it, and a request waits up to this "
        "long for a Triton to serve the model (its deadline is extended by the wait) before a 503 (0: off)",
    )
    cold_start_max_waiting: int = Field(
        1024, ge=1, description="requests waiting for a cold start at once; more get 503"
    )

    # API keys and rate limits (auth.py); off when api_keys_dir is empty
    api_keys_dir: str = Field(
        "", description="a folder with one file per client (name = client, content = key): a mounted Secret"
    )
    rate_limit_per_s: float = Field(0.0, ge=0, description="per-client token bucket refill rate (0: no limit)")
    rate_limit_burst: int = Field(20, ge=1, description="per-client bucket size")
    protect_metrics: bool = Field(False, description="/metrics needs a key too (then your Prometheus must send one)")

    # Inference cache (cache.py); off when cache_ttl_s is 0
    cache_ttl_s: float = Field(0.0, ge=0, description="keep an image's detections this long (0: no cache)")
    cache_max_entries: int = Field(1024, ge=1)
    cache_max_difference: int = Field(
        3, ge=0, le=255, description="grey levels any 5x5 block of the input may differ by and still hit"
    )

    # Circuit breaker
    breaker_failures: int = Field(3, ge=1, description="consecutive connection failures that open the circuit")
    breaker_reset_s: float = Field(2.0, gt=0, description="open time before one probe request is let through")

    # HTTP server
    host: str = "127.0.0.1"
    port: int = 8080
    shutdown_grace_s: float = Field(20.0, description="drain time for in-flight requests on SIGTERM")
    log_level: str = "info"
    slow_request_ms: float = Field(1000.0, description="log a line for requests slower than this")
    opentelemetry: bool = Field(
        False,
        description="FastAPI's native OpenTelemetry (spans, metrics and logs through the global OTel providers, "
        "which an OTel SDK or the FASTAPI_OTEL_* variables set up); off: no per-request lookups",
    )

    # Limits
    max_body_bytes: int = Field(20 * 1024 * 1024, gt=0)
    max_pixels: int = Field(40_000_000, gt=0, description="decompression-bomb guard, read from the header")
    max_jpeg_scans: int = Field(256, ge=1, description="progressive JPEG scans (each one a pass over the image)")
    max_batch_images: int = Field(32, ge=1)
    drain_max_bytes: int = Field(
        64 * 1024 * 1024, ge=0, description="unread body bytes discarded after an early response"
    )
    drain_timeout_s: float = Field(5.0, ge=0, description="time allowed to discard them; then the connection is cut")

    # Admission: a concurrency limit with a short bounded queue; the rest is shed with 503 at once
    max_concurrency: int = Field(64, ge=1, description="requests decoding, at Triton or in NMS at once")
    max_queue: int = Field(64, ge=0, description="requests waiting for a slot; more are shed at once")
    queue_timeout_s: float = Field(0.1, ge=0, description="longest wait for a slot before a 503 with Retry-After")
    admission_memory_fraction: float = Field(
        0.8,
        ge=0,
        le=1,
        description="the share of the container's free memory that requests in flight may take: it caps max_concurrency once the model is known (0: off)",
    )
    pool_size: int = Field(0, ge=0, description="CPU worker threads; 0: the CPUs this process may use")
    malloc_mmap_threshold_mb: int = Field(
        32,
        ge=0,
        le=32,
        description="glibc's mmap threshold (trim threshold twice it): per-request tensors of a few MB are reused "
        "from the heap instead of mmapped and page-faulted each time (malloc.py); 0: glibc's defaults",
    )

    # TLS to Triton's gRPC port: the CA that signed Triton's certificate, and the name it carries
    triton_ca_file: str = Field("", description="PEM CA bundle; set: the gRPC calls to Triton use TLS, verified")
    triton_tls_name: str = Field(
        "", description="the name Triton's certificate is checked against (its Service's); empty: the target's host"
    )

    # HTTPS (tls.py): both files or neither; a mounted kubernetes.io/tls Secret's tls.crt and tls.key
    tls_certfile: str = Field("", description="PEM certificate chain; with tls_keyfile the gateway serves HTTPS only")
    tls_keyfile: str = Field("", description="PEM private key of tls_certfile")
    tls_reload_s: float = Field(10.0, gt=0, description="how often the files are checked for a rotation")

    # Detection defaults
    conf: float = Field(0.25, ge=0, le=1)
    iou: float = Field(0.45, ge=0, le=1)
    max_det: int = Field(100, ge=1)
    preprocess: Literal["fast", "parity"] = Field(
        "fast",
        description="fast: DCT-scaled decode + INTER_AREA; parity: Ultralytics' full decode + INTER_LINEAR and box mapping",
    )
    max_det_limit: int = Field(1000, ge=1)
    max_nms: int = Field(10_000, ge=1, description="candidates kept for NMS after the confidence filter")

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError("tls_certfile and tls_keyfile come together: set both for HTTPS, or neither")
        return self

    @model_validator(mode="after")
    def _variants(self) -> Settings:
        if self.tiers:
            if self.default_tier not in self.tiers:
                raise ValueError(f"default_tier {self.default_tier!r} is not one of the tiers {sorted(self.tiers)}")
            if self.tiers[self.default_tier] != self.model_name:
                raise ValueError(
                    f"the default tier {self.default_tier!r} must be served by model_name {self.model_name!r}"
                )
        elif self.default_tier:
            raise ValueError("default_tier needs tiers")
        return self

    def workers(self) -> int:
        if self.pool_size:
            return self.pool_size
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not Linux
            return os.cpu_count() or 1
