"""A whole evaluation: a method on test sets at several scales, image by image.

The metrics (the expensive part: IFC) may run in worker processes; everything else runs here
in order, so results do not depend on the number of workers.
"""

import platform
import signal
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

import ddsr

from ..atomic import check_replaceable, replacing_directory, write_png_atomic, write_text_atomic
from ..data.registry import ModifiedSetError, list_set_images, modified_sets as registry_differences, sha256_file
from ..matlab import imread
from .deploy_net import EvalSettings, load_net, parse_deploy, resolve_settings, use_gpu
from .metrics import METRIC_NAMES, check_metrics, measure
from .protocol import BicubicUpscaler, ImageError, colour_output, prepare_image, to_uint8
from .report import Row, table3_markdown
from .results import BASELINE_DIR, ENSEMBLE_DIR, RUN_FILE, TABLE_FILE, image_path, write_results
from .upscaler import context_radius, load_upscaler

__all__ = ["EvalResult", "evaluate", "DeployModel", "FolderResult", "evaluate_to_folder", "mean_quality"]


@dataclass
class EvalResult:
    """What :func:`evaluate` found.

    Attributes
    ----------
    records : list of dict
        One per evaluated image and scale, keys :data:`ddsr.evaluation.results.CSV_FIELDS` (metrics not computed are
        absent); ``h, w`` are the modcropped HR size.
    baseline : list of dict
        The same for the bicubic baseline (empty unless requested).
    errors : list of str
        Images that could not be evaluated, one message each.
    timings : dict
        Seconds spent per metric, and in ``"prepare"`` (reading, modcrop, LR).
    not_computable : list of str
        Metrics that could not be computed for an image whose other metrics were (IFC of an
        image below its 72x72 minimum), one message each; the record lacks that metric.
    """

    records: list
    baseline: list
    errors: list
    timings: dict
    not_computable: list = field(default_factory=list)


def _measure_pair(hr_y, sr8, bicubic8, scale, metrics):
    """The metrics of an SR image and, optionally, of its bicubic baseline (a worker's task)."""
    timings, skipped = {}, {}
    values = measure(hr_y, sr8, scale, metrics, timings, not_computable=skipped)
    if not values:  # nothing computable: the image fails as a whole
        raise ValueError("; ".join(f"{m}: {why}" for m, why in skipped.items()))
    base = (measure(hr_y, bicubic8, scale, metrics, timings, not_computable={})
            if bicubic8 is not None else None)
    return values, base, timings, skipped


def _worker_start():
    # Ctrl-C reaches the whole process group: the parent stops the pool, and a worker must not
    # print a traceback of its own. Forked workers would also inherit the parent's handlers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class _Done:
    """A finished computation with the interface of a ``concurrent.futures.Future``."""

    def __init__(self, fn, *args):
        try:
            self._value, self._exc = fn(*args), None
        except ValueError as exc:
            self._value, self._exc = None, exc

    def result(self):
        if self._exc is not None:
            raise self._exc
        return self._value


def evaluate(data_root, sets, scales, upscaler_for_scale, metrics=METRIC_NAMES, baseline=False,
             image_sink=None, progress=None, jobs=1):
    """Evaluate a method on test sets at several scales with the protocol.

    Parameters
    ----------
    data_root : path-like
        Folder holding the set folders.
    sets : sequence of str
    scales : sequence of int
    upscaler_for_scale : callable
        ``scale -> upscaler`` (an object with ``upscale(image) -> (sr float, ms)``), called once
        per scale just before that scale is evaluated, so one net is in memory at a time.
    metrics : sequence of str
    baseline : bool
        Also measure the bicubic baseline on the same prepared images (the LR and bicubic images
        are computed once per image and scale and shared).
    image_sink : callable, optional
        ``(set_name, scale, image, sr_uint8)``, called for each SR image (e.g. to save it).
    progress : tqdm-like, optional
        Its ``update(1)`` is called once per image and scale; ``set_description`` per set.
    jobs : int
        Processes computing the metrics (the most expensive part: IFC). With ``jobs > 1`` the
        images are still read, upscaled and forwarded in this process, in order; only
        :func:`measure` runs in worker processes. Results do not depend on ``jobs``.

    Returns
    -------
    EvalResult
        Records in set, image order within each scale, scales in the given order.

    Raises
    ------
    ValueError
        An unknown or empty set, or a bad scale (before anything is computed).
    NetOutputError
        A net's output has the wrong size.
    """
    scales = [int(s) for s in scales]
    if not scales or min(scales) < 1:
        raise ValueError(f"scales must be positive integers, got {scales}")
    if not sets:
        raise ValueError("no sets given")
    if int(jobs) < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    metrics = check_metrics(metrics)
    files = {name: list_set_images(data_root, name) for name in sets}
    run = _Run(metrics, baseline, image_sink, progress, int(jobs))
    try:
        for scale in scales:
            upscaler = upscaler_for_scale(scale)
            for set_name in sets:
                if progress is not None:
                    progress.set_description(f"{set_name} x{scale}")
                for path in files[set_name]:
                    run.image(set_name, scale, path, upscaler)
            del upscaler
        run.collect(keep=0)
    finally:
        run.close()
    return run.result


