"""Using a trained model: on anyone's images, outside Caffe, and with the x8 self-ensemble.

- :mod:`ddsr.inference.caffe_model` -- a deploy net and its weights as numpy arrays
- :mod:`ddsr.inference.record` -- the pre/post-processing record (input kind, padding, scale,
  offset) that goes beside an export, and the lines that run it in ONNX Runtime and OpenCV
- :mod:`ddsr.inference.onnx_export` -- the ONNX graph, built with the ``onnx`` package
- :mod:`ddsr.inference.opencv_export` -- a prototxt + caffemodel that OpenCV 4's dnn loads
- :mod:`ddsr.inference.verify` -- ONNX Runtime and OpenCV against pycaffe
- :mod:`ddsr.inference.ensemble` -- the geometric self-ensemble (8 dihedral transforms)

``onnx``, ``onnxruntime`` and ``cv2`` are imported inside these modules' functions only, so
that the training and evaluation pipeline never loads them (``tests/test_inference_imports.py``).
"""
