"""Image decoding and letterboxing: pure functions of bytes and numpy arrays.

The pipeline reads the size and the EXIF orientation from the header first,
rejects decompression bombs before decoding, then decodes at reduced size where
the format allows (libjpeg DCT scaling through simplejpeg), and letterboxes to
the model's input size. Decoders are allowlisted: JPEG, PNG and WebP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg

from . import imageheader
from .cache import fingerprint
from .errors import GatewayError, InvalidImage, UnsupportedMediaType

cv2.setNumThreads(1)  # parallelism comes from the gateway's thread pool

FORMATS = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
MEDIA_TYPES = {v: k for k, v in FORMATS.items()} | {"image/jpg": "jpeg"}
GENERIC_TYPES = {"", "application/octet-stream"}
PAD_VALUE = 114

_SIGNATURES: tuple[tuple[str, bytes, int], ...] = (
    ("jpeg", b"\xff\xd8\xff", 0),
    ("png", b"\x89PNG\r\n\x1a\n", 0),
    ("gif", b"GIF8", 0),
    ("bmp", b"BM", 0),
    ("tiff", b"II*\x00", 0),
    ("tiff", b"MM\x00*", 0),
)


def sniff(data: bytes) -> str | None:
    """The image format named by the magic bytes, allowlisted or not."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:12] in (b"ftypavif", b"ftypheic", b"ftypmif1"):
        return "heif"
    for name, magic, offset in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return name
    return None


def check_format(data: bytes, declared: str | None) -> str:
    """Return the allowlisted format of `data`, or raise 415 / 422.

    `declared` is the part's or body's media type; a generic type
    (application/octet-stream, none) defers to the bytes.
    """
    media = (declared or "").split(";")[0].strip().lower()
    if media not in MEDIA_TYPES and media not in GENERIC_TYPES:
        raise UnsupportedMediaType(f"unsupported content type {media!r}; send image/jpeg, image/png or image/webp")
    if not data:
        raise InvalidImage("empty image: the body has zero bytes")
    fmt = sniff(data)
    if fmt is None:
        raise InvalidImage("corrupt image: the bytes are not a JPEG, PNG or WebP image")
    if fmt not in FORMATS:
        raise UnsupportedMediaType(f"unsupported image format {fmt!r}; send JPEG, PNG or WebP")
    return fmt


@dataclass(frozen=True, slots=True)
class ImageHeader:
    format: str
    width: int  # as displayed, after EXIF orientation
    height: int
    orientation: int = 1

    @property
    def stored_size(self) -> tuple[int, int]:
        """(width, height) as stored, before orientation."""
        return (self.height, self.width) if self.orientation in (5, 6, 7, 8) else (self.width, self.height)


def read_header(data: bytes, fmt: str, max_pixels: int, max_scans: int = 256) -> ImageHeader:
    """Size and orientation from the header bytes alone (nothing is decoded or decompressed):
    422 for a bomb, a broken header, or an image the decoders would refuse."""
    try:
        info = imageheader.parse(data, fmt)
    except imageheader.HeaderError as exc:
        raise InvalidImage(f"corrupt {fmt.upper()} header: {exc}") from exc
    w, h = info.width, info.height
    if w <= 0 or h <= 0:
        raise InvalidImage("image has zero width or height")
    if w * h > max_pixels:
        raise InvalidImage(
            f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels} (decompression bomb guard)"
        )
    if info.scans > max_scans:
        raise InvalidImage(f"progressive JPEG with {info.scans} scans, over the limit of {max_scans}")
    if fmt == "webp" and info.frames > 1:
        raise InvalidImage("animated WebP is not supported: send one frame")
    orientation = info.orientation
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return ImageHeader(fmt, w, h, orientation)


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip a stored image so it displays upright (EXIF orientation 1..8)."""
    if orientation == 2:
        return img[:, ::-1]
    if orientation == 3:
        return img[::-1, ::-1]
    if orientation == 4:
        return img[::-1]
    if orientation == 5:
        return img.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(img, -1)
    if orientation == 7:
        return img.transpose(1, 0, 2)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(img, 1)
    return img


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How an original image maps into the model input: x_in = x * scale_x + pad_x (and y alike).

    The resize rounds each side to whole pixels, so the two axes scale by slightly different
    factors (new_w / width, new_h / height); boxes map back with each axis's own factor."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    width: int  # original (oriented) image size
    height: int

    @property
    def scale(self) -> float:
        """The smaller of the two factors."""
        return min(self.scale_x, self.scale_y)

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map xyxy boxes from model-input pixels back to original pixels, clipped."""
        out = np.empty((len(boxes), 4), np.float32)
        out[:, 0::2] = np.clip((boxes[:, 0::2] - self.pad_x) / self.scale_x, 0, self.width)
        out[:, 1::2] = np.clip((boxes[:, 1::2] - self.pad_y) / self.scale_y, 0, self.height)
        return out


