"""ddsr.evaluation.compare and tools/compare.py: the Fig. 7 crops on a real short run."""

import csv
import subprocess
import sys

import numpy as np
import pytest

from ddsr.evaluation import compare


def test_best_crop_finds_the_window_of_largest_gain():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (40, 50)).astype(np.float64)
    bicubic = hr + 10.0           # error 10 everywhere
    sr = hr + 10.0
    sr[20:28, 30:38] = hr[20:28, 30:38]  # the model is exact in one 8x8 block
    assert compare.best_crop(hr, bicubic, sr, 8) == (20, 30)
    # a crop of 4 lies inside that block; with a border it still must
    top, left = compare.best_crop(hr, bicubic, sr, 4, border=3)
    assert 20 <= top <= 24 and 30 <= left <= 34


def test_best_crop_agrees_with_brute_force():
    rng = np.random.default_rng(1)
    hr, bicubic, sr = (rng.random((23, 19)) * 255 for _ in range(3))
    size, border = 6, 2
    gain = (bicubic - hr) ** 2 - (sr - hr) ** 2
    best, where = -np.inf, None
    for i in range(border, 23 - size - border + 1):
        for j in range(border, 19 - size - border + 1):
            total = gain[i:i + size, j:j + size].sum()
            if total > best:
                best, where = total, (i, j)
    assert compare.best_crop(hr, bicubic, sr, size, border) == where


def test_best_crop_rejects_a_crop_that_does_not_fit():
    z = np.zeros((10, 10))
    with pytest.raises(ValueError, match="does not fit"):
        compare.best_crop(z, z, z, 8, border=2)


def test_find_image(tmp_path):
    (tmp_path / "Set5").mkdir()
    (tmp_path / "Set5" / "bird_GT.bmp").write_bytes(b"")
    assert compare.find_image(tmp_path, "Set5/bird_GT").name == "bird_GT.bmp"
    assert compare.find_image(tmp_path, "Set5/bird_GT.bmp").name == "bird_GT.bmp"
    with pytest.raises(ValueError, match="no image 'baby'"):
        compare.find_image(tmp_path, "Set5/baby")
    with pytest.raises(ValueError, match="SET/NAME"):
        compare.find_image(tmp_path, "bird")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, caffe, caffe_tool):
    from tiny_ddsr import make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("tiny"), caffe_tool, max_iter=20)


def _per_image(path):
    with open(path, newline="") as handle:
        return {row["image"]: float(row["psnr"]) for row in csv.DictReader(handle)}


@pytest.mark.caffe
@pytest.mark.slow
def test_compare_tool_on_a_trained_net(tiny_run, repo_root, tmp_path):
    """The figure's PSNRs are the protocol's: equal to tools/eval.py's per-image values."""
    weights = tiny_run["root"] / "snapshots" / "tiny_x3_iter_20.caffemodel"
    out = tmp_path / "fig7.png"
    done = subprocess.run(
        [sys.executable, str(repo_root / "tools" / "compare.py"), "--model", str(tiny_run["deploy"]),
         "--weights", str(weights), "--label", "tiny", "--images", "TinySet/face", "TinySet/cat",
         "--data-root", str(tiny_run["data_root"]), "--crop-size", "24", "--crop", "cat=3,6,30",
         "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out.with_suffix(".csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["image"], r["method"]) for r in rows] == [
        ("face", "Bicubic"), ("face", "tiny"), ("cat", "Bicubic"), ("cat", "tiny")]
    cat = [r for r in rows if r["image"] == "cat"]
    assert all((r["crop_top"], r["crop_left"], r["crop_size"]) == ("3", "6", "30") for r in cat)
    face = rows[0]
    assert int(face["crop_size"]) == 24 and int(face["crop_top"]) >= 3 and int(face["crop_left"]) >= 3

    evals = tmp_path / "eval"
    subprocess.run([sys.executable, str(repo_root / "tools" / "eval.py"), "--model", str(tiny_run["deploy"]),
                    "--weights", str(weights), "--scale", "3", "--sets", "TinySet", "--data-root",
                    str(tiny_run["data_root"]), "--metrics", "psnr", "--no-images", "--out", str(evals),
                    "--quiet"], check=True)
    model = _per_image(evals / "per_image.csv")
    bicubic = _per_image(evals / "bicubic" / "per_image.csv")
    for r in rows:
        want = bicubic[r["image"]] if r["method"] == "Bicubic" else model[r["image"]]
        assert float(r["psnr"]) == pytest.approx(want, abs=1e-9)


def test_compare_tool_needs_a_model(repo_root):
    done = subprocess.run([sys.executable, str(repo_root / "tools" / "compare.py")], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.startswith("compare: error: no model")
