"""What ``make reproduce`` and ``make reproduce-ablations`` train, and the tables they make.

The paper's protocol, per experiment: the training database of its scale
(``tools/make_h5.py``), ``caffe train -solver solvers/<name>.prototxt -gpu 0``
(:func:`ddsr.training.runner.train`), then ``tools/eval.py`` on Set5, Set14 and
BSD200. This module says which experiments each target needs
(:func:`experiments_for`), estimates what a CPU would take
(:func:`cpu_seconds_per_iteration`), and lays out Table 1 and Table 2 from the
evaluation folders (Table 3 is :func:`ddsr.evaluation.report.table3_markdown`).
"""

import json
import shlex
import subprocess
import sys
from pathlib import Path

from ddsr.evaluation.report import load_run

def run_tool(args, workdir, quiet=False, prog="ddsr"):
    """Run one pipeline step, a ``tools/*.py`` script, with this Python from ``workdir``.

    Prints the command (``<prog>: $ tools/...``) first, so a reader can redo the step by
    hand; ``quiet`` passes ``--quiet``. Returns the command as shown; raises
    ``RuntimeError`` naming it if it fails.
    """
    command = [sys.executable, *map(str, args)] + (["--quiet"] if quiet else [])
    shown = shlex.join(map(str, args))
    print(f"{prog}: $ {shown}", file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=workdir)
    if done.returncode != 0:
        raise RuntimeError(f"`{shown}` failed (exit status {done.returncode})")
    return shown


TRAIN_SETS = ("General-100", "T91", "BSD100")
VAL_SET = "BSD200-train"
TEST_SETS = ("Set5", "Set14", "BSD200")
DATA_SETS = TEST_SETS + TRAIN_SETS + (VAL_SET,)
"""Every set the reproduction reads (the paper's six and the validation images)."""

TABLE3_EXPERIMENTS = {2: "ddsr_x2", 3: "ddsr_x3", 4: "ddsr_x4"}

ABLATIONS = {
    "table1": {"ddsr_x3": "3x3x64", "ddsr_x3_k5": "5x5x64", "ddsr_x3_k7": "7x7x64"},
    "table2": {"ddsr_x3_d6": "DDSR-6", "ddsr_x3_d12": "DDSR-12", "ddsr_x3": "DDSR-18"},
    "fig5": {"ddsr_x3": "Adam, residual", "ddsr_x3_nores": "Adam, no residual",
             "ddsr_x3_sgd": "SGD, residual", "ddsr_x3_sgd_nores": "SGD, no residual"},
}
"""The ablation experiments of each figure/table, with their column or legend labels."""

PAPER_TABLE1 = {  # PSNR / time (s), x3, 18-layer mapping
    "Set5": {"3x3x64": (33.32, 0.40), "5x5x64": (33.33, 0.41), "7x7x64": (33.36, 0.40)},
    "Set14": {"3x3x64": (29.57, 0.39), "5x5x64": (29.57, 0.40), "7x7x64": (29.62, 0.42)},
}
PAPER_TABLE2 = {  # PSNR / SSIM / time (s), x3
    "Set5": {"DDSR-6": (33.09, 0.9149, 0.26), "DDSR-12": (33.23, 0.9163, 0.29), "DDSR-18": (33.33, 0.9174, 0.38)},
    "Set14": {"DDSR-6": (29.41, 0.8272, 0.20), "DDSR-12": (29.50, 0.8287, 0.28), "DDSR-18": (29.57, 0.8297, 0.37)},
    "BSD200": {"DDSR-6": (29.08, 0.8133, 0.18), "DDSR-12": (29.13, 0.8146, 0.28), "DDSR-18": (29.17, 0.8155, 0.39)},
}

CPU_REFERENCE_SECONDS = 3.4
"""Measured seconds per ``caffe train`` iteration of DDSR-18 x3 (64 filters), batch 64 of
7x7 LR patches, on the 2-core CPU this project was developed on (OpenBLAS)."""
CPU_REFERENCE = dict(scale=3, depth=18, num_filters=64, deconv_kernel=3, batch_size=64)
LR_PATCH = 7


def experiments_for(scales=(), ablations=False):
    """The experiments to train, in order, each once.

    Parameters
    ----------
    scales : sequence of int
        Table 3 scales (``ddsr_x2``, ``ddsr_x3``, ``ddsr_x4``).
    ablations : bool
        Add every experiment of Table 1, Table 2 and Fig. 5 (all at x3).
    """
    names = []
    for scale in scales:
        if scale not in TABLE3_EXPERIMENTS:
            raise ValueError(f"scale must be one of {sorted(TABLE3_EXPERIMENTS)}, got {scale}")
        names.append(TABLE3_EXPERIMENTS[scale])
    if ablations:
        for members in ABLATIONS.values():
            names += list(members)
    return list(dict.fromkeys(names))


