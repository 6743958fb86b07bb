"""MATLAB parity of ddsr.matlab, against MATLAB's own numbers and hand computation.

(a) shared/reference: per-image PSNR computed by MATLAB for the bicubic upscale of
    uint8 RGB LR images (57 rows), to 1e-6 dB; the variants MATLAB does not use
    (no rounding between the passes, columns first, Y upscaled in double) must miss.
(b) The SRCNN-protocol bicubic baseline (SUMMARY.md): Set5 and Set14 mean PSNR at
    x2/x3/x4 to four decimals; this goes through the antialiased float32 downscale.
(c) Hand-computed cases: colour conversion incl. .5 ties, the cubic kernel, sizes,
    rounding, edge mirroring, and imread's conversions of unusual PNGs.
"""

import csv
import functools
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ddsr.matlab import (_cubic, im2single, im2uint8, imread, imresize, modcrop, rgb2y,
                         rgb2ycbcr, shave, ycbcr2rgb)
from ddsr.evaluation.metrics import psnr

# shared/reference holds Set5 (img_001..005) and Set14 (img_001..014) at x2, x3, x4.
REFERENCE_ROWS = [(s, k, f"img_{i:03d}") for s, n in (("Set5", 5), ("Set14", 14))
                  for k in (2, 3, 4) for i in range(1, n + 1)]

# SUMMARY.md, "Checked values of that protocol for bicubic (4 decimals)".
SRCNN_BICUBIC_PSNR = {
    ("Set5", 2): 33.6614, ("Set5", 3): 30.3922, ("Set5", 4): 28.4207,
    ("Set14", 2): 30.2318, ("Set14", 3): 27.5405, ("Set14", 4): 26.0001,
}


# ------------------------------------------------------------- (a) the oracle

@pytest.fixture(scope="module")
def reference(shared_dir):
    folder = shared_dir / "reference"
    with open(folder / "matlab_bicubic_metrics.tsv", newline="") as fh:
        rows = {(r["set"], int(r["scale"]), r["image"]): r for r in csv.DictReader(fh, delimiter="\t")}
    return folder, rows


@functools.lru_cache(maxsize=None)
def _reference_pair(folder, set_name, scale, image):
    base = Path(folder) / "images" / set_name / f"image_SRF_{scale}"
    lr = imread(base / f"{image}_SRF_{scale}_LR.png")
    hr = imread(base / f"{image}_SRF_{scale}_HR.png")
    return lr, hr


def test_reference_table_has_the_57_rows(reference):
    _, rows = reference
    assert sorted(rows) == sorted(REFERENCE_ROWS)
    assert all(r["method"] == "Bicubic" for r in rows.values())


def _row_id(row):
    return f"{row[0]}-x{row[1]}-{row[2]}"


@pytest.mark.parametrize("row", REFERENCE_ROWS, ids=_row_id)
def test_bicubic_upscale_matches_matlab_psnr(reference, row):
    folder, rows = reference
    set_name, scale, image = row
    lr, hr = _reference_pair(str(folder), *row)
    sr = imresize(lr, scale)
    assert sr.dtype == np.uint8 and sr.shape == hr.shape
    value = psnr(rgb2y(hr), rgb2y(sr), crop_border=scale)
    assert abs(value - float(rows[row]["psnr"])) < 1e-6


def _round_to_uint8(x):
    # Independent of ddsr.matlab: MATLAB's uint8() of a double (half away, saturate).
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("row", REFERENCE_ROWS, ids=_row_id)
def test_upscale_variants_that_matlab_does_not_use_miss(reference, row):
    """The 1e-6 dB tolerance above tells the right arithmetic from near misses."""
    folder, rows = reference
    set_name, scale, image = row
    lr, hr = _reference_pair(str(folder), *row)
    expected = float(rows[row]["psnr"])
    hr_y = rgb2y(hr)
    no_middle_rounding = _round_to_uint8(imresize(lr.astype(np.float64), scale))
    columns_first = np.swapaxes(imresize(np.swapaxes(lr, 0, 1), scale), 0, 1)
    y_in_double = _round_to_uint8(imresize(rgb2y(lr).astype(np.float64), scale))
    for variant in (no_middle_rounding, columns_first, y_in_double):
        assert abs(psnr(hr_y, rgb2y(variant), crop_border=scale) - expected) > 1e-5


# ------------------------------------------------- (b) the SRCNN protocol

