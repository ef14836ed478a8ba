"""Targets, the Markdown report and the plots of a benchmark run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_BATCH = 16


def _row(rows: list[dict], label: str, concurrency: int | None = None) -> dict:
    for r in rows:
        if r["label"] == label and (concurrency is None or r["concurrency"] == concurrency):
            return r
    raise KeyError(label)


# The cheap-model run when issue 12 set its targets: 103 rps at c=16 with 11.1 ms of gateway CPU
# per request (BENCHMARKS.md, finding 7), i.e. 1000 / 11.1 = 90 requests/s per gateway core.
CHEAP_BASELINE_RPS_PER_CORE = 1e3 / 11.1


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Where we stand on each target; a miss is a finding, not a failure."""
    out = []

    def add(name: str, value: float, target: str, met: bool, detail: str) -> None:
        out.append({"target": name, "value": round(value, 3), "goal": target, "met": bool(met), "detail": detail})

    enc = res["encoding"]
    raw = _row(enc, "uint8 NHWC, raw + CPU NMS")
    floor = res["bench_images"]["decode_floor_ms"]
    cpu = raw.get("gateway_cpu_ms_per_request", 0.0)
    add(
        "gateway CPU per 1080p request / decode-only floor",
        cpu / floor,
        "<= 1.25",
        cpu / floor <= 1.25,
        f"{cpu:.2f} ms CPU per request vs {floor:.2f} ms DCT-scaled decode",
    )

    if res.get("added_latency"):  # section 1c: paired, each pair less the decode its request took
        a = res["added_latency"]
        added = a["median_added_ms"]
        how = (
            f"median over {a['pairs']} back-to-back pairs of gateway - direct - the request's own decode+letterbox "
            f"(IQR {a['p25_added_ms']:.2f}..{a['p75_added_ms']:.2f} ms; block medians {a['block_medians_ms']})"
        )
    else:  # older runs: the difference of two separately measured p50s
        direct, gw = _row(res["direct_vs_gateway"], "direct", 1), _row(res["direct_vs_gateway"], "gateway", 1)
        added = gw["p50_ms"] - direct["p50_ms"] - res["bench_images"]["prepare_ms"]
        how = f"gateway p50 {gw['p50_ms']:.2f} ms - direct p50 {direct['p50_ms']:.2f} ms - decode+letterbox {res['bench_images']['prepare_ms']:.2f} ms"
    add("added p50 over direct Triton at c=1, excluding decode (ms)", added, "<= 2", added <= 2, how)

    cheap = res["cheap_gateway"][0]
    per_core = 1e3 / max(cheap.get("gateway_cpu_ms_per_request", 0.0), 1e-9)
    gain = per_core / CHEAP_BASELINE_RPS_PER_CORE
    add(
        "cheap model: requests/s per gateway core / the issue's baseline",
        gain,
        ">= 1.4",
        gain >= 1.4,
        f"{per_core:.0f} requests/s per core ({cheap.get('gateway_cpu_ms_per_request', 0):.2f} ms CPU each, {cheap['rps']:.0f} rps at c=16) vs {CHEAP_BASELINE_RPS_PER_CORE:.0f}",
    )

    fp32 = _row(enc, "fp32 NCHW, raw + CPU NMS")
    ratio = raw["wire_bytes_per_request"]["total"] / fp32["wire_bytes_per_request"]["total"]
    add(
        "wire bytes per request / fp32 design",
        ratio,
        "<= 0.25",
        ratio <= 0.25,
        f"{raw['wire_bytes_per_request']['total']} vs {fp32['wire_bytes_per_request']['total']} bytes (input + output)",
    )

    batched = _row(res["batching"], "on, max_queue_delay 2 ms")
    share = batched["triton"]["mean_batch"] / MAX_BATCH
    add(
        "mean batch / max_batch_size under saturating load",
        share,
        ">= 0.5",
        share >= 0.5,
        f"mean batch {batched['triton']['mean_batch']} of {MAX_BATCH} at c=64",
    )

    shared, per_request = _row(res["channel"], "shared channel"), _row(res["channel"], "new client per request")
    speedup = shared["rps"] / max(per_request["rps"], 1e-9)
    add(
        "shared channel / client-per-request throughput",
        speedup,
        ">= 1.5",
        speedup >= 1.5,
        f"{shared['rps']:.0f} vs {per_request['rps']:.0f} rps at c=64",
    )

    if res.get("tiers"):
        st, bt = _row(res["tiers"], "tiers: streaming tier"), _row(res["tiers"], "tiers: batch tier")
        add(
            "streaming tier p50 / batch tier p50, mixed load",
            st["p50_ms"] / bt["p50_ms"],
            "< 1",
            st["p50_ms"] < bt["p50_ms"],
            f"{st['p50_ms']:.1f} vs {bt['p50_ms']:.1f} ms",
        )
        add(
            "batch tier rps / streaming tier rps, mixed load",
            bt["rps"] / st["rps"],
            "> 1",
            bt["rps"] > st["rps"],
            f"{bt['rps']:.0f} vs {st['rps']:.0f} rps",
        )
    return out