def letterbox_geometry(width: int, height: int, in_w: int, in_h: int) -> tuple[Letterbox, int, int]:
    """The letterbox for an image, and the resized (unpadded) width and height."""
    scale = min(in_w / width, in_h / height)
    new_w = max(1, min(in_w, round(width * scale)))
    new_h = max(1, min(in_h, round(height * scale)))
    geometry = Letterbox(new_w / width, new_h / height, (in_w - new_w) // 2, (in_h - new_h) // 2, width, height)
    return geometry, new_w, new_h


def parity_geometry(width: int, height: int, in_w: int, in_h: int) -> tuple[Letterbox, int, int]:
    """Ultralytics' LetterBox and scale_boxes: one gain for both axes, pads round(d/2 - 0.1)."""
    gain = min(in_w / width, in_h / height)
    new_w, new_h = round(width * gain), round(height * gain)
    pad_x, pad_y = round((in_w - new_w) / 2 - 0.1), round((in_h - new_h) / 2 - 0.1)
    return Letterbox(gain, gain, pad_x, pad_y, width, height), new_w, new_h


def dct_scaled_size(width: int, height: int, min_width: int, min_height: int) -> tuple[int, int]:
    """The size libjpeg decodes a `width` x `height` JPEG to when it must still cover
    `min_width` x `min_height`: the smallest of the 1/2, 1/4 and 1/8 scales that does.

    libjpeg also offers 3/8, 5/8, 3/4 and 7/8, but their IDCTs have no SIMD code: a 1080p
    JPEG for a 640 input decodes in 7.0 ms at 3/8 (720x405) and 6.2 ms at 1/2 (960x540), and
    the larger image costs less to shrink than the difference (decode and letterbox 7.6
    against 6.8 ms, `make bench ONLY=micro`)."""
    factor = 1
    while factor < 8 and -(-width // (2 * factor)) >= min_width and -(-height // (2 * factor)) >= min_height:
        factor *= 2
    return -(-width // factor), -(-height // factor)


def decode(data: bytes, header: ImageHeader, min_width: int = 0, min_height: int = 0) -> np.ndarray:
    """Decode to RGB uint8, upright. `min_width`/`min_height` (as displayed) allow a
    reduced-size decode: JPEGs are DCT-scaled by libjpeg to the smallest power-of-two scale
    that still covers them (`dct_scaled_size`)."""
    if header.format == "jpeg":
        if header.orientation in (5, 6, 7, 8):
            min_width, min_height = min_height, min_width
        if min_width > 0 or min_height > 0:
            min_width, min_height = dct_scaled_size(*header.stored_size, min_width, min_height)
        try:
            img = simplejpeg.decode_jpeg(
                data, colorspace="RGB", min_width=min_width, min_height=min_height, strict=True
            )
        except ValueError as exc:
            if "CMYK" in str(exc) or "colorspace" in str(exc).lower():
                img = _decode_cv2(data, header)
            else:
                raise InvalidImage(f"corrupt or truncated JPEG: {exc}") from exc
    else:
        img = _decode_cv2(data, header)
    return apply_orientation(img, header.orientation)


def _decode_cv2(data: bytes, header: ImageHeader) -> np.ndarray:
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None:
        raise InvalidImage(f"corrupt or truncated {header.format.upper()}: the decoder could not read it")
    sw, sh = header.stored_size
    if img.shape[1] != sw or img.shape[0] != sh:
        raise InvalidImage(f"corrupt {header.format.upper()}: decoded size differs from the header")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def letterbox(
    img: np.ndarray, geometry: Letterbox, new_w: int, new_h: int, in_w: int, in_h: int, linear: bool = False
) -> np.ndarray:
    """Resize an RGB image into the centre of a padded (in_h, in_w, 3) uint8 canvas
    (INTER_AREA when shrinking more than 2x, unless `linear`: Ultralytics' INTER_LINEAR always)."""
    canvas = np.full((in_h, in_w, 3), PAD_VALUE, np.uint8)
    if img.shape[1] != new_w or img.shape[0] != new_h:
        shrink = img.shape[1] > 2 * new_w and not linear
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    canvas[geometry.pad_y : geometry.pad_y + new_h, geometry.pad_x : geometry.pad_x + new_w] = img
    return canvas


@dataclass(frozen=True, slots=True)
class Prepared:
    tensor: np.ndarray  # one image in the model's layout and dtype, no batch axis
    letterbox: Letterbox
    decode_s: float
    preprocess_s: float
    fingerprint: np.ndarray | None = None  # the inference cache's key (cache.py), when asked for


def prepare_image(
    data: bytes,
    declared_type: str | None,
    *,
    in_w: int,
    in_h: int,
    layout: str,
    dtype: str,
    max_pixels: int,
    max_scans: int = 256,
    parity: bool = False,
    hash_image: bool = False,
) -> Prepared:
    """Bytes → model input tensor (uint8 NHWC or fp32 NCHW in 0..1) and its letterbox.

    `parity`: Ultralytics' own preprocessing, for users who compare with their validation
    numbers: a full decode with OpenCV, INTER_LINEAR, and its letterbox and box mapping (one
    gain for both axes). The default decodes JPEGs DCT-scaled (libjpeg) and shrinks with
    INTER_AREA: 1.2x (1080p) to 2.4x (12 MP) faster to decode, boxes within a few pixels.

    Every failure is a `GatewayError`: whatever a decoder raises on hostile bytes
    (OpenCV's errors, an overflow, an allocation it cannot make) is a 422."""
    t0 = time.perf_counter()
    fmt = check_format(data, declared_type)
    header = read_header(data, fmt, max_pixels, max_scans)
    geometry, new_w, new_h = (parity_geometry if parity else letterbox_geometry)(
        header.width, header.height, in_w, in_h
    )
    try:
        img = (
            apply_orientation(_decode_cv2(data, header), header.orientation)
            if parity
            else decode(data, header, new_w, new_h)
        )
    except GatewayError:
        raise
    except (cv2.error, ValueError, OverflowError, MemoryError, RuntimeError) as exc:
        raise InvalidImage(f"{fmt.upper()} could not be decoded: {type(exc).__name__}") from exc
    t1 = time.perf_counter()
    canvas = letterbox(img, geometry, new_w, new_h, in_w, in_h, linear=parity)
    tensor = canvas.transpose(2, 0, 1) if layout == "NCHW" else canvas
    if dtype == "FP32":
        tensor = tensor.astype(np.float32) * np.float32(1 / 255)
    elif dtype == "FP16":
        tensor = (tensor.astype(np.float32) * np.float32(1 / 255)).astype(np.float16)
    h = fingerprint(canvas) if hash_image else None
    return Prepared(np.ascontiguousarray(tensor), geometry, t1 - t0, time.perf_counter() - t1, h)
