"""Fuzz the gateway over HTTP with mutated images, multipart bodies and query strings.

    python -m yolo_tools.fuzz --count 100000          # make fuzz
    python -m yolo_tools.fuzz --count 2000 --url http://127.0.0.1:8080

Without --url it starts a real Triton on the bundled model and the gateway as its own
process inside a memory-limited cgroup (or under RLIMIT_AS where no cgroup is writable),
so a decompression bomb fails the run instead of taking the machine.

Seeds are JPEG (baseline, progressive, grey, CMYK, EXIF, ICC), PNG (every colour type and
bit depth, eXIf, iCCP, text) and WebP (lossy, lossless, alpha, animated, EXIF). Mutations
flip and overwrite bytes, cut, splice and repeat ranges, and rewrite header fields
(sizes, precision, components, bit depth, colour type, EXIF orientation, chunk lengths)
with valid checksums so that they reach the parsers behind the CRC checks.

Requirements, checked on every response: no status >= 500 except 503/504 carrying
Retry-After; no hang (a response within the client's timeout); no reset (a connection
broken by the server). The report gives the count, the status histogram and the
gateway's RSS before and after (and its peak).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import io
import json
import os
import random
import struct
import sys
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .clients import Clients

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLING_DEPENDENCY = "Pillow"  # seeds only; the gateway itself never decodes with Pillow


# --------------------------------------------------------------------------- seeds


def make_seeds(rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """(media type, bytes) for every encoder feature the gateway may meet."""
    from PIL import Image  # noqa: PLC0415 - tooling only

    from .synthetic import make_scene  # noqa: PLC0415

    def scene(w: int, h: int) -> Image.Image:
        return Image.fromarray(make_scene(rng, w, h, max_objects=3).image[:, :, ::-1].copy())

    def save(img: Image.Image, fmt: str, **kw: object) -> bytes:
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        return buf.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6
    icc = b"\0\0\x02\x0cappl\x02\x10\0\0mntrRGB XYZ " + bytes(100)
    rgb = scene(160, 120)
    seeds: list[tuple[str, bytes]] = [
        ("image/jpeg", save(rgb, "JPEG", quality=85)),
        ("image/jpeg", save(rgb, "JPEG", quality=70, progressive=True)),
        ("image/jpeg", save(rgb.convert("L"), "JPEG")),
        ("image/jpeg", save(rgb.convert("CMYK"), "JPEG")),
        ("image/jpeg", save(rgb, "JPEG", exif=exif.tobytes(), icc_profile=icc)),
        ("image/jpeg", save(scene(97, 61), "JPEG", subsampling=0)),
        ("image/png", save(rgb, "PNG")),
        ("image/png", save(rgb.convert("RGBA"), "PNG", exif=exif.tobytes())),
        ("image/png", save(rgb.convert("L"), "PNG")),
        ("image/png", save(rgb.convert("1"), "PNG")),
        ("image/png", save(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG", bits=4)),
        ("image/png", save(rgb.convert("LA"), "PNG", icc_profile=icc)),
        ("image/png", save(rgb.convert("I;16"), "PNG")),
        ("image/webp", save(rgb, "WEBP", quality=80)),
        ("image/webp", save(rgb, "WEBP", lossless=True)),
        ("image/webp", save(rgb.convert("RGBA"), "WEBP", exif=exif.tobytes())),
        ("image/webp", save(rgb, "WEBP", save_all=True, append_images=[scene(160, 120)], duration=100)),
    ]
    return seeds


# --------------------------------------------------------------------------- mutations


def _png_chunks(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(offset, type, body) of each chunk, stopping at the first malformed one."""
    out, pos = [], 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        out.append((pos, kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
        if kind == b"IEND":
            break
    return out


def _png_rewrite(data: bytes, r: random.Random) -> bytes:
    """Rewrite IHDR's fields or a chunk's length, with a valid CRC."""
    chunks = _png_chunks(data)
    if not chunks:
        return data
    off, kind, body = chunks[0] if r.random() < 0.7 else r.choice(chunks)
    body = bytearray(body)
    if kind == b"IHDR" and len(body) == 13:
        field_ = r.randrange(4)
        if field_ < 2:
            struct.pack_into(
                ">I", body, 4 * field_, r.choice([0, 1, 2**16, 2**24, 2**31 - 1, 2**31, 2**32 - 1, r.randrange(2**32)])
            )
        elif field_ == 2:
            body[8] = r.choice([0, 1, 2, 3, 4, 5, 7, 8, 16, 32, 255])
        else:
            body[9] = r.choice([0, 1, 2, 3, 4, 5, 6, 7, 255])
    elif body:
        body[r.randrange(len(body))] = r.randrange(256)
    crc = struct.pack(">I", zlib.crc32(kind + bytes(body)) & 0xFFFFFFFF)
    if r.random() < 0.1:  # a lying length field
        return data[:off] + struct.pack(">I", r.randrange(2**32)) + data[off + 4 :]
    return data[: off + 8] + bytes(body) + crc + data[off + 12 + len(body) :]


def _jpeg_rewrite(data: bytes, r: random.Random) -> bytes:
    """Rewrite the frame header (size, precision, components) or the EXIF orientation."""
    out = bytearray(data)
    sof = next((i for i in range(2, len(data) - 9) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2)), None)
    if sof is not None and r.random() < 0.7:
        which = r.randrange(4)
        if which == 0:
            struct.pack_into(">H", out, sof + 5, r.choice([0, 1, 65535, r.randrange(65536)]))
        elif which == 1:
            struct.pack_into(">H", out, sof + 7, r.choice([0, 1, 65535, r.randrange(65536)]))
        elif which == 2:
            out[sof + 4] = r.choice([0, 1, 7, 8, 12, 16, 255])
        else:
            out[sof + 9] = r.choice([0, 1, 2, 3, 4, 5, 255])
        return bytes(out)
    tag = data.find(b"\x01\x12")
    if tag < 0:
        tag = data.find(b"\x12\x01")
    if tag >= 0 and tag + 10 <= len(out):
        out[tag + 8 : tag + 10] = r.randrange(65536).to_bytes(2, "big")
    return bytes(out)


def _webp_rewrite(data: bytes, r: random.Random) -> bytes:
    out = bytearray(data)
    if len(out) < 30:
        return data
    kind = bytes(out[12:16])
    if kind == b"VP8X":
        out[20] = r.randrange(256)  # flags: animation, EXIF, alpha ...
        out[24 + 3 * r.randrange(2) : 27 + 3 * r.randrange(2)] = r.randrange(2**24).to_bytes(3, "little")
    elif kind == b"VP8 ":
        struct.pack_into("<H", out, 26 + 2 * r.randrange(2), r.randrange(65536))
    else:
        struct.pack_into("<I", out, 21, r.randrange(2**32))
    if r.random() < 0.2:  # RIFF size
        struct.pack_into("<I", out, 4, r.randrange(2**32))
    return bytes(out)


REWRITERS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "image/png": _png_rewrite,
    "image/jpeg": _jpeg_rewrite,
    "image/webp": _webp_rewrite,
}


