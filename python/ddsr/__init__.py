"""DDSR: image super-resolution with a deep deconvolution network, in BVLC Caffe.

The package follows the pipeline, one subpackage per stage::

    datasets/  ->  tools/make_h5.py  ->  prototxt/ + solvers/  ->  caffe train  ->  tools/eval.py
    ddsr.data      ddsr.data            ddsr.model               ddsr.training      ddsr.evaluation

- :mod:`ddsr.data` -- the image sets' registry and fetching, training patches, HDF5 databases
- :mod:`ddsr.model` -- experiments (``experiments.yaml``), nets and solvers as code, official baselines
- :mod:`ddsr.training` -- running ``caffe train``, its log and snapshots, training curves
- :mod:`ddsr.evaluation` -- the MATLAB protocol, PSNR/SSIM/IFC, running deploy nets, reports, the paper's tables
- :mod:`ddsr.workflows` -- ``make demo`` and ``make reproduce``, over all the stages

Shared below them: :mod:`ddsr.matlab` (MATLAB-parity image operations, used by data preparation
and evaluation alike), :mod:`ddsr.atomic` (complete-or-absent writes) and :mod:`ddsr.paths`.
"""

__version__ = "0.1.0"
