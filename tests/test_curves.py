"""ddsr.training.curves and tools/curves.py: log tables, CSV, plots, and snapshots evaluated on a real short run."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ddsr import csvfiles
from ddsr.training import curves

LOG_LINES = [
    "I1125 20:00:01.2 4242 solver.cpp:347] Iteration 0, Testing net (#0)",
    "I1125 20:00:01.3 4242 solver.cpp:414]     Test net output #0: loss = 0.25 (* 1 = 0.25 loss)",
    "I1125 20:00:01.4 4242 solver.cpp:239] Iteration 0 (0 iter/s, 0s/5 iters), loss = 0.5",
    "I1125 20:00:01.4 4242 sgd_solver.cpp:112] Iteration 0, lr = 0.001",
    "I1125 20:00:02.4 4242 solver.cpp:239] Iteration 5 (5 iter/s, 1s/5 iters), loss = 0.125",
    "I1125 20:00:02.4 4242 sgd_solver.cpp:112] Iteration 5, lr = 0.0001",
]


def test_log_rows(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("\n".join(LOG_LINES) + "\n")
    rows = curves.log_rows(path)
    assert rows == [
        {"iteration": 0, "loss": 0.5, "lr": 0.001, "test_loss": 0.25},
        {"iteration": 5, "loss": 0.125, "lr": 0.0001, "test_loss": None},
    ]


def test_csv_round_trip(tmp_path):
    rows = [{"iteration": 0, "loss": 0.5, "lr": 1e-3, "test_loss": None},
            {"iteration": 10, "loss": 1 / 3, "lr": 1e-4, "test_loss": 0.25}]
    path = curves.write_csv(tmp_path / "sub" / "loss.csv", rows, curves.LOSS_COLUMNS)
    assert path.read_text().splitlines()[0] == "iteration,loss,lr,test_loss"
    assert path.read_text().splitlines()[1] == "0,0.5,0.001,"
    assert csvfiles.read_csv(path) == rows  # full float precision kept
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plots_write_pngs(tmp_path):
    loss = {"Adam": [{"iteration": i, "loss": 1.0 / (i + 1), "lr": 1e-3, "test_loss": None} for i in range(0, 100, 10)],
            "SGD": [{"iteration": i, "loss": 2.0 / (i + 1), "lr": 1e-3 if i < 50 else 1e-4,
                     "test_loss": 2.0 / (i + 1) if i % 20 == 0 else None} for i in range(0, 100, 10)]}
    width, height = _png_size(curves.plot_loss(loss, tmp_path / "loss.png"))
    assert width > 300 and height > 300
    quality = {"Adam": [{"iteration": 10, "psnr": 30.0, "ssim": 0.85}, {"iteration": 20, "psnr": 31.0, "ssim": 0.86}]}
    assert _png_size(curves.plot_quality(quality, tmp_path / "psnr.png", baseline={"psnr": 29.0, "ssim": 0.8}))
    assert _png_size(curves.plot_summary(loss["SGD"], quality["Adam"], tmp_path / "summary.png", "Set5", 3,
                                         baseline={"psnr": 29.0}))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, caffe, caffe_tool):
    from tiny_ddsr import make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("tiny"), caffe_tool)


@pytest.mark.caffe
def test_deploy_scale(tiny_run):
    assert curves.deploy_scale(tiny_run["deploy"]) == 3


@pytest.mark.caffe
@pytest.mark.slow
def test_evaluate_snapshots_matches_eval_tool(tiny_run, repo_root, tmp_path):
    """Each snapshot's PSNR/SSIM equals what tools/eval.py reports for the same weights."""
    rows = curves.evaluate_snapshots(tiny_run["deploy"], "snapshots/tiny_x3", tiny_run["data_root"],
                                     tiny_run["set"], 3, workdir=tiny_run["root"], progress=False)
    assert [r["iteration"] for r in rows] == [10, 20, 30]
    every2 = curves.evaluate_snapshots(tiny_run["deploy"], "snapshots/tiny_x3", tiny_run["data_root"],
                                       tiny_run["set"], 3, workdir=tiny_run["root"], every=2, progress=False)
    assert [r["iteration"] for r in every2] == [10, 30]  # the newest is always in
    for row in (rows[0], rows[-1]):
        weights = tiny_run["root"] / "snapshots" / f"tiny_x3_iter_{row['iteration']}.caffemodel"
        out = tmp_path / f"eval{row['iteration']}"
        subprocess.run([sys.executable, str(repo_root / "tools" / "eval.py"), "--model", str(tiny_run["deploy"]),
                        "--weights", str(weights), "--scale", "3", "--sets", "TinySet",
                        "--data-root", str(tiny_run["data_root"]), "--metrics", "psnr", "ssim",
                        "--no-baseline", "--no-images", "--out", str(out), "--quiet"], check=True)
        summary = json.loads((out / "summary.json").read_text())["TinySet"]["x3"]
        assert row["psnr"] == pytest.approx(summary["psnr"], abs=1e-9)
        assert row["ssim"] == pytest.approx(summary["ssim"], abs=1e-9)
    # bicubic through the same helper equals tools/eval.py --method bicubic
    out = tmp_path / "bicubic"
    subprocess.run([sys.executable, str(repo_root / "tools" / "eval.py"), "--method", "bicubic", "--scale", "3",
                    "--sets", "TinySet", "--data-root", str(tiny_run["data_root"]), "--metrics", "psnr", "ssim",
                    "--no-images", "--out", str(out), "--quiet"], check=True)
    images = curves.load_test_images(tiny_run["data_root"], "TinySet", 3)
    bicubic = curves.bicubic_quality(images, 3)
    assert bicubic["psnr"] == pytest.approx(
        json.loads((out / "summary.json").read_text())["TinySet"]["x3"]["psnr"], abs=1e-9)


@pytest.mark.caffe
@pytest.mark.slow
def test_curves_tool_writes_csvs_and_pngs(tiny_run, repo_root, tmp_path):
    out = tmp_path / "curves"
    done = subprocess.run([sys.executable, str(repo_root / "tools" / "curves.py"), "tiny_x3", "--set", "TinySet",
                           "--data-root", str(tiny_run["data_root"]), "--root", str(tiny_run["root"]),
                           "--out", str(out), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in ("loss.csv", "loss.png", "quality.csv", "psnr.png"):
        assert (out / name).is_file(), name
    loss = csvfiles.read_csv(out / "loss.csv")
    assert [r["iteration"] for r in loss] == [0, 5, 10, 15, 20, 25, 30]
    assert all(r["lr"] == 0.001 for r in loss if r["lr"] is not None)
    quality = csvfiles.read_csv(out / "quality.csv")
    assert [r["iteration"] for r in quality] == [10, 20, 30, None]  # None: the bicubic row
    assert all(np.isfinite(r["psnr"]) and 0 < r["ssim"] <= 1 for r in quality)
    assert "PSNR" in done.stdout


def test_curves_tool_unknown_run(repo_root, tmp_path):
    done = subprocess.run([sys.executable, str(repo_root / "tools" / "curves.py"), "no_such_run",
                           "--root", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.startswith("curves: error: unknown run 'no_such_run'")


def test_loss_limits_leave_the_transient_off_the_top():
    x = list(range(0, 1000, 10))
    y = [300.0 if i < 50 else 0.5 + 0.001 * (1000 - i) for i in x]
    low, high = curves.loss_limits([(x, y), ([], [])])
    assert low == pytest.approx(0.8 * 0.51)
    assert high == pytest.approx(1.5 * (0.5 + 0.001 * 900))  # the largest loss from iteration 100 on
    assert curves.loss_limits([([], [])]) is None
