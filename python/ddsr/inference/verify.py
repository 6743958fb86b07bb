"""Check exported models against pycaffe: ONNX Runtime and OpenCV's dnn, same inputs, same outputs.

Every backend is fed the same float32 ``[1, 1, H, W]`` arrays in [0, 1] -- uniform noise and
the Y channel of real photographs, at several sizes (odd, unequal, larger than a tile) -- and
its output is compared with the deploy net's through pycaffe. The nets have no randomness, so
the only differences are float rounding and summation order; :data:`TOLERANCE` (1e-4 on [0, 1]
values, about 1/40 of a grey level) is far above those (1e-6 to 2e-5 measured) and far below
any translation error (a wrong pad or kernel orientation moves outputs by 1e-2 and more).
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["TOLERANCE", "DEFAULT_SIZES", "DEFAULT_IMAGES", "VerifyError", "Comparison", "verify_inputs",
           "caffe_forward", "onnxruntime_forward", "opencv_forward", "verify_export"]

TOLERANCE = 1e-4
DEFAULT_SIZES = ((17, 23), (48, 48), (61, 90))
DEFAULT_IMAGES = ("astronaut", "camera")
"""Photographs bundled with scikit-image (offline; :func:`ddsr.workflows.demo.load_bundled_image`)."""


class VerifyError(RuntimeError):
    """An exported model's output differs from pycaffe's by more than the tolerance."""


@dataclass(frozen=True)
class Comparison:
    backend: str
    input: str
    shape: tuple
    max_abs_diff: float


def verify_inputs(sizes=DEFAULT_SIZES, images=None, seed=0):
    """``[(label, float32 (H, W) array in [0, 1])]``: noise and real-image Y crops at each size.

    Parameters
    ----------
    images : sequence of (label, uint8 image) or None
        Default: :data:`DEFAULT_IMAGES`. Each is cropped at its centre to each size (an image
        smaller than a size is used whole).
    """
    from ..workflows.demo import load_bundled_image
    from ..matlab import im2single, rgb2y

    if images is None:
        images = [(name, load_bundled_image(name)) for name in DEFAULT_IMAGES]
    rng = np.random.default_rng(seed)
    out = []
    for h, w in sizes:
        out.append((f"noise {h}x{w}", rng.random((h, w), dtype=np.float32)))
        for label, image in images:
            y = im2single(rgb2y(np.asarray(image)))
            ch, cw = min(h, y.shape[0]), min(w, y.shape[1])
            r0, c0 = (y.shape[0] - ch) // 2, (y.shape[1] - cw) // 2
            out.append((f"{label} {ch}x{cw}", np.ascontiguousarray(y[r0:r0 + ch, c0:c0 + cw])))
    return out


def caffe_forward(net, x):
    """pycaffe's output for one (H, W) input (the reference)."""
    in_name, out_name = net.inputs[0], net.outputs[-1]
    net.blobs[in_name].reshape(1, 1, *x.shape)
    net.reshape()
    net.blobs[in_name].data[...] = x
    net.forward()
    return np.array(net.blobs[out_name].data[0, 0], dtype=np.float32)


def onnxruntime_forward(session, x):
    name = session.get_inputs()[0].name
    return session.run(None, {name: x[None, None]})[0][0, 0]


def opencv_forward(net, x):
    net.setInput(x[None, None])
    return net.forward()[0, 0]


def verify_export(model, onnx_path=None, opencv_files=None, inputs=None, tolerance=TOLERANCE):
    """Compare ONNX Runtime and OpenCV (on the ONNX file and on the OpenCV Caffe files) with pycaffe.

    Parameters
    ----------
    model : ddsr.inference.caffe_model.CaffeModel
        The source deploy net and weights (the reference runs them through pycaffe).
    onnx_path : path-like, optional
        Checked in ONNX Runtime and in ``cv2.dnn.readNetFromONNX``.
    opencv_files : (prototxt, caffemodel), optional
        Checked in ``cv2.dnn.readNetFromCaffe``.
    inputs : list of (label, array), optional
        Default: :func:`verify_inputs`.
    tolerance : float

    Returns
    -------
    list of Comparison

    Raises
    ------
    VerifyError
        Some output's shape differs, or its maximum absolute difference exceeds ``tolerance``;
        the message lists every failing comparison.
    """
    import cv2

    from ..evaluation.deploy_net import load_net

    if onnx_path is None and opencv_files is None:
        raise ValueError("nothing to verify: give an ONNX file or OpenCV files")
    inputs = verify_inputs() if inputs is None else inputs
    net, _ = load_net(model.deploy, model.weights)
    backends = []
    if onnx_path is not None:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        backends.append(("onnxruntime (ONNX)", lambda x: onnxruntime_forward(session, x)))
        cv_onnx = cv2.dnn.readNetFromONNX(str(onnx_path))
        backends.append(("opencv dnn (ONNX)", lambda x: opencv_forward(cv_onnx, x)))
    if opencv_files is not None:
        prototxt, caffemodel = opencv_files
        cv_caffe = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
        backends.append(("opencv dnn (Caffe)", lambda x: opencv_forward(cv_caffe, x)))
    results, failures = [], []
    for label, x in inputs:
        x = np.ascontiguousarray(x, dtype=np.float32)
        ref = caffe_forward(net, x)
        for backend, forward in backends:
            y = np.asarray(forward(x))
            if y.shape != ref.shape:
                failures.append(f"{backend} on {label}: output {y.shape}, pycaffe {ref.shape}")
                continue
            diff = float(np.abs(y.astype(np.float64) - ref).max())
            results.append(Comparison(backend, label, ref.shape, diff))
            if not diff <= tolerance:  # also catches NaN
                failures.append(f"{backend} on {label}: max |difference| {diff:.3g} > {tolerance:g}")
    if failures:
        raise VerifyError(f"{model.deploy.name}: {len(failures)} of {len(inputs) * len(backends)} comparisons "
                          f"failed:\n  " + "\n  ".join(failures))
    return results
