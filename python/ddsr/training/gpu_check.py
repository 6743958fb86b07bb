"""The GPU self-check of the CUDA build: the device, CPU/GPU parity per engine, the speed.

``tools/check_gpu.py`` (``make check-gpu``) runs :func:`run_check` on a machine with an
NVIDIA GPU and writes :func:`report_markdown` to ``report.md``. It measures:

- ``caffe device_query``, the GPU, its driver, the CUDA runtime and cuDNN that Caffe loads;
- forward parity: the train net's output (``recon``) for the same weights and inputs in
  [0, 1], computed in CPU mode and on the GPU, with the cuDNN engine and with Caffe's own
  (``engine: CUDNN`` / ``engine: CAFFE`` in every convolution): max abs difference at most
  :data:`FORWARD_TOLERANCE`, for a batch of training patches and for one image-sized input;
- training parity: the losses of the first :data:`TRAIN_ITERATIONS` iterations of
  ``caffe train`` from the same initial weights and data, each equal to the CPU's within
  :data:`LOSS_TOLERANCE` (relative);
- ``caffe time`` of the train net at its own batch size (128) for each engine, and the time
  of the paper's 100k-iteration run that it implies;
- ``caffe train -gpu all`` for a few iterations when the machine has more than one GPU.

Everything runs through the ``caffe`` tool, the program that trains, in subprocesses: the
CPU reference and the GPU run use the same binary and files, and a Caffe abort (glog's
``F...`` lines) ends that step only. The forward outputs come back at full precision through
an ``HDF5Output`` layer appended to the net; the losses from ``caffe train``'s log
(``display: 1``, ``average_loss: 1``). Besides Caffe the check needs Python with numpy and
h5py only, no pycaffe and no protobuf (:mod:`ddsr.training.prototxt_text` edits the nets), so
it also runs where pycaffe is not built for the Python at hand. The CPU runs use Caffe's own
engine, which a CUDA build runs without a GPU, so the whole check can also run CPU against
CPU (``gpu=None``): that is how the tests exercise it.
"""

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ddsr.training import prototxt_text as pt
from ddsr.training import log as train_log
from ddsr.training.gpu_facts import (ENGINE_NAMES, compare_forward, compare_losses, library_versions,
                                     parse_caffe_time, parse_device_query)

__all__ = ["TRAIN_ITERATIONS", "with_engine", "with_data", "with_output", "solver_text", "CheckResults",
           "run_check"]

TRAIN_ITERATIONS = 100
ENGINES = ("CUDNN", "CAFFE")
LR_PATCH = 7  # the paper's 7x7 LR training patches
IMAGE_LR = 64  # the image-sized forward input: 64x64 LR, e.g. x3 -> 192x192


# --- the GPUs, the libraries ------------------------------------------------------------


# --- comparisons ------------------------------------------------------------------------


# --- what the caffe tool prints -----------------------------------------------------------


# --- the nets and solvers the check runs --------------------------------------------------


def _layers(net):
    return [value for key, value in net if key == "layer"]


def with_engine(net, engine):
    """A copy of ``net`` (a :class:`~ddsr.training.prototxt_text.Message`) with ``engine`` in
    every Convolution and Deconvolution layer."""
    net = pt.parse(pt.dump(net))
    count = 0
    for layer in _layers(net):
        if pt.unquote(layer.get("type", "")) in ("Convolution", "Deconvolution"):
            layer.submessage("convolution_param").set("engine", engine)
            count += 1
    if count == 0:
        raise ValueError("the net has no Convolution or Deconvolution layer")
    return net


def with_data(net, source, batch_size):
    """A copy of ``net`` whose HDF5Data layers (every phase) read ``source`` in order."""
    net = pt.parse(pt.dump(net))
    count = 0
    for layer in _layers(net):
        if pt.unquote(layer.get("type", "")) == "HDF5Data":
            param = layer.submessage("hdf5_data_param")
            param.set("source", pt.quote(source))
            param.set("batch_size", str(int(batch_size)))
            param.set("shuffle", "false")
            count += 1
    if count == 0:
        raise ValueError("the net has no HDF5Data layer")
    return net


