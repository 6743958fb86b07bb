"""The official SRCNN and FSRCNN weights, converted exactly to Caffe.

The DDSR paper's Table 3 compares with SRCNN (9-1-5, trained on the 91 images)
and FSRCNN (d=56, s=12, m=4) using their published numbers. This module turns
the weights the authors released with their MATLAB test code into Caffe deploy
nets and ``.caffemodel`` files, so that those rows are computed by the same
Caffe and the same evaluation as DDSR.

What "exact" means here is what the authors' MATLAB code does with the
``.mat`` variables (``SRCNN.m``, ``FSRCNN.m``, ``deconv.m``):

- each k x k filter is MATLAB's column-major ``reshape(w, k, k)`` and is applied
  by correlation (``imfilter``), which is what Caffe's Convolution computes;
- FSRCNN's PReLU slope is one scalar per layer (``channel_shared: true``);
- FSRCNN's ``deconv.m`` adds ``x(i, j) * K`` at output row ``1 + (i - 1) s``
  over its input padded by one replicated pixel and keeps the window from row
  ``(k + 1) / 2 + s``, i.e. input pixel ``p`` (0-based, unpadded) reaches output
  rows ``p s + a - (k - 1) / 2``, ``a = 0 .. k - 1``. Caffe's Deconvolution
  puts ``x(p)`` at rows ``p s + a - pad``: pad ``(k - 1) / 2 = 4``. Its output
  then has ``s (H - 1) + 1`` rows, not ``s H``; the kernel is therefore stored
  with ``s - 1`` zero rows and columns appended (``k + s - 1`` taps), which
  changes no output value and makes the output exactly ``s H`` (what
  ``tools/eval.py`` requires), the same window as ``deconv.m``;
- the official demo evaluates the x3 model through ``shave_x3``, which pairs
  network output row ``r`` with ground-truth row ``r + 1``: the released x3
  model sits one HR pixel off ``deconv.m``'s window (evaluated there it loses
  about 7 dB). At x3 the net here therefore uses the plain 9x9 kernel with
  pad 3 instead of 4, which shifts the output by exactly that pixel and is
  evaluated with the ordinary shave (the same pixels the demo compares). Pad 3
  is also the one pad for which a 9x9, stride-3 Caffe Deconvolution outputs
  exactly ``3 H`` pixels, presumably how the model was trained. See
  :func:`fsrcnn_deconv_geometry` and ``docs/baselines.md``.

MATLAB pads with replicated pixels at every layer; Caffe pads with zeros.
The evaluation compensates by replicate-padding the network input by
``pad_input`` pixels and cropping the output back (``tools/eval.py
--pad-input``); :func:`eval_settings` records that setting in the sidecar file
``<deploy>.eval.json`` next to each deploy prototxt.

Tested in ``tests/test_official.py`` against ``tests/matlab_forward.py``, a
direct numpy implementation of the MATLAB forward passes.
"""

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..atomic import replacing, write_json_atomic, write_text_atomic
from ..data.registry import RAW_BASE
from .official_weights import fetch_weights, get_weights

__all__ = [
    "PAD_INPUT",
    "load_mat",
    "srcnn_params",
    "fsrcnn_params",
    "fsrcnn_deconv_geometry",
    "embed_deconv_kernel",
    "srcnn_deploy",
    "fsrcnn_deploy",
    "deploy_prototxt",
    "convert",
    "eval_settings",
    "write_caffemodel",
    "import_model",
]


# Replicate padding of the network input, in input pixels (LR pixels for FSRCNN,
# bicubic-image pixels for SRCNN). At least the receptive-field radius (SRCNN: 6,
# FSRCNN: 6 LR pixels + the deconvolution's 1), so Caffe's zero padding never
# reaches the kept window; 8 is what was measured in shared/models/README.md.
PAD_INPUT = 8




# --------------------------------------------------------------------------- conversion

