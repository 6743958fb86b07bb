"""ddsr.inference.ensemble: the 8 dihedral transforms, their exact inverses, the mean."""

import numpy as np
import pytest
from scipy import ndimage

from ddsr.inference.ensemble import TRANSFORMS, inverse_transform, self_ensemble, transform


@pytest.fixture
def image():
    return np.random.default_rng(0).random((7, 11), dtype=np.float32)


def test_the_eight_transforms_are_distinct_and_exactly_inverted(image):
    seen = set()
    for t in TRANSFORMS:
        y = transform(image, t)
        assert y.shape == (image.shape if t % 2 == 0 else image.shape[::-1])
        assert np.array_equal(inverse_transform(y, t), image)
        seen.add(y.tobytes() + bytes(y.shape))
    assert len(seen) == 8
    # The group: mirror then rotate; t=4 is the plain left-right mirror, t=1 a 90-degree turn.
    assert np.array_equal(transform(image, 4), image[:, ::-1])
    assert np.array_equal(transform(image, 1), np.rot90(image))
    with pytest.raises(ValueError, match="0..7"):
        transform(image, 8)


def test_channels_follow_the_pixels():
    rgb = np.random.default_rng(1).random((5, 6, 3))
    for t in TRANSFORMS:
        y = transform(rgb, t)
        assert y.shape[2] == 3
        assert np.array_equal(inverse_transform(y, t), rgb)


def _upscale_and_filter(kernel):
    def sr(x):
        return ndimage.correlate(np.kron(x, np.ones((2, 2), dtype=x.dtype)), kernel, mode="nearest")
    return sr


def test_a_method_that_commutes_with_the_group_is_unchanged(image):
    """Nearest-neighbour x2 then a square-symmetric 3x3 kernel: equivariant, so x8 = single pass."""
    kernel = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32) / 16
    sr = _upscale_and_filter(kernel)
    np.testing.assert_allclose(self_ensemble(sr, image), sr(image), atol=1e-6)
    assert self_ensemble(sr, image).dtype == np.float32


def test_a_method_that_does_not_commute_is_changed(image):
    kernel = np.array([[0, 0, 0], [0, 0.5, 0.5], [0, 0, 0]], dtype=np.float32)  # looks right only
    sr = _upscale_and_filter(kernel)
    assert np.abs(self_ensemble(sr, image) - sr(image)).max() > 1e-2


def test_the_mean_is_over_the_inverted_outputs(image):
    calls = []

    def identity(x):
        calls.append(x.shape)
        assert x.flags["C_CONTIGUOUS"]
        return x * 2.0

    np.testing.assert_array_equal(self_ensemble(identity, image), image * 2.0)
    assert calls == [(7, 11), (11, 7)] * 4


def test_a_size_changing_method_is_an_error(image):
    with pytest.raises(ValueError, match="transform 1"):
        self_ensemble(lambda x: np.zeros((7, 11)), image)
