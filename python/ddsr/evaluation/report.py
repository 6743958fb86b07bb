"""The paper's tables from evaluation results, in Markdown.

:func:`table3_markdown` lays out any number of rows in the paper's Table 3 layout (columns
x2, x3, x4, each Set5, Set14, BSD200; rows PSNR, SSIM, IFC per method) and, under each computed
metric row, the published value and the difference ``computed - paper``.
:func:`ablation_markdown` lays out Table 1 or Table 2 beside the published values. The rows
come from evaluation folders (:mod:`ddsr.evaluation.results`) through :func:`load_run`.
"""

import json
import math
from dataclasses import dataclass

from . import published as pub
from .results import read_eval_folder

__all__ = [
    "PRECISION",
    "Row",
    "table3_markdown",
    "ablation_markdown",
    "load_run",
    "combine_rows",
]

METRIC_LABELS = {"psnr": "PSNR", "ssim": "SSIM", "ifc": "IFC"}
# Decimals printed: "paper" is the paper's Table 3 (SSIM gets 4, as its Table 2, since
# 2 decimals hide every difference that matters); "full" is for parity checks.
PRECISION = {
    "paper": {"psnr": 2, "ssim": 4, "ifc": 2},
    "full": {"psnr": 4, "ssim": 5, "ifc": 3},
}


# ---------------------------------------------------------------------------------------------
# Table 3
# ---------------------------------------------------------------------------------------------

@dataclass
class Row:
    """One method of Table 3.

    Attributes
    ----------
    label : str
        Shown in the Method column.
    summary : dict or None
        Computed values (``summary.json`` form); None for a published-only row.
    paper_row : str or None
        The published Table 3 row to compare with (a key of :data:`ddsr.evaluation.published.TABLE3`).
    source : str
        Where the values came from (a run folder), for messages.
    """

    label: str
    summary: dict = None
    paper_row: str = None
    source: str = ""


def _cell(summary, set_name, scale, metric):
    if not summary:
        return None
    value = summary.get(set_name, {}).get(f"x{scale}", {}).get(metric)
    return None if value is None else float(value)


def _columns(rows, sets=None, scales=None):
    """Columns in the paper's order: scale-major, then Set5, Set14, BSD200, then other sets."""
    seen_sets, seen_scales = [], []
    for row in rows:
        for set_name, by_scale in (row.summary or {}).items():
            if set_name not in seen_sets:
                seen_sets.append(set_name)
            for key in by_scale:
                s = int(key.lstrip("x"))
                if s not in seen_scales:
                    seen_scales.append(s)
    if sets is None:
        sets = [s for s in pub.TABLE3_SETS if s in seen_sets] + [s for s in seen_sets if s not in pub.TABLE3_SETS]
        if not sets:
            sets = list(pub.TABLE3_SETS)
    if scales is None:
        scales = sorted(seen_scales) or list(pub.TABLE3_SCALES)
    return [(sc, st) for sc in scales for st in sets]


def _metrics_present(rows):
    """The metrics any of the rows holds, in Table 3's order (all three when none)."""
    present = []
    for m in pub.METRICS:
        for row in rows:
            if row.summary is None:
                continue
            if any(m in cell for by_scale in row.summary.values() for cell in by_scale.values()):
                present.append(m)
                break
    return present or list(pub.METRICS)


def _fmt(value, digits, sign=False):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    # "-0.00" reads as a difference; write it as "+0.00" when it rounds to zero.
    if sign and float(text) == 0:
        text = f"+{0:.{digits}f}"
    return text


