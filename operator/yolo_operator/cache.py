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
  meanwhile. So an entry older than the latest listing of its kind in its namespace is read again
  with a GET;
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
    ("networking.k8s.io", "v1", "networkpolicies"): "NetworkPolicy",
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


class Token:
    """Taken before a GET or a write is sent: when, and how many events had been seen by then."""

    __slots__ = ("seq", "time")

    def __init__(self, seq: int, time: float) -> None:
        self.seq, self.time = seq, time


class ChildCache:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[Key, tuple[float, dict[str, Any] | None]] = {}
        self._seq = 0  # events seen, all objects together
        self._last_event: dict[Key, int] = {}  # the sequence number of each object's latest event
        self._lock = threading.Lock()
        self.enabled = False  # on once the child watch runs: without it, entries could only go stale
        # (kind, namespace) -> (when its latest listing began, the objects that listing has sent so far)
        self._listings: dict[tuple[str, str], tuple[float, set[Key]]] = {}

    def observe(self, kind: str, namespace: str, name: str, body: dict[str, Any] | None, listing: bool = False) -> None:
        """A watch event: the object as it is now (None: deleted, or left the selection).
        `listing`: it came from the watch's (re)listing (kopf's event type None).

        A new listing is noticed when it sends an object again, per kind and namespace (one
        cluster-wide watch, or one per namespace, relist alike). A relisting that sends no object
        seen before (all of them deleted meanwhile) goes unnoticed: the ttl bounds that case."""
        key = (kind, namespace, name)
        with self._lock:
            now = self.clock()
            if listing:
                start, sent = self._listings.get((kind, namespace), (now, set()))
                if key in sent:  # the same object again: a new listing has begun
                    start, sent = now, set()
                sent.add(key)
                self._listings[(kind, namespace)] = (start, sent)
            self._seq += 1
            self._last_event[key] = self._seq
            self._entries[key] = (now, None if body is None else slim(body))
            if self._seq % PRUNE_EVERY == 0:
                self._prune()

    def token(self) -> Token:
        with self._lock:
            return Token(self._seq, self.clock())

    def read(
        self, kind: str, namespace: str, name: str, fetch: Callable[[], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """The child from a fresh entry, else `fetch()` (a GET; None for 404), recorded."""
        if not self.enabled or self.ttl <= 0 or kind not in WATCHED_KINDS:
            return fetch()
        key = (kind, namespace, name)
        with self._lock:
            entry = self._entries.get(key)
            listed = self._listings.get((kind, namespace), (0.0, None))[0]
            if entry is not None and entry[0] >= listed and self.clock() - entry[0] < self.ttl:
                return entry[1]
            token = Token(self._seq, self.clock())
        body = fetch()
        self._record(key, body, token)
        return body

    def written(self, kind: str, namespace: str, name: str, body: dict[str, Any] | None, token: Token) -> None:
        """Our own write's answer (the applied object, or None once deleted), with the token taken
        before the write was sent. The watch's event for it follows and says the same, or newer."""
        if self.enabled and kind in WATCHED_KINDS:
            self._record((kind, namespace, name), body, token)

    def _record(self, key: Key, body: dict[str, Any] | None, token: Token) -> None:
        with self._lock:
            if self._last_event.get(key, 0) <= token.seq:  # no event for it since the request left
                # stamped with when the request left: an answer from before a listing began is
                # not confirmed by that listing
                self._entries[key] = (token.time, None if body is None else slim(body))

    def _prune(self) -> None:
        """Forget absences older than the ttl (the children of deleted services), lock held. An
        object's latest event goes with it: any later event still outnumbers a token taken now."""
        now = self.clock()
        for key in [k for k, (t, body) in self._entries.items() if body is None and now - t >= self.ttl]:
            del self._entries[key]
            self._last_event.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


CACHE = ChildCache(SETTINGS.child_cache_seconds)
