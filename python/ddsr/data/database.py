"""The training database an experiment reads: its recipe, building it, checking it before training.

A :class:`DataRecipe` is the data part of an experiment (``experiments.yaml``): which sets
the patches come from, the LR patch size and stride, augmentation, the validation images, and
the database folder the experiment's train net reads. :func:`build` cuts the patches
(:mod:`ddsr.data.patches`) and writes the database (:mod:`ddsr.data.h5`) exactly as the recipe
says; ``tools/make_h5.py`` is its command line. :func:`check_database` compares a database's
``manifest.json`` with what a net expects, so that training refuses a database made for
another scale or patch size instead of failing inside Caffe (or, worse, not failing).
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..paths import REPO_ROOT
from . import h5, patches
from .registry import image_paths, list_set_images, load_registry

__all__ = ["DataRecipe", "DatabaseMismatch", "set_sources", "held_out_checksums", "count", "build",
           "check_database", "check_test_pass"]


@dataclass(frozen=True)
class DataRecipe:
    """How one training database is made (the ``data`` section of an experiment, with its scale).

    Attributes
    ----------
    scale : int
    folder : str
        The database folder, relative to the repository root (``data/h5/x3``); it holds
        ``train.txt`` and ``val.txt``, the train net's ``hdf5_data_param`` sources.
    train_sets : tuple of str
        Set folders the training patches come from, in order.
    val_set : str or None
        Set of held-out images for the validation split (None: no validation split).
    val_images : int
        The first this many images of ``val_set``.
    patch_size, stride : int
        LR patch side and stride; the HR label is ``scale * patch_size`` pixels square.
    flip, rot90 : bool
    downscale : tuple of float
        Augmentation (:func:`ddsr.data.patches.augmentations`).
    multiple_of : int
        Keep a multiple of this many training patches (SRCNN writes 128-patch chunks).
    seed : int
        Seed of the shuffles.
    """

    scale: int
    folder: str
    train_sets: tuple
    val_set: str
    val_images: int
    patch_size: int
    stride: int
    flip: bool
    rot90: bool
    downscale: tuple
    multiple_of: int
    seed: int

    @property
    def train_source(self):
        return f"{self.folder}/train.txt"

    @property
    def val_source(self):
        return f"{self.folder}/val.txt"

    @property
    def path(self):
        """The database folder as a path (relative folders are under the repository root)."""
        folder = Path(self.folder)
        return folder if folder.is_absolute() else REPO_ROOT / folder

    def replace(self, **changes):
        """The same recipe with some fields changed (e.g. other sets for ``make demo DATA=...``)."""
        return dataclasses.replace(self, **changes)


class DatabaseMismatch(ValueError):
    """A database is missing, or was built for another scale, patch size or validation split."""


def set_sources(names, data_root, registry=None):
    """``(set, path)`` of every image of the named sets, in order.

    A registry set must be complete, every file with the registry's sha256, and is read as the
    registry lists it (extra files are not training data); any other set is every image of its
    folder (:func:`list_set_images`).
    """
    registry = load_registry() if registry is None else registry
    return [(name, path) for name in names
            for path in (image_paths(name, data_root, registry=registry, check_sha256=True)
                         if name in registry.names else list_set_images(data_root, name))]


def held_out_checksums(registry=None):
    """sha256 of every test image of the registry (Set5, Set14, BSD200): never a validation image."""
    registry = load_registry() if registry is None else registry
    return {f.sha256 for name in registry.names if registry.role(name) == "test"
            for f in registry.files(name)}


def _sources(recipe, data_root, registry):
    train = set_sources(recipe.train_sets, data_root, registry)
    val = []
    if recipe.val_set is not None:
        if recipe.val_set in recipe.train_sets:
            raise ValueError(f"the validation set {recipe.val_set} is also a training set")
        if not (Path(data_root) / recipe.val_set).is_dir():
            raise ValueError(f"no validation set folder {Path(data_root) / recipe.val_set} "
                             f"(fetch it with tools/fetch_datasets.py {recipe.val_set}, or pass --no-val)")
        val = set_sources([recipe.val_set], data_root, registry)[:recipe.val_images]
    return train, val


def _geometry(recipe):
    return dict(scale=recipe.scale, patch_size=recipe.patch_size, stride=recipe.stride)


def count(recipe, data_root, skip_bad=False, registry=None):
    """The patch counts :func:`build` would give, from the image sizes alone (``--dry-run``).

    Returns
    -------
    dict
        ``train_images``, ``train_skipped``, ``train_patches_extracted``, ``num_patches`` (after
        the cut to ``multiple_of``) and, with a validation split, ``val_images``, ``val_patches``.
    """
    registry = load_registry() if registry is None else registry
    train, val = _sources(recipe, data_root, registry)
    augment = dict(flip=recipe.flip, rot90=recipe.rot90, downscales=recipe.downscale)
    extracted, used, skipped = patches.count_patch_pairs(train, **_geometry(recipe), **augment, skip_bad=skip_bad)
    counts = {"train_images": used, "train_skipped": skipped, "train_patches_extracted": extracted,
              "num_patches": extracted // recipe.multiple_of * recipe.multiple_of}
    if val:
        val_patches, val_used, _ = patches.count_patch_pairs(val, **_geometry(recipe), skip_bad=skip_bad)
        counts.update(val_images=val_used, val_patches=val_patches)
    return counts


def build(recipe, data_root, out=None, *, skip_bad=False, max_shard_bytes=h5.MAX_SHARD_BYTES,
          progress=False, registry=None):
    """Build the database of a recipe into ``out`` (default: the recipe's folder), atomically.

    Returns
    -------
    dict
        The manifest written beside the shards (:func:`ddsr.data.h5.build_database`).
    """
    registry = load_registry() if registry is None else registry
    train, val = _sources(recipe, data_root, registry)
    return h5.build_database(
        recipe.path if out is None else Path(out), train, **_geometry(recipe), seed=recipe.seed,
        multiple_of=recipe.multiple_of, val_sources=val, flip=recipe.flip, rot90=recipe.rot90,
        downscales=list(recipe.downscale), skip_bad=skip_bad, max_shard_bytes=max_shard_bytes,
        list_relative_to=REPO_ROOT, held_out_sha256=held_out_checksums(registry),
        params={"data_root": str(data_root), "train_sets": list(recipe.train_sets),
                "val_set": recipe.val_set, "val_images": [f"{s}/{p.name}" for s, p in val]},
        progress=progress)


def check_database(folder, *, scale, patch_size, test_iter=None, val_batch_size=None, reader="the net",
                   rebuild_hint=""):
    """Check that a database is the one a net reads, before Caffe does; return its manifest.

    Parameters
    ----------
    folder : path-like
        The database folder (relative: under the repository root).
    scale, patch_size : int
        What the net was built for: ``patch_size`` x ``patch_size`` LR inputs and labels
        ``scale`` times larger.
    test_iter, val_batch_size : int, optional
        The solver's test pass. It must not read more validation patches than there are
        (Caffe would wrap around and count some twice).
    reader : str
        Who reads it, for the message (``ddsr_x3``).
    rebuild_hint : str
        Appended to every message: how to build the right database.

    Raises
    ------
    DatabaseMismatch
        One line naming the database's and the net's values.
    """
    path = Path(folder)
    path = path if path.is_absolute() else REPO_ROOT / path
    hint = f"; {rebuild_hint}" if rebuild_hint else ""
    try:
        manifest = h5.read_manifest(path)
    except (OSError, ValueError) as exc:
        raise DatabaseMismatch(f"no training database for {reader} in {folder} ({exc}){hint}") from None
    built = manifest.get("params", {})
    got = (built.get("scale"), built.get("patch_size"))
    if got != (scale, patch_size):
        raise DatabaseMismatch(
            f"{folder} was built for scale {got[0]} with {got[1]}x{got[1]} LR patches, but {reader} reads "
            f"scale {scale} with {patch_size}x{patch_size} LR patches{hint}")
    if test_iter is not None and val_batch_size is not None:
        val = manifest.get("splits", {}).get("val")
        check_test_pass(test_iter, val_batch_size, val["num_patches"] if val else 0, reader=reader,
                        database=folder, rebuild_hint=rebuild_hint)
    return manifest


def check_test_pass(test_iter, val_batch_size, val_patches, *, reader="the net", database="the database",
                    rebuild_hint=""):
    """Refuse a test pass that reads more validation patches than there are (Caffe would wrap around).

    Raises
    ------
    DatabaseMismatch
        Naming both counts and the ``test_iter`` that reads each patch once.
    """
    if test_iter * val_batch_size > val_patches:
        hint = f"; {rebuild_hint}" if rebuild_hint else ""
        raise DatabaseMismatch(
            f"{reader}'s test pass reads test_iter {test_iter} x batch {val_batch_size} = "
            f"{test_iter * val_batch_size} validation patches, {database} has {val_patches}: set test_iter to "
            f"{val_patches // val_batch_size} in experiments.yaml (each patch read once){hint}")
