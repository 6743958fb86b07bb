"""Tests of ddsr.data.patches: the patch grid, LR/HR alignment, counts, augmentation, reading files."""

import numpy as np
import pytest
from PIL import Image

from ddsr.data import patches
from ddsr.matlab import im2single, imresize, modcrop, rgb2y


def matlab_loop_positions(length, patch_size, stride):
    """0-based starts of MATLAB's ``for x = 1 : stride : length - patch_size + 1``."""
    starts, x = [], 1
    while x <= length - patch_size + 1:
        starts.append(x - 1)
        x += stride
    return starts


def smooth_image(rng, h, w, channels=None):
    """A uint8 image with structure at several scales (not flat, not pure noise)."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / 7.0) * np.cos(yy / 5.0) + 30 * np.sin((xx + 2 * yy) / 3.0)
    shape = (h, w) if channels is None else (h, w, channels)
    noise = rng.normal(0, 8, shape)
    base = base if channels is None else base[..., None] + 20 * np.arange(channels)
    return np.clip(np.round(base + noise), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("length", range(0, 30))
@pytest.mark.parametrize("patch_size,stride", [(7, 4), (1, 1), (5, 3), (7, 7), (11, 2)])
def test_num_positions_counts_the_matlab_loop(length, patch_size, stride):
    assert patches.num_positions(length, patch_size, stride) == len(
        matlab_loop_positions(length, patch_size, stride))


def test_count_patches_by_hand():
    # 481x321 BSD image at x3: modcrop -> 480x321, LR 160x107;
    # rows (160-7)//4+1 = 39, columns (107-7)//4+1 = 26.
    assert patches.count_patches((321, 481), 3) == 39 * 26 == 1014
    assert patches.count_patches((481, 321, 3), 3) == 1014
    # 20x20 at x3 (LR 6x6) holds no 7x7 patch; 21x21 holds exactly one.
    assert patches.count_patches((20, 100), 3) == 0
    assert patches.count_patches((21, 21), 3) == 1


def test_extract_patch_pairs_positions_and_alignment():
    """Each label is the HR block its LR patch covers: hr[s*y : s*(y+n), s*x : s*(x+n)]."""
    s, n, t = 3, 7, 4
    lr_h, lr_w = 23, 30
    # Position-coded images: every pixel says where it is.
    lr = (np.arange(lr_h)[:, None] * 1000 + np.arange(lr_w)[None, :]).astype(np.int64)
    hr = (np.arange(s * lr_h)[:, None] * 1000 + np.arange(s * lr_w)[None, :]).astype(np.int64)
    data, label = patches.extract_patch_pairs(lr, hr, s, n, t)
    expected = [(y, x) for y in matlab_loop_positions(lr_h, n, t)
                for x in matlab_loop_positions(lr_w, n, t)]
    assert data.shape == (len(expected), n, n)
    assert label.shape == (len(expected), s * n, s * n)
    for k, (y, x) in enumerate(expected):
        np.testing.assert_array_equal(data[k], lr[y:y + n, x:x + n])
        np.testing.assert_array_equal(label[k], hr[s * y:s * y + s * n, s * x:s * x + s * n])
    # LR pixel i covers HR pixels s*i .. s*i+s-1: the label's top-left is HR (s*y, s*x).
    assert label[1, 0, 0] == s * expected[1][0] * 1000 + s * expected[1][1]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_alignment_random_patches_of_a_real_pipeline(scale):
    rng = np.random.default_rng(scale)
    image = smooth_image(rng, 97, 131, 3)
    hr, lr = patches.lr_hr_pair(image, scale)
    data, label = patches.extract_patch_pairs(lr, hr, scale)
    ny = patches.num_positions(lr.shape[0], 7, 4)
    nx = patches.num_positions(lr.shape[1], 7, 4)
    for k in rng.choice(len(data), size=10, replace=False):
        y, x = 4 * (k // nx), 4 * (k % nx)
        np.testing.assert_array_equal(data[k], lr[y:y + 7, x:x + 7])
        np.testing.assert_array_equal(label[k], hr[scale * y:scale * (y + 7),
                                                   scale * x:scale * (x + 7)])
    assert len(data) == ny * nx


def test_label_downscales_to_its_lr_patch():
    """Independent check of alignment: MATLAB bicubic of the label gives back the LR patch.

    The antialiased x3 kernel spans 12 HR pixels (4 LR pixels), so away from the
    patch border (2 LR pixels) imresize(label, 1/3) sees the same HR pixels as the
    full image did: it must equal the LR patch exactly. A label shifted by one HR
    pixel does not.
    """
    rng = np.random.default_rng(0)
    data, label = patches.image_patch_pairs(smooth_image(rng, 90, 120, 3), 3)
    for k in range(0, len(data), 7):
        lr_again = imresize(im2single(label[k]), 1 / 3)
        np.testing.assert_array_equal(lr_again[2:-2, 2:-2], data[k][2:-2, 2:-2])
    shifted = np.roll(label[3], 1, axis=1)
    assert not np.array_equal(imresize(im2single(shifted), 1 / 3)[2:-2, 2:-2],
                              data[3][2:-2, 2:-2])


def test_lr_hr_pair_follows_the_protocol():
    rng = np.random.default_rng(1)
    image = smooth_image(rng, 50, 64, 3)
    hr, lr = patches.lr_hr_pair(image, 3)
    np.testing.assert_array_equal(hr, modcrop(rgb2y(image), 3))
    assert hr.shape == (48, 63) and hr.dtype == np.uint8
    assert lr.shape == (16, 21) and lr.dtype == np.float32
    # Single precision, not rounded to 1/255 steps.
    assert np.any(np.abs(lr * 255 - np.round(lr * 255)) > 1e-3)
    grey = smooth_image(rng, 30, 30)
    hr_grey, _ = patches.lr_hr_pair(grey, 3)
    np.testing.assert_array_equal(hr_grey, grey)


def test_image_patch_pairs_count_matches_formula_on_many_sizes():
    rng = np.random.default_rng(2)
    for scale in (2, 3, 4):
        for h, w in [(21, 21), (22, 40), (47, 33), (64, 65), (8 * scale, 100)]:
            image = smooth_image(rng, h, w)
            data, label = patches.image_patch_pairs(image, scale)
            assert len(data) == len(label) == patches.count_patches((h, w), scale)
            assert data.dtype == np.float32 and label.dtype == np.uint8
            assert label.shape[1:] == (7 * scale, 7 * scale)


def test_image_smaller_than_a_patch_gives_nothing():
    data, label = patches.image_patch_pairs(np.zeros((20, 50), np.uint8), 3)
    assert data.shape == (0, 7, 7) and label.shape == (0, 21, 21)


@pytest.mark.parametrize("bad", [dict(scale=0), dict(patch_size=0), dict(stride=-1),
                                 dict(scale=1.5)])
def test_bad_geometry_is_a_value_error(bad):
    args = dict(scale=3, patch_size=7, stride=4) | bad
    with pytest.raises(ValueError):
        patches.count_patches((100, 100), **args)


def test_extract_rejects_misaligned_shapes():
    with pytest.raises(ValueError, match="not 3 x lr"):
        patches.extract_patch_pairs(np.zeros((10, 10)), np.zeros((31, 30)), 3)


@pytest.mark.parametrize("shape", [(37, 53), (100, 81), (15, 7)])
@pytest.mark.parametrize("factor", [0.9, 0.8, 0.7, 0.6, 0.5, 1 / 3])
def test_resized_shape_is_imresize_output_shape(shape, factor):
    assert patches.resized_shape(shape, factor) == imresize(
        np.zeros(shape, np.uint8), factor).shape


def test_augmentations_listing():
    assert patches.augmentations() == [(False, 0, 1.0)]
    assert len(patches.augmentations(flip=True)) == 2
    assert len(patches.augmentations(rot90=True)) == 4
    both = patches.augmentations(flip=True, rot90=True, downscales=[0.9, 0.8])
    assert len(both) == 2 * 4 * 3 and both[0] == (False, 0, 1.0)
    for bad in ([1.0], [0.0], [1.2], [0.9, 0.9]):
        with pytest.raises(ValueError):
            patches.augmentations(downscales=bad)


def test_flips_and_rotations_are_the_eight_symmetries():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    copies = [patches.augment(image, *a) for a in patches.augmentations(flip=True, rot90=True)]
    assert len({c.tobytes() + bytes(c.shape) for c in copies}) == 8
    np.testing.assert_array_equal(patches.augment(image, True, 0, 1.0), image[:, ::-1])
    # MATLAB imrotate(image, 90) turns counter-clockwise: the top-right corner goes top-left.
    rotated = patches.augment(image, False, 1, 1.0)
    np.testing.assert_array_equal(rotated[0, 0], image[0, -1])
    assert rotated.shape == (3, 2, 3)


def test_downscaled_copy_is_matlab_bicubic_of_the_uint8_image():
    rng = np.random.default_rng(3)
    image = smooth_image(rng, 40, 50, 3)
    np.testing.assert_array_equal(patches.augment(image, False, 0, 0.8), imresize(image, 0.8))


def test_augmented_shapes_match_the_copies():
    image = np.zeros((41, 67, 3), np.uint8)
    options = dict(flip=True, rot90=True, downscales=[0.9, 0.7])
    expected = [patches.augment(image, *a).shape[:2] for a in patches.augmentations(**options)]
    assert patches.augmented_shapes(image.shape, **options) == expected


def write_images(folder, sizes, rng, mode="RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        path = folder / f"img{i:02d}.bmp"
        Image.fromarray(smooth_image(rng, h, w, 3 if mode == "RGB" else None)).save(path)
        paths.append(path)
    return paths


def test_collect_patch_pairs_reads_files_and_counts(tmp_path):
    rng = np.random.default_rng(4)
    paths = write_images(tmp_path / "Mini", [(40, 52), (30, 30), (15, 90)], rng)
    sources = [("Mini", p) for p in paths]
    pairs = patches.collect_patch_pairs(sources, 3)
    expected = patches.count_patches((40, 52), 3) + patches.count_patches((30, 30), 3)
    assert len(pairs) == expected == patches.count_patch_pairs(sources, 3)[0]
    assert [im["file"] for im in pairs.images] == ["img00.bmp", "img01.bmp"]
    assert len(pairs.images[0]["sha256"]) == 64
    assert [s["file"] for s in pairs.skipped] == ["img02.bmp"]
    assert "smaller than one 7x7 LR patch at x3" in pairs.skipped[0]["reason"]
    # The first image's patches come first, in grid order.
    first, _ = patches.image_patch_pairs(np.asarray(Image.open(paths[0])), 3)
    np.testing.assert_array_equal(pairs.data[:len(first)], first)


def test_collect_with_augmentation_counts(tmp_path):
    rng = np.random.default_rng(5)
    paths = write_images(tmp_path / "Mini", [(45, 61)], rng)
    options = dict(flip=True, rot90=True, downscales=[0.8, 0.5])
    pairs = patches.collect_patch_pairs([("Mini", paths[0])], 3, **options)
    count, used, skipped = patches.count_patch_pairs([("Mini", paths[0])], 3, **options)
    expected = sum(patches.count_patches(s, 3)
                   for s in patches.augmented_shapes((45, 61), **options))
    assert len(pairs) == count == expected
    # x0.5 gives 23x31: one 7x7 patch row at x3; every copy is used.
    assert skipped == 0 and not pairs.skipped and used == 1


def test_collect_bad_image_names_it_or_is_skipped(tmp_path):
    rng = np.random.default_rng(6)
    good, = write_images(tmp_path / "Mini", [(40, 40)], rng)
    bad = tmp_path / "Mini" / "broken.bmp"
    bad.write_bytes(good.read_bytes()[:200])  # truncated
    sources = [("Mini", good), ("Mini", bad)]
    with pytest.raises(OSError, match="broken.bmp"):
        patches.collect_patch_pairs(sources, 3)
    pairs = patches.collect_patch_pairs(sources, 3, skip_bad=True)
    assert len(pairs) == patches.count_patches((40, 40), 3)
    assert pairs.skipped[0]["file"] == "broken.bmp"
    assert pairs.skipped[0]["reason"].startswith("unreadable")


def test_collect_nothing_gives_empty_arrays():
    pairs = patches.collect_patch_pairs([], 3)
    assert pairs.data.shape == (0, 7, 7) and pairs.label.shape == (0, 21, 21)
