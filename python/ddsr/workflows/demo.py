"""The CPU demo: a small DDSR trained on images that ship with scikit-image.

``make demo`` must run offline, on any machine, in half an hour on two cores.
Its default data are photographs bundled inside the scikit-image wheel
(``skimage/data/*.png|jpg``; loading them needs no network, unlike the
``skimage.data`` images fetched with pooch). They are written as ordinary set
folders, so the same tools that read the paper's sets read them:

- ``skimage-train``: the training images (colour and greyscale photographs:
  Y only is used, as in the paper);
- ``skimage-val``: one held-out image for Caffe's TEST phase (the validation loss);
- ``skimage-test``: three colour photographs the report evaluates (astronaut, coffee,
  motorcycle), never trained on.

With real image sets (``DATA=DIR``) the demo trains on T91 and tests on Set5
instead (:data:`REAL_SETS`).
"""

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from ddsr.atomic import replacing_directory, write_png_atomic
from ddsr.workflows import show_command

DEMO_SETS = {
    # name of the set folder -> skimage.data loader names
    "skimage-train": (
        "camera", "coins", "page", "text", "grass", "gravel", "brick",
        "rocket", "immunohistochemistry", "chelsea",
    ),
    "skimage-val": ("moon",),
    "skimage-test": ("astronaut", "coffee", "motorcycle_left"),
}
"""The bundled images of each demo set. Test images are colour photographs with edges
and fine detail (the comparison figure shows colour); none of them is used for training,
and neither is ``motorcycle_right``, the other view of the test image's stereo pair.
``hubble_deep_field`` (mostly black sky: 29% of the patches and nothing to learn) and
``retina`` (smooth) are left out."""

SKIMAGE_SETS = {"train": "skimage-train", "val": "skimage-val", "test": "skimage-test"}

REAL_SETS = {"train": "T91", "val": "BSD200-train", "val_fallback": "General-100", "test": "Set5"}
"""The sets used with ``DATA=DIR``: train T91, validate on held-out images
(the first images of BSD200-train, else of General-100), test Set5."""


def load_bundled_image(name):
    """One image bundled with scikit-image, as uint8 ``(H, W)`` or ``(H, W, 3)``.

    ``motorcycle_left`` is the left view of ``skimage.data.stereo_motorcycle()``;
    every other name is a ``skimage.data`` function. RGBA is not accepted
    (none of the chosen images has alpha).

    Raises
    ------
    ValueError
        Unknown name, or an image that is not uint8 grey or RGB.
    """
    import skimage.data

    if name == "motorcycle_left":
        image = skimage.data.stereo_motorcycle()[0]
    else:
        loader = getattr(skimage.data, name, None)
        if loader is None or not callable(loader):
            raise ValueError(f"skimage.data has no image {name!r}")
        image = loader()
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"skimage.data.{name} is {image.dtype} {image.shape}, not uint8 grey or RGB")
    return image


def write_demo_sets(data_root, sets=None):
    """Write the bundled images as PNG set folders ``data_root/<set>/<name>.png``.

    Each set folder is written to a temporary folder and renamed into place, so
    a set is either complete or absent. Sets that already hold exactly the
    expected image files (the names recorded in ``demo.json``, all present) are
    left as they are.

    Parameters
    ----------
    data_root : str or Path
        Folder for the set folders (the demo uses ``data/demo``).
    sets : dict or None
        Set name -> loader names (default :data:`DEMO_SETS`).

    Returns
    -------
    dict
        Set name -> list of written (or found) PNG paths.
    """
    sets = DEMO_SETS if sets is None else sets
    data_root = Path(data_root)
    data_root.mkdir(parents=True, exist_ok=True)
    written = {}
    for set_name, names in sets.items():
        if not names:
            raise ValueError(f"demo set {set_name!r} has no images")
        folder = data_root / set_name
        expected = {name: f"{name}.png" for name in names}
        stamp = folder / "demo.json"
        if stamp.is_file():
            try:
                recorded = json.loads(stamp.read_text())
            except ValueError:
                recorded = None
            if recorded == {"images": expected} and all((folder / f).is_file() for f in expected.values()):
                written[set_name] = [folder / f for f in expected.values()]
                continue
        with replacing_directory(folder, sync=False) as temp:
            for name, file_name in expected.items():
                write_png_atomic(temp / file_name, load_bundled_image(name))
            (temp / "demo.json").write_text(json.dumps({"images": expected}, indent=1) + "\n")
        written[set_name] = [folder / f for f in expected.values()]
    return written


