"""A Caffe deploy net with its weights, as the exporters read them, and where models are found.

:func:`read_model` loads the net through the evaluation stage's :func:`ddsr.evaluation.deploy_net.load_net`
(which checks the weights against the net before Caffe sees them) and copies out the layer
definitions and learned blobs; :func:`experiment_model` finds an experiment's deploy net and
newest snapshot.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The evaluation stage's one way to parse and load a deploy net (weights checked before Caffe
# sees them) and to resolve its sidecar settings.
from ..evaluation.deploy_net import ModelError, load_net

__all__ = [
    "CaffeModel",
    "read_model",
    "experiment_model",
]


@dataclass
class CaffeModel:
    """A deploy net's definition and learned parameters, outside pycaffe.

    Attributes
    ----------
    deploy, weights : Path
    net_param : caffe_pb2.NetParameter
        The parsed deploy prototxt.
    params : dict of str to list of ndarray
        ``{layer name: [blob, ...]}`` in the net's shapes (float32 copies of ``net.params``);
        a channel-shared PReLU slope is a 0-D array, as Caffe stores it.
    input_name, output_name : str
        The net's one input blob and the blob :mod:`ddsr.evaluation.upscaler` reads (its last output).
    factor : int
        Output pixels per input pixel (the scale for nets fed the LR image, 1 for the
        bicubic-fed ones), measured by reshaping the net.
    """

    deploy: Path
    weights: Path
    net_param: object
    params: dict
    input_name: str
    output_name: str
    factor: int


def read_model(deploy, weights):
    """Load a deploy net and its weights through pycaffe and copy out what an exporter needs.

    Raises
    ------
    ModelError
        As :func:`ddsr.evaluation.deploy_net.load_net` (missing files, a mismatched weights file, ...), or
        a net whose output is not an integer multiple of its input in both dimensions.
    """
    net, net_param = load_net(deploy, weights)
    params = {name: [np.array(b.data, dtype=np.float32) for b in blobs] for name, blobs in net.params.items()}
    input_name, output_name = net.inputs[0], net.outputs[-1]
    h, w = 23, 29  # odd and unequal, so that a factor of the wrong axis would show
    net.blobs[input_name].reshape(1, 1, h, w)
    net.reshape()
    oh, ow = net.blobs[output_name].data.shape[2:]
    del net
    if oh % h or ow % w or oh // h != ow // w:
        raise ModelError(f"{deploy}: the output {oh}x{ow} of a {h}x{w} input is not an integer multiple "
                         f"of it; only fully convolutional SR nets (output = factor x input) are supported")
    return CaffeModel(Path(deploy), Path(weights), net_param, params, input_name, output_name, oh // h)


def experiment_model(name, repo_root, weights=None):
    """The deploy net and weights of an experiment of ``experiments.yaml``.

    Parameters
    ----------
    name : str
    repo_root : Path
        Where ``experiments.yaml``, ``prototxt/`` and ``snapshots/`` are.
    weights : path-like, optional
        Default: the experiment's newest snapshot (highest iteration).

    Returns
    -------
    (deploy Path, weights Path, scale int)

    Raises
    ------
    ModelError
        An unknown experiment, or no snapshot yet (and no weights given).
    """
    from ..model.experiments import load_experiments

    repo_root = Path(repo_root)
    try:
        experiments = load_experiments(repo_root / "experiments.yaml")
    except ValueError as exc:
        raise ModelError(str(exc)) from exc
    if name not in experiments:
        raise ModelError(f"unknown experiment {name!r}; experiments.yaml has: {', '.join(experiments)}")
    exp = experiments[name]
    deploy = repo_root / exp.deploy_net_path
    if weights is None:
        weights = exp.newest_weights(repo_root)
        if weights is None:
            raise ModelError(f"experiment {name!r} has no snapshot yet ({exp.snapshot_prefix}_iter_*.caffemodel); "
                             f"train it (tools/train.py {name}) or give --weights")
    return deploy, Path(weights), exp.scale
