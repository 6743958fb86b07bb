"""Tests of ddsr.evaluation.ifc: IFC against MATLAB's ifcvec, its model's invariances, the sp5 pyramid.

The oracle is ``shared/reference/matlab_bicubic_metrics.tsv`` (MATLAB's LIVE
``ifcvec`` of the bicubic Set5/Set14 images, HR first); the per-image loading
is shared with ``test_metrics.py``.
"""

import numpy as np
import pytest
from scipy import ndimage

from ddsr.evaluation.ifc import SP5_FILTERS, ifc, steerable_pyramid
from ddsr.matlab import im2single, im2uint8, imread, imresize, modcrop, rgb2y, shave
from test_metrics import MATLAB_CASES, _case_id, matlab_bicubic_pair, matlab_rows


@pytest.mark.parametrize("case", MATLAB_CASES, ids=_case_id)
def test_ifc_matches_matlab(shared_dir, case):
    hr, sr = matlab_bicubic_pair(shared_dir, *case)
    scale = case[1]
    expected = matlab_rows(shared_dir)[case]["ifc"]
    assert ifc(shave(hr, scale), shave(sr, scale)) == pytest.approx(expected, abs=1e-3)


# SRCNN-protocol bicubic IFC means, "about" these (shared/paper/SUMMARY.md): 2 decimals
SRCNN_PROTOCOL_BICUBIC_IFC = {
    ("Set5", 2): 6.08, ("Set5", 3): 3.58, ("Set5", 4): 2.33,
    ("Set14", 2): 6.10, ("Set14", 3): 3.47, ("Set14", 4): 2.24,
}


@pytest.mark.slow
@pytest.mark.parametrize("set_name, scale", sorted(SRCNN_PROTOCOL_BICUBIC_IFC),
                         ids=[f"{n}-x{s}" for n, s in sorted(SRCNN_PROTOCOL_BICUBIC_IFC)])
def test_srcnn_protocol_bicubic_ifc_means(shared_dir, set_name, scale):
    folder = shared_dir / "datasets" / set_name
    values = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() == ".bmp"):
        hr = rgb2y(modcrop(imread(path), scale))
        bicubic = im2uint8(imresize(imresize(im2single(hr), 1 / scale), scale))
        values.append(ifc(shave(hr, scale), shave(bicubic, scale)))
    assert round(float(np.mean(values)), 2) == SRCNN_PROTOCOL_BICUBIC_IFC[(set_name, scale)]


def _texture(shape=(96, 112), seed=0):
    """A smooth random texture in 0..255 (float)."""
    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    return 255 * (texture - texture.min()) / np.ptp(texture)


def _noisy(image, sigma, seed=1):
    return image + np.random.default_rng(seed).normal(0.0, sigma, image.shape)


def test_more_noise_less_information():
    reference = _texture()
    values = [ifc(reference, reference)] + [ifc(reference, _noisy(reference, s)) for s in (2, 8, 32)]
    assert all(a > b for a, b in zip(values, values[1:])), values
    assert values[-1] > 0


def test_flat_distorted_image_carries_no_information():
    # distsub_est_m: a distorted subband without variance gets g = 0, so every term is log2(1) = 0
    reference = _texture()
    assert ifc(reference, np.zeros_like(reference)) == 0.0
    assert ifc(reference, np.full(reference.shape, 77.0)) == 0.0


def test_invariant_to_brightness_and_gain_of_the_distorted_image():
    # the subbands are band-pass (no DC), and dist = g * ref + v makes g^2 / var(v) scale-free
    reference = _texture()
    distorted = _noisy(reference, 8)
    value = ifc(reference, distorted)
    assert ifc(reference, distorted + 40) == pytest.approx(value, rel=1e-6)
    assert ifc(reference, 0.5 * distorted) == pytest.approx(value, rel=1e-6)


def test_uint8_and_float_input_agree():
    reference = np.round(_texture()).astype(np.uint8)
    distorted = np.clip(np.round(_noisy(reference.astype(float), 8)), 0, 255).astype(np.uint8)
    assert ifc(reference, distorted) == ifc(reference.astype(np.float64), distorted.astype(np.float32))


def test_ifc_bad_input():
    image = _texture()
    with pytest.raises(ValueError, match="shapes differ"):
        ifc(image, image[:, :-1])
    with pytest.raises(ValueError, match="single-channel"):
        ifc(np.dstack([image] * 3), np.dstack([image] * 3))
    with pytest.raises(ValueError, match="at least 72x72"):
        ifc(image[:71], image[:71])
    with pytest.raises(ValueError, match="NaN"):
        ifc(image, np.where(image > 100, np.nan, image))
    with pytest.raises(ValueError, match="without texture"):
        ifc(np.full((80, 80), 128.0), image[:80, :80])


def test_smallest_image():
    image = _texture((72, 72))
    assert ifc(image, _noisy(image, 4)) > 0


# --- the sp5 steerable pyramid ---------------------------------------------------

def _energy(pyramid):
    bands = [b for level in pyramid.bands for b in level]
    return sum(float(np.sum(b ** 2)) for b in [pyramid.highpass, pyramid.lowpass] + bands)


@pytest.mark.parametrize("position", [(64, 64), (65, 66), (70, 61)])
def test_pyramid_is_nearly_a_tight_frame(position):
    # The sp5 filters are designed so that the pyramid is (nearly) self-inverting:
    # the coefficients of an impulse away from the edges hold its energy.
    impulse = np.zeros((128, 128))
    impulse[position] = 1.0
    assert _energy(steerable_pyramid(impulse, 3)) == pytest.approx(1.0, abs=0.01)


def test_pyramid_orientations():
    # band b is tuned to b * 30 degrees; band 0 responds to vertical stripes, band 3 not at all
    cols = np.arange(128)[None, :]
    stripes = np.repeat(100 * np.sin(2 * np.pi * cols / 8), 128, axis=0)
    energy = [float(np.mean(b ** 2)) for b in steerable_pyramid(stripes, 2).bands[0]]
    assert np.argmax(energy) == 0
    assert energy[3] < 1e-20 * energy[0]
    assert energy[1] == pytest.approx(energy[5]) and energy[2] == pytest.approx(energy[4])
    # the filter of band 3 is that of band 0 turned by 90 degrees
    np.testing.assert_allclose(SP5_FILTERS["bands"][3], -SP5_FILTERS["bands"][0].T, atol=1e-12)


def test_pyramid_shapes():
    pyramid = steerable_pyramid(np.zeros((101, 75)), 3, orientations=(0, 3))
    assert pyramid.highpass.shape == (101, 75)
    assert [level[0].shape for level in pyramid.bands] == [(101, 75), (51, 38), (26, 19)]
    assert [level[1] for level in pyramid.bands] == [None, None, None]
    assert pyramid.lowpass.shape == (13, 10)
    bare = steerable_pyramid(np.zeros((101, 75)), 3, orientations=(0,), residuals=False)
    assert bare.highpass is None and bare.lowpass is None


def test_pyramid_bad_arguments():
    with pytest.raises(ValueError, match="height 4"):
        steerable_pyramid(np.zeros((71, 200)), 4)  # maxPyrHt: 71 -> 35 -> 17 -> 8 < 9
    steerable_pyramid(np.zeros((72, 200)), 4)
    with pytest.raises(ValueError, match="orientations"):
        steerable_pyramid(np.zeros((64, 64)), 2, orientations=(6,))
