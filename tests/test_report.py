"""ddsr.evaluation.report: summaries, the Table 3 Markdown, run folders and atomic writes."""

import csv
import json

import pytest

from ddsr.csvfiles import write_csv_atomic
from ddsr.evaluation import report, results
from ddsr.atomic import write_json_atomic
from ddsr.evaluation.report import Row


def _table_lines(md):
    return [ln for ln in md.splitlines() if ln.startswith("|")]


def _cells(line):
    return [c.strip() for c in line.strip("|").split("|")]


def test_summarize_means_per_set_and_scale():
    records = [
        {"set": "Set5", "scale": 3, "psnr": 30.0, "ssim": 0.8},
        {"set": "Set5", "scale": 3, "psnr": 32.0, "ssim": 0.9},
        {"set": "Set5", "scale": 2, "psnr": 35.0, "ssim": 0.95},
        {"set": "Set14", "scale": 3, "psnr": 28.0},
    ]
    s = results.summarize(records, metrics=("psnr", "ssim", "ifc"))
    assert s == {"Set5": {"x3": {"psnr": 31.0, "ssim": pytest.approx(0.85)}, "x2": {"psnr": 35.0, "ssim": 0.95}},
                 "Set14": {"x3": {"psnr": 28.0}}}
    assert json.loads(json.dumps(s)) == s  # plain JSON types


def test_table_layout_order_and_differences():
    computed = {st: {f"x{sc}": {"psnr": 30.0 + sc, "ssim": 0.5, "ifc": 3.0} for sc in (2, 3, 4)}
                for st in ("BSD200", "Set14", "Set5")}
    computed["Set5"]["x2"]["psnr"] = 33.6614
    md = report.table3_markdown([Row("Bicubic", computed, "Bicubic")], precision="full")
    lines = _table_lines(md)
    assert _cells(lines[0]) == ["Method", "Metric", "Set5 x2", "Set14 x2", "BSD200 x2", "Set5 x3", "Set14 x3",
                                "BSD200 x3", "Set5 x4", "Set14 x4", "BSD200 x4"]
    by_label = {_cells(ln)[1]: _cells(ln) for ln in lines[2:]}
    assert by_label["PSNR"][0] == "Bicubic"
    assert by_label["PSNR"][2] == "33.6614"
    assert by_label["PSNR paper"][2] == "33.66"
    assert by_label["PSNR Δ"][2] == "+0.0014"          # 33.6614 - 33.66
    assert by_label["SSIM Δ"][3] == "-0.37000"         # 0.5 - 0.87 (Set14 x2)
    assert by_label["IFC paper"][5] == "3.10*"          # the known misprint (Set5 x3)
    assert "misprint" in md


def test_table_paper_precision_and_zero_difference_sign():
    computed = {"Set5": {"x3": {"psnr": 30.3922}}}
    md = report.table3_markdown([Row("Bicubic", computed, "Bicubic")])
    rows = {_cells(ln)[1]: _cells(ln) for ln in _table_lines(md)[2:]}
    assert rows["PSNR"][2:] == ["30.39"]
    assert rows["PSNR Δ"][2:] == ["+0.00"]
    # only the metrics and columns the rows hold
    assert set(rows) == {"PSNR", "PSNR paper", "PSNR Δ"}


def test_table_rows_in_paper_order_with_published_only_rows():
    cell = {"Set5": {"x3": {"psnr": 33.0}}}
    rows = [Row("ddsr_x3", cell, "DDSR"), Row("mine", cell, None), Row("Bicubic", cell, "Bicubic"),
            Row("SRCNN", cell, "SRCNN")]
    md = report.table3_markdown(rows, published_only=("A+", "SRF"))
    labels = [_cells(ln)[0] for ln in _table_lines(md)[2:] if _cells(ln)[0]]
    assert labels == ["Bicubic", "A+ (paper)", "SRF (paper)", "SRCNN", "ddsr_x3", "mine"]
    aplus = next(ln for ln in _table_lines(md) if ln.startswith("| A+ (paper)"))
    assert _cells(aplus)[2:] == ["32.59"]  # A+ Set5 x3 PSNR in the paper
    # a row without a published counterpart has no paper/Δ lines
    mine_idx = [i for i, ln in enumerate(_table_lines(md)) if ln.startswith("| mine")][0]
    assert len(_table_lines(md)) == mine_idx + 1