class _Run:
    """The state of one :func:`evaluate`: images go in one by one, measurements come back in order."""

    def __init__(self, metrics, baseline, image_sink, progress, jobs):
        self.metrics, self.baseline, self.image_sink, self.progress, self.jobs = \
            metrics, baseline, image_sink, progress, jobs
        self.bicubic = BicubicUpscaler()
        self.result = EvalResult([], [], [], {"prepare": 0.0})
        self.unreadable = {}
        self.pending = []
        self.executor = None
        if jobs > 1:
            from concurrent.futures import ProcessPoolExecutor

            self.executor = ProcessPoolExecutor(max_workers=jobs, initializer=_worker_start)

    def tick(self):
        if self.progress is not None:
            self.progress.update(1)

    def image(self, set_name, scale, path, upscaler):
        """Prepare, upscale and submit the metrics of one image (an unreadable file is reported once)."""
        if path in self.unreadable:
            self.tick()
            return
        start = time.perf_counter()
        try:
            image = prepare_image(imread(path), scale, name=path.stem)
        except OSError as exc:
            self.unreadable[path] = str(exc)
            self.result.errors.append(str(exc))
            self.tick()
            return
        except ImageError as exc:
            self.result.errors.append(f"{path}: {exc}")
            self.tick()
            return
        self.result.timings["prepare"] += time.perf_counter() - start
        base = {"set": set_name, "scale": scale, "image": path.stem,
                "h": image.hr_y.shape[0], "w": image.hr_y.shape[1]}
        sr, ms = upscaler.upscale(image)
        sr8 = to_uint8(sr)
        bic8, bms = None, None
        if self.baseline:
            bsr, bms = self.bicubic.upscale(image)
            bic8 = to_uint8(bsr)
        args = (image.hr_y, sr8, bic8, scale, self.metrics)
        future = self.executor.submit(_measure_pair, *args) if self.executor else _Done(_measure_pair, *args)
        self.pending.append((future, base, ms, bms, f"{path}: x{scale}"))
        if self.image_sink is not None:
            self.image_sink(set_name, scale, image, sr8)
        self.collect(keep=2 * self.jobs)

    def collect(self, keep):
        """Take finished measurements in submission order, leaving at most ``keep`` in flight."""
        result = self.result
        while len(self.pending) > keep:
            future, base, ms, bms, where = self.pending.pop(0)
            try:
                values, bvalues, timings, skipped = future.result()
            except ValueError as exc:  # e.g. too small for IFC's pyramid, or a flat image
                result.errors.append(f"{where}: {exc}")
                self.tick()
                continue
            for k, v in timings.items():
                result.timings[k] = result.timings.get(k, 0.0) + v
            for m, why in skipped.items():
                result.not_computable.append(f"{where}: {m} not computable: {why}")
            result.records.append({**base, **values, "forward_ms": ms})
            if bvalues is not None:
                result.baseline.append({**base, **bvalues, "forward_ms": bms})
            self.tick()

    def close(self):
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)