def with_output(net, blob, file_name, second_blob="label"):
    """A copy of ``net`` with an HDF5Output layer that writes ``blob`` (as dataset ``data``) to
    ``file_name`` at full precision; Caffe's layer needs a second bottom (dataset ``label``)."""
    net = pt.parse(pt.dump(net))
    layer = pt.Message([("name", pt.quote("parity_output")), ("type", pt.quote("HDF5Output")),
                        ("bottom", pt.quote(blob)), ("bottom", pt.quote(second_blob)),
                        ("hdf5_output_param", pt.Message([("file_name", pt.quote(file_name))]))])
    net.append(("layer", layer))
    return net


def upscale_factor(net):
    """The stride of the net's first Deconvolution layer: DDSR's upscaling factor."""
    for layer in _layers(net):
        if pt.unquote(layer.get("type", "")) == "Deconvolution":
            return int(layer.submessage("convolution_param").get("stride", "1"))
    raise ValueError("the net has no Deconvolution layer (not a DDSR net)")


def net_batch_size(net):
    """The batch size of the net's TRAIN-phase HDF5Data layer."""
    for layer in _layers(net):
        if pt.unquote(layer.get("type", "")) == "HDF5Data":
            include = layer.get("include")
            if include is None or include.get("phase") == "TRAIN":
                return int(layer.submessage("hdf5_data_param").get("batch_size", "1"))
    raise ValueError("the net has no TRAIN-phase HDF5Data layer")


def loss_blob(net):
    """The top of the net's EuclideanLoss layer."""
    for layer in _layers(net):
        if pt.unquote(layer.get("type", "")) == "EuclideanLoss":
            return pt.unquote(layer.get("top"))
    raise ValueError("the net has no EuclideanLoss layer")


def output_blob(net):
    """The prediction that the loss compares with the label (DDSR's ``recon``)."""
    for layer in _layers(net):
        if pt.unquote(layer.get("type", "")) == "EuclideanLoss":
            return next(pt.unquote(b) for b in layer.get_all("bottom") if pt.unquote(b) != "label")
    raise ValueError("the net has no EuclideanLoss layer")


# Solver fields that say how to optimise; the rest (net, schedule length, tests, snapshots,
# display) the check sets itself.
_SOLVER_KEEP = ("type", "solver_type", "base_lr", "momentum", "momentum2", "delta", "rms_decay",
                "lr_policy", "gamma", "power", "stepsize", "stepvalue", "weight_decay",
                "regularization_type", "clip_gradients", "iter_size", "random_seed")


def solver_text(solver, net_path, iterations, snapshot_prefix, snapshot_at_end=False):
    """Solver prototxt text: ``solver``'s optimiser for ``iterations`` iterations of
    ``net_path``, every loss displayed, no test net, no snapshot (but the last one when
    ``snapshot_at_end``: with 0 iterations that writes the initial weights)."""
    kept = pt.Message([(k, v) for k, v in solver if k in _SOLVER_KEEP])
    kept += [("net", pt.quote(net_path)), ("max_iter", str(int(iterations))),
             ("display", "1"), ("average_loss", "1"), ("snapshot", "0"),
             ("snapshot_after_train", "true" if snapshot_at_end else "false"),
             ("snapshot_prefix", pt.quote(snapshot_prefix)), ("solver_mode", "CPU")]
    return pt.dump(kept)


# --- running the caffe tool -------------------------------------------------------------


class StepFailed(RuntimeError):
    """A caffe command failed; the message has its last log lines."""


def _caffe_env(extra=None):
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0")
    env.update(extra or {})
    return env


def run_caffe(caffe, args, log, gpu=None, env=None, timeout=None):
    """Run ``caffe args... [-gpu N]``, its whole output into ``log``; return that output.

    Raises
    ------
    StepFailed
        On a non-zero exit, with Caffe's fatal message or its last lines.
    """
    command = [str(caffe), *map(str, args)]
    if gpu is not None:
        command += ["-gpu", str(gpu)]
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=_caffe_env(env), timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode(errors="replace")
        log.write_text(f"$ {' '.join(command)}\n{output}")
        raise StepFailed(f"{' '.join(command[:2])} took over {timeout} s (log: {log})") from None
    log.write_text(f"$ {' '.join(command)}\n{done.stdout}")
    if done.returncode != 0:
        fatal = [line for line in done.stdout.splitlines() if re.match(r"^F(\d{4})?\d{4} ", line)]
        said = fatal[0].split("] ", 1)[-1] if fatal else " | ".join(done.stdout.splitlines()[-3:])
        raise StepFailed(f"{' '.join(command[:2])} exited {done.returncode}: {said} (log: {log})")
    return done.stdout


