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

from .settings import as_bool, as_float, as_int, require

__all__ = ["FIELD_ORDER", "SOLVER_FIELDS", "validate_solver_settings", "solver_parameter", "solver_text"]

# The order fields are written in: what is optimised, how, the schedule, testing, output.
FIELD_ORDER = (
    "net", "type", "base_lr", "momentum", "momentum2", "delta", "weight_decay", "clip_gradients",
    "lr_policy", "stepvalue", "stepsize", "gamma", "power", "max_iter", "iter_size",
    "test_iter", "test_interval", "test_initialization", "display", "average_loss",
    "snapshot", "snapshot_prefix", "random_seed", "solver_mode",
)


_SOLVER_TYPES = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")
_LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")
_ADAM_ONLY = ("momentum2",)
_ADAPTIVE_ONLY = ("delta",)  # Caffe reads delta in AdaGrad, RMSProp, AdaDelta and Adam


def _positive(x):
    return x > 0


def _non_negative(x):
    return x >= 0


def _at_least_one(x):
    return x >= 1


def _fraction(x):
    return 0 <= x < 1


# SolverParameter fields an experiment may set: name -> (kind, check, what the check means)
SOLVER_FIELDS = {
    "type": ("str", lambda x: x in _SOLVER_TYPES, "one of " + ", ".join(_SOLVER_TYPES)),
    "base_lr": ("float", _positive, "> 0"),
    "momentum": ("float", _fraction, "in [0, 1)"),
    "momentum2": ("float", _fraction, "in [0, 1)"),
    "delta": ("float", _positive, "> 0"),
    "weight_decay": ("float", _non_negative, ">= 0"),
    "clip_gradients": ("float", _positive, "> 0"),
    "lr_policy": ("str", lambda x: x in _LR_POLICIES, "one of " + ", ".join(_LR_POLICIES)),
    "gamma": ("float", _positive, "> 0"),
    "power": ("float", _non_negative, ">= 0"),
    "stepsize": ("int", _at_least_one, ">= 1"),
    "stepvalue": ("int_list", _at_least_one, "a list of increasing iterations >= 1"),
    "max_iter": ("int", _at_least_one, ">= 1"),
    "iter_size": ("int", _at_least_one, ">= 1"),
    "test_iter": ("int", _at_least_one, ">= 1"),
    "test_interval": ("int", _at_least_one, ">= 1"),
    "test_initialization": ("bool", None, ""),
    "display": ("int", _non_negative, ">= 0"),
    "average_loss": ("int", _at_least_one, ">= 1"),
    "snapshot": ("int", _non_negative, ">= 0"),
    "random_seed": ("int", _non_negative, ">= 0"),
}
_SOLVER_REQUIRED = ("type", "base_lr", "lr_policy", "max_iter", "test_iter", "test_interval",
                    "random_seed")


def validate_solver_settings(solver, where):
    """Check an experiment's ``solver`` section against :data:`SOLVER_FIELDS`; return the checked values.

    Raises ``ValueError`` naming ``where`` and the key: unknown or missing keys, values out of
    range, settings of another solver type, a schedule missing what its policy needs.
    """
    for key in solver:
        if key not in SOLVER_FIELDS:
            hint = ""
            if key in ("net", "snapshot_prefix", "solver_mode", "train_net", "test_net"):
                hint = " (it is derived from the experiment, not set)"
            raise ValueError(f"{where}: unknown key {key!r}{hint} "
                             f"(known: {', '.join(SOLVER_FIELDS)})")
    require(solver, _SOLVER_REQUIRED, where)
    checked = {}
    for key, value in solver.items():
        kind, check, meaning = SOLVER_FIELDS[key]
        if kind == "str":
            if not isinstance(value, str):
                raise ValueError(f"{where}: {key} must be a string, got {value!r}")
        elif kind == "bool":
            value = as_bool(value, key, where)
        elif kind == "int":
            value = as_int(value, key, where, -2**31)
        elif kind == "float":
            value = as_float(value, key, where)
        elif kind == "int_list":
            if isinstance(value, int) and not isinstance(value, bool):
                value = [value]
            if not isinstance(value, list) or not value:
                raise ValueError(f"{where}: {key} must be a non-empty list of integers")
            value = [as_int(v, key, where, 1) for v in value]
            if any(b <= a for a, b in zip(value, value[1:])):
                raise ValueError(f"{where}: {key} must be increasing, got {value}")
        if check is not None and not (all(map(check, value)) if kind == "int_list" else check(value)):
            raise ValueError(f"{where}: {key} must be {meaning}, got {value!r}")
        checked[key] = value

    solver_type = checked["type"]
    for key in _ADAM_ONLY:
        if key in checked and solver_type != "Adam":
            raise ValueError(f"{where}: {key} is an Adam setting but type is {solver_type} "
                             f"(set {key}: null to drop the inherited value)")
    for key in _ADAPTIVE_ONLY:
        if key in checked and solver_type in ("SGD", "Nesterov"):
            raise ValueError(f"{where}: {key} is not used by type {solver_type} "
                             f"(set {key}: null to drop the inherited value)")
    if solver_type in ("SGD", "Nesterov", "Adam") and "momentum" not in checked:
        raise ValueError(f"{where}: type {solver_type} needs momentum (Caffe's default is 0)")
    policy = checked["lr_policy"]
    needs = {"step": ("gamma", "stepsize"), "multistep": ("gamma", "stepvalue"),
             "exp": ("gamma",), "inv": ("gamma", "power"), "poly": ("power",),
             "sigmoid": ("gamma", "stepsize")}.get(policy, ())
    for key in needs:
        if key not in checked:
            raise ValueError(f"{where}: lr_policy {policy} needs {key}")
    if policy == "multistep" and checked["stepvalue"][-1] >= checked["max_iter"]:
        raise ValueError(f"{where}: stepvalue {checked['stepvalue']} must be below "
                         f"max_iter {checked['max_iter']}")
    return checked


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
