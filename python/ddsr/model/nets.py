"""DDSR nets as code: one NetSpec function gives the train and the deploy net.

The net (Fig. 1 of the paper), for scale ``s`` and depth ``D``::

    data (1 x n x n LR Y)
    upsample        Deconvolution k x k, 64 filters, stride s, pad (k - s) / 2  + PReLU
    conv1..conv{D-1}  Convolution 3x3, 64 filters, pad 1                          + PReLU
    residual        Eltwise SUM of upsample and conv{D-1}      (absent with residual=False)
    recon           Convolution 3x3, 1 filter, pad 1, linear   (the HR Y, s*n x s*n)
    loss            EuclideanLoss(recon, label)                (train net only)

Choices where the paper is silent (reasons in the README's "Model" section):

- ``depth`` counts the deep-mapping layers including the 3x3x1 reconstruction
  layer (the paper lists that layer as the deep mapping's last one), so DDSR-18
  has 17 conv+PReLU layers; the deconvolution is not counted.
- The reconstruction layer is linear; every other layer has a channel-wise PReLU
  (Caffe's default, initial slope 0.25).
- Geometry: with stride ``s``, kernel ``k`` and pad ``p`` Caffe's deconvolution
  gives ``s(n - 1) + k - 2p`` pixels, and LR pixel ``i``'s footprint is centred
  on HR coordinate ``s*i - p + (k - 1)/2``. MATLAB's ``imresize`` puts LR pixel
  ``i``'s centre at ``s*i + (s - 1)/2``. Both the size ``s*n`` and the alignment
  hold exactly when ``k - 2p = s``: ``p = (k - s) / 2`` (:func:`deconv_pad`).
  At x3 that is the paper's 3x3 with pad 0; a 3x3 kernel cannot satisfy it at
  x2 or x4, so those use 4x4 (pad 1 at x2, pad 0 at x4).
- Initialisation: zero-mean Gaussians with He et al.'s PReLU rule
  ``std = sqrt(2 / ((1 + a^2) n))`` on each layer's true fan-in ``n``
  (:func:`he_std`), written as explicit ``std`` values, because Caffe's
  ``msra`` filler takes the fan-in of a Deconvolution from the wrong blob axis.
"""

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = [
    "PRELU_INITIAL_SLOPE",
    "deconv_pad",
    "deconv_fan_in",
    "he_std",
    "deconv_prelu",
    "conv_prelu",
    "ddsr",
    "train_net",
    "deploy_net",
    "with_input_layers",
    "net_text",
    "parameter_count",
    "construct_with_caffe",
]

# Caffe's PReLU filler default: every slope starts at 0.25 (as in He et al. 2015).
PRELU_INITIAL_SLOPE = 0.25
# The deploy net's Input shape as written; pycaffe reshapes it to each image.
DEPLOY_INPUT_SIZE = (32, 32)


def deconv_pad(scale, kernel):
    """Padding that makes a stride-``scale`` deconvolution exact and aligned.

    Caffe's Deconvolution gives ``scale*(n - 1) + kernel - 2*pad`` pixels; LR
    pixel ``i`` (0-based) paints HR pixels ``scale*i - pad .. scale*i - pad +
    kernel - 1``, centred at ``scale*i - pad + (kernel - 1)/2``. MATLAB's
    ``imresize`` convention places LR pixel ``i``'s centre at HR coordinate
    ``scale*i + (scale - 1)/2``. Both "the output has ``scale*n`` pixels" and
    "each footprint is centred on its LR pixel" reduce to
    ``kernel - 2*pad = scale``.

    Parameters
    ----------
    scale : int
        Upscaling factor (the deconvolution's stride).
    kernel : int
        Deconvolution kernel size.

    Returns
    -------
    int
        ``(kernel - scale) // 2``.

    Raises
    ------
    ValueError
        If ``kernel - scale`` is negative or odd (no integer pad exists; e.g.
        kernel 3 at scale 2 or 4).
    """
    if scale < 1 or kernel < 1:
        raise ValueError(f"scale and kernel must be >= 1, got {scale}, {kernel}")
    if kernel < scale or (kernel - scale) % 2:
        fits = ", ".join(str(scale + 2 * p) for p in range(3))
        raise ValueError(f"deconv_kernel {kernel} cannot be used at scale {scale}: a {kernel}x{kernel} "
                         f"deconvolution cannot give exactly {scale}*n pixels aligned with the HR grid at "
                         f"stride {scale} unless kernel - scale is even and >= 0 (pad = (kernel - scale) / 2); "
                         f"use {fits}, ...")
    return (kernel - scale) // 2