def _added_latency(a: dict | None) -> list[str]:
    if not a:
        return []
    return [
        "## 1c. The latency the gateway adds at c=1, in pairs",
        f"{a['pairs']} pairs, each a direct Triton call with the image's tensor and a gateway request with its JPEG, back to back "
        "(the order alternates). Added = gateway - direct - the decode and letterbox that the gateway timed for that request.",
        _table(
            [
                "median added ms",
                "IQR ms",
                "block medians ms",
                "gateway p50 ms",
                "direct p50 ms",
                "decode+letterbox p50 ms",
            ],
            [
                [
                    a["median_added_ms"],
                    f"{a['p25_added_ms']}..{a['p75_added_ms']}",
                    ", ".join(map(str, a["block_medians_ms"])),
                    a["gateway_p50_ms"],
                    a["direct_p50_ms"],
                    a["decode_letterbox_p50_ms"],
                ]
            ],
        ),
    ]


def production_section(p: dict | None) -> list[str]:
    """Section 11: the production-size export next to the bundled model, each row naming its model."""
    if not p:
        return []
    models = p["models"]

    def who(name: str) -> str:
        return f"{models[name]['label']}, {models[name]['variant']}"

    raw_keys = [k for k in next(iter(p["raw_output"].values())) if k != "label"]
    floors = ", ".join(f"{v} ms at a {s} px input" for s, v in p["decode_floor_ms"].items())
    return [
        "## 11. Production size: YOLOv8n 640/80 (trained on the synthetic scenes) next to the bundled 320/3 model",
        "Every model here is prepared as the operator's init container does (`yolo_modelprep.cli.prepare` with the plan of a bare "
        "spec, maxBatchSize 8, one CPU), plain and with `model.optimize` (uint8 NHWC input, NMS in the graph), and served by the "
        "same Triton in the same run. " + " ".join(p["notes"]),
        _table(
            ["model", "Triton input", "outputs", "prepared", "detections / image at conf 0.25"],
            [
                [
                    who(n),
                    m["input"],
                    ", ".join(f"{k} {v}" for k, v in m["outputs"].items()),
                    m["prepare"]["reason"]
                    + (f" ({'; '.join(m['prepare']['optimized'])})" if m["prepare"]["optimized"] else ""),
                    m.get("detections_per_image_at_conf_0.25", "-"),
                ]
                for n, m in models.items()
            ],
        ),
        "What the plain variants' raw outputs hold on the bench's images (the best class score of each anchor):",
        _table(["model", *raw_keys], [[r["label"], *(r[k] for k in raw_keys)] for r in p["raw_output"].values()]),
        f"### Gateway CPU per 1080p request against the decode-only floor at the model's input size (c={p['concurrency']})",
        f"Decode-only floor (DCT-scaled simplejpeg decode, no resize) of the 8 1080p images: {floors}; a 640 input scales the decode by 1/2, a 320 one by 1/4.",
        "Less idle: the gateway's CPU per request less its idle rate (measured for 2 s before the load) over the run; "
        "at a few requests/s its idle wake-ups are a visible share of the 640/80 figures.",
        _table(
            [
                "model",
                "completions/s",
                "p50 ms",
                "mean batch",
                "gateway CPU ms/req",
                "decode floor ms",
                "CPU / floor",
                "idle ms/s",
                "less idle ms/req",
                "less idle / floor",
                "decode+letterbox ms (its encoding)",
                "Triton CPU ms/req",
            ],
            [
                [
                    f"{r['model_label']}, {r['variant']}",
                    r.get("completed_rps", r["rps"]),
                    r["p50_ms"],
                    r["triton"]["mean_batch"],
                    r.get("gateway_cpu_ms_per_request", "-"),
                    r["decode_floor_ms"],
                    r["cpu_vs_floor"],
                    r.get("gateway_idle_cpu_ms_per_s", "-"),
                    r.get("gateway_cpu_ms_per_request_less_idle", "-"),
                    r.get("cpu_less_idle_vs_floor", "-"),
                    models[r["model"]]["decode_letterbox_ms"],
                    r.get("triton_cpu_ms_per_request", "-"),
                ]
                for r in p["gateway"]
            ],
        ),
        f"### Triton the bottleneck: direct gRPC with preprocessed tensors, c={p['concurrency']}",
        "Mean batch = Triton's inference_count / execution_count over the run. Completions/s counts every request that ended in a "
        "window (a slow model's requests straddle windows; the percentiles are of those that started and ended in one). Per core: "
        "requests per second of Triton's own CPU (tritonserver and its backend stubs), and completions/s over the machine's cores "
        "(shared with the load generator). Machine cores: where the machine's CPU went over the run (busy, idle, stolen by the host).",
        _table(
            [
                "model",
                "completions/s",
                "p50 ms",
                "p99 ms",
                "errors",
                "mean batch",
                "of max batch",
                "Triton CPU ms/req",
                "requests per Triton core-s",
                "Triton cores busy",
                "per machine core /s",
                "machine cores busy / idle / steal",
            ],
            [
                [
                    f"{r['model_label']}, {r['variant']}",
                    r.get("completed_rps", r["rps"]),
                    r["p50_ms"],
                    r["p99_ms"],
                    r["errors"] or "-",
                    r["triton"]["mean_batch"],
                    f"{r['batch_fill']:.0%} of {r['max_batch_size']}",
                    r["triton_cpu_ms_per_request"],
                    r["requests_per_triton_core_s"],
                    r["triton_cores_busy"],
                    r["rps_per_machine_core"],
                    " / ".join(str(v) for v in r.get("machine_cores", {}).values()) or "-",
                ]
                for r in p["triton"]
            ],
        ),
        "### Bytes an image puts on the wire to and from Triton (the loaded configs' tensors)",
        _table(
            [
                "model",
                "plain in",
                "plain out",
                "plain total",
                "optimized in",
                "optimized out",
                "optimized total",
                "optimized / plain",
            ],
            [
                [
                    w["model_label"],
                    w["plain"]["input"],
                    w["plain"]["output"],
                    w["plain"]["total"],
                    w["optimized"]["input"],
                    w["optimized"]["output"],
                    w["optimized"]["total"],
                    w["ratio"],
                ]
                for w in p["wire"]
            ],
        ),
        "### Added latency at c=1, in pairs (section 1c's method)",
        "Each pair: a direct Triton call with the image's tensor (in the model's own encoding) and a gateway request with its JPEG, "
        "back to back; added = gateway - direct - the decode and letterbox that the gateway timed for that request.",
        _table(
            [
                "model",
                "pairs",
                "median added ms",
                "IQR ms",
                "block medians ms",
                "gateway p50 ms",
                "direct p50 ms",
                "decode+letterbox p50 ms",
            ],
            [
                [
                    f"{a['label']}, {a['variant']}",
                    a["pairs"],
                    a["median_added_ms"],
                    f"{a['p25_added_ms']}..{a['p75_added_ms']}",
                    ", ".join(map(str, a["block_medians_ms"])),
                    a["gateway_p50_ms"],
                    a["direct_p50_ms"],
                    a["decode_letterbox_p50_ms"],
                ]
                for a in p["added_latency"].values()
            ],
        ),
        f"Section 11 took {p['seconds']} s.",
    ]


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _load_rows(rows: list[dict], extra: list[str] = ()) -> str:  # type: ignore[assignment]  # an empty tuple is never mutated: a safe immutable default
    headers = [
        "side",
        "model",
        "concurrency",
        "rps",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "mean batch",
        "queue ms",
        "infer ms",
        *extra,
    ]
    body = []
    for r in rows:
        t = r["triton"]
        line = [
            r["label"],
            r["model"],
            r["concurrency"],
            r["rps"],
            r["p50_ms"],
            r["p95_ms"],
            r["p99_ms"],
            r["errors"] or "-",
            t["mean_batch"],
            t["queue"],
            t["compute_infer"],
        ]
        for e in extra:
            value = r.get(e, "-")
            line.append(value["total"] if isinstance(value, dict) else value)
        body.append(line)
    return _table(headers, body)


