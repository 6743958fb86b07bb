"""Running a Caffe deploy net over an image: reshaped to it, padded, tiled, shifted.

The deploy net is reshaped to each image; its input may be replicate-padded (``pad_input``)
and tiled (``tile``; the overlap defaults to :func:`context_radius`, which makes tiles exact).
:func:`load_upscaler` is the one way to get a ready net from a deploy prototxt, weights and
settings; every tool that runs a net uses it. Checked in ``tests/test_evaluate.py``: input
padding against ``scipy.ndimage`` filters of known nets, tiled against whole-image forwards.
"""

import time
from fractions import Fraction
from math import ceil

import numpy as np

from .deploy_net import ModelError, NetOutputError, format_shape, load_net, resolve_settings, use_gpu

__all__ = ["context_radius", "forward_padded", "forward_tiled", "shift_output", "CaffeUpscaler",
           "load_upscaler"]


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
        raise NetOutputError(f"net output {out_name!r} is {format_shape(out_shape)} for a {format_shape((1, 1, h, w))} "
                             f"input; expected {format_shape(want)} ({kind})")
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
    ``sr(x)`` is the same SR mapping on a net input array (what ``upscale`` runs on
    ``net_input(image)``), for callers that transform the input first (the self-ensemble).
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

    def net_input(self, image):
        """What the net is fed for ``image``: its LR Y, or its bicubic-upscaled Y."""
        return image.lr_y if self.settings.input == "lr" else image.bicubic_y

    def sr(self, x):
        """The SR Y (float32) of a net input array: padded, forwarded (tiled), shifted onto the HR grid."""
        s = self.settings
        y = forward_padded(self.net, x, self.factor, pad=s.pad_input, tile=s.tile,
                           overlap=self.tile_overlap or 0)
        return shift_output(y, s.output_offset)

    def upscale(self, image):
        x = self.net_input(image)
        if not self._warm:
            self.sr(x)
            self._warm = True
        start = time.perf_counter()
        y = self.sr(x)
        ms = 1000.0 * (time.perf_counter() - start)
        if y.shape != image.hr_y.shape:
            raise NetOutputError(f"{image.name}: SR output {format_shape(y.shape)} differs from the HR image "
                                 f"{format_shape(image.hr_y.shape)}")
        return y, ms


def load_upscaler(deploy, weights, scale, *, label="model", gpu=None, **overrides):
    """A deploy net with its weights and settings, ready to upscale protocol images.

    The one way every tool gets a net to run: the sidecar's settings with ``overrides`` (the
    :class:`~ddsr.evaluation.deploy_net.EvalSettings` fields; None keeps the sidecar's) on top,
    the net and weights checked by :func:`~ddsr.evaluation.deploy_net.load_net`.

    Parameters
    ----------
    deploy, weights : path-like
    scale : int
    label : str
        The method's name in tables.
    gpu : int, optional
        Run on this GPU (checked first); None runs on the CPU.

    Returns
    -------
    CaffeUpscaler
        With ``sidecar`` (the settings file used, or None) and ``net_param`` set.

    Raises
    ------
    ModelError
    """
    settings, sidecar = resolve_settings(deploy, scale, **overrides)
    if gpu is not None:
        use_gpu(gpu)
    net, net_param = load_net(deploy, weights)
    upscaler = CaffeUpscaler(net, scale, settings, net_param=net_param, label=label)
    upscaler.sidecar = sidecar
    upscaler.net_param = net_param
    return upscaler