def real_sets(data_root):
    """The train/val/test set names to use with real data under ``data_root``.

    Raises
    ------
    ValueError
        ``data_root`` lacks T91 or Set5, or has no set to validate on.
    """
    root = Path(data_root)
    for key in ("train", "test"):
        if not (root / REAL_SETS[key]).is_dir():
            raise ValueError(f"DATA={data_root}: no {REAL_SETS[key]} folder (the demo trains on T91 "
                             f"and tests on Set5; fetch them with tools/fetch_datasets.py)")
    for key in ("val", "val_fallback"):
        if (root / REAL_SETS[key]).is_dir():
            return {"train": REAL_SETS["train"], "val": REAL_SETS[key], "test": REAL_SETS["test"]}
    raise ValueError(f"DATA={data_root}: no {REAL_SETS['val']} or {REAL_SETS['val_fallback']} folder "
                     f"to take validation images from")


# --- the report ----------------------------------------------------------------


def report_markdown(facts):
    """The demo's report (``reports/demo/README.md``) from what the run measured.

    Parameters
    ----------
    facts : dict
        ``experiment``, ``net`` (one line describing it), ``data`` (one line), ``test_set``,
        ``scale``, ``iterations``, ``model`` and ``bicubic`` (``{"psnr", "ssim", "ifc"}``
        means), ``per_image`` (name -> (bicubic PSNR, model PSNR)), ``min_gain``,
        ``seconds`` (step -> seconds, ``train`` included), ``seconds_per_iteration`` (None
        when this run trained nothing),
        ``machine`` (one line: CPUs, load), ``table3`` (the Markdown of tools/eval.py),
        ``commands`` (the plain commands, one per line), ``figures`` (caption -> file name).

    Returns
    -------
    str
    """
    model, bicubic = facts["model"], facts["bicubic"]
    gain = model["psnr"] - bicubic["psnr"]
    verdict = "passes" if gain >= facts["min_gain"] else "FAILS"
    total = sum(facts["seconds"].values())
    lines = [
        f"# DDSR demo: x{facts['scale']} super-resolution trained on the CPU",
        "",
        f"**{facts['test_set']} x{facts['scale']}: PSNR {model['psnr']:.2f} dB vs bicubic {bicubic['psnr']:.2f} dB "
        f"({gain:+.2f} dB; the demo's bar is +{facts['min_gain']:.1f} dB: {verdict}).**",
        "",
        f"- Net: `{facts['experiment']}`: {facts['net']}.",
        f"- Data: {facts['data']}.",
        f"- Training: `caffe train`, {facts['iterations']} iterations, "
        + (f"{facts['seconds']['train'] / 60:.1f} min ({facts['seconds_per_iteration']:.3f} s/iteration)."
           if facts["seconds_per_iteration"] else "trained by an earlier run (resumed or reused)."),
        f"- Total time: {total / 60:.1f} min ("
        + ", ".join(f"{step} {sec:.0f} s" for step, sec in facts["seconds"].items()) + ").",
        f"- Machine: {facts['machine']}.",
        "",
        "| method | PSNR (dB) | SSIM | IFC |",
        "|---|---:|---:|---:|",
    ]
    for label, values in (("Bicubic", bicubic), (f"{facts['experiment']} ({facts['iterations']} it)", model)):
        lines.append(f"| {label} | {values['psnr']:.2f} | {values['ssim']:.4f} | "
                     + (f"{values['ifc']:.2f}" if values.get("ifc") is not None else "–") + " |")
    lines.append(f"| gain | {gain:+.2f} | {model['ssim'] - bicubic['ssim']:+.4f} | "
                 + (f"{model['ifc'] - bicubic['ifc']:+.2f}" if model.get("ifc") is not None
                    and bicubic.get("ifc") is not None else "–") + " |")
    lines += ["", "Per image (PSNR, dB):", "", "| image | bicubic | model | gain |", "|---|---:|---:|---:|"]
    for name, (b, m) in facts["per_image"].items():
        lines.append(f"| {name} | {b:.2f} | {m:.2f} | {m - b:+.2f} |")
    lines += ["", "Y channel, border of `scale` pixels shaved, the SRCNN/FSRCNN MATLAB protocol "
              "(`tools/eval.py`). These are not the paper's numbers: the demo net is small and "
              "trained for minutes (see `make reproduce`).", ""]
    for caption, file_name in facts["figures"].items():
        lines += [f"## {caption}", "", f"![{caption}]({file_name})", ""]
    lines += ["## Table 3 layout (tools/eval.py)", "", facts["table3"].strip(), "",
              "## The same, by hand", "", "```sh", *facts["commands"], "```", ""]
    return "\n".join(lines)


