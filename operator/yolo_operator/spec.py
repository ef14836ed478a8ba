"""The YoloService spec as a pydantic model.

The CRD's OpenAPI schema (with defaults and CEL rules) is the first line of
validation, enforced by the API server. This model is the second: it gives the
builders typed input, and it catches what the schema cannot express; those
errors become a PermanentError with a condition saying why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from . import __version__
from .kubetypes import NetworkPolicyPeer

GROUP = "serving.yolo.dev"
VERSION = "v1alpha1"
PLURAL = "yoloservices"
KIND = "YoloService"

DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
# The project's own images follow its version (the VERSION file), as the chart's defaults follow appVersion.
PROJECT_IMAGES = "ghcr.io/yolo-operator"
DEFAULT_TRITON_CPU_IMAGE = f"{PROJECT_IMAGES}/triton-cpu:{__version__}"
DEFAULT_GATEWAY_IMAGE = f"{PROJECT_IMAGES}/gateway:{__version__}"
DEFAULT_FETCHER_IMAGE = f"{PROJECT_IMAGES}/model-fetcher:{__version__}"
_URI = re.compile(r"^(s3|gs|https?|oci)://[^\s]+$")
# oci://HOST[:PORT]/REPO[:TAG | @sha256:DIGEST], the distribution spec's name and reference grammar.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_OCI = re.compile(
    rf"^oci://[A-Za-z0-9.-]+(?::[0-9]+)?/{_COMPONENT}(?:/{_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}|@sha256:[0-9a-f]{{64}})?$"
)


@dataclass(frozen=True)
class ImageDefaults:
    """The images a YoloService gets when it names none (the operator's settings)."""

    triton: str = DEFAULT_TRITON_IMAGE  # GPU services
    triton_cpu: str = DEFAULT_TRITON_CPU_IMAGE  # services that ask for no GPU
    gateway: str = DEFAULT_GATEWAY_IMAGE
    fetcher: str = DEFAULT_FETCHER_IMAGE


class InvalidSpec(ValueError):
    """A spec the schema accepted but the operator cannot build."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class SecretRef(_Model):
    name: str


class LocalObjectReference(_Model):
    name: str = Field(min_length=1, max_length=253)


class PVCSource(_Model):
    claim_name: str
    path: str = Field(description="path of the model file inside the volume")


class ModelSource(_Model):
    uri: str | None = None
    pvc: PVCSource | None = None
    secret_ref: SecretRef | None = None
    plain_http: bool = Field(False, description="oci:// only: the registry speaks HTTP, not HTTPS (a local one)")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        if (self.uri is None) == (self.pvc is None):
            raise ValueError("set exactly one of model.source.uri and model.source.pvc")
        if self.uri is not None and not _URI.match(self.uri):
            raise ValueError("model.source.uri must start with s3://, gs://, http://, https:// or oci://")
        if self.uri is not None and self.uri.startswith("oci://") and not _OCI.match(self.uri):
            raise ValueError(
                f"model.source.uri {self.uri!r} is not an OCI reference: oci://HOST[:PORT]/REPO[:TAG] or "
                "oci://HOST[:PORT]/REPO@sha256:DIGEST (lower-case repository, a 64-hex digest)"
            )
        if self.plain_http and self.scheme != "oci":
            raise ValueError("model.source.plainHttp applies to oci:// sources only")
        return self

    @property
    def scheme(self) -> str:
        # The validator above requires exactly one of pvc and uri.
        return "pvc" if self.pvc or self.uri is None else self.uri.split("://", 1)[0]


class Optimize(_Model):
    """Graph rewrites the init container makes on a plain export before Triton sees it."""

    uint8_input: bool = Field(
        False, description="the graph takes uint8 NHWC and converts itself: 1/4 of the input bytes"
    )
    nms: bool = Field(
        False,
        description="class-aware NMS in the graph (IoU 0.45, up to maxDetections boxes): a few KB out instead of the raw "
        "[4+nc, anchors] (2.8 MB for 640 px, 80 classes); the request's iou then no longer applies",
    )


class ModelSpec(_Model):
    """The model file, and the fields that override what the file says about itself. An ONNX
    export needs only `source`: the init container reads its input, outputs and class names."""

    name: str = "yolo"
    format: Literal["onnx", "tensorrt", "end2end"] = Field(
        "onnx", description="the file: ONNX or a TensorRT plan; end2end: ONNX with output end2end"
    )
    input: Literal["uint8-nhwc", "fp32-nchw"] | None = Field(
        None,
        description="the model's input tensor: uint8 NHWC 0..255 or fp32 NCHW 0..1 (a plain export). Empty: read from the file",
    )
    output: Literal["raw", "v5", "end2end"] | None = Field(
        None,
        description="raw: [4+nc, anchors] (YOLOv8/11); v5: [anchors, 5+nc] with objectness; end2end: NMS in the graph. Empty: read from the file",
    )
    input_size: int | None = Field(
        None, ge=32, le=4096, description="empty: read from the file (its input shape, or Ultralytics' imgsz)"
    )
    class_names: list[str] | None = Field(
        None, min_length=1, description="empty: read from the file (Ultralytics' names metadata)"
    )
    max_detections: int = Field(100, ge=1, le=1000, description="end2end: detections per image in the graph")
    optimize: Optimize = Optimize()
    source: ModelSource

    @model_validator(mode="after")
    def _output(self) -> ModelSpec:
        if self.format == "end2end" and self.output not in (None, "end2end"):
            raise ValueError(f"model.format end2end has output end2end, not {self.output}")
        if self.format == "tensorrt" and (self.optimize.uint8_input or self.optimize.nms):
            raise ValueError("model.optimize rewrites ONNX graphs; a TensorRT plan is served as it was built")
        if self.format == "tensorrt":
            missing = [
                f
                for f, v in (("input", self.input), ("inputSize", self.input_size), ("classNames", self.class_names))
                if not v
            ]
            if missing:
                raise ValueError(
                    f"model.format tensorrt: a plan's shapes cannot be read before Triton loads it; set model.{', model.'.join(missing)}"
                )
        return self

    @property
    def output_layout(self) -> str | None:
        return self.output or ("end2end" if self.format == "end2end" else None)

    @field_validator("input_size")
    @classmethod
    def _stride(cls, v: int | None) -> int | None:
        if v is not None and v % 32:
            raise ValueError(f"model.inputSize must be a multiple of 32 (the largest YOLO stride), got {v}")
        return v

    @field_validator("class_names")
    @classmethod
    def _unique(cls, v: list[str] | None) -> list[str] | None:
        dup = sorted({n for n in v if v.count(n) > 1}) if v else []
        if dup:
            raise ValueError(f"model.classNames has duplicates: {dup}")
        return v

    def overrides(self) -> dict[str, Any]:
        """The fields the init container lays over what the file says (None: the file's)."""
        return {
            "input": self.input,
            "output": self.output_layout,
            "input_size": self.input_size,
            "class_names": self.class_names,
            "max_detections": self.max_detections,
        }


class QueuePolicy(_Model):
    enabled: bool = Field(
        False,
        description="on: Triton sheds load itself too (429 when its queue is full). Off by default: Triton 2.51's "
        "batcher then idles up to 500 ms on back-to-back requests (p99 516 vs 20 ms, BENCHMARKS.md), and the "
        "gateway already bounds what it sends (admission control) and sheds the rest with 503",
    )
    max_queue_size: int = Field(1024, ge=0)
    timeout_microseconds: int = Field(5_000_000, ge=0)
    timeout_action: Literal["REJECT", "DELAY"] = "REJECT"


class DynamicBatching(_Model):
    preferred_batch_sizes: list[int] = Field(default_factory=list)
    max_queue_delay_microseconds: int = Field(1000, ge=0)
    queue_policy: QueuePolicy = QueuePolicy()


class Autoscaling(_Model):
    enabled: bool = True
    engine: Literal["auto", "keda", "hpa"] = Field(
        "auto",
        description="keda: a KEDA ScaledObject; hpa: an autoscaling/v2 HPA (prometheus-adapter); auto: KEDA when installed",
    )
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(4, ge=1)
    behavior: dict[str, Any] | None = Field(None, description="HPA scaling behaviour; empty: the operator's defaults")

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("autoscaling.minReplicas must be <= maxReplicas")
        return self


class TritonAutoscaling(Autoscaling):
    min_replicas: int = Field(
        1, ge=0, description="0: scale to zero when idle (KEDA only); the gateway holds requests meanwhile"
    )
    metric: Literal["pendingRequests", "queueTime"] = "pendingRequests"
    target_pending_requests: int = Field(10, ge=1, description="average pending requests per Triton pod")
    target_queue_time_microseconds: int = Field(
        50_000, ge=1, description="mean queue time per request (metric: queueTime)"
    )
    idle_seconds: int = Field(
        300, ge=0, description="minReplicas 0: scale to zero after this long without demand (KEDA cooldownPeriod)"
    )
    cold_start_timeout_seconds: int = Field(
        120,
        ge=1,
        le=600,
        description="minReplicas 0: how long the gateway holds a request while the tier starts from zero",
    )

    @model_validator(mode="after")
    def _zero_needs_keda(self) -> TritonAutoscaling:
        if self.enabled and self.min_replicas == 0 and self.engine == "hpa":
            raise ValueError(
                "triton.autoscaling.minReplicas 0 (scale to zero) needs KEDA: engine keda or auto, not hpa"
            )
        return self

    @property
    def scale_to_zero(self) -> bool:
        return self.enabled and self.min_replicas == 0


class GatewayAutoscaling(Autoscaling):
    min_replicas: int = Field(2, ge=1)
    max_replicas: int = Field(10, ge=1)
    target_inflight_requests: int = Field(32, ge=1, description="average in-flight requests per gateway pod")
    target_cpu_utilization: int | None = Field(
        70, ge=0, le=100, description="0: no CPU metric (clusters without metrics-server)"
    )


class Resources(_Model):
    requests: dict[str, str | int] = Field(default_factory=dict)
    limits: dict[str, str | int] = Field(default_factory=dict)


class EngineCache(_Model):
    """Where TensorRT keeps the engines it builds from an ONNX model (GPU services). A pod that
    finds the engines for its file, GPU and TensorRT skips the build (minutes for a 640 px YOLO)."""

    volume: Literal["emptyDir", "persistentVolumeClaim", "hostPath"] = Field(
        "emptyDir",
        description="emptyDir: kept across container restarts in one pod; persistentVolumeClaim (ReadWriteMany across "
        "nodes) or hostPath (one node's pods; not allowed under Pod Security restricted): kept for new pods too",
    )
    claim_name: str | None = Field(None, description="volume persistentVolumeClaim: the claim")
    host_path: str | None = Field(None, description="volume hostPath: the node's folder")
    size_limit: str = Field("8Gi", description="volume emptyDir: its size limit")

    @model_validator(mode="after")
    def _source(self) -> EngineCache:
        if self.volume == "persistentVolumeClaim" and not self.claim_name:
            raise ValueError("triton.engineCache.volume persistentVolumeClaim needs claimName")
        if self.volume == "hostPath" and not self.host_path:
            raise ValueError("triton.engineCache.volume hostPath needs hostPath")
        return self

    def volume_source(self) -> dict[str, Any]:
        if self.volume == "persistentVolumeClaim":
            return {"persistentVolumeClaim": {"claimName": self.claim_name}}
        if self.volume == "hostPath":
            return {"hostPath": {"path": self.host_path, "type": "DirectoryOrCreate"}}
        return {"emptyDir": {"sizeLimit": self.size_limit}}


class TLSSpec(_Model):
    """TLS from a Secret, mounted into the pods and never read by the operator. gateway.tls: a
    kubernetes.io/tls Secret (tls.crt, tls.key); the gateway serves HTTPS and reloads a rotated
    pair without a restart. triton.tls: tls.crt, tls.key and ca.crt (cert-manager's Certificate
    writes all three), the certificate naming the Triton Service (`<name>-triton.<namespace>.svc`);
    Triton serves gRPC over TLS and the gateways get only ca.crt to verify it."""

    secret_ref: SecretRef | None = Field(None, description="the Secret that holds the certificate")

    @property
    def enabled(self) -> bool:
        return self.secret_ref is not None


class TritonSpec(_Model):
    image: str | None = Field(None, description="empty: the operator's default, the CPU image when no GPU is asked for")
    replicas: int = Field(1, ge=0, description="used when autoscaling is off")
    resources: Resources = Resources(
        requests={"cpu": "2", "memory": "4Gi"}, limits={"memory": "8Gi", "nvidia.com/gpu": 1}
    )
    instances_per_gpu: int = Field(1, ge=1)
    max_batch_size: int = Field(16, ge=1)
    dynamic_batching: DynamicBatching = DynamicBatching()
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] | None = None
    autoscaling: TritonAutoscaling = TritonAutoscaling()
    engine_cache: EngineCache = EngineCache()
    tls: TLSSpec = TLSSpec()
    startup_timeout_seconds: int | None = Field(
        None,
        ge=30,
        le=7200,
        description="how long Triton may take to load (the startup probe). Empty: 1200 s where TensorRT "
        "builds engines from an ONNX model at load (a first build of a 640 px YOLO takes minutes), else 600 s",
    )

    @model_validator(mode="after")
    def _batches(self) -> TritonSpec:
        bad = [b for b in self.dynamic_batching.preferred_batch_sizes if not 1 <= b <= self.max_batch_size]
        if bad:
            raise ValueError(
                f"triton.dynamicBatching.preferredBatchSizes {bad} must be within 1..maxBatchSize ({self.max_batch_size})"
            )
        return self

    @property
    def gpus(self) -> int:
        return int(self.resources.limits.get("nvidia.com/gpu", 0) or 0)


class GatewayLimits(_Model):
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(40_000_000, ge=1024)
    max_batch_images: int = Field(32, ge=1)


class GatewayDefaults(_Model):
    conf: float = Field(0.25, ge=0, le=1)
    iou: float = Field(0.45, ge=0, le=1)
    max_det: int = Field(100, ge=1)
    preprocess: Literal["fast", "parity"] = Field(
        "fast", description="parity: Ultralytics' own decode, resize and box mapping (per request: ?preprocess=)"
    )


class GatewayAuth(_Model):
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


class GatewayCache(_Model):
    enabled: bool = False
    ttl_seconds: float = Field(10, gt=0, description="how long an image's detections are reused")
    max_entries: int = Field(1024, ge=1, le=1_000_000)
    max_difference: int = Field(
        3,
        ge=0,
        le=255,
        description="grey levels any 5x5 block of the model input may differ by and still hit (3: sensor noise)",
    )


class GatewayAdmission(_Model):
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


class GatewaySpec(_Model):
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


class ServiceSpec(_Model):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    port: int = Field(80, ge=1, le=65535)


class PDBSpec(_Model):
    enabled: bool = True
    max_unavailable: int = Field(1, ge=1)


class MonitoringSpec(_Model):
    service_monitor: bool = False


class NetworkPolicySpec(_Model):
    enabled: bool | None = Field(
        None,
        description="NetworkPolicies for both tiers; unset: the operator's default (the chart's networkPolicy.enabled)",
    )
    gateway_from: list[NetworkPolicyPeer] = Field(
        default_factory=list,
        max_length=32,
        description="who may call the gateway (with the metrics peers); empty: any client",
    )


class Tier(_Model):
    """A latency tier: one more Triton model config of the same weights, on the same pods."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")
    default: bool = Field(False, description="serves requests that name no tier (at most one; none: the first tier)")
    max_batch_size: int = Field(16, ge=1)
    max_queue_delay_microseconds: int = Field(1000, ge=0)
    instances: int = Field(1, ge=1, description="model instances per GPU (per pod without one)")
    preserve_ordering: bool = Field(False, description="responses leave Triton in the order requests came in")


class Variant(_Model):
    """A second version of the model (same format, input size and classes; another file), served next to the current one."""

    source: ModelSource
    percent: float = Field(
        ge=0,
        le=100,
        description="canary: share of the default tier's requests it answers; shadow: share mirrored to it",
    )


RESERVED_TIER_NAMES = ("canary", "shadow")


class YoloServiceSpec(_Model):
    model: ModelSpec
    triton: TritonSpec = TritonSpec()
    gateway: GatewaySpec = GatewaySpec()
    service: ServiceSpec = ServiceSpec()
    pod_disruption_budget: PDBSpec = PDBSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    network_policy: NetworkPolicySpec = NetworkPolicySpec()
    fetcher_image: str | None = None
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list,
        max_length=16,
        description="Secrets (kubernetes.io/dockerconfigjson, in the service's namespace) for pulling the "
        "Triton, fetcher and gateway images from a registry that asks for credentials",
    )
    tiers: list[Tier] = Field(default_factory=list, max_length=8)
    canary: Variant | None = None
    shadow: Variant | None = None

    @model_validator(mode="after")
    def _cross(self) -> YoloServiceSpec:
        if self.model.format == "tensorrt" and self.triton.gpus < 1:
            raise ValueError("model.format tensorrt needs a GPU: set triton.resources.limits['nvidia.com/gpu']")
        if self.model.source.pvc is not None and self.model.source.secret_ref is not None:
            raise ValueError(
                "model.source.secretRef applies to s3://, gs://, http(s):// and oci:// sources, not to a PVC"
            )
        tier_names = [t.name for t in self.tiers]
        if len(set(tier_names)) != len(tier_names):
            raise ValueError(f"tiers: names must be unique, got {tier_names}")
        if sum(t.default for t in self.tiers) > 1:
            raise ValueError("tiers: at most one tier is the default")
        if reserved := sorted(set(tier_names) & set(RESERVED_TIER_NAMES)):
            raise ValueError(f"tiers: {reserved} name the canary's and shadow's models; choose another tier name")
        for role, v in self.variants.items():
            src, main = v.source, self.model.source
            if src.pvc is not None and (main.pvc is None or src.pvc.claim_name != main.pvc.claim_name):
                raise ValueError(f"{role}.source.pvc must be in the model's own claim (the fetcher mounts one volume)")
            if src.secret_ref is not None and src.secret_ref != main.secret_ref:
                raise ValueError(
                    f"{role}.source.secretRef must be the model's own (the fetcher has one set of credentials)"
                )
        return self

    @property
    def builds_engines(self) -> bool:
        """TensorRT builds engines from the ONNX model when Triton loads it (the execution accelerator)."""
        return self.model.format in ("onnx", "end2end") and self.triton.gpus > 0

    @property
    def variants(self) -> dict[str, Variant]:
        return {role: v for role, v in (("canary", self.canary), ("shadow", self.shadow)) if v is not None}

    @property
    def default_tier(self) -> Tier | None:
        return next((t for t in self.tiers if t.default), self.tiers[0] if self.tiers else None)

    def model_names(self) -> dict[str, str]:
        """Every Triton model of this service: role ("tier:<name>", "canary", "shadow" or "current") -> model name.
        The default tier (or the only model) keeps `model.name`; the others get a suffix."""
        name, default = self.model.name, self.default_tier
        out = {f"tier:{t.name}": (name if t is default else f"{name}-{t.name}") for t in self.tiers} or {
            "current": name
        }
        return out | {role: f"{name}-{role}" for role in self.variants}


def with_images(spec: YoloServiceSpec, images: ImageDefaults) -> YoloServiceSpec:
    """Fill the images the spec leaves empty: Triton's depends on whether it asks for a GPU."""
    triton_image = spec.triton.image or (images.triton if spec.triton.gpus else images.triton_cpu)
    return spec.model_copy(
        update={
            "triton": spec.triton.model_copy(update={"image": triton_image}),
            "gateway": spec.gateway.model_copy(update={"image": spec.gateway.image or images.gateway}),
            "fetcher_image": spec.fetcher_image or images.fetcher,
        }
    )


def parse_spec(spec: dict[str, Any], images: ImageDefaults | None = None) -> YoloServiceSpec:
    """Validate a YoloService spec and fill its default images; raise InvalidSpec with a readable message."""
    try:
        return with_images(YoloServiceSpec.model_validate(dict(spec)), images or ImageDefaults())
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = ".".join(to_camel(str(p)) for p in err["loc"] if not isinstance(p, int))
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
        raise InvalidSpec("; ".join(parts)) from exc
