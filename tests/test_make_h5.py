"""Tests of tools/make_h5.py: the CLI, its errors, and the paper's x3 patch count."""

import subprocess
import sys

import h5py
import numpy as np
import pytest
from PIL import Image

from ddsr.data import database, h5, patches
from tool_module import load_tool

TOOL = "tools/make_h5.py"


@pytest.fixture(scope="module")
def make_h5(repo_root):
    """The tool as a module, for in-process runs (monkeypatching, capsys)."""
    return load_tool("make_h5")


def run_tool(repo_root, *args):
    return subprocess.run([sys.executable, str(repo_root / TOOL), *map(str, args)],
                          capture_output=True, text=True, cwd=repo_root, timeout=300)


def write_set(folder, sizes, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            folder / f"im{i:02d}.bmp")


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    write_set(root / "Mini", [(60, 75), (44, 50)], seed=0)
    write_set(root / "MiniVal", [(40, 41), (50, 50)], seed=1)
    return root


def base_args(data_root, out, *extra):
    return [str(a) for a in (
        "--scale", "3", "--data-root", data_root, "--out", out, "--train-sets", "Mini",
        "--val-set", "MiniVal", "--val-images", "1", "--multiple-of", "1", "--quiet", *extra)]


def error_line(proc):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("make_h5: error: "), proc.stderr
    return lines[0]


def test_help(repo_root):
    proc = run_tool(repo_root, "--help")
    assert proc.returncode == 0
    for option in ("--scale", "--data-root", "--out", "--patch-size", "--stride", "--seed",
                   "--max-shard-bytes", "--val-set", "--val-images", "--no-val", "--flip",
                   "--rot90", "--downscale", "--skip-bad", "--dry-run", "--multiple-of"):
        assert option in proc.stdout


def test_builds_a_database(repo_root, data_root, tmp_path):
    out = tmp_path / "db"
    proc = run_tool(repo_root, *base_args(data_root, out))
    assert proc.returncode == 0, proc.stderr
    manifest = h5.read_manifest(out)
    expected = patches.count_patches((60, 75), 3) + patches.count_patches((44, 50), 3)
    assert manifest["num_patches"] == expected
    assert f"{expected} training patches" in proc.stdout
    assert manifest["params"]["val_images"] == ["MiniVal/im00.bmp"]
    assert manifest["splits"]["val"]["num_patches"] == patches.count_patches((40, 41), 3)
    # Outside the repository the list files hold absolute paths.
    assert (out / "train.txt").read_text() == f"{(out / 'train_000.h5').as_posix()}\n"
    with h5py.File(out / "train_000.h5", "r") as f:
        assert f["data"].shape == (expected, 1, 7, 7)
        assert f["label"].shape == (expected, 1, 21, 21)


def test_dry_run_counts_without_writing(repo_root, data_root, tmp_path):
    out = tmp_path / "db"
    proc = run_tool(repo_root, *base_args(data_root, out, "--dry-run", "--flip"))
    assert proc.returncode == 0, proc.stderr
    counts = dict(line.split() for line in proc.stdout.splitlines())
    per_copy = patches.count_patches((60, 75), 3) + patches.count_patches((44, 50), 3)
    assert int(counts["num_patches"]) == 2 * per_copy
    assert int(counts["val_patches"]) == patches.count_patches((40, 41), 3)
    assert not out.exists()


def test_small_image_is_skipped_with_a_warning(repo_root, data_root, tmp_path):
    write_set(data_root / "Mini2", [(20, 100)], seed=2)
    out = tmp_path / "db"
    proc = run_tool(repo_root, *base_args(data_root, out), "--train-sets", "Mini", "Mini2")
    assert proc.returncode == 0, proc.stderr
    assert "make_h5: warning: skipped Mini2/im00.bmp" in proc.stderr
    manifest = h5.read_manifest(out)
    assert manifest["num_skipped"] == 1
    assert "smaller than one 7x7 LR patch" in manifest["splits"]["train"]["skipped"][0]["reason"]


