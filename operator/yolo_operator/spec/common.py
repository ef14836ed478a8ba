"""What the parts of the YoloService spec share: the base model (camelCase aliases, frozen), Secret
references, resources, autoscaling bounds and TLS from a Secret."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel


class SpecModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class SecretRef(SpecModel):
    name: str


class LocalObjectReference(SpecModel):
    name: str = Field(min_length=1, max_length=253)


class Resources(SpecModel):
    requests: dict[str, str | int] = Field(default_factory=dict)
    limits: dict[str, str | int] = Field(default_factory=dict)


class Autoscaling(SpecModel):
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


class TLSSpec(SpecModel):
    """TLS from a Secret, mounted into the pods and never read by the operator. gateway.tls: a
    kubernetes.io/tls Secret (tls.crt, tls.key); the gateway serves HTTPS and reloads a rotated
    pair without a restart. triton.tls: tls.crt, tls.key and ca.crt (cert-manager's Certificate
    writes all three), the certificate naming the Triton Service (`<name>-triton.<namespace>.svc`);
    Triton serves gRPC over TLS and the gateways get only ca.crt to verify it."""

    secret_ref: SecretRef | None = Field(None, description="the Secret that holds the certificate")

    @property
    def enabled(self) -> bool:
        return self.secret_ref is not None
