"""The YoloService spec as a pydantic model: the whole spec and what the operator calls (parse_spec)
are here; its parts are in model.py, triton.py and gateway.py, the pieces they share in common.py.

The CRD's OpenAPI schema (with defaults and CEL rules) is the first line of
validation, enforced by the API server. This model is the second: it gives the
builders typed input, and it catches what the schema cannot express; those
errors become a PermanentError with a condition saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from .. import __version__
from ..kubetypes import NetworkPolicyPeer
from .common import LocalObjectReference, SpecModel
from .gateway import GatewayAutoscaling, GatewaySpec
from .model import ModelSource, ModelSpec
from .triton import TritonAutoscaling, TritonSpec

__all__ = [
    "DEFAULT_FETCHER_IMAGE",
    "DEFAULT_GATEWAY_IMAGE",
    "DEFAULT_TRITON_CPU_IMAGE",
    "DEFAULT_TRITON_IMAGE",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "GatewayAutoscaling",
    "ImageDefaults",
    "InvalidSpec",
    "ModelSource",
    "Tier",
    "TritonAutoscaling",
    "YoloServiceSpec",
    "parse_spec",
    "with_images",
]

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


@dataclass(frozen=True)
class ImageDefaults:
    """The images a YoloService gets when it names none (the operator's settings)."""

    triton: str = DEFAULT_TRITON_IMAGE  # GPU services
    triton_cpu: str = DEFAULT_TRITON_CPU_IMAGE  # services that ask for no GPU
    gateway: str = DEFAULT_GATEWAY_IMAGE
    fetcher: str = DEFAULT_FETCHER_IMAGE


class InvalidSpec(ValueError):
    """A spec the schema accepted but the operator cannot build."""


class ServiceSpec(SpecModel):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    port: int = Field(80, ge=1, le=65535)


class PDBSpec(SpecModel):
    enabled: bool = True
    max_unavailable: int = Field(1, ge=1)


class MonitoringSpec(SpecModel):
    service_monitor: bool = False


class NetworkPolicySpec(SpecModel):
    enabled: bool | None = Field(
        None,
        description="NetworkPolicies for both tiers; unset: the operator's default (the chart's networkPolicy.enabled)",
    )
    gateway_from: list[NetworkPolicyPeer] = Field(
        default_factory=list,
        max_length=32,
        description="who may call the gateway (with the metrics peers); empty: any client",
    )


class Tier(SpecModel):
    """A latency tier: one more Triton model config of the same weights, on the same pods."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")
    default: bool = Field(False, description="serves requests that name no tier (at most one; none: the first tier)")
    max_batch_size: int = Field(16, ge=1)
    max_queue_delay_microseconds: int = Field(1000, ge=0)
    instances: int = Field(1, ge=1, description="model instances per GPU (per pod without one)")
    preserve_ordering: bool = Field(False, description="responses leave Triton in the order requests came in")


class Variant(SpecModel):
    """A second version of the model (same format, input size and classes; another file), served next to the current one."""

    source: ModelSource
    percent: float = Field(
        ge=0,
        le=100,
        description="canary: share of the default tier's requests it answers; shadow: share mirrored to it",
    )


RESERVED_TIER_NAMES = ("canary", "shadow")


class YoloServiceSpec(SpecModel):
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
