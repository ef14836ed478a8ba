"""spec.triton: the Triton tier (image, resources, batching, autoscaling on queue depth, the
TensorRT engine cache, TLS)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from .common import Autoscaling, Resources, SpecModel, TLSSpec


class QueuePolicy(SpecModel):
    enabled: bool = Field(
        False,
        description="on: Triton sheds load itself too (429 when its queue is full). Off by default: Triton 2.51's "
        "batcher then idles up to 500 ms on back-to-back requests (p99 516 vs 20 ms, BENCHMARKS.md), and the "
        "gateway already bounds what it sends (admission control) and sheds the rest with 503",
    )
    max_queue_size: int = Field(1024, ge=0)
    timeout_microseconds: int = Field(5_000_000, ge=0)
    timeout_action: Literal["REJECT", "DELAY"] = "REJECT"


class DynamicBatching(SpecModel):
    preferred_batch_sizes: list[int] = Field(default_factory=list)
    max_queue_delay_microseconds: int = Field(1000, ge=0)
    queue_policy: QueuePolicy = QueuePolicy()


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


class EngineCache(SpecModel):
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


class TritonSpec(SpecModel):
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