def markdown(res: dict[str, Any], prefix: str = "") -> str:
    m = res["machine"]
    parts = [
        f"# Benchmark results ({'quick' if res['quick'] else 'full'} run, {res['seconds']} s)",
        f"Machine: {m['cpus']} CPUs, {m['processor']}, {m['platform']}, Python {m['python']}. "
        f"Triton, the gateway and the load generator share these CPUs. Method: {res['method']}.",
        "## Targets",
        _table(
            ["target", "value", "goal", "met", "how"],
            [
                [t["target"], t["value"], t["goal"], "yes" if t["met"] else "**no**", t["detail"]]
                for t in res["targets"]
            ],
        ),
        "## 1. Direct Triton gRPC (the ceiling) vs the gateway",
        _load_rows(res["direct_vs_gateway"], ["gateway_cpu_ms_per_request"]),
        "Open loop (a fixed request rate, 60% of the gateway's closed-loop capacity; latency counts from the scheduled start):",
        _table(
            [
                "side",
                "rate /s",
                "achieved rps",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "errors",
                "mean batch",
                "gateway CPU ms/req",
            ],
            [
                [
                    r["label"],
                    r["rate"],
                    r["rps"],
                    r["p50_ms"],
                    r["p95_ms"],
                    r["p99_ms"],
                    r["errors"] or "-",
                    r["triton"]["mean_batch"],
                    r.get("gateway_cpu_ms_per_request", "-"),
                ]
                for r in res.get("open_loop", [])
            ],
        ),
        f"![latency vs throughput]({prefix}latency_throughput.png)",
        *_added_latency(res.get("added_latency")),
        "## 1b. Triton's dynamic batcher with and without a queue policy (c=1, back-to-back, direct)",
        "With any `default_queue_policy`, Triton 2.51's batcher sometimes sleeps its 500 ms idle wait while a request waits in the queue.",
        _load_rows(res.get("queue_policy", [])),
        "## 2. One shared channel vs a new client per request",
        _load_rows(res["channel"]),
        "## 3. Dynamic batching",
        _load_rows(res["batching"]),
        f"![batch sizes]({prefix}batch_sizes.png)",
        "## 4. Input encoding and NMS placement (through the gateway)",
        _load_rows(res["encoding"], ["gateway_cpu_ms_per_request", "wire_bytes_per_request"]),
        "## 5. The gateway alone (cheap model)",
        _load_rows(res["cheap_gateway"], ["gateway_cpu_ms_per_request"]),
        "### The gateway's CPU per request, by thread (ms)",
        "The event loop runs HTTP, the framework and the gRPC calls; the pool column is every other Python thread: the CPU pool (decode, letterbox, NMS) and grpc.aio's completion-queue poller; gRPC core has named threads of its own. "
        f"The decode-only floor of these images is {res['bench_images']['decode_floor_ms']} ms.",
        _table(
            ["side", "model", "concurrency", "total", "event loop", "pool", "gRPC threads"],
            [
                [
                    r["label"],
                    r["model"],
                    r["concurrency"],
                    r["gateway_cpu_ms_per_request"],
                    *(r["gateway_cpu_ms_by_thread"][k] for k in ("event_loop", "pool", "grpc")),
                ]
                for r in [*res["direct_vs_gateway"], *res["encoding"], *res["cheap_gateway"]]
                if "gateway_cpu_ms_by_thread" in r
            ],
        ),
        "## 6. A burst far over capacity: admission control vs none",
        "All requests sent at once on raw sockets; latency from the moment all were sent, per status. "
        "Shedding answers the excess with 503 + Retry-After at once instead of a 504 at the deadline.",
        _table(
            ["gateway", "requests", "statuses", "with Retry-After", "p50 ms by status", "p95 ms by status"],
            [
                [r["label"], r["requests"], r["statuses"], r["with_retry_after"], r["p50_ms"], r["p95_ms"]]
                for r in res.get("burst", [])
            ],
        ),
        "## 7. A static camera: the inference cache off vs on (c=1, frames in order)",
        _table(
            [
                "gateway",
                "rps",
                "p50 ms",
                "gateway CPU ms/req",
                "Triton inferences",
                "hits (first pass)",
                "ideal",
                "same classes as uncached",
                "uncached vs scene's first frame",
            ],
            [
                [
                    r["label"],
                    r["rps"],
                    r["p50_ms"],
                    r.get("gateway_cpu_ms_per_request", "-"),
                    r["triton"]["inferences"],
                    r["hit_ratio_first_pass"],
                    r.get("ideal_hit_ratio", "-"),
                    r.get("same_classes_as_uncached", "-"),
                    r.get("same_classes_as_scene_first_frame", "-"),
                ]
                for r in res.get("static_camera", [])
            ],
        ),
        "## 8. Latency tiers under mixed load (direct Triton)",
        "Camera streams at a fixed rate (open loop) and batch clients that take all they can (closed loop, c=32), at once: "
        "first both on one model config, then each on its own tier (streaming: max batch 8, 0.1 ms window, 2 instances, "
        "ordering preserved; batch: 128, 5 ms, 1).",
        _load_rows(res.get("tiers", [])),
        "## 9. Preprocessing: fast vs parity (through the gateway)",
        "mAP50 over every detection down to conf 0.001, precision and recall at conf 0.25, on held-out scenes; "
        "load and CPU per request on the 1080p images (c=4).",
        _table(
            ["preprocess", "mAP50", "precision", "recall", "rps", "p50 ms", "gateway CPU ms/req"],
            [
                [
                    r["label"],
                    r["map50"],
                    r["precision"],
                    r["recall"],
                    r["rps"],
                    r["p50_ms"],
                    r.get("gateway_cpu_ms_per_request", "-"),
                ]
                for r in res.get("parity", [])
            ],
        ),
        "## 10. The first request after a start (c=1)",
        _table(
            ["start", "attempt", "first request ms", "steady p50 ms", "first / steady"],
            [
                [r["label"], r["attempt"], r["first_ms"], r["steady_p50_ms"], r["first_vs_steady"]]
                for r in res.get("first_request", [])
            ],
        ),
        *production_section(res.get("production")),
        "## Gateway stage microbenchmarks (median ms, single thread)",
        _table(
            [
                "image",
                "bytes",
                *res["micro"]["decode_letterbox"][0]["ms"].keys(),
                "decode floor",
                "ours / best alt.",
                "ours / floor",
            ],
            [
                [
                    r["image"],
                    r["bytes"],
                    *r["ms"].values(),
                    r["decode_only_floor_ms"],
                    r["ours_vs_best_alternative"],
                    r["ours_vs_decode_floor"],
                ]
                for r in res["micro"]["decode_letterbox"]
            ],
        ),
        _table(
            ["NMS", "conf", "candidates", "ours ms", "numpy greedy ms", "ours / alt."],
            [
                [
                    r["output"],
                    r["conf"],
                    r["candidates"],
                    r["ms"]["ours"],
                    r["ms"]["numpy_greedy_loop"],
                    r["ours_vs_best_alternative"],
                ]
                for r in res["micro"]["nms"]
            ],
        ),
        _table(
            ["JSON", "orjson ms", "json ms", "FastAPI encoder ms", "ours / best alt."],
            [
                [f"{r['detections']} detections", *r["ms"].values(), r["ours_vs_best_alternative"]]
                for r in res["micro"]["json"]
            ],
        ),
        _table(
            ["JPEG scan count", "bytes", "ours (vectorised) ms", "bytes.count ms", "ours / alt."],
            [
                [r["image"], r["bytes"], *r["ms"].values(), r["ours_vs_best_alternative"]]
                for r in res["micro"].get("jpeg_scans", [])
            ],
        ),
    ]
    return "\n\n".join(parts) + "\n"


