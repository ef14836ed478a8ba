"""The children as the child watch last saw them: reconcile reads them here instead of a GET each.

Every child event (the watch's initial listing, ADDED, MODIFIED, DELETED) records the object, or
its absence. A reconcile takes a child from here when the entry is fresh, and otherwise GETs it
and records the answer. The watch asks the API server for the operator's own children only (a
label selector), so a child whose labels someone strips leaves the selection: the API server
sends DELETED for it, and the next reconcile applies it again (server-side apply puts the labels
back on the object that is still there).

Staleness is bounded three ways:
- a watch that restarts (after an error, a "410 Gone", or while this replica was a paused
  standby) lists every object of its kind again, and sends no DELETED for those deleted
  meanwhile. So an entry older than the kind's latest listing is read again with a GET;
- an entry older than `ttl` is read again with a GET, whatever else went wrong;
- a GET's answer is recorded only when no event for that object arrived while it was in flight,
  so an older read never overwrites a newer event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .settings import SETTINGS

Key = tuple[str, str, str]  # kind, namespace, name
# The children the operator writes and watches: (group, version, plural) -> kind.
WATCHED = {
    ("apps", "v1", "deployments"): "Deployment",
    ("", "v1", "services"): "Service",
    ("", "v1", "configmaps"): "ConfigMap",
    ("policy", "v1", "poddisruptionbudgets"): "PodDisruptionBudget",
    ("autoscaling", "v2", "horizontalpodautoscalers"): "HorizontalPodAutoscaler",
    ("keda.sh", "v1alpha1", "scaledobjects"): "ScaledObject",
}
WATCHED_KINDS = frozenset(WATCHED.values())
PRUNE_EVERY = 2_000  # events between sweeps of expired absences (deleted children)


def slim(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without its managedFields, which no decision reads and which make up much of a
    Deployment's size (a shallow copy: the event's own object is left as it is)."""
    md = obj.get("metadata") or {}
    if "managedFields" not in md:
        return obj
    return {**obj, "metadata": {k: v for k, v in md.items() if k != "managedFields"}}


class ChildCache:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[Key, tuple[float, dict[str, Any] | None]] = {}
        self._events: dict[Key, int] = {}  # events seen per object, to order reads against them
        self._lock = threading.Lock()
        self.enabled = False  # on once the child watch runs: without it, entries could only go stale
        self.hits = self.misses = 0
        self._observed = 0
        # kind -> (when its latest listing began, the objects that listing has sent so far)
        self._listings: dict[str, tuple[float, set[Key]]] = {}

    def observe(self, kind: str, namespace: str, name: str, body: dict[str, Any] | None, listing: bool = False) -> None:
        """A watch event: the object as it is now (None: deleted, or left the selection).
        `listing`: it came from the watch's (re)listing (kopf's event type None)."""
        key = (kind, namespace, name)
        with self._lock:
            now = self.clock()
            if listing:
                start, sent = self._listings.get(kind, (now, set()))
                if key in sent:  # the same object again: a new listing of the kind has begun
                    start, sent = now, set()
                sent.add(key)
                self._listings[kind] = (start, sent)
            self._events[key] = self._events.get(key, 0) + 1
            self._entries[key] = (now, None if body is None else slim(body))
            self._observed += 1
            if self._observed % PRUNE_EVERY == 0:
                self._prune()

    def read(self, kind: str, namespace: str, name: str, fetch: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
        """The child from a fresh entry, else `fetch()` (a GET; None for 404), recorded."""
        if not self.enabled or self.ttl <= 0 or kind not in WATCHED_KINDS:
            return fetch()
        key = (kind, namespace, name)
        with self._lock:
            entry = self._entries.get(key)
            listed = self._listings.get(kind, (0.0, None))[0]
            if entry is not None and entry[0] >= listed and self.clock() - entry[0] < self.ttl:
                self.hits += 1
                return entry[1]
            self.misses += 1
            seen = self._events.get(key, 0)
        body = fetch()
        self.record(key, body, seen)
        return body

    def written(self, kind: str, namespace: str, name: str, body: dict[str, Any] | None) -> None:
        """Our own write's answer (the applied object, or None once deleted). The watch's event for
        it follows and says the same, or something newer."""
        if not self.enabled or kind not in WATCHED_KINDS:
            return
        key = (kind, namespace, name)
        with self._lock:
            seen = self._events.get(key, 0)
        self.record(key, body, seen)

    def record(self, key: Key, body: dict[str, Any] | None, seen: int) -> None:
        with self._lock:
            if self._events.get(key, 0) == seen:  # no event arrived meanwhile: this answer is the newest
                self._entries[key] = (self.clock(), None if body is None else slim(body))

    def _prune(self) -> None:
        """Forget absences older than the ttl (the children of deleted services), lock held."""
        now = self.clock()
        for key in [k for k, (t, body) in self._entries.items() if body is None and now - t >= self.ttl]:
            del self._entries[key]
            self._events.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


CACHE = ChildCache(SETTINGS.child_cache_seconds)
