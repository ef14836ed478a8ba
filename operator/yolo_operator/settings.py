"""The operator's own settings, from the environment with the prefix YOLO_OPERATOR_ (the chart sets them).

The default images are here, not in the CRD: a YoloService that names no image gets the
one that fits it (the CPU Triton image when it asks for no GPU), and a cluster admin
changes them for every service at once through the chart's `defaults.images`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .kubetypes import NetworkPolicyPeer
from .spec import (
    DEFAULT_FETCHER_IMAGE,
    DEFAULT_GATEWAY_IMAGE,
    DEFAULT_TRITON_CPU_IMAGE,
    DEFAULT_TRITON_IMAGE,
    ImageDefaults,
)


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="YOLO_OPERATOR_")

    triton_image: str = Field(
        DEFAULT_TRITON_IMAGE, description="Triton for services with a GPU (onnxruntime, TensorRT)"
    )
    triton_cpu_image: str = Field(DEFAULT_TRITON_CPU_IMAGE, description="Triton for services without a GPU")
    gateway_image: str = DEFAULT_GATEWAY_IMAGE
    fetcher_image: str = DEFAULT_FETCHER_IMAGE
    prometheus_url: str = Field(
        "http://prometheus-operated.monitoring.svc:9090",
        description="Prometheus that KEDA's triggers query (the PromQL is the operator's)",
    )
    service_monitors: bool = Field(
        True,
        description="the chart granted ServiceMonitors (rbac.serviceMonitors): without the grant they are never touched",
    )
    network_policies: bool = Field(
        True,
        description="NetworkPolicies for services that do not say (spec.networkPolicy.enabled); the chart's networkPolicy.enabled",
    )
    network_policy_metrics_from: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        description="NetworkPolicyPeers that may scrape Triton's metrics and the gateway's /metrics (JSON); empty: none",
    )
    resync_seconds: float = Field(30.0, gt=0, description="seconds between resyncs of each YoloService")
    wait_seconds: float = Field(5.0, gt=0, description="retry delay while children become ready")
    watch_server_timeout: int = Field(300, gt=0, description="watch timeout asked of the API server")
    workers: int = Field(8, ge=1, description="kopf's thread pool for the sync handlers")
    child_cache_seconds: float = Field(
        300.0,
        ge=0,
        description="reconciles read children from the child watch's events, and GET one whose entry is older than this; 0: GET every time",
    )
    peering_lifetime: int = Field(
        10,
        ge=2,
        description="seconds a peer's keep-alive stays valid: a killed leader's standby takes over within this",
    )

    @field_validator("network_policy_metrics_from")
    @classmethod
    def _peers(cls, peers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each one a valid NetworkPolicyPeer, as the CRD's gatewayFrom: a bad chart value stops the operator at start."""
        return [NetworkPolicyPeer.model_validate(p).manifest() for p in peers]

    def images(self) -> ImageDefaults:
        return ImageDefaults(self.triton_image, self.triton_cpu_image, self.gateway_image, self.fetcher_image)


SETTINGS = OperatorSettings()
