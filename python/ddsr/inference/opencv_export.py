"""A deploy net and weights that OpenCV 4's dnn module loads (``cv2.dnn.readNetFromCaffe``).

OpenCV reads Caffe files itself and runs these nets exactly (about 1e-5 of pycaffe) at any
input size, with one exception: a channel-shared PReLU, whose slope Caffe stores as a 0-D
blob (the FSRCNN nets have them), is refused; stored with shape ``[1]`` it loads. So the
exported caffemodel holds every learnable layer's blobs in the net's shapes except those
slopes, reshaped to ``[1]``, and the prototxt is the deploy net as Caffe parsed it. Caffe
itself would refuse the ``[1]`` slopes: keep the original files for pycaffe.

OpenCV 5 removed ``readNetFromCaffe``: use OpenCV 4 (``opencv-python-headless<5``), or the ONNX
export, which OpenCV 5 reads too.
"""

from pathlib import Path

import numpy as np

from ..atomic import write_bytes_atomic, write_json_atomic, write_text_atomic
from .record import record_path

__all__ = ["opencv_weights", "export_opencv"]


def opencv_weights(model):
    """The ``caffe_pb2.NetParameter`` of the weights file OpenCV loads (0-D blobs as ``[1]``)."""
    from caffe.proto import caffe_pb2

    types = {layer.name: layer.type for layer in model.net_param.layer}
    out = caffe_pb2.NetParameter()
    out.name = model.net_param.name
    for name, blobs in model.params.items():
        layer = out.layer.add()
        layer.name = name
        layer.type = types.get(name, "")
        for array in blobs:
            blob = layer.blobs.add()
            shape = array.shape if array.ndim else (1,)
            blob.shape.dim.extend(int(d) for d in shape)
            blob.data.extend(np.asarray(array, dtype=np.float32).ravel().tolist())
    return out


def export_opencv(model, out_dir, record, stem=None):
    """Write ``<stem>.prototxt``, ``<stem>.caffemodel`` and ``<stem>.json`` (the record) into ``out_dir``.

    Each file is written atomically.

    Returns
    -------
    (Path, Path, Path)
        The prototxt, the caffemodel and the record.
    """
    from google.protobuf import text_format

    out_dir = Path(out_dir)
    stem = stem or model.deploy.stem
    prototxt = out_dir / f"{stem}.prototxt"
    caffemodel = out_dir / f"{stem}.caffemodel"
    header = (f"# {model.deploy.name} for OpenCV's dnn (cv2.dnn.readNetFromCaffe), written by tools/export.py;\n"
              f"# weights: {caffemodel.name} (channel-shared PReLU slopes stored as [1], which Caffe refuses)\n")
    write_text_atomic(prototxt, header + text_format.MessageToString(model.net_param))
    write_bytes_atomic(caffemodel, opencv_weights(model).SerializeToString())
    json_path = record_path(prototxt)
    write_json_atomic(json_path, dict(record, model_file=prototxt.name, weights_file=caffemodel.name))
    return prototxt, caffemodel, json_path
