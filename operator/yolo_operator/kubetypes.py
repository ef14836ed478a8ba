"""Kubernetes' own types that a YoloService embeds, as pydantic models that refuse unknown keys:
a misspelt key in a selector must be an error, not an empty selector that selects everything."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel


class LabelSelectorRequirement(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    key: str = Field(min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(BaseModel):
    """Kubernetes' LabelSelector. Unknown keys are refused: a misspelt `matchLabels` would leave an
    empty selector, which selects every pod (or every namespace)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)


class IPBlock(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    cidr: str = Field(min_length=1)
    except_: list[str] = Field(default_factory=list, alias="except")


class NetworkPolicyPeer(BaseModel):
    """networking.k8s.io/v1 NetworkPolicyPeer: pods (podSelector, in the service's namespace unless
    namespaceSelector is also given), namespaces, or an ipBlock alone."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> NetworkPolicyPeer:
        if self.ip_block is not None and (self.pod_selector is not None or self.namespace_selector is not None):
            raise ValueError("a peer with ipBlock takes no podSelector or namespaceSelector")
        if self.ip_block is None and self.pod_selector is None and self.namespace_selector is None:
            raise ValueError("a peer needs a podSelector, a namespaceSelector or an ipBlock")
        return self

    def manifest(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
