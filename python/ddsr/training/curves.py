"""Training curves: the loss and learning rate from Caffe's log, PSNR/SSIM of every snapshot.

The paper's Fig. 5 (Adam vs SGD, with and without the residual) and Fig. 6 (the
learning-rate drops) plot Set5 x3 PSNR against the iteration. Here a run is
its solver's snapshots (``snapshots/<name>_iter_N.caffemodel``) and its log
(``runs/<name>/train.log``, written by :func:`ddsr.training.runner.train`):

- :func:`log_rows` reads the log (:func:`ddsr.training.runner.read_log`) into rows
  of iteration, training loss, learning rate and test loss;
- :func:`evaluate_snapshots` runs each snapshot through the deploy net on a
  test set with the evaluation protocol of :mod:`ddsr.evaluation` (the same
  steps as ``tools/eval.py``) and gives the set's mean PSNR and SSIM;
- :func:`write_csv`, :func:`plot_loss` and :func:`plot_quality` write the CSV
  files and PNG figures, several runs on one plot.
"""

import math
from pathlib import Path

from ddsr.training import log as train_log, snapshots
from ddsr.figures import pyplot, save_figure
from ddsr.csvfiles import write_csv_atomic

LOSS_COLUMNS = ("iteration", "loss", "lr", "test_loss")
QUALITY_COLUMNS = ("iteration", "psnr", "ssim")


def log_rows(log):
    """Rows of a training log: ``iteration``, ``loss``, ``lr``, ``test_loss`` (None where absent).

    Parameters
    ----------
    log : str, Path or caffe_runner.TrainingLog
    """
    if not isinstance(log, train_log.TrainingLog):
        log = train_log.read_log(log)
    rows = []
    for row in log.rows():
        rows.append({"iteration": row["iteration"], "loss": row["loss"], "lr": row["lr"],
                     "test_loss": row.get("test_loss")})
    return rows


def load_test_images(data_root, set_name, scale):
    """The protocol's prepared images of one set (:func:`ddsr.evaluation.prepare_image`)."""
    from ddsr.data.registry import list_set_images
    from ddsr.evaluation.protocol import prepare_image
    from ddsr.matlab import imread

    return [prepare_image(imread(path), scale, name=path.stem)
            for path in list_set_images(data_root, set_name)]


def deploy_scale(deploy):
    """The upscaling factor of a DDSR deploy net: its Deconvolution layer's stride (None if none)."""
    from ddsr.evaluation.deploy_net import parse_deploy

    for layer in parse_deploy(deploy).layer:
        if layer.type == "Deconvolution":
            param = layer.convolution_param
            if param.stride:
                return int(param.stride[0])
            return int(param.stride_h) if param.stride_h else 1
    return None


def evaluate_weights(deploy, weights, images, scale, metrics=("psnr", "ssim"), tile=None):
    """Mean metrics of one set of weights over prepared images, and the per-image SR (uint8 Y).

    ``tile`` runs the net on tiles of that many LR pixels (``tools/eval.py --tile``): the
    same result, a fraction of the memory (Caffe keeps an im2col buffer per conv layer,
    9 x filters x the output's pixels each).

    Returns
    -------
    (dict, list of ndarray)
        ``{metric: mean}`` and each image's SR Y.
    """
    from ddsr.evaluation.run import mean_quality
    from ddsr.evaluation.upscaler import load_upscaler

    return mean_quality(images, load_upscaler(deploy, weights, scale, tile=tile), scale, metrics)


def bicubic_quality(images, scale, metrics=("psnr", "ssim")):
    """The bicubic baseline's mean metrics over prepared images."""
    from ddsr.evaluation.protocol import BicubicUpscaler
    from ddsr.evaluation.run import mean_quality

    return mean_quality(images, BicubicUpscaler(), scale, metrics)[0]


def evaluate_snapshots(deploy, snapshot_prefix, data_root, set_name="Set5", scale=3,
                       workdir=".", every=1, progress=True, metrics=("psnr", "ssim"), tile=None):
    """PSNR and SSIM of every snapshot of a run on a test set.

    Parameters
    ----------
    deploy : str or Path
        The run's deploy prototxt (``prototxt/<name>_deploy.prototxt``).
    snapshot_prefix : str
        The solver's ``snapshot_prefix`` (``snapshots/<name>``), relative to ``workdir``.
    data_root : str or Path
        Folder holding the set folder.
    set_name : str
    scale : int
    workdir : str or Path
        Where the snapshot prefix is relative to (the repository root).
    every : int
        Evaluate every ``every``-th snapshot (the newest is always included).
    progress : bool
        A tqdm bar over the snapshots.
    tile : int or None
        See :func:`evaluate_weights`.

    Returns
    -------
    list of dict
        One row per snapshot: ``iteration`` and the set's mean of each metric.

    Raises
    ------
    ValueError
        No snapshots for the prefix.
    """
    from tqdm import tqdm

    snaps = snapshots.list_snapshots(snapshot_prefix, workdir)
    if not snaps:
        raise ValueError(f"no snapshots {Path(workdir) / snapshot_prefix}_iter_*.caffemodel")
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    chosen = snaps[::-1][::every][::-1]  # count back from the newest so it is always in
    images = load_test_images(data_root, set_name, scale)
    rows = []
    for snap in tqdm(chosen, desc=f"{Path(snapshot_prefix).name} on {set_name}", unit="snapshot",
                     disable=not progress):
        quality, _ = evaluate_weights(deploy, snap.caffemodel, images, scale, metrics, tile=tile)
        rows.append({"iteration": snap.iteration, **quality})
    return rows


