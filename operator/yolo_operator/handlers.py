"""kopf handlers. They stay thin: every one calls the one level-based `reconcile`."""

from __future__ import annotations

from typing import Any

import kopf

from .reconcile import reconcile
from .settings import SETTINGS
from .spec import GROUP, PLURAL, VERSION

RESYNC_SECONDS = SETTINGS.resync_seconds
WAIT_SECONDS = SETTINGS.wait_seconds
RESOURCE = (GROUP, VERSION, PLURAL)


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
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key="last-handled-configuration")
    settings.posting.level = 20  # INFO: events for what the operator did
    settings.execution.max_workers = SETTINGS.workers
    # On deletion kopf waits for the resync timer to stop. A sync timer caught mid-reconcile was
    # re-checked only after 60 s (the default), holding the finalizer and the deletion that long.
    settings.background.cancellation_polling = 1
    settings.background.instant_exit_timeout = 2


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
    try:
        reconcile(body, logger)
    except kopf.PermanentError:
        pass


@kopf.on.probe(id="reconciler")
def probe(**_: Any) -> str:
    return "ok"