# --- the run -------------------------------------------------------------------

EXPERIMENT = "demo_x3"
DEMO_ROOT = Path("data") / "demo"
# Evaluate on 64x64 LR tiles: the same numbers, 0.7 GB instead of 4 GB at the peak (Caffe keeps
# an im2col buffer of 9 x 24 x the output's pixels per conv layer: 0.3 GB each for 500x741).
TILE = 64


def _data(data, prog, experiment):
    """Step 1: the data root, the train/val/test sets, and one line saying what they are."""
    from ddsr.paths import REPO_ROOT

    if data is not None:
        data_root = Path(data).resolve()
        sets = real_sets(data_root)
        return data_root, sets, 2, (f"real sets under {data}: train {sets['train']}, validation the first "
                                    f"2 images of {sets['val']}, test {sets['test']}")
    print(f"{prog}: [1/6] data: images bundled with scikit-image -> {DEMO_ROOT}/", file=sys.stderr)
    written = write_demo_sets(REPO_ROOT / DEMO_ROOT)
    sets = dict(SKIMAGE_SETS)
    line = ("photographs bundled with scikit-image: train " + ", ".join(p.stem for p in written[sets["train"]])
            + f"; validation {', '.join(p.stem for p in written[sets['val']])}"
            + f"; test {', '.join(p.stem for p in written[sets['test']])}")
    return REPO_ROOT / DEMO_ROOT, sets, experiment.recipe.val_images, line


def _database(experiment, data_root, sets, val_images, prog, progress):
    """Step 2: the demo_x3 database, from the experiment's recipe (other sets with DATA=DIR)."""
    from ddsr.data import database
    from ddsr.paths import REPO_ROOT, relative_path

    recipe = experiment.recipe
    command = ["tools/make_h5.py", "--experiment", experiment.name, "--data-root", relative_path(data_root, REPO_ROOT)]
    if (sets["train"], sets["val"], val_images) != (recipe.train_sets[0], recipe.val_set, recipe.val_images):
        recipe = recipe.replace(train_sets=(sets["train"],), val_set=sets["val"], val_images=val_images)
        command += ["--train-sets", sets["train"], "--val-set", sets["val"], "--val-images", val_images]
    shown = show_command(prog, command)
    manifest = database.build(recipe, data_root, progress=progress)
    print(f"{prog}: {manifest['num_patches']} training patches, "
          f"{manifest['splits']['val']['num_patches']} validation patches -> {recipe.folder}", file=sys.stderr)
    return shown


def _train(experiment, data_root, sets, restart, gpu, niceness, prog, progress):
    """Step 3: ``caffe train`` of demo_x3, resumed unless the data changed or ``restart``."""
    import json

    from ddsr.atomic import write_json_atomic
    from ddsr.paths import REPO_ROOT
    from ddsr.training import runner, snapshots

    if not (REPO_ROOT / experiment.solver_path).is_file():
        raise RuntimeError(f"no {experiment.solver_path}: generate the nets with `make nets`")
    experiment.check_database()
    stamp_path = experiment.run_dir / "demo-data.json"
    stamp = {"data_root": str(data_root), **sets}
    previous = json.loads(stamp_path.read_text()) if stamp_path.is_file() else None
    if restart or (previous is not None and previous != stamp):
        if not restart:
            print(f"{prog}: [3/6] train: the data changed since the last demo run; training from iteration 0",
                  file=sys.stderr)
        snapshots.remove_snapshots(experiment.snapshot_prefix, REPO_ROOT)
        experiment.log_path.unlink(missing_ok=True)
    write_json_atomic(stamp_path, stamp)
    plain = " ".join(map(str, runner.train_command(experiment.solver_path, gpu=gpu)))
    max_iter = experiment.solver["max_iter"]
    print(f"{prog}: [3/6] train: {plain}  ({max_iter} iterations; log {experiment.log_path.relative_to(REPO_ROOT)})",
          file=sys.stderr)
    result = runner.train(experiment.solver_path, gpu=gpu, workdir=REPO_ROOT, progress=progress,
                          niceness=niceness, description=f"train {experiment.name}")
    if result.already_done:
        print(f"{prog}: [3/6] train: already trained to iteration {result.final_iteration} "
              f"(--restart to train again)", file=sys.stderr)
    return result, plain


