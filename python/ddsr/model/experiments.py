"""The experiment file: every DDSR configuration by name, loaded and validated.

``experiments.yaml`` (repository root) has two top-level keys:

``defaults``
    settings every experiment starts from;
``experiments``
    name -> settings. An experiment may name another one as ``base``; its
    settings are then ``defaults``, deep-merged with the base experiment's
    (recursively), deep-merged with its own. In the ``solver`` section a value of
    ``null`` removes an inherited setting (Caffe's default then applies), e.g.
    ``momentum2: null`` for an SGD solver.

The keys of one experiment:

``description``
    one line saying what it reproduces (goes into the generated files' header);
``scale``
    2, 3 or 4;
``net``
    ``depth`` (layers of the deep mapping, the final 3x3x1 reconstruction
    layer included: DDSR-18 has 17 conv 3x3x64 + PReLU layers, then the
    3x3x1 layer), ``num_filters`` (64 in the paper), ``deconv_kernel`` (the
    deconvolution's kernel size; its pad is ``(deconv_kernel - scale) / 2``,
    see :func:`ddsr.model.nets.deconv_pad`), ``residual`` (the one Eltwise SUM);
``data``
    ``train_source``, ``val_source`` (HDF5 list files, relative to the repository
    root; ``{scale}`` is replaced by the scale), ``batch_size``,
    ``val_batch_size``, ``shuffle``;
``solver``
    SolverParameter fields (see :data:`SOLVER_FIELDS`). ``net``,
    ``snapshot_prefix`` and ``solver_mode`` are not settings: they follow from
    the experiment's name (see :class:`Experiment`) and from how the ``caffe``
    tool picks the device (see :mod:`ddsr.model.solvers`).

Everything here is plain Python and YAML (no Caffe), so other modules can ask
for an experiment's file names without importing Caffe.
"""

import copy
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

__all__ = [
    "SCALES",
    "SOLVER_FIELDS",
    "NetConfig",
    "DataConfig",
    "Experiment",
    "load_experiments",
    "parse_experiments",
]

SCALES = (2, 3, 4)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_TOP_KEYS = ("defaults", "experiments")
_EXPERIMENT_KEYS = ("description", "base", "scale", "net", "data", "solver")
_NET_KEYS = ("depth", "num_filters", "deconv_kernel", "residual")
_DATA_KEYS = ("train_source", "val_source", "batch_size", "val_batch_size", "shuffle")

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


@dataclass(frozen=True)
class NetConfig:
    """The architecture of one DDSR net (see :func:`ddsr.model.nets.ddsr`)."""

    scale: int
    depth: int
    num_filters: int
    deconv_kernel: int
    residual: bool


@dataclass(frozen=True)
class DataConfig:
    """The HDF5 databases of a train net (paths relative to the repository root)."""

    train_source: str
    val_source: str
    batch_size: int
    val_batch_size: int
    shuffle: bool


@dataclass(frozen=True)
class Experiment:
    """One named configuration: a net, its data and its solver settings.

    The file names follow from the name: ``prototxt/<name>_train.prototxt``,
    ``prototxt/<name>_deploy.prototxt``, ``solvers/<name>.prototxt`` and the
    snapshot prefix ``snapshots/<name>`` (Caffe appends ``_iter_<N>.caffemodel``).
    """

    name: str
    description: str
    net: NetConfig
    data: DataConfig
    solver: dict = field(hash=False)

    @property
    def scale(self):
        return self.net.scale

    @property
    def train_net_path(self):
        return f"prototxt/{self.name}_train.prototxt"

    @property
    def deploy_net_path(self):
        return f"prototxt/{self.name}_deploy.prototxt"

    @property
    def solver_path(self):
        return f"solvers/{self.name}.prototxt"

    @property
    def snapshot_prefix(self):
        return f"snapshots/{self.name}"


def load_experiments(path):
    """Read and validate an experiment file.

    Parameters
    ----------
    path : str or Path
        The YAML file (normally ``experiments.yaml`` at the repository root).

    Returns
    -------
    dict of str to Experiment
        In the file's order.

    Raises
    ------
    ValueError
        If the file is not valid YAML or any setting is missing, unknown or out
        of range; the message names the file, the experiment and the key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    return parse_experiments(document, source=str(path))


def parse_experiments(document, source="experiments.yaml"):
    """Validate the parsed YAML document of an experiment file.

    Parameters
    ----------
    document : dict
        What ``yaml.safe_load`` gave for the file.
    source : str
        Name used in error messages.

    Returns
    -------
    dict of str to Experiment

    Raises
    ------
    ValueError
        See :func:`load_experiments`.
    """
    if not isinstance(document, dict):
        raise ValueError(f"{source}: expected a mapping with keys {_TOP_KEYS}, "
                         f"got {type(document).__name__}")
    _check_keys(document, _TOP_KEYS, source)
    defaults = document.get("defaults") or {}
    raw = document.get("experiments")
    if not isinstance(defaults, dict):
        raise ValueError(f"{source}: 'defaults' must be a mapping")
    _check_keys(defaults, _EXPERIMENT_KEYS, f"{source}: defaults")
    if "base" in defaults:
        raise ValueError(f"{source}: defaults: 'base' belongs to an experiment, not to defaults")
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{source}: 'experiments' must be a non-empty mapping of name -> settings")
    for name, settings in raw.items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(f"{source}: experiment name {name!r} must be lower case letters, "
                             f"digits and '_' (it becomes a file name)")
        if settings is None:
            settings = raw[name] = {}
        if not isinstance(settings, dict):
            raise ValueError(f"{source}: experiment '{name}': expected a mapping of settings")
        _check_keys(settings, _EXPERIMENT_KEYS, f"{source}: experiment '{name}'")

    experiments = {}
    for name in raw:
        where = f"{source}: experiment '{name}'"
        merged = _deep_merge(defaults, _resolve_base(raw, name, source))
        experiments[name] = _build(name, merged, where)
    return experiments


def _resolve_base(raw, name, source, chain=()):
    """An experiment's own settings merged over its base chain's (defaults not included)."""
    if name in chain:
        cycle = " -> ".join(chain + (name,))
        raise ValueError(f"{source}: experiment '{chain[0]}': 'base' makes a cycle: {cycle}")
    settings = raw[name]
    base = settings.get("base")
    if base is None:
        return settings
    if base not in raw:
        raise ValueError(f"{source}: experiment '{name}': base '{base}' is not an experiment "
                         f"(known: {', '.join(raw)})")
    return _deep_merge(_resolve_base(raw, base, source, chain + (name,)), settings)


def _deep_merge(base, override):
    """``override`` over ``base``, recursing into mappings; ``None`` in a mapping removes a key."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if key == "base":
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        elif value is None:
            merged.pop(key, None)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _check_keys(mapping, known, where):
    unknown = [k for k in mapping if k not in known]
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(known)})")


