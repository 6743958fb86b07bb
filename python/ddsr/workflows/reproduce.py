"""What ``make reproduce`` and ``make reproduce-ablations`` train, and the tables they make.

The paper's protocol, per experiment: the training database of its scale
(``tools/make_h5.py``), ``caffe train -solver solvers/<name>.prototxt -gpu 0``
(:func:`ddsr.training.runner.train`), then ``tools/eval.py`` on Set5, Set14 and
BSD200. This module says which experiments each target needs
(:func:`experiments_for`), estimates what a CPU would take
(:func:`cpu_seconds_per_iteration`), and lays out Table 1 and Table 2 from the
evaluation folders (Table 3 is :func:`ddsr.evaluation.report.table3_markdown`).
"""

import sys
import time

from ..data import database
from ..data.fetch import fetch_set
from ..evaluation import published as pub
from ..evaluation.report import ablation_markdown, cell_mark, combine_rows, load_run, table3_markdown
from ..evaluation.results import read_eval_folder
from ..evaluation.run import DeployModel, evaluate_to_folder
from ..atomic import write_text_atomic
from ..model.experiments import SCALES
from ..paths import REPO_ROOT, relative_path
from ..training import curves, runner
from . import show_command

TEST_SETS = pub.TABLE3_SETS
TABLE3_EXPERIMENTS = {scale: f"ddsr_x{scale}" for scale in SCALES}

ABLATIONS = {
    "table1": {"ddsr_x3": "3x3x64", "ddsr_x3_k5": "5x5x64", "ddsr_x3_k7": "7x7x64"},
    "table2": {"ddsr_x3_d6": "DDSR-6", "ddsr_x3_d12": "DDSR-12", "ddsr_x3": "DDSR-18"},
    "fig5": {"ddsr_x3": "Adam, residual", "ddsr_x3_nores": "Adam, no residual",
             "ddsr_x3_sgd": "SGD, residual", "ddsr_x3_sgd_nores": "SGD, no residual"},
}
"""The ablation experiments of each figure/table, with their column or legend labels."""

CPU_REFERENCE_SECONDS = 0.75
"""Measured seconds per training pass (forward + backward) of DDSR-18 x3 (64 filters), batch 64
of 7x7 LR patches, with the patched CPU build on this project's 2-core machine
(``bench/bench_caffe_cpu.py``, 2026-12-01; the unpatched build took 4.2 s)."""
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


def x3_means(folder):
    """Per set (x3 only): mean ``psnr``, ``ssim`` and forward seconds of an evaluation folder.

    The means the evaluation wrote (``summary.json`` and ``run.json``'s ``forward_ms_mean``;
    seconds None without one), in the form :func:`ddsr.evaluation.report.ablation_markdown` takes.
    """
    run = read_eval_folder(folder)
    means = {}
    for set_name, cell in run.summary.items():
        if "x3" not in cell:
            continue
        means[set_name] = {"psnr": cell["x3"].get("psnr"), "ssim": cell["x3"].get("ssim"),
                           "seconds": run.forward_seconds(set_name, 3)}
        marks = {m: cell_mark(cell["x3"], m) for m in ("psnr", "ssim") if cell_mark(cell["x3"], m)}
        if marks:  # a partial mean, or a modified set: shown as such
            means[set_name]["marks"] = marks
    return means


def data_sets(experiments):
    """Every set the given experiments read: the test sets, then each recipe's training and validation sets."""
    names = list(TEST_SETS)
    for experiment in experiments:
        names += list(experiment.recipe.train_sets) + [experiment.recipe.val_set]
    return list(dict.fromkeys(names))


def cpu_refusal(experiments, gpu):
    """The message refusing to train these experiments on a CPU-only Caffe (with the expected time)."""
    cpu_seconds = sum(experiment_cpu_seconds(e) for e in experiments)
    plan = (f"{len(experiments)} experiment(s) ({', '.join(e.name for e in experiments)}), "
            f"{sum(int(e.solver['max_iter']) for e in experiments):,} iterations")
    estimate = (f"about {format_duration(cpu_seconds)} on a CPU like this project's 2-core "
                f"machine ({CPU_REFERENCE_SECONDS} s per iteration of DDSR-18 at batch 64, "
                f"scaled by multiply-adds)")
    return estimate, (
        f"this Caffe cannot use GPU {gpu} (`caffe device_query -gpu {gpu}` fails: a CPU-only build?). "
        f"Training {plan} on the CPU would take {estimate}. Build Caffe with CUDA "
        f"(`make setup CUDA=1`) and run on a GPU, or add FORCE=1 (--force) to train on the CPU anyway.")