def mutate(data: bytes, media: str, r: random.Random, seeds: list[tuple[str, bytes]]) -> bytes:
    ops = r.randrange(1, 4)
    b = bytearray(data)
    for _ in range(ops):
        op = r.randrange(9)
        n = len(b)
        if op == 0 and n:  # flip bits
            for _ in range(r.randrange(1, 9)):
                b[r.randrange(n)] ^= 1 << r.randrange(8)
        elif op == 1 and n:  # interesting byte values
            for _ in range(r.randrange(1, 5)):
                b[r.randrange(n)] = r.choice([0, 1, 0x7F, 0x80, 0xFF, 0xFE, r.randrange(256)])
        elif op == 2 and n > 1:  # truncate
            del b[r.randrange(1, n) :]
        elif op == 3 and n:  # delete a range
            i = r.randrange(n)
            del b[i : i + r.randrange(1, 256)]
        elif op == 4 and n:  # repeat a range
            i = r.randrange(n)
            chunk = b[i : i + r.randrange(1, 512)]
            b[i:i] = chunk * r.randrange(1, 8)
        elif op == 5 and n:  # insert random bytes
            i = r.randrange(n)
            b[i:i] = r.randbytes(r.randrange(1, 64))
        elif op == 6:  # splice with another seed
            other = r.choice(seeds)[1]
            i, j = r.randrange(max(1, len(b))), r.randrange(len(other))
            b = b[:i] + bytearray(other[j:])
        else:  # header fields, checksums fixed up
            b = bytearray(REWRITERS[media](bytes(b), r))
    return bytes(b)


# --------------------------------------------------------------------------- requests


@dataclass
class Case:
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


_QUERY_VALUES = [
    "0",
    "1",
    "0.5",
    "-1",
    "2",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "abc",
    "",
    "%00",
    "０.５",
    "1" * 400,
    "0x10",
]