def _evaluate(experiment, weights, data_root, sets, gpu, out, prog, progress):
    """Step 4: the demo net and bicubic on the test images (``tools/eval.py``'s evaluation)."""
    from ddsr.evaluation.results import read_eval_folder
    from ddsr.evaluation.run import DeployModel, evaluate_to_folder
    from ddsr.paths import REPO_ROOT, relative_path

    scale = experiment.scale
    label = f"DDSR demo ({experiment.name})"
    command = ["tools/eval.py", "--model", experiment.deploy_net_path, "--weights", relative_path(weights, REPO_ROOT),
               "--scale", scale, "--sets", sets["test"], "--data-root", relative_path(data_root, REPO_ROOT),
               "--out", relative_path(out, REPO_ROOT), "--name", label, "--paper-row", "none", "--tile", TILE]
    command += ["--gpu", gpu] if gpu is not None else []
    shown = show_command(prog, command)
    model = DeployModel.from_files(REPO_ROOT / experiment.deploy_net_path, weights, scale, tile=TILE)
    evaluate_to_folder(out, data_root=data_root, sets=[sets["test"]], scales=[scale], label=label,
                       models={scale: model}, gpu=gpu, progress=progress, command=[str(w) for w in command])
    return read_eval_folder(out), shown


def _curves(experiment, data_root, test_set, baseline, out, prog, progress):
    """Step 5: every snapshot's PSNR on the test images, and the loss from the log."""
    from ddsr.paths import REPO_ROOT, relative_path
    from ddsr.training import curves
    from ddsr.training.log import read_log

    command = ["tools/curves.py", experiment.name, "--set", test_set, "--data-root",
               relative_path(data_root, REPO_ROOT), "--tile", TILE]
    shown = show_command(prog, command)
    quality = curves.evaluate_snapshots(REPO_ROOT / experiment.deploy_net_path, experiment.snapshot_prefix,
                                        data_root, test_set, experiment.scale, workdir=REPO_ROOT,
                                        progress=progress, tile=TILE)
    loss = curves.log_rows(read_log(experiment.log_path))
    curves.write_csv(out / "loss.csv", loss, curves.LOSS_COLUMNS)
    curves.write_csv(out / "quality.csv", quality, curves.QUALITY_COLUMNS)
    curves.plot_summary(loss, quality, out / "curves.png", set_name=test_set, scale=experiment.scale,
                        baseline=baseline, title=f"{experiment.name}: training loss and test PSNR")
    return shown


def _compare(experiment, weights, iterations, data_root, test_set, image_names, out, prog):
    """Step 6: crops of bicubic / demo net / ground truth (``tools/compare.py``'s figure)."""
    from ddsr.evaluation.compare import write_comparison
    from ddsr.paths import REPO_ROOT, relative_path

    images = [f"{test_set}/{name}" for name in sorted(image_names)]
    command = ["tools/compare.py", "--experiment", experiment.name, "--data-root", relative_path(data_root, REPO_ROOT),
               "--tile", TILE, "--images", *images]
    shown = show_command(prog, command)
    scale = experiment.scale
    write_comparison([(experiment.name, REPO_ROOT / experiment.deploy_net_path, weights)], images, data_root,
                     scale, out / "comparison.png", crop_size=96, tile=TILE,
                     title=f"x{scale}: bicubic / {experiment.name} ({iterations} it) / ground truth")
    return shown


