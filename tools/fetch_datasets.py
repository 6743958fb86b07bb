#!/usr/bin/env python3
"""Fetch the paper's image sets into data/<Set>/, every file checked against its sha256.

The logic lives in ddsr.data.registry; this is argument parsing, progress bars and messages.
"""

import argparse
import sys
from pathlib import Path

try:
    import ddsr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from ddsr import paths
from ddsr.data import fetch, registry as datasets

PROG = "fetch_datasets.py"

DESCRIPTION = """\
Fetch image sets into DATA_ROOT/<Set>/ (default: data/ in the repository).

Every file is checked against the sha256 in datasets/registry.tsv. A set is
assembled in a hidden temporary folder (DATA_ROOT/.<Set>.partial-*) and renamed
into place only when all its files are there and correct, so a failed or
interrupted fetch leaves nothing behind. A set that is already present and
verifies is left alone (no network); one that does not verify is rebuilt and
replaced (files that are not in the registry are removed).

Sources (pick one; the default is the public repositories):
  (default)     each file from its public repository at the pinned commit,
                https://raw.githubusercontent.com/<repo>/<commit>/<path>
  --from DIR    a local folder holding DIR/<Set>/<file>, e.g. /path/to/local/copy
  --mirror URL  a server holding URL/<Set>/<file> (the same layout as a data
                root: `python -m http.server` run in one is a mirror);
                http://, https:// or file:// URLs
"""

EPILOG = """\
sets:
{sets}

examples:
  tools/fetch_datasets.py --paper                         # the 6 sets the paper uses
  tools/fetch_datasets.py Set5 Set14 --from /path/to/local/copy
  tools/fetch_datasets.py --all --mirror http://host/sets
  tools/fetch_datasets.py --verify                        # check what is under data/

exit status: 0 on success, 1 when a file is missing, wrong or cannot be
downloaded (or --verify finds a problem), 2 on a usage error.
"""


def _describe_sets(registry):
    lines = []
    for name in registry.names:
        files = registry.files(name)
        size_mb = registry.total_bytes(name) / 1e6
        lines.append(f"  {name:<13} {registry.role(name):<9} {len(files):>4} files  {size_mb:6.1f} MB")
    return "\n".join(lines)


def build_parser(registry):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG.format(sets=_describe_sets(registry)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sets", nargs="*", metavar="SET", help="set names (see the list below)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every set of the registry")
    which.add_argument("--paper", action="store_true",
                       help="the sets the paper uses: " + ", ".join(registry.paper_sets))
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--from", dest="from_dir", metavar="DIR", type=Path,
                        help="copy from a local folder holding DIR/<Set>/<file>")
    source.add_argument("--mirror", metavar="URL",
                        help="download from URL/<Set>/<file> instead of the public repositories")
    parser.add_argument("--data-root", metavar="DIR", type=Path, default=paths.DEFAULT_DATA_ROOT,
                        help="folder that receives <Set>/ folders (default: data/ in the repository)")
    parser.add_argument("--verify", action="store_true",
                        help="only check sets already under the data root (the named ones, "
                             "or every set folder present); fetch nothing")
    parser.add_argument("--list", action="store_true", help="list the sets and exit")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S",
                        help="network timeout in seconds per connection and read (default 30)")
    parser.add_argument("--retries", type=int, default=3, metavar="N",
                        help="extra attempts after a network error or HTTP 5xx (default 3)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser


def _selected(args, registry, parser):
    if args.all or args.paper:
        if args.sets:
            parser.error("give set names or --all/--paper, not both")
        return list(registry.names if args.all else registry.paper_sets)
    for name in args.sets:
        if name not in registry.names:
            parser.error(f"unknown set {name!r}; known sets: {', '.join(registry.names)}")
    return list(dict.fromkeys(args.sets))


def _verify(names, args, registry):
    if not names:
        names = [n for n in registry.names if (args.data_root / n).is_dir()]
        if not names:
            raise datasets.DatasetError(f"no set folder under {args.data_root}")
    failed = []
    for name in names:
        problems = datasets.verify_set(name, args.data_root, registry=registry)
        if problems:
            failed.append(name)
            print(f"{name}: {len(problems)} problem(s)")
            for p in problems:
                print(f"  {p.filename}: {p.reason}")
        else:
            print(f"{name}: ok ({len(registry.files(name))} files)")
    if failed:
        raise datasets.DatasetError(f"verification failed for {', '.join(failed)}")


def _fetch(names, args, registry):
    from tqdm import tqdm

    for name in names:
        with tqdm(total=registry.total_bytes(name), desc=name, unit="B", unit_scale=True,
                  disable=args.quiet, leave=False) as bar:
            result = fetch.fetch_set(
                name, args.data_root, from_dir=args.from_dir, mirror=args.mirror,
                timeout=args.timeout, retries=args.retries, registry=registry,
                progress=lambda entry: bar.update(entry.bytes),
            )
        count = len(registry.files(name))
        if result.action == "present":
            print(f"{name}: already present and verified in {result.path}")
        elif result.action == "replaced":
            print(f"{name}: {result.path} did not verify ({len(result.old_problems)} problem(s)); "
                  f"rebuilt with {count} verified files")
        else:
            print(f"{name}: {count} verified files in {result.path}")


def main(argv=None):
    try:
        registry = datasets.load_registry()
    except (OSError, ValueError) as exc:
        print(f"{PROG}: error: cannot read the registry: {exc}", file=sys.stderr)
        return 1
    parser = build_parser(registry)
    args = parser.parse_args(argv)
    if args.list:
        print(_describe_sets(registry))
        return 0
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.retries < 0:
        parser.error("--retries must be >= 0")
    names = _selected(args, registry, parser)
    if args.verify:
        if args.from_dir is not None or args.mirror is not None:
            parser.error("--verify checks the data root; it takes no --from/--mirror")
    elif not names:
        parser.error("name at least one set, or use --all or --paper (see --help)")
    try:
        if args.verify:
            _verify(names, args, registry)
        else:
            _fetch(names, args, registry)
    except (datasets.DatasetError, ValueError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted (nothing partial was left behind)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
