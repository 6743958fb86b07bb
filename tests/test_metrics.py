"""Tests of ddsr.evaluation.metrics: PSNR and SSIM against MATLAB and hand-computed values.

The oracle is ``shared/reference/matlab_bicubic_metrics.tsv`` (MATLAB's PSNR,
SSIM and IFC of the bicubic Set5/Set14 images; see its README): the SR image
is ``imresize(lr_uint8_rgb, s)``, both images go to Y by ``rgb2ycbcr``, and
``s`` pixels are shaved. The SRCNN-protocol set means are those of
``shared/paper/SUMMARY.md``.
"""

import csv
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from ddsr.matlab import im2single, im2uint8, imread, imresize, modcrop, rgb2y
from ddsr.evaluation.metrics import psnr, ssim

# (set, scale, image) of the 57 rows of the MATLAB oracle
MATLAB_CASES = [(name, scale, f"img_{i:03d}")
                for name, count in (("Set5", 5), ("Set14", 14))
                for scale in (2, 3, 4)
                for i in range(1, count + 1)]


def _case_id(case):
    return f"{case[0]}-x{case[1]}-{case[2]}"


@lru_cache(maxsize=None)
def matlab_rows(shared_dir):
    """The MATLAB oracle as ``{(set, scale, image): {"psnr": .., "ssim": .., "ifc": ..}}``."""
    path = Path(shared_dir) / "reference" / "matlab_bicubic_metrics.tsv"
    with open(path, newline="") as fh:
        return {(row["set"], int(row["scale"]), row["image"]):
                {k: float(row[k]) for k in ("psnr", "ssim", "ifc")}
                for row in csv.DictReader(fh, delimiter="\t")}


@lru_cache(maxsize=None)  # 57 uint8 pairs, about 35 MB; shared by test_ifc.py
def matlab_bicubic_pair(shared_dir, set_name, scale, image):
    """HR Y and bicubic Y (uint8, unshaved) of one oracle row, as its README describes."""
    folder = Path(shared_dir) / "reference" / "images" / set_name / f"image_SRF_{scale}"
    hr = imread(folder / f"{image}_SRF_{scale}_HR.png")
    lr = imread(folder / f"{image}_SRF_{scale}_LR.png")
    return rgb2y(hr), rgb2y(imresize(lr, scale))


def test_oracle_has_the_57_rows(shared_dir):
    assert sorted(matlab_rows(shared_dir)) == sorted(MATLAB_CASES)


@pytest.mark.parametrize("case", MATLAB_CASES, ids=_case_id)
def test_psnr_matches_matlab(shared_dir, case):
    hr, sr = matlab_bicubic_pair(shared_dir, *case)
    expected = matlab_rows(shared_dir)[case]["psnr"]
    assert psnr(hr, sr, crop_border=case[1]) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("case", MATLAB_CASES, ids=_case_id)
def test_ssim_matches_matlab(shared_dir, case):
    hr, sr = matlab_bicubic_pair(shared_dir, *case)
    expected = matlab_rows(shared_dir)[case]["ssim"]
    assert ssim(hr, sr, crop_border=case[1]) == pytest.approx(expected, abs=1e-4)


def test_ssim_settings_matter(shared_dir):
    """scikit-image's defaults (7x7 uniform window, sample covariance) are not ssim_index.

    Guards the settings of :func:`ssim`: the default variant misses MATLAB's
    value by far more than the tolerance on a real image pair.
    """
    from skimage.metrics import structural_similarity

    case = ("Set14", 3, "img_013")
    hr, sr = matlab_bicubic_pair(shared_dir, *case)
    expected = matlab_rows(shared_dir)[case]["ssim"]
    a, b = hr[3:-3, 3:-3], sr[3:-3, 3:-3]
    default_variant = structural_similarity(a, b, data_range=255)
    assert abs(default_variant - expected) > 1e-3
    assert abs(ssim(hr, sr, crop_border=3) - expected) < 1e-4