def table3_markdown(rows, precision="paper", published=True, published_only=(), sets=None, scales=None,
                    metrics=None, title=None):
    """The paper's Table 3 as Markdown, for computed rows and (optionally) published rows.

    Parameters
    ----------
    rows : sequence of Row
        Computed rows, shown in the paper's method order (Bicubic, A+, SRF, SRCNN, FSRCNN,
        DDSR), rows matching no published method after them in the given order.
    precision : {"paper", "full"} or dict
        Decimals per metric (:data:`PRECISION`).
    published : bool
        Under each computed metric row of a method with published values, add a ``paper`` row
        (the published value; ``*`` marks a known misprint) and a ``Δ`` row (computed - paper).
    published_only : sequence of str
        Published methods to show as rows of their own (e.g. ``("A+", "SRF")``, which this
        project does not compute).
    sets, scales, metrics : sequence, optional
        Restrict or order the columns / metric rows; default: what the rows hold.
    title : str, optional
        A heading line above the table.

    Returns
    -------
    str
    """
    digits = PRECISION[precision] if isinstance(precision, str) else dict(precision)
    rows = list(rows)
    for name in published_only:
        pub.published_row(name)  # validates the name
        if not any(r.paper_row == name and r.summary is not None for r in rows):
            rows.append(Row(label=f"{name} (paper)", summary=None, paper_row=name, source="paper"))
    order = {m: i for i, m in enumerate(pub.TABLE3_METHODS)}
    indexed = sorted(enumerate(rows), key=lambda ir: (order.get(ir[1].paper_row, len(order)), ir[0]))
    rows = [r for _, r in indexed]
    computed = [r for r in rows if r.summary is not None]
    columns = _columns(computed, sets, scales)
    metrics = list(metrics) if metrics else _metrics_present(computed)

    header = "| Method | Metric | " + " | ".join(f"{st} x{sc}" for sc, st in columns) + " |"
    rule = "|---|---|" + "---:|" * len(columns)
    lines = []
    if title:
        lines += [title, ""]
    lines += [header, rule]
    typo_marked = False
    for row in rows:
        first = True
        paper = pub.TABLE3.get(row.paper_row) if row.paper_row else None
        # a computed row shows the metrics it holds (a PSNR-only run gets no empty SSIM/IFC lines)
        row_metrics = metrics if row.summary is None else ([m for m in metrics if m in _metrics_present([row])]
                                                           or metrics)
        for m in row_metrics:
            label = row.label if first else ""
            first = False
            if row.summary is None:
                values = [_fmt(_cell(paper, st, sc, m), 2) for sc, st in columns]
                lines.append(f"| {label} | {METRIC_LABELS[m]} | " + " | ".join(values) + " |")
                continue
            values = [_fmt(_cell(row.summary, st, sc, m), digits[m]) for sc, st in columns]
            lines.append(f"| {label} | {METRIC_LABELS[m]} | " + " | ".join(values) + " |")
            if not (published and paper):
                continue
            paper_cells, deltas = [], []
            for sc, st in columns:
                p = _cell(paper, st, sc, m)
                c = _cell(row.summary, st, sc, m)
                mark = ""
                if p is not None and (row.paper_row, st, f"x{sc}", m) in pub.KNOWN_TYPOS:
                    mark, typo_marked = "*", True
                paper_cells.append(_fmt(p, 2) + mark)
                deltas.append(_fmt(None if p is None or c is None else c - p, digits[m], sign=True))
            if any(v != "–" for v in paper_cells):
                lines.append(f"|  | {METRIC_LABELS[m]} paper | " + " | ".join(paper_cells) + " |")
                lines.append(f"|  | {METRIC_LABELS[m]} Δ | " + " | ".join(deltas) + " |")
    notes = ["", "Mean over each set's images, Y channel, border of `scale` pixels shaved "
             "(SRCNN/FSRCNN MATLAB protocol)."]
    if published and any(r.paper_row for r in rows):
        notes.append("`paper`: the DDSR paper's Table 3; `Δ`: computed − paper.")
    if typo_marked:
        for (method, st, sc, m), why in pub.KNOWN_TYPOS.items():
            notes.append(f"`*` {method} {st} {sc} {METRIC_LABELS[m]}: likely a misprint in the paper ({why}).")
    return "\n".join(lines + notes) + "\n"


# ---------------------------------------------------------------------------------------------
# Run folders
# ---------------------------------------------------------------------------------------------

