"""A Caffe deploy net as an ONNX graph, built node by node with the ``onnx`` package.

The converters on PyPI do not work for these nets (caffe2onnx pins onnx 1.6, writes a PReLU
slope that ONNX Runtime rejects and freezes the input size; caffe-onnx pins protobuf < 4), and
the layers an SR net uses map one to one onto ONNX operators:

=================  ===============================================================
Caffe              ONNX (opset :data:`OPSET`)
=================  ===============================================================
Input              the graph input, ``float32 [N, 1, height, width]`` (H, W dynamic)
Convolution        ``Conv`` (kernel, pad, stride, dilation, group; bias if any)
Deconvolution      ``ConvTranspose``: Caffe's weight ``[C_in, C_out/group, kh, kw]`` is
                   ONNX's layout, and ``s (H - 1) + d (k - 1) + 1 - 2 pad`` its size
PReLU              ``PRelu``, slope ``[C, 1, 1]`` (broadcast over H, W); a channel-shared
                   slope (Caffe's 0-D blob) as ``[1]``
ReLU               ``Relu`` (``LeakyRelu`` with a negative slope)
Eltwise            ``Add``/``Sum`` (SUM, coefficients as ``Mul``), ``Mul`` (PROD), ``Max``
Split, Dropout     no node (the same tensor)
=================  ===============================================================

Caffe's in-place layers (``top == bottom``, e.g. every PReLU here) become ordinary nodes: each
version of a blob is its own tensor, and the last version of each blob keeps the blob's name, so
that the graph's input and output are named as in Caffe. Checked by :func:`onnx.checker.check_model`
and against pycaffe by :mod:`ddsr.inference.verify`.
"""

import json
from collections import Counter
from pathlib import Path

import numpy as np

from ..atomic import write_bytes_atomic, write_json_atomic
from .record import record_path

__all__ = ["OPSET", "IR_VERSION", "ExportError", "build_onnx", "export_onnx", "conv_geometry"]

OPSET = 17
IR_VERSION = 8  # opset 17's; ONNX Runtime and OpenCV 4 read it (newer IRs add nothing used here)

_ALIAS_LAYERS = {"Split", "Dropout"}
_SUPPORTED = ("Input", "Convolution", "Deconvolution", "PReLU", "ReLU", "Eltwise", *sorted(_ALIAS_LAYERS))


class ExportError(ValueError):
    """The net has a layer or setting this exporter does not translate."""


def conv_geometry(conv_param):
    """``(kernel, pad, stride, dilation)``, each ``(h, w)``, of a Caffe ConvolutionParameter.

    Caffe's rules: ``kernel_h``/``kernel_w`` override ``kernel_size`` (one value for both axes or
    one per axis); the same for pad and stride; ``dilation`` one or two values; defaults pad 0,
    stride 1, dilation 1.
    """
    def pair(values, h, w, default, what):
        values = list(values)
        if h or w:
            return int(h), int(w)
        if not values:
            if default is None:
                raise ExportError(f"convolution without a {what}")
            return default, default
        if len(values) == 1:
            return int(values[0]), int(values[0])
        if len(values) == 2:
            return int(values[0]), int(values[1])
        raise ExportError(f"{what} has {len(values)} values; only 2-D convolutions are supported")

    kernel = pair(conv_param.kernel_size, conv_param.kernel_h, conv_param.kernel_w, None, "kernel size")
    pad = pair(conv_param.pad, conv_param.pad_h, conv_param.pad_w, 0, "pad")
    stride = pair(conv_param.stride, conv_param.stride_h, conv_param.stride_w, 1, "stride")
    dilation = pair(conv_param.dilation, 0, 0, 1, "dilation")
    return kernel, pad, stride, dilation


def _in_test_phase(layer):
    # A deploy net runs in TEST; a layer restricted to TRAIN is not part of it.
    from caffe.proto import caffe_pb2

    test = caffe_pb2.TEST
    if layer.include:
        return any(not r.HasField("phase") or r.phase == test for r in layer.include)
    return not any(r.HasField("phase") and r.phase == test for r in layer.exclude)