def load_mat(path):
    """The variables of a released ``.mat`` file (``scipy.io.loadmat``, MATLAB metadata dropped)."""
    from scipy.io import loadmat

    return {k: v for k, v in loadmat(str(path)).items() if not k.startswith("__")}


def _square_side(n, what):
    k = int(round(np.sqrt(n)))
    if k * k != n:
        raise ValueError(f"{what}: {n} weights per filter is not a square kernel")
    return k


def _filters_to_blob(w, what):
    """``(in, k*k, out)`` MATLAB filters -> Caffe ``(out, in, k, k)``.

    MATLAB's ``reshape(w(j, :, i), k, k)`` is column-major, so the k*k axis
    unfolds as ``(col, row)``: reshape to ``(in, k_col, k_row, out)`` and move
    the axes to ``(out, in, row, col)``.
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 3:
        raise ValueError(f"{what}: expected a 3-D (in, k*k, out) array, got shape {w.shape}")
    n_in, ksq, n_out = w.shape
    k = _square_side(ksq, what)
    return w.reshape(n_in, k, k, n_out).transpose(3, 0, 2, 1).astype(np.float32)


def _bias(b, n, what):
    b = np.asarray(b, dtype=np.float64).ravel()
    if b.size != n:
        raise ValueError(f"{what}: {b.size} biases for {n} filters")
    return b.astype(np.float32)


def srcnn_params(mat):
    """Caffe blobs of SRCNN 9-1-5 from the variables of its ``.mat`` file.

    Parameters
    ----------
    mat : dict
        ``weights_conv1`` (81 x 64), ``biases_conv1``, ``weights_conv2``
        (64 x 1 x 32), ``biases_conv2``, ``weights_conv3`` (32 x 25), ``biases_conv3``.

    Returns
    -------
    OrderedDict
        Layer name -> ``[weights (out, in, k, k), bias (out,)]``, float32, for
        ``conv1``, ``conv2``, ``conv3`` of :func:`srcnn_deploy`.

    Notes
    -----
    Mirrors ``SRCNN.m``: ``reshape(weights_conv1, k, k, n1)`` per filter,
    ``weights_conv2(j, :, i)`` from input j to output i, and
    ``reshape(weights_conv3(i, :), k, k)`` from input i to the single output.
    """
    try:
        w1, b1 = mat["weights_conv1"], mat["biases_conv1"]
        w2, b2 = mat["weights_conv2"], mat["biases_conv2"]
        w3, b3 = mat["weights_conv3"], mat["biases_conv3"]
    except KeyError as exc:
        raise ValueError(f"not an SRCNN weight file: variable {exc} missing") from None
    w1 = np.asarray(w1)
    w3 = np.asarray(w3)
    if w1.ndim != 2 or w3.ndim != 2:
        raise ValueError(f"not an SRCNN weight file: weights_conv1 {w1.shape}, weights_conv3 {w3.shape}")
    w2 = np.asarray(w2)
    blob1 = _filters_to_blob(w1[None, :, :], "weights_conv1")     # (1, k*k, n1)
    blob2 = _filters_to_blob(w2, "weights_conv2")
    blob3 = _filters_to_blob(w3[:, :, None], "weights_conv3")     # (n2, k*k, 1)
    return OrderedDict([
        ("conv1", [blob1, _bias(b1, blob1.shape[0], "biases_conv1")]),
        ("conv2", [blob2, _bias(b2, blob2.shape[0], "biases_conv2")]),
        ("conv3", [blob3, _bias(b3, blob3.shape[0], "biases_conv3")]),
    ])


def fsrcnn_params(mat):
    """Caffe blobs of FSRCNN from the variables of its ``.mat`` file.

    Parameters
    ----------
    mat : dict
        ``weights_conv``, ``biases_conv``, ``prelu_conv``: cell arrays of the
        conv layers then the deconvolution (last).

    Returns
    -------
    OrderedDict
        ``conv1`` .. ``conv<n-1>`` -> ``[weights, bias]``, ``prelu1`` ..
        ``prelu<n-1>`` -> ``[slope (scalar, shape ())]`` (channel-shared), and ``deconv`` ->
        ``[weights (in, 1, k, k), bias (1,)]`` -- Caffe's Deconvolution keeps
        its weights as ``(input channels, output channels, k, k)``.

    Notes
    -----
    Mirrors ``FSRCNN.m``: ``reshape(weight(j, :, i), k, k)`` from input j to
    output i, ``max(x, 0) + prelu_conv{idx} * min(x, 0)`` after every conv
    layer, and the deconvolution's subfilter of input j as
    ``reshape(weights_conv{end}(1, :, j), k, k)``, added into the output
    without flipping (``deconv.m``), which is Caffe's Deconvolution.
    """
    try:
        weights = [np.asarray(c) for c in np.asarray(mat["weights_conv"]).ravel()]
        biases = [np.asarray(c) for c in np.asarray(mat["biases_conv"]).ravel()]
        prelus = [np.asarray(c) for c in np.asarray(mat["prelu_conv"]).ravel()]
    except KeyError as exc:
        raise ValueError(f"not an FSRCNN weight file: variable {exc} missing") from None
    if not (len(weights) == len(biases) and len(prelus) >= len(weights) - 1 and len(weights) >= 2):
        raise ValueError(f"not an FSRCNN weight file: {len(weights)} weights, {len(biases)} biases, "
                         f"{len(prelus)} PReLU slopes")
    params = OrderedDict()
    for idx in range(len(weights) - 1):
        name = f"conv{idx + 1}"
        w = _filters_to_blob(weights[idx], f"weights_conv{{{idx + 1}}}")
        params[name] = [w, _bias(biases[idx], w.shape[0], f"biases_conv{{{idx + 1}}}")]
        slope = np.asarray(prelus[idx], dtype=np.float64).ravel()
        if slope.size != 1:
            raise ValueError(f"prelu_conv{{{idx + 1}}}: {slope.size} slopes, expected one (channel-shared)")
        # Caffe's channel-shared PReLU keeps its slope in a 0-axis (scalar) blob.
        params[f"prelu{idx + 1}"] = [np.asarray(slope[0], dtype=np.float32).reshape(())]
    last = np.asarray(weights[-1], dtype=np.float64)       # (1, k*k, in)
    if last.ndim != 3 or last.shape[0] != 1:
        raise ValueError(f"weights_conv{{{len(weights)}}}: expected (1, k*k, in), got {last.shape}")
    # Subfilter j is reshape(last(1, :, j), k, k). Read as (in=1, k*k, out=in_channels), the
    # conversion gives (in_channels, 1, k, k): exactly Caffe's Deconvolution blob layout.
    deconv = _filters_to_blob(last, "deconvolution weights")
    params["deconv"] = [deconv, _bias(biases[-1], 1, f"biases_conv{{{len(weights)}}}")]
    return params


def fsrcnn_deconv_geometry(scale, kernel_size=9, x3_window="demo"):
    """Caffe Deconvolution settings that place FSRCNN's output as the authors evaluated it.

    Parameters
    ----------
    scale : int
    kernel_size : int
        The released deconvolution kernel (9), odd.
    x3_window : {"demo", "matlab"}
        ``"matlab"``: ``deconv.m``'s window at every scale. ``"demo"`` (default):
        the same except at x3, where the official demo's ``shave_x3`` compares
        the output shifted by one HR pixel (row and column).

    Returns
    -------
    (caffe_kernel, pad, tap_offset) : tuple of int
        A Deconvolution of kernel ``caffe_kernel``, stride ``scale`` and pad
        ``pad`` holding the released kernel at taps ``tap_offset ..
        tap_offset + kernel_size - 1`` (zeros elsewhere) outputs exactly
        ``scale * H`` pixels, its row ``r`` being ``deconv.m``'s row ``r``
        (``"matlab"``) or ``r - 1`` (``"demo"`` at x3).

    Notes
    -----
    Caffe puts input pixel ``p`` at output rows ``p s + b - pad`` (tap ``b``) and
    outputs ``s (H - 1) + caffe_kernel - 2 pad`` rows. ``deconv.m`` puts it at
    ``p s + a - (k - 1) / 2``, and the demo window ``shift = 1`` rows later. With
    ``b = a + tap_offset`` that fixes ``pad = (k - 1) / 2 - shift + tap_offset``
    and, for ``s H`` rows, ``caffe_kernel = k + s - 1 - 2 shift + 2 tap_offset``;
    the smallest ``tap_offset >= 0`` for which the kernel fits is taken.
    x2: (10, 4, 0); x3 demo: (9, 3, 0); x3 matlab: (11, 4, 0); x4: (12, 4, 0).
    """
    if kernel_size < 1 or kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if x3_window not in ("demo", "matlab"):
        raise ValueError(f"x3_window must be 'demo' or 'matlab', got {x3_window!r}")
    scale = int(scale)
    shift = 1 if (scale == 3 and x3_window == "demo") else 0
    tap_offset = max(0, 2 * shift + 1 - scale)
    extra = scale - 1 - 2 * shift + 2 * tap_offset
    return kernel_size + extra, (kernel_size - 1) // 2 - shift + tap_offset, tap_offset


def embed_deconv_kernel(blob, caffe_kernel, tap_offset):
    """Place ``(in, out, k, k)`` deconvolution weights into a zero ``caffe_kernel`` square.

    Zero taps add exact zeros, so the outputs the released kernel produces are
    unchanged; only the output size and window move (:func:`fsrcnn_deconv_geometry`).
    """
    blob = np.asarray(blob, dtype=np.float32)
    k = blob.shape[-1]
    if tap_offset < 0 or tap_offset + k > caffe_kernel:
        raise ValueError(f"a {k}x{k} kernel at offset {tap_offset} does not fit in {caffe_kernel}x{caffe_kernel}")
    out = np.zeros(blob.shape[:2] + (caffe_kernel, caffe_kernel), dtype=np.float32)
    out[:, :, tap_offset:tap_offset + k, tap_offset:tap_offset + k] = blob
    return out


# --------------------------------------------------------------------------- nets

def _caffe():
    """pycaffe, imported with glog's per-layer messages off (unless GLOG_minloglevel is set)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe

    return caffe


