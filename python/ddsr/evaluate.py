"""The SR evaluation protocol, per image, for bicubic and for Caffe deploy nets.

The protocol is the SRCNN/FSRCNN MATLAB test code's (``shared/paper/SUMMARY.md``, "The
evaluation protocol behind those numbers"), step by step:

1. HR image (uint8) -> ``modcrop(hr, s)`` -> Y of MATLAB ``rgb2ycbcr`` (a greyscale file is
   its own Y).
2. ``im2single`` then LR = ``imresize(y, 1/s, 'bicubic')`` in single precision, not rounded.
3. SR by a method: bicubic ``imresize(lr, s)``, or a Caffe deploy net fed the LR image
   (``input="lr"``, nets that upsample themselves: DDSR, FSRCNN) or the bicubic image
   (``input="bicubic"``, SRCNN/VDSR-style nets).
4. Clip to [0, 1], ``im2uint8``; metrics on the Y channel with ``s`` pixels shaved from each
   border: PSNR, SSIM (:mod:`ddsr.metrics`), IFC (:mod:`ddsr.ifc`).

Colour output (Fig. 7 of the paper: "Y by DDSR, Cb and Cr by bicubic interpolation"): the SR
Y with the Cb and Cr of the modcropped HR's ``rgb2ycbcr``, each taken through the same
single-precision MATLAB bicubic down- and upscale as Y (``im2single``, ``imresize(., 1/s)``,
``imresize(., s)``, ``im2uint8``), then ``ycbcr2rgb``. A greyscale image stays greyscale.

Caffe nets (:class:`CaffeUpscaler`): the deploy net is reshaped to each image; its input may
be replicate-padded (``pad_input``, MATLAB-trained nets such as SRCNN/FSRCNN need it: Caffe pads
with zeros) and tiled (``tile``; the overlap defaults to :func:`context_radius`, which makes
tiles exact). Settings can be recorded next to a deploy prototxt in a sidecar file
(:func:`read_sidecar`). Before Caffe sees a weights file, :func:`check_weights` compares it
with the net, because Caffe aborts the process on a mismatch.

Every MATLAB operation comes from :mod:`ddsr.matlab`; nothing here reimplements one.
Checked in ``tests/test_evaluate.py``: the bicubic Set5 means against the SRCNN protocol's
published 4-decimal PSNR and 5-decimal SSIM (``SUMMARY.md``), input padding against
``scipy.ndimage`` filters of known nets, tiled against whole-image forwards.
"""

import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from math import ceil
from pathlib import Path

import numpy as np

from .matlab import im2single, im2uint8, imread, imresize, modcrop, rgb2y, rgb2ycbcr, shave, ycbcr2rgb

__all__ = [
    "IMAGE_EXTENSIONS",
    "METRIC_NAMES",
    "INPUT_KINDS",
    "RECORD_FIELDS",
    "ImageError",
    "NetOutputError",
    "ModelError",
    "ProtocolImage",
    "EvalSettings",
    "EvalResult",
    "list_set_images",
    "prepare_image",
    "to_uint8",
    "check_metrics",
    "measure",
    "colour_output",
    "BicubicUpscaler",
    "CaffeUpscaler",
    "sidecar_path",
    "read_sidecar",
    "resolve_settings",
    "parse_deploy",
    "context_radius",
    "stored_weight_shapes",
    "check_weights",
    "load_net",
    "use_gpu",
    "forward_padded",
    "forward_tiled",
    "shift_output",
    "evaluate",
]

IMAGE_EXTENSIONS = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".ppm", ".pgm", ".pnm")
METRIC_NAMES = ("psnr", "ssim", "ifc")
INPUT_KINDS = ("lr", "bicubic")


class ImageError(ValueError):
    """One image cannot be evaluated (unreadable, or too small for the scale)."""


class NetOutputError(ValueError):
    """A net's output is not the size the protocol needs (scale x input, or the input's size)."""


class ModelError(ValueError):
    """A deploy net, its weights or its sidecar file is missing, malformed or mismatched."""


# ---------------------------------------------------------------------------------------------
# Images and the protocol
# ---------------------------------------------------------------------------------------------

