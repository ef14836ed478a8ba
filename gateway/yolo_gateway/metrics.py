"""Prometheus metrics of the gateway (one process per pod, the default registry)."""

from prometheus_client import Counter, Gauge, Histogram, Info

_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("yolo_gateway_requests_total", "HTTP requests by route and status code", ["route", "status"])
STAGE_SECONDS = Histogram(
    "yolo_gateway_stage_seconds",
    "Time spent per stage: decode, preprocess, infer, postprocess, total",
    ["stage"],
    buckets=_STAGE_BUCKETS,
)
INFLIGHT = Gauge(
    "yolo_gateway_inflight_requests",
    "Detection requests in flight once their body has arrived: running, queued for a slot, or waiting for a cold start",
)
TRITON_REQUESTS = Gauge(
    "yolo_gateway_triton_requests",
    "Requests waiting for a Triton (cold start) or in a Triton call: the Triton tier's demand, as the gateway sees it",
)
COLD_WAITING = Gauge(
    "yolo_gateway_cold_start_waiting", "Requests waiting for a Triton to serve the model (scaled to zero)"
)
ADMISSION_LIMIT = Gauge("yolo_gateway_admission_limit", "Requests allowed to run at once")
ADMISSION_ACTIVE = Gauge("yolo_gateway_admission_active", "Requests holding a slot")
ADMISSION_QUEUED = Gauge("yolo_gateway_admission_queued", "Requests waiting for a slot")
SHED = Counter("yolo_gateway_shed_total", "Requests shed with 503 by admission control, by reason", ["reason"])
TRITON_ERRORS = Counter("yolo_gateway_triton_errors_total", "Failed Triton calls by kind", ["kind"])
TRITON_ENDPOINTS = Gauge(
    "yolo_gateway_triton_endpoints", "Triton addresses the channel spreads calls over (dns:/// targets)"
)
TRITON_OUTSTANDING = Gauge(
    "yolo_gateway_triton_outstanding_requests",
    "Calls this gateway has in flight on each Triton pod (least_loaded routing picks by it)",
    ["endpoint"],
)
TRITON_RETRIES = Counter("yolo_gateway_triton_retries_total", "Triton calls retried after UNAVAILABLE")
CIRCUIT_STATE = Gauge("yolo_gateway_circuit_state", "Circuit breaker: 0 closed, 1 half-open, 2 open")
AUTH_REFUSED = Counter(
    "yolo_gateway_auth_refused_total", "Requests refused by API-key auth: missing, invalid, rate_limited", ["reason"]
)
CACHE = Counter("yolo_gateway_cache_total", "Inference cache lookups by result: hit, miss", ["result"])
CACHE_ENTRIES = Gauge("yolo_gateway_cache_entries", "Images in the inference cache")
MODEL_READY = Gauge(
    "yolo_gateway_model_ready",
    "The gateway read this model's signature from Triton and routes to it (tiers, canary, shadow)",
    ["model"],
)
VARIANT_REQUESTS = Counter(
    "yolo_gateway_variant_requests_total",
    "Requests of the default tier by the version that answered: current, canary; canary_fallback: the canary failed "
    "and the current version answered; canary_unavailable: the canary's turn came while it was not served",
    ["variant"],
)
SHADOW_REQUESTS = Counter(
    "yolo_gateway_shadow_requests_total",
    "Mirrored requests by outcome: ok, error, skipped (too many in flight or not served)",
    ["outcome"],
)
SHADOW_INFLIGHT = Gauge("yolo_gateway_shadow_inflight", "Mirrored calls in flight (answers never returned)")
_RATIO_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
SHADOW_BOX_MATCH = Histogram(
    "yolo_gateway_shadow_box_match_ratio",
    "Per mirrored image: boxes matched at IoU >= 0.5 over the larger of the two detection counts (1 when both are empty)",
    buckets=_RATIO_BUCKETS,
)
SHADOW_CLASS_AGREEMENT = Histogram(
    "yolo_gateway_shadow_class_agreement_ratio",
    "Per mirrored image with matched boxes: matched pairs of the same class",
    buckets=_RATIO_BUCKETS,
)
SHADOW_LATENCY = Histogram(
    "yolo_gateway_shadow_latency_seconds",
    "The shadow model's Triton call and NMS per mirrored request",
    buckets=_STAGE_BUCKETS,
)
IMAGES = Counter("yolo_gateway_images_total", "Images processed")
DETECTIONS = Counter("yolo_gateway_detections_total", "Detections returned")
# Every label value from the start, so the series exist (and rate() works) before the first event.
for _reason in ("queue_full", "queue_timeout"):
    SHED.labels(_reason)
for _result in ("hit", "miss"):
    CACHE.labels(_result)
for _reason in ("missing", "invalid", "rate_limited"):
    AUTH_REFUSED.labels(_reason)
for _kind in ("queue_full", "queue_timeout", "deadline", "unavailable", "model_not_ready", "rejected"):
    TRITON_ERRORS.labels(_kind)
for _variant in ("current", "canary", "canary_fallback", "canary_unavailable"):
    VARIANT_REQUESTS.labels(_variant)
for _outcome in ("ok", "error", "skipped"):
    SHADOW_REQUESTS.labels(_outcome)
RUNTIME = Info(
    "yolo_gateway_runtime",
    "What serves this process, as seen on its first connection: the event loop and the HTTP parser",
)
