"""Stage 3, training: ``caffe train`` in a child process, its log, its snapshots, its curves.

- :mod:`ddsr.training.runner` -- the plain ``caffe train -solver ...`` with progress, resume, NaN watch
- :mod:`ddsr.training.log` -- reading Caffe's glog output
- :mod:`ddsr.training.snapshots` -- solvers and snapshots on disk
- :mod:`ddsr.training.curves` -- loss and PSNR against iteration (Fig. 5, 6)
- :mod:`ddsr.training.gpu_check`, :mod:`ddsr.training.gpu_facts` -- ``make check-gpu``: CPU/GPU parity and timings per engine, and its report
  (:mod:`ddsr.training.prototxt_text` edits the nets where pycaffe cannot be imported)
"""
