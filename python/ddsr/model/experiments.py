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
    the training database and how it is made (see :class:`ddsr.data.database.DataRecipe`):
    ``database`` (its folder, relative to the repository root; ``{scale}`` is replaced by
    the scale; the train net reads ``<database>/train.txt`` and ``val.txt``),
    ``train_sets``, ``val_set``, ``val_images``, ``patch_size``, ``stride``, ``flip``,
    ``rot90``, ``downscale``, ``multiple_of``, ``seed``; and how Caffe reads it:
    ``batch_size``, ``val_batch_size``, ``shuffle``;
``solver``
    SolverParameter fields (see :data:`ddsr.model.solvers.SOLVER_FIELDS`). ``net``,
    ``snapshot_prefix`` and ``solver_mode`` are not settings: they follow from
    the experiment's name (see :class:`Experiment`) and from how the ``caffe``
    tool picks the device (see :mod:`ddsr.model.solvers`). ``test_iter`` is checked
    against the validation split of the built database before training
    (:func:`ddsr.data.database.check_database`).

Everything here is plain Python and YAML (no Caffe), so other modules can ask
for an experiment's file names without importing Caffe.
"""

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..data.database import DataRecipe
from ..paths import REPO_ROOT, run_dir, train_log_path
from .nets import deconv_pad
from .settings import as_bool, as_int, check_keys, require
from .solvers import validate_solver_settings

__all__ = [
    "SCALES",
    "NetConfig",
    "DataConfig",
    "Experiment",
    "EXPERIMENTS_PATH",
    "load_experiments",
    "default_recipe",
    "parse_experiments",
]

SCALES = (2, 3, 4)
EXPERIMENTS_PATH = REPO_ROOT / "experiments.yaml"

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_TOP_KEYS = ("defaults", "experiments")
_EXPERIMENT_KEYS = ("description", "base", "scale", "net", "data", "solver")
_NET_KEYS = ("depth", "num_filters", "deconv_kernel", "residual")
_DATA_KEYS = ("database", "train_sets", "val_set", "val_images", "patch_size", "stride", "flip", "rot90",
              "downscale", "multiple_of", "seed", "batch_size", "val_batch_size", "shuffle")


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
    """An experiment's training data: the database recipe and how Caffe's HDF5Data layers read it."""

    recipe: DataRecipe
    batch_size: int
    val_batch_size: int
    shuffle: bool

    @property
    def train_source(self):
        return self.recipe.train_source

    @property
    def val_source(self):
        return self.recipe.val_source


@dataclass(frozen=True)
class Experiment:
    """One named configuration: a net, its data and its solver settings.

    Every file name follows from the name (all relative to the repository root):
    ``prototxt/<name>_train.prototxt``, ``prototxt/<name>_deploy.prototxt``,
    ``solvers/<name>.prototxt``, the snapshot prefix ``snapshots/<name>`` (Caffe appends
    ``_iter_<N>.caffemodel``), the run folder ``runs/<name>/`` with the training log, and
    the evaluation folder ``runs/<name>/eval/``. The database folder is the data recipe's.
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

    @property
    def recipe(self):
        """The training database's recipe (:class:`ddsr.data.database.DataRecipe`)."""
        return self.data.recipe

    @property
    def run_dir(self):
        """``runs/<name>``: the training log and what is made from it."""
        return run_dir(self.name)

    @property
    def log_path(self):
        return train_log_path(self.name)

    @property
    def eval_dir(self):
        return self.run_dir / "eval"

    def newest_weights(self, workdir=REPO_ROOT):
        """The newest ``.caffemodel`` of this experiment's run, or None."""
        from ..training.snapshots import newest_snapshot

        snap = newest_snapshot(self.snapshot_prefix, workdir, resumable=False)
        return snap.caffemodel if snap else None

    def check_database(self):
        """Refuse a database that is not the one this experiment's train net reads.

        Returns the database's manifest; raises :class:`ddsr.data.database.DatabaseMismatch`.
        """
        from ..data.database import check_database

        return check_database(self.recipe.folder, scale=self.scale, patch_size=self.recipe.patch_size,
                              test_iter=self.solver["test_iter"], val_batch_size=self.data.val_batch_size,
                              reader=self.name,
                              rebuild_hint=f"build it with tools/make_h5.py --experiment {self.name}")


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
    return parse_experiments(_read_document(path), source=str(path))


def _read_document(path):
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None


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
    check_keys(document, _TOP_KEYS, source)
    defaults = document.get("defaults") or {}
    raw = document.get("experiments")
    if not isinstance(defaults, dict):
        raise ValueError(f"{source}: 'defaults' must be a mapping")
    check_keys(defaults, _EXPERIMENT_KEYS, f"{source}: defaults")
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
        check_keys(settings, _EXPERIMENT_KEYS, f"{source}: experiment '{name}'")

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