def test_truncated_image_is_an_error_naming_it_or_skipped(repo_root, data_root, tmp_path):
    good = (data_root / "Mini" / "im00.bmp").read_bytes()
    (data_root / "Mini" / "im99.bmp").write_bytes(good[:1000])
    out = tmp_path / "db"
    line = error_line(run_tool(repo_root, *base_args(data_root, out)))
    assert "im99.bmp" in line
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    proc = run_tool(repo_root, *base_args(data_root, out, "--skip-bad"))
    assert proc.returncode == 0, proc.stderr
    manifest = h5.read_manifest(out)
    skipped = manifest["splits"]["train"]["skipped"]
    assert [s["file"] for s in skipped] == ["im99.bmp"] and manifest["num_skipped"] == 1


def test_input_errors(repo_root, data_root, tmp_path):
    out = tmp_path / "db"
    assert "no folder" in error_line(run_tool(
        repo_root, *base_args(data_root, out), "--train-sets", "Nothing"))
    (data_root / "Empty").mkdir()
    (data_root / "Empty" / "readme.txt").write_text("not an image")
    assert "empty set 'Empty'" in error_line(run_tool(
        repo_root, *base_args(data_root, out), "--train-sets", "Empty"))
    assert "no validation set folder" in error_line(run_tool(
        repo_root, *base_args(data_root, out), "--val-set", "Missing"))
    assert "--downscale" in error_line(run_tool(
        repo_root, *base_args(data_root, out, "--downscale", "1.5")))
    assert "also a training set" in error_line(run_tool(
        repo_root, *base_args(data_root, out), "--val-set", "Mini"))
    assert not out.exists()


def test_unwritable_output_is_an_error(repo_root, data_root, tmp_path):
    (tmp_path / "blocker").write_text("a file")
    line = error_line(run_tool(repo_root, *base_args(data_root, tmp_path / "blocker" / "db")))
    assert "blocker" in line and "not a folder" in line
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    line = error_line(run_tool(repo_root, *base_args(data_root, tmp_path / "mine")))
    assert "not a database" in line
    line = error_line(run_tool(repo_root, *base_args(data_root, tmp_path / "with space")))
    assert "whitespace" in line and not (tmp_path / "with space").exists()
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me"


def test_disk_full_is_one_error_line_and_keeps_the_old_database(
        make_h5, data_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "db"
    assert make_h5.main(base_args(data_root, out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()

    def no_space(self, key, value):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(h5py.Dataset, "__setitem__", no_space)
    assert make_h5.main(base_args(data_root, out, "--seed", "3")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("make_h5: error: cannot write the database")
    assert "No space left on device" in err[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "db"]


def test_list_files_are_relative_under_the_repository(make_h5, data_root, tmp_path,
                                                      monkeypatch):
    # Pretend the temporary folder is the repository root.
    monkeypatch.setattr(database, "REPO_ROOT", tmp_path)
    assert make_h5.main(base_args(data_root, tmp_path / "h5" / "x3")) == 0
    assert (tmp_path / "h5" / "x3" / "train.txt").read_text() == "h5/x3/train_000.h5\n"
    assert (tmp_path / "h5" / "x3" / "val.txt").read_text() == "h5/x3/val_000.h5\n"


@pytest.mark.parametrize("which", [("--scale", "3"), ("--experiment", "ddsr_x3")])
def test_paper_x3_count(repo_root, shared_dir, which):
    """The paper's database: 252,086 patches cut, 252,032 = 1969 x 128 kept (paper: 252,032).

    ``--scale 3`` (experiments.yaml's defaults at x3) and ``--experiment ddsr_x3`` are one recipe.
    """
    proc = run_tool(repo_root, *which, "--data-root", shared_dir / "datasets", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    counts = {k: int(v) for k, v in (line.split() for line in proc.stdout.splitlines())}
    assert counts["train_images"] == 291
    assert counts["train_skipped"] == 0
    # By hand: BSD100 100 x 1014 (481x321 -> LR 160x107 -> 39 x 26 positions)
    # + T91 33,040 + General-100 117,646 = 252,086.
    assert counts["train_patches_extracted"] == 252086
    assert counts["num_patches"] == 252032
    # 10 BSD200-train images of 481x321 or 321x481: 1014 patches each.
    assert counts["val_images"] == 10 and counts["val_patches"] == 10140


def test_experiment_and_scale_go_alone(repo_root, data_root):
    line = error_line(run_tool(repo_root, "--experiment", "nope", "--data-root", data_root, "--dry-run"))
    assert "unknown experiment 'nope'" in line and "ddsr_x3" in line
    proc = run_tool(repo_root, "--experiment", "ddsr_x3", "--scale", "3", "--dry-run")
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr
