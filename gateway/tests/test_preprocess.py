"""Pure preprocessing: format allowlist, headers, bombs, EXIF orientation, DCT-scaled decode, letterbox."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from yolo_gateway.errors import InvalidImage, UnsupportedMediaType
from yolo_gateway.preprocess import (
    apply_orientation,
    check_format,
    dct_scaled_size,
    decode,
    letterbox,
    letterbox_geometry,
    prepare_image,
    read_header,
    sniff,
)
from yolo_tools.synthetic import encode, make_scene


def _pil_bytes(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def scene():
    return make_scene(np.random.default_rng(0), 640, 480)


def test_sniff_knows_allowed_and_refused_formats(scene):
    assert sniff(encode(scene, ".jpg")) == "jpeg"
    assert sniff(encode(scene, ".png")) == "png"
    assert sniff(encode(scene, ".webp")) == "webp"
    assert sniff(b"GIF89a" + b"\0" * 10) == "gif"
    assert sniff(b"BM" + b"\0" * 10) == "bmp"
    assert sniff(b"hello world") is None


@pytest.mark.parametrize(
    "declared", ["image/jpeg", "image/png", "image/webp", "application/octet-stream", None, "image/jpeg; q=1"]
)
def test_check_format_trusts_the_bytes_for_allowed_types(scene, declared):
    assert check_format(encode(scene, ".png"), declared) == "png"


@pytest.mark.parametrize("declared", ["text/plain", "image/gif", "application/json", "image/tiff"])
def test_check_format_refuses_other_media_types(scene, declared):
    with pytest.raises(UnsupportedMediaType):
        check_format(encode(scene), declared)


def test_check_format_refuses_disallowed_image_bytes():
    gif = _pil_bytes(Image.new("RGB", (8, 8)), "GIF")
    with pytest.raises(UnsupportedMediaType, match="gif"):
        check_format(gif, "image/jpeg")


@pytest.mark.parametrize("data", [b"", b"\x00" * 100, b"not an image at all"])
def test_check_format_rejects_empty_and_garbage(data):
    with pytest.raises(InvalidImage):
        check_format(data, "image/jpeg")


def test_header_reads_size_without_decoding(scene):
    for ext, fmt in ((".jpg", "jpeg"), (".png", "png"), (".webp", "webp")):
        h = read_header(encode(scene, ext), fmt, 10**8)
        assert (h.width, h.height, h.orientation) == (640, 480, 1)


def test_decompression_bomb_is_caught_from_the_header():
    # A 20000x20000 PNG compresses to a few hundred KB: refused before any pixel is decoded.
    bomb = _pil_bytes(Image.new("L", (20000, 20000)), "PNG", optimize=False)
    assert len(bomb) < 2_000_000
    with pytest.raises(InvalidImage, match="pixel"):
        read_header(bomb, "png", 40_000_000)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation):
    rng = np.random.default_rng(orientation)
    base = Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _pil_bytes(base, "PNG", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    header = read_header(data, "png", 10**8)
    got = decode(data, header)
    assert (header.width, header.height) == (expected.shape[1], expected.shape[0])
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(apply_orientation(np.asarray(base), orientation), expected)


def test_jpeg_exif_rotation_gives_upright_size_and_content():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :100] = (255, 0, 0)  # left half red (RGB)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90° clockwise
    data = _pil_bytes(Image.fromarray(img), "JPEG", exif=exif, quality=95)
    header = read_header(data, "jpeg", 10**8)
    assert (header.width, header.height) == (100, 200)
    out = decode(data, header)
    assert out.shape == (200, 100, 3)
    assert out[:90, 50, 0].mean() > 200 and out[110:, 50, 0].mean() < 60  # red now on top


def test_jpeg_is_dct_scaled_to_just_cover_the_target():
    big = make_scene(np.random.default_rng(1), 4000, 3000).image
    data = encode(big)
    header = read_header(data, "jpeg", 10**8)
    geo, new_w, new_h = letterbox_geometry(header.width, header.height, 640, 640)
    out = decode(data, header, new_w, new_h)
    assert out.shape[1] >= new_w and out.shape[0] >= new_h
    assert out.shape[1] < 2 * new_w + 8  # reduced decode, not a full 4000x3000 one
    assert geo.scale == pytest.approx(640 / 4000)


@pytest.mark.parametrize(
    ("size", "target", "decoded"),
    [
        ((1920, 1080), (640, 360), (960, 540)),  # 1/2, not libjpeg's slower 3/8 (720x405)
        ((1920, 1080), (320, 180), (480, 270)),
        ((4000, 3000), (640, 480), (1000, 750)),
        ((4000, 3000), (320, 240), (500, 375)),
        ((1921, 1081), (320, 180), (481, 271)),  # libjpeg rounds a scaled size up
        ((640, 480), (640, 480), (640, 480)),
        ((300, 200), (640, 427), (300, 200)),  # never upscaled
        ((8000, 8000), (16, 16), (1000, 1000)),  # 1/8 at most
    ],
)
def test_the_dct_scale_is_the_smallest_power_of_two_that_covers(size, target, decoded):
    assert dct_scaled_size(*size, *target) == decoded


def test_a_1080p_jpeg_for_a_640_input_decodes_at_half_size_upright():
    scene = make_scene(np.random.default_rng(3), 1920, 1080)
    data = encode(scene)
    header = read_header(data, "jpeg", 10**8)
    _, new_w, new_h = letterbox_geometry(header.width, header.height, 640, 640)
    assert decode(data, header, new_w, new_h).shape == (540, 960, 3)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 1920x1080, shown 1080x1920
    rotated = _pil_bytes(Image.fromarray(scene.image[..., ::-1]), "JPEG", exif=exif, quality=90)
    header = read_header(rotated, "jpeg", 10**8)
    _, new_w, new_h = letterbox_geometry(header.width, header.height, 640, 640)
    assert (new_w, new_h) == (360, 640)
    assert decode(rotated, header, new_w, new_h).shape == (960, 540, 3)


def test_truncated_and_corrupt_images_are_422(scene):
    for ext in (".jpg", ".png", ".webp"):
        data = encode(scene, ext)
        with pytest.raises(InvalidImage):
            prepare_image(
                data[: len(data) // 2], None, in_w=320, in_h=320, layout="NHWC", dtype="UINT8", max_pixels=10**8
            )
    jpeg = bytearray(encode(scene))
    jpeg[200:400] = b"\xff" * 200
    with pytest.raises(InvalidImage):
        prepare_image(bytes(jpeg), None, in_w=320, in_h=320, layout="NHWC", dtype="UINT8", max_pixels=10**8)


def test_letterbox_geometry_and_inverse_mapping():
    geo, new_w, new_h = letterbox_geometry(1920, 1080, 640, 640)
    assert (new_w, new_h) == (640, 360)
    assert (geo.pad_x, geo.pad_y) == (0, 140)
    boxes_in = np.array([[0, 140, 640, 500], [320, 320, 330, 330]], np.float32)
    back = geo.to_original(boxes_in)
    np.testing.assert_allclose(back[0], [0, 0, 1920, 1080], atol=1e-3)
    np.testing.assert_allclose(back[1], [960, 540, 990, 570], atol=1e-3)
    # boxes in the padding are clipped into the image
    clipped = geo.to_original(np.array([[-10, 0, 700, 640]], np.float32))
    np.testing.assert_allclose(clipped[0], [0, 0, 1920, 1080])


def test_letterbox_pads_with_114_and_centres():
    img = np.full((100, 200, 3), 7, np.uint8)
    geo, new_w, new_h = letterbox_geometry(200, 100, 64, 64)
    out = letterbox(img, geo, new_w, new_h, 64, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert (out[: geo.pad_y] == 114).all() and (out[geo.pad_y + new_h :] == 114).all()
    assert (out[geo.pad_y : geo.pad_y + new_h] == 7).all()


@pytest.mark.parametrize(
    ("layout", "dtype", "shape", "np_dtype"),
    [("NHWC", "UINT8", (320, 320, 3), np.uint8), ("NCHW", "FP32", (3, 320, 320), np.float32)],
)
def test_prepare_image_matches_model_layout(scene, layout, dtype, shape, np_dtype):
    p = prepare_image(
        encode(scene, ".png"), "image/png", in_w=320, in_h=320, layout=layout, dtype=dtype, max_pixels=10**8
    )
    assert p.tensor.shape == shape and p.tensor.dtype == np_dtype
    if dtype == "FP32":
        assert p.tensor.min() >= 0.0 and p.tensor.max() <= 1.0
    # RGB order: compare with an independent OpenCV letterbox of the same image
    rgb = cv2.cvtColor(scene.image, cv2.COLOR_BGR2RGB)
    ref = cv2.resize(rgb, (320, 240), interpolation=cv2.INTER_LINEAR)
    got = p.tensor if layout == "NHWC" else np.round(p.tensor.transpose(1, 2, 0) * 255).astype(np.uint8)
    assert np.abs(got[40:280].astype(int) - ref.astype(int)).mean() < 2


def test_boxes_map_back_with_each_axis_own_factor():
    """An odd size: 1001x333 into 320 resizes to 320x106, so y scales by 106/333, not 320/1001.
    A box over the whole resized image maps back to the whole original image exactly."""
    geo, new_w, new_h = letterbox_geometry(1001, 333, 320, 320)
    assert (new_w, new_h) == (320, 106)
    assert geo.scale_y != pytest.approx(geo.scale_x, abs=1e-6)
    whole = np.array([[geo.pad_x, geo.pad_y, geo.pad_x + new_w, geo.pad_y + new_h]], np.float32)
    np.testing.assert_allclose(geo.to_original(whole)[0], [0, 0, 1001, 333], atol=1e-3)
    single_scale = (whole[0, 3] - geo.pad_y) / (320 / 1001)  # the old mapping, one factor for both: ~1.4 px off
    assert abs(single_scale - 333) > 1


def _ultralytics_letterbox(data: bytes, in_w: int, in_h: int) -> np.ndarray:
    """Ultralytics' own path, as in ultralytics/data/augment.py LetterBox (auto=False, center=True)
    after cv2.imread: a full OpenCV decode (EXIF applied), INTER_LINEAR, pads round(d ± 0.1), RGB."""
    im = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    h, w = im.shape[:2]
    r = min(in_h / h, in_w / w)
    new_unpad = int(round(w * r)), int(round(h * r))
    dw, dh = (in_w - new_unpad[0]) / 2, (in_h - new_unpad[1]) / 2
    if (w, h) != new_unpad:
        im = cv2.resize(im, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return cv2.cvtColor(im, cv2.COLOR_BGR2RGB)


def _ultralytics_scale_boxes(boxes: np.ndarray, in_w: int, in_h: int, w: int, h: int) -> np.ndarray:
    """ultralytics/utils/ops.py scale_boxes (padding=True), then clip."""
    gain = min(in_h / h, in_w / w)
    pad_x, pad_y = round((in_w - w * gain) / 2 - 0.1), round((in_h - h * gain) / 2 - 0.1)
    out = boxes.astype(np.float64).copy()
    out[:, [0, 2]] = np.clip((out[:, [0, 2]] - pad_x) / gain, 0, w)
    out[:, [1, 3]] = np.clip((out[:, [1, 3]] - pad_y) / gain, 0, h)
    return out


@pytest.mark.parametrize(
    ("w", "h", "fmt"),
    [(1920, 1080, ".jpg"), (641, 479, ".jpg"), (333, 777, ".png"), (1001, 1003, ".jpg"), (200, 120, ".png")],
)
def test_parity_mode_is_ultralytics_preprocessing_exactly(w, h, fmt):
    data = encode(make_scene(np.random.default_rng(w + h), w, h), fmt)
    ours = prepare_image(data, None, in_w=320, in_h=320, layout="NHWC", dtype="UINT8", max_pixels=10**8, parity=True)
    assert np.array_equal(ours.tensor, _ultralytics_letterbox(data, 320, 320)), "byte-identical input tensor"
    boxes = np.array([[0, 0, 320, 320], [100.3, 80.7, 200.1, 250.9], [160, 160, 161, 161]], np.float32)
    assert np.allclose(ours.letterbox.to_original(boxes), _ultralytics_scale_boxes(boxes, 320, 320, w, h), atol=1e-3)
    fast = prepare_image(data, None, in_w=320, in_h=320, layout="NHWC", dtype="UINT8", max_pixels=10**8)
    diff = np.abs(fast.tensor.astype(np.int16) - ours.tensor.astype(np.int16))
    assert diff.mean() < 8, "the fast path is close to it (it decodes DCT-scaled and shrinks with INTER_AREA)"


def test_parity_mode_applies_exif_orientation_as_opencv_does():
    img = make_scene(np.random.default_rng(9), 480, 300).image[:, :, ::-1].copy()  # BGR -> RGB for Pillow
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _pil_bytes(Image.fromarray(img), "JPEG", exif=exif, quality=92)
    ours = prepare_image(
        data, "image/jpeg", in_w=320, in_h=320, layout="NHWC", dtype="UINT8", max_pixels=10**8, parity=True
    )
    assert (ours.letterbox.width, ours.letterbox.height) == (300, 480)
    assert np.array_equal(ours.tensor, _ultralytics_letterbox(data, 320, 320))
