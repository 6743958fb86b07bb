"""Caffe solver files (``SolverParameter``) for the experiments.

Paths in a solver are relative to the repository root, the working directory
of ``caffe train``: ``net: "prototxt/<name>_train.prototxt"`` and
``snapshot_prefix: "snapshots/<name>"``.

``solver_mode`` is always ``CPU``. The ``caffe`` tool (``tools/caffe.cpp``,
``train()``) uses the solver's mode only when no ``-gpu`` flag is given, and
``-gpu 0`` switches to the GPU whatever the file says. So with ``CPU`` in the
file, ``caffe train -solver solvers/ddsr_x3.prototxt -gpu 0`` trains on GPU 0
of a CUDA build and the same command without ``-gpu`` trains on the CPU of any
build; with ``GPU`` in the file, the command without ``-gpu`` would abort on a
CPU-only build.
"""

__all__ = ["FIELD_ORDER", "solver_parameter", "solver_text"]

# The order fields are written in: what is optimised, how, the schedule, testing, output.
FIELD_ORDER = (
    "net", "type", "base_lr", "momentum", "momentum2", "delta", "weight_decay", "clip_gradients",
    "lr_policy", "stepvalue", "stepsize", "gamma", "power", "max_iter", "iter_size",
    "test_iter", "test_interval", "test_initialization", "display", "average_loss",
    "snapshot", "snapshot_prefix", "random_seed", "solver_mode",
)


def solver_parameter(experiment):
    """The ``SolverParameter`` of an experiment.

    Parameters
    ----------
    experiment : ddsr.model.experiments.Experiment

    Returns
    -------
    caffe_pb2.SolverParameter
        The experiment's solver settings plus ``net`` (its train net),
        ``snapshot_prefix`` (``snapshots/<name>``) and ``solver_mode: CPU``.
    """
    from caffe.proto import caffe_pb2

    param = caffe_pb2.SolverParameter()
    param.net = experiment.train_net_path
    for key, value in experiment.solver.items():
        if key in ("stepvalue", "test_iter"):  # repeated fields
            getattr(param, key).extend(value if isinstance(value, list) else [value])
        else:
            setattr(param, key, value)
    param.snapshot_prefix = experiment.snapshot_prefix
    param.solver_mode = caffe_pb2.SolverParameter.CPU
    return param


def solver_text(param):
    """Prototxt text of a ``SolverParameter``, fields in :data:`FIELD_ORDER`.

    (protobuf's own printer orders fields by their number, which puts ``net``
    and ``type`` last.) The text parses back to ``param`` exactly.
    """
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    set_fields = [f.name for f, _ in param.ListFields()]
    names = [n for n in FIELD_ORDER if n in set_fields]
    names += [n for n in set_fields if n not in FIELD_ORDER]
    lines = []
    for name in names:
        single = caffe_pb2.SolverParameter()
        field = getattr(param, name)
        if hasattr(field, "extend"):
            getattr(single, name).extend(field)
        else:
            setattr(single, name, field)
        lines.append(text_format.MessageToString(single))
    text = "".join(lines)
    if text_format.Parse(text, caffe_pb2.SolverParameter()) != param:
        raise AssertionError("solver text does not parse back to the same SolverParameter")
    return text