def write_csv(path, rows, columns):
    """Write rows (dicts) as CSV with the given columns, atomically; returns the path."""
    write_csv_atomic(path, rows, fields=columns)
    return Path(path)


def _series(rows, key):
    points = [(r["iteration"], r[key]) for r in rows if r.get(key) is not None and math.isfinite(r[key])]
    return [p[0] for p in points], [p[1] for p in points]


def loss_limits(series, settle=0.1):
    """y-limits for loss curves that keep the start-up transient from flattening the rest.

    The first iterations of a fresh net have losses hundreds of times the later ones; on
    a log axis they squeeze the part worth reading into a sliver. The upper limit is 1.5x
    the largest loss after the first ``settle`` fraction of the iterations (the transient
    runs off the top); the lower one 0.8x the smallest loss.

    Parameters
    ----------
    series : list of (iterations, losses)

    Returns
    -------
    (float, float) or None
        None when there is nothing to plot.
    """
    values, later = [], []
    for x, y in series:
        if not x:
            continue
        start = x[0] + settle * (x[-1] - x[0])
        values += [v for v in y if v > 0]
        later += [v for i, v in zip(x, y) if i >= start and v > 0]
    if not values:
        return None
    return 0.8 * min(values), 1.5 * max(later or values)


def plot_loss(runs, path, title=None):
    """Training (and test) loss on a log scale, and the learning rate, against the iteration.

    Parameters
    ----------
    runs : dict
        Label -> rows of :func:`log_rows`. Each run is one colour; the test loss
        is dashed.
    path : str or Path
        PNG to write.
    """
    plt = pyplot()
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(7, 6), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1]})
    plotted = []
    for index, (label, rows) in enumerate(runs.items()):
        colour = f"C{index}"
        x, y = _series(rows, "loss")
        ax_loss.plot(x, y, color=colour, lw=0.8, alpha=0.8, label=f"{label} train")
        plotted.append((x, y))
        x, y = _series(rows, "test_loss")
        if x:
            ax_loss.plot(x, y, color=colour, ls="--", marker=".", label=f"{label} test")
            plotted.append((x, y))
        x, y = _series(rows, "lr")
        if x:
            ax_lr.step(x, y, where="post", color=colour, label=label)
    ax_loss.set_yscale("log")
    limits = loss_limits(plotted)
    if limits:
        ax_loss.set_ylim(*limits)
    ax_loss.set_ylabel("Euclidean loss")
    ax_loss.grid(True, which="both", alpha=0.3)
    ax_loss.legend(fontsize="small")
    ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("iteration")
    ax_lr.grid(True, which="both", alpha=0.3)
    if title:
        ax_loss.set_title(title)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def plot_quality(runs, path, set_name="Set5", scale=3, baseline=None, title=None):
    """PSNR and SSIM of the snapshots against the iteration, several runs on one plot.

    Parameters
    ----------
    runs : dict
        Label -> rows of :func:`evaluate_snapshots`.
    path : str or Path
        PNG to write.
    baseline : dict or None
        ``{"psnr": .., "ssim": ..}`` of bicubic, drawn as a horizontal line.
    """
    plt = pyplot()
    metrics = [m for m in ("psnr", "ssim") if any(r.get(m) is not None for rows in runs.values() for r in rows)]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(7, 3.2 * len(metrics)), sharex=True, squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics):
        for index, (label, rows) in enumerate(runs.items()):
            x, y = _series(rows, metric)
            ax.plot(x, y, color=f"C{index}", marker="o", ms=3, label=label)
        if baseline and baseline.get(metric) is not None:
            ax.axhline(baseline[metric], color="grey", ls=":", label=f"bicubic {baseline[metric]:.4g}")
        ax.set_ylabel(f"{set_name} x{scale} {'PSNR (dB)' if metric == 'psnr' else 'SSIM'}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    axes[-1, 0].set_xlabel("iteration")
    if title:
        axes[0, 0].set_title(title)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def plot_summary(loss_rows, quality_rows, path, set_name, scale, baseline=None, title=None):
    """One run's loss (train and test) and its snapshots' PSNR side by side, one PNG (the demo's)."""
    plt = pyplot()
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    # Training and validation losses get an axis each: the validation images may be much
    # easier or harder than the training patches, and one scale would flatten one of them.
    train = _series(loss_rows, "loss")
    lines = ax_loss.plot(*train, lw=0.8, color="C0", label="train loss (left)")
    ax_loss.set_yscale("log")
    limits = loss_limits([train])
    if limits:
        ax_loss.set_ylim(*limits)
    val = _series(loss_rows, "test_loss")
    if val[0]:
        ax_val = ax_loss.twinx()
        lines += ax_val.plot(*val, ls="--", marker=".", color="C2", label="validation loss (right)")
        ax_val.set_yscale("log")
        limits = loss_limits([val])
        if limits:
            ax_val.set_ylim(*limits)
        ax_val.set_ylabel("validation Euclidean loss")
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("training Euclidean loss")
    ax_loss.grid(True, which="both", alpha=0.3)
    ax_loss.legend(lines, [line.get_label() for line in lines], fontsize="small")
    x, y = _series(quality_rows, "psnr")
    ax_psnr.plot(x, y, marker="o", ms=3, color="C1", label="model")
    if baseline and baseline.get("psnr") is not None:
        ax_psnr.axhline(baseline["psnr"], color="grey", ls=":", label=f"bicubic {baseline['psnr']:.2f} dB")
    ax_psnr.set_xlabel("iteration")
    ax_psnr.set_ylabel(f"{set_name} x{scale} PSNR (dB)")
    ax_psnr.grid(True, alpha=0.3)
    ax_psnr.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def run_files(root, name):
    """Solver info, deploy prototxt and training log of the run ``name`` under ``root``."""
    from ddsr.paths import train_log_path

    solver = Path(root) / "solvers" / f"{name}.prototxt"
    if not solver.is_file():
        raise ValueError(f"unknown run {name!r}: no {solver}")
    return snapshots.read_solver(solver), Path(root) / "prototxt" / f"{name}_deploy.prototxt", \
        train_log_path(name, root)


def write_run_curves(runs, out, *, data_root, set_name="Set5", scale=None, root=None, every=1, tile=None,
                     evaluate=True, progress=True, warn=None):
    """Loss curves from the logs and PSNR curves of the snapshots of several runs (Fig. 5 and 6).

    Parameters
    ----------
    runs : dict
        Run name (``solvers/<name>.prototxt``) -> legend label.
    out : path-like
        Folder for ``loss.csv``, ``loss.png``, ``quality.csv`` and ``psnr.png``.
    data_root, set_name
        The test set each snapshot is evaluated on.
    scale : int, optional
        Default: each run's deconvolution stride.
    root : path-like, optional
        Where the runs live (``solvers/``, ``prototxt/``, ``snapshots/``, ``runs/``); default the
        repository.
    every : int
        Evaluate every N-th snapshot (and always the newest).
    tile : int, optional
    evaluate : bool
        False: the log curves only.
    progress : bool
    warn : callable, optional
        Called with a message for a run without a log.

    Returns
    -------
    (list of Path, list of str)
        The files written and one summary line per evaluated run.
    """
    from ddsr.paths import REPO_ROOT

    root = Path(root) if root is not None else REPO_ROOT
    out = Path(out)
    loss_runs, quality_runs, loss_rows, quality_rows, scales = {}, {}, [], [], set()
    for name, label in runs.items():
        info, deploy, log_path = run_files(root, name)
        if log_path.is_file():
            rows = log_rows(log_path)
            loss_runs[label] = rows
            loss_rows += [{"run": name, **r} for r in rows]
        elif warn is not None:
            warn(f"no log {log_path}; no loss curve for {name}")
        if not evaluate:
            continue
        run_scale = scale if scale is not None else deploy_scale(deploy)
        if run_scale is None:
            raise ValueError(f"cannot tell the scale of {deploy} (no Deconvolution layer); give --scale")
        scales.add(run_scale)
        rows = evaluate_snapshots(deploy, info.snapshot_prefix, data_root, set_name, run_scale, workdir=root,
                                  every=every, progress=progress, tile=tile)
        quality_runs[label] = rows
        quality_rows += [{"run": name, **r} for r in rows]
    if not loss_runs and not quality_runs:
        raise ValueError("nothing to plot: no logs" + ("" if not evaluate else " and no snapshots"))
    written, lines = [], []
    if loss_runs:
        written.append(write_csv(out / "loss.csv", loss_rows, ("run",) + LOSS_COLUMNS))
        written.append(plot_loss(loss_runs, out / "loss.png"))
    if quality_runs:
        baseline = None
        if len(scales) == 1:
            (shown_scale,) = scales
            baseline = bicubic_quality(load_test_images(data_root, set_name, shown_scale), shown_scale)
            quality_rows.append({"run": "bicubic", "iteration": None, **baseline})
        else:
            shown_scale = "/".join(map(str, sorted(scales)))
        written.append(write_csv(out / "quality.csv", quality_rows, ("run",) + QUALITY_COLUMNS))
        written.append(plot_quality(quality_runs, out / "psnr.png", set_name=set_name, scale=shown_scale,
                                    baseline=baseline))
        for label, rows in quality_runs.items():
            best = max(rows, key=lambda r: r["psnr"])
            last = rows[-1]
            lines.append(f"{label}: {set_name} x{shown_scale} PSNR {last['psnr']:.2f} dB at iteration "
                         f"{last['iteration']} (best {best['psnr']:.2f} at {best['iteration']})"
                         + (f"; bicubic {baseline['psnr']:.2f}" if baseline else ""))
    return written, lines
