"""Stage 1, the data: the image sets' registry and fetching, training patches, Caffe's HDF5 databases.

- :mod:`ddsr.data.registry` -- every file of every set with its sha256; verifying a set folder
- :mod:`ddsr.data.fetch` -- fetching a set from its repositories, a mirror or a local folder
- :mod:`ddsr.data.patches` -- LR/HR patch pairs as SRCNN's ``generate_train.m`` cuts them
- :mod:`ddsr.data.h5` -- the sharded, atomically written HDF5 databases ``caffe train`` reads
- :mod:`ddsr.data.database` -- the database an experiment's recipe asks for (``tools/make_h5.py``)
"""
