"""Which model answers a request: latency tiers, a canary, a shadow.

All of them are models on the same Triton pods (the operator generates one config per tier,
plus the canary's and the shadow's), reached over the gateway's one gRPC channel:

- a **tier** is picked by the client (``?tier=streaming``); a request that names none gets
  the default tier, which is the primary model (``model_name``);
- the **canary** answers ``canary_percent`` of the default tier's requests for real. If it is
  not served, or its call fails, the current version answers instead (counted), so a broken
  canary costs its share some latency at most, never an error;
- the **shadow** gets a mirror of ``shadow_percent`` of the default tier's requests after the
  current version has answered. Its answers are never returned; how far they agree with the
  current version's is recorded as metrics.

Shares are exact, not random: a counter gives the canary request k when floor(k·p) steps up,
so any 100 consecutive default-tier requests of a pod hold exactly p of them (±1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import metrics
from .errors import BadParameter
from .postprocess import Detections
from .settings import Settings
from .signature import ModelSignature

CURRENT, CANARY = "current", "canary"


class Split:
    """An exact share of a stream of events, in basis points (no randomness: no flaky splits)."""

    def __init__(self, percent: float) -> None:
        self.bp = round(percent * 100)
        self.count = 0

    def take(self) -> bool:
        if self.bp <= 0:
            return False
        self.count += 1
        return (self.count * self.bp) // 10_000 > ((self.count - 1) * self.bp) // 10_000


@dataclass(frozen=True, slots=True)
class Route:
    model: str  # the Triton model that answers
    tier: str | None  # the tier the request gets (None: the service declares none)
    variant: str = CURRENT  # current | canary
    default_tier: bool = True  # canary and shadow apply to the default tier's requests only


class VariantPicker:
    """Which model and tier a request gets: its tier, the canary's exact share, the shadow's copy."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.canary = Split(settings.canary_percent if settings.canary_model else 0)
        self.shadow = Split(settings.shadow_percent if settings.shadow_model else 0)

    def primary(self) -> Route:
        return Route(self.settings.model_name, self.settings.default_tier or None)

    def route(self, tier: str | None, canary_served: bool) -> Route:
        """The route of one request; `canary_served`: the gateway has the canary's signature."""
        s = self.settings
        if tier is not None and tier != s.default_tier:
            if not s.tiers:
                raise BadParameter(f"this service declares no tiers (got tier={tier!r}); leave ?tier= out")
            if tier not in s.tiers:
                raise BadParameter(
                    f"unknown tier {tier!r}; the tiers are {sorted(s.tiers)} (default {s.default_tier!r})"
                )
            return Route(s.tiers[tier], tier, CURRENT, default_tier=False)
        if self.canary.take():
            if canary_served:
                return Route(s.canary_model, s.default_tier or None, CANARY)
            metrics.VARIANT_REQUESTS.labels("canary_unavailable").inc()
            return Route(s.model_name, s.default_tier or None, "canary_unavailable")
        return self.primary()

    def mirror(self, route: Route) -> bool:
        """Whether this request, once answered, is mirrored to the shadow."""
        return route.default_tier and self.shadow.take()


def same_input(a: ModelSignature, b: ModelSignature) -> bool:
    """Two models take the same tensor for the same image (one preprocessing serves both)."""
    return (a.input_dtype, a.layout, a.height, a.width) == (b.input_dtype, b.layout, b.height, b.width)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a [N, 4] against every box in b [M, 4] (xyxy): [N, M]."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def agreement(current: Detections, other: Detections, iou: float = 0.5) -> tuple[float, float | None]:
    """(boxes matched at IoU >= `iou` over the larger count, matched pairs of the same class).

    Matching is greedy and class-agnostic, the current version's most confident boxes first,
    each to the unmatched box it overlaps most. Both empty: (1.0, None); one empty: (0.0, None)."""
    n, m = len(current), len(other)
    if n == 0 or m == 0:
        return (1.0 if n == m else 0.0), None
    ious = box_iou(current.boxes, other.boxes)
    used = np.zeros(m, bool)
    matched = same = 0
    for i in np.argsort(-current.scores, kind="stable"):
        candidates = np.flatnonzero(~used & (ious[i] >= iou))
        if candidates.size:
            j = candidates[np.argmax(ious[i, candidates])]
            used[j] = True
            matched += 1
            same += int(current.classes[i] == other.classes[j])
    return matched / max(n, m), (same / matched if matched else None)
