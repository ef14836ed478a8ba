"""Latency tiers, a canary and a shadow, on a real tritonserver loaded with the operator's generated
configs for one YoloService (`spec.tiers`, `spec.canary`, `spec.shadow`), through the gateway.

Besides the operator's models, the repository holds two the tests make to inject faults that a
healthy model cannot show: `yolo-broken` (a python model with the same tensors whose every call
fails) and `yolo-slow` (the shadow's config with a 1.5 s batching window, so its calls take that long).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import urllib.request

import numpy as np
import pytest
from gw_helpers import gateway_app, quiet_stats, settled_counts
from prometheus_client import REGISTRY

from yolo_gateway.settings import Settings
from yolo_operator.builders import model_configs
from yolo_operator.spec import parse_spec
from yolo_tools.devrepo import LOCAL_REPO
from yolo_tools.local_triton import LocalTriton, TritonPorts
from yolo_tools.synthetic import CLASS_NAMES, encode, make_scene

TIERS = [
    {
        "name": "streaming",
        "maxBatchSize": 2,
        "maxQueueDelayMicroseconds": 100,
        "instances": 2,
        "preserveOrdering": True,
    },
    {"name": "balanced", "maxBatchSize": 8, "maxQueueDelayMicroseconds": 1000, "instances": 1, "default": True},
    {"name": "batch", "maxBatchSize": 16, "maxQueueDelayMicroseconds": 100_000, "instances": 1},
]
SLOW_SHADOW_S = 1.5
BROKEN = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError("this model version is broken")) for _ in requests]
"""