def _query(r: random.Random) -> str:
    params: list[tuple[str, str]] = []
    if r.random() < 0.7:  # most cases exercise the image path with the defaults
        return ""
    for name in r.sample(["conf", "iou", "max_det", "classes", "x"], r.randrange(0, 4)):
        if name == "classes":
            value = r.choice(
                ["0", "circle", "0,1,2", "-1", "99999999999999999999", "circle,,", "\u00e9", ",".join(["0"] * 300)]
            )
        elif name == "max_det":
            value = r.choice(["1", "0", "-5", "1000", "1001", "10" * 20, "3.5"])
        else:
            value = r.choice(_QUERY_VALUES)
        params.append((name, value))
    return ("?" + urllib.parse.urlencode(params)) if params else ""


def _multipart(parts: list[tuple[str, bytes]], r: random.Random) -> tuple[bytes, str]:
    boundary = "fz" + r.randbytes(8).hex()
    out = io.BytesIO()
    for media, data in parts:
        name = r.choice(["image", "images", "file", "", "a" * 300])
        filename = r.choice(['; filename="x.jpg"', "", '; filename=""', '; filename="\u00e9.png"'])
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\nContent-Type: {media}\r\n\r\n'.encode()
        )
        out.write(data + b"\r\n")
    if r.random() > 0.1:
        out.write(f"--{boundary}--\r\n".encode())
    body = out.getvalue()
    if r.random() < 0.1:  # a mangled body or boundary
        body = mutate(body, "image/jpeg", r, [("image/jpeg", body)]) if body else body
    ctype = f"multipart/form-data; boundary={boundary if r.random() > 0.05 else 'wrong'}"
    return body, ctype


def make_case(r: random.Random, seeds: list[tuple[str, bytes]]) -> Case:
    media, data = r.choice(seeds)
    if r.random() < 0.85:
        data = mutate(data, media, r, seeds)
    kind = r.random()
    if kind < 0.7:
        ctype = r.choices(
            [media, "application/octet-stream", "image/gif", "text/plain", "", "image/jpeg; charset=x"],
            [70, 10, 5, 5, 5, 5],
        )[0]
        headers = {"content-type": ctype} if ctype else {}
        return Case("POST", "/v1/detect" + _query(r), data, headers)
    parts = [(media, data)] + [(m, mutate(d, m, r, seeds)) for m, d in r.sample(seeds, r.randrange(0, 3))]
    body, ctype = _multipart(parts, r)
    path = r.choice(["/v1/detect", "/v1/detect/batch"]) + _query(r)
    return Case("POST", path, body, {"content-type": ctype})


# --------------------------------------------------------------------------- running


@dataclass
class Report:
    count: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    failures: list[dict] = field(default_factory=list)
    hangs: int = 0
    resets: int = 0
    seconds: float = 0.0
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    rss_peak_mb: float = 0.0
    memory_limit: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures and not self.hangs and not self.resets

    def as_dict(self) -> dict:
        return {
            "count": self.count,
            "seconds": round(self.seconds, 1),
            "statuses": dict(sorted(self.statuses.items())),
            "hangs": self.hangs,
            "resets": self.resets,
            "failures": self.failures[:20],
            "ok": self.ok,
            "rss_mb": {"before": self.rss_before_mb, "after": self.rss_after_mb, "peak": self.rss_peak_mb},
            "memory_limit": self.memory_limit,
        }


def _acceptable(status: int, headers: http.client.HTTPMessage) -> bool:
    if status < 500:
        return True
    return status in (503, 504) and headers.get("retry-after") is not None


def run_cases(url: str, count: int, seed: int, workers: int = 4, timeout_s: float = 30.0) -> Report:
    """Send `count` fuzzed requests from `workers` clients (yolo_tools.clients), each on its own
    keep-alive connection; case i is the same for a seed whichever client sends it."""
    target = urllib.parse.urlsplit(url)
    seeds = make_seeds(np.random.default_rng(seed))
    report = Report()
    lock = threading.Lock()
    conns: dict[int, http.client.HTTPConnection] = {}

    def send(client: int, i: int) -> None:
        conn = conns.get(client) or conns.setdefault(
            client, http.client.HTTPConnection(target.hostname, target.port, timeout=timeout_s)
        )
        case = make_case(random.Random(seed * 1_000_003 + i), seeds)
        try:
            conn.request(case.method, case.path, body=case.body, headers=case.headers)
            resp = conn.getresponse()
            resp.read()
            status, headers = resp.status, resp.headers
            if resp.will_close:
                conn.close()
        except TimeoutError:
            with lock:
                report.hangs += 1
                report.failures.append({"case": i, "error": "timeout"})
            conn.close()
            return
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            with lock:
                report.resets += 1
                report.failures.append({"case": i, "error": repr(exc)})
            conn.close()
            return
        with lock:
            report.count += 1
            report.statuses[status] += 1
            if not _acceptable(status, headers):
                report.failures.append({"case": i, "status": status, "path": case.path})

    start = time.monotonic()
    try:
        Clients(send, workers, max_requests=count).run(limit_s=timeout_s * count)  # each request is bounded
    finally:
        for conn in conns.values():
            conn.close()
    report.seconds = time.monotonic() - start
    return report


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return round(fields.get("VmRSS", 0.0), 1), round(fields.get("VmHWM", 0.0), 1)


