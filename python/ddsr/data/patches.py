"""Training patches: LR patches on a strided grid and the HR blocks they cover.

The data protocol of the SRCNN/FSRCNN ``generate_train.m`` that DDSR's
training set follows (paper, section 3: 291 images, "7x7 with stride 4 gives
252,032 images"):

1. read the image (uint8), take the Y channel of MATLAB's ``rgb2ycbcr``
   (a greyscale file is used as it is), ``modcrop`` it to a multiple of the
   scale ``s``;
2. ``im2single``; the LR image is ``imresize(Y, 1/s, 'bicubic')`` in single
   precision, not rounded;
3. cut the LR image into ``n x n`` patches with stride ``t``
   (``for x = 1 : t : hei - n + 1``, the MATLAB loop over the LR image), and
   take as label the ``s*n x s*n`` HR block that the LR patch covers.

Alignment: with 0-based indices, LR pixel ``i`` is the bicubic average around
HR pixels ``s*i .. s*i + s - 1`` (``imresize`` samples the HR image at
``u = s*(i + 1/2) - 1/2``, the centre of that block), so the label of the LR
patch at ``(y, x)`` is ``hr[s*y : s*(y+n), s*x : s*(x+n)]``. (Some FSRCNN-style
scripts take ``im_label(x*scale : ...)`` with 1-based ``x``, ``s - 1`` HR pixels
too far; that offset is not copied.)

Everything here is a pure function of arrays except :func:`collect_patch_pairs`,
which reads the image files; shuffling and writing HDF5 are in :mod:`ddsr.data.h5`.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ddsr.data.registry import sha256_file
from ddsr.matlab import im2single, imread, imresize, modcrop, rgb2y

__all__ = [
    "num_positions",
    "count_patches",
    "resized_shape",
    "augmentations",
    "augmented_shapes",
    "augment",
    "lr_hr_pair",
    "extract_patch_pairs",
    "image_patch_pairs",
    "min_image_side",
    "PatchPairs",
    "collect_patch_pairs",
    "image_size",
    "count_patch_pairs",
]


def _check_geometry(scale, patch_size, stride):
    for name, value in (("scale", scale), ("patch_size", patch_size), ("stride", stride)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(scale), int(patch_size), int(stride)


def num_positions(length, patch_size, stride):
    """Number of patch positions along one axis: ``len(range(0, length - patch_size + 1, stride))``.

    The count of MATLAB's ``for x = 1 : stride : length - patch_size + 1``
    (zero when the axis is shorter than a patch).
    """
    if length < patch_size:
        return 0
    return (length - patch_size) // stride + 1


def count_patches(image_shape, scale, patch_size=7, stride=4):
    """Number of patch pairs one image gives, from its size alone.

    Parameters
    ----------
    image_shape : tuple of int
        ``(H, W)`` or ``(H, W, C)`` of the HR image as read (before ``modcrop``).
    scale, patch_size, stride : int
        As in :func:`extract_patch_pairs`.

    Returns
    -------
    int
        ``num_positions(H // s) * num_positions(W // s)``: after ``modcrop`` the
        LR image is exactly ``H // s x W // s``.
    """
    scale, patch_size, stride = _check_geometry(scale, patch_size, stride)
    h, w = image_shape[:2]
    return (num_positions(h // scale, patch_size, stride)
            * num_positions(w // scale, patch_size, stride))


def resized_shape(shape, factor):
    """``(H, W)`` of :func:`ddsr.matlab.imresize` by ``factor``: MATLAB's ``ceil(factor * size)``.

    Used to count patches of downscaled copies without resizing them; the
    test compares it with ``imresize``'s real output shape.
    """
    h, w = shape[:2]
    return int(np.ceil(factor * h)), int(np.ceil(factor * w))


def _check_downscales(downscales):
    factors = tuple(float(f) for f in downscales)
    for f in factors:
        if not 0 < f < 1:
            raise ValueError(f"downscale factors must be in (0, 1), got {f}")
    if len(set(factors)) != len(factors):
        raise ValueError(f"downscale factors repeat: {factors}")
    return factors


def augmentations(flip=False, rot90=False, downscales=()):
    """The augmented copies made of each training image, as ``(flip, quarter_turns, factor)``.

    Parameters
    ----------
    flip : bool
        Add the left-right mirror of each image.
    rot90 : bool
        Add the rotations by 90, 180 and 270 degrees (counter-clockwise, as
        MATLAB's ``imrotate``). With ``flip`` too, the 8 distinct flips and
        rotations (FSRCNN's 3 flips x 4 rotations holds 4 duplicates).
    downscales : sequence of float
        Factors in (0, 1): copies of each (flipped, rotated) image shrunk by
        MATLAB bicubic before ``modcrop`` (FSRCNN's ``downsizes``). The
        original size (factor 1) is always included.

    Returns
    -------
    list of tuple
        The first entry is always ``(False, 0, 1.0)``, the image itself.
    """
    factors = (1.0,) + _check_downscales(downscales)
    flips = (False, True) if flip else (False,)
    turns = (0, 1, 2, 3) if rot90 else (0,)
    return [(f, k, d) for f in flips for k in turns for d in factors]


def augment(image, flip, quarter_turns, factor):
    """Apply one augmentation of :func:`augmentations` to a uint8 image as read.

    The order is FSRCNN's ``generate_train.m``: flip, rotate, then
    ``imresize(image, factor, 'bicubic')`` on the uint8 image (MATLAB rounds
    uint8 between its two passes; :func:`ddsr.matlab.imresize` does too), and
    the Y channel is taken afterwards by :func:`lr_hr_pair`.
    """
    image = np.asarray(image)
    if flip:
        image = image[:, ::-1, ...]
    if quarter_turns % 4:
        image = np.rot90(image, k=quarter_turns)
    if factor != 1.0:
        image = imresize(np.ascontiguousarray(image), factor)
    return np.ascontiguousarray(image)


def augmented_shapes(image_shape, flip=False, rot90=False, downscales=()):
    """``(H, W)`` of every augmented copy of an image of ``image_shape``, without making them."""
    h, w = image_shape[:2]
    shapes = []
    for _, turns, factor in augmentations(flip, rot90, downscales):
        shape = (w, h) if turns % 2 else (h, w)
        shapes.append(shape if factor == 1.0 else resized_shape(shape, factor))
    return shapes


def lr_hr_pair(image, scale):
    """The HR Y channel and its LR version, by the SRCNN data protocol.

    Parameters
    ----------
    image : ndarray of uint8, (H, W) or (H, W, 3)
        As returned by :func:`ddsr.matlab.imread`.
    scale : int

    Returns
    -------
    hr : ndarray of uint8, (s*h, s*w)
        ``modcrop(rgb2y(image), s)``; ``im2single(hr)`` is the label image.
    lr : ndarray of float32, (h, w)
        ``imresize(im2single(hr), 1/s)``, MATLAB single precision, not rounded.
    """
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    hr = modcrop(rgb2y(image), scale)
    if min(hr.shape) == 0:
        raise ValueError(f"image of shape {np.shape(image)} is smaller than the scale {scale}")
    lr = imresize(im2single(hr), 1.0 / scale)
    return hr, lr


def extract_patch_pairs(lr, hr, scale, patch_size=7, stride=4):
    """Cut LR patches on a strided grid and the HR blocks they cover.

    Parameters
    ----------
    lr : ndarray, (h, w)
        LR image.
    hr : ndarray, (s*h, s*w)
        HR image (any dtype; the labels keep it).
    scale : int
        ``s``.
    patch_size : int
        ``n``, the LR patch side; labels are ``s*n`` square.
    stride : int
        Step of the grid in LR pixels.

    Returns
    -------
    data : ndarray, (N, n, n), lr's dtype
        ``lr[y:y+n, x:x+n]`` for ``y`` in ``range(0, h-n+1, stride)`` (outer)
        and ``x`` in ``range(0, w-n+1, stride)`` (inner): MATLAB's loop order.
    label : ndarray, (N, s*n, s*n), hr's dtype
        ``hr[s*y : s*(y+n), s*x : s*(x+n)]``.

    Notes
    -----
    Both are copies made from strided views (no Python loop over patches).
    ``N == count_patches(hr.shape, s, n, stride)``.
    """
    scale, patch_size, stride = _check_geometry(scale, patch_size, stride)
    lr = np.asarray(lr)
    hr = np.asarray(hr)
    if lr.ndim != 2 or hr.ndim != 2:
        raise ValueError(f"expected 2-D images, got lr {lr.shape} and hr {hr.shape}")
    if hr.shape != (scale * lr.shape[0], scale * lr.shape[1]):
        raise ValueError(f"hr shape {hr.shape} is not {scale} x lr shape {lr.shape}")
    ny = num_positions(lr.shape[0], patch_size, stride)
    nx = num_positions(lr.shape[1], patch_size, stride)
    label_size = scale * patch_size
    if ny == 0 or nx == 0:
        return (np.empty((0, patch_size, patch_size), lr.dtype),
                np.empty((0, label_size, label_size), hr.dtype))
    lr_windows = sliding_window_view(lr, (patch_size, patch_size))[::stride, ::stride][:ny, :nx]
    hr_step = scale * stride
    hr_windows = sliding_window_view(hr, (label_size, label_size))[::hr_step, ::hr_step][:ny, :nx]
    data = lr_windows.reshape(ny * nx, patch_size, patch_size)
    label = hr_windows.reshape(ny * nx, label_size, label_size)
    return data, label


def min_image_side(scale, patch_size):
    """Smallest HR side (before ``modcrop``) that holds one patch: ``s * n``."""
    return int(scale) * int(patch_size)


def image_patch_pairs(image, scale, patch_size=7, stride=4):
    """Patch pairs of one uint8 image: :func:`lr_hr_pair` then :func:`extract_patch_pairs`.

    Returns
    -------
    data : ndarray of float32, (N, n, n)
        LR patches in [0, 1].
    label : ndarray of uint8, (N, s*n, s*n)
        HR Y blocks; ``ddsr.matlab.im2single(label)`` gives the float32 labels
        (kept uint8 until written: 4x less memory, same values).
    """
    scale, patch_size, stride = _check_geometry(scale, patch_size, stride)
    if min(np.shape(image)[:2]) < min_image_side(scale, patch_size):
        return (np.empty((0, patch_size, patch_size), np.float32),
                np.empty((0, scale * patch_size, scale * patch_size), np.uint8))
    hr, lr = lr_hr_pair(image, scale)
    return extract_patch_pairs(lr, hr, scale, patch_size, stride)



def _augmentation_name(flip, quarter_turns, factor):
    parts = (["flip"] if flip else []) + ([f"rot{90 * quarter_turns}"] if quarter_turns else [])
    parts += [f"x{factor:g}"] if factor != 1.0 else []
    return "+".join(parts) or "none"


@dataclass
class PatchPairs:
    """Patch pairs collected from a list of image files, with their provenance.

    Attributes
    ----------
    data : ndarray of float32, (N, n, n)
        LR patches in [0, 1].
    label : ndarray of uint8, (N, s*n, s*n)
        HR Y blocks (``ddsr.matlab.im2single`` gives the float32 labels).
    images : list of dict
        One per image used: ``set``, ``file``, ``sha256``, ``height``,
        ``width``, ``num_patches`` (all its augmented copies together).
    skipped : list of dict
        One per image (or augmented copy) left out: ``set``, ``file``,
        ``augmentation`` and ``reason``.
    """

    data: np.ndarray
    label: np.ndarray
    images: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    def __len__(self):
        return len(self.data)


def collect_patch_pairs(sources, scale, patch_size=7, stride=4, flip=False, rot90=False,
                        downscales=(), skip_bad=False, progress=False):
    """Read image files and cut them all into patch pairs (the one function here that reads files).

    Parameters
    ----------
    sources : sequence of (str, path-like)
        ``(set name, file)`` in the order the patches are wanted.
    scale, patch_size, stride : int
        As in :func:`extract_patch_pairs`.
    flip, rot90, downscales
        Augmentation, as in :func:`augmentations`.
    skip_bad : bool
        Record an unreadable image in ``skipped`` instead of raising.
    progress : bool
        Show a tqdm progress bar over the images (on stderr).

    Returns
    -------
    PatchPairs

    Raises
    ------
    OSError
        An image cannot be read (the message names it), unless ``skip_bad``.

    Notes
    -----
    An image (or augmented copy) whose sides are not both at least
    ``scale * patch_size`` gives no patch: it is recorded in ``skipped``.
    """
    from tqdm import tqdm

    scale, patch_size, stride = _check_geometry(scale, patch_size, stride)
    variants = augmentations(flip, rot90, downscales)
    min_side = min_image_side(scale, patch_size)
    data_parts, label_parts, images, skipped = [], [], [], []
    for set_name, path in tqdm(list(sources), desc="images", unit="img", disable=not progress,
                               leave=False):
        path = Path(path)
        record = {"set": set_name, "file": path.name}
        try:
            checksum = sha256_file(path)
            image = imread(path)
        except OSError as exc:
            if not skip_bad:
                raise
            skipped.append({**record, "augmentation": "none", "reason": f"unreadable: {exc}"})
            continue
        count = 0
        for variant in variants:
            copy = augment(image, *variant)
            if min(copy.shape[:2]) < min_side:
                h, w = copy.shape[:2]
                skipped.append({**record, "augmentation": _augmentation_name(*variant),
                                "reason": f"{w}x{h} is smaller than one {patch_size}x{patch_size} "
                                          f"LR patch at x{scale} (needs {min_side}x{min_side})"})
                continue
            data, label = image_patch_pairs(copy, scale, patch_size, stride)
            data_parts.append(data)
            label_parts.append(label)
            count += len(data)
        if count:
            images.append({**record, "sha256": checksum, "height": int(image.shape[0]),
                           "width": int(image.shape[1]), "num_patches": count})
    label_size = scale * patch_size
    data = (np.concatenate(data_parts) if data_parts
            else np.empty((0, patch_size, patch_size), np.float32))
    label = (np.concatenate(label_parts) if label_parts
             else np.empty((0, label_size, label_size), np.uint8))
    return PatchPairs(data, label, images, skipped)


def image_size(path):
    """``(height, width)`` of an image file from its header alone (Pillow, no decoding)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
    except (OSError, ValueError, SyntaxError) as exc:
        raise OSError(f"{path}: cannot read image ({exc})") from exc
    return height, width


def count_patch_pairs(sources, scale, patch_size=7, stride=4, flip=False, rot90=False,
                      downscales=(), skip_bad=False):
    """Number of patch pairs :func:`collect_patch_pairs` would give, from image sizes alone.

    Reads only the image headers, so a file truncated after its header is
    not noticed here. Returns ``(num_patches, num_images_used, num_skipped)``.
    """
    scale, patch_size, stride = _check_geometry(scale, patch_size, stride)
    min_side = min_image_side(scale, patch_size)
    total = used = skipped = 0
    for _, path in sources:
        try:
            shape = image_size(path)
        except OSError:
            if not skip_bad:
                raise
            skipped += 1
            continue
        count = 0
        for copy_shape in augmented_shapes(shape, flip, rot90, downscales):
            if min(copy_shape) < min_side:
                skipped += 1
                continue
            count += count_patches(copy_shape, scale, patch_size, stride)
        total += count
        used += count > 0
    return total, used, skipped