def _spec():
    return parse_spec(
        {
            "model": {
                "name": "yolo",
                "input": "uint8-nhwc",
                "inputSize": 320,
                "classNames": list(CLASS_NAMES),
                "source": {"uri": "https://models.example/v1.onnx"},
            },
            "triton": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
            "tiers": TIERS,
            "canary": {"source": {"uri": "https://models.example/v2.onnx"}, "percent": 25},
            "shadow": {"source": {"uri": "https://models.example/v3.onnx"}, "percent": 50},
        }
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    repo = tmp_path_factory.mktemp("tiers_repo")
    configs = model_configs(_spec())
    assert sorted(configs) == ["yolo", "yolo-batch", "yolo-canary", "yolo-shadow", "yolo-streaming"]
    slow = (
        configs["yolo-shadow"]
        .replace('name: "yolo-shadow"', 'name: "yolo-slow"')
        .replace("max_queue_delay_microseconds: 1000", f"max_queue_delay_microseconds: {int(SLOW_SHADOW_S * 1e6)}")
    )
    assert "max_queue_delay_microseconds: 1500000" in slow
    for name, text in {**configs, "yolo-slow": slow}.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(text)
        shutil.copy(LOCAL_REPO / "yolo" / "1" / "model.onnx", repo / name / "1" / "model.onnx")
    # Same tensors as the others, but every call fails (no warm-up: that would fail its load).
    broken = (
        configs["yolo"]
        .split("dynamic_batching")[0]
        .replace('name: "yolo"', 'name: "yolo-broken"')
        .replace('platform: "onnxruntime_onnx"', 'backend: "python"')
    )
    broken += (
        'dynamic_batching { }\ninstance_group [ { kind: KIND_CPU, count: 1 } ]\nparameters { key: "class_names", value: { string_value: "'
        + json.dumps(list(CLASS_NAMES)).replace('"', '\\"')
        + '" } }\n'
    )
    (repo / "yolo-broken" / "1").mkdir(parents=True)
    (repo / "yolo-broken" / "config.pbtxt").write_text(broken)
    (repo / "yolo-broken" / "1" / "model.py").write_text(BROKEN)
    with LocalTriton(repo, TritonPorts.free(), log_path=repo.parent / "triton.log") as server:
        yield server


def _settings(served: LocalTriton, **kw) -> Settings:
    tiers = {"streaming": "yolo-streaming", "balanced": "yolo", "batch": "yolo-batch"}
    return Settings(
        triton_url=served.grpc_target,
        model_name="yolo",
        tiers=tiers,
        default_tier="balanced",
        max_queue=256,
        queue_timeout_s=8,
        **kw,
    )


async def _loaded(c, model: str) -> None:
    """Wait, bounded, until the gateway has read a canary's or shadow's signature (tiers are read
    before the gateway reports ready; a canary or shadow may be broken, so nothing waits for it)."""
    for _ in range(200):
        if model in c.app.state.triton.signatures:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the gateway never read {model}")


def _stats(served: LocalTriton, model: str) -> dict:
    with urllib.request.urlopen(f"{served.http_url}/v2/models/{model}/stats", timeout=5) as r:
        return json.loads(r.read())["model_stats"][0]


def _counted(served: LocalTriton, model: str, before: int, expected: int) -> int:
    """Inferences of `model` since `before`, once `expected` are counted or 10 s have passed
    (Triton counts a batch a moment after it answers it)."""
    (n,) = settled_counts([served], model, [before], expected)
    return n


def _config(served: LocalTriton, model: str) -> dict:
    with urllib.request.urlopen(f"{served.http_url}/v2/models/{model}/config", timeout=5) as r:
        return json.loads(r.read())


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _images(n: int, seed: int = 7) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [encode(make_scene(rng, 480, 360)) for _ in range(n)]


JPEG = {"content-type": "image/jpeg"}


def test_each_tier_batches_as_its_config_says(served):
    """Triton reports each tier's own config, and its statistics show each tier's batching: 24
    requests at once never make a streaming batch over 2, and the batch tier's 100 ms window
    gathers batches larger than that."""
    for name, (batch, delay, count, ordered) in {
        "yolo-streaming": (2, 100, 2, True),
        "yolo": (8, 1000, 1, False),
        "yolo-batch": (16, 100_000, 1, False),
    }.items():
        cfg = _config(served, name)
        assert cfg["max_batch_size"] == batch and int(cfg["dynamic_batching"]["max_queue_delay_microseconds"]) == delay
        assert (
            cfg["dynamic_batching"].get("preserve_ordering", False) is ordered
            and cfg["instance_group"][0]["count"] == count
        )

    images = _images(24)

    async def go() -> dict[str, list[dict]]:
        async with gateway_app(_settings(served)) as c:
            listing = (await c.get("/v1/models")).json()
            assert listing["default_tier"] == "balanced"
            assert {(r["tier"], r["model"], r["served"]) for r in listing["routes"]} == {
                ("streaming", "yolo-streaming", True),
                ("balanced", "yolo", True),
                ("batch", "yolo-batch", True),
            }
            r = await c.post("/v1/detect?tier=turbo", content=images[0], headers=JPEG)
            assert (
                r.status_code == 400
                and "unknown tier 'turbo'" in r.json()["error"]["message"]
                and "streaming" in r.json()["error"]["message"]
            )
            out = {}
            for tier in ("streaming", "batch", "balanced", None):
                url = f"/v1/detect?tier={tier}" if tier else "/v1/detect"
                responses = await asyncio.gather(*(c.post(url, content=img, headers=JPEG) for img in images))
                assert all(r.status_code == 200 for r in responses), [
                    r.text for r in responses if r.status_code != 200
                ][:1]
                out[tier or "(none)"] = [r.json() for r in responses]
            return out

    results = asyncio.run(go())
    for tier, model in (
        ("streaming", "yolo-streaming"),
        ("batch", "yolo-batch"),
        ("balanced", "yolo"),
        ("(none)", "yolo"),
    ):
        assert {(r["model"]["name"], r["model"]["tier"], r["model"]["variant"]) for r in results[tier]} == {
            (model, "balanced" if tier == "(none)" else tier, "current")
        }
    # Same weights in every tier: the same detections for the same image.
    assert [r["detections"] for r in results["streaming"]] == [r["detections"] for r in results["batch"]]
    sizes = {
        m: {int(b["batch_size"]) for b in _stats(served, m).get("batch_stats", [])}
        for m in ("yolo-streaming", "yolo-batch")
    }
    assert max(sizes["yolo-streaming"]) <= 2, sizes
    assert max(sizes["yolo-batch"]) > 2, sizes


def test_the_canary_answers_its_share_for_real(served):
    """25 % of 400 default-tier requests go to the canary, served by its own model; tier requests never do."""
    images = _images(8, seed=11)
    before = quiet_stats(served, "yolo-canary")["inference_count"]

    async def go() -> list[dict]:
        async with gateway_app(_settings(served, canary_model="yolo-canary", canary_percent=25)) as c:
            await _loaded(c, "yolo-canary")
            out = []
            for _i in range(0, 400, 8):
                responses = await asyncio.gather(*(c.post("/v1/detect", content=img, headers=JPEG) for img in images))
                assert all(r.status_code == 200 for r in responses)
                out += [r.json() for r in responses]
            tiered = [
                (await c.post("/v1/detect?tier=streaming", content=images[0], headers=JPEG)).json() for _ in range(8)
            ]
            assert {r["model"]["variant"] for r in tiered} == {"current"}
            return out

    results = asyncio.run(go())
    canary = [r for r in results if r["model"]["variant"] == "canary"]
    share = len(canary) / len(results) * 100
    assert abs(share - 25) <= 5, share
    assert {r["model"]["name"] for r in canary} == {"yolo-canary"}
    assert _counted(served, "yolo-canary", before, len(canary)) == len(canary)
    by_image: dict[int, set[str]] = {}
    for i, r in enumerate(results):  # same weights: the canary's answers are the current version's
        by_image.setdefault(i % 8, set()).add(json.dumps(r["detections"]))
    assert all(len(v) == 1 for v in by_image.values())


@pytest.mark.parametrize("canary", ["yolo-missing", "yolo-broken"])
def test_a_failing_canary_is_reported_and_never_fails_a_request(served, canary):
    images = _images(4, seed=3)
    outcome = "canary_unavailable" if canary == "yolo-missing" else "canary_fallback"
    before = _metric("yolo_gateway_variant_requests_total", variant=outcome)

    async def go() -> None:
        async with gateway_app(_settings(served, canary_model=canary, canary_percent=25)) as c:
            if canary == "yolo-broken":  # the gateway reads its signature: it looks servable until called
                await _loaded(c, canary)
            listing = (await c.get("/v1/models")).json()
            (route,) = [r for r in listing["routes"] if r["role"] == "canary"]
            assert route["model"] == canary and route["percent"] == 25
            if canary == "yolo-missing":
                assert route["served"] is False and "yolo-missing" in route["error"]
            for _ in range(10):
                responses = await asyncio.gather(*(c.post("/v1/detect", content=img, headers=JPEG) for img in images))
                assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
                assert {r.json()["model"]["name"] for r in responses} == {"yolo"}
                assert {r.json()["model"]["variant"] for r in responses} == {"current"}

    asyncio.run(go())
    assert _metric("yolo_gateway_variant_requests_total", variant=outcome) - before == 10


def _shadow_counts() -> dict[str, float]:
    return {o: _metric("yolo_gateway_shadow_requests_total", outcome=o) for o in ("ok", "error", "skipped")} | {
        "match_count": _metric("yolo_gateway_shadow_box_match_ratio_count"),
        "match_sum": _metric("yolo_gateway_shadow_box_match_ratio_sum"),
    }


async def _settle(c, timeout_s: float = 10) -> None:
    """Wait, bounded, until the gateway has no mirrored call in flight."""
    for _ in range(int(timeout_s / 0.05)):
        if not c.app.state.detector.shadows:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("mirrored calls still in flight")


def test_the_shadow_gets_its_share_and_never_changes_a_response(served):
    images = _images(4, seed=5)
    before, shadow_before = _shadow_counts(), quiet_stats(served, "yolo-shadow")["inference_count"]

    async def go() -> tuple[list[dict], list[dict]]:
        async with gateway_app(_settings(served)) as plain:
            alone = [(await plain.post("/v1/detect", content=img, headers=JPEG)).json() for img in images * 5]
        async with gateway_app(_settings(served, shadow_model="yolo-shadow", shadow_percent=50)) as c:
            await _loaded(c, "yolo-shadow")
            mirrored = [(await c.post("/v1/detect", content=img, headers=JPEG)).json() for img in images * 5]
            await _settle(c)
        return alone, mirrored

    alone, mirrored = asyncio.run(go())
    assert [r["detections"] for r in mirrored] == [r["detections"] for r in alone]
    assert {(r["model"]["name"], r["model"]["variant"]) for r in mirrored} == {("yolo", "current")}
    after = _shadow_counts()
    assert after["ok"] - before["ok"] == 10 and after["error"] == before["error"]
    assert _counted(served, "yolo-shadow", shadow_before, 10) == 10
    # The shadow serves the same weights: every mirrored image agrees fully.
    assert after["match_count"] - before["match_count"] == 10 and after["match_sum"] - before[
        "match_sum"
    ] == pytest.approx(10)


def test_a_slow_or_broken_shadow_adds_no_latency_and_no_error(served):
    """The shadow's calls take 1.5 s (its batching window): each response still comes back in well
    under that bound (the test's: 1 s), with its shadow call still in flight; a broken shadow is
    counted as such and every response is a 200."""
    images = _images(3, seed=9)
    before = _shadow_counts()

    async def go() -> None:
        async with gateway_app(_settings(served, shadow_model="yolo-slow", shadow_percent=100)) as c:
            await _loaded(c, "yolo-slow")
            for img in images:
                t0 = time.perf_counter()
                r = await c.post("/v1/detect", content=img, headers=JPEG)
                elapsed = time.perf_counter() - t0
                assert r.status_code == 200 and elapsed < 1.0, elapsed
                assert c.app.state.detector.shadows, "the mirrored call runs after the response"
            assert _shadow_counts()["ok"] == before["ok"]  # none has finished: the responses did not wait
            await _settle(c)
        assert _shadow_counts()["ok"] - before["ok"] == 3
        async with gateway_app(_settings(served, shadow_model="yolo-broken", shadow_percent=100)) as c:
            await _loaded(c, "yolo-broken")
            responses = [await c.post("/v1/detect", content=img, headers=JPEG) for img in images]
            assert [r.status_code for r in responses] == [200] * 3
            await _settle(c)

    asyncio.run(go())
    assert _shadow_counts()["error"] - before["error"] == 3
