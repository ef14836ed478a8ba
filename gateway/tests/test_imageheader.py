"""Header parsing from the bytes alone: sizes and orientation agree with Pillow, hostile headers
are refused without decoding, and no mutated input raises anything but a gateway error."""

from __future__ import annotations

import contextlib
import io
import random
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from yolo_gateway import imageheader
from yolo_gateway.errors import GatewayError, InvalidImage
from yolo_gateway.preprocess import prepare_image, read_header
from yolo_tools import fuzz


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png(width: int, height: int, bits: int = 8, colour: int = 2, extra: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + extra + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    )


RGB = Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8))
VARIANTS = {
    "jpeg-baseline": ("jpeg", _save(RGB, "JPEG")),
    "jpeg-progressive": ("jpeg", _save(RGB, "JPEG", progressive=True)),
    "jpeg-grey": ("jpeg", _save(RGB.convert("L"), "JPEG")),
    "jpeg-cmyk": ("jpeg", _save(RGB.convert("CMYK"), "JPEG")),
    "png-rgb": ("png", _save(RGB, "PNG")),
    "png-rgba": ("png", _save(RGB.convert("RGBA"), "PNG")),
    "png-grey-1bit": ("png", _save(RGB.convert("1"), "PNG")),
    "png-palette-4bit": ("png", _save(RGB.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG", bits=4)),
    "png-grey-16bit": ("png", _save(RGB.convert("I;16"), "PNG")),
    "png-grey-alpha": ("png", _save(RGB.convert("LA"), "PNG")),
    "webp-lossy": ("webp", _save(RGB, "WEBP")),
    "webp-lossless": ("webp", _save(RGB, "WEBP", lossless=True)),
    "webp-alpha": ("webp", _save(RGB.convert("RGBA"), "WEBP")),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_sizes_match_pillow_for_every_encoder_feature(name):
    fmt, data = VARIANTS[name]
    info = imageheader.parse(data, fmt)
    assert (info.width, info.height) == Image.open(io.BytesIO(data)).size == (53, 37)
    assert info.progressive == (name == "jpeg-progressive")
    assert info.frames == 1


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_matches_pillow_in_every_format(fmt, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _save(RGB, fmt, exif=exif.tobytes())
    assert (
        imageheader.parse(data, fmt.lower()).orientation
        == Image.open(io.BytesIO(data)).getexif()[0x0112]
        == orientation
    )


def test_a_png_claiming_four_billion_pixels_is_refused_without_allocating():
    """A few hundred bytes that claim 2^31-1 x 2^31-1: 422 from the header, no decoder runs."""
    bomb = _png(2**31 - 1, 2**31 - 1)
    assert len(bomb) < 200
    tracemalloc.start()
    with pytest.raises(InvalidImage, match="pixel"):
        prepare_image(bomb, "image/png", in_w=320, in_h=320, layout="NHWC", dtype="UINT8", max_pixels=40_000_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000


@pytest.mark.parametrize("width,height", [(2**31, 1), (1, 2**32 - 1), (0, 10), (10, 0)])
def test_png_sizes_outside_the_spec_are_422_not_500(width, height):
    with pytest.raises(InvalidImage, match="size"):
        read_header(_png(width, height), "png", 40_000_000)


@pytest.mark.parametrize("bits,colour", [(3, 2), (16, 3), (8, 5), (32, 6)])
def test_png_bit_depth_and_colour_type_are_checked(bits, colour):
    with pytest.raises(InvalidImage, match="bit depth"):
        read_header(_png(16, 16, bits, colour), "png", 40_000_000)


def test_a_png_chunk_whose_length_runs_past_the_data_is_refused():
    """OpenCV allocates a chunk's declared length before reading it: 2 GB from a 100-byte file."""
    lying = _png(16, 16)[:33] + struct.pack(">I", 2**31 - 1) + b"tEXt" + b"x" * 40
    with pytest.raises(InvalidImage, match="past the end"):
        read_header(lying, "png", 40_000_000)


def test_pillow_made_bomb_is_refused_from_ihdr_alone():
    bomb = _save(Image.new("L", (20000, 20000)), "PNG")  # 400 megapixels in a few hundred KB
    tracemalloc.start()
    with pytest.raises(InvalidImage, match="pixel"):
        read_header(bomb, "png", 40_000_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000


def test_jpeg_frame_header_values_are_checked():
    data = bytearray(VARIANTS["jpeg-baseline"][1])
    sof = data.index(b"\xff\xc0")
    for offset, value, match in ((5, 0, "width or height"), (9, 2, "components"), (4, 9, "precision")):
        bad = bytearray(data)
        if offset == 5:
            struct.pack_into(">H", bad, sof + 7, value)  # width 0
        else:
            bad[sof + offset] = value
        with pytest.raises(InvalidImage, match=match):
            read_header(bytes(bad), "jpeg", 40_000_000)


def test_a_progressive_jpeg_with_too_many_scans_is_refused():
    data = VARIANTS["jpeg-progressive"][1]
    scans = imageheader.parse(data, "jpeg").scans
    assert scans > 1
    read_header(data, "jpeg", 40_000_000, max_scans=scans)
    with pytest.raises(InvalidImage, match="scans"):
        read_header(data, "jpeg", 40_000_000, max_scans=scans - 1)


def test_animated_webp_is_a_clear_422():
    frames = [RGB, RGB.rotate(90)]
    data = _save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50)
    with pytest.raises(InvalidImage, match="animated"):
        read_header(data, "webp", 40_000_000)


def test_truncated_headers_are_header_errors():
    for fmt, data in VARIANTS.values():
        for cut in (3, 11, 20, 29, 40):
            with contextlib.suppress(imageheader.HeaderError):
                imageheader.parse(data[:cut], fmt)


def test_mutated_inputs_raise_only_gateway_errors():
    """The fuzzer's mutations, in process: every outcome is a tensor or a typed 4xx error."""
    seeds = fuzz.make_seeds(np.random.default_rng(3))
    r = random.Random(3)
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(3000):
        media, data = r.choice(seeds)
        data = fuzz.mutate(data, media, r, seeds)
        try:
            prepare_image(data, media, in_w=320, in_h=320, layout="NHWC", dtype="UINT8", max_pixels=40_000_000)
            outcomes["ok"] += 1
        except GatewayError as exc:
            assert 400 <= exc.status < 500, exc
            outcomes["refused"] += 1
    assert outcomes["ok"] > 100 and outcomes["refused"] > 100, outcomes


def test_the_vectorised_scan_count_equals_bytes_count():
    rng = np.random.default_rng(3)
    for _ in range(200):
        data = bytes(rng.choice([0x00, 0xDA, 0xFF, 0x12], size=int(rng.integers(0, 64))).astype(np.uint8))
        start = int(rng.integers(0, 70))
        assert imageheader.count_pair(data, start, 0xFF, 0xDA) == data.count(b"\xff\xda", start), (data, start)