@dataclass(frozen=True)
class DeployModel:
    """A deploy net to evaluate at one scale: its files and how it is run."""

    deploy: Path
    weights: Path
    settings: EvalSettings
    sidecar: Path = None

    @classmethod
    def from_files(cls, deploy, weights, scale, **overrides):
        """Settings from the net's sidecar with ``overrides`` on top (:func:`resolve_settings`)."""
        settings, sidecar = resolve_settings(deploy, scale, **overrides)
        return cls(Path(deploy), Path(weights), settings, sidecar)

    def describe(self, scale):
        """This model's entry of ``run.json``."""
        s = self.settings
        overlap = s.tile_overlap
        if s.tile and overlap is None:
            overlap = context_radius(parse_deploy(self.deploy))
        return {"deploy": str(self.deploy), "weights": str(self.weights), "weights_sha256": sha256_file(self.weights),
                "sidecar": str(self.sidecar) if self.sidecar else None, "input": s.input,
                "pad_input": s.pad_input, "output_offset": list(s.output_offset), "tile": s.tile,
                "tile_overlap": overlap}


@dataclass
class FolderResult:
    """What :func:`evaluate_to_folder` did: the run itself, the Table 3 Markdown, the folder."""

    result: EvalResult
    table: str
    out: Path
    seconds: float
    modified_sets: dict = field(default_factory=dict)


def evaluate_to_folder(out, *, data_root, sets, scales, label, paper_row=None, models=None,
                       metrics=METRIC_NAMES, gpu=None, baseline=True, save_images=True, jobs=1,
                       precision="paper", progress=True, command=None, allow_modified_sets=False,
                       self_ensemble=False):
    """Evaluate bicubic or deploy nets and write the evaluation folder (``tools/eval.py``'s work).

    Parameters
    ----------
    out : path-like
        The folder (:mod:`ddsr.evaluation.results` says what goes in it).
    data_root, sets, scales, metrics, jobs
        As :func:`evaluate`.
    label : str
        The method's row label.
    paper_row : str or None
        The published Table 3 row to compare with.
    models : dict of int to DeployModel, optional
        One net per scale; None evaluates bicubic.
    gpu : int, optional
    baseline : bool
        With models: also the bicubic baseline of the same images, in ``out/bicubic``.
    save_images : bool
        Write the colour SR images.
    precision : str
        Decimals of ``table3.md`` (:data:`ddsr.evaluation.report.PRECISION`).
    progress : bool
        A progress bar over the images.
    command : list of str, optional
        The command that asked for this, recorded in ``run.json``.
    allow_modified_sets : bool
        Evaluate a registry test set whose files differ from the registry (missing, changed or
        extra images): its means are marked ``modified_set`` and not compared with the paper.
    self_ensemble : bool
        With models: also the x8 self-ensemble (:class:`ddsr.inference.ensemble.SelfEnsembleUpscaler`)
        in ``out/x8``, a row ``<label> (x8)`` of its own (no published row: the paper's are single-pass).

    Returns
    -------
    FolderResult

    Raises
    ------
    ModifiedSetError
        A registry set differs from the registry and ``allow_modified_sets`` is false.
    FileExistsError, NotADirectoryError, PermissionError
        ``out`` cannot become an evaluation folder (:func:`ddsr.atomic.check_replaceable`).
    ModelError, NetOutputError
        A net or its weights do not fit (checked for every scale before the first image).

    Notes
    -----
    All of these before the first image. The folder is written aside and replaces ``out`` only
    when complete, so an error or an interrupt leaves the previous one whole.
    """
    from tqdm import tqdm

    started = time.time()
    out = Path(out)
    modified = registry_differences(data_root, sets)
    if modified and not allow_modified_sets:
        name, problems = next(iter(modified.items()))
        raise ModifiedSetError(
            f"{name} in {data_root} is not the registry's {name}: {'; '.join(problems)} (fetch it again with "
            f"tools/fetch_datasets.py {name}, or give --allow-modified-sets to evaluate it as a modified set)")
    check_replaceable(out, RUN_FILE, "an evaluation folder")
    if models:
        if gpu is not None:
            use_gpu(gpu)
        for m in models.values():  # every scale's net and weights, before the first image
            load_net(m.deploy, m.weights)

    def upscaler_for_scale(scale):
        if not models:
            return BicubicUpscaler()
        m = models[scale]
        return load_upscaler(m.deploy, m.weights, scale, label=label, **vars_of(m.settings))

    images = {s: len(list_set_images(data_root, s)) for s in sets}
    self_ensemble = bool(models) and self_ensemble
    with replacing_directory(out, sync=False) as folder:
        def save_image(set_name, scale, image, sr8):
            write_png_atomic(image_path(folder, set_name, scale, image.name), colour_output(image, sr8))

        ensemble = None
        with tqdm(total=sum(images.values()) * len(scales) * (2 if self_ensemble else 1), unit="img",
                  disable=not progress, file=sys.stderr) as bar:
            result = evaluate(data_root, sets, scales, upscaler_for_scale, metrics=metrics,
                              baseline=bool(models) and baseline, image_sink=save_image if save_images else None,
                              progress=bar, jobs=jobs)
            if self_ensemble:
                ensemble = _evaluate_self_ensemble(folder, data_root, sets, scales, upscaler_for_scale, metrics,
                                                   save_images, bar, jobs)
        elapsed = time.time() - started
        common = {"scales": list(scales), "sets": list(sets), "data_root": str(data_root), "metrics": list(metrics),
                  "images": images, "modified_sets": modified}
        meta = {
            "name": label, "paper_row": paper_row, "method": "caffe" if models else "bicubic", **common,
            "models": {f"x{s}": m.describe(s) for s, m in (models or {}).items()},
            "device": f"gpu {gpu}" if gpu is not None else "cpu",
            "timings_s": {k: round(v, 3) for k, v in result.timings.items()} | {"total": round(elapsed, 3)},
            "errors": result.errors,
            "not_computable": result.not_computable,
            "command": list(command or []),
            "versions": {"ddsr": ddsr.__version__, "python": platform.python_version(), "numpy": np.__version__},
        }
        counts = dict(images=images, scales=scales, modified_sets=modified)
        summary = write_results(folder, result.records, meta, metrics, **counts)
        rows = [Row(label, summary, paper_row, str(out))]
        if result.baseline:
            base_summary = write_results(folder / BASELINE_DIR, result.baseline,
                                         {"name": "Bicubic", "paper_row": "Bicubic", "method": "bicubic", **common,
                                          "baseline_of": label}, metrics, **counts)
            rows.append(Row("Bicubic", base_summary, "Bicubic", str(out / BASELINE_DIR)))
        if ensemble is not None:
            x8_label = f"{label} (x8)"
            x8_summary = write_results(folder / ENSEMBLE_DIR, ensemble.records,
                                       dict(meta, name=x8_label, paper_row=None, self_ensemble=8,
                                            single_pass_of=label, errors=ensemble.errors), metrics, **counts)
            rows.insert(1, Row(x8_label, x8_summary, None, str(out / ENSEMBLE_DIR)))
            result.errors.extend(f"(x8) {e}" for e in ensemble.errors)
        table = table3_markdown(rows, precision=precision, title=f"## Table 3: {label}", sets=sets, scales=scales)
        write_text_atomic(folder / TABLE_FILE, table)
    return FolderResult(result, table, out, elapsed, modified)


