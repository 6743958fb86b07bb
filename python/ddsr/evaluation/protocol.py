"""The SR evaluation protocol, per image: the SRCNN/FSRCNN MATLAB test code, step by step.

1. HR image (uint8) -> ``modcrop(hr, s)`` -> Y of MATLAB ``rgb2ycbcr`` (a greyscale file is
   its own Y).
2. ``im2single`` then LR = ``imresize(y, 1/s, 'bicubic')`` in single precision, not rounded.
3. SR by a method: bicubic ``imresize(lr, s)`` (:class:`BicubicUpscaler`), or a Caffe deploy net
   (:mod:`ddsr.evaluation.upscaler`) fed the LR image or the bicubic image.
4. Clip to [0, 1], ``im2uint8`` (:func:`to_uint8`); metrics on the Y channel with ``s`` pixels
   shaved from each border (:mod:`ddsr.evaluation.metrics`).

Colour output (Fig. 7 of the paper: "Y by DDSR, Cb and Cr by bicubic interpolation"): the SR
Y with the Cb and Cr of the modcropped HR's ``rgb2ycbcr``, each taken through the same
single-precision MATLAB bicubic down- and upscale as Y (``im2single``, ``imresize(., 1/s)``,
``imresize(., s)``, ``im2uint8``), then ``ycbcr2rgb``. A greyscale image stays greyscale.

Every MATLAB operation comes from :mod:`ddsr.matlab`; nothing here reimplements one.
Checked in ``tests/test_evaluate.py``: the bicubic Set5 means against the SRCNN protocol's
published 4-decimal PSNR and 5-decimal SSIM (``docs/paper.md``).
"""

import time
from functools import cached_property

import numpy as np

from ..matlab import im2single, im2uint8, imresize, modcrop, rgb2y, rgb2ycbcr, ycbcr2rgb

__all__ = ["ImageError", "ProtocolImage", "prepare_image",
           "to_uint8", "colour_output", "BicubicUpscaler"]


class ImageError(ValueError):
    """One image cannot be evaluated (unreadable, or too small for the scale)."""


class ProtocolImage:
    """One HR image prepared for one scale, with every derived image computed at most once.

    Attributes
    ----------
    name : str
        The file's stem (``baby_GT``).
    scale : int
    hr : ndarray of uint8
        The modcropped HR image, ``(H, W)`` or ``(H, W, 3)``.
    hr_y : ndarray of uint8, shape (H, W)
        Its Y channel (the greyscale image itself when it has one channel).
    lr_y : ndarray of float32, shape (H/s, W/s)
        ``imresize(im2single(hr_y), 1/s)``: MATLAB bicubic in single precision, not rounded.
    bicubic_y : ndarray of float32, shape (H, W)
        ``imresize(lr_y, s)`` (computed on first use; ``bicubic_ms`` is its time).
    bicubic_cbcr : ndarray of uint8, shape (H, W, 2), or None
        Cb and Cr through the same down- and upscale, for colour output; None for greyscale.
    """

    def __init__(self, name, scale, hr):
        self.name = name
        self.scale = int(scale)
        self.hr = hr
        self.hr_y = rgb2y(hr)
        self.lr_y = imresize(im2single(self.hr_y), 1.0 / self.scale)
        self.bicubic_ms = None

    @property
    def is_colour(self):
        return self.hr.ndim == 3

    @cached_property
    def bicubic_y(self):
        start = time.perf_counter()
        out = imresize(self.lr_y, self.scale)
        self.bicubic_ms = 1000.0 * (time.perf_counter() - start)
        return out

    @cached_property
    def bicubic_cbcr(self):
        if not self.is_colour:
            return None
        ycbcr = rgb2ycbcr(self.hr)
        # Channel by channel: the same values as resizing the (H, W, 2) array, faster.
        planes = [im2uint8(imresize(imresize(im2single(np.ascontiguousarray(ycbcr[..., c])), 1.0 / self.scale),
                                    self.scale))
                  for c in (1, 2)]
        return np.stack(planes, axis=2)


def prepare_image(hr, scale, name=""):
    """Apply the protocol's first steps (modcrop, Y, single-precision bicubic LR) to one image.

    Parameters
    ----------
    hr : ndarray of uint8, (H, W) or (H, W, 3)
        The HR image as :func:`ddsr.matlab.imread` returns it.
    scale : int
    name : str
        Label used in messages and outputs.

    Returns
    -------
    ProtocolImage

    Raises
    ------
    ImageError
        The image is too small: after modcrop it must be larger than ``2 * scale`` pixels on
        each side (the shaved border) and hold at least one LR pixel.
    """
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    hr = np.asarray(hr)
    if hr.dtype != np.uint8 or hr.ndim not in (2, 3) or (hr.ndim == 3 and hr.shape[2] != 3):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, 3) image, got {hr.dtype} {hr.shape}")
    hr = modcrop(hr, scale)
    h, w = hr.shape[:2]
    if min(h, w) <= 2 * scale:
        raise ImageError(f"{name or 'image'}: {h}x{w} after modcrop is too small for scale {scale} "
                         f"(the {scale}-pixel border is shaved before the metrics)")
    return ProtocolImage(name, scale, hr)


def to_uint8(sr):
    """The protocol's last step: clip a float SR image to [0, 1], then MATLAB ``im2uint8``."""
    return im2uint8(np.clip(np.asarray(sr, dtype=np.float64), 0.0, 1.0))


def colour_output(image, sr_y):
    """The colour SR image: SR Y with the bicubic Cb and Cr, through MATLAB ``ycbcr2rgb``.

    Parameters
    ----------
    image : ProtocolImage
    sr_y : ndarray of uint8, shape (H, W)

    Returns
    -------
    ndarray of uint8
        ``(H, W, 3)`` RGB for a colour image; ``sr_y`` itself for a greyscale one.
    """
    if not image.is_colour:
        return sr_y
    ycbcr = np.concatenate([sr_y[..., None], image.bicubic_cbcr], axis=2)
    return ycbcr2rgb(ycbcr)



class BicubicUpscaler:
    """The bicubic baseline: ``imresize(lr, s)`` in single precision.

    ``upscale(image)`` returns ``(sr_y float32, milliseconds)``; the time is that of the
    upscale itself (shared with a net fed the bicubic image: it is computed once).
    """

    label = "Bicubic"

    def upscale(self, image):
        sr = image.bicubic_y
        return sr, image.bicubic_ms or 0.0

