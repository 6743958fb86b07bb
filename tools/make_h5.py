#!/usr/bin/env python3
"""Build the Caffe HDF5 training database of DDSR: LR/HR patch pairs, shuffled, sharded.

`tools/make_h5.py --experiment ddsr_x3` builds exactly the database the experiment's train net
reads, with the data recipe of experiments.yaml: General-100 + T91 + BSD100 (291 images), Y
channel, 7x7 LR patches with stride 4 and their 21x21 HR labels, 252,032 patches, plus a
validation split from the first 10 images of BSD200-train, into data/h5/x3/ (train.txt,
val.txt, shards, manifest.json). `--scale S` builds the recipe of experiments.yaml's defaults
at scale S into data/h5/xS/. The logic is in ddsr.data.database.
"""

import argparse
import sys
from pathlib import Path

try:
    import ddsr  # noqa: F401  (importable once installed; else from the clone's python/)
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from ddsr import atomic  # noqa: E402
from ddsr.data import database, h5, patches  # noqa: E402
from ddsr.data import registry as datasets  # noqa: E402
from ddsr.model import experiments  # noqa: E402
from ddsr.paths import DEFAULT_DATA_ROOT, REPO_ROOT  # noqa: E402

PROG = "make_h5"


class UsageError(Exception):
    """Bad input the user can fix; reported as one line."""


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Build the HDF5 training database for Caffe's HDF5Data layer: every image -> "
            "Y (MATLAB rgb2ycbcr) -> modcrop(scale) -> im2single -> LR = MATLAB bicubic "
            "imresize(1/scale) in single precision; LR patches (patch-size, stride) with the "
            "HR blocks they cover as labels; shuffled with a fixed seed; sharded; written "
            "atomically. The recipe is an experiment's (--experiment NAME) or experiments.yaml's "
            "defaults at a scale (--scale S: the paper's x3 database has 252,032 patches); the "
            "options below change single settings of it."),
        epilog=(
            "Sets named in the dataset registry (datasets/registry.tsv) are read in registry "
            "order and must be complete, every file with the registry's sha256 (fetch them "
            "with tools/fetch_datasets.py); any other "
            "name is read as a folder of images under --data-root, sorted by file name. "
            "Outputs: <out>/train.txt and <out>/val.txt (the list files for hdf5_data_param "
            "source, entries relative to the repository root when the database is under it), "
            "shards <split>_NNN.h5 with float32 datasets 'data' (N x 1 x n x n) and 'label' "
            "(N x 1 x sn x sn) in [0, 1], and manifest.json. With --experiment, the database "
            "is then checked against the experiment's solver (its test_iter). The database is "
            "built in a hidden sibling folder (.x3.tmp-<pid>-*) that replaces <out> only when "
            "complete: an error, Ctrl-C (exit 130) or SIGTERM (exit 143) leaves the previous "
            "database as it was, and a folder left by a killed run is removed by the next run."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", metavar="NAME",
                       help="build the database of this experiment of experiments.yaml, into its folder")
    which.add_argument("--scale", type=int, help="upscaling factor (2, 3, 4, ...): the defaults' recipe")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                        help="folder holding the set folders (default: data/ in the repository; "
                             "e.g. /path/to/local/copy)")
    parser.add_argument("--out", type=Path, default=None,
                        help="database folder (default: the recipe's, e.g. data/h5/x3)")
    recipe = parser.add_argument_group("settings of the recipe (default: the experiment's)")
    recipe.add_argument("--train-sets", nargs="+", default=None, metavar="SET",
                        help="training set folders under --data-root (paper: General-100 T91 BSD100)")
    recipe.add_argument("--patch-size", type=int, default=None, help="LR patch side n (paper: 7)")
    recipe.add_argument("--stride", type=int, default=None, help="LR patch stride (paper: 4)")
    recipe.add_argument("--seed", type=int, default=None, help="seed of the shuffles (default: 0)")
    recipe.add_argument("--multiple-of", type=int, default=None, metavar="N",
                        help="keep a multiple of N training patches after shuffling, dropping the rest, "
                             "as SRCNN's generate_train.m (128-patch chunks); 1 keeps all")
    recipe.add_argument("--val-set", default=None,
                        help="set of held-out images for the validation split, not a training or test "
                             "set (paper recipe: BSD200-train)")
    recipe.add_argument("--val-images", type=int, default=None, metavar="N",
                        help="use the first N images of --val-set, sorted by name (paper recipe: 10)")
    recipe.add_argument("--no-val", action="store_true", help="no validation split")
    recipe.add_argument("--flip", action="store_true", default=None,
                        help="augment: add the left-right mirror of every training image")
    recipe.add_argument("--rot90", action="store_true", default=None,
                        help="augment: add the 90, 180 and 270 degree rotations")
    recipe.add_argument("--downscale", type=float, nargs="+", default=None, metavar="F",
                        help="augment: add copies shrunk by these factors in (0, 1) (MATLAB "
                             "bicubic, before modcrop), e.g. 0.9 0.8 0.7 0.6")
    parser.add_argument("--max-shard-bytes", type=int, default=h5.MAX_SHARD_BYTES,
                        help="largest shard file in bytes; Caffe reads a whole shard into memory "
                             "(default: %(default)s)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unreadable images (counted in the manifest) instead of failing")
    parser.add_argument("--dry-run", action="store_true",
                        help="only count the patches from the image sizes and print the counts; "
                             "write nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def resolve(args):
    """The recipe to build (and the experiment it is for, or None) from the arguments."""
    experiment = None
    try:
        if args.experiment is not None:
            known = experiments.load_experiments(experiments.EXPERIMENTS_PATH)
            if args.experiment not in known:
                raise UsageError(f"unknown experiment {args.experiment!r} (known: {', '.join(known)})")
            experiment = known[args.experiment]
            recipe = experiment.recipe
        else:
            if args.scale < 1:
                raise UsageError(f"--scale must be a positive integer, got {args.scale}")
            recipe = experiments.default_recipe(args.scale)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    changes = {key: value for key, value in (
        ("train_sets", tuple(args.train_sets) if args.train_sets else None), ("patch_size", args.patch_size),
        ("stride", args.stride), ("seed", args.seed), ("multiple_of", args.multiple_of),
        ("val_set", args.val_set), ("val_images", args.val_images), ("flip", args.flip), ("rot90", args.rot90),
        ("downscale", tuple(args.downscale) if args.downscale is not None else None)) if value is not None}
    if args.no_val:
        changes["val_set"] = None
    recipe = recipe.replace(**changes)
    if recipe.patch_size < 1 or recipe.stride < 1:
        raise UsageError("--patch-size and --stride must be positive integers")
    if recipe.multiple_of < 1:
        raise UsageError(f"--multiple-of must be >= 1, got {recipe.multiple_of}")
    if recipe.val_images < 1:
        raise UsageError(f"--val-images must be >= 1, got {recipe.val_images}")
    try:
        patches.augmentations(recipe.flip, recipe.rot90, recipe.downscale)
    except ValueError as exc:
        raise UsageError(f"--downscale: {exc}") from None
    return recipe, experiment


def print_counts(recipe, counts):
    for key in ("train_images", "train_skipped", "train_patches_extracted", "num_patches", "val_images",
                "val_patches"):
        if key in counts:
            print(f"{key} {counts[key]}")


def check_test_pass(experiment, val_patches, out):
    """The experiment's test_iter against the validation patches there are (or will be)."""
    try:
        database.check_test_pass(experiment.solver["test_iter"], experiment.data.val_batch_size, val_patches,
                                 reader=experiment.name, database=out)
    except database.DatabaseMismatch as exc:
        raise UsageError(str(exc)) from None


def run(argv=None):
    args = parse_args(argv)
    recipe, experiment = resolve(args)
    out = args.out if args.out is not None else recipe.path
    if args.dry_run:
        counts = database.count(recipe, args.data_root, skip_bad=args.skip_bad)
        print_counts(recipe, counts)
        if experiment is not None and args.out is None:
            check_test_pass(experiment, counts.get("val_patches", 0), out)
        return 0
    for stale in atomic.remove_stale_temporaries(out):
        print(f"{PROG}: {stale.describe()}", file=sys.stderr)
    manifest = database.build(recipe, args.data_root, out, skip_bad=args.skip_bad,
                              max_shard_bytes=args.max_shard_bytes, progress=not args.quiet)
    for split in manifest["splits"].values():
        for skip in split["skipped"]:
            print(f"{PROG}: warning: skipped {skip['set']}/{skip['file']} "
                  f"({skip['augmentation']}): {skip['reason']}", file=sys.stderr)
    train = manifest["splits"]["train"]
    line = (f"{PROG}: {train['num_patches']} training patches "
            f"({train['num_extracted']} extracted, {train['num_dropped']} dropped to a multiple "
            f"of {recipe.multiple_of}) from {len(train['images'])} images in "
            f"{len(train['shards'])} shard(s)")
    if "val" in manifest["splits"]:
        line += f"; {manifest['splits']['val']['num_patches']} validation patches"
    try:
        shown = out.resolve().relative_to(REPO_ROOT)
    except ValueError:
        shown = out
    print(line + f" -> {shown}")
    if experiment is not None and args.out is None:
        check_test_pass(experiment, manifest["splits"].get("val", {}).get("num_patches", 0), out)
    return 0


def main(argv=None):
    """Run the tool; bad input, unreadable images, write failures and signals are one error line."""
    with atomic.interrupts_as_exceptions():
        try:
            return run(argv)
        except KeyboardInterrupt as exc:
            message = atomic.interrupted_message(
                exc, "the previous database (if any) is unchanged")
            print(f"{PROG}: error: {message}", file=sys.stderr)
            return atomic.exit_status(exc)
        except (UsageError, ValueError, OSError, datasets.DatasetError) as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
