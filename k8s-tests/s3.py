"""A minimal S3 client (AWS Signature Version 4, path-style) for seeding and probing the test
cluster's object store from the host. Standard library only: the host has no AWS SDK."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    region: str = "us-east-1"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signed_headers(
    method: str, url: str, creds: Credentials, body: bytes = b"", now: datetime.datetime | None = None
) -> dict[str, str]:
    """The headers that sign one request (host, x-amz-date, x-amz-content-sha256, authorization)."""
    u = urllib.parse.urlsplit(url)
    now = now or datetime.datetime.now(datetime.UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(body).hexdigest()
    headers = {"host": u.netloc, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
    query = sorted(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in query
    )
    names = sorted(headers)
    canonical = "\n".join(
        [
            method,
            urllib.parse.quote(u.path or "/", safe="/-_.~"),
            canonical_query,
            "".join(f"{k}:{headers[k]}\n" for k in names),
            ";".join(names),
            payload,
        ]
    )
    scope = f"{day}/{creds.region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + creds.secret_key).encode(), day), creds.region), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return headers


def request(
    method: str, url: str, creds: Credentials | None, body: bytes = b"", timeout: float = 10
) -> tuple[int, bytes]:
    """(status, body); creds None sends the request unsigned (anonymous)."""
    headers = signed_headers(method, url, creds, body) if creds else {}
    headers.pop("host", None)  # urllib sets the same Host itself
    req = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - our own cluster's store
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
