"""Stage 4, evaluation: the MATLAB protocol, the metrics, running deploy nets, reports, the paper's tables.

- :mod:`ddsr.evaluation.protocol` -- one image through the SRCNN/FSRCNN test protocol; set listing
- :mod:`ddsr.evaluation.metrics`, :mod:`ddsr.evaluation.ifc` -- PSNR, SSIM, IFC with MATLAB parity
- :mod:`ddsr.evaluation.deploy_net` -- a deploy net, its sidecar settings and weights, checked
- :mod:`ddsr.evaluation.upscaler` -- running a deploy net over an image (padding, tiles)
- :mod:`ddsr.evaluation.run` -- a method over test sets and scales
- :mod:`ddsr.evaluation.results` -- the evaluation folder (``summary.json``, ``per_image.csv``, ``run.json``)
- :mod:`ddsr.evaluation.report` -- Table 3 in Markdown
- :mod:`ddsr.evaluation.published` -- the paper's numbers (Tables 1-3)
- :mod:`ddsr.evaluation.compare` -- side-by-side crops (Fig. 7)
"""