def _evaluate_self_ensemble(folder, data_root, sets, scales, upscaler_for_scale, metrics, save_images, bar, jobs):
    """The x8 self-ensemble of the same nets on the same images, its SR images in ``folder/x8``."""
    from ..inference.ensemble import SelfEnsembleUpscaler

    def save_x8(set_name, scale, image, sr8):
        write_png_atomic(image_path(folder / ENSEMBLE_DIR, set_name, scale, image.name), colour_output(image, sr8))

    return evaluate(data_root, sets, scales, lambda s: SelfEnsembleUpscaler(upscaler_for_scale(s)),
                    metrics=metrics, image_sink=save_x8 if save_images else None, progress=bar, jobs=jobs)


def vars_of(settings):
    """The fields of :class:`EvalSettings` as keyword arguments."""
    return {f.name: getattr(settings, f.name) for f in fields(settings)}


def mean_quality(images, upscaler, scale, metrics=("psnr", "ssim")):
    """Mean metrics of one method over already prepared images, and each image's SR Y (uint8).

    For evaluating many snapshots on the same images (training curves): the images are read and
    prepared once, by the caller.
    """
    totals = {m: 0.0 for m in metrics}
    outputs = []
    for image in images:
        sr = to_uint8(upscaler.upscale(image)[0])
        outputs.append(sr)
        for name, value in measure(image.hr_y, sr, scale, metrics=metrics).items():
            totals[name] += value
    return {m: totals[m] / len(images) for m in metrics}, outputs
