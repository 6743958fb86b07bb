"""Super-resolve anyone's images with a deploy net: the evaluation's net running and colour, on a file.

The user's picture is the LR image. Everything the evaluation protocol does after its LR step
is shared, not copied: the net is loaded by :func:`ddsr.evaluation.upscaler.load_upscaler` and
run by its :meth:`~ddsr.evaluation.upscaler.CaffeUpscaler.sr` (sidecar settings, replicate
padding, exact tiling, output offset), the float SR Y becomes uint8 by
:func:`ddsr.evaluation.protocol.to_uint8`, and colour is rebuilt by
:func:`ddsr.evaluation.protocol.colour_output`: SR Y with the MATLAB-bicubic Cb and Cr, through
``ycbcr2rgb``. So an image written here is pixel for pixel what ``tools/eval.py`` writes for the
same LR image.

What a file brings beyond the protocol's images: pixels are read by :func:`ddsr.matlab.imread`
(16-bit and palette images converted as MATLAB does, greyscale kept single-channel); the EXIF
orientation is applied; an alpha channel is upscaled by the same bicubic and kept. Large images
are tiled so that the process stays under a memory budget (:func:`choose_tile`, from Caffe's own
allocation rules); the tiles are exact (overlap = the net's receptive-field radius), so a tiled
result equals the whole-image one.
"""

import dataclasses
import os
from functools import cached_property
from math import isqrt
from pathlib import Path

import numpy as np

from ..evaluation.deploy_net import ModelError
from ..data.registry import IMAGE_EXTENSIONS
from ..evaluation.protocol import colour_output, to_uint8
from ..atomic import write_png_atomic
from ..evaluation.upscaler import CaffeUpscaler, context_radius
from ..matlab import im2single, im2uint8, imread, imresize, rgb2y, rgb2ycbcr
from .ensemble import self_ensemble

__all__ = ["DEFAULT_MAX_MEMORY", "InputError", "LRImage", "read_image", "apply_orientation", "collect_inputs",
           "output_paths", "net_bytes_per_pixel", "resident_bytes", "choose_tile", "super_resolve", "upscale_file"]

DEFAULT_MAX_MEMORY = 2 * 1024 ** 3
IMAGE_BYTES_PER_OUTPUT_PIXEL = 64
"""numpy's share of the budget: the float32 SR and bicubic Y, uint8 colour planes, float64
intermediates of imresize and of the self-ensemble's sum (about 50 bytes; rounded up)."""

_ORIENTATION_TAG = 0x0112


class InputError(ValueError):
    """One input cannot be upscaled (unreadable, or its output name is taken); the others go on."""


def apply_orientation(array, orientation):
    """Turn ``array`` (H, W[, C]) upright according to an EXIF orientation (1-8), as viewers do.

    The same transposes as Pillow's ``ImageOps.exif_transpose`` (checked against it in the tests).
    """
    a = array
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return np.swapaxes(a, 0, 1)
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return np.swapaxes(a, 0, 1)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(a, 1)
    return a


class LRImage:
    """A picture to super-resolve, with the derived images the evaluation's functions read.

    It offers what :meth:`CaffeUpscaler.net_input` and :func:`colour_output` use from a
    :class:`~ddsr.evaluation.protocol.ProtocolImage`: ``lr_y``, ``bicubic_y``, ``is_colour`` and
    ``bicubic_cbcr`` -- here the Cb and Cr of the picture itself upscaled (a ProtocolImage takes
    them down from the HR image first).

    Attributes
    ----------
    name : str
    scale : int
    pixels : ndarray of uint8, (H, W) or (H, W, 3)
    alpha : ndarray of uint8, (H, W), or None
    lr_y : ndarray of float32, (H, W)
        ``im2single(rgb2y(pixels))``.
    """

    def __init__(self, name, scale, pixels, alpha=None):
        pixels = np.ascontiguousarray(pixels)
        if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
            raise ValueError(f"expected a uint8 (H, W) or (H, W, 3) image, got {pixels.dtype} {pixels.shape}")
        self.name = name
        self.scale = int(scale)
        self.pixels = pixels
        self.alpha = None if alpha is None else np.ascontiguousarray(alpha)
        self.lr_y = im2single(rgb2y(pixels))

    @property
    def is_colour(self):
        return self.pixels.ndim == 3

    @property
    def sr_shape(self):
        return (self.scale * self.pixels.shape[0], self.scale * self.pixels.shape[1])

    def _bicubic_uint8(self, plane):
        return im2uint8(imresize(im2single(np.ascontiguousarray(plane)), self.scale))

    @cached_property
    def bicubic_y(self):
        return imresize(self.lr_y, self.scale)

    @cached_property
    def bicubic_cbcr(self):
        if not self.is_colour:
            return None
        ycbcr = rgb2ycbcr(self.pixels)
        return np.stack([self._bicubic_uint8(ycbcr[..., c]) for c in (1, 2)], axis=2)

    @cached_property
    def bicubic_alpha(self):
        return None if self.alpha is None else self._bicubic_uint8(self.alpha)