def list_set_images(data_root, set_name):
    """The image files of one test set, sorted by name.

    Parameters
    ----------
    data_root : str or path-like
        Folder holding one folder per set (``data/`` by default, ``shared/datasets``).
    set_name : str
        ``Set5``, ``Set14``, ``BSD200``, ...

    Returns
    -------
    list of Path

    Raises
    ------
    ValueError
        No folder ``data_root/set_name`` (an unknown set), or a folder without images.
    """
    folder = Path(data_root) / set_name
    if not folder.is_dir():
        known = sorted(p.name for p in Path(data_root).iterdir() if p.is_dir()) if Path(data_root).is_dir() else []
        hint = f" (sets there: {', '.join(known)})" if known else f" ({data_root} has no set folders)"
        raise ValueError(f"unknown set {set_name!r}: no folder {folder}{hint}; "
                         f"tools/fetch_datasets.py fetches the paper's sets")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"empty set {set_name!r}: no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return files


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


def _metric_function(name):
    """The metric implementation, imported on first use (``ddsr.metrics`` / ``ddsr.ifc``)."""
    if name == "psnr":
        from .metrics import psnr
        return psnr
    if name == "ssim":
        from .metrics import ssim
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
        ``{metric: float}``. PSNR and SSIM are :func:`ddsr.metrics.psnr` / ``ssim`` with
        ``crop_border=scale``; IFC is :func:`ddsr.ifc.ifc` of the shaved images, reference first.
    """
    if hr_y.shape != sr_y.shape:
        raise ValueError(f"HR {hr_y.shape} and SR {sr_y.shape} sizes differ")
    out = {}
    for name in metrics:
        fn = _metric_function(name)
        start = time.perf_counter()
        if name == "ifc":
            out[name] = float(fn(shave(hr_y, scale), shave(sr_y, scale)))
        else:
            out[name] = float(fn(hr_y, sr_y, crop_border=scale))
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
    return out


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


# ---------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------

class BicubicUpscaler:
    """The bicubic baseline: ``imresize(lr, s)`` in single precision.

    ``upscale(image)`` returns ``(sr_y float32, milliseconds)``; the time is that of the
    upscale itself (shared with a net fed the bicubic image: it is computed once).
    """

    label = "Bicubic"

    def upscale(self, image):
        sr = image.bicubic_y
        return sr, image.bicubic_ms or 0.0


@dataclass(frozen=True)
class EvalSettings:
    """How a deploy net is run on an image (from the CLI and the net's sidecar file).

    Attributes
    ----------
    input : {"lr", "bicubic"}
        What the net is fed: the LR Y (it upsamples itself) or the bicubic-upscaled Y.
    pad_input : int
        Replicate-pad the net input by this many pixels on each side, crop the output back.
    output_offset : tuple of int
        ``(dy, dx)``: the net's output pixel ``(i, j)`` estimates HR pixel ``(i+dy, j+dx)``; the
        output is shifted by it (edge pixels repeated) before the metrics. ``(1, 1)`` reproduces
        the official FSRCNN x3 demo's one-pixel-shifted comparison.
    tile : int or None
        Core tile size in net-input pixels; None runs the whole image at once.
    tile_overlap : int or None
        Context pixels added on each side of a tile; None = :func:`context_radius` of the net.
    name : str or None
        Row label from the sidecar.
    """

    input: str = "lr"
    pad_input: int = 0
    output_offset: tuple = (0, 0)
    tile: int = None
    tile_overlap: int = None
    name: str = None

    def __post_init__(self):
        if self.input not in INPUT_KINDS:
            raise ValueError(f"input must be one of {INPUT_KINDS}, got {self.input!r}")
        if int(self.pad_input) < 0:
            raise ValueError(f"pad_input must be >= 0, got {self.pad_input}")
        if len(self.output_offset) != 2:
            raise ValueError(f"output_offset must be (dy, dx), got {self.output_offset!r}")
        if self.tile is not None and int(self.tile) < 1:
            raise ValueError(f"tile must be a positive size, got {self.tile}")
        if self.tile_overlap is not None and int(self.tile_overlap) < 0:
            raise ValueError(f"tile overlap must be >= 0, got {self.tile_overlap}")


SIDECAR_KEYS = {"input", "pad_input", "output_offset", "name", "scale", "comment"}


def sidecar_path(deploy):
    """The sidecar file of a deploy prototxt, if one exists (else None).

    ``models/srcnn_x3_deploy.prototxt`` -> ``models/srcnn_x3_deploy.eval.json`` (preferred) or
    ``models/srcnn_x3_deploy.prototxt.eval.json``.
    """
    deploy = Path(deploy)
    for candidate in (deploy.with_suffix(".eval.json"), Path(str(deploy) + ".eval.json")):
        if candidate.is_file():
            return candidate
    return None


def read_sidecar(deploy, scale=None):
    """Read the evaluation settings recorded next to a deploy prototxt.

    The sidecar ``<deploy stem>.eval.json`` (or ``<deploy>.eval.json``) is a JSON object, all
    keys optional::

        {"input": "lr" | "bicubic",   # what the net is fed (default "lr")
         "pad_input": 8,              # replicate padding of the net input, in its pixels
         "output_offset": [1, 1],     # the output estimates HR pixel (i+dy, j+dx)
         "name": "FSRCNN",            # Table 3 row label
         "scale": 3,                  # checked against the scale evaluated
         "comment": "..."}

    Unknown keys are warned about and ignored.

    Returns
    -------
    (dict, Path or None)
        The settings found (empty when there is no sidecar) and the file they came from.

    Raises
    ------
    ModelError
        The file is not JSON, holds a wrong type, or records another scale.
    """
    path = sidecar_path(deploy)
    if path is None:
        return {}, None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read the evaluation sidecar ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: the evaluation sidecar must hold a JSON object")
    unknown = sorted(set(data) - SIDECAR_KEYS)
    if unknown:
        warnings.warn(f"{path}: ignoring unknown keys {unknown} (known: {sorted(SIDECAR_KEYS)})")
    out = {}
    if "input" in data:
        if data["input"] not in INPUT_KINDS:
            raise ModelError(f"{path}: input must be one of {INPUT_KINDS}, got {data['input']!r}")
        out["input"] = data["input"]
    if "pad_input" in data:
        if not isinstance(data["pad_input"], int) or data["pad_input"] < 0:
            raise ModelError(f"{path}: pad_input must be an integer >= 0, got {data['pad_input']!r}")
        out["pad_input"] = data["pad_input"]
    if "output_offset" in data:
        off = data["output_offset"]
        if isinstance(off, int):
            off = [off, off]
        if not (isinstance(off, list) and len(off) == 2 and all(isinstance(v, int) for v in off)):
            raise ModelError(f"{path}: output_offset must be [dy, dx] integers, got {data['output_offset']!r}")
        out["output_offset"] = tuple(off)
    if "name" in data:
        out["name"] = str(data["name"])
    if "scale" in data and scale is not None and int(data["scale"]) != int(scale):
        raise ModelError(f"{path}: recorded for scale {data['scale']}, evaluated at scale {scale}")
    return out, path


def resolve_settings(deploy, scale, **overrides):
    """Combine a deploy net's sidecar with explicit settings; explicit (not None) values win.

    Returns
    -------
    (EvalSettings, Path or None)
    """
    found, path = read_sidecar(deploy, scale)
    merged = dict(found)
    merged.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return EvalSettings(**merged), path
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{deploy}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Caffe
# ---------------------------------------------------------------------------------------------

def _caffe():
    os.environ.setdefault("GLOG_minloglevel", "2")  # keep glog's per-layer chatter off stderr
    import caffe

    return caffe


def parse_deploy(deploy):
    """Parse a deploy prototxt into a ``caffe_pb2.NetParameter`` (a clear error, not a glog abort)."""
    deploy = Path(deploy)
    if not deploy.is_file():
        raise ModelError(f"deploy net {deploy} does not exist")
    _caffe()
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    net_param = caffe_pb2.NetParameter()
    try:
        text_format.Merge(deploy.read_text(), net_param)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise ModelError(f"{deploy}: not a Caffe net definition ({exc})") from exc
    if not net_param.layer and not net_param.layers:
        raise ModelError(f"{deploy}: the net has no layers")
    return net_param


def _layer_kernel(conv_param):
    """Largest kernel extent, pad and stride of a Convolution/Deconvolution parameter."""
    ks = list(conv_param.kernel_size) + [v for v in (conv_param.kernel_h, conv_param.kernel_w) if v]
    pads = list(conv_param.pad) + [v for v in (conv_param.pad_h, conv_param.pad_w) if v]
    strides = list(conv_param.stride) + [v for v in (conv_param.stride_h, conv_param.stride_w) if v]
    dil = list(conv_param.dilation) or [1]
    return max(ks), (max(pads) if pads else 0), (max(strides) if strides else 1), max(dil)


_POINTWISE_LAYERS = {
    "Input", "ReLU", "PReLU", "ELU", "Sigmoid", "TanH", "AbsVal", "Power", "Exp", "Log", "BNLL",
    "Threshold", "Eltwise", "Scale", "Bias", "BatchNorm", "Dropout", "Split", "Concat", "Silence",
    "Clip", "Swish",
}


def context_radius(net_param):
    """An upper bound of how far (in net-input pixels) an output pixel sees, or None.

    Sums, along the longest path, each spatial layer's one-sided extent converted to
    input-pixel units: a convolution of kernel ``k``, dilation ``d`` and pad ``p`` adds
    ``max(p, (k-1)d - p)`` pixels of its input grid; a deconvolution of stride ``s`` adds
    ``ceil(max(p, k-1-p) / s) + 1`` pixels of its input; pooling like a convolution. A tile
    forwarded with at least this many context pixels on each side gives the same centre as the
    whole image (Caffe's zero padding at the tile edge cannot reach it).

    Returns None when the net has a layer this function does not know (then give the overlap).
    """
    # blob name -> (radius in net-input pixels, output pixels per input pixel), as exact
    # fractions: 2 + 1/3 + 1/3 + 1/3 must be 3, not 3.0000000000000004
    one, zero = Fraction(1), Fraction(0)
    state = {}
    layers = net_param.layer
    for name in net_param.input:
        state[name] = (zero, one)
    for layer in layers:
        bottoms = [state.get(b, (zero, one)) for b in layer.bottom]
        radius = max((r for r, _ in bottoms), default=zero)
        factor = bottoms[0][1] if bottoms else one
        kind = layer.type
        if kind == "Convolution":
            k, p, st, d = _layer_kernel(layer.convolution_param)
            span = (k - 1) * d
            radius += max(p, span - p) / factor
            factor /= st
        elif kind == "Deconvolution":
            k, p, st, d = _layer_kernel(layer.convolution_param)
            span = (k - 1) * d
            radius += (ceil(Fraction(max(p, span - p), st)) + 1) / factor
            factor *= st
        elif kind == "Pooling":
            pp = layer.pooling_param
            if pp.global_pooling:
                return None
            k = pp.kernel_size or max(pp.kernel_h, pp.kernel_w)
            p = pp.pad or max(pp.pad_h, pp.pad_w)
            st = pp.stride or max(pp.stride_h, pp.stride_w) or 1
            radius += max(p, k - 1 - p) / factor
            factor /= st
        elif kind not in _POINTWISE_LAYERS:
            return None
        for top in layer.top:
            state[top] = (radius, factor)
    if not state:
        return 0
    return int(ceil(max(r for r, _ in state.values())))


def _is_legacy_blob(blob_proto):
    # Caffe's Blob::FromProto reads (num, channels, height, width) only when one of
    # them is set; otherwise the shape field, whose absence means a scalar (0-axis) blob.
    return any(blob_proto.HasField(f) for f in ("num", "channels", "height", "width"))


def _blob_shape(blob_proto):
    if _is_legacy_blob(blob_proto):
        return tuple(int(d) for d in (blob_proto.num, blob_proto.channels, blob_proto.height, blob_proto.width))
    return tuple(int(d) for d in blob_proto.shape.dim)


def _same_shape(net_shape, stored_shape, legacy):
    if not legacy:
        return tuple(net_shape) == tuple(stored_shape)
    # Caffe's Blob::ShapeEquals for legacy (num, channels, height, width) blobs.
    padded = (1,) * (4 - len(net_shape)) + tuple(net_shape)
    return len(net_shape) <= 4 and padded == tuple(stored_shape)


def _fmt(shape):
    return "x".join(str(d) for d in shape)


def stored_weight_shapes(weights):
    """``{layer name: [(shape, legacy), ...]}`` of a ``.caffemodel`` (binary proto or HDF5).

    Raises
    ------
    ModelError
        Missing, unreadable, or not a Caffe weights file.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise ModelError(f"weights {weights} do not exist")
    if weights.suffix in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(weights, "r") as f:
                data = f["data"]
                return {name: [(tuple(data[name][str(i)].shape), False) for i in range(len(data[name]))]
                        for name in data}
        except (OSError, KeyError) as exc:
            raise ModelError(f"{weights}: not a Caffe HDF5 weights file ({exc})") from exc
    _caffe()
    from caffe.proto import caffe_pb2
    from google.protobuf.message import DecodeError

    param = caffe_pb2.NetParameter()
    try:
        param.ParseFromString(weights.read_bytes())
    except (DecodeError, RuntimeError) as exc:
        raise ModelError(f"{weights}: not a Caffe weights file ({exc})") from exc
    out = {}
    for layer in list(param.layer) + list(param.layers):
        if layer.blobs:
            out[layer.name] = [(_blob_shape(b), _is_legacy_blob(b)) for b in layer.blobs]
    if not out and not param.layer and not param.layers:
        raise ModelError(f"{weights}: not a Caffe weights file (no layers)")
    return out


def check_weights(net_param_shapes, weights, deploy="the net"):
    """Check that a weights file fits a net before Caffe copies it (Caffe aborts on a mismatch).

    Parameters
    ----------
    net_param_shapes : dict
        ``{layer name: [blob shape, ...]}`` of the constructed net (``net.params``).
    weights : path-like
    deploy : str
        The deploy net's name for messages.

    Raises
    ------
    ModelError
        A learnable layer of the net has no weights in the file (it would silently keep its
        random initialisation), or a different number or shape of blobs.
    """
    stored = stored_weight_shapes(weights)
    for name, shapes in net_param_shapes.items():
        if name not in stored:
            raise ModelError(f"weights {weights} do not match {deploy}: they have no layer {name!r} "
                             f"(the net's learnable layers: {', '.join(net_param_shapes)})")
        have = stored[name]
        if len(have) != len(shapes):
            raise ModelError(f"weights {weights} do not match {deploy}: layer {name!r} has {len(shapes)} "
                             f"blobs in the net, {len(have)} in the weights")
        for i, (shape, (stored_shape, legacy)) in enumerate(zip(shapes, have)):
            if not _same_shape(shape, stored_shape, legacy):
                raise ModelError(f"weights {weights} do not match {deploy}: layer {name!r} blob {i} is "
                                 f"{_fmt(shape)} in the net, {_fmt(stored_shape)} in the weights")


def use_gpu(gpu):
    """Switch pycaffe to GPU ``gpu``, after checking in a child process that it can.

    A CPU-only Caffe aborts the whole process (glog FATAL) on ``set_mode_gpu``; the probe turns
    that into an error message.

    Raises
    ------
    ModelError
        This pycaffe has no CUDA, or the device does not exist.
    """
    gpu = int(gpu)
    probe = ("import caffe; caffe.set_device(%d); caffe.set_mode_gpu(); "
             "import numpy as np; print('ok')" % gpu)
    env = dict(os.environ, GLOG_minloglevel="2")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    if result.returncode != 0 or "ok" not in result.stdout:
        lines = [ln for ln in (result.stderr or "").strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit status {result.returncode}"
        if "CPU-only" in (result.stderr or "") or "CPU_ONLY" in (result.stderr or ""):
            why = "this pycaffe was built without CUDA (CPU only); leave out --gpu to run on the CPU"
        raise ModelError(f"cannot use GPU {gpu}: {why}")
    caffe = _caffe()
    caffe.set_device(gpu)
    caffe.set_mode_gpu()


def load_net(deploy, weights):
    """Build a deploy net in TEST phase and load its weights, checking everything first.

    Returns
    -------
    (caffe.Net, NetParameter)

    Raises
    ------
    ModelError
        Missing files, an unparsable prototxt, a net without exactly one input blob, or weights
        that do not fit (see :func:`check_weights`).
    """
    net_param = parse_deploy(deploy)
    if weights is None:
        raise ModelError(f"no weights given for {deploy}")
    stored_weight_shapes(weights)  # existence and format, before building anything
    caffe = _caffe()
    net = caffe.Net(str(deploy), caffe.TEST)
    if len(net.inputs) != 1:
        raise ModelError(f"{deploy}: a deploy net needs exactly one input blob, found {list(net.inputs)}")
    shapes = {name: [tuple(b.data.shape) for b in blobs] for name, blobs in net.params.items()}
    check_weights(shapes, weights, deploy=str(deploy))
    net.copy_from(str(weights))
    return net, net_param


def _forward_whole(net, x, factor):
    """Reshape the net to ``x``, run it, check the output size, return the output (H', W')."""
    in_name = net.inputs[0]
    out_name = net.outputs[-1]
    h, w = x.shape
    net.blobs[in_name].reshape(1, 1, h, w)
    net.reshape()
    out_shape = tuple(net.blobs[out_name].data.shape)
    want = (1, 1, factor * h, factor * w)
    if out_shape != want:
        kind = f"{factor} x input" if factor != 1 else "the input's size"
        raise NetOutputError(f"net output {out_name!r} is {_fmt(out_shape)} for a {_fmt((1, 1, h, w))} "
                             f"input; expected {_fmt(want)} ({kind})")
    net.blobs[in_name].data[...] = x
    net.forward()
    return np.array(net.blobs[out_name].data[0, 0], dtype=np.float32)


def forward_tiled(net, x, factor, tile, overlap):
    """Run a fully convolutional net over ``x`` tile by tile and assemble the output.

    Each core tile of ``tile x tile`` input pixels is forwarded with ``overlap`` pixels of
    real context on each side (fewer at the image border, where the whole image has Caffe's
    padding too), and only the core's output is kept. With ``overlap >=``
    :func:`context_radius` the result equals the whole-image forward up to float rounding.
    """
    h, w = x.shape
    out = np.empty((factor * h, factor * w), dtype=np.float32)
    for r0 in range(0, h, tile):
        r1 = min(r0 + tile, h)
        a0, a1 = max(0, r0 - overlap), min(h, r1 + overlap)
        for c0 in range(0, w, tile):
            c1 = min(c0 + tile, w)
            b0, b1 = max(0, c0 - overlap), min(w, c1 + overlap)
            y = _forward_whole(net, x[a0:a1, b0:b1], factor)
            out[factor * r0:factor * r1, factor * c0:factor * c1] = \
                y[factor * (r0 - a0):factor * (r1 - a0), factor * (c0 - b0):factor * (c1 - b0)]
    return out


def forward_padded(net, x, factor, pad=0, tile=None, overlap=0):
    """Forward ``x`` (H, W) through a net, optionally replicate-padded and tiled.

    Parameters
    ----------
    net : caffe.Net
        One input blob (1 x 1 x H x W), output ``factor * H x factor * W``.
    x : ndarray of float32, shape (H, W)
    factor : int
        Output pixels per input pixel: the scale for nets fed the LR image, 1 for nets fed the
        bicubic image.
    pad : int
        Replicate-pad the input by ``pad`` pixels on each side (MATLAB ``padarray(x, [pad pad],
        'replicate')``), then crop ``factor * pad`` output pixels from each side.
    tile, overlap : int or None
        See :func:`forward_tiled`; ``tile=None`` (or a tile covering the image) runs it whole.

    Returns
    -------
    ndarray of float32, shape (factor * H, factor * W)
    """
    x = np.asarray(x, dtype=np.float32)
    if pad:
        x = np.pad(x, pad, mode="edge")
    if tile is None or (tile >= x.shape[0] and tile >= x.shape[1]):
        y = _forward_whole(net, x, factor)
    else:
        y = forward_tiled(net, x, factor, tile, overlap)
    if pad:
        c = factor * pad
        y = y[c:-c, c:-c]
    return y


def shift_output(y, offset):
    """Shift an SR image so that pixel ``(i, j)`` holds the estimate of HR pixel ``(i, j)``.

    ``offset = (dy, dx)`` says the net's pixel ``(i, j)`` estimates HR pixel ``(i+dy, j+dx)``;
    the shifted image is ``y[i-dy, j-dx]`` with edge pixels repeated where that falls outside.
    With ``|dy|, |dx| <= scale`` the repeated pixels are all in the shaved border, so the
    metrics compare exactly the windows the official FSRCNN x3 demo compares.
    """
    dy, dx = (int(v) for v in offset)
    if dy == 0 and dx == 0:
        return y
    h, w = y.shape
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    return y[np.ix_(rows, cols)]


class CaffeUpscaler:
    """A Caffe deploy net applied with the protocol's settings.

    Parameters
    ----------
    net : caffe.Net
    scale : int
    settings : EvalSettings
    net_param : NetParameter, optional
        For the automatic tile overlap (:func:`context_radius`).
    label : str

    ``upscale(image)`` returns ``(sr_y float32, forward milliseconds)``. The first call runs one
    untimed warm-up forward (memory allocation, lazy initialisation) so that it is not timed.
    """

    def __init__(self, net, scale, settings, net_param=None, label="model"):
        self.net = net
        self.scale = int(scale)
        self.settings = settings
        self.label = label
        self.factor = self.scale if settings.input == "lr" else 1
        overlap = settings.tile_overlap
        if settings.tile is not None and overlap is None:
            overlap = context_radius(net_param) if net_param is not None else None
            if overlap is None:
                raise ModelError("cannot bound the net's receptive field (unknown layer types); "
                                 "give the tile overlap explicitly")
        self.tile_overlap = overlap
        self._warm = False

    def _run(self, x):
        s = self.settings
        return forward_padded(self.net, x, self.factor, pad=s.pad_input, tile=s.tile,
                              overlap=self.tile_overlap or 0)

    def upscale(self, image):
        x = image.lr_y if self.settings.input == "lr" else image.bicubic_y
        if not self._warm:
            self._run(x)
            self._warm = True
        start = time.perf_counter()
        y = self._run(x)
        ms = 1000.0 * (time.perf_counter() - start)
        if y.shape != image.hr_y.shape:
            raise NetOutputError(f"{image.name}: SR output {_fmt(y.shape)} differs from the HR image "
                                 f"{_fmt(image.hr_y.shape)}")
        return shift_output(y, self.settings.output_offset), ms


# ---------------------------------------------------------------------------------------------
# A whole run
# ---------------------------------------------------------------------------------------------

RECORD_FIELDS = ("set", "scale", "image", "psnr", "ssim", "ifc", "forward_ms", "h", "w")


@dataclass
class EvalResult:
    """What :func:`evaluate` found.

    Attributes
    ----------
    records : list of dict
        One per evaluated image and scale, keys :data:`RECORD_FIELDS` (metrics not computed are
        absent); ``h, w`` are the modcropped HR size.
    baseline : list of dict
        The same for the bicubic baseline (empty unless requested).
    errors : list of str
        Images that could not be evaluated, one message each.
    timings : dict
        Seconds spent per metric, and in ``"prepare"`` (reading, modcrop, LR).
    """

    records: list
    baseline: list
    errors: list
    timings: dict


def _measure_pair(hr_y, sr8, bicubic8, scale, metrics):
    """The metrics of an SR image and, optionally, of its bicubic baseline (a worker's task)."""
    timings = {}
    values = measure(hr_y, sr8, scale, metrics, timings)
    base = measure(hr_y, bicubic8, scale, metrics, timings) if bicubic8 is not None else None
    return values, base, timings


class _Done:
    """A finished computation with the interface of a ``concurrent.futures.Future``."""

    def __init__(self, fn, *args):
        try:
            self._value, self._exc = fn(*args), None
        except ValueError as exc:
            self._value, self._exc = None, exc

    def result(self):
        if self._exc is not None:
            raise self._exc
        return self._value


def evaluate(data_root, sets, scales, upscaler_for_scale, metrics=METRIC_NAMES, baseline=False,
             image_sink=None, progress=None, jobs=1):
    """Evaluate a method on test sets at several scales with the protocol.

    Parameters
    ----------
    data_root : path-like
        Folder holding the set folders.
    sets : sequence of str
    scales : sequence of int
    upscaler_for_scale : callable
        ``scale -> upscaler`` (an object with ``upscale(image) -> (sr float, ms)``), called once
        per scale just before that scale is evaluated, so one net is in memory at a time.
    metrics : sequence of str
    baseline : bool
        Also measure the bicubic baseline on the same prepared images (the LR and bicubic images
        are computed once per image and scale and shared).
    image_sink : callable, optional
        ``(set_name, scale, image, sr_uint8)``, called for each SR image (e.g. to save it).
    progress : tqdm-like, optional
        Its ``update(1)`` is called once per image and scale; ``set_description`` per set.
    jobs : int
        Processes computing the metrics (the most expensive part: IFC). With ``jobs > 1`` the
        images are still read, upscaled and forwarded in this process, in order; only
        :func:`measure` runs in worker processes. Results do not depend on ``jobs``.

    Returns
    -------
    EvalResult
        Records in set, image order within each scale, scales in the given order.

    Raises
    ------
    ValueError
        An unknown or empty set, or a bad scale (before anything is computed).
    NetOutputError
        A net's output has the wrong size.
    """
    scales = [int(s) for s in scales]
    if not scales or min(scales) < 1:
        raise ValueError(f"scales must be positive integers, got {scales}")
    if not sets:
        raise ValueError("no sets given")
    if int(jobs) < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    metrics = check_metrics(metrics)
    files = {name: list_set_images(data_root, name) for name in sets}
    bicubic = BicubicUpscaler()
    result = EvalResult([], [], [], {"prepare": 0.0})
    unreadable = {}
    pending = []

    def tick():
        if progress is not None:
            progress.update(1)

    def collect(keep):
        # Take finished measurements in submission order, leaving at most `keep` in flight.
        while len(pending) > keep:
            future, base, ms, bms, where = pending.pop(0)
            try:
                values, bvalues, timings = future.result()
            except ValueError as exc:  # e.g. too small for IFC's pyramid, or a flat image
                result.errors.append(f"{where}: {exc}")
                tick()
                continue
            for k, v in timings.items():
                result.timings[k] = result.timings.get(k, 0.0) + v
            result.records.append({**base, **values, "forward_ms": ms})
            if bvalues is not None:
                result.baseline.append({**base, **bvalues, "forward_ms": bms})
            tick()

    executor = None
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        executor = ProcessPoolExecutor(max_workers=int(jobs))
    try:
        for scale in scales:
            upscaler = upscaler_for_scale(scale)
            for set_name in sets:
                if progress is not None:
                    progress.set_description(f"{set_name} x{scale}")
                for path in files[set_name]:
                    if path in unreadable:
                        tick()
                        continue
                    start = time.perf_counter()
                    try:
                        image = prepare_image(imread(path), scale, name=path.stem)
                    except OSError as exc:
                        unreadable[path] = str(exc)
                        result.errors.append(str(exc))
                        tick()
                        continue
                    except ImageError as exc:
                        result.errors.append(f"{path}: {exc}")
                        tick()
                        continue
                    result.timings["prepare"] += time.perf_counter() - start
                    base = {"set": set_name, "scale": scale, "image": path.stem,
                            "h": image.hr_y.shape[0], "w": image.hr_y.shape[1]}
                    sr, ms = upscaler.upscale(image)
                    sr8 = to_uint8(sr)
                    bic8, bms = None, None
                    if baseline:
                        bsr, bms = bicubic.upscale(image)
                        bic8 = to_uint8(bsr)
                    args = (image.hr_y, sr8, bic8, scale, metrics)
                    future = executor.submit(_measure_pair, *args) if executor else _Done(_measure_pair, *args)
                    pending.append((future, base, ms, bms, f"{path}: x{scale}"))
                    if image_sink is not None:
                        image_sink(set_name, scale, image, sr8)
                    collect(keep=2 * int(jobs))
            del upscaler
        collect(keep=0)
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    return result
