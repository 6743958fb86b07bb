"""The evaluation folder: what ``tools/eval.py --out DIR`` writes and every consumer reads.

A folder holds:

- ``summary.json`` -- ``{"Set5": {"x3": {"psnr": ..., "ssim": ..., "ifc": ...}}}``, the mean
  of each metric over a set's images (nothing else at the top level). A cell whose mean covers
  only some of the set's images also holds ``"partial": {metric: [n, N]}``; one of a registry
  set that differs from the registry (``--allow-modified-sets``) holds ``"modified_set": true``.
  Tables show such a mean as ``30.85 (4 of 5)`` or ``30.85 †``, without a difference to the paper;
- ``per_image.csv`` -- one row per image and scale (:data:`CSV_FIELDS`);
- ``run.json`` -- how it was made (label, the published row it compares with, models,
  settings, timings, errors, ``forward_ms_mean``);
- ``table3.md`` -- the Table 3 Markdown (the bicubic row beside the method's);
- ``bicubic/`` -- for a model run, the bicubic baseline of the same images, as a folder of its own;
- ``x8/`` -- with ``--self-ensemble``, the x8 self-ensemble of the same net, as a folder of its own;
- ``images/<Set>/x<s>/<image>.png`` -- the colour SR images.

:func:`write_results` writes the first three, :func:`read_eval_folder` reads a folder back;
nothing else in the project opens these files by name.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_json_atomic
from ..csvfiles import read_csv, write_csv_atomic
from .metrics import METRIC_NAMES

__all__ = ["CSV_FIELDS", "SUMMARY_FILE", "PER_IMAGE_FILE", "RUN_FILE", "TABLE_FILE", "BASELINE_DIR", "ENSEMBLE_DIR",
           "summarize", "mean_forward_ms", "image_path", "write_results", "EvalFolder", "read_eval_folder"]

CSV_FIELDS = ("set", "scale", "image", "psnr", "ssim", "ifc", "forward_ms", "h", "w")
SUMMARY_FILE = "summary.json"
PER_IMAGE_FILE = "per_image.csv"
RUN_FILE = "run.json"
TABLE_FILE = "table3.md"
BASELINE_DIR = "bicubic"
ENSEMBLE_DIR = "x8"
IMAGES_DIR = "images"


def summarize(records, metrics=METRIC_NAMES, images=None, scales=None, modified_sets=()):
    """Mean of each metric per set and scale, in ``summary.json``'s form.

    Parameters
    ----------
    records : iterable of dict
        Per-image records with ``set``, ``scale`` and metric keys.
    metrics : sequence of str
        Metrics to average; one absent from the records is left out.
    images : dict, optional
        ``{set: number of images}`` that were to be measured. With it, every set and scale
        has a cell (even when no image could be measured), and a metric measured on fewer
        images is marked ``"partial": {metric: [n, N]}``.
    scales : sequence of int, optional
        The scales evaluated (with ``images``; default: those of the records).
    modified_sets : collection of str
        Sets that differ from the registry: their cells get ``"modified_set": true``.

    Returns
    -------
    dict
        ``{set: {"x<scale>": {metric: mean, ...}}}``, sets and scales in first-seen order.
    """
    records = list(records)
    groups = {}
    if images is not None:
        seen_scales = list(dict.fromkeys(int(r["scale"]) for r in records))
        for set_name in images:
            for s in (scales if scales is not None else seen_scales):
                groups.setdefault(set_name, {}).setdefault(f"x{int(s)}", [])
    for rec in records:
        groups.setdefault(rec["set"], {}).setdefault(f"x{int(rec['scale'])}", []).append(rec)
    out = {}
    for set_name, by_scale in groups.items():
        out[set_name] = {}
        for key, recs in by_scale.items():
            cell, partial = {}, {}
            expected = None if images is None else images.get(set_name)
            for m in metrics:
                values = [r[m] for r in recs if r.get(m) is not None]
                if values:
                    cell[m] = float(np.mean(values))
                if expected is not None and len(values) < expected:
                    partial[m] = [len(values), int(expected)]
            if partial:
                cell["partial"] = partial
            if set_name in modified_sets:
                cell["modified_set"] = True
            out[set_name][key] = cell
    return out


def mean_forward_ms(records):
    """Mean forward time per set and scale, ``{set: {"x<s>": ms}}`` (for ``run.json``)."""
    groups = {}
    for rec in records:
        groups.setdefault(rec["set"], {}).setdefault(f"x{int(rec['scale'])}", []).append(rec["forward_ms"])
    return {s: {k: float(np.mean(v)) for k, v in d.items()} for s, d in groups.items()}


def image_path(folder, set_name, scale, image_name):
    """Where the colour SR image of one test image goes: ``images/<Set>/x<s>/<image>.png``."""
    return Path(folder) / IMAGES_DIR / set_name / f"x{int(scale)}" / f"{image_name}.png"


def write_results(folder, records, meta, metrics=METRIC_NAMES, images=None, scales=None, modified_sets=()):
    """Write ``per_image.csv``, ``summary.json`` and ``run.json`` of one method, each atomically.

    ``meta`` is written as ``run.json`` with ``forward_ms_mean`` added; returns the summary
    (:func:`summarize`, with ``images``, ``scales`` and ``modified_sets``).
    """
    folder = Path(folder)
    summary = summarize(records, metrics, images=images, scales=scales, modified_sets=modified_sets)
    write_csv_atomic(folder / PER_IMAGE_FILE, records, CSV_FIELDS)
    write_json_atomic(folder / SUMMARY_FILE, summary)
    write_json_atomic(folder / RUN_FILE, {**meta, "forward_ms_mean": mean_forward_ms(records)})
    return summary


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from exc


def _check_summary(summary, path):
    if not isinstance(summary, dict) or not all(isinstance(v, dict) for v in summary.values()):
        raise ValueError(f"{path}: not a summary ({{set: {{'x<s>': {{metric: value}}}}}})")
    return summary


@dataclass
class EvalFolder:
    """One evaluation folder, read back.

    Attributes
    ----------
    path : Path
    summary : dict
        ``summary.json``.
    meta : dict
        ``run.json`` (empty if the folder has none).
    baseline : EvalFolder or None
        The ``bicubic/`` folder of a model run.
    """

    path: Path
    summary: dict
    meta: dict
    baseline: "EvalFolder" = None

    @property
    def name(self):
        return self.meta.get("name") or self.path.name

    def cell(self, set_name, scale):
        """``{metric: mean}`` of one set at one scale (empty if it was not evaluated)."""
        return dict(self.summary.get(set_name, {}).get(f"x{int(scale)}", {}))

    def per_image(self):
        """The ``per_image.csv`` records (numbers as numbers)."""
        return read_csv(self.path / PER_IMAGE_FILE)

    def image_values(self, metric="psnr", set_name=None, scale=None):
        """``{image: value}`` of one metric, optionally for one set and scale."""
        return {r["image"]: r[metric] for r in self.per_image()
                if r.get(metric) is not None and (set_name is None or r["set"] == set_name)
                and (scale is None or r["scale"] == int(scale))}

    def forward_seconds(self, set_name, scale):
        """The mean forward time in seconds of one set at one scale, or None."""
        ms = self.meta.get("forward_ms_mean", {}).get(set_name, {}).get(f"x{int(scale)}")
        return None if ms is None else ms / 1000.0


def read_eval_folder(folder):
    """Read an evaluation folder (and its ``bicubic/`` baseline, if any).

    Raises
    ------
    ValueError
        No or unreadable ``summary.json``, or one that is not a summary.
    """
    folder = Path(folder)
    path = folder / SUMMARY_FILE
    if not path.is_file():
        raise ValueError(f"{folder}: no {SUMMARY_FILE} (not a tools/eval.py output folder)")
    summary = _check_summary(_read_json(path), path)
    meta = _read_json(folder / RUN_FILE) if (folder / RUN_FILE).is_file() else {}
    baseline = None
    if (folder / BASELINE_DIR / SUMMARY_FILE).is_file():
        baseline = read_eval_folder(folder / BASELINE_DIR)
    return EvalFolder(folder, summary, meta, baseline)