def write_patches(path, count, scale, seed):
    """An HDF5 file of ``count`` LR/HR training pairs in [0, 1], like make_h5's (data
    count x 1 x 7 x 7, label count x 1 x 7s x 7s): smooth random HR blocks, LR their s x s
    means. Returns the list file (Caffe's ``source``) that names it."""
    rng = np.random.default_rng(seed)
    hr_size = LR_PATCH * scale
    coarse = rng.random((count, 1, LR_PATCH + 2, LR_PATCH + 2))
    # bilinear-ish smooth HR: a coarse random field upsampled, plus a little detail
    hr = np.kron(coarse, np.ones((scale, scale)))[:, :, scale:scale + hr_size, scale:scale + hr_size]
    hr = np.clip(0.9 * hr + 0.1 * rng.random(hr.shape), 0, 1).astype(np.float32)
    lr = hr.reshape(count, 1, LR_PATCH, scale, LR_PATCH, scale).mean(axis=(3, 5)).astype(np.float32)
    return _write_h5(path, lr, hr)


def write_image_input(path, scale, seed, size=IMAGE_LR):
    """One image-sized input (1 x 1 x size x size in [0, 1]) and a zero label, as HDF5."""
    rng = np.random.default_rng(seed)
    lr = rng.random((1, 1, size, size)).astype(np.float32)
    return _write_h5(path, lr, np.zeros((1, 1, size * scale, size * scale), np.float32))


def _write_h5(path, data, label):
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["data"], f["label"] = data, label
    listing = path.with_suffix(".txt")
    listing.write_text(f"{path.resolve()}\n")
    return listing


def read_output(path):
    """The ``data`` dataset an HDF5Output layer wrote."""
    import h5py

    with h5py.File(path, "r") as f:
        return np.array(f["data"])


def training_losses(log_text, iterations):
    """The losses of iterations 0 .. iterations-1 from a ``caffe train`` log (``display: 1``)."""
    log = train_log.TrainingLog()
    for line in log_text.splitlines():
        log.feed(line)
    missing = [i for i in range(iterations) if i not in log.loss]
    if missing:
        raise StepFailed(f"the training log lacks the loss of iteration {missing[0]} "
                         f"(and {len(missing) - 1} more)")
    return [log.loss[i] for i in range(iterations)]


# --- the check --------------------------------------------------------------------------


@dataclass
class CheckResults:
    """What :func:`run_check` found; :func:`report_markdown` writes it out."""

    machine: dict = field(default_factory=dict)      # label -> text (GPU, driver, CUDA, cuDNN, ...)
    device_query: dict = field(default_factory=dict)
    forward: list = field(default_factory=list)      # (engine, input label, Comparison)
    training: list = field(default_factory=list)     # (engine, Comparison, first loss, last loss)
    timings: list = field(default_factory=list)      # (engine label, CaffeTime)
    multi_gpu: dict = None                           # gpus, iterations, seconds, last loss
    notes: list = field(default_factory=list)
    failures: list = field(default_factory=list)     # steps that failed outright
    settings: dict = field(default_factory=dict)     # batch sizes, iterations, tolerances

    @property
    def passed(self):
        return (not self.failures and all(c.passed for _, _, c in self.forward)
                and all(c.passed for _, c, _, _ in self.training))


