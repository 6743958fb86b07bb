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

import ctypes
import math
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ddsr import caffe_runner
from ddsr.atomic import write_text_atomic
from ddsr.training import prototxt_text as pt

__all__ = [
    "FORWARD_TOLERANCE", "LOSS_TOLERANCE", "TRAIN_ITERATIONS", "PAPER_ITERATIONS",
    "NoGPU", "GPU", "Comparison", "CaffeTime", "find_gpus", "parse_nvidia_smi",
    "max_abs_difference", "compare_forward", "compare_losses", "hours_for",
    "parse_caffe_time", "parse_device_query", "parse_ldd", "cuda_version_text",
    "cudnn_version_text", "with_engine", "with_data", "with_output", "solver_text",
    "CheckResults", "run_check", "report_markdown", "write_report",
]

FORWARD_TOLERANCE = 1e-5   # max abs difference of the net's output, inputs in [0, 1]
LOSS_TOLERANCE = 1e-3      # relative difference of each training loss
TRAIN_ITERATIONS = 100
PAPER_ITERATIONS = 100_000  # the paper's schedule: 100k iterations of 128 patches
ENGINES = ("CUDNN", "CAFFE")
ENGINE_NAMES = {"CUDNN": "cuDNN", "CAFFE": "Caffe's own (im2col + cuBLAS)"}
LR_PATCH = 7  # the paper's 7x7 LR training patches
IMAGE_LR = 64  # the image-sized forward input: 64x64 LR, e.g. x3 -> 192x192


class NoGPU(RuntimeError):
    """This machine has no NVIDIA GPU (the message says how that was found)."""


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    driver: str
    memory_mib: int


# --- the GPUs, the libraries ------------------------------------------------------------


def parse_nvidia_smi(text):
    """GPUs from ``nvidia-smi --query-gpu=index,name,driver_version,memory.total
    --format=csv,noheader,nounits`` output (one ``0, NVIDIA H200, 580.159.03, 143771`` a line)."""
    gpus = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 4 or not fields[0].isdigit():
            continue
        memory = int(fields[3]) if fields[3].isdigit() else 0
        gpus.append(GPU(int(fields[0]), fields[1], fields[2], memory))
    return gpus


