"""ddsr.workflows.reproduce and tools/reproduce.py: the plan, the CPU estimate, Tables 1 and 2."""

import subprocess
import sys

import pytest

from ddsr.evaluation import report
from ddsr.training import runner
from ddsr.workflows import reproduce


def test_experiments_for():
    assert reproduce.experiments_for([3]) == ["ddsr_x3"]
    assert reproduce.experiments_for([2, 3, 4]) == ["ddsr_x2", "ddsr_x3", "ddsr_x4"]
    ablations = reproduce.experiments_for([], ablations=True)
    assert ablations == ["ddsr_x3", "ddsr_x3_k5", "ddsr_x3_k7", "ddsr_x3_d6", "ddsr_x3_d12",
                         "ddsr_x3_nores", "ddsr_x3_sgd", "ddsr_x3_sgd_nores"]  # ddsr_x3 once
    with pytest.raises(ValueError, match="scale must be one of"):
        reproduce.experiments_for([5])


def test_every_planned_experiment_exists(repo_root):
    from ddsr.model.experiments import load_experiments

    experiments = load_experiments(repo_root / "experiments.yaml")
    for name in reproduce.experiments_for([2, 3, 4], ablations=True):
        assert name in experiments, name


def test_multiply_adds_by_hand():
    # DDSR-18 x3 on a 7x7 patch: deconv 49*9*64, 17 convs of 21*21*9*64*64, recon 21*21*9*64
    assert reproduce.multiply_adds_per_patch(3, 18, 64, 3) == 49 * 9 * 64 + 17 * 441 * 9 * 4096 + 441 * 9 * 64


def test_cpu_estimate():
    # the reference configuration is the measurement itself
    assert reproduce.cpu_seconds_per_iteration(3, 18, 64, 3, 64) == pytest.approx(reproduce.CPU_REFERENCE_SECONDS)
    # batch 128 doubles it: 100k iterations of the paper's solver are about 41.7 hours
    assert reproduce.cpu_seconds_per_iteration(3, 18, 64, 3, 128) == pytest.approx(2 * 0.75)
    assert reproduce.format_duration(1.5 * 100000) == "41.7 h"
    assert reproduce.format_duration(6.8 * 100000) == "7.9 days"
    assert reproduce.format_duration(5400) == "90 min"
    assert reproduce.format_duration(3 * 3600) == "3.0 h"


def test_ablation_markdown():
    results = {"3x3x64": {"Set5": {"psnr": 33.1, "ssim": 0.91, "seconds": 0.5}},
               "5x5x64": {"Set5": {"psnr": 33.15, "ssim": 0.912, "seconds": 0.55}}}
    text = report.ablation_markdown("table1", results)
    assert "| set | | 3x3x64 | 5x5x64 | 7x7x64 |" in text
    assert "| Set5 | this run | 33.10 / 0.50 | 33.15 / 0.55 | – / – |" in text
    assert "|  | paper | 33.32 / 0.40 | 33.33 / 0.41 | 33.36 / 0.40 |" in text
    text = report.ablation_markdown("table2", {"DDSR-18": {"BSD200": {"psnr": 29.0, "ssim": 0.81, "seconds": 1.0}}})
    assert "| BSD200 | this run | – / – / – | – / – / – | 29.00 / 0.8100 / 1.00 |" in text
    assert "|  | paper | 29.08 / 0.8133 / 0.18 | 29.13 / 0.8146 / 0.28 | 29.17 / 0.8155 / 0.39 |" in text


def test_x3_means(tmp_path):
    (tmp_path / "summary.json").write_text(
        '{"Set5": {"x3": {"psnr": 31.0, "ssim": 0.85}, "x2": {"psnr": 40.0, "ssim": 0.95}}}')
    (tmp_path / "run.json").write_text('{"forward_ms_mean": {"Set5": {"x3": 200.0, "x2": 1.0}}}')
    got = reproduce.x3_means(tmp_path)
    assert got == {"Set5": {"psnr": 31.0, "ssim": pytest.approx(0.85), "seconds": pytest.approx(0.2)}}


@pytest.mark.caffe
def test_reproduce_refuses_on_a_cpu_caffe(repo_root, caffe_tool):

    if runner.gpu_available(caffe_tool):
        pytest.skip("this Caffe has a GPU")
    done = subprocess.run([sys.executable, str(repo_root / "tools" / "reproduce.py"), "--scale", "3"],
                          capture_output=True, text=True, cwd=repo_root)
    assert done.returncode == 1
    assert "cannot use GPU 0" in done.stderr
    assert "about 41.7 h" in done.stderr  # ddsr_x3: 100k iterations at batch 128
    assert "FORCE=1" in done.stderr
    # a dry run with --force states the CPU plan and trains nothing
    done = subprocess.run([sys.executable, str(repo_root / "tools" / "reproduce.py"), "--scale", "2", "3",
                           "--force", "--dry-run"], capture_output=True, text=True, cwd=repo_root)
    assert done.returncode == 0, done.stderr
    assert "train -solver solvers/ddsr_x2.prototxt" in done.stderr
    assert "-gpu" not in done.stderr.split("plan:")[1]
