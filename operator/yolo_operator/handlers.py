"""kopf handlers. They stay thin: every one calls the one level-based `reconcile`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

import kopf

from . import kube
from .builders.common import MANAGED_BY
from .cache import CACHE, WATCHED
from .reconcile import reconcile
from .settings import SETTINGS
from .spec import GROUP, PLURAL, VERSION

RESYNC_SECONDS = SETTINGS.resync_seconds
WAIT_SECONDS = SETTINGS.wait_seconds
RESOURCE = (GROUP, VERSION, PLURAL)
KIND = "YoloService"
# The children the operator writes (cache.WATCHED). The watch asks for ours alone (a label
# selector); an event on one (edited, deleted, its status changed, its labels stripped) reconciles
# its YoloService within about a second and updates the child cache. The resync timer stays as a
# safety net.
CHILD_RESOURCES = tuple(WATCHED)
MANAGED_SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
DEBOUNCE_S = 0.5
log = logging.getLogger("yolo_operator")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Watches that stop silently are a known kopf failure: bound both ends.
    settings.watching.server_timeout = SETTINGS.watch_server_timeout
    settings.watching.client_timeout = settings.watching.server_timeout + 30
    settings.watching.connect_timeout = 30
    settings.watching.reconnect_backoff = 1.0
    settings.networking.request_timeout = 60
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = 20  # INFO: events for what the operator did
    settings.execution.max_workers = SETTINGS.workers
    # Leader election (kopf peering): the leader renews its keep-alive every 1-5 s; a standby
    # resumes once it expires (a SIGKILLed leader) or at once (a leader that exits cleanly).
    settings.peering.lifetime = SETTINGS.peering_lifetime
    # On deletion kopf waits for the resync timer to stop. A sync timer caught mid-reconcile was
    # re-checked only after 60 s (the default), holding the finalizer and the deletion that long.
    settings.background.cancellation_polling = 1
    settings.background.instant_exit_timeout = 2
    # Watch only the operator's own children (server-side): a child whose labels are stripped
    # leaves the selection, and the API server sends DELETED for it.
    for resource in CHILD_RESOURCES:
        settings.watching.label_selectors[resource] = MANAGED_SELECTOR


def _converge(body: kopf.Body, logger: kopf.Logger) -> None:
    outcome = reconcile(body, logger)
    if not outcome.ready:
        raise kopf.TemporaryError(f"waiting: {outcome.message}", delay=WAIT_SECONDS)


@kopf.on.create(*RESOURCE)
def on_create(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    _converge(body, logger)


@kopf.on.update(*RESOURCE, field="spec")
def on_update(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    _converge(body, logger)


@kopf.on.resume(*RESOURCE)
def on_resume(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    _converge(body, logger)


@kopf.timer(*RESOURCE, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def resync(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """Restores drifted or deleted children and refreshes status; never raises to retry."""
    with contextlib.suppress(kopf.PermanentError):
        reconcile(body, logger)


# --------------------------------------------------------------------------- children


class Dirty:
    """YoloServices whose children changed: coalesced (many events, one reconcile) and worked
    off by one background task, at most `workers` at a time."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], set[str]] = {}
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def mark(self, namespace: str, name: str, why: str) -> None:
        self.keys.setdefault((namespace, name), set()).add(why)
        self.wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(SETTINGS.workers)

        async def one(ns: str, name: str, why: set[str]) -> None:
            async with limit:
                # Deployments' status moves often (pods, autoscalers): only other events are worth a line
                quiet = all(w.startswith("Deployment/") and w.endswith(" MODIFIED") for w in why)
                (log.debug if quiet else log.info)("child events for %s/%s: %s", ns, name, ", ".join(sorted(why)[:40]))
                await loop.run_in_executor(None, reconcile_by_name, ns, name)

        while True:
            await self.wake.wait()
            await asyncio.sleep(DEBOUNCE_S)  # let a burst of events (a rollout, a scale-up) settle into one
            self.wake.clear()
            keys, self.keys = self.keys, {}
            await asyncio.gather(
                *(one(ns, name, why) for (ns, name), why in sorted(keys.items())), return_exceptions=True
            )


DIRTY = Dirty()


def reconcile_by_name(namespace: str, name: str) -> None:
    body = kube.get(f"{GROUP}/{VERSION}", KIND, namespace, name)
    if body is None:
        return  # deleted meanwhile: the garbage collector takes its children
    try:
        reconcile(kopf.Body(cast(kopf.RawBody, body)), log)
    except kopf.PermanentError:
        pass  # an invalid spec: its condition says so already
    except Exception as exc:  # the next event or the resync timer tries again
        log.warning("reconcile of %s/%s after a child event: %s", namespace, name, exc)


def owner(body: kopf.Body) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(f"{GROUP}/") and ref.get("controller"):
            return ref.get("name")
    return None


@kopf.on.startup()
async def start_child_watch(**_: Any) -> None:
    DIRTY.task = asyncio.get_running_loop().create_task(DIRTY.run())
    CACHE.enabled = True


@kopf.on.cleanup()
async def stop_child_watch(**_: Any) -> None:
    if DIRTY.task:
        DIRTY.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await DIRTY.task


async def _on_child_event(
    body: kopf.Body,
    event: kopf.RawEvent,
    type: str | None,
    namespace: str | None,
    **_: Any,  # noqa: A002 - kopf's name
) -> None:
    name = body.get("metadata", {}).get("name")
    if namespace and name:
        CACHE.observe(
            body.get("kind", ""),
            namespace,
            name,
            None if type == "DELETED" else cast(dict[str, Any], event["object"]),
            listing=type is None,
        )
    if type is None:
        return  # the initial listing: the resume handlers reconcile every YoloService anyway
    parent = owner(body)
    if parent and namespace:
        DIRTY.mark(namespace, parent, f"{body.get('kind')}/{body.get('metadata', {}).get('name')} {type}")


# No client-side label filter on top: the API server selects already, and the DELETED event of a
# child that left the selection must reach the handler whatever labels its object shows.
for _group, _version, _plural in CHILD_RESOURCES:
    kopf.on.event(_group, _version, _plural, id=f"child-{_plural}")(_on_child_event)


@kopf.on.probe(id="reconciler")
def probe(**_: Any) -> str:
    return "ok"