def _section(merged, name, where):
    section = merged.get(name, {})
    if not isinstance(section, dict):
        raise ValueError(f"{where}: '{name}' must be a mapping")
    return section


def _build(name, merged, where):
    require(merged, ("scale", "net", "data", "solver"), where)
    description = merged.get("description", "")
    if not isinstance(description, str):
        raise ValueError(f"{where}: description must be a string")

    scale = merged["scale"]
    if isinstance(scale, bool) or scale not in SCALES:
        raise ValueError(f"{where}: scale must be one of {', '.join(map(str, SCALES))}, "
                         f"got {scale!r}")

    net = _section(merged, "net", where)
    check_keys(net, _NET_KEYS, f"{where}: net")
    require(net, _NET_KEYS, f"{where}: net")
    depth = as_int(net["depth"], "net.depth", where, 1)
    num_filters = as_int(net["num_filters"], "net.num_filters", where, 1)
    kernel = as_int(net["deconv_kernel"], "net.deconv_kernel", where, 1)
    residual = as_bool(net["residual"], "net.residual", where)
    try:
        deconv_pad(scale, kernel)
    except ValueError as exc:
        raise ValueError(f"{where}: net.{exc}") from None
    if residual and depth < 2:
        raise ValueError(f"{where}: net.residual needs net.depth >= 2 (the sum adds the "
                         f"upsampling features to the last 3x3x{num_filters} layer), got depth {depth}")

    data = _data_config(_section(merged, "data", where), scale, where)
    solver = _section(merged, "solver", where)
    solver = validate_solver_settings(solver, f"{where}: solver")

    return Experiment(
        name=name,
        description=description,
        net=NetConfig(scale=scale, depth=depth, num_filters=num_filters,
                      deconv_kernel=kernel, residual=residual),
        data=data,
        solver=solver,
    )


def _set_names(value, key, where):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{where}: data.{key} must be a set name or a non-empty list of set names")
    return tuple(value)


def _data_config(data, scale, where):
    """The ``data`` section: the database recipe (:class:`DataRecipe`) and the batch settings."""
    check_keys(data, _DATA_KEYS, f"{where}: data")
    require(data, _DATA_KEYS, f"{where}: data")
    folder = data["database"]
    if not isinstance(folder, str) or not folder.strip():
        raise ValueError(f"{where}: data.database must be a non-empty path")
    try:
        folder = folder.format(scale=scale).rstrip("/")
    except (KeyError, IndexError, ValueError):
        raise ValueError(f"{where}: data.database {folder!r}: the only placeholder allowed "
                         f"is {{scale}}") from None
    if any(c.isspace() for c in folder):
        raise ValueError(f"{where}: data.database {folder!r}: Caffe's list files cannot name a path with spaces")
    downscale = data["downscale"]
    if not isinstance(downscale, list) or not all(isinstance(f, (int, float)) and 0 < f < 1 for f in downscale):
        raise ValueError(f"{where}: data.downscale must be a list of factors in (0, 1), got {downscale!r}")
    val_set = data["val_set"]
    if not isinstance(val_set, str) or not val_set.strip():
        raise ValueError(f"{where}: data.val_set must be a set name (the train net has a validation phase)")
    train_sets = _set_names(data["train_sets"], "train_sets", where)
    if val_set in train_sets:
        raise ValueError(f"{where}: data.val_set {val_set} is also one of data.train_sets")
    recipe = DataRecipe(
        scale=scale, folder=folder, train_sets=train_sets, val_set=val_set,
        val_images=as_int(data["val_images"], "data.val_images", where, 1),
        patch_size=as_int(data["patch_size"], "data.patch_size", where, 1),
        stride=as_int(data["stride"], "data.stride", where, 1),
        flip=as_bool(data["flip"], "data.flip", where), rot90=as_bool(data["rot90"], "data.rot90", where),
        downscale=tuple(float(f) for f in downscale),
        multiple_of=as_int(data["multiple_of"], "data.multiple_of", where, 1),
        seed=as_int(data["seed"], "data.seed", where, 0))
    return DataConfig(
        recipe=recipe,
        batch_size=as_int(data["batch_size"], "data.batch_size", where, 1),
        val_batch_size=as_int(data["val_batch_size"], "data.val_batch_size", where, 1),
        shuffle=as_bool(data["shuffle"], "data.shuffle", where),
    )


def default_recipe(scale, path=EXPERIMENTS_PATH):
    """The data recipe of the file's ``defaults`` at ``scale``: what ``tools/make_h5.py --scale S`` builds.

    Raises
    ------
    ValueError
        As :func:`load_experiments`, for the ``defaults`` section.
    """
    document = _read_document(path)
    defaults = document.get("defaults") if isinstance(document, dict) else None
    if not isinstance(defaults, dict) or not isinstance(defaults.get("data"), dict):
        raise ValueError(f"{path}: no 'defaults: data:' section")
    return _data_config(defaults["data"], int(scale), f"{path}: defaults").recipe