def plots(res: dict[str, Any], out: Path, prefix: str = "") -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, style in (("direct", "o-"), ("gateway", "s-")):
        rows = sorted((r for r in res["direct_vs_gateway"] if r["label"] == label), key=lambda r: r["concurrency"])
        ax.plot([r["rps"] for r in rows], [r["p50_ms"] for r in rows], style, label=f"{label} p50")
        ax.plot([r["rps"] for r in rows], [r["p99_ms"] for r in rows], style, alpha=0.4, label=f"{label} p99")
        for r in rows:
            ax.annotate(
                f"c={r['concurrency']}", (r["rps"], r["p50_ms"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title("Latency vs throughput: direct Triton gRPC vs the gateway")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / f"{prefix}latency_throughput.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = res["batching"]
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        sizes = r["triton"]["batch_sizes"]
        total = sum(sizes.values()) or 1
        xs = [int(k) + (i - len(rows) / 2) * width for k in sizes]
        ax.bar(
            xs,
            [v / total for v in sizes.values()],
            width=width,
            label=f"{r['label']} (mean {r['triton']['mean_batch']})",
        )
    ax.set_xlabel("executed batch size")
    ax.set_ylabel("share of executions")
    ax.set_title("Batch sizes Triton executed at concurrency 64")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / f"{prefix}batch_sizes.png", dpi=110)
    plt.close(fig)


def write(res: dict[str, Any], out: Path, name: str) -> None:
    """latest.md with latency_throughput.png and batch_sizes.png; other runs prefix their plots."""
    prefix = "" if name == "latest" else f"{name}_"
    (out / f"{name}.md").write_text(markdown(res, prefix))
    plots(res, out, prefix)
