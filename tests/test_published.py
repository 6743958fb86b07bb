"""ddsr.evaluation.published: the paper's numbers, checked against the paper's own text."""

import re

import pytest

from ddsr.evaluation import published


def _paper_table3(text):
    """Parse Table 3 from DDSR-paper.txt: {method: {metric: [9 values]}}."""
    start = text.index("Table 3  The average PSNR")
    end = text.index("3.2   ")
    rows, method = {}, None
    for line in text[start:end].splitlines():
        line = line.strip()
        m = re.fullmatch(r"(Bicubic|A\+|SRF|SRCNN|FSRCNN|DDSR)(\[\d+\])?", line)
        if m:
            method = m.group(1)
            rows[method] = {}
            continue
        m = re.fullmatch(r"(PSNR|SSIM|IFC)((?: \d+\.\d+){9})", line)
        if m and method:
            rows[method][m.group(1).lower()] = [float(v) for v in m.group(2).split()]
    return rows


def test_table3_matches_the_paper_text(shared_dir):
    text = (shared_dir / "paper" / "DDSR-paper.txt").read_text()
    parsed = _paper_table3(text)
    assert set(parsed) == set(published.TABLE3_METHODS)
    for method, metrics in parsed.items():
        assert set(metrics) == {"psnr", "ssim", "ifc"}, method
        for metric, values in metrics.items():
            ours = [published.TABLE3[method][st][f"x{sc}"][metric] for sc in published.TABLE3_SCALES for st in published.TABLE3_SETS]
            assert ours == values, (method, metric)


def test_table3_spot_values_from_summary():
    # shared/paper/SUMMARY.md, Table 3 (hand-copied cells)
    assert published.TABLE3["Bicubic"]["Set5"]["x3"] == {"psnr": 30.39, "ssim": 0.87, "ifc": 3.10}
    assert published.TABLE3["DDSR"]["BSD200"]["x4"]["psnr"] == 27.60
    assert published.TABLE3["SRCNN"]["BSD200"]["x2"]["ssim"] == 0.93
    assert published.TABLE3["FSRCNN"]["Set14"]["x3"]["ifc"] == 4.47


def test_known_typo_is_a_published_cell():
    for method, set_name, scale, metric in published.KNOWN_TYPOS:
        assert published.TABLE3[method][set_name][scale][metric] == 3.10


def test_published_row_rejects_unknown_method():
    with pytest.raises(ValueError, match="no published Table 3 row 'VDSR'"):
        published.published_row("VDSR")


@pytest.mark.parametrize("label, row", [
    ("DDSR", "DDSR"), ("ddsr_x3", "DDSR"), ("Bicubic", "Bicubic"), ("srcnn-915", "SRCNN"),
    ("FSRCNN x3", "FSRCNN"), ("a+", "A+"), ("demo_x3", None), ("", None), (None, None),
])
def test_match_method(label, row):
    assert published.match_method(label) == row
