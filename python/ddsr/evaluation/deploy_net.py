"""A Caffe deploy net and its weights, read and checked before Caffe sees them.

How a net is run (:class:`EvalSettings`) comes from the command line and from a sidecar file
recorded next to the deploy prototxt (:func:`read_sidecar`): what the net is fed (``lr`` or
``bicubic``), replicate padding of its input (MATLAB-trained nets such as SRCNN/FSRCNN need
it: Caffe pads with zeros), an output offset, tiling. Before Caffe sees a weights file,
:func:`check_weights` compares it with the net, because Caffe aborts the process on a mismatch.
Running the net over an image is :mod:`ddsr.evaluation.upscaler`.
"""

import json
import re
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

__all__ = ["INPUT_KINDS", "ModelError", "NetOutputError", "EvalSettings", "sidecar_path", "read_sidecar",
           "resolve_settings", "parse_deploy", "stored_weight_shapes", "check_weights", "use_gpu",
           "load_net", "format_shape", "infer_scale", "add_settings_arguments", "settings_overrides"]

INPUT_KINDS = ("lr", "bicubic")


class NetOutputError(ValueError):
    """A net's output is not the size the protocol needs (scale x input, or the input's size)."""


class ModelError(ValueError):
    """A deploy net, its weights or its sidecar file is missing, malformed or mismatched."""



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


def add_settings_arguments(parser, *, tiles=True, gpu=True,
                           tile_help="run the net on SIZE x SIZE input tiles (for images too large for memory)"):
    """Add the options that set :class:`EvalSettings` (and ``--gpu``) to a tool's ``parser``.

    Every tool that runs a deploy net (eval, upscale, export) takes them with the same names,
    values and meaning; None means "the sidecar's". Read them back with :func:`settings_overrides`.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    tiles : bool
        Add ``--tile`` and ``--tile-overlap``.
    gpu : bool
        Add ``--gpu``.
    tile_help : str
        The help of ``--tile`` (its default differs between tools).
    """
    net = parser.add_argument_group("how the net is run (defaults: the net's sidecar <deploy>.eval.json, if any)")
    net.add_argument("--input", choices=INPUT_KINDS, default=None,
                     help="feed the net the LR image (lr: DDSR, FSRCNN; the default) or the bicubic-upscaled "
                          "image (bicubic: SRCNN, VDSR)")
    net.add_argument("--pad-input", type=int, default=None, metavar="N",
                     help="replicate-pad the net input by N pixels and crop the output back "
                          "(N*scale for --input lr, N for --input bicubic)")
    net.add_argument("--output-offset", type=int, nargs=2, default=None, metavar=("DY", "DX"),
                     help="the net's output pixel (i,j) estimates HR pixel (i+DY, j+DX); shift it back")
    if tiles:
        net.add_argument("--tile", type=int, default=None, metavar="SIZE", help=tile_help)
        net.add_argument("--tile-overlap", type=int, default=None, metavar="N",
                         help="context pixels around each tile (default: the net's receptive-field radius, "
                              "which makes tiled and whole-image results equal)")
    if gpu:
        net.add_argument("--gpu", type=int, default=None, metavar="N",
                         help="run Caffe on GPU N (needs a CUDA build of pycaffe; CPU otherwise)")
    return net


def settings_overrides(args):
    """The :class:`EvalSettings` fields given on the command line (:func:`add_settings_arguments`),
    as keyword arguments for :func:`resolve_settings` (None: not given, the sidecar's value)."""
    overrides = dict(input=args.input, pad_input=args.pad_input,
                     output_offset=tuple(args.output_offset) if args.output_offset else None)
    for name in ("tile", "tile_overlap"):
        if hasattr(args, name):
            overrides[name] = getattr(args, name)
    return overrides


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


def format_shape(shape):
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
        The file does not match the net layer for layer, naming the first difference: a learnable
        layer of the net has no weights in the file (it would silently keep its random
        initialisation), a different number or shape of blobs, or the file holds a learnable
        layer the net does not have (Caffe would ignore it: the weights of a deeper net would
        load into a shallower one, its first layers taken and the rest dropped).
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
                                 f"{format_shape(shape)} in the net, {format_shape(stored_shape)} in the weights")
    extra = [name for name in stored if name not in net_param_shapes]
    if extra:
        raise ModelError(f"weights {weights} do not match {deploy}: they hold learnable layer {extra[0]!r}, "
                         f"which the net does not have (the weights have {len(stored)} learnable layers, "
                         f"the net {len(net_param_shapes)}: a model of another depth?)")


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


def infer_scale(deploy, factor=None):
    """The scale of a deploy net: its sidecar's, else its output factor (if > 1), else ``x<S>`` in its name.

    Returns None when none of these tells it.
    """
    path = sidecar_path(deploy)
    if path is not None:
        try:
            scale = json.loads(path.read_text()).get("scale")
        except (OSError, ValueError):
            scale = None
        if isinstance(scale, int):
            return scale
    if factor is not None and factor > 1:
        return int(factor)
    names = re.findall(r"(?:^|[_\-.])x(\d+)(?=[_\-.]|$)", Path(deploy).stem)
    if len(set(names)) == 1:
        return int(names[0])
    return None
