"""API keys and per-key rate limits (`spec.gateway.auth`), as a FastAPI security dependency.

Keys come from a folder, one file per client: the file's name is the client's name, its content
the key, as a Kubernetes Secret mounted as a volume lays them out. The folder is re-read every
`API_KEYS_RELOAD_S` seconds, so a rotated Secret takes effect without a restart. A request sends
its key as `Authorization: Bearer <key>` or `X-API-Key: <key>`:

- no key: 401 (`WWW-Authenticate: Bearer`); a key that matches no client: 403;
- keys are compared as SHA-256 digests with `hmac.compare_digest`, against every client's
  digest with no early exit, so the time taken says nothing about how close a guess was;
- each client has a token bucket (`rate_limit_per_s`, `rate_limit_burst`): past it, 429 with
  Retry-After, the time until the next token;
- the detection and model routes depend on `require_client`, which the OpenAPI schema (and
  `/docs`) shows as two security schemes; `/healthz` and `/readyz` stay open (probes), and
  `/metrics` too unless `protect_metrics`.

The refusals are typed errors (errors.py maps them to 401, 403 and 429), raised before the route
reads the body (the server drains or cuts it, as for a 413).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from . import metrics
from .errors import Forbidden, RateLimited, Unauthorized
from .settings import Settings

log = logging.getLogger("yolo_gateway")
API_KEYS_RELOAD_S = 10.0
MAX_KEY_BYTES = 4096


def digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


def load_keys(folder: Path) -> dict[str, bytes]:
    """client name -> SHA-256 of its key. Hidden entries (a mounted Secret's ..data links) are skipped."""
    keys = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        key = path.read_bytes().strip()
        if key:
            keys[path.name] = digest(key)
    return keys


def check(settings: Settings) -> int:
    """At start-up: the folder must exist and hold at least one key (else every request would be
    refused). Returns the number of clients."""
    folder = Path(settings.api_keys_dir)
    try:
        keys = load_keys(folder)
    except OSError as exc:
        raise RuntimeError(f"YOLO_GATEWAY_API_KEYS_DIR={folder}: {exc}") from exc
    if not keys:
        raise RuntimeError(f"YOLO_GATEWAY_API_KEYS_DIR={folder} holds no keys: every request would be refused")
    return len(keys)


@dataclass
class Bucket:
    tokens: float
    updated: float = field(default_factory=time.monotonic)

    def take(self, rate: float, burst: int, now: float) -> float:
        """0 when a token was taken, else the seconds until there is one."""
        self.tokens = min(burst, self.tokens + (now - self.updated) * rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / rate


class APIKeys:
    """The clients' keys, re-read every API_KEYS_RELOAD_S, and their token buckets."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.folder = Path(settings.api_keys_dir)
        self.keys: dict[str, bytes] = {}
        self.loaded_at = -math.inf
        self.buckets: dict[str, Bucket] = {}
        check(settings)
        self._reload(time.monotonic())

    def _reload(self, now: float) -> None:
        try:
            keys = load_keys(self.folder)
        except OSError as exc:  # a Secret being swapped: keep serving with the last keys
            log.warning("api keys: keeping the last %d keys; reading %s: %s", len(self.keys), self.folder, exc)
            keys = self.keys
        if not keys and self.keys:
            log.warning("api keys: %s is empty now; keeping the last %d keys", self.folder, len(self.keys))
            keys = self.keys
        if keys.keys() != self.keys.keys():
            log.info("api keys: %d clients", len(keys))
        self.keys, self.loaded_at = keys, now
        self.buckets = {name: b for name, b in self.buckets.items() if name in keys}

    def client(self, presented: bytes) -> str | None:
        """The client whose key this is; every digest is compared, whatever matches."""
        d = digest(presented)
        found = None
        for name, want in self.keys.items():
            if hmac.compare_digest(d, want):
                found = name
        return found

    def authorize(self, presented: str | None) -> str:
        """The client's name, or Unauthorized (no key), Forbidden (no such key) or RateLimited."""
        now = time.monotonic()
        if now - self.loaded_at > API_KEYS_RELOAD_S:
            self._reload(now)
        if not presented:
            metrics.AUTH_REFUSED.labels("missing").inc()
            raise Unauthorized("an API key is required: Authorization: Bearer <key> or X-API-Key")
        name = self.client(presented.encode("latin-1")[:MAX_KEY_BYTES])
        if name is None:
            metrics.AUTH_REFUSED.labels("invalid").inc()
            raise Forbidden("this API key is not valid")
        rate = self.settings.rate_limit_per_s
        if rate > 0:
            burst = self.settings.rate_limit_burst
            wait = self.buckets.setdefault(name, Bucket(float(burst), now)).take(rate, burst, now)
            if wait > 0:
                metrics.AUTH_REFUSED.labels("rate_limited").inc()
                msg = f"rate limit of {rate:g} requests/s (burst {burst}) for client {name!r}"
                raise RateLimited(msg, retry_after=math.ceil(wait))
        return name


# The two ways to send a key, as OpenAPI security schemes (auto_error off: `require_client`
# decides, and with no key folder nothing is asked).
bearer = HTTPBearer(auto_error=False, description="the client's API key as a bearer token")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the client's API key")
# The two ways a client presents its key, as FastAPI security parameters (they show in /openapi.json).
BearerKey = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
HeaderKey = Annotated[str | None, Security(api_key_header)]


async def require_client(request: Request, credentials: BearerKey, api_key: HeaderKey) -> str | None:
    """The calling client's name (also in request.state.client); None when the gateway has no keys."""
    keys: APIKeys | None = request.app.state.api_keys
    if keys is None:
        return None
    presented = credentials.credentials.strip() if credentials else (api_key or "").strip()
    request.state.client = keys.authorize(presented or None)
    return str(request.state.client)


async def require_client_for_metrics(request: Request, credentials: BearerKey, api_key: HeaderKey) -> str | None:
    """/metrics asks for a key only with `protect_metrics` (Prometheus then sends one)."""
    keys: APIKeys | None = request.app.state.api_keys
    if keys is None or not keys.settings.protect_metrics:
        return None
    return await require_client(request, credentials, api_key)
