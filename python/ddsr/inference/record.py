"""The processing record of an exported model, and the few lines that run it elsewhere.

A deploy net alone does not say how to use it: whether it is fed the LR image or the
bicubic-upscaled one, how much replicate padding the MATLAB-trained nets need, whether its
output is shifted against the HR grid. ``tools/eval.py`` reads that from the sidecar
``<deploy>.eval.json`` (:func:`ddsr.evaluation.deploy_net.resolve_settings`); an exported model carries the
same facts in :func:`processing_record`, a small JSON file beside the ``.onnx`` (and beside the
OpenCV prototxt), so that whoever runs it outside this project can apply them.
:func:`usage_snippets` writes them out as Python for ONNX Runtime and OpenCV (executed by the
tests against pycaffe).
"""

from pathlib import Path

from ..data.registry import sha256_file
from ..evaluation.deploy_net import ModelError

__all__ = ["RECORD_FORMAT", "processing_record", "record_path", "usage_snippets"]

RECORD_FORMAT = "ddsr-sr-model/1"


def processing_record(model, scale, settings, name=None):
    """What a runtime must do around the exported net to get this project's SR image.

    Parameters
    ----------
    model : ddsr.inference.caffe_model.CaffeModel
    scale : int
    settings : ddsr.evaluation.deploy_net.EvalSettings
        The resolved sidecar/CLI settings (input kind, padding, offset).
    name : str, optional

    Returns
    -------
    dict
        JSON-ready; ``output_crop`` is the ``factor * pad_input`` output pixels to cut from each
        side after a padded forward.

    Raises
    ------
    ModelError
        The settings contradict the net (an LR-fed net whose factor is not the scale, or a
        bicubic-fed net that changes the size).
    """
    want = int(scale) if settings.input == "lr" else 1
    if model.factor != want:
        raise ModelError(f"{model.deploy}: the net outputs {model.factor} x its input, but input={settings.input!r} "
                         f"at scale {scale} needs {want} x")
    pad = int(settings.pad_input)
    return {
        "format": RECORD_FORMAT,
        "name": name or settings.name or model.deploy.stem.replace("_deploy", ""),
        "scale": int(scale),
        "input": settings.input,
        "input_name": model.input_name,
        "output_name": model.output_name,
        "tensor": "float32 NCHW, N = C = 1: the Y channel of MATLAB rgb2ycbcr, divided by 255 (range [0, 1]); "
                  "any height and width",
        "preprocess": ("feed the LR image's Y" if settings.input == "lr" else
                       f"feed the Y upscaled x{scale} by bicubic interpolation (MATLAB imresize)")
                      + (f", replicate-padded by {pad} pixels on each side" if pad else ""),
        "pad_input": pad,
        "output_crop": model.factor * pad,
        "output_offset": list(settings.output_offset),
        "postprocess": "crop output_crop pixels from each side; output pixel (i, j) estimates HR pixel "
                       "(i + output_offset[0], j + output_offset[1]); clip to [0, 1], x 255, round: the SR Y. "
                       "Colour: Cb and Cr upscaled by bicubic interpolation, then ycbcr2rgb",
        "source": {"deploy": str(model.deploy), "weights": str(model.weights),
                   "weights_sha256": sha256_file(model.weights)},
    }


def record_path(model_file):
    """Where the processing record of an exported file goes: ``model.onnx`` -> ``model.json``."""
    return Path(model_file).with_suffix(".json")


_Y_RGB = "np.round(16 + rgb @ [65.481, 128.553, 24.966] / 255) / 255"
_Y_BGR = "np.round(16 + bgr @ [24.966, 128.553, 65.481] / 255) / 255"


def _middle(record, net_call, opencv):
    lines = []
    s = record["scale"]
    if record["input"] == "bicubic":
        lines.append("# this net is fed the bicubic-upscaled Y (close to, not exactly, MATLAB's imresize)")
        if opencv:
            lines.append(f"y = cv2.resize(y, None, fx={s}, fy={s}, interpolation=cv2.INTER_CUBIC)")
        else:
            lines.append(f"y = np.asarray(Image.fromarray(y).resize((y.shape[1] * {s}, y.shape[0] * {s}), "
                         f"Image.BICUBIC))")
    pad, crop = record["pad_input"], record["output_crop"]
    if pad:
        lines.append(f"x = np.pad(y, {pad}, mode=\"edge\")[None, None]  # replicate padding the net was made for")
    else:
        lines.append("x = y[None, None]")
    lines.append(net_call)
    if crop:
        lines.append(f"sr = sr[{crop}:-{crop}, {crop}:-{crop}]")
    if any(record["output_offset"]):
        dy, dx = record["output_offset"]
        lines.append(f"# output pixel (i, j) estimates HR pixel (i{dy:+d}, j{dx:+d}): shift it back (edges repeated)")
        lines.append(f"sr = np.pad(sr, (({max(dy, 0)}, {max(-dy, 0)}), ({max(dx, 0)}, {max(-dx, 0)})), mode=\"edge\")"
                     f"[{max(-dy, 0)}:sr.shape[0] + {max(-dy, 0)}, {max(-dx, 0)}:sr.shape[1] + {max(-dx, 0)}]")
    return lines


def usage_snippets(record, onnx_path=None, opencv_files=None, image="photo.png", out="photo_sr_y.png"):
    """Python that runs an exported model on one image and saves the SR Y channel.

    Returns
    -------
    dict
        ``{"onnxruntime": text, "opencv": text}`` for the files given (ONNX: both; OpenCV
        Caffe files: ``opencv`` reads them instead of the ONNX file).
    """
    grey = "np.uint8(np.clip(sr, 0, 1) * 255 + 0.5)"
    snippets = {}
    if onnx_path is not None:
        lines = ["import numpy as np, onnxruntime as ort",
                 "from PIL import Image",
                 f"session = ort.InferenceSession({str(onnx_path)!r})",
                 f"rgb = np.asarray(Image.open({image!r}).convert(\"RGB\"), dtype=np.float64)",
                 f"y = ({_Y_RGB}).astype(np.float32)  # MATLAB rgb2ycbcr's Y, in [0, 1]"]
        lines += _middle(record, f"sr = session.run(None, {{{record['input_name']!r}: x}})[0][0, 0]", False)
        lines.append(f"Image.fromarray({grey}).save({out!r})")
        snippets["onnxruntime"] = "\n".join(lines)
    if opencv_files is not None or onnx_path is not None:
        if opencv_files is not None:
            load = f"net = cv2.dnn.readNetFromCaffe({str(opencv_files[0])!r}, {str(opencv_files[1])!r})"
        else:
            load = f"net = cv2.dnn.readNetFromONNX({str(onnx_path)!r})"
        lines = ["import cv2, numpy as np",
                 load,
                 f"bgr = cv2.imread({image!r}).astype(np.float64)",
                 f"y = ({_Y_BGR}).astype(np.float32)  # MATLAB rgb2ycbcr's Y, in [0, 1]"]
        lines += _middle(record, "net.setInput(x)\nsr = net.forward()[0, 0]", True)
        lines.append(f"cv2.imwrite({out!r}, {grey})")
        snippets["opencv"] = "\n".join(lines)
    return snippets
