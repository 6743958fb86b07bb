"""Stage 2, the model: experiments, nets and solvers as code, and the official baselines.

- :mod:`ddsr.model.experiments` -- ``experiments.yaml``: each configuration's net, solver, data
  recipe and file paths (the single source of truth)
- :mod:`ddsr.model.nets` -- the DDSR train and deploy nets (``caffe.NetSpec``)
- :mod:`ddsr.model.solvers` -- the Adam/SGD solver prototxt
- :mod:`ddsr.model.official_weights`, :mod:`ddsr.model.official` -- the released SRCNN/FSRCNN
  weights, fetched and converted exactly to Caffe
"""
