"""An opt-in inference cache for static cameras (`spec.gateway.cache`), in process memory.

Each image's key is a 256-bit difference hash (dHash) of its letterboxed model input, with its
original size and every parameter that changes the answer (model version, conf, iou, max_det,
classes, preprocessing). An image whose hash is within `max_distance` bits of a cached one, with
the same size and parameters, gets that entry's detections; never one further away. Entries live
`ttl_s` seconds and at most `max_entries` are kept (least recently used first out). Hits and
misses are counted in `yolo_gateway_cache_total{result}`.

Most frames of a static camera repeat (the design's 80-90 %); a hit skips Triton and NMS. The
distance is the knob: 0 (the default) answers only for frames whose 16x16 gradient pattern is
identical, larger values accept more change (lighting, noise) at the risk of a stale answer.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from . import metrics

HASH_SIZE = 16  # 16 x 16 = 256 bits


def dhash(rgb: np.ndarray, size: int = HASH_SIZE) -> int:
    """Difference hash: grey, shrunk to (size+1) x size, one bit per left-right brighter step."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (size + 1, size), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


@dataclass
class Entry:
    hash: int
    expires: float
    value: Any


class InferenceCache:
    def __init__(self, max_entries: int, ttl_s: float, max_distance: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries, self.ttl_s, self.max_distance, self.clock = max_entries, ttl_s, max_distance, clock
        # (size, params) -> hash -> entry, each inner dict in LRU order; `order` is global LRU order
        self.groups: dict[tuple[Any, ...], collections.OrderedDict[int, Entry]] = {}
        self.order: collections.OrderedDict[tuple[tuple[Any, ...], int], None] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self.order)

    def get(self, h: int, group: tuple[Any, ...]) -> Any | None:
        now = self.clock()
        entries = self.groups.get(group)
        found = None
        if entries:
            e = entries.get(h)
            if e is None and self.max_distance:
                best = self.max_distance + 1
                for cand in entries.values():  # bounded by max_entries
                    d = (cand.hash ^ h).bit_count()
                    if d < best:
                        best, e = d, cand
            if e is not None and e.expires <= now:
                self._drop(group, e.hash)
                e = None
            found = e
        if found is None:
            metrics.CACHE.labels("miss").inc()
            return None
        entries.move_to_end(found.hash)  # type: ignore[union-attr]
        self.order.move_to_end((group, found.hash))
        metrics.CACHE.labels("hit").inc()
        return found.value

    def put(self, h: int, group: tuple[Any, ...], value: Any) -> None:
        entries = self.groups.setdefault(group, collections.OrderedDict())
        entries[h] = Entry(h, self.clock() + self.ttl_s, value)
        entries.move_to_end(h)
        self.order[(group, h)] = None
        self.order.move_to_end((group, h))
        while len(self.order) > self.max_entries:
            (g, old), _ = self.order.popitem(last=False)
            self._drop(g, old, in_order=False)
        metrics.CACHE_ENTRIES.set(len(self.order))

    def _drop(self, group: tuple[Any, ...], h: int, in_order: bool = True) -> None:
        entries = self.groups.get(group)
        if entries is not None:
            entries.pop(h, None)
            if not entries:
                del self.groups[group]
        if in_order:
            self.order.pop((group, h), None)
        metrics.CACHE_ENTRIES.set(len(self.order))