def load_run(folder, label=None):
    """The Table 3 rows of one ``tools/eval.py`` output folder.

    Parameters
    ----------
    folder : path-like
        Holds ``summary.json`` (and usually ``run.json``, ``bicubic/``).
    label : str, optional
        Overrides the run's label.

    Returns
    -------
    list of Row
        The run's method row, then its bicubic baseline row if it has one.

    Raises
    ------
    ValueError
        No or unreadable ``summary.json``.
    """
    run = read_eval_folder(folder)
    name = label or run.name
    paper_row = run.meta.get("paper_row", pub.match_method(name)) if label is None else pub.match_method(label)
    rows = [Row(label=name, summary=run.summary, paper_row=paper_row, source=str(run.path))]
    if run.baseline is not None:
        rows.append(Row(label="Bicubic", summary=run.baseline.summary, paper_row="Bicubic",
                        source=str(run.baseline.path)))
    return rows


def combine_rows(rows, tolerance=1e-6):
    """Merge rows with the same label (e.g. the bicubic baseline of several runs).

    Cells are united; a cell present in two rows must agree within ``tolerance`` (the
    bicubic baseline is deterministic, so a disagreement means different data or code).

    Raises
    ------
    ValueError
        Two rows with the same label disagree on a cell.
    """
    merged = {}
    order = []
    for row in rows:
        if row.label not in merged:
            merged[row.label] = Row(row.label, json.loads(json.dumps(row.summary)) if row.summary else None,
                                    row.paper_row, row.source)
            order.append(row.label)
            continue
        target = merged[row.label]
        for set_name, by_scale in (row.summary or {}).items():
            for key, cell in by_scale.items():
                have = target.summary.setdefault(set_name, {}).setdefault(key, {})
                for m, v in cell.items():
                    if m in have and abs(have[m] - v) > tolerance:
                        raise ValueError(f"{row.label} {set_name} {key} {m}: {have[m]} in {target.source} "
                                         f"but {v} in {row.source}")
                    have[m] = v
    return [merged[label] for label in order]


def _ablation_cell(value, digits):
    return "–" if value is None else f"{value:.{digits}f}"


def ablation_markdown(table, results):
    """Table 1 or Table 2 in the paper's layout, computed beside published.

    Parameters
    ----------
    table : {"table1", "table2"}
    results : dict
        Column label (e.g. ``"5x5x64"``, a key of :data:`ddsr.evaluation.published.TABLE1`) ->
        ``{set: {"psnr", "ssim", "seconds"}}`` (an evaluation folder's x3 means); missing
        columns show as ``–``.

    Returns
    -------
    str
        Markdown: one row per set, each cell ``PSNR / [SSIM /] time`` computed, then the
        paper's values in a row below.
    """
    if table == "table1":
        paper, sets = pub.TABLE1, ("Set5", "Set14")
        title = "Table 1: deconvolution kernel at x3 (PSNR dB / forward time s)"
    elif table == "table2":
        paper, sets = pub.TABLE2, ("Set5", "Set14", "BSD200")
        title = "Table 2: depth of the deep mapping at x3 (PSNR dB / SSIM / forward time s)"
    else:
        raise ValueError(f"table must be table1 or table2, got {table!r}")
    columns = list(paper)
    fields = ("psnr", "ssim", "time_s") if table == "table2" else ("psnr", "time_s")
    lines = [f"### {title}", "", "| set | | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for set_name in sets:
        cells = []
        for column in columns:
            got = results.get(column, {}).get(set_name, {})
            parts = [_ablation_cell(got.get("psnr"), 2)]
            if table == "table2":
                parts.append(_ablation_cell(got.get("ssim"), 4))
            parts.append(_ablation_cell(got.get("seconds"), 2))
            cells.append(" / ".join(parts))
        lines.append(f"| {set_name} | this run | " + " | ".join(cells) + " |")
        published = [" / ".join(f"{paper[c][set_name][f]:.4f}" if f == "ssim" else f"{paper[c][set_name][f]:.2f}"
                                for f in fields) for c in columns]
        lines.append("|  | paper | " + " | ".join(published) + " |")
    lines += ["", "Forward times here are pycaffe on this machine's device (the paper's: a GTX 1080 Ti)."]
    return "\n".join(lines) + "\n"