def run_demo(out, *, data=None, gpu=None, restart=False, min_gain=0.5, niceness=0, progress=True, prog="demo"):
    """``make demo``: the six steps, each printed as the command a user could type, and the report.

    Returns
    -------
    dict
        What ``demo.json`` holds (``gain_db`` among it).
    """
    from ddsr.atomic import write_json_atomic, write_text_atomic
    from ddsr.evaluation.deploy_net import parse_deploy
    from ddsr.model.experiments import EXPERIMENTS_PATH, load_experiments
    from ddsr.paths import REPO_ROOT

    begun, load_at_start, seconds, commands = time.time(), os.getloadavg(), {}, []
    experiment = load_experiments(EXPERIMENTS_PATH)[EXPERIMENT]
    out = Path(out).resolve()

    def step(name, fn, *args):
        started = time.time()
        value = fn(*args)
        seconds[name] = time.time() - started
        return value

    data_root, sets, val_images, data_line = step("data", _data, data, prog, experiment)
    print(f"{prog}: [1/6] data: {data_line}", file=sys.stderr)
    commands.append(step("database", _database, experiment, data_root, sets, val_images, prog, progress))
    trained, plain = step("train", _train, experiment, data_root, sets, restart, gpu, niceness, prog, progress)
    commands.append(plain)
    weights, iterations = trained.snapshot.caffemodel, trained.snapshot.iteration
    evaluated, command = step("evaluate", _evaluate, experiment, weights, data_root, sets, gpu, out / "eval",
                              prog, progress)
    commands.append(command)
    model, bicubic = evaluated.cell(sets["test"], experiment.scale), evaluated.baseline.cell(sets["test"],
                                                                                              experiment.scale)
    model_images, bicubic_images = evaluated.image_values("psnr"), evaluated.baseline.image_values("psnr")
    commands.append(step("curves", _curves, experiment, data_root, sets["test"], bicubic, out, prog, progress))
    commands.append(step("compare", _compare, experiment, weights, iterations, data_root, sets["test"],
                         model_images, out, prog))
    gain = model["psnr"] - bicubic["psnr"]
    facts = {
        "experiment": experiment.name, "net": describe_net(parse_deploy(REPO_ROOT / experiment.deploy_net_path)),
        "data": data_line, "test_set": sets["test"], "scale": experiment.scale, "iterations": iterations,
        "model": model, "bicubic": bicubic,
        "per_image": {name: (bicubic_images[name], model_images[name]) for name in sorted(model_images)},
        "min_gain": min_gain, "seconds": seconds, "seconds_per_iteration": trained.seconds_per_iteration,
        "machine": machine_line(load_at_start), "table3": (out / "eval" / "table3.md").read_text(),
        "commands": commands,
        "figures": {"Bicubic / demo net / ground truth": "comparison.png", "Training loss and test PSNR": "curves.png"},
    }
    write_text_atomic(out / "table3.md", facts["table3"])
    write_text_atomic(out / "README.md", report_markdown(facts))
    summary = {
        "experiment": experiment.name, "iterations": iterations, "test_set": sets["test"], "scale": experiment.scale,
        "psnr": model["psnr"], "bicubic_psnr": bicubic["psnr"], "gain_db": gain, "ssim": model["ssim"],
        "bicubic_ssim": bicubic["ssim"], "seconds": seconds, "total_seconds": time.time() - begun,
        "seconds_per_iteration": trained.seconds_per_iteration, "machine": facts["machine"], "data": data_line,
    }
    write_json_atomic(out / "demo.json", summary)
    return summary


def describe_net(net):
    """One line about a DDSR deploy net (a parsed ``NetParameter``)."""
    convs = [layer for layer in net.layer if layer.type == "Convolution"]
    deconv = [layer for layer in net.layer if layer.type == "Deconvolution"]
    residual = any(layer.type == "Eltwise" for layer in net.layer)
    parts = []
    if deconv:
        p = deconv[0].convolution_param
        parts.append(f"{p.kernel_size[0]}x{p.kernel_size[0]}x{p.num_output} deconvolution (stride {p.stride[0]})")
    if convs:
        width = convs[0].convolution_param.num_output
        parts.append(f"{len(convs) - 1} conv 3x3x{width} + the 3x3x1 reconstruction (depth {len(convs)})")
    parts.append("with the residual" if residual else "no residual")
    return ", ".join(parts) + ", PReLU"


def machine_line(load_at_start):
    cpus = os.cpu_count()
    return (f"{platform.processor() or platform.machine()}, {cpus} CPU cores; load average "
            f"{load_at_start[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
