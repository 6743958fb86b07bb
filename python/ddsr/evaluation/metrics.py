"""Image quality metrics of the SR protocol: PSNR, SSIM and IFC on the Y channel.

PSNR and SSIM are here; IFC, a longer port, lives in :mod:`ddsr.evaluation.ifc`.
:func:`measure` computes any of them for one image pair, as the protocol asks.
"""

import time

import numpy as np

from ..matlab import shave

__all__ = ["METRIC_NAMES", "psnr", "ssim", "check_metrics", "measure"]

METRIC_NAMES = ("psnr", "ssim", "ifc")


# Wang et al.'s ssim_index defaults: fspecial('gaussian', 11, 1.5), K = [0.01 0.03], L = 255
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03
_SSIM_L = 255.0


def _check_pair(reference, test):
    reference = np.asarray(reference)
    test = np.asarray(test)
    if reference.shape != test.shape:
        raise ValueError(f"image shapes differ: {reference.shape} vs {test.shape}")
    if reference.ndim != 2:
        raise ValueError(f"expected single-channel (H, W) images, got shape {reference.shape}")
    return reference, test


def psnr(reference, test, crop_border=0):
    """Peak signal-to-noise ratio in dB of two 8-bit single-channel images.

    Parameters
    ----------
    reference, test : ndarray, shape (H, W)
        Y channels in 0..255 (uint8, or float holding those values).
    crop_border : int
        Pixels shaved from each side first (the SR protocol shaves the scale).

    Returns
    -------
    float
        ``10 log10(255^2 / MSE)``; ``inf`` for identical images.

    Notes
    -----
    Mirrors the SRCNN/FSRCNN test code's ``compute_psnr`` on ``shave``'d uint8
    Y images, computed in double. Checked against the MATLAB per-image values
    in ``shared/reference`` (``tests/test_metrics.py``).
    """
    reference, test = _check_pair(reference, test)
    a = shave(reference, crop_border).astype(np.float64)
    b = shave(test, crop_border).astype(np.float64)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(255.0 ** 2 / mse))


def ssim(reference, test, crop_border=0):
    """Mean structural similarity of two 8-bit single-channel images.

    Parameters
    ----------
    reference, test : ndarray, shape (H, W)
        Y channels in 0..255 (uint8, or float holding those values).
    crop_border : int
        Pixels shaved from each side first (the SR protocol shaves the scale).

    Returns
    -------
    float
        The mean of the SSIM map over the valid region; 1 for identical images.

    Raises
    ------
    ValueError
        Shapes differ, images are not 2-D, or the shaved images are smaller
        than the 11x11 window.

    Notes
    -----
    Mirrors ``ssim_index(img1, img2)`` of Wang, Bovik, Sheikh and Simoncelli
    (the 2003 MATLAB release, defaults): window ``fspecial('gaussian', 11,
    1.5)``, ``K = [0.01 0.03]``, ``L = 255``, local statistics by
    ``filter2(window, ., 'valid')`` (weighted population variances), no
    downsampling, ``mssim = mean2(ssim_map)``. Computed by scikit-image's
    ``structural_similarity`` with ``gaussian_weights=True, sigma=1.5,
    win_size=11, use_sample_covariance=False, data_range=255``: its separable
    Gaussian with ``truncate=3.5`` is the same normalised 11x11 kernel, and it
    averages the map after cropping ``(11 - 1) / 2 = 5`` pixels from each side,
    which leaves exactly the ``'valid'`` region (the padded border values it
    drops are the only ones that see its edge mode). Inputs are converted to
    float64 first (skimage would keep float32 as float32).

    Checked per image against MATLAB's values in ``shared/reference``
    (57 bicubic Set5/Set14 images, tolerance 1e-4; the agreement is about 1e-13)
    and against the SRCNN-protocol set means in ``tests/test_metrics.py``.

    References
    ----------
    Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image quality
    assessment: from error visibility to structural similarity," IEEE
    Transactions on Image Processing, 13(4):600-612, 2004.
    """
    from skimage.metrics import structural_similarity

    reference, test = _check_pair(reference, test)
    a = shave(reference, crop_border).astype(np.float64)
    b = shave(test, crop_border).astype(np.float64)
    if min(a.shape) < _SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels "
                         f"after shaving, got {a.shape}")
    return float(structural_similarity(
        a, b,
        win_size=_SSIM_WINDOW,
        gaussian_weights=True,
        sigma=_SSIM_SIGMA,
        use_sample_covariance=False,
        data_range=_SSIM_L,
        K1=_SSIM_K1,
        K2=_SSIM_K2,
    ))


def _metric_function(name):
    """The metric implementation; IFC's module (and scipy) is imported on first use."""
    if name == "psnr":
        return psnr
    if name == "ssim":
        return ssim
    if name == "ifc":
        from .ifc import ifc
        return ifc
    raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRIC_NAMES)}")


def check_metrics(metrics):
    """Validate metric names and import their implementations (a clear error if one is missing)."""
    metrics = tuple(metrics)
    if not metrics:
        raise ValueError("no metrics requested")
    for name in metrics:
        if name not in METRIC_NAMES:
            raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRIC_NAMES)}")
        try:
            _metric_function(name)
        except ImportError as exc:
            raise ValueError(f"metric {name!r} is not available in this checkout ({exc})") from exc
    return metrics


def measure(hr_y, sr_y, scale, metrics=METRIC_NAMES, timings=None):
    """The protocol's metrics of one SR Y image against its HR Y, border ``scale`` shaved.

    Parameters
    ----------
    hr_y, sr_y : ndarray of uint8, shape (H, W)
    scale : int
        Pixels shaved from each side (``shave(im, [s s])`` of the SRCNN test code).
    metrics : sequence of str
        Any of ``"psnr"``, ``"ssim"``, ``"ifc"``.
    timings : dict, optional
        If given, each metric's time in seconds is added to ``timings[metric]``.

    Returns
    -------
    dict
        ``{metric: float}``: :func:`psnr`, :func:`ssim` and :func:`ddsr.evaluation.ifc.ifc`, each
        with ``crop_border=scale``, reference first.
    """
    if hr_y.shape != sr_y.shape:
        raise ValueError(f"HR {hr_y.shape} and SR {sr_y.shape} sizes differ")
    out = {}
    for name in metrics:
        fn = _metric_function(name)
        start = time.perf_counter()
        out[name] = float(fn(hr_y, sr_y, crop_border=scale))
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
    return out