def test_identical_images():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    assert psnr(image, image) == math.inf
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)


def test_psnr_by_hand():
    # every pixel off by one grey level: MSE = 1, PSNR = 20 log10(255)
    a = np.full((20, 30), 100, dtype=np.uint8)
    b = a + np.uint8(1)
    assert psnr(a, b) == pytest.approx(20 * math.log10(255), abs=1e-12)
    # off by 4 on a quarter of the pixels: MSE = 4
    c = a.copy()
    c[::2, ::2] += 4
    assert psnr(a, c) == pytest.approx(10 * math.log10(255 ** 2 / 4), abs=1e-12)


def test_psnr_crop_border_removes_the_border():
    a = np.full((20, 30), 100, dtype=np.uint8)
    b = a.copy()
    b[:2, :] = 0
    b[:, -2:] = 0
    assert psnr(a, b, crop_border=2) == math.inf
    assert psnr(a, b, crop_border=1) < 20


def test_ssim_of_constant_images_by_hand():
    # no variance: SSIM = (2 a b + C1) / (a^2 + b^2 + C1) with C1 = (0.01 * 255)^2
    a = np.full((30, 30), 100, dtype=np.uint8)
    b = np.full((30, 30), 110, dtype=np.uint8)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100 ** 2 + 110 ** 2 + c1)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12)


def test_ssim_ignores_the_border_window():
    # the outermost row is inside the 'valid' windows of the first rows of the
    # map; shaving it (crop_border=1) leaves two identical images
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (40, 40), dtype=np.uint8)
    b = a.copy()
    b[0, :] = 255 - b[0, :]
    assert ssim(a, b) < 1.0
    assert ssim(a, b, crop_border=1) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_shape_mismatch_raises(metric):
    with pytest.raises(ValueError, match="shapes differ"):
        metric(np.zeros((20, 20), np.uint8), np.zeros((20, 21), np.uint8))


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_colour_input_raises(metric):
    with pytest.raises(ValueError, match="single-channel"):
        metric(np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20, 3), np.uint8))


def test_ssim_too_small_raises():
    with pytest.raises(ValueError, match="11x11"):
        ssim(np.zeros((20, 20), np.uint8), np.zeros((20, 20), np.uint8), crop_border=5)


# SRCNN-protocol bicubic means (shared/paper/SUMMARY.md): PSNR to 4 decimals, SSIM to 5
SRCNN_PROTOCOL_BICUBIC = {
    ("Set5", 2): (33.6614, 0.92988), ("Set5", 3): (30.3922, 0.86821), ("Set5", 4): (28.4207, 0.81037),
    ("Set14", 2): (30.2318, 0.86865), ("Set14", 3): (27.5405, 0.77361), ("Set14", 4): (26.0001, 0.70186),
}


@pytest.mark.parametrize("set_name, scale", sorted(SRCNN_PROTOCOL_BICUBIC),
                         ids=[f"{n}-x{s}" for n, s in sorted(SRCNN_PROTOCOL_BICUBIC)])
def test_srcnn_protocol_bicubic_means(shared_dir, set_name, scale):
    """imread -> modcrop -> Y -> single -> imresize(1/s) -> imresize(s) -> uint8 -> shave s."""
    folder = shared_dir / "datasets" / set_name
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".bmp")
    assert len(files) == {"Set5": 5, "Set14": 14}[set_name]
    psnrs, ssims = [], []
    for path in files:
        hr = rgb2y(modcrop(imread(path), scale))
        bicubic = im2uint8(imresize(imresize(im2single(hr), 1 / scale), scale))
        psnrs.append(psnr(hr, bicubic, crop_border=scale))
        ssims.append(ssim(hr, bicubic, crop_border=scale))
    expected_psnr, expected_ssim = SRCNN_PROTOCOL_BICUBIC[(set_name, scale)]
    assert round(float(np.mean(psnrs)), 4) == expected_psnr
    assert round(float(np.mean(ssims)), 5) == expected_ssim
