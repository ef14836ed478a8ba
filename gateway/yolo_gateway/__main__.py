"""Run the gateway: python -m yolo_gateway (settings from YOLO_GATEWAY_* env)."""

from __future__ import annotations

import logging

from . import malloc, server
from .app import create_app
from .settings import Settings


def main() -> None:
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    malloc.tune(settings.malloc_mmap_threshold_mb)
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
    )


if __name__ == "__main__":
    main()