def _require(mapping, keys, where):
    for key in keys:
        if key not in mapping:
            raise ValueError(f"{where}: missing {key!r} (set it in the experiment or in defaults)")


def _section(merged, name, where):
    section = merged.get(name, {})
    if not isinstance(section, dict):
        raise ValueError(f"{where}: '{name}' must be a mapping")
    return section


def _int(value, key, where, minimum):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: {key} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{where}: {key} must be >= {minimum}, got {value}")
    return value


def _bool(value, key, where):
    if not isinstance(value, bool):
        raise ValueError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _float(value, key, where):
    # YAML 1.1 (PyYAML) reads 1e-8 without a dot as a string: accept what float() reads.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {key} must be a finite number, got {value!r}")
    return float(value)


def _build(name, merged, where):
    _require(merged, ("scale", "net", "data", "solver"), where)
    description = merged.get("description", "")
    if not isinstance(description, str):
        raise ValueError(f"{where}: description must be a string")

    scale = merged["scale"]
    if isinstance(scale, bool) or scale not in SCALES:
        raise ValueError(f"{where}: scale must be one of {', '.join(map(str, SCALES))}, "
                         f"got {scale!r}")

    net = _section(merged, "net", where)
    _check_keys(net, _NET_KEYS, f"{where}: net")
    _require(net, _NET_KEYS, f"{where}: net")
    depth = _int(net["depth"], "net.depth", where, 1)
    num_filters = _int(net["num_filters"], "net.num_filters", where, 1)
    kernel = _int(net["deconv_kernel"], "net.deconv_kernel", where, 1)
    residual = _bool(net["residual"], "net.residual", where)
    if kernel < scale or (kernel - scale) % 2:
        fits = ", ".join(str(scale + 2 * p) for p in range(3))
        raise ValueError(
            f"{where}: net.deconv_kernel {kernel} cannot be used at scale {scale}: the "
            f"deconvolution gives exactly scale*n pixels centred on the HR grid only when "
            f"deconv_kernel - scale is even and >= 0 (pad = (deconv_kernel - scale) / 2); "
            f"use {fits}, ...")
    if residual and depth < 2:
        raise ValueError(f"{where}: net.residual needs net.depth >= 2 (the sum adds the "
                         f"upsampling features to the last 3x3x{num_filters} layer), got depth {depth}")

    data = _section(merged, "data", where)
    _check_keys(data, _DATA_KEYS, f"{where}: data")
    _require(data, _DATA_KEYS, f"{where}: data")
    sources = {}
    for key in ("train_source", "val_source"):
        value = data[key]
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: data.{key} must be a non-empty path")
        try:
            sources[key] = value.format(scale=scale)
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"{where}: data.{key} {value!r}: the only placeholder allowed "
                             f"is {{scale}}") from None

    solver = _section(merged, "solver", where)
    solver = _validate_solver(solver, f"{where}: solver")

    return Experiment(
        name=name,
        description=description,
        net=NetConfig(scale=scale, depth=depth, num_filters=num_filters,
                      deconv_kernel=kernel, residual=residual),
        data=DataConfig(
            train_source=sources["train_source"],
            val_source=sources["val_source"],
            batch_size=_int(data["batch_size"], "data.batch_size", where, 1),
            val_batch_size=_int(data["val_batch_size"], "data.val_batch_size", where, 1),
            shuffle=_bool(data["shuffle"], "data.shuffle", where),
        ),
        solver=solver,
    )


def _validate_solver(solver, where):
    for key in solver:
        if key not in SOLVER_FIELDS:
            hint = ""
            if key in ("net", "snapshot_prefix", "solver_mode", "train_net", "test_net"):
                hint = " (it is derived from the experiment, not set)"
            raise ValueError(f"{where}: unknown key {key!r}{hint} "
                             f"(known: {', '.join(SOLVER_FIELDS)})")
    _require(solver, _SOLVER_REQUIRED, where)
    checked = {}
    for key, value in solver.items():
        kind, check, meaning = SOLVER_FIELDS[key]
        if kind == "str":
            if not isinstance(value, str):
                raise ValueError(f"{where}: {key} must be a string, got {value!r}")
        elif kind == "bool":
            value = _bool(value, key, where)
        elif kind == "int":
            value = _int(value, key, where, -2**31)
        elif kind == "float":
            value = _float(value, key, where)
        elif kind == "int_list":
            if isinstance(value, int) and not isinstance(value, bool):
                value = [value]
            if not isinstance(value, list) or not value:
                raise ValueError(f"{where}: {key} must be a non-empty list of integers")
            value = [_int(v, key, where, 1) for v in value]
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
