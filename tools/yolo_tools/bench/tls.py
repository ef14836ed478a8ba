"""`make bench ONLY=tls`: what TLS costs against clear text, at the gateway and to Triton, in one run.

One real Triton serves the bundled model; two gateways in front of it, one clear text, one with
a certificate (a test CA's, RSA 2048 as trustme issues). Each is measured in a closed loop of 8
clients on 1080p JPEGs, once with keep-alive connections and once with a new connection per
request (each request pays a full TLS handshake), side by side. Reported per point: requests/s,
p50/p99, errors, and the gateway process's CPU per request; the ratios are HTTPS over clear text.
Then a second Triton serving gRPC over TLS (the flags the operator writes), and a clear-text
gateway calling it verified against the CA: what TLS between the tiers costs the gateway.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..local_triton import LocalTriton, TritonPorts, free_port
from ..stack import GatewayProcess
from .loadgen import http_sender, jpeg_requests, process_cpu_seconds, triton_stats

if TYPE_CHECKING:  # pragma: no cover
    from .__main__ import Bench

MODEL = "yolo"
CONCURRENCY = 8


def run(bench: Bench) -> list[dict[str, Any]]:
    import trustme  # noqa: PLC0415 - a dev dependency, as the bench is

    assert bench.triton is not None
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    folder = bench.work / "tls"
    folder.mkdir()
    cert.cert_chain_pems[0].write_to_path(str(folder / "tls.crt"))
    cert.private_key_pem.write_to_path(str(folder / "tls.key"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    client = ssl.create_default_context(cafile=str(folder / "ca.pem"))
    base = {
        "YOLO_GATEWAY_TRITON_URL": bench.triton.grpc_target,
        "YOLO_GATEWAY_MODEL_NAME": MODEL,
        "YOLO_GATEWAY_LOG_LEVEL": "warning",
        "YOLO_GATEWAY_MAX_CONCURRENCY": "4096",
    }
    tls_env = {
        "YOLO_GATEWAY_TLS_CERTFILE": str(folder / "tls.crt"),
        "YOLO_GATEWAY_TLS_KEYFILE": str(folder / "tls.key"),
    }
    triton_cert = ca.issue_cert("yolo-triton.bench.svc")
    triton_cert.cert_chain_pems[0].write_to_path(str(folder / "triton.crt"))
    triton_cert.private_key_pem.write_to_path(str(folder / "triton.key"))
    secure_triton = LocalTriton(
        bench.triton.model_repository,
        TritonPorts.free(),
        log_path=bench.work / "triton-tls.log",
        extra_args=(
            "--grpc-use-ssl=true",
            f"--grpc-server-cert={folder / 'triton.crt'}",
            f"--grpc-server-key={folder / 'triton.key'}",
        ),
    )
    to_triton = {
        "YOLO_GATEWAY_TRITON_CA_FILE": str(folder / "ca.pem"),
        "YOLO_GATEWAY_TRITON_TLS_NAME": "yolo-triton.bench.svc",
    }
    # (client scheme, keep-alive, gRPC TLS to Triton): clear text and HTTPS for each kind of
    # client connection, then clear text with TLS between the gateway and Triton
    points = [("http", True, False), ("https", True, False), ("http", False, False), ("https", False, False)]
    points += [("http", True, True)]
    rows = []
    for scheme, keep_alive, grpc_tls in points:
        https = scheme == "https"
        triton = secure_triton.start(timeout=180) if grpc_tls else bench.triton
        env = {**base, **(tls_env if https else {})}
        if grpc_tls:
            env |= {**to_triton, "YOLO_GATEWAY_TRITON_URL": secure_triton.grpc_target}
        gw = GatewayProcess(
            free_port(),
            env,
            log_path=bench.work / f"gateway-tls-{scheme}-{grpc_tls}.log",
            ca_file=folder / "ca.pem" if https else None,
        )
        try:
            gw.start()
            assert gw.process is not None
            before = triton_stats(triton.http_url, MODEL)["inference_count"]
            cpu0 = process_cpu_seconds(gw.process.pid)
            send = http_sender(
                gw.url, jpeg_requests(bench.jpegs), ssl=client if https else False, keep_alive=keep_alive
            )
            result = bench.loop(send, CONCURRENCY)
            cpu1 = process_cpu_seconds(gw.process.pid)
            total = triton_stats(triton.http_url, MODEL)["inference_count"] - before
        finally:
            gw.stop()
            if grpc_tls:
                secure_triton.stop()
        row = {
            "scheme": scheme,
            "connections": "keep-alive" if keep_alive else "new per request",
            "to_triton": "tls" if grpc_tls else "clear",
            **result.to_dict(),
            "gateway_cpu_ms_per_request": round((cpu1 - cpu0) * 1e3 / max(1, total), 3),
        }
        print(
            f"  {scheme:<5} {row['connections']:<16} to Triton {row['to_triton']:<5} {result.completed_rps:6.1f} rps"
            f"  p50 {result.p50_ms:7.1f}  p99 {result.p99_ms:7.1f} ms  errors {sum(result.errors.values())}"
            f"  cpu {row['gateway_cpu_ms_per_request']:.2f} ms/req",
            flush=True,
        )
        rows.append(row)
    return rows


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each TLS point over its clear-text twin: HTTPS at the gateway per kind of client connection,
    and gRPC TLS to Triton (clear text to the gateway, keep-alive)."""
    by = {(r["scheme"], r["connections"], r.get("to_triton", "clear")): r for r in rows}
    pairs = [
        (f"HTTPS at the gateway, {conn}", ("http", conn, "clear"), ("https", conn, "clear"))
        for conn in ("keep-alive", "new per request")
    ]
    pairs.append(("gRPC TLS to Triton, keep-alive", ("http", "keep-alive", "clear"), ("http", "keep-alive", "tls")))
    out = []
    for what, plain_key, tls_key in pairs:
        if plain_key in by and tls_key in by:
            plain, tls = by[plain_key], by[tls_key]
            out.append(
                {
                    "what": what,
                    "cpu_ms_added": round(tls["gateway_cpu_ms_per_request"] - plain["gateway_cpu_ms_per_request"], 3),
                    "cpu_ratio": round(
                        tls["gateway_cpu_ms_per_request"] / max(1e-9, plain["gateway_cpu_ms_per_request"]), 3
                    ),
                    "p50_ratio": round(tls["p50_ms"] / max(1e-9, plain["p50_ms"]), 3),
                    "rps_ratio": round(tls["completed_rps"] / max(1e-9, plain["completed_rps"]), 3),
                }
            )
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "## TLS against clear text: at the gateway, and between the gateway and Triton (bundled model, 1080p JPEGs)",
        "",
        "One Triton (and one serving gRPC over TLS), gateways in clear text and with HTTPS (a test CA's RSA 2048",
        f"certificate), a closed loop of {CONCURRENCY} clients with keep-alive and with a new connection per request,",
        "side by side (`make bench ONLY=tls`).",
        "",
        "| client → gateway | connections | gateway → Triton | requests/s | p50 ms | p99 ms | errors | gateway CPU ms/request |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scheme']} | {r['connections']} | {r.get('to_triton', 'clear')} | {r['completed_rps']:.1f} |"
            f" {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {sum(r['errors'].values())} | {r['gateway_cpu_ms_per_request']:.2f} |"
        )
    lines += ["", "| TLS | CPU added ms/request | CPU tls/clear | p50 tls/clear | requests/s tls/clear |"]
    lines += ["|---|---|---|---|---|"]
    for t in ratios(rows):
        lines.append(f"| {t['what']} | {t['cpu_ms_added']} | {t['cpu_ratio']} | {t['p50_ratio']} | {t['rps_ratio']} |")
    return "\n".join(lines) + "\n"


def write(rows: list[dict[str, Any]], out: Path) -> Path:
    import json  # noqa: PLC0415

    (out / "tls.json").write_text(json.dumps({"rows": rows, "ratios": ratios(rows)}, indent=2) + "\n")
    (out / "tls.md").write_text(markdown(rows))
    return out / "tls.md"
