"""What the GPU self-check measures and reports: the GPUs and libraries, parity, Caffe's output.

Pure functions on text and arrays (no Caffe run here, so all of it is tested on any machine):
finding the GPUs (``nvidia-smi``, ``/proc``), the CUDA and cuDNN versions Caffe loads, the
tolerance comparisons of forward outputs and training losses, ``caffe time`` and
``caffe device_query`` parsed, and the Markdown report. Running the check is
:mod:`ddsr.training.gpu_check`.
"""

import ctypes
import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddsr.atomic import write_text_atomic
from ddsr.training import log as train_log

__all__ = [
    "FORWARD_TOLERANCE", "LOSS_TOLERANCE", "PAPER_ITERATIONS", "ENGINE_NAMES", "NoGPU", "GPU", "Comparison",
    "CaffeTime", "find_gpus", "parse_nvidia_smi", "parse_ldd", "cuda_version_text", "cudnn_version_text",
    "library_versions", "max_abs_difference", "compare_forward", "compare_losses", "hours_for",
    "parse_caffe_time", "parse_device_query", "report_markdown", "write_report",
]


FORWARD_TOLERANCE = 1e-5   # max abs difference of the net's output, inputs in [0, 1]


LOSS_TOLERANCE = 1e-3      # relative difference of each training loss


PAPER_ITERATIONS = 100_000  # the paper's schedule: 100k iterations of 128 patches


ENGINE_NAMES = {"CUDNN": "cuDNN", "CAFFE": "Caffe's own (im2col + cuBLAS)"}


class NoGPU(RuntimeError):
    """This machine has no NVIDIA GPU (the message says how that was found)."""


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    driver: str
    memory_mib: int


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


_GLOG = train_log._GLOG_PREFIX  # one definition of glog's line prefix


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