def deconv_fan_in(channels_in, kernel, scale):
    """Mean number of inputs that reach one output pixel of a strided deconvolution.

    Each of the ``kernel**2`` taps of an input pixel lands on a different output
    pixel and the ``scale**2`` output phases share them, so one output pixel sums
    on average ``channels_in * kernel**2 / scale**2`` terms. (Caffe's ``msra``
    filler uses ``count / shape[0]`` of the weight blob, which for a
    Deconvolution, whose blob is ``channels_in x num_output x k x k``, is
    ``num_output * k**2``: 576 instead of 1 for DDSR's 3x3 x3 upsampling.)
    """
    return channels_in * kernel * kernel / (scale * scale)


def he_std(fan_in, rectified_input=True, slope=PRELU_INITIAL_SLOPE):
    """Standard deviation of He et al.'s initialisation for PReLU nets.

    ``Var(w) = 2 / ((1 + a^2) n)`` keeps the second moment of the
    pre-activations constant from layer to layer when the layer's input is a
    PReLU output with slope ``a`` (He et al. 2015, eq. 15). For a layer that
    reads the image itself (not rectified), ``Var(w) = 1 / n`` keeps it equal to
    the image's second moment.

    Parameters
    ----------
    fan_in : float
        Number of terms summed into one output pixel.
    rectified_input : bool
        Whether the layer's input is a PReLU output.
    slope : float
        The PReLU's initial negative slope.

    References
    ----------
    K. He, X. Zhang, S. Ren and J. Sun, "Delving Deep into Rectifiers:
    Surpassing Human-Level Performance on ImageNet Classification", ICCV 2015.
    """
    if fan_in <= 0:
        raise ValueError(f"fan_in must be > 0, got {fan_in}")
    gain = 2.0 / (1.0 + slope * slope) if rectified_input else 1.0
    # float32-rounded so the written prototxt shows the value Caffe will use.
    return float(f"{math.sqrt(gain / fan_in):.6g}")


def _gaussian(std):
    return dict(type="gaussian", std=std)


_ZERO = dict(type="constant", value=0)
# Written out although they are Caffe's defaults: he_std assumes this initial slope.
_PRELU = dict(filler=dict(type="constant", value=PRELU_INITIAL_SLOPE), channel_shared=False)


def deconv_prelu(bottom, ks, nout, stride, pad, std):
    """Deconvolution (upsampling) and its in-place PReLU; returns ``(deconv, prelu)``."""
    from caffe import layers as L

    deconv = L.Deconvolution(bottom, convolution_param=dict(
        num_output=nout, kernel_size=ks, stride=stride, pad=pad,
        weight_filler=_gaussian(std), bias_filler=_ZERO))
    return deconv, L.PReLU(deconv, in_place=True, prelu_param=_PRELU)


def conv_prelu(bottom, ks, nout, pad, std):
    """Convolution and its in-place PReLU; returns ``(conv, prelu)``."""
    from caffe import layers as L

    conv = L.Convolution(bottom, num_output=nout, kernel_size=ks, pad=pad,
                         weight_filler=_gaussian(std), bias_filler=_ZERO)
    return conv, L.PReLU(conv, in_place=True, prelu_param=_PRELU)