def _prepare_data(experiments, data_root, fetch, prog, progress):
    """Steps 1 and 2: the sets (fetched unless given), then each recipe's database (kept if it fits)."""
    names = data_sets(experiments)
    if fetch:
        show_command(prog, ["tools/fetch_datasets.py", *names])
        for name in names:
            fetch_set(name, data_root)
    else:
        absent = [n for n in names if not (data_root / n).is_dir()]
        if absent:
            raise ValueError(f"--data {data_root} lacks {', '.join(absent)}")
    shown_root = relative_path(data_root, REPO_ROOT)
    for experiment in {e.recipe.folder: e for e in experiments}.values():
        try:
            experiment.check_database()
            print(f"{prog}: database {experiment.recipe.folder} exists and fits {experiment.name}, kept "
                  f"(delete it to rebuild)", file=sys.stderr)
            continue
        except database.DatabaseMismatch:
            pass
        show_command(prog, ["tools/make_h5.py", "--experiment", experiment.name, "--data-root", shown_root])
        database.build(experiment.recipe, data_root, progress=progress)


def _train_and_evaluate(experiment, gpu, data_root, out, prog, progress):
    """Steps 3 and 4 for one experiment: ``caffe train`` (resumed), then the Table 3 evaluation."""
    experiment.check_database()
    show_command(prog, runner.train_command(experiment.solver_path, gpu=gpu))
    result = runner.train(experiment.solver_path, gpu=gpu, workdir=REPO_ROOT, progress=progress,
                          description=experiment.name)
    weights = relative_path(result.snapshot.caffemodel, REPO_ROOT)
    label = "DDSR" if experiment.name in TABLE3_EXPERIMENTS.values() else experiment.name
    eval_out = relative_path(out / experiment.name, REPO_ROOT)
    command = ["tools/eval.py", "--model", experiment.deploy_net_path, "--weights", weights,
               "--scale", experiment.scale, "--sets", *TEST_SETS, "--data-root", relative_path(data_root, REPO_ROOT),
               "--out", eval_out, "--name", label, "--no-images"] + (["--gpu", gpu] if gpu is not None else [])
    show_command(prog, command)
    model = DeployModel.from_files(REPO_ROOT / experiment.deploy_net_path, REPO_ROOT / weights, experiment.scale)
    evaluate_to_folder(REPO_ROOT / eval_out, data_root=data_root, sets=TEST_SETS, scales=[experiment.scale],
                       label=label, paper_row=pub.match_method(label), models={experiment.scale: model}, gpu=gpu,
                       save_images=False, progress=progress, command=[str(w) for w in command])


def _write_tables(names, ablations, data_root, out, prog, progress):
    """Step 5: Table 3 (and with the ablations Tables 1, 2 and Fig. 5) from the evaluation folders."""
    written = []
    table3 = [n for n in names if n in TABLE3_EXPERIMENTS.values()]
    if table3:
        rows = [row for name in table3 for row in load_run(out / name)]
        write_text_atomic(out / "table3.md", table3_markdown(combine_rows(rows), title="## Table 3 (this run)"))
        written.append(out / "table3.md")
    if ablations:
        for table in ("table1", "table2"):
            results = {label: x3_means(out / name) for name, label in ABLATIONS[table].items()}
            write_text_atomic(out / f"{table}.md", ablation_markdown(table, results))
            written.append(out / f"{table}.md")
        fig5 = ABLATIONS["fig5"]
        show_command(prog, ["tools/curves.py", *fig5, "--labels", *fig5.values(), "--set", "Set5",
                            "--data-root", relative_path(data_root, REPO_ROOT),
                            "--out", relative_path(out / "fig5", REPO_ROOT)])
        curves.write_run_curves(fig5, out / "fig5", data_root=data_root, set_name="Set5", progress=progress)
        written.append(out / "fig5")
    return written


def reproduce(experiments, *, ablations, gpu, data_root, fetch, out, prog="reproduce", progress=True):
    """``make reproduce``: data, databases, training, evaluation and tables for the given experiments.

    Parameters
    ----------
    experiments : list of Experiment
        In training order (:func:`experiments_for`).
    ablations : bool
        Also write Tables 1 and 2 and Fig. 5.
    gpu : int or None
        The GPU to train and evaluate on; None is the CPU.
    data_root : Path
    fetch : bool
        Fetch the sets into ``data_root`` (else they must be there).
    out : Path
        The report folder.

    Returns
    -------
    list of Path
        The tables and figures written.
    """
    begun = time.time()
    _prepare_data(experiments, data_root, fetch, prog, progress)
    for index, experiment in enumerate(experiments, start=1):
        print(f"{prog}: [{index}/{len(experiments)}] {experiment.name}: {experiment.description}", file=sys.stderr)
        _train_and_evaluate(experiment, gpu, data_root, out, prog, progress)
    written = _write_tables([e.name for e in experiments], ablations, data_root, out, prog, progress)
    print(f"{prog}: done in {(time.time() - begun) / 3600:.1f} h", file=sys.stderr)
    return written