def test_table_missing_cells_and_no_published():
    rows = [Row("X", {"Set5": {"x2": {"psnr": 36.0}}, "Set14": {"x3": {"psnr": 29.0}}}, "DDSR")]
    md = report.table3_markdown(rows, published=False)
    lines = _table_lines(md)
    assert _cells(lines[0])[2:] == ["Set5 x2", "Set14 x2", "Set5 x3", "Set14 x3"]
    assert _cells(lines[2])[2:] == ["36.00", "–", "–", "29.00"]
    assert len(lines) == 3


def _write_run(folder, summary, name=None, paper_row=None, baseline=None):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    if name:
        (folder / "run.json").write_text(json.dumps({"name": name, "paper_row": paper_row}))
    if baseline:
        (folder / "bicubic").mkdir()
        (folder / "bicubic" / "summary.json").write_text(json.dumps(baseline))


def test_load_and_combine_runs(tmp_path):
    base3 = {"Set5": {"x3": {"psnr": 30.3922}}}
    base2 = {"Set5": {"x2": {"psnr": 33.6614}}}
    _write_run(tmp_path / "a", {"Set5": {"x3": {"psnr": 33.1}}}, "DDSR", "DDSR", base3)
    _write_run(tmp_path / "b", {"Set5": {"x2": {"psnr": 37.0}}}, "DDSR", "DDSR", base2)
    _write_run(tmp_path / "c", {"Set5": {"x3": {"psnr": 30.3922}}}, "Bicubic", "Bicubic")
    rows = []
    for name in "abc":
        rows += report.load_run(tmp_path / name)
    merged = report.combine_rows(rows)
    assert [r.label for r in merged] == ["DDSR", "Bicubic"]
    assert merged[0].summary == {"Set5": {"x3": {"psnr": 33.1}, "x2": {"psnr": 37.0}}}
    assert merged[1].summary == {"Set5": {"x3": {"psnr": 30.3922}, "x2": {"psnr": 33.6614}}}
    # a label given on the command line replaces the run's and its paper row guess
    (row,) = report.load_run(tmp_path / "c", label="srcnn")[:1]
    assert (row.label, row.paper_row) == ("srcnn", "SRCNN")


def test_combine_rejects_disagreeing_cells(tmp_path):
    rows = [Row("Bicubic", {"Set5": {"x3": {"psnr": 30.39}}}, "Bicubic", "run1"),
            Row("Bicubic", {"Set5": {"x3": {"psnr": 30.40}}}, "Bicubic", "run2")]
    with pytest.raises(ValueError, match="Bicubic Set5 x3 psnr: 30.39 in run1 but 30.4 in run2"):
        report.combine_rows(rows)


def test_load_run_errors(tmp_path):
    with pytest.raises(ValueError, match="no summary.json"):
        report.load_run(tmp_path)
    (tmp_path / "summary.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a summary"):
        report.load_run(tmp_path)


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    write_json_atomic(tmp_path / "x" / "s.json", {"a": 1})
    write_csv_atomic(tmp_path / "x" / "p.csv", [{"set": "Set5", "scale": 3, "image": "bird", "psnr": 1.5}], results.CSV_FIELDS)
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["p.csv", "s.json"]
    assert json.loads((tmp_path / "x" / "s.json").read_text()) == {"a": 1}
    with open(tmp_path / "x" / "p.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["image"] == "bird" and row["psnr"] == "1.5" and row["ifc"] == ""
    assert list(row) == list(results.CSV_FIELDS)