def ddsr(scale, depth=18, num_filters=64, deconv_kernel=3, residual=True,
         train_data=None, input_size=DEPLOY_INPUT_SIZE, name="DDSR"):
    """The DDSR net as a ``NetParameter``: train net with ``train_data``, else deploy net.

    Parameters
    ----------
    scale : int
        Upscaling factor, the deconvolution's stride.
    depth : int
        Deep-mapping layers counting the final 3x3x1 one (DDSR-18: 18).
    num_filters : int
        Filters of the deconvolution and of each 3x3 conv layer (64).
    deconv_kernel : int
        Deconvolution kernel size; the pad is :func:`deconv_pad`.
    residual : bool
        Add the upsampling features to the last ``num_filters``-channel
        features before the reconstruction layer.
    train_data : ddsr.model.experiments.DataConfig or None
        HDF5 list files and batch sizes of the train net; ``None`` for the
        deploy net (an ``Input`` blob ``data`` of shape 1x1xHxW).
    input_size : (int, int)
        The deploy net's written input H, W (pycaffe reshapes it).
    name : str
        The net's name.

    Returns
    -------
    caffe_pb2.NetParameter
        Train net: HDF5Data ``data``/``label`` for TRAIN and TEST, the net,
        EuclideanLoss ``loss``. Deploy net: output blob ``recon``.
    """
    import caffe
    from caffe import layers as L, params as P
    from caffe.proto import caffe_pb2

    if depth < 1 or (residual and depth < 2):
        raise ValueError(f"depth must be >= 1 (>= 2 with the residual), got {depth}")
    pad = deconv_pad(scale, deconv_kernel)
    mapping_std = he_std(9 * num_filters)

    n = caffe.NetSpec()
    if train_data is None:
        n.data = L.Input(shape=dict(dim=[1, 1, *input_size]))
    else:
        n.data, n.label = L.HDF5Data(hdf5_data_param=dict(
            source=train_data.train_source, batch_size=train_data.batch_size,
            shuffle=train_data.shuffle), include=dict(phase=caffe.TRAIN), ntop=2)

    n.upsample, n.upsample_prelu = deconv_prelu(
        n.data, deconv_kernel, num_filters, stride=scale, pad=pad,
        std=he_std(deconv_fan_in(1, deconv_kernel, scale), rectified_input=False))
    features = n.upsample_prelu
    for i in range(1, depth):
        n[f"conv{i}"], n[f"prelu{i}"] = conv_prelu(features, 3, num_filters, pad=1, std=mapping_std)
        features = n[f"prelu{i}"]
    if residual:
        n.residual = L.Eltwise(n.upsample_prelu, features, operation=P.Eltwise.SUM)
        features = n.residual
    n.recon = L.Convolution(features, num_output=1, kernel_size=3, pad=1,
                            weight_filler=_gaussian(mapping_std), bias_filler=_ZERO)
    if train_data is not None:
        n.loss = L.EuclideanLoss(n.recon, n.label)

    net = n.to_proto()
    net.name = name
    if train_data is not None:
        # NetSpec names one layer per top, so the TEST-phase copy of the data layer is added here.
        train_layer = net.layer[0]
        train_layer.name = "data_train"
        val_layer = caffe_pb2.LayerParameter()
        val_layer.CopyFrom(train_layer)
        val_layer.name = "data_val"
        val_layer.include[0].phase = caffe.TEST
        val_layer.hdf5_data_param.source = train_data.val_source
        val_layer.hdf5_data_param.batch_size = train_data.val_batch_size
        val_layer.hdf5_data_param.shuffle = False  # the same order in every test
        ordered = caffe_pb2.NetParameter(name=name)
        ordered.layer.extend([train_layer, val_layer] + list(net.layer[1:]))
        net = ordered
    return net


def train_net(experiment):
    """The train net of a :class:`ddsr.model.experiments.Experiment`."""
    c = experiment.net
    return ddsr(c.scale, c.depth, c.num_filters, c.deconv_kernel, c.residual,
                train_data=experiment.data, name=experiment.name)


def deploy_net(experiment):
    """The deploy net of a :class:`ddsr.model.experiments.Experiment` (input ``data``, output ``recon``)."""
    c = experiment.net
    return ddsr(c.scale, c.depth, c.num_filters, c.deconv_kernel, c.residual,
                name=experiment.name)


def with_input_layers(net, shapes):
    """A copy of a train net whose data layers are ``Input`` layers of the given shapes.

    Lets Caffe construct (and shape-check) a train net before its HDF5 files exist.

    Parameters
    ----------
    net : caffe_pb2.NetParameter
    shapes : dict of str to tuple of int
        Blob name -> shape for every top of the data layers.
    """
    from caffe.proto import caffe_pb2

    copy = caffe_pb2.NetParameter()
    copy.CopyFrom(net)
    for layer in copy.layer:
        if layer.type in ("HDF5Data", "Data", "ImageData", "MemoryData"):
            tops, include = list(layer.top), list(layer.include)
            name = layer.name
            layer.Clear()
            layer.name, layer.type = name, "Input"
            layer.top.extend(tops)
            layer.include.extend(include)
            for top in tops:
                layer.input_param.shape.add().dim.extend(shapes[top])
    return copy