@pytest.mark.parametrize("set_name, scale", sorted(SRCNN_BICUBIC_PSNR))
def test_srcnn_protocol_bicubic_psnr(shared_dir, set_name, scale):
    values = []
    for path in sorted((shared_dir / "datasets" / set_name).iterdir()):
        hr_y = rgb2y(modcrop(imread(path), scale))
        lr = imresize(im2single(hr_y), 1 / scale)
        assert lr.dtype == np.float32  # MATLAB single: the LR image is never rounded
        sr = im2uint8(imresize(lr, scale))
        values.append(psnr(hr_y, sr, crop_border=scale))
    assert round(float(np.mean(values)), 4) == SRCNN_BICUBIC_PSNR[(set_name, scale)]


# ----------------------------------------------------- (c) colour conversion

def _ycbcr_by_formula(r, g, b):
    """shared/reference/README.md: MATLAB's double-precision form, summed in this order."""
    def rnd(v):
        return int(np.floor(v + 0.5))  # half away from zero (v > 0 here)
    y = (1 / 255) * 65.481 * r + (1 / 255) * 128.553 * g + (1 / 255) * 24.966 * b + 16
    cb = (1 / 255) * -37.797 * r + (1 / 255) * -74.203 * g + (1 / 255) * 112.0 * b + 128
    cr = (1 / 255) * 112.0 * r + (1 / 255) * -93.786 * g + (1 / 255) * -18.214 * b + 128
    return rnd(y), rnd(cb), rnd(cr)


@pytest.mark.parametrize("rgb, ycbcr", [
    # Worked by hand from Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 etc.
    ((0, 0, 0), (16, 128, 128)),
    ((255, 255, 255), (235, 128, 128)),
    ((255, 0, 0), (81, 90, 240)),     # 81.481, 90.203, 240
    ((0, 255, 0), (145, 54, 34)),     # 144.553, 53.797, 34.214
    ((0, 0, 255), (41, 240, 110)),    # 40.966, 240, 109.786
    ((128, 128, 128), (126, 128, 128)),  # 16 + 219 * 128/255 = 125.93
])
def test_rgb2ycbcr_hand_values(rgb, ycbcr):
    out = rgb2ycbcr(np.array([[rgb]], dtype=np.uint8))
    assert out.dtype == np.uint8
    assert tuple(int(v) for v in out[0, 0]) == ycbcr == _ycbcr_by_formula(*rgb)


def test_rgb2ycbcr_exact_half_ties():
    # Y of (0, 204, 68) is exactly 125.5 in exact arithmetic
    # (65481*0 + 128553*204 + 24966*68 = 27922500 = 109.5 * 255000), but MATLAB's
    # double form gives 125.49999999999999, so MATLAB returns 125, not 126.
    assert 128553 * 204 + 24966 * 68 == 109.5 * 255000
    assert _ycbcr_by_formula(0, 204, 68)[0] == 125
    # Y of (6, 34, 182) is 52.5 exactly in double too: half away from zero gives 53
    # (numpy's round-half-even would give 52).
    assert (1 / 255) * 65.481 * 6 + (1 / 255) * 128.553 * 34 + (1 / 255) * 24.966 * 182 + 16 == 52.5
    pixels = np.array([[[0, 204, 68], [6, 34, 182]]], dtype=np.uint8)
    assert rgb2ycbcr(pixels)[0, :, 0].tolist() == [125, 53]


def test_rgb2ycbcr_matches_formula_on_random_pixels():
    rgb = np.random.default_rng(0).integers(0, 256, size=(1, 300, 3), dtype=np.uint8)
    expected = [_ycbcr_by_formula(*map(int, p)) for p in rgb[0]]
    assert rgb2ycbcr(rgb)[0].tolist() == [list(e) for e in expected]


def test_rgb2y_greyscale_passes_through_but_rgb_grey_is_converted():
    # bridge.bmp (single channel) is used as it is; man.bmp (RGB, R=G=B) goes through rgb2ycbcr.
    grey = np.array([[0, 128, 255]], dtype=np.uint8)
    assert np.array_equal(rgb2y(grey), grey)
    rgb_grey = np.repeat(grey[..., None], 3, axis=2)
    assert rgb2y(rgb_grey).tolist() == [[16, 126, 235]]