def read_image(path, scale):
    """Read one picture as an :class:`LRImage`: imread's pixels, upright, with its alpha if any.

    Raises
    ------
    InputError
        Missing, not an image, or truncated (one line naming the file).
    """
    from PIL import Image

    path = Path(path)
    try:
        pixels = imread(path)
        with Image.open(path) as im:
            orientation = im.getexif().get(_ORIENTATION_TAG, 1)
            has_alpha = (im.mode in ("RGBA", "LA", "PA", "La", "RGBa")
                         or (im.mode in ("P", "L", "RGB") and "transparency" in im.info))
            alpha = np.asarray(im.convert("RGBA").getchannel("A")) if has_alpha else None
    except OSError as exc:
        raise InputError(str(exc) if str(path) in str(exc) else f"{path}: cannot read image ({exc})") from exc
    pixels = apply_orientation(pixels, orientation)
    if alpha is not None:
        alpha = apply_orientation(alpha, orientation)
        if alpha.shape != pixels.shape[:2]:
            alpha = None  # a decoder oddity; the colour is what matters
    return LRImage(path.stem, scale, pixels, alpha)


def collect_inputs(paths):
    """The image files named by ``paths`` (files as given, folders' images sorted by name).

    Returns
    -------
    (list of Path, list of str)
        The files, and one message per path that gave none (missing, or a folder without images).
    """
    files, errors = [], []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                errors.append(f"{p}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
            files += found
        elif p.exists():
            files.append(p)
        else:
            errors.append(f"{p}: no such file or folder")
    return files, errors


def output_paths(path, out_dir):
    """``(out_dir/<stem>.png, out_dir/<stem>_compare.png)`` for an input file."""
    stem = Path(path).stem
    return Path(out_dir) / f"{stem}.png", Path(out_dir) / f"{stem}_compare.png"


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------

def net_bytes_per_pixel(net, reference=64):
    """Bytes Caffe allocates per net-input pixel for a forward pass (float32), from its own rules.

    Every blob once (Split tops share their bottom's memory), plus what Caffe keeps per layer:
    each Convolution its own im2col buffer (``C_in k_h k_w`` values per output pixel, none for a
    1x1 stride-1 kernel), each Deconvolution its col buffer (``C_out k_h k_w`` per input pixel),
    each in-place PReLU a copy of its input. Measured on a ``reference`` square input; all of it
    grows with the area.
    """
    in_name = net.inputs[0]
    net.blobs[in_name].reshape(1, 1, reference, reference)
    net.reshape()
    shared = set()
    values = 0
    for name, layer in zip(net._layer_names, net.layers):
        tops, bottoms = net.top_names[name], net.bottom_names[name]
        if layer.type == "Split":
            shared.update(tops)
        elif layer.type == "Convolution":
            weight = layer.blobs[0].data.shape  # (C_out, C_in / group, kh, kw)
            out_area = int(np.prod(net.blobs[tops[0]].data.shape[2:]))
            one_by_one = weight[2:] == (1, 1) and out_area == int(np.prod(net.blobs[bottoms[0]].data.shape[2:]))
            if not one_by_one:
                group = net.blobs[bottoms[0]].data.shape[1] // weight[1]
                values += int(np.prod(weight[1:])) * group * out_area
        elif layer.type == "Deconvolution":
            weight = layer.blobs[0].data.shape  # (C_in, C_out / group, kh, kw)
            group = net.blobs[tops[0]].data.shape[1] // weight[1]
            values += int(np.prod(weight[1:])) * group * int(np.prod(net.blobs[bottoms[0]].data.shape[2:]))
        elif layer.type == "PReLU" and tops == bottoms:
            values += net.blobs[bottoms[0]].count
    values += sum(blob.count for name, blob in net.blobs.items() if name not in shared)
    return 4 * values / (reference * reference)


def resident_bytes():
    """The process's resident memory now, in bytes (Linux ``/proc/self/statm``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def choose_tile(upscaler, image, max_memory, per_pixel=None, overlap=None, resident=None):
    """The core tile size (net-input pixels) that keeps one image under ``max_memory``, or None.

    Parameters
    ----------
    upscaler : CaffeUpscaler
    image : LRImage
    max_memory : int
        Bytes for the whole process: what it holds already (Python, Caffe, the weights) and the
        image arrays (:data:`IMAGE_BYTES_PER_OUTPUT_PIXEL`) are taken off before the net's share.
    per_pixel : float, optional
        :func:`net_bytes_per_pixel` of the net (computed if not given).
    overlap : int, optional
        Context pixels around a tile (default: the net's :func:`context_radius`).
    resident : int, optional
        The process's resident bytes before the net's first forward (default: now). Caffe keeps
        its blobs between forwards and reuses them, so for a second image the memory the net
        already holds must not be counted twice: measure this once, before the first image.

    Returns
    -------
    int or None
        None when the whole (padded) image fits.

    Raises
    ------
    ModelError
        Not even a small tile fits in the budget.
    """
    s = upscaler.settings
    x = upscaler.net_input(image)
    h, w = (d + 2 * s.pad_input for d in x.shape)
    if per_pixel is None:
        per_pixel = net_bytes_per_pixel(upscaler.net)
    if overlap is None:
        overlap = context_radius(upscaler.net_param)
        if overlap is None:
            raise ModelError("cannot bound the net's receptive field (unknown layer types): give --tile and "
                             "--tile-overlap")
    fixed = resident_bytes() if resident is None else resident
    fixed += IMAGE_BYTES_PER_OUTPUT_PIXEL * image.sr_shape[0] * image.sr_shape[1]
    budget = max_memory - fixed
    if h * w * per_pixel <= budget:
        return None
    side = isqrt(max(int(budget / per_pixel), 0))
    tile = side - 2 * overlap
    minimum = 16
    if tile < minimum:
        need = fixed + (minimum + 2 * overlap) ** 2 * per_pixel
        raise ModelError(f"{image.name}: --max-memory {max_memory / 2**20:.0f} MB is too small for this net and "
                         f"image (tiles of {minimum} pixels need about {need / 2**20:.0f} MB)")
    return tile


# ---------------------------------------------------------------------------------------------
# Upscaling
# ---------------------------------------------------------------------------------------------

def super_resolve(upscaler, image, self_ensemble_x8=False):
    """The SR image of an :class:`LRImage`, as eval writes it, and the bicubic image beside it.

    Returns
    -------
    (ndarray, ndarray)
        uint8 SR and bicubic images, ``(sH, sW)`` grey, ``(sH, sW, 3)`` RGB, or with the
        upscaled alpha as a last channel (``(sH, sW, 2)`` or ``(sH, sW, 4)``).
    """
    x = upscaler.net_input(image)
    y = self_ensemble(upscaler.sr, x) if self_ensemble_x8 else upscaler.sr(x)
    if y.shape != image.sr_shape:
        raise ModelError(f"{image.name}: the net's SR output is {y.shape[0]}x{y.shape[1]}, expected "
                         f"{image.sr_shape[0]}x{image.sr_shape[1]} (scale {image.scale})")
    sr = colour_output(image, to_uint8(y))
    bicubic = colour_output(image, to_uint8(image.bicubic_y))
    if image.alpha is not None:
        a = image.bicubic_alpha[..., None]
        sr, bicubic = (np.concatenate([im[..., None] if im.ndim == 2 else im, a], axis=2) for im in (sr, bicubic))
    return sr, bicubic


def side_by_side(left, right, gap=4):
    """``left | right`` with a mid-grey gap, for --compare."""
    h = left.shape[0]
    spacer = np.full((h, gap) + left.shape[2:], 128, dtype=np.uint8)
    if left.ndim == 3 and left.shape[2] in (2, 4):
        spacer[..., -1] = 255  # opaque
    return np.concatenate([left, spacer, right], axis=1)


def upscale_file(path, upscaler, out_dir, *, max_memory=DEFAULT_MAX_MEMORY, self_ensemble_x8=False, compare=False,
                 overwrite=False, per_pixel=None, resident=None):
    """Upscale one file into ``out_dir/<stem>.png`` (and ``<stem>_compare.png``), atomically.

    Parameters
    ----------
    upscaler : CaffeUpscaler
        From :func:`ddsr.evaluation.upscaler.load_upscaler`. If its settings have no ``tile``,
        one is chosen per image by :func:`choose_tile` under ``max_memory``.
    per_pixel : float, optional
        :func:`net_bytes_per_pixel` of the net, computed once by the caller for many files.
    resident : int, optional
        See :func:`choose_tile`: the resident bytes before the first file's forward.

    Returns
    -------
    dict
        ``{"status": "wrote" | "kept", "out": Path, "tile": int or None, "size": (h, w)}``.

    Raises
    ------
    InputError
        The file cannot be read.
    ModelError
        The net's output does not fit the image, or the memory budget is too small.
    """
    out, compare_out = output_paths(path, out_dir)
    if out.exists() and not overwrite:
        return {"status": "kept", "out": out, "tile": None, "size": None}
    image = read_image(path, upscaler.scale)
    tile = upscaler.settings.tile
    run = upscaler
    if tile is None:
        tile = choose_tile(upscaler, image, max_memory, per_pixel=per_pixel, resident=resident)
        if tile is not None:
            run = CaffeUpscaler(upscaler.net, upscaler.scale, dataclasses.replace(upscaler.settings, tile=tile),
                                net_param=upscaler.net_param, label=upscaler.label)
    sr, bicubic = super_resolve(run, image, self_ensemble_x8)
    write_png_atomic(out, sr)
    if compare:
        write_png_atomic(compare_out, side_by_side(bicubic, sr))
    return {"status": "wrote", "out": out, "tile": tile, "size": image.pixels.shape[:2]}
