#!/usr/bin/env python3
"""Time and peak memory of the full bicubic Table 3 through tools/eval.py.

Runs ``tools/eval.py --method bicubic --scale 2 3 4 --sets Set5 Set14 BSD200 --no-images``
(all three metrics) as a child process, once per ``--jobs`` value, and writes the wall time,
CPU time, peak resident memory, the time per metric (IFC's share) and IFC's time per image
into the ``bench_eval`` section of docs/benchmarks.md. Goal (issue 5): under 3 minutes.

Example:
  bench/bench_eval.py --data-root ../shared/datasets
  bench/bench_eval.py --data-root ../shared/datasets --sets Set5 --jobs 1 2 --no-write
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchtable import cpu_model, write_section  # noqa: E402

GOAL_S = 180.0


def run_once(data_root, sets, scales, jobs, out):
    """Run the evaluation in a child process; return its measurements."""
    cmd = [sys.executable, str(REPO_ROOT / "tools" / "eval.py"), "--method", "bicubic",
           "--scale", *map(str, scales), "--sets", *sets, "--data-root", str(data_root),
           "--out", str(out), "--no-images", "--quiet", "--jobs", str(jobs)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"bench_eval.py: error: {' '.join(cmd)} failed:\n{proc.stderr}")
    meta = json.loads((Path(out) / "run.json").read_text())
    images = sum(meta["images"][s] for s in sets) * len(scales)
    return {
        "jobs": jobs,
        "wall_s": wall,
        "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        # ru_maxrss of children: the largest of them (kB on Linux); the workers and the main
        # process each hold about the same, so the total is about (jobs + 1) times it.
        "peak_rss_mb": after.ru_maxrss / 1024.0,
        "timings": meta["timings_s"],
        "images": images,
        "summary": json.loads((Path(out) / "summary.json").read_text()),
    }


def markdown(results, sets, scales, load):
    lines = [
        "## Full bicubic Table 3 (`bench/bench_eval.py`)",
        "",
        f"`tools/eval.py --method bicubic --scale {' '.join(map(str, scales))} --sets {' '.join(sets)} "
        f"--no-images` (PSNR, SSIM, IFC), {results[0]['images']} image evaluations. "
        f"Machine: {cpu_model()}, {os.cpu_count()} cores (load average {load:.1f} at the start: "
        f"the machine is shared, so wall times vary), Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}. Goal: under {GOAL_S:.0f} s.",
        "",
        "| --jobs | wall s | CPU s | peak RSS MB (one process) | prepare s | PSNR s | SSIM s | IFC s | IFC share | "
        "IFC ms/image |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        t = r["timings"]
        metric_s = sum(t.get(k, 0.0) for k in ("prepare", "psnr", "ssim", "ifc"))
        share = t.get("ifc", 0.0) / metric_s if metric_s else 0.0
        lines.append(
            f"| {r['jobs']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{t.get('prepare', 0):.1f} | {t.get('psnr', 0):.1f} | {t.get('ssim', 0):.1f} | "
            f"{t.get('ifc', 0):.1f} | {100 * share:.0f}% | {1000 * t.get('ifc', 0) / r['images']:.0f} |")
    lines += [
        "",
        "`prepare`: reading, modcrop, Y and the single-precision bicubic LR; "
        "the metric columns sum the seconds spent inside each metric over all images "
        "(summed over the worker processes when `--jobs` > 1, so they can exceed the wall time). "
        "IFC share: IFC's part of prepare + metrics. Peak RSS: the largest single process. "
        "CPU s (user + system of the evaluation and its workers) hardly depends on the load of "
        "the machine: on an idle one the wall time of `--jobs 1` is about the CPU time, and "
        "`--jobs 2` about halves it.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench_eval.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=REPO_ROOT / "data", metavar="DIR",
                   help="folder holding Set5, Set14, BSD200 (default: data/)")
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD200"], metavar="SET")
    p.add_argument("--scale", nargs="+", type=int, default=[2, 3, 4], metavar="S")
    p.add_argument("--jobs", nargs="+", type=int, default=[1], metavar="N",
                   help="--jobs values to time (default: 1)")
    p.add_argument("--no-write", action="store_true", help="print the section, do not write docs/")
    args = p.parse_args(argv)
    load = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_eval.") as tmp:
        for jobs in args.jobs:
            r = run_once(args.data_root, args.sets, args.scale, jobs, Path(tmp) / f"jobs{jobs}")
            print(f"--jobs {jobs}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, "
                  f"{r['peak_rss_mb']:.0f} MB", file=sys.stderr)
            results.append(r)
    text = markdown(results, args.sets, args.scale, load)
    print(text)
    if not args.no_write:
        write_section("bench_eval", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