def test_ycbcr2rgb_inverts_rgb2ycbcr_within_two_levels():
    levels = np.arange(0, 256, 3)  # 0, 3, ..., 255: 86^3 colours incl. the cube's corners
    rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 86, 3)
    rgb = rgb.astype(np.uint8)
    back = ycbcr2rgb(rgb2ycbcr(rgb))
    error = np.abs(back.astype(int) - rgb.astype(int))
    # Y has 220 levels and Cb, Cr 225 for 256 of R, G, B, so 2 levels is the bound.
    assert error.max() <= 2
    assert error.mean() < 1
    assert ycbcr2rgb(np.array([[[16, 128, 128], [235, 128, 128]]], dtype=np.uint8)).tolist() == [
        [[0, 0, 0], [255, 255, 255]]]


def test_colour_conversions_reject_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        rgb2ycbcr(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="shape"):
        rgb2ycbcr(np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        ycbcr2rgb(np.zeros((2, 2, 3), dtype=np.float32))


# ----------------------------------------------------------------- (c) imresize

def test_cubic_kernel_values():
    x = np.array([0, 0.5, -0.5, 1, 1.5, -1.5, 2, 2.5, -3])
    # Keys (a = -0.5): 1.5|x|^3 - 2.5|x|^2 + 1 on [0, 1], -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2 on (1, 2].
    expected = [1, 0.5625, 0.5625, 0, -0.0625, -0.0625, 0, 0, 0]
    assert _cubic(x).tolist() == expected
    # A partition of unity at any shift.
    for t in (0.1, 0.25, 0.5, 0.9):
        assert abs(_cubic(t - np.arange(-2, 3)).sum() - 1) < 1e-12


@pytest.mark.parametrize("scale", [2, 3, 4, 0.5, 1 / 3, 0.25, 1.7])
def test_imresize_keeps_a_constant_image_constant(scale):
    uint8 = np.full((24, 30, 3), 77, dtype=np.uint8)
    out = imresize(uint8, scale)
    assert out.dtype == np.uint8 and np.all(out == 77)
    single = np.full((24, 30), 0.3, dtype=np.float32)
    out = imresize(single, scale)
    assert out.dtype == np.float32
    assert np.abs(out - np.float32(0.3)).max() < 1e-6


@pytest.mark.parametrize("shape, scale, expected", [
    ((7, 5), 3, (21, 15)),
    ((7, 5), 0.5, (4, 3)),       # ceil(3.5), ceil(2.5)
    ((255, 96), 1 / 3, (85, 32)),
    ((5, 3), 1.5, (8, 5)),       # ceil(7.5), ceil(4.5)
    ((361, 250, 3), 2, (722, 500, 3)),
])
def test_imresize_output_size_is_ceil_of_scale_times_size(shape, scale, expected):
    assert imresize(np.zeros(shape, dtype=np.uint8), scale).shape == expected
    assert imresize(np.zeros(shape, dtype=np.uint8), output_shape=(3, 4)).shape == (3, 4) + shape[2:]


def test_imresize_coordinate_mapping_and_mirrored_edge():
    # A vertical ramp: pixel value = its 1-based row index.
    n = 16
    ramp = np.repeat(np.arange(1, n + 1, dtype=np.float64)[:, None], 5, axis=1)
    for scale in (2, 3):
        out = imresize(ramp, scale)
        # Keys' kernel reproduces linear functions, so an output row x (1-based)
        # away from the edges holds exactly the input coordinate u = x/s + 0.5(1 - 1/s).
        x = np.arange(3 * scale, (n - 3) * scale + 1)
        u = x / scale + 0.5 * (1 - 1 / scale)
        assert np.abs(out[x - 1, 0] - u).max() < 1e-12
    # Row 1 at x2: u = 0.75; taps at -1, 0, 1, 2 with weights -0.0234375, 0.2265625,
    # 0.8671875, -0.0703125; mirroring that repeats the edge pixel makes rows -1, 0
    # equal rows 2, 1, so the value is 2(-0.0234375) + 0.2265625 + 0.8671875 + 2(-0.0703125).
    assert imresize(ramp, 2)[0, 0] == 0.90625


def test_imresize_bad_arguments():
    image = np.zeros((4, 4), dtype=np.uint8)
    with pytest.raises(ValueError):
        imresize(image)
    with pytest.raises(ValueError):
        imresize(image, 2, output_shape=(8, 8))
    with pytest.raises(ValueError):
        imresize(image, -1)
    with pytest.raises(ValueError):
        imresize(image.astype(np.int32), 2)


# --------------------------------------------- (c) rounding, cropping, shaving

def test_im2uint8_rounds_half_away_from_zero_and_saturates():
    halves = np.array([0.5, 2.5, 4.5, 126.5]) / 255
    assert (halves * 255).tolist() == [0.5, 2.5, 4.5, 126.5]  # exact ties in double
    assert im2uint8(halves).tolist() == [1, 3, 5, 127]  # round-half-even would give 0, 2, 4, 126
    assert im2uint8(np.array([-0.2, 0.0, 1.0, 1.3])).tolist() == [0, 0, 255, 255]
    assert im2uint8(np.array([0.5], dtype=np.float32)).tolist() == [128]  # 127.5
    assert im2uint8(np.array([7], dtype=np.uint8)).tolist() == [7]


def test_im2single():
    out = im2single(np.array([0, 51, 255], dtype=np.uint8))
    assert out.dtype == np.float32
    assert out.tolist() == [0.0, np.float32(0.2), 1.0]
    with pytest.raises(ValueError):
        im2single(np.zeros(3))


def test_modcrop_cuts_bottom_and_right():
    image = np.arange(361 * 250 * 3).reshape(361, 250, 3)
    assert modcrop(image, 3).shape == (360, 249, 3)
    assert modcrop(image, 4).shape == (360, 248, 3)
    assert modcrop(image[..., 0], 2).shape == (360, 250)
    assert np.array_equal(modcrop(image, 4), image[:360, :248])
    assert modcrop(image, 1).shape == image.shape
    with pytest.raises(ValueError):
        modcrop(image, 0)


def test_shave_removes_border_on_each_side():
    image = np.arange(10 * 12).reshape(10, 12)
    assert shave(image, 2).shape == (6, 8)
    assert np.array_equal(shave(image, 2), image[2:8, 2:10])
    assert shave(np.zeros((10, 12, 3)), 3).shape == (4, 6, 3)
    assert shave(image, 0).shape == (10, 12)
    with pytest.raises(ValueError):
        shave(image, 5)
    with pytest.raises(ValueError):
        shave(image, -1)


# ------------------------------------------------------------- (c) imread

def _png(path, width, height, bit_depth, colour_type, rows):
    """Write a PNG by hand (Pillow cannot write 16-bit colour)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# 16-bit samples and MATLAB's im2uint8 of them, round(x / 257), worked by hand.
UINT16 = np.array([[0, 128, 129, 200], [257, 32767, 33023, 65535]], dtype=np.uint16)
UINT16_AS_UINT8 = [[0, 0, 1, 1], [1, 127, 128, 255]]  # 0.498, 0.502, 0.778; 127.498, 128.494


def test_imread_greyscale_png_stays_one_channel(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    out = imread(tmp_path / "grey.png")
    assert out.dtype == np.uint8 and out.shape == (3, 4) and np.array_equal(out, grey)


def test_imread_rgba_drops_alpha_without_premultiplying(tmp_path):
    rgba = np.array([[[10, 20, 30, 0], [200, 100, 50, 128], [1, 2, 3, 255]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = imread(tmp_path / "rgba.png")
    assert out.shape == (1, 3, 3) and np.array_equal(out, rgba[..., :3])


def test_imread_grey_alpha_keeps_grey(tmp_path):
    la = np.array([[[10, 0], [200, 255]]], dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    out = imread(tmp_path / "la.png")
    assert out.shape == (1, 2) and out.tolist() == [[10, 200]]


@pytest.mark.parametrize("transparency", [False, True])
def test_imread_palette_expands_to_rgb(tmp_path, transparency):
    palette = [255, 0, 0, 0, 128, 255, 7, 8, 9]
    image = Image.fromarray(np.array([[0, 1], [2, 1]], dtype=np.uint8), "P")
    image.putpalette(palette)
    kwargs = {"transparency": 1} if transparency else {}
    image.save(tmp_path / "palette.png", **kwargs)
    out = imread(tmp_path / "palette.png")
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert out.tolist() == [[[255, 0, 0], [0, 128, 255]], [[7, 8, 9], [0, 128, 255]]]


def test_imread_16bit_greyscale_is_scaled_like_matlab_im2uint8(tmp_path):
    _png(tmp_path / "g16.png", 4, 2, 16, 0, [r.astype(">u2").tobytes() for r in UINT16])
    out = imread(tmp_path / "g16.png")
    assert out.dtype == np.uint8 and out.shape == (2, 4)
    assert out.tolist() == UINT16_AS_UINT8


def test_imread_16bit_rgb_is_scaled_like_matlab_im2uint8(tmp_path):
    rgb = np.stack([UINT16, UINT16, UINT16], axis=-1).astype(">u2")
    _png(tmp_path / "rgb16.png", 4, 2, 16, 2, [r.tobytes() for r in rgb])
    out = imread(tmp_path / "rgb16.png")
    assert out.shape == (2, 4, 3)
    assert out[..., 0].tolist() == UINT16_AS_UINT8


def test_imread_16bit_grey_alpha_stays_one_channel(tmp_path):
    la = np.stack([UINT16, UINT16], axis=-1).astype(">u2")
    _png(tmp_path / "la16.png", 4, 2, 16, 4, [r.tobytes() for r in la])
    out = imread(tmp_path / "la16.png")
    assert out.shape == (2, 4)


def _filtered_rows(rows, bpp):
    """PNG-filter each scanline with filter type y % 5 (none, sub, up, average, Paeth)."""
    out, prev = [], np.zeros(len(rows[0]), dtype=np.int64)
    for y, row in enumerate(rows):
        cur = np.frombuffer(row, dtype=np.uint8).astype(np.int64)
        left = np.concatenate([np.zeros(bpp, dtype=np.int64), cur[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, dtype=np.int64), prev[:-bpp]])
        kind = y % 5
        if kind == 0:
            pred = np.zeros_like(cur)
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = prev
        elif kind == 3:
            pred = (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        out.append(bytes([kind]) + ((cur - pred) % 256).astype(np.uint8).tobytes())
        prev = cur
    return out


def test_imread_16bit_rgb_png_with_every_filter_type(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 65536, size=(10, 7, 3)).astype(">u2")
    rows = _filtered_rows([r.tobytes() for r in rgb], bpp=6)
    header = struct.pack(">IIBBBBB", 7, 10, 16, 2, 0, 0, 0)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    (tmp_path / "f.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                                     + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))
    expected = np.floor(rgb.astype(np.float64) / 257 + 0.5).astype(np.uint8)
    assert np.array_equal(imread(tmp_path / "f.png"), expected)


def test_imread_1bit_png_is_0_or_255(tmp_path):
    bits = np.array([[0, 1, 1], [1, 0, 0]], dtype=bool)
    Image.fromarray(bits).convert("1").save(tmp_path / "bits.png")
    assert Image.open(tmp_path / "bits.png").mode == "1"
    out = imread(tmp_path / "bits.png")
    assert out.dtype == np.uint8 and out.tolist() == [[0, 255, 255], [255, 0, 0]]


def test_imread_bad_files_raise_oserror_naming_the_path(tmp_path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image")
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8) + 99).save(tmp_path / "whole.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((tmp_path / "whole.png").read_bytes()[:60])
    for path in (garbage, truncated, tmp_path / "missing.png"):
        with pytest.raises(OSError, match=path.name):
            imread(path)


def _bmp_pixels(path):
    """Decode an uncompressed 8-bit (identity grey palette) or 24-bit BMP by hand."""
    data = Path(path).read_bytes()
    offset, = struct.unpack("<I", data[10:14])
    width, height = struct.unpack("<ii", data[18:26])
    bits, = struct.unpack("<H", data[28:30])
    channels = bits // 8
    stride = (width * channels + 3) // 4 * 4
    rows = [np.frombuffer(data, np.uint8, width * channels, offset + r * stride)
            for r in range(abs(height))]
    pixels = np.stack(rows[::-1] if height > 0 else rows)  # bottom-up unless height < 0
    return pixels if channels == 1 else pixels.reshape(abs(height), width, 3)[..., ::-1]


@pytest.mark.parametrize("name", ["Set5/bird_GT.bmp", "Set14/bridge.bmp", "Set14/comic.bmp"])
def test_imread_real_bmps_match_a_hand_decoder(shared_dir, name):
    path = shared_dir / "datasets" / name
    expected = _bmp_pixels(path)
    out = imread(path)
    assert out.dtype == np.uint8 and np.array_equal(out, expected)
    if name.endswith("bridge.bmp"):  # 8-bit, grey palette: one channel, as in MATLAB
        data = path.read_bytes()
        palette = np.frombuffer(data, np.uint8, 1024, 54).reshape(256, 4)[:, :3]
        assert np.array_equal(palette, np.repeat(np.arange(256)[:, None], 3, axis=1))
        assert out.shape == (512, 512)