def _input_layer(n, height, width):
    from caffe import layers as L

    n.data = L.Input(shape=dict(dim=[1, 1, int(height), int(width)]))
    return n.data


def srcnn_deploy(n1=64, n2=32, k1=9, k2=1, k3=5, height=33, width=33):
    """NetSpec deploy net of SRCNN (f1-f2-f3 = 9-1-5, 64 and 32 filters).

    Input blob ``data``: the bicubic-upscaled Y image, 1 x 1 x H x W in [0, 1];
    output blob ``conv3``, the same size (zero padding ``(k - 1) / 2``; the
    evaluation replicate-pads the input, see :data:`PAD_INPUT`).

    Returns
    -------
    caffe.proto.caffe_pb2.NetParameter
    """
    caffe = _caffe()
    from caffe import layers as L

    n = caffe.NetSpec()
    data = _input_layer(n, height, width)
    n.conv1 = L.Convolution(data, num_output=n1, kernel_size=k1, pad=(k1 - 1) // 2)
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.conv2 = L.Convolution(n.relu1, num_output=n2, kernel_size=k2, pad=(k2 - 1) // 2)
    n.relu2 = L.ReLU(n.conv2, in_place=True)
    n.conv3 = L.Convolution(n.relu2, num_output=1, kernel_size=k3, pad=(k3 - 1) // 2)
    proto = n.to_proto()
    proto.name = "SRCNN-9-1-5"
    return proto


def fsrcnn_deploy(scale, d=56, s=12, m=4, deconv_kernel=9, x3_window="demo", height=11, width=11):
    """NetSpec deploy net of FSRCNN(d, s, m) with channel-shared PReLU.

    conv1 5x5 1->d, conv2 1x1 d->s, m x conv 3x3 s->s, conv 1x1 s->d, each
    followed by a channel-shared PReLU, then the ``deconv_kernel`` x
    ``deconv_kernel`` Deconvolution d->1 with stride ``scale``, in the geometry
    of :func:`fsrcnn_deconv_geometry` (output exactly ``scale`` times the input).

    Returns
    -------
    caffe.proto.caffe_pb2.NetParameter
        Input blob ``data`` (LR Y, 1 x 1 x H x W in [0, 1]), output blob ``deconv``.
    """
    caffe = _caffe()
    from caffe import layers as L

    caffe_kernel, pad, _ = fsrcnn_deconv_geometry(scale, deconv_kernel, x3_window)
    n = caffe.NetSpec()
    bottom = _input_layer(n, height, width)
    layers = [(5, d), (1, s)] + [(3, s)] * m + [(1, d)]
    for i, (k, nout) in enumerate(layers, start=1):
        conv = L.Convolution(bottom, num_output=nout, kernel_size=k, pad=(k - 1) // 2)
        setattr(n, f"conv{i}", conv)
        bottom = L.PReLU(conv, prelu_param=dict(channel_shared=True), in_place=True)
        setattr(n, f"prelu{i}", bottom)
    n.deconv = L.Deconvolution(bottom, convolution_param=dict(
        num_output=1, kernel_size=caffe_kernel, stride=int(scale), pad=pad))
    proto = n.to_proto()
    proto.name = f"FSRCNN-x{int(scale)}"
    return proto


def deploy_prototxt(name, x3_window="demo"):
    """Text of the deploy prototxt of an official model."""
    entry = get_weights(name)
    if entry.family == "srcnn":
        proto = srcnn_deploy()
    else:
        proto = fsrcnn_deploy(entry.scale, x3_window=x3_window)
    return str(proto)


def convert(name, mat_path, x3_window="demo"):
    """Caffe blobs of an official model (for its :func:`deploy_prototxt`) from its ``.mat`` file."""
    entry = get_weights(name)
    mat = load_mat(mat_path)
    if entry.family == "srcnn":
        return srcnn_params(mat)
    params = fsrcnn_params(mat)
    weights, bias = params["deconv"]
    caffe_kernel, _, tap_offset = fsrcnn_deconv_geometry(entry.scale, weights.shape[-1], x3_window)
    params["deconv"] = [embed_deconv_kernel(weights, caffe_kernel, tap_offset), bias]
    return params


def eval_settings(name, x3_window="demo"):
    """The sidecar ``<deploy>.eval.json`` contents that ``tools/eval.py`` reads.

    ``input``: what the net is fed (``"bicubic"`` for SRCNN, ``"lr"`` for
    FSRCNN); ``pad_input``: replicate padding of that input in its own pixels
    (:data:`PAD_INPUT`); ``name``: the Table 3 row; ``scale``; ``comment``: where
    the weights come from and, for FSRCNN, the deconvolution geometry. No
    ``output_offset``: the x3 shift is in the net itself.
    """
    entry = get_weights(name)
    comment = (f"{entry.repo}@{entry.commit[:12]}:{entry.path} sha256 {entry.sha256[:16]}..., "
               f"converted by tools/import_official.py")
    if entry.family == "fsrcnn":
        k, pad, taps = fsrcnn_deconv_geometry(entry.scale, 9, x3_window)
        window = ("the official demo's shave_x3 window (deconv.m's shifted by one HR pixel)"
                  if entry.scale == 3 and x3_window == "demo" else "deconv.m's window")
        comment += f"; Deconvolution kernel {k} pad {pad} (9x9 at tap {taps}): {window}"
    return OrderedDict([
        ("input", "bicubic" if entry.family == "srcnn" else "lr"),
        ("pad_input", PAD_INPUT),
        ("name", "SRCNN" if entry.family == "srcnn" else "FSRCNN"),
        ("scale", entry.scale),
        ("comment", comment),
    ])


def _mark_scalar_blobs(path):
    """Give 0-axis blobs (channel-shared PReLU slopes) an explicit empty ``shape {}``.

    Caffe's ``Blob::ToProto`` writes no shape field at all for a 0-axis blob, which
    reads like a legacy 4-D blob of unset (0) size to tools that inspect weight files
    (``ddsr.evaluation.check_weights``). Caffe itself loads both forms the same way.
    """
    from caffe.proto import caffe_pb2

    param = caffe_pb2.NetParameter()
    param.ParseFromString(Path(path).read_bytes())
    changed = False
    for layer in param.layer:
        for blob in layer.blobs:
            legacy = any(blob.HasField(f) for f in ("num", "channels", "height", "width"))
            if not blob.HasField("shape") and not legacy:
                blob.shape.SetInParent()
                changed = True
    if changed:
        Path(path).write_bytes(param.SerializeToString())


def write_caffemodel(deploy_path, params, out_path):
    """Load ``params`` into the deploy net and save it as a binary ``.caffemodel``.

    Raises ``ValueError`` if a layer is missing from either side or a blob's
    shape differs from the net's.
    """
    caffe = _caffe()
    net = caffe.Net(str(deploy_path), caffe.TEST)
    missing = set(net.params) ^ set(params)
    if missing:
        raise ValueError(f"layers differ between the net and the weights: {sorted(missing)}")
    for layer, blobs in params.items():
        if len(blobs) != len(net.params[layer]):
            raise ValueError(f"{layer}: {len(blobs)} blobs, the net has {len(net.params[layer])}")
        for i, blob in enumerate(blobs):
            target = net.params[layer][i].data
            if target.shape != blob.shape:
                raise ValueError(f"{layer} blob {i}: shape {blob.shape}, the net expects {target.shape}")
            target[...] = blob
    out_path = Path(out_path)
    with replacing(out_path) as tmp:
        net.save(str(tmp))
        _mark_scalar_blobs(tmp)
    return out_path


def import_model(name, out_dir, source_dir=None, cache_dir=None, x3_window="demo", raw_base=RAW_BASE):
    """Fetch, verify and convert one official model into ``out_dir``.

    Writes ``<name>_deploy.prototxt``, ``<name>.caffemodel`` and
    ``<name>_deploy.eval.json`` (the evaluation settings).

    Parameters
    ----------
    name : str
        ``srcnn_x2`` ... ``fsrcnn_x4``.
    out_dir : path-like
    source_dir : path-like, optional
        Offline copy of the weights (``<source_dir>/<folder>/<file>``).
    cache_dir : path-like, optional
        Download folder; default ``<out_dir>/official``.
    x3_window : {"demo", "matlab"}
        See :func:`fsrcnn_deconv_geometry`.
    raw_base : str
        Base of the download URLs (see :func:`fetch_weights`).

    Returns
    -------
    dict
        ``{"deploy": Path, "weights": Path, "sidecar": Path, "mat": Path}``.
    """
    get_weights(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mat_path = fetch_weights(name, cache_dir if cache_dir is not None else out_dir / "official",
                             source_dir, raw_base)
    params = convert(name, mat_path, x3_window)
    deploy = out_dir / f"{name}_deploy.prototxt"
    write_text_atomic(deploy, deploy_prototxt(name, x3_window))
    weights = write_caffemodel(deploy, params, out_dir / f"{name}.caffemodel")
    sidecar = out_dir / f"{name}_deploy.eval.json"
    write_json_atomic(sidecar, eval_settings(name, x3_window))
    return {"deploy": deploy, "weights": weights, "sidecar": sidecar, "mat": Path(mat_path)}
