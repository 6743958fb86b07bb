#!/usr/bin/env python3
"""Benchmark ddsr.evaluation.ifc.ifc: time per image on a 512x512 and a BSD200-sized (481x321) image.

The images are real when the shared image sets are found (Set5 ``baby_GT.bmp``,
512x512, and the first BSD200 image, 481x321 or 321x481): reference = the Y
channel, distorted = its x3 bicubic round trip (MATLAB ``imresize`` down and
back up to the same size). Without them, smooth random textures of the same
sizes are used. Each image is timed ``--repeats`` times after one warm-up
call; the median and best wall times and the CPU time are reported, with the
load average (the machine is shared) and a projection for the bicubic Table 3
(219 images x 3 scales). Writes its section of ``docs/benchmarks.md``
(``bench/benchtable.py``) unless ``--no-write``.
"""

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import ddsr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO_ROOT / "python"))

from benchtable import cpu_model, default_data_root, write_section  # noqa: E402
from ddsr.evaluation.ifc import ifc
from ddsr.matlab import im2single, im2uint8, imread, imresize, rgb2y  # noqa: E402

NAME = "bench_ifc"
GOAL_S = 0.2  # per 500x500 image, so that IFC of the whole bicubic Table 3 fits its budget


def bicubic_round_trip(y, scale=3):
    """The x3 bicubic degradation of a uint8 Y image, back at its own size."""
    small = imresize(im2single(y), 1 / scale)
    return im2uint8(imresize(small, output_shape=y.shape))


def texture(shape, seed=0):
    from scipy import ndimage
    rng = np.random.default_rng(seed)
    t = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    return np.round(255 * (t - t.min()) / np.ptp(t)).astype(np.uint8)


def test_images(data_root):
    """[(label, reference, distorted)] for the two sizes."""
    data_root = Path(data_root)
    baby = data_root / "Set5" / "baby_GT.bmp"
    bsd = sorted((data_root / "BSD200").glob("*.jpg")) if (data_root / "BSD200").is_dir() else []
    pairs = []
    if baby.is_file() and bsd:
        for label, path in (("Set5 baby", baby), (f"BSD200 {bsd[0].stem}", bsd[0])):
            y = rgb2y(imread(path))
            pairs.append((label, y, bicubic_round_trip(y)))
    else:
        for label, shape in (("texture", (512, 512)), ("texture", (321, 481))):
            y = texture(shape)
            pairs.append((label, y, bicubic_round_trip(y)))
    return pairs


def table3_pixels(data_root):
    """Pixels IFC sees in the bicubic Table 3: Set5, Set14, BSD200 at x2, x3, x4, modcropped, shaved.

    ``None`` when the sets are not all there.
    """
    from PIL import Image

    total = 0
    for set_name, count in (("Set5", 5), ("Set14", 14), ("BSD200", 200)):
        folder = Path(data_root) / set_name
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".bmp", ".jpg", ".png")) \
            if folder.is_dir() else []
        if len(files) != count:
            return None
        for path in files:
            with Image.open(path) as im:
                w, h = im.size
            for s in (2, 3, 4):
                total += (h - h % s - 2 * s) * (w - w % s - 2 * s)
    return total


def time_ifc(reference, distorted, repeats):
    ifc(reference, distorted)  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        value = ifc(reference, distorted)
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    return value, walls, cpus


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder holding Set5/ and BSD200/ (default: the shared image sets, else data/)")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per image (default 7)")
    parser.add_argument("--no-write", action="store_true", help="print the section, do not write docs/")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    data_root = args.data_root or default_data_root()
    rows = []
    per_pixel = []
    for label, reference, distorted in test_images(data_root):
        value, walls, cpus = time_ifc(reference, distorted, args.repeats)
        h, w = reference.shape
        median = statistics.median(walls)
        per_pixel.append(min(walls) / (h * w))
        rows.append(f"| {label} | {h}x{w} | {value:.4f} | {median * 1e3:.0f} | {min(walls) * 1e3:.0f} "
                    f"| {statistics.median(cpus) * 1e3:.0f} |")
        print(f"{label} {h}x{w}: IFC {value:.4f}, median {median * 1e3:.0f} ms, "
              f"best {min(walls) * 1e3:.0f} ms", file=sys.stderr)

    pixels = table3_pixels(data_root)
    if pixels is None:  # the sets are not here: their sizes, approximately
        pixels = 3 * (5 * 110_000 + 14 * 220_000 + 200 * 150_000)
    projection = max(per_pixel) * pixels
    best_500 = max(per_pixel) * 500 * 500
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    markdown = "\n".join([
        "## IFC time per image (`bench/bench_ifc.py`)",
        "",
        f"`ddsr.evaluation.ifc.ifc` (the LIVE `ifcvec` port), reference vs its x3 bicubic round trip; "
        f"{args.repeats} timed calls after a warm-up.",
        "",
        "| image | size | IFC | median ms | best ms | CPU ms (median) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"- Per 500x500 image (from the slower per-pixel rate, best run): {best_500 * 1e3:.0f} ms "
        f"(goal <= {GOAL_S * 1e3:.0f} ms).",
        f"- Projected IFC time of the whole bicubic Table 3 (Set5 + Set14 + BSD200 x 3 scales, "
        f"{pixels / 1e6:.1f} Mpixel): {projection:.0f} s.",
        f"- Machine: {cpu_model()}, {os.cpu_count()} CPUs, load average {load} at the end "
        f"(shared machine: the median includes other jobs' interference); Python "
        f"{platform.python_version()}, numpy {np.__version__}.",
        f"- Run {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.",
    ])
    if args.no_write:
        print(markdown)
    else:
        write_section(NAME, markdown)
        print(f"{NAME}: wrote its section of docs/benchmarks.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
