#!/usr/bin/env python3
"""Benchmark tools/make_h5.py: build the full x3 paper database, time it, measure its memory.

Runs ``tools/make_h5.py --scale 3 --data-root <shared datasets> --out <tmp>``
as a child process (as a user would), ``--repeats`` times, and reports the
wall time of each run, the peak resident memory of the children
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``) and the database size on
disk; then writes its section of ``docs/benchmarks.md`` (``bench/benchtable.py``).
The goal of issue 4 is under 60 s on the project's 2-core machine.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchtable import cpu_model, default_data_root, write_section  # noqa: E402

NAME = "bench_make_h5"
GOAL_S = 60.0


def folder_bytes(folder):
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())


def run_once(data_root, out):
    cmd = [sys.executable, str(REPO_ROOT / "tools" / "make_h5.py"), "--scale", "3",
           "--data-root", str(data_root), "--out", str(out), "--quiet"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{NAME}: error: make_h5 failed: {proc.stderr.strip()}")
    return wall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=default_data_root(),
                        help="folder holding General-100, T91, BSD100 and BSD200-train")
    parser.add_argument("--repeats", type=int, default=3, help="number of builds")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where the database is built (deleted afterwards)")
    parser.add_argument("--no-write", action="store_true",
                        help="print the results only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="ddsr-bench-make_h5-", dir=args.work_dir))
    out = work / "x3"
    try:
        walls = []
        load_before = os.getloadavg()[0]
        for i in range(args.repeats):
            walls.append(run_once(args.data_root, out))
            print(f"run {i + 1}: {walls[-1]:.2f} s", flush=True)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_mib = usage.ru_maxrss / 1024
        cpu_per_run = (usage.ru_utime + usage.ru_stime) / len(walls)
        manifest = json.loads((out / "manifest.json").read_text())
        size_mb = folder_bytes(out) / 1e6
        train = manifest["splits"]["train"]
        val = manifest["splits"].get("val", {"num_patches": 0, "shards": []})
    finally:
        shutil.rmtree(work, ignore_errors=True)

    median = statistics.median(walls)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    walls_text = ", ".join(f"{w:.1f}" for w in walls)
    patches_text = (f"{train['num_patches']:,} ({train['num_extracted']:,} extracted, "
                    f"{train['num_dropped']} dropped)")
    shards_text = (f"{len(train['shards'])} training shard(s), "
                   f"{len(val['shards'])} validation shard(s)")
    machine = (f"{os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}; "
               f"load average {load_before:.1f} at the start")
    markdown = f"""\
## tools/make_h5.py: the x3 paper training database

`python bench/bench_make_h5.py` builds `tools/make_h5.py --scale 3` from the 291 training images
(General-100, T91, BSD100) plus the validation split (10 BSD200-train images), {args.repeats}
time(s), as a child process. Goal (issue 4): under {GOAL_S:.0f} s.

| quantity | value |
|---|---|
| training patches (7x7 LR, 21x21 HR) | {patches_text} |
| validation patches | {val['num_patches']:,} |
| wall time, median of {len(walls)} (s) | **{median:.1f}** (runs: {walls_text}) |
| CPU time per run, user + sys (s) | {cpu_per_run:.1f} |
| peak memory, max RSS of the runs (MiB) | {peak_mib:.0f} |
| database size on disk (MB) | {size_mb:.1f} ({shards_text}) |
| machine | {machine} |
| date | {date} |

The machine is shared with other jobs (see the load average), so wall times vary between runs;
the CPU time is the steadier number. Peak memory: the shuffled database is never held twice
(labels are kept as uint8 until written, rows are gathered and written 16,384 at a time).
"""
    print(markdown)
    if not args.no_write:
        write_section(NAME, markdown)
        print(f"{NAME}: wrote its section of docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