def multiply_adds_per_patch(scale, depth, num_filters, deconv_kernel, lr_patch=LR_PATCH):
    """Multiply-adds of one forward pass of DDSR on one ``lr_patch`` x ``lr_patch`` LR patch.

    Deconvolution: every LR pixel times ``k*k*F`` weights; each of the ``depth - 1``
    3x3xFxF conv layers and the 3x3xFx1 reconstruction at every HR pixel.
    """
    hr_pixels = (scale * lr_patch) ** 2
    f = num_filters
    return (lr_patch ** 2 * deconv_kernel ** 2 * f
            + (depth - 1) * hr_pixels * 9 * f * f
            + hr_pixels * 9 * f)


def cpu_seconds_per_iteration(scale, depth, num_filters, deconv_kernel, batch_size):
    """Estimated CPU seconds per training iteration, scaled by multiply-adds from
    :data:`CPU_REFERENCE_SECONDS` (a measurement, not a promise: other CPUs differ)."""
    ref = CPU_REFERENCE
    reference = multiply_adds_per_patch(ref["scale"], ref["depth"], ref["num_filters"],
                                        ref["deconv_kernel"]) * ref["batch_size"]
    this = multiply_adds_per_patch(scale, depth, num_filters, deconv_kernel) * batch_size
    return CPU_REFERENCE_SECONDS * this / reference


def experiment_cpu_seconds(experiment):
    """Estimated CPU seconds for the whole of an :class:`ddsr.model.experiments.Experiment`."""
    net = experiment.net
    per_iteration = cpu_seconds_per_iteration(net.scale, net.depth, net.num_filters, net.deconv_kernel,
                                              experiment.data.batch_size)
    return per_iteration * int(experiment.solver["max_iter"])


def format_duration(seconds):
    """``3.2 days``, ``5.1 h``, ``12 min`` or ``40 s``."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


# --- Tables 1 and 2 ------------------------------------------------------------


def read_eval_folder(folder):
    """Per set (x3 only): mean ``psnr``, ``ssim`` and forward seconds of a tools/eval.py folder.

    The means tools/eval.py wrote: ``summary.json`` (PSNR, SSIM) and ``run.json``'s
    ``forward_ms_mean`` (times; None without a ``run.json``).
    """
    summary = load_run(folder)[0].summary
    run_json = Path(folder) / "run.json"
    forward_ms = json.loads(run_json.read_text()).get("forward_ms_mean", {}) if run_json.is_file() else {}
    results = {}
    for set_name, scales in summary.items():
        if "x3" not in scales:
            continue
        ms = forward_ms.get(set_name, {}).get("x3")
        results[set_name] = {"psnr": scales["x3"].get("psnr"), "ssim": scales["x3"].get("ssim"),
                             "seconds": None if ms is None else ms / 1000.0}
    return results


def _cell(value, digits):
    return "–" if value is None else f"{value:.{digits}f}"


def ablation_markdown(table, results):
    """Table 1 or Table 2 in the paper's layout, computed beside published.

    Parameters
    ----------
    table : {"table1", "table2"}
    results : dict
        Column label (e.g. ``"5x5x64"``) -> :func:`read_eval_folder` output; missing
        columns show as ``–``.

    Returns
    -------
    str
        Markdown: one row per set, each cell ``PSNR / [SSIM /] time`` computed, then the
        paper's values in a row below.
    """
    if table == "table1":
        columns, paper, sets = list(ABLATIONS["table1"].values()), PAPER_TABLE1, ("Set5", "Set14")
        title = "Table 1: deconvolution kernel at x3 (PSNR dB / forward time s)"
    elif table == "table2":
        columns, paper, sets = list(ABLATIONS["table2"].values()), PAPER_TABLE2, ("Set5", "Set14", "BSD200")
        title = "Table 2: depth of the deep mapping at x3 (PSNR dB / SSIM / forward time s)"
    else:
        raise ValueError(f"table must be table1 or table2, got {table!r}")
    lines = [f"### {title}", "", "| set | | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for set_name in sets:
        cells = []
        for column in columns:
            got = results.get(column, {}).get(set_name, {})
            parts = [_cell(got.get("psnr"), 2)]
            if table == "table2":
                parts.append(_cell(got.get("ssim"), 4))
            parts.append(_cell(got.get("seconds"), 2))
            cells.append(" / ".join(parts))
        lines.append(f"| {set_name} | this run | " + " | ".join(cells) + " |")
        published = [" / ".join(f"{v:.4f}" if 0 < v < 1 and i == 1 and table == "table2" else f"{v:.2f}"
                                for i, v in enumerate(paper[set_name][c])) for c in columns]
        lines.append("|  | paper | " + " | ".join(published) + " |")
    lines += ["", "Forward times here are pycaffe on this machine's device (the paper's: a GTX 1080 Ti)."]
    return "\n".join(lines) + "\n"
