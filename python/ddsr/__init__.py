"""DDSR: image super-resolution with a deep deconvolution network, in BVLC Caffe.

The pipeline, one module per step:

- :mod:`ddsr.matlab` -- MATLAB-parity image operations (imread, rgb2ycbcr, modcrop, imresize)
- :mod:`ddsr.datasets` -- the dataset registry, fetching and checksums
- :mod:`ddsr.patches`, :mod:`ddsr.h5` -- training patches and Caffe's HDF5 databases
- :mod:`ddsr.nets`, :mod:`ddsr.solvers`, :mod:`ddsr.experiments` -- nets and solvers as code
- :mod:`ddsr.metrics`, :mod:`ddsr.ifc` -- PSNR, SSIM and IFC with MATLAB parity
- :mod:`ddsr.evaluate`, :mod:`ddsr.report` -- evaluation through pycaffe and Table 3
- :mod:`ddsr.caffe_runner` -- running ``caffe train`` and reading its log
"""

__version__ = "0.1.0"
