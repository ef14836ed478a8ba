"""PodDisruptionBudgets, one per tier."""

from __future__ import annotations

from typing import Any

from ..spec import YoloServiceSpec
from .common import Meta, names, object_metadata, selector_labels


def build_pdb(spec: YoloServiceSpec, meta: Meta, component: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_metadata(meta, names(meta)[component], component),
        "spec": {
            "maxUnavailable": spec.pod_disruption_budget.max_unavailable,
            "selector": {"matchLabels": selector_labels(meta, component)},
        },
    }