def _step(results, what, function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except (StepFailed, OSError, ValueError) as exc:
        results.failures.append(f"{what}: {exc}")
        return None


def run_check(caffe, train_net, solver, work, gpu=0, gpus=(), engines=ENGINES,
              train_iterations=TRAIN_ITERATIONS, train_batch=32, time_iterations=50,
              multi_gpu_iterations=20, seed=0, say=print):
    """Run the self-check; return :class:`CheckResults`.

    Parameters
    ----------
    caffe : path-like
        The ``caffe`` tool of the CUDA build.
    train_net, solver : path-like
        The net and solver to check (the paper's: prototxt/ddsr_x3_train.prototxt and
        solvers/ddsr_x3.prototxt). Their data sources are replaced by synthetic patches.
    work : path-like
        Folder for the generated nets, data, weights and logs.
    gpu : int or None
        The GPU to compare with the CPU; None runs the candidate in CPU mode too, which
        checks the check itself, not a GPU.
    gpus : sequence of GPU
        The machine's GPUs (:func:`find_gpus`): named in the report; with more than one,
        ``caffe train -gpu all`` is run.
    engines : sequence of str
        Convolution engines to check on the GPU (``CUDNN`` needs a cuDNN build).
    train_iterations, train_batch : int
        Length and batch size of the training-parity runs (the CPU reference trains too,
        so the batch is smaller than the paper's 128; ``caffe time`` uses the net's own).
    time_iterations : int
        ``caffe time -iterations``.
    say : callable
        Progress, one line per step.
    """
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = CheckResults()
    net = pt.parse(Path(train_net).read_text())
    solver_message = pt.parse(Path(solver).read_text())
    scale = upscale_factor(net)
    batch = net_batch_size(net)
    loss, output = loss_blob(net), output_blob(net)
    results.settings = {"net": str(train_net), "solver": str(solver), "scale": scale, "batch": batch,
                        "train_batch": train_batch, "train_iterations": train_iterations,
                        "time_iterations": time_iterations, "gpu": gpu}
    tf32 = os.environ.get("CAFFE_CUDNN_ALLOW_TF32") == "1"

    # the machine
    for g in gpus:
        results.machine[f"GPU {g.index}"] = f"{g.name}, {g.memory_mib} MiB" if g.memory_mib else g.name
    if gpus and gpus[0].driver:
        results.machine["NVIDIA driver"] = gpus[0].driver
    versions = library_versions(caffe)
    for key, label in (("cudart", "CUDA runtime"), ("cudnn", "cuDNN")):
        path, version = versions[key]
        results.machine[label] = f"{version} ({path})" if path else "not linked"
    if versions["cudnn"][0] is None and "CUDNN" in engines:
        engines = [e for e in engines if e != "CUDNN"]
        results.notes.append("this Caffe is built without cuDNN (`CUDNN=0`): only Caffe's own engine is checked")
    results.machine["cuDNN convolution math"] = ("TF32 allowed (CAFFE_CUDNN_ALLOW_TF32=1)" if tf32
                                                 else "FP32 (CUDNN_FMA_MATH)")
    results.machine["caffe"] = str(caffe)
    if gpu is not None:
        say(f"caffe device_query -gpu {gpu}")
        text = _step(results, "caffe device_query", run_caffe, caffe, ["device_query"], work / "device_query.log", gpu=gpu)
        if text is not None:
            results.device_query = parse_device_query(text)

    # data and initial weights (CPU, Caffe's engine)
    say(f"synthetic x{scale} data, initial weights")
    train_source = write_patches(work / "data" / "train.h5", 4 * max(train_batch, batch), scale, seed)
    patch_source = write_patches(work / "data" / "forward_patches.h5", batch, scale, seed + 1)
    image_source = write_image_input(work / "data" / "forward_image.h5", scale, seed + 2)
    reference_net = with_engine(net, "CAFFE")
    init_net = work / "init_net.prototxt"
    init_net.write_text(pt.dump(with_data(reference_net, train_source, train_batch)))
    init_solver = work / "init_solver.prototxt"
    init_solver.write_text(solver_text(solver_message, init_net, 0, work / "init", snapshot_at_end=True))
    if _step(results, "initial weights (caffe train, 0 iterations)", run_caffe, caffe,
             ["train", "-solver", init_solver], work / "init.log") is None:
        return results
    weights = work / "init_iter_0.caffemodel"

    def forward(engine, source, label, batch_size, device):
        tag = f"{label}_{engine.lower()}_{'cpu' if device is None else f'gpu{device}'}"
        out = work / "forward" / f"{tag}.h5"
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.unlink()
        model = work / "forward" / f"{tag}.prototxt"
        model.write_text(pt.dump(with_output(with_data(with_engine(net, engine), source, batch_size),
                                             output, out)))
        run_caffe(caffe, ["test", "-model", model, "-weights", weights, "-iterations", 1],
                  work / "forward" / f"{tag}.log", gpu=device)
        return read_output(out)

    def train(engine, device):
        tag = f"{engine.lower()}_{'cpu' if device is None else f'gpu{device}'}"
        model = work / "train" / f"{tag}_net.prototxt"
        model.parent.mkdir(parents=True, exist_ok=True)
        model.write_text(pt.dump(with_data(with_engine(net, engine), train_source, train_batch)))
        solver_path = work / "train" / f"{tag}_solver.prototxt"
        solver_path.write_text(solver_text(solver_message, model, train_iterations, work / "train" / tag))
        text = run_caffe(caffe, ["train", "-solver", solver_path, "-weights", weights],
                         work / "train" / f"{tag}.log", gpu=device)
        return training_losses(text, train_iterations)

    inputs = (("patches", patch_source, batch, f"{batch} training patches {LR_PATCH}x{LR_PATCH}"),
              ("image", image_source, 1, f"one {IMAGE_LR}x{IMAGE_LR} image"))
    say("forward pass on the CPU (reference)")
    reference = {name: _step(results, f"forward {name}, CPU", forward, "CAFFE", source, name, size, None)
                 for name, source, size, _ in inputs}
    say(f"training on the CPU (reference): {train_iterations} iterations of {train_batch}")
    reference_losses = _step(results, "training, CPU", train, "CAFFE", None)
    where = "the CPU (the check itself)" if gpu is None else f"GPU {gpu}"
    for engine in engines:
        for name, source, size, label in inputs:
            if reference[name] is None:
                continue
            say(f"forward pass on {where}, {ENGINE_NAMES[engine]} engine, {label}")
            candidate = _step(results, f"forward {name}, {engine}", forward, engine, source, name, size, gpu)
            if candidate is not None:
                comparison = _step(results, f"forward {name}, {engine}", compare_forward, reference[name], candidate)
                if comparison is not None:
                    results.forward.append((engine, label, comparison))
        if reference_losses is not None:
            say(f"training on {where}, {ENGINE_NAMES[engine]} engine")
            losses = _step(results, f"training, {engine}", train, engine, gpu)
            if losses is not None:
                results.training.append((engine, compare_losses(reference_losses, losses),
                                         losses[0], losses[-1]))

    # speed: the net as it trains, at its own batch size
    timed = [(engine, ENGINE_NAMES[engine], {}) for engine in engines]
    if "CUDNN" in engines and not tf32:
        timed.append(("CUDNN", "cuDNN, TF32 allowed (CAFFE_CUDNN_ALLOW_TF32=1)", {"CAFFE_CUDNN_ALLOW_TF32": "1"}))
    for engine, label, env in timed:
        model = work / "time" / f"{engine.lower()}{'_tf32' if env else ''}.prototxt"
        model.parent.mkdir(parents=True, exist_ok=True)
        model.write_text(pt.dump(with_data(with_engine(net, engine), train_source, batch)))
        say(f"caffe time, {label}, batch {batch}")
        text = _step(results, f"caffe time, {label}", run_caffe, caffe,
                     ["time", "-model", model, "-iterations", time_iterations],
                     model.with_suffix(".log"), gpu=gpu, env=env)
        if text is not None:
            timing = _step(results, f"caffe time, {label}", parse_caffe_time, text)
            if timing is not None:
                results.timings.append((label, timing))

    if gpu is not None and len(gpus) > 1:
        say(f"caffe train -gpu all, {multi_gpu_iterations} iterations on {len(gpus)} GPUs")
        model = work / "multi" / "net.prototxt"
        model.parent.mkdir(parents=True, exist_ok=True)
        model.write_text(pt.dump(with_data(net, train_source, batch)))
        solver_path = work / "multi" / "solver.prototxt"
        solver_path.write_text(solver_text(solver_message, model, multi_gpu_iterations, work / "multi" / "run"))
        start = time.monotonic()
        text = _step(results, "caffe train -gpu all", run_caffe, caffe,
                     ["train", "-solver", solver_path, "-weights", weights, "-gpu", "all"], work / "multi" / "train.log")
        if text is not None:
            losses = _step(results, "caffe train -gpu all", training_losses, text, multi_gpu_iterations)
            if losses is not None:
                results.multi_gpu = {"gpus": len(gpus), "iterations": multi_gpu_iterations,
                                     "seconds": time.monotonic() - start, "last_loss": losses[-1]}
    return results


# --- the report -------------------------------------------------------------------------


