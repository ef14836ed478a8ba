"""Run the gateway: python -m yolo_gateway (settings from YOLO_GATEWAY_* env)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from . import malloc, server, tls
from .app import create_app
from .settings import Settings


def main() -> None:
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    malloc.tune(settings.malloc_mmap_threshold_mb)
    tls_files = tls.from_env(settings.tls_certfile, settings.tls_keyfile)
    try:
        if tls_files is not None:
            tls.check(tls_files)
        if settings.triton_ca_file:
            tls.check_ca(Path(settings.triton_ca_file))
    except tls.TLSInvalid as exc:
        # One line, the last of the log: the pod's termination message and the GatewayReady condition.
        print(f"TLSInvalid: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    server.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        request_timeout_s=settings.request_timeout_s,
        drain_max_bytes=settings.drain_max_bytes,
        drain_timeout_s=settings.drain_timeout_s,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),  # SIGTERM drains in-flight requests
        access_log=False,
        tls_files=tls_files,
        tls_reload_s=settings.tls_reload_s,
    )


if __name__ == "__main__":
    main()
