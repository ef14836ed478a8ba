"""An opt-in inference cache for static cameras (`spec.gateway.cache`), in process memory.

Each image's key is a perceptual fingerprint of its letterboxed model input: the grey image
shrunk to 64 x 64 by area averaging (a block mean per 5 x 5 input pixels), with the original size
and every parameter that changes the answer (model version, conf, iou, max_det, classes,
preprocessing). An image gets a cached answer when its fingerprint differs from a cached one's
by at most `max_difference` grey levels in every block, with the same size and parameters; never
when any block differs more. Entries live `ttl_s` seconds and at most `max_entries` are kept
(least recently used out). Hits and misses: `yolo_gateway_cache_total{result}`.

Why block means and a maximum, not a 64-bit dHash: measured on generated 960x540 scenes, sensor
noise (sigma 1-8) and re-encoding move a block by at most 3 levels, while a new 20x40-pixel object
moves some block by 4-100 (mean 66); a 256-bit dHash flipped 7-18 bits for noise and 0 for some
40x80 objects, so no threshold told a repeat from a changed scene. The default, 3, accepts
noise; 0 answers only for identical fingerprints.
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

FINGERPRINT = 64  # 64 x 64 block means


def fingerprint(rgb: np.ndarray, size: int = FINGERPRINT) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)


@dataclass
class Entry:
    fp: np.ndarray
    expires: float
    value: Any


class InferenceCache:
    def __init__(
        self, max_entries: int, ttl_s: float, max_difference: int = 3, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries, self.ttl_s, self.max_difference, self.clock = max_entries, ttl_s, max_difference, clock
        # group (size, params) -> fingerprint bytes -> entry; `order` is the LRU order over all groups
        self.groups: dict[tuple[Any, ...], dict[bytes, Entry]] = {}
        self.order: collections.OrderedDict[tuple[tuple[Any, ...], bytes], None] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self.order)

    def _nearest(self, fp: np.ndarray, entries: dict[bytes, Entry]) -> Entry | None:
        keys = list(entries)
        stack = np.stack([entries[k].fp for k in keys]).astype(np.int16)  # bounded by max_entries
        worst = np.abs(stack - fp.astype(np.int16)).reshape(len(keys), -1).max(axis=1)
        i = int(np.argmin(worst))
        return entries[keys[i]] if worst[i] <= self.max_difference else None

    def get(self, fp: np.ndarray, group: tuple[Any, ...]) -> Any | None:
        entries = self.groups.get(group)
        found = None
        if entries:
            found = entries.get(fp.tobytes())
            if found is None and self.max_difference:
                found = self._nearest(fp, entries)
            if found is not None and found.expires <= self.clock():
                self._drop(group, found.fp.tobytes())
                found = None
        if found is None:
            metrics.CACHE.labels("miss").inc()
            return None
        self.order.move_to_end((group, found.fp.tobytes()))
        metrics.CACHE.labels("hit").inc()
        return found.value

    def put(self, fp: np.ndarray, group: tuple[Any, ...], value: Any) -> None:
        key = fp.tobytes()
        self.groups.setdefault(group, {})[key] = Entry(fp, self.clock() + self.ttl_s, value)
        self.order[(group, key)] = None
        self.order.move_to_end((group, key))
        while len(self.order) > self.max_entries:
            (g, old), _ = self.order.popitem(last=False)
            self._drop(g, old, in_order=False)
        metrics.CACHE_ENTRIES.set(len(self.order))

    def _drop(self, group: tuple[Any, ...], key: bytes, in_order: bool = True) -> None:
        entries = self.groups.get(group)
        if entries is not None:
            entries.pop(key, None)
            if not entries:
                del self.groups[group]
        if in_order:
            self.order.pop((group, key), None)
        metrics.CACHE_ENTRIES.set(len(self.order))
