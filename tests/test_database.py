"""ddsr.data.database: an experiment's data recipe, and training refusing a database that is not its own."""

import pytest

from ddsr.data import database, h5
from ddsr.model import experiments
from ddsr.cli import exit_status

from test_make_h5 import base_args, write_set
from tool_module import load_tool


@pytest.fixture(scope="module")
def train_tool(repo_root):
    return load_tool("train")


@pytest.fixture
def small_database(make_h5_tool, tmp_path):
    """A real database built by tools/make_h5.py at x2 from two small images (4 validation patches)."""
    root = tmp_path / "data"
    write_set(root / "Mini", [(60, 75), (44, 50)], seed=0)
    write_set(root / "MiniVal", [(40, 41), (50, 50)], seed=1)
    out = tmp_path / "db"
    args = base_args(root, out)
    args[args.index("--scale") + 1] = "2"
    assert make_h5_tool.main(args) == 0
    return out


@pytest.fixture(scope="module")
def make_h5_tool(repo_root):
    return load_tool("make_h5")


def test_the_paper_recipes_come_from_experiments_yaml():
    known = experiments.load_experiments(experiments.EXPERIMENTS_PATH)
    x3 = known["ddsr_x3"].recipe
    assert (x3.scale, x3.folder, x3.patch_size, x3.stride, x3.multiple_of) == (3, "data/h5/x3", 7, 4, 128)
    assert x3.train_sets == ("General-100", "T91", "BSD100") and (x3.val_set, x3.val_images) == ("BSD200-train", 10)
    assert (x3.flip, x3.rot90, x3.downscale) == (False, False, ())
    # `make_h5.py --scale S` is the defaults' recipe, the same as the ddsr_xS experiments'
    for scale in experiments.SCALES:
        assert experiments.default_recipe(scale) == known[f"ddsr_x{scale}"].recipe
    demo = known["demo_x3"].recipe
    assert demo.folder == "data/demo/h5" and demo.train_sets == ("skimage-train",)
    assert known["demo_x3"].data.train_source == "data/demo/h5/train.txt"


def test_the_experiment_owns_its_paths():
    x3 = experiments.load_experiments(experiments.EXPERIMENTS_PATH)["ddsr_x3"]
    assert x3.log_path.relative_to(x3.run_dir).as_posix() == "train.log"
    assert x3.run_dir.parts[-2:] == ("runs", "ddsr_x3")
    assert x3.eval_dir.parts[-3:] == ("runs", "ddsr_x3", "eval")
    assert x3.snapshot_prefix == "snapshots/ddsr_x3"


def test_check_database_accepts_its_own_and_names_both_sides_of_a_mismatch(small_database):
    manifest = database.check_database(small_database, scale=2, patch_size=7, test_iter=2, val_batch_size=2)
    assert manifest["params"]["scale"] == 2
    with pytest.raises(database.DatabaseMismatch) as info:
        database.check_database(small_database, scale=3, patch_size=7, reader="ddsr_x3")
    message = str(info.value)
    assert "built for scale 2 with 7x7 LR patches" in message and "ddsr_x3 reads scale 3 with 7x7" in message
    with pytest.raises(database.DatabaseMismatch, match="built for scale 2 with 7x7 .* reads scale 2 with 9x9"):
        database.check_database(small_database, scale=2, patch_size=9)
    val = h5.read_manifest(small_database)["splits"]["val"]["num_patches"]
    with pytest.raises(database.DatabaseMismatch, match=f"test_iter 3 x batch {val} .* has {val}: set test_iter to 1"):
        database.check_database(small_database, scale=2, patch_size=7, test_iter=3, val_batch_size=val)
    with pytest.raises(database.DatabaseMismatch, match="no training database for x in .*nowhere"):
        database.check_database(small_database.parent / "nowhere", scale=2, patch_size=7, reader="x")


def test_training_refuses_a_database_of_another_scale(train_tool, small_database, tmp_path, monkeypatch,
                                                      capsys):
    """tools/train.py on an x3 experiment whose database folder holds an x2 database: exit 1, one line,
    before Caffe starts (no log, no snapshot)."""
    text = experiments.EXPERIMENTS_PATH.read_text().replace(
        "database: data/h5/x{scale}", f"database: {small_database}")
    yaml_path = tmp_path / "experiments.yaml"
    yaml_path.write_text(text)
    monkeypatch.setattr(experiments, "EXPERIMENTS_PATH", yaml_path)
    log = tmp_path / "train.log"
    status = exit_status("train", lambda: train_tool.main(["ddsr_x3", "--log", str(log), "--quiet"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert len(err) == 1 and err[0].startswith("train: error: ")
    assert f"{small_database} was built for scale 2 with 7x7 LR patches, but ddsr_x3 reads scale 3" in err[0]
    assert "tools/make_h5.py --experiment ddsr_x3" in err[0]
    assert not log.exists()