def find_gpus(nvidia_smi="nvidia-smi", proc=Path("/proc/driver/nvidia/gpus")):
    """The NVIDIA GPUs of this machine, from ``nvidia-smi`` (or the driver's /proc entries).

    Raises
    ------
    NoGPU
        If there is none; the message says what was looked at.
    """
    tool = shutil.which(nvidia_smi)
    if tool is not None:
        try:
            done = subprocess.run(
                [tool, "--query-gpu=index,name,driver_version,memory.total",
                 "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NoGPU(f"nvidia-smi failed: {exc}") from None
        gpus = parse_nvidia_smi(done.stdout)
        if gpus:
            return gpus
        said = (done.stderr or done.stdout).strip().splitlines()
        raise NoGPU(f"nvidia-smi lists none ({said[0] if said else f'exit {done.returncode}'})")
    entries = sorted(proc.glob("*/information")) if proc.is_dir() else []
    if entries:
        gpus = []
        for index, entry in enumerate(entries):
            model = re.search(r"^Model:\s*(.+)$", entry.read_text(errors="replace"), re.M)
            gpus.append(GPU(index, model.group(1).strip() if model else "NVIDIA GPU", "", 0))
        return gpus
    raise NoGPU(f"no nvidia-smi on PATH, no {proc}")


def parse_ldd(text):
    """``{soname: path}`` from ``ldd`` output (``libcudnn.so.9 => /x/libcudnn.so.9 (0x...)``);
    a library that is not found maps to None."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"\s*(\S+)\s+=>\s+(not found|\S+)", line)
        if match:
            found[match.group(1)] = None if match.group(2) == "not found" else match.group(2)
    return found


def cuda_version_text(number):
    """CUDA's version number as text: 13000 -> '13.0', 12090 -> '12.9'."""
    return f"{number // 1000}.{(number % 1000) // 10}"


def cudnn_version_text(number):
    """cuDNN's version number as text: 91300 -> '9.13.0' (cuDNN 9: major * 10000 + minor * 100
    + patch), 8907 -> '8.9.7' (cuDNN 8 and older: major * 1000 + ...)."""
    if number >= 10000:
        return f"{number // 10000}.{(number % 10000) // 100}.{number % 100}"
    return f"{number // 1000}.{(number % 1000) // 100}.{number % 100}"


def library_versions(caffe, env=None):
    """The CUDA runtime and cuDNN that ``caffe`` loads, their versions asked from the libraries.

    Returns ``{"cudart": (path, '13.0'), "cudnn": (path, '9.13.0')}``, a missing library as
    ``(None, None)``; neither call needs a GPU.
    """
    done = subprocess.run(["ldd", str(caffe)], capture_output=True, text=True, env=env)
    libraries = parse_ldd(done.stdout)

    def path_of(prefix):
        return next((p for name, p in libraries.items() if name.startswith(prefix) and p), None)

    versions = {}
    for key, prefix, call, fmt in (("cudart", "libcudart.so", "cudaRuntimeGetVersion", cuda_version_text),
                                   ("cudnn", "libcudnn.so", "cudnnGetVersion", cudnn_version_text)):
        path = path_of(prefix)
        version = None
        if path is not None:
            try:
                library = ctypes.CDLL(path)
                if key == "cudart":
                    number = ctypes.c_int(0)
                    if library.cudaRuntimeGetVersion(ctypes.byref(number)) == 0:
                        version = fmt(number.value)
                else:
                    library.cudnnGetVersion.restype = ctypes.c_size_t
                    version = fmt(int(library.cudnnGetVersion()))
            except OSError:
                version = None
        versions[key] = (path, version)
    return versions


# --- comparisons ------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One parity figure against its tolerance."""

    value: float
    tolerance: float
    worst_index: int = None  # the iteration (training) or element (forward) where it is largest

    @property
    def passed(self):
        return bool(np.isfinite(self.value)) and self.value <= self.tolerance


def max_abs_difference(reference, candidate):
    """max |candidate - reference| over all elements (inf if either has a non-finite value)."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: {reference.shape} and {candidate.shape}")
    if reference.size == 0:
        raise ValueError("nothing to compare: empty outputs")
    difference = np.abs(candidate - reference)
    if not np.all(np.isfinite(difference)):
        return math.inf, int(np.argmax(~np.isfinite(difference)))
    worst = int(np.argmax(difference))
    return float(difference.flat[worst]), worst


def compare_forward(reference, candidate, tolerance=FORWARD_TOLERANCE):
    """The forward-parity figure: max abs difference of two outputs, against ``tolerance``."""
    value, worst = max_abs_difference(reference, candidate)
    return Comparison(value, tolerance, worst)


def compare_losses(reference, candidate, tolerance=LOSS_TOLERANCE):
    """The training-parity figure: max over iterations of |candidate - reference| / |reference|.

    Parameters
    ----------
    reference, candidate : sequence of float
        The losses of the same iterations (the CPU's, the GPU's). A loss of 0 in the
        reference is compared absolutely (relative to 1).
    """
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape or reference.ndim != 1:
        raise ValueError(f"loss sequences differ in length: {reference.shape} and {candidate.shape}")
    if reference.size == 0:
        raise ValueError("nothing to compare: no losses")
    relative = np.abs(candidate - reference) / np.maximum(np.abs(reference), np.finfo(np.float64).tiny)
    relative = np.where(reference == 0, np.abs(candidate), relative)
    if not np.all(np.isfinite(relative)):
        return Comparison(math.inf, tolerance, int(np.argmax(~np.isfinite(relative))))
    worst = int(np.argmax(relative))
    return Comparison(float(relative[worst]), tolerance, worst)


def hours_for(ms_per_iteration, iterations=PAPER_ITERATIONS):
    """Hours that ``iterations`` iterations take at ``ms_per_iteration``."""
    return ms_per_iteration * iterations / 3.6e6


# --- what the caffe tool prints -----------------------------------------------------------

_GLOG = caffe_runner._GLOG_PREFIX  # one definition of glog's line prefix


@dataclass(frozen=True)
class CaffeTime:
    """``caffe time``'s averages, in milliseconds per iteration."""

    forward_ms: float
    backward_ms: float
    forward_backward_ms: float


def parse_caffe_time(text):
    """The averages of ``caffe time`` output (``Average Forward pass: 12.3 ms.`` and so on).

    Raises
    ------
    ValueError
        If the output has not all three (``caffe time`` did not finish).
    """
    found = {}
    for key, label in (("forward_ms", "Forward pass"), ("backward_ms", "Backward pass"),
                       ("forward_backward_ms", "Forward-Backward")):
        match = re.search(_GLOG + r"Average " + re.escape(label) + r": ([0-9.eE+-]+) ms\.", text, re.M)
        if match is None:
            raise ValueError(f"no 'Average {label}' in the caffe time output")
        found[key] = float(match.group(1))
    return CaffeTime(**found)


def parse_device_query(text):
    """``caffe device_query``'s ``Name: value`` lines, in order, as a dict."""
    found = {}
    for line in text.splitlines():
        match = re.match(_GLOG + r"(\w[\w ]*?):\s+(.*\S)\s*$", line)
        if match and match.group(1) not in ("Querying GPUs",):
            found[match.group(1)] = match.group(2)
    return found


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
    log = caffe_runner.TrainingLog()
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


def _verdict(comparison):
    return "PASS" if comparison.passed else "FAIL"


def report_markdown(results, title="GPU self-check of the CUDA build of Caffe"):
    """The Markdown report of :class:`CheckResults`."""
    s = results.settings
    lines = [f"# {title}", ""]
    lines.append(f"Overall: **{'PASS' if results.passed else 'FAIL'}**"
                 + ("" if s.get("gpu") is not None else " (CPU against CPU: checks the check, not a GPU)"))
    lines += ["", "## Machine", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in results.machine.items()]
    if results.device_query:
        lines += ["", "`caffe device_query`:", "", "```"]
        lines += [f"{k}: {v}" for k, v in results.device_query.items()]
        lines += ["```"]
    lines += ["", f"Net `{s.get('net')}` (x{s.get('scale')}), solver `{s.get('solver')}`; "
              f"synthetic patches in [0, 1].", ""]
    lines += ["## Forward parity (CPU against GPU, same weights and inputs)", "",
              f"Tolerance: max abs difference <= {FORWARD_TOLERANCE:g}.", "",
              "| engine | input | max abs difference | |", "| --- | --- | --- | --- |"]
    lines += [f"| {ENGINE_NAMES.get(e, e)} | {label} | {c.value:.3g} | {_verdict(c)} |"
              for e, label, c in results.forward]
    lines += ["", f"## Training parity ({s.get('train_iterations')} iterations of {s.get('train_batch')} patches, "
              "same initial weights and data)", "",
              f"Tolerance: every loss within {LOSS_TOLERANCE:g} of the CPU's, relative.", "",
              "| engine | max relative difference | at iteration | first loss | last loss | |",
              "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {ENGINE_NAMES.get(e, e)} | {c.value:.3g} | {c.worst_index} | {first:.6g} | {last:.6g} | {_verdict(c)} |"
              for e, c, first, last in results.training]
    lines += ["", f"## Speed (`caffe time`, train net, batch {s.get('batch')}, "
              f"{s.get('time_iterations')} iterations)", "",
              "| engine | forward ms | backward ms | forward-backward ms | 100k iterations |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| {label} | {t.forward_ms:.2f} | {t.backward_ms:.2f} | {t.forward_backward_ms:.2f} | "
              f"{hours_for(t.forward_backward_ms):.2f} h |" for label, t in results.timings]
    lines += ["", "The 100k-iteration time is forward-backward time x 100,000: the solver's update "
              "and the data layer's reads come on top."]
    if results.multi_gpu:
        m = results.multi_gpu
        lines += ["", "## Several GPUs", "",
                  f"`caffe train -gpu all`: {m['iterations']} iterations on {m['gpus']} GPUs in "
                  f"{m['seconds']:.1f} s (start-up included), last loss {m['last_loss']:.6g}."]
    if results.notes or results.failures:
        lines += ["", "## Notes", ""]
        lines += [f"- {n}" for n in results.notes]
        lines += [f"- FAILED: {f}" for f in results.failures]
    return "\n".join(lines) + "\n"


def write_report(path, results, **kwargs):
    """Write :func:`report_markdown` to ``path`` atomically; return the path."""
    write_text_atomic(path, report_markdown(results, **kwargs))
    return Path(path)
