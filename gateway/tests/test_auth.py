"""API keys and per-key rate limits (yolo_gateway/auth.py), through the real app and its middleware.

No Triton is needed: a request that passes auth reaches its route, which answers 503 (no model)
instead of 401/403/429."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from gw_helpers import gateway_app

from yolo_gateway import auth
from yolo_gateway.settings import Settings

NO_TRITON = "127.0.0.1:1"


def keys(folder: Path, **clients: str) -> Path:
    folder.mkdir(exist_ok=True)
    for name, key in clients.items():
        (folder / name).write_text(key + "\n")
    (folder / "..data").mkdir(exist_ok=True)  # a mounted Secret's bookkeeping: ignored
    return folder


def run(settings: Settings, scenario) -> None:  # type: ignore[no-untyped-def]  # a test coroutine over an httpx client
    async def go() -> None:
        async with gateway_app(settings, wait_for_model=False) as c:
            await scenario(c)

    asyncio.run(go())


def test_no_key_folder_means_no_auth():
    async def scenario(c) -> None:  # type: ignore[no-untyped-def]  # a test coroutine over an httpx client
        assert (await c.get("/v1/models")).status_code == 503

    run(Settings(triton_url=NO_TRITON), scenario)


def test_missing_wrong_and_good_keys(tmp_path):
    folder = keys(tmp_path / "keys", alice="a-secret-key-1", bob="b-secret-key-2")

    async def scenario(c) -> None:  # type: ignore[no-untyped-def]  # a test coroutine over an httpx client
        r = await c.get("/v1/models")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer") and r.headers["x-request-id"]
        r = await c.post("/v1/detect", content=b"\xff\xd8\xff" + b"0" * 100, headers={"content-type": "image/jpeg"})
        assert r.status_code == 401, "refused before the body is looked at"
        for bad in (
            {"authorization": "Bearer a-secret-key-"},
            {"x-api-key": "nope"},
            {"authorization": "Bearer ..data"},
        ):
            r = await c.get("/v1/models", headers=bad)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", bad
        for good in (
            {"authorization": "Bearer a-secret-key-1"},
            {"Authorization": "bearer b-secret-key-2"},
            {"x-api-key": "b-secret-key-2"},
        ):
            assert (await c.get("/v1/models", headers=good)).status_code == 503, good  # past auth: no model here
        for path in ("/healthz", "/metrics"):
            assert (await c.get(path)).status_code == 200, path
        assert (await c.get("/readyz")).status_code == 503  # open, and honest: no Triton
        metrics = (await c.get("/metrics")).text
        assert 'yolo_gateway_auth_refused_total{reason="invalid"}' in metrics

    run(Settings(triton_url=NO_TRITON, api_keys_dir=str(folder)), scenario)


def test_metrics_can_be_protected(tmp_path):
    folder = keys(tmp_path / "keys", prom="scrape-key")

    async def scenario(c) -> None:  # type: ignore[no-untyped-def]  # a test coroutine over an httpx client
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/metrics", headers={"authorization": "Bearer scrape-key"})).status_code == 200
        assert (await c.get("/healthz")).status_code == 200

    run(Settings(triton_url=NO_TRITON, api_keys_dir=str(folder), protect_metrics=True), scenario)


def test_rate_limit_is_per_client_with_retry_after(tmp_path):
    folder = keys(tmp_path / "keys", alice="alice-key", bob="bob-key")

    async def scenario(c) -> None:  # type: ignore[no-untyped-def]  # a test coroutine over an httpx client
        alice, bob = {"x-api-key": "alice-key"}, {"x-api-key": "bob-key"}
        statuses = [(await c.get("/v1/models", headers=alice)).status_code for _ in range(3)]
        assert statuses == [503, 503, 503], "the burst passes"
        r = await c.get("/v1/models", headers=alice)
        assert (
            r.status_code == 429 and r.json()["error"]["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
        )
        assert "alice" in r.json()["error"]["message"]
        assert (await c.get("/v1/models", headers=bob)).status_code == 503, "another client has its own bucket"
        await asyncio.sleep(0.6)  # 2 tokens/s: one more after half a second
        assert (await c.get("/v1/models", headers=alice)).status_code == 503

    run(Settings(triton_url=NO_TRITON, api_keys_dir=str(folder), rate_limit_per_s=2, rate_limit_burst=3), scenario)


def test_a_rotated_secret_takes_effect_without_a_restart(tmp_path, monkeypatch):
    monkeypatch.setattr(auth, "API_KEYS_RELOAD_S", 0.0)
    folder = keys(tmp_path / "keys", alice="old-key")

    async def scenario(c) -> None:  # type: ignore[no-untyped-def]  # a test coroutine over an httpx client
        assert (await c.get("/v1/models", headers={"x-api-key": "old-key"})).status_code == 503
        (folder / "alice").write_text("new-key")
        assert (await c.get("/v1/models", headers={"x-api-key": "old-key"})).status_code == 403
        assert (await c.get("/v1/models", headers={"x-api-key": "new-key"})).status_code == 503

    run(Settings(triton_url=NO_TRITON, api_keys_dir=str(folder)), scenario)


@pytest.mark.parametrize("layout", ["missing", "empty"])
def test_a_key_folder_that_cannot_work_stops_the_start(tmp_path, layout):
    folder = tmp_path / "keys"
    if layout == "empty":
        folder.mkdir()

    async def scenario(c) -> None:  # type: ignore[no-untyped-def]  # a test coroutine over an httpx client
        raise AssertionError("the app must not start")

    with pytest.raises(RuntimeError, match="YOLO_GATEWAY_API_KEYS_DIR"):
        run(Settings(triton_url=NO_TRITON, api_keys_dir=str(folder)), scenario)


def test_the_openapi_schema_shows_how_to_send_a_key(tmp_path):
    """/docs shows both ways (bearer token, X-API-Key) on the routes that ask for one, and none on the probes."""
    folder = keys(tmp_path / "keys", alice="alice-key")

    async def scenario(c) -> None:  # type: ignore[no-untyped-def]  # a test coroutine over an httpx client
        schema = (await c.get("/openapi.json")).json()
        schemes = schema["components"]["securitySchemes"]
        assert schemes["HTTPBearer"]["scheme"] == "bearer"
        assert schemes["APIKeyHeader"] == {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "the client's API key",
        }
        paths = schema["paths"]
        for path, method in (("/v1/detect", "post"), ("/v1/detect/batch", "post"), ("/v1/models", "get")):
            assert {"HTTPBearer": []} in paths[path][method]["security"], path
            assert {"APIKeyHeader": []} in paths[path][method]["security"], path
        for probe in ("/healthz", "/readyz"):
            assert "security" not in paths[probe]["get"], probe

    run(Settings(triton_url=NO_TRITON, api_keys_dir=str(folder)), scenario)