class MemoryCage:
    """A memory limit for one child process: a cgroup (v2 or v1 memory) when one is writable,
    else RLIMIT_AS. `launcher()` is a command prefix that puts the child in it before exec."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.cgroup: Path | None = None
        name = f"yolo-fuzz-{os.getpid()}"
        for root, knob in (
            (Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes"),
            (Path("/sys/fs/cgroup"), "memory.max"),
        ):
            try:
                if not (root / knob).exists() and not (root / "cgroup.controllers").exists():
                    continue
                path = root / name
                path.mkdir(exist_ok=True)
                (path / knob).write_text(str(limit_bytes))
                self.cgroup = path
                self.kind = f"cgroup {path} ({limit_bytes >> 20} MiB)"
                break
            except OSError:
                continue
        if self.cgroup is None:
            self.kind = f"RLIMIT_AS {limit_bytes >> 20} MiB"

    def launcher(self) -> list[str]:
        if self.cgroup is not None:  # the shell joins the cgroup, then becomes the command
            return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.cgroup / "cgroup.procs")]
        return ["prlimit", f"--as={self.limit}", "--"]

    def close(self) -> None:
        if self.cgroup is not None:
            for _ in range(50):
                try:
                    self.cgroup.rmdir()
                    return
                except OSError:
                    time.sleep(0.1)


def fuzz_gateway(triton_target: str, count: int, seed: int, memory_mb: int, workers: int, log_dir: Path) -> Report:
    """A gateway process in a memory cage in front of `triton_target`, fuzzed, then stopped."""
    from .local_triton import free_port  # noqa: PLC0415
    from .stack import GatewayProcess  # noqa: PLC0415

    cage = MemoryCage(memory_mb << 20)
    env = {
        "YOLO_GATEWAY_TRITON_URL": triton_target,
        "YOLO_GATEWAY_MODEL_NAME": "yolo",
        "YOLO_GATEWAY_LOG_LEVEL": "warning",
    }
    try:
        with GatewayProcess(free_port(), env, log_path=log_dir / "fuzz-gateway.log", launcher=cage.launcher()) as gw:
            pid = gw.process.pid  # type: ignore[union-attr]  # a started process always has one
            run_cases(gw.url, min(50, count), seed + 1, workers)  # warm-up: imports, arenas, first inferences
            before, _ = rss_mb(pid)
            report = run_cases(gw.url, count, seed, workers)
            report.rss_before_mb, report.memory_limit = before, cage.kind
            if gw.process is None or gw.process.poll() is not None:
                report.failures.append(
                    {
                        "error": f"the gateway died (exit {gw.process.returncode if gw.process else '?'}); see {gw.log_path}"
                    }
                )
            else:
                report.rss_after_mb, report.rss_peak_mb = rss_mb(pid)
        return report
    finally:
        cage.close()


def fuzz_local(count: int, seed: int, memory_mb: int, workers: int, log_dir: Path) -> Report:
    """A real Triton on the bundled model, and a caged gateway in front of it."""
    from .local_triton import LocalTriton, TritonPorts  # noqa: PLC0415
    from .stack import DEFAULT_REPOSITORY  # noqa: PLC0415

    with LocalTriton(DEFAULT_REPOSITORY, TritonPorts.free(), log_path=log_dir / "fuzz-triton.log") as triton:
        return fuzz_gateway(triton.grpc_target, count, seed, memory_mb, workers, log_dir)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--url", help="fuzz a running gateway instead of starting one")
    ap.add_argument("--memory-mb", type=int, default=1536, help="the gateway's memory cage")
    ap.add_argument("--report", default=str(REPO_ROOT / ".cache" / "fuzz" / "report.json"))
    args = ap.parse_args(argv)
    out = Path(args.report)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.url:
        report = run_cases(args.url, args.count, args.seed, args.workers)
    else:
        report = fuzz_local(args.count, args.seed, args.memory_mb, args.workers, out.parent)
    result = report.as_dict()
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"{report.count} inputs in {report.seconds:.0f}s; {'OK' if report.ok else 'FAILED'}; report: {out}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