def build_onnx(model, record=None):
    """Translate a :class:`~ddsr.inference.caffe_model.CaffeModel` into an ONNX model.

    Parameters
    ----------
    model : CaffeModel
    record : dict, optional
        The processing record; stored in the model's metadata (key ``ddsr_processing``) too.

    Returns
    -------
    onnx.ModelProto
        Checked with ``onnx.checker.check_model(full_check=True)``.

    Raises
    ------
    ExportError
        A layer type or setting with no translation here (the message lists what is supported).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    layers = [layer for layer in model.net_param.layer if _in_test_phase(layer)]
    if model.net_param.layers:
        raise ExportError(f"{model.deploy}: V1 'layers' definitions are not supported; upgrade the net "
                          f"(Caffe's upgrade_net_proto_text)")
    writes = Counter()
    for layer in layers:
        if layer.type not in _ALIAS_LAYERS:
            writes.update(layer.top)
    written = Counter()
    used = set()

    def new_tensor(blob):
        written[blob] += 1
        name = blob if written[blob] == writes[blob] else f"{blob}:{written[blob]}"
        if name in used:
            raise ExportError(f"blob {blob!r} is written twice under one name")
        used.add(name)
        return name

    current = {model.input_name: model.input_name}
    used.add(model.input_name)
    nodes, initializers = [], []

    def constant(name, array):
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def bottom(layer, i=0):
        blob = layer.bottom[i]
        if blob not in current:
            raise ExportError(f"layer {layer.name!r} reads blob {blob!r}, which no earlier layer writes")
        return current[blob]

    def params(layer, count):
        blobs = model.params.get(layer.name, [])
        if len(blobs) < count:
            raise ExportError(f"layer {layer.name!r} has {len(blobs)} parameter blobs, expected {count}")
        return blobs

    for layer in layers:
        kind, name = layer.type, layer.name
        if kind == "Input":
            if list(layer.top) != [model.input_name]:
                raise ExportError(f"{model.deploy}: only nets with one input blob are supported")
            continue
        if kind in _ALIAS_LAYERS:
            source = bottom(layer)
            for top in layer.top:
                current[top] = source
            continue
        if len(layer.top) != 1:
            raise ExportError(f"layer {name!r} ({kind}) has {len(layer.top)} tops; expected 1")
        top = layer.top[0]
        if kind in ("Convolution", "Deconvolution"):
            cp = layer.convolution_param
            if cp.axis not in (1, -3) or cp.force_nd_im2col:
                raise ExportError(f"layer {name!r}: only 2-D NCHW convolutions are supported")
            kernel, pad, stride, dilation = conv_geometry(cp)
            blobs = params(layer, 2 if cp.bias_term else 1)
            inputs = [bottom(layer), constant(f"{name}/weight", blobs[0])]
            if cp.bias_term:
                inputs.append(constant(f"{name}/bias", blobs[1].reshape(-1)))
            out = new_tensor(top)
            nodes.append(helper.make_node(
                "Conv" if kind == "Convolution" else "ConvTranspose", inputs, [out], name=name,
                kernel_shape=list(kernel), pads=[pad[0], pad[1], pad[0], pad[1]], strides=list(stride),
                dilations=list(dilation), group=int(cp.group)))
        elif kind == "PReLU":
            slope = params(layer, 1)[0]
            shape = [1] if slope.ndim == 0 or layer.prelu_param.channel_shared else [slope.size, 1, 1]
            x = bottom(layer)
            nodes.append(helper.make_node("PRelu", [x, constant(f"{name}/slope", slope.reshape(shape))],
                                          [new_tensor(top)], name=name))
        elif kind == "ReLU":
            x = bottom(layer)
            alpha = float(layer.relu_param.negative_slope)
            if alpha:
                nodes.append(helper.make_node("LeakyRelu", [x], [new_tensor(top)], name=name, alpha=alpha))
            else:
                nodes.append(helper.make_node("Relu", [x], [new_tensor(top)], name=name))
        elif kind == "Eltwise":
            ep = layer.eltwise_param
            xs = [bottom(layer, i) for i in range(len(layer.bottom))]
            if len(xs) < 2:
                raise ExportError(f"layer {name!r}: Eltwise needs at least two bottoms")
            op_name = ep.EltwiseOp.Name(ep.operation)
            if op_name == "SUM":
                coeffs = list(ep.coeff) or [1.0] * len(xs)
                if len(coeffs) != len(xs):
                    raise ExportError(f"layer {name!r}: {len(coeffs)} coefficients for {len(xs)} bottoms")
                terms = []
                for i, (x, c) in enumerate(zip(xs, coeffs)):
                    if c == 1.0:
                        terms.append(x)
                        continue
                    scaled = f"{name}/term{i}"
                    nodes.append(helper.make_node("Mul", [x, constant(f"{name}/coeff{i}", np.array([c]))],
                                                  [scaled], name=f"{name}/mul{i}"))
                    used.add(scaled)
                    terms.append(scaled)
                op = "Add" if len(terms) == 2 else "Sum"
            elif op_name == "PROD":
                op, terms = ("Mul" if len(xs) == 2 else None), xs
                if op is None:
                    raise ExportError(f"layer {name!r}: Eltwise PROD of more than two bottoms is not supported")
            elif op_name == "MAX":
                op, terms = "Max", xs
            else:
                raise ExportError(f"layer {name!r}: Eltwise operation {op_name} is not supported")
            nodes.append(helper.make_node(op, terms, [new_tensor(top)], name=name))
        else:
            raise ExportError(f"layer {name!r} has type {kind}, which this exporter does not translate "
                              f"(supported: {', '.join(_SUPPORTED)})")
        current[top] = nodes[-1].output[0]

    if model.output_name not in current or current[model.output_name] != model.output_name:
        raise ExportError(f"the net's output blob {model.output_name!r} is not written by a translated layer")
    graph = helper.make_graph(
        nodes, model.net_param.name or "ddsr",
        [helper.make_tensor_value_info(model.input_name, TensorProto.FLOAT, ["N", 1, "height", "width"])],
        [helper.make_tensor_value_info(model.output_name, TensorProto.FLOAT,
                                       ["N", 1, "out_height", "out_width"])],
        initializer=initializers)
    onnx_model = helper.make_model(graph, producer_name="ddsr-caffe tools/export.py",
                                   opset_imports=[helper.make_opsetid("", OPSET)])
    onnx_model.ir_version = IR_VERSION
    onnx_model.doc_string = (f"Converted from {model.deploy.name} + {model.weights.name}: output = "
                             f"{model.factor} x input")
    if record is not None:
        helper.set_model_props(onnx_model, {"ddsr_processing": json.dumps(record, sort_keys=True)})
    try:
        onnx.checker.check_model(onnx_model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the ONNX graph of {model.deploy} does not pass onnx.checker: {exc}") from exc
    return onnx_model


def export_onnx(model, path, record):
    """Write ``model`` as ONNX to ``path`` and its processing record to ``path.with_suffix('.json')``.

    Both files are written atomically (a failed export leaves neither half-written).

    Returns
    -------
    (Path, Path)
        The ONNX file and the record.
    """
    path = Path(path)
    onnx_model = build_onnx(model, record)
    write_bytes_atomic(path, onnx_model.SerializeToString())
    json_path = record_path(path)
    write_json_atomic(json_path, dict(record, model_file=path.name))
    return path, json_path
