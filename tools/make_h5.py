#!/usr/bin/env python3
"""Build the Caffe HDF5 training database of DDSR: LR/HR patch pairs, shuffled, sharded.

`tools/make_h5.py --scale 3` builds the paper's x3 training set from data/:
General-100 + T91 + BSD100 (291 images), Y channel, 7x7 LR patches with stride 4
and their 21x21 HR labels, 252,032 patches, plus a validation split from the first
10 images of BSD200-train, into data/h5/x3/ (train.txt, val.txt, shards,
manifest.json). The logic is in ddsr.data.patches and ddsr.data.h5.
"""

import argparse
import sys
from pathlib import Path

try:
    import ddsr  # noqa: F401  (importable once installed; else from the clone's python/)
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from ddsr import paths
from ddsr.data import h5, patches, registry as datasets

PROG = "make_h5"
REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_SETS = ("General-100", "T91", "BSD100")
VAL_SET = "BSD200-train"
VAL_IMAGES = 10
IMAGE_SUFFIXES = {".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".ppm", ".pgm"}


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
            "atomically. With only --scale 3 it builds the paper's x3 database "
            "(252,032 patches) and a validation split into data/h5/x3/."),
        epilog=(
            "Sets named in the dataset registry (datasets/registry.tsv) are read in registry "
            "order and must be complete (fetch them with tools/fetch_datasets.py); any other "
            "name is read as a folder of images under --data-root, sorted by file name. "
            "Outputs: <out>/train.txt and <out>/val.txt (the list files for hdf5_data_param "
            "source, entries relative to the repository root when the database is under it), "
            "shards <split>_NNN.h5 with float32 datasets 'data' (N x 1 x n x n) and 'label' "
            "(N x 1 x sn x sn) in [0, 1], and manifest.json."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, required=True, help="upscaling factor (2, 3, 4, ...)")
    parser.add_argument("--data-root", type=Path, default=paths.DEFAULT_DATA_ROOT,
                        help="folder holding the set folders (default: data/ in the repository; "
                             "e.g. ../shared/datasets)")
    parser.add_argument("--out", type=Path, default=None,
                        help="database folder (default: data/h5/x{scale} in the repository)")
    parser.add_argument("--train-sets", nargs="+", default=list(TRAIN_SETS), metavar="SET",
                        help="training set folders under --data-root (default: "
                             f"{' '.join(TRAIN_SETS)})")
    parser.add_argument("--patch-size", type=int, default=7,
                        help="LR patch side n (default: %(default)s)")
    parser.add_argument("--stride", type=int, default=4,
                        help="LR patch stride (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the shuffles (default: %(default)s)")
    parser.add_argument("--multiple-of", type=int, default=128, metavar="N",
                        help="keep a multiple of N training patches after shuffling, "
                             "dropping the rest, as SRCNN's generate_train.m (128-patch "
                             "chunks); 1 keeps all (default: %(default)s)")
    parser.add_argument("--max-shard-bytes", type=int, default=h5.MAX_SHARD_BYTES,
                        help="largest shard file in bytes; Caffe reads a whole shard into memory "
                             "(default: %(default)s)")
    parser.add_argument("--val-set", default=VAL_SET,
                        help="set of held-out images for the validation split, not a training "
                             "or test set (default: %(default)s)")
    parser.add_argument("--val-images", type=int, default=VAL_IMAGES, metavar="N",
                        help="use the first N images of --val-set, sorted by name "
                             "(default: %(default)s)")
    parser.add_argument("--no-val", action="store_true", help="no validation split")
    parser.add_argument("--flip", action="store_true",
                        help="augment: add the left-right mirror of every training image")
    parser.add_argument("--rot90", action="store_true",
                        help="augment: add the 90, 180 and 270 degree rotations")
    parser.add_argument("--downscale", type=float, nargs="+", default=[], metavar="F",
                        help="augment: add copies shrunk by these factors in (0, 1) (MATLAB "
                             "bicubic, before modcrop), e.g. 0.9 0.8 0.7 0.6")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unreadable images (counted in the manifest) instead of failing")
    parser.add_argument("--dry-run", action="store_true",
                        help="only count the patches from the image sizes and print the counts; "
                             "write nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def check_args(args):
    if args.scale < 1:
        raise UsageError(f"--scale must be a positive integer, got {args.scale}")
    if args.patch_size < 1 or args.stride < 1:
        raise UsageError("--patch-size and --stride must be positive integers")
    if args.multiple_of < 1:
        raise UsageError(f"--multiple-of must be >= 1, got {args.multiple_of}")
    if args.val_images < 1:
        raise UsageError(f"--val-images must be >= 1, got {args.val_images}")
    try:
        patches.augmentations(args.flip, args.rot90, args.downscale)
    except ValueError as exc:
        raise UsageError(f"--downscale: {exc}") from None
    if args.out is None:
        args.out = REPO_ROOT / "data" / "h5" / f"x{args.scale}"


def set_sources(names, data_root, registry):
    """(set, path) of every image of the named sets, in order."""
    sources = []
    for name in names:
        if name in registry.names:
            paths = datasets.image_paths(name, data_root, registry=registry)
        else:
            folder = Path(data_root) / name
            if not folder.is_dir():
                raise UsageError(f"no set folder {folder}")
            paths = sorted(p for p in folder.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise UsageError(f"no images in {Path(data_root) / name}")
        sources += [(name, p) for p in paths]
    return sources


def held_out_checksums(registry):
    """sha256 of every test image of the registry (Set5, Set14, BSD200)."""
    return {f.sha256 for name in registry.names if registry.role(name) == "test"
            for f in registry.files(name)}


def run(argv=None):
    args = parse_args(argv)
    check_args(args)
    registry = datasets.load_registry()
    train_sources = set_sources(args.train_sets, args.data_root, registry)
    val_sources = []
    if not args.no_val:
        if args.val_set in args.train_sets:
            raise UsageError(f"--val-set {args.val_set} is also a training set")
        if not (Path(args.data_root) / args.val_set).is_dir():
            raise UsageError(f"no validation set folder {Path(args.data_root) / args.val_set} "
                             f"(fetch it with tools/fetch_datasets.py {args.val_set}, "
                             "or pass --no-val)")
        val_sources = set_sources([args.val_set], args.data_root, registry)[:args.val_images]
    augment = dict(flip=args.flip, rot90=args.rot90, downscales=args.downscale)
    geometry = dict(scale=args.scale, patch_size=args.patch_size, stride=args.stride)

    if args.dry_run:
        extracted, used, skipped = patches.count_patch_pairs(
            train_sources, **geometry, **augment, skip_bad=args.skip_bad)
        print(f"train_images {used}")
        print(f"train_skipped {skipped}")
        print(f"train_patches_extracted {extracted}")
        print(f"num_patches {extracted // args.multiple_of * args.multiple_of}")
        if val_sources:
            val_patches, val_used, _ = patches.count_patch_pairs(
                val_sources, **geometry, skip_bad=args.skip_bad)
            print(f"val_images {val_used}")
            print(f"val_patches {val_patches}")
        return 0

    manifest = h5.build_database(
        args.out, train_sources, **geometry, seed=args.seed, multiple_of=args.multiple_of,
        val_sources=val_sources, **augment, skip_bad=args.skip_bad,
        max_shard_bytes=args.max_shard_bytes, list_relative_to=REPO_ROOT,
        held_out_sha256=held_out_checksums(registry),
        params={"data_root": str(args.data_root), "train_sets": list(args.train_sets),
                "val_set": None if args.no_val else args.val_set,
                "val_images": [f"{s}/{p.name}" for s, p in val_sources]},
        progress=not args.quiet)
    for split in manifest["splits"].values():
        for skip in split["skipped"]:
            print(f"{PROG}: warning: skipped {skip['set']}/{skip['file']} "
                  f"({skip['augmentation']}): {skip['reason']}", file=sys.stderr)
    train = manifest["splits"]["train"]
    line = (f"{PROG}: {train['num_patches']} training patches "
            f"({train['num_extracted']} extracted, {train['num_dropped']} dropped to a multiple "
            f"of {args.multiple_of}) from {len(train['images'])} images in "
            f"{len(train['shards'])} shard(s)")
    if "val" in manifest["splits"]:
        line += f"; {manifest['splits']['val']['num_patches']} validation patches"
    print(line + f" -> {args.out}")
    return 0


def main(argv=None):
    """Run the tool; bad input, unreadable images and write failures are one error line."""
    try:
        return run(argv)
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted; the previous database (if any) is unchanged",
              file=sys.stderr)
        return 130
    except (UsageError, ValueError, OSError, datasets.DatasetError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