def net_text(net):
    """Prototxt text of a ``NetParameter``."""
    from google.protobuf import text_format

    return text_format.MessageToString(net)


def parameter_count(num_filters=64, depth=18, deconv_kernel=3, residual=True):
    """Learned parameters of a DDSR net, counted by hand (a check on Caffe's count).

    Deconvolution ``k*k*F`` weights + ``F`` biases + ``F`` PReLU slopes; each of
    the ``depth - 1`` conv layers ``9*F*F + F + F``; the reconstruction layer
    ``9*F + 1``. The residual sum has no parameters.
    """
    f = num_filters
    return (deconv_kernel ** 2 * f + 2 * f) + (depth - 1) * (9 * f * f + 2 * f) + (9 * f + 1)


_CHILD = r"""
import json, sys
import caffe
caffe.set_mode_cpu()
for i, job in enumerate(json.load(sys.stdin)):
    print(json.dumps({"start": i}), flush=True)
    phase = caffe.TRAIN if job["phase"] == "TRAIN" else caffe.TEST
    net = caffe.Net(job["path"], phase)
    for blob, shape in job["reshape"].items():
        net.blobs[blob].reshape(*shape)
    net.reshape()
    shapes = {b: list(net.blobs[b].shape) for b in job["report"]}
    params = int(sum(p.data.size for ps in net.params.values() for p in ps))
    print(json.dumps({"done": i, "shapes": shapes, "params": params}), flush=True)
"""


def construct_with_caffe(jobs, progress=None):
    """Build nets with pycaffe in a child process and report their blob shapes.

    Caffe aborts the whole process (glog ``CHECK``) on a bad net; a child
    process turns that into a ``ValueError`` naming the net and quoting
    Caffe's message.

    Parameters
    ----------
    jobs : list of dict
        Each with ``label`` (for messages), ``net`` (a ``NetParameter``),
        ``phase`` (``"TRAIN"`` or ``"TEST"``), ``reshape`` (blob -> shape to
        set before ``net.reshape()``) and ``report`` (blob names whose shapes
        to return).
    progress : callable or None
        Called with no argument after each net.

    Returns
    -------
    list of dict
        Per job: ``shapes`` (blob -> list of int) and ``params`` (number of
        learned parameters).

    Raises
    ------
    ValueError
        If Caffe rejects a net.
    """
    with tempfile.TemporaryDirectory(prefix="ddsr-nets-") as tmp:
        payload = []
        for i, job in enumerate(jobs):
            path = Path(tmp) / f"net{i}.prototxt"
            path.write_text(net_text(job["net"]), encoding="utf-8")
            payload.append({"path": str(path), "phase": job["phase"],
                            "reshape": job.get("reshape", {}), "report": job.get("report", [])})
        (Path(tmp) / "jobs.json").write_text(json.dumps(payload), encoding="utf-8")
        env = dict(os.environ, GLOG_minloglevel="2")  # keep Caffe's INFO log out of the way
        results, started = {}, None
        with open(Path(tmp) / "stderr.txt", "w+", encoding="utf-8") as stderr:
            with open(Path(tmp) / "jobs.json", encoding="utf-8") as stdin:
                proc = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=stdin,
                                        stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
            for line in proc.stdout:
                record = json.loads(line)
                if "start" in record:
                    started = record["start"]
                else:
                    results[record["done"]] = record
                    if progress is not None:
                        progress()
            returncode = proc.wait()
            stderr.seek(0)
            log = stderr.read()
    if returncode != 0 or len(results) != len(jobs):
        failed = jobs[started]["label"] if started is not None and started not in results else "?"
        raise ValueError(f"Caffe rejected the {failed} net: {_caffe_message(log)}")
    return [results[i] for i in range(len(jobs))]


def _caffe_message(stderr):
    """The fatal line of a glog log (``F1125 ... ] Check failed: ...``), else the last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line[:1] == "F" and "]" in line and line[1:5].isdigit():
            return line.split("] ", 1)[-1]
    return lines[-1] if lines else "the process died without a message"
