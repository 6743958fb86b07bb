"""experiments.yaml and its loader: every configuration of the paper, and clear errors."""

import copy
import dataclasses

import pytest
import yaml

from ddsr.model.experiments import load_experiments, parse_experiments

NAMES = ["ddsr_x2", "ddsr_x3", "ddsr_x4", "ddsr_x3_k5", "ddsr_x3_k7", "ddsr_x3_d6",
         "ddsr_x3_d12", "ddsr_x3_nores", "ddsr_x3_sgd", "ddsr_x3_sgd_nores", "demo_x3"]


@pytest.fixture(scope="module")
def experiments(repo_root):
    return load_experiments(repo_root / "experiments.yaml")


def _net_differences(a, b):
    return {f.name: getattr(b.net, f.name) for f in dataclasses.fields(a.net)
            if getattr(a.net, f.name) != getattr(b.net, f.name)}


def test_every_configuration_is_named(experiments):
    assert sorted(experiments) == sorted(NAMES)


def test_final_model_is_the_papers(experiments):
    # Section 2 of the paper: 3x3x64 deconvolution with stride 3, 18-layer deep mapping of
    # 3x3x64 layers, one residual; batch 128 = 252k patches * 50 epochs / 100k iterations.
    x3 = experiments["ddsr_x3"]
    assert (x3.scale, x3.net.depth, x3.net.num_filters, x3.net.deconv_kernel, x3.net.residual) \
        == (3, 18, 64, 3, True)
    assert x3.data.batch_size == 128
    assert x3.data.train_source == "data/h5/x3/train.txt"
    assert x3.data.val_source == "data/h5/x3/val.txt"
    assert x3.solver["type"] == "Adam"
    assert x3.solver["stepvalue"] == [60000, 90000]


def test_other_scales_use_aligned_4x4_deconvolutions(experiments):
    for s in (2, 4):
        e = experiments[f"ddsr_x{s}"]
        assert e.scale == s and e.net.deconv_kernel == 4
        assert e.data.train_source == f"data/h5/x{s}/train.txt"
        assert _net_differences(experiments["ddsr_x3"], e) == {"scale": s, "deconv_kernel": 4}


@pytest.mark.parametrize("name, changed", [
    ("ddsr_x3_k5", {"deconv_kernel": 5}),      # Table 1
    ("ddsr_x3_k7", {"deconv_kernel": 7}),
    ("ddsr_x3_d6", {"depth": 6}),              # Table 2
    ("ddsr_x3_d12", {"depth": 12}),
    ("ddsr_x3_nores", {"residual": False}),    # Fig. 5
    ("ddsr_x3_sgd", {}),
    ("ddsr_x3_sgd_nores", {"residual": False}),
])
def test_each_ablation_changes_only_what_it_ablates(experiments, name, changed):
    base, ablation = experiments["ddsr_x3"], experiments[name]
    assert _net_differences(base, ablation) == changed
    assert ablation.data == base.data
    expected_type = "SGD" if "sgd" in name else "Adam"
    assert ablation.solver["type"] == expected_type
    if expected_type == "Adam":
        assert ablation.solver == base.solver
    else:
        assert "momentum2" not in ablation.solver and "delta" not in ablation.solver


def test_demo_has_its_own_data_and_short_schedule(experiments):
    demo = experiments["demo_x3"]
    assert demo.scale == 3
    assert demo.data.train_source == "data/demo/h5/train.txt"
    assert demo.data.val_source == "data/demo/h5/val.txt"
    assert demo.solver["max_iter"] < 10000
    assert demo.solver["stepvalue"][-1] < demo.solver["max_iter"]


def test_file_names_follow_the_name(experiments):
    e = experiments["ddsr_x3_k5"]
    assert e.train_net_path == "prototxt/ddsr_x3_k5_train.prototxt"
    assert e.deploy_net_path == "prototxt/ddsr_x3_k5_deploy.prototxt"
    assert e.solver_path == "solvers/ddsr_x3_k5.prototxt"
    assert e.snapshot_prefix == "snapshots/ddsr_x3_k5"


# --- inheritance -----------------------------------------------------------------------

def _doc():
    return {
        "defaults": {
            "net": {"depth": 18, "num_filters": 64, "deconv_kernel": 3, "residual": True},
            "data": {"database": "data/h5/x{scale}", "train_sets": ["T91"], "val_set": "BSD200-train",
                     "val_images": 10, "patch_size": 7, "stride": 4, "flip": False, "rot90": False,
                     "downscale": [], "multiple_of": 128, "seed": 0,
                     "batch_size": 128, "val_batch_size": 128, "shuffle": True},
            "solver": {"type": "Adam", "base_lr": 0.001, "momentum": 0.9, "momentum2": 0.999,
                       "delta": 1e-8, "lr_policy": "multistep", "stepvalue": [60000, 90000],
                       "gamma": 0.1, "max_iter": 100000, "test_iter": 40,
                       "test_interval": 1000, "random_seed": 1},
        },
        "experiments": {"a": {"scale": 3}},
    }


def test_base_and_defaults_merge_key_by_key():
    doc = _doc()
    doc["experiments"]["b"] = {"base": "a", "net": {"depth": 6}}
    doc["experiments"]["c"] = {"base": "b", "scale": 2, "net": {"deconv_kernel": 4},
                               "solver": {"type": "SGD", "momentum2": None, "delta": None}}
    got = parse_experiments(doc)
    assert got["b"].net.depth == 6 and got["b"].net.num_filters == 64
    c = got["c"]
    assert (c.scale, c.net.depth, c.net.deconv_kernel) == (2, 6, 4)
    assert c.data.train_source == "data/h5/x2/train.txt"
    assert c.solver["type"] == "SGD" and "momentum2" not in c.solver and "delta" not in c.solver
    assert c.solver["base_lr"] == 0.001
    assert doc["defaults"]["net"]["depth"] == 18  # the input is not modified


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-8 as the string "1e-8".
    text = yaml.safe_dump(_doc()).replace("delta: 1.0e-08", "delta: 1e-8")
    assert "delta: 1e-8" in text
    path = tmp_path / "e.yaml"
    path.write_text(text)
    assert load_experiments(path)["a"].solver["delta"] == 1e-8


# --- errors ----------------------------------------------------------------------------

def _edit(change):
    doc = copy.deepcopy(_doc())
    change(doc)
    return doc


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(extra=1), ["unknown key 'extra'"]),
    (lambda d: d["experiments"]["a"].update(depth=6), ["'a'", "unknown key 'depth'"]),
    (lambda d: d["experiments"]["a"].update(net={"kernel": 5}), ["'a'", "net", "'kernel'"]),
    (lambda d: d["experiments"]["a"].update(data={"batch": 5}), ["'a'", "data", "'batch'"]),
    (lambda d: d["experiments"]["a"].update(solver={"lr": 1}), ["'a'", "solver", "'lr'"]),
    (lambda d: d["experiments"]["a"].update(solver={"net": "x"}), ["'a'", "'net'", "derived"]),
    (lambda d: d["experiments"]["a"].update(scale=5), ["'a'", "scale", "5"]),
    (lambda d: d["experiments"]["a"].update(scale="3"), ["'a'", "scale"]),
    (lambda d: d["experiments"]["a"].update(scale=True), ["'a'", "scale"]),
    (lambda d: d["experiments"]["a"].pop("scale"), ["'a'", "missing 'scale'"]),
    (lambda d: d["experiments"]["a"].update(net={"depth": 0}), ["'a'", "net.depth", ">= 1"]),
    (lambda d: d["experiments"]["a"].update(net={"depth": 2.5}), ["'a'", "net.depth", "integer"]),
    (lambda d: d["experiments"]["a"].update(net={"depth": 1}), ["'a'", "residual", "depth >= 2"]),
    (lambda d: d["experiments"]["a"].update(net={"num_filters": 0}), ["'a'", "num_filters"]),
    (lambda d: d["experiments"]["a"].update(net={"residual": "yes"}), ["'a'", "net.residual"]),
    (lambda d: d["experiments"]["a"].update(scale=2), ["'a'", "deconv_kernel 3", "scale 2"]),
    (lambda d: d["experiments"]["a"].update(scale=4), ["'a'", "deconv_kernel 3", "scale 4"]),
    (lambda d: d["experiments"]["a"].update(net={"deconv_kernel": 4}), ["deconv_kernel 4"]),
    (lambda d: d["experiments"]["a"].update(base="zz"), ["'a'", "base 'zz'"]),
    (lambda d: d["experiments"].update(b={"base": "c"}, c={"base": "b"}), ["cycle"]),
    (lambda d: d["experiments"].update({"A b": {"scale": 3}}), ["'A b'", "name"]),
    (lambda d: d["experiments"].clear(), ["non-empty"]),
    (lambda d: d["defaults"]["data"].update(database="x{size}"), ["database", "{scale}"]),
    (lambda d: d["defaults"]["data"].update(database="my data"), ["database", "spaces"]),
    (lambda d: d["defaults"]["data"].update(patch_size=0), ["data.patch_size", ">= 1"]),
    (lambda d: d["defaults"]["data"].update(downscale=[1.5]), ["data.downscale", "(0, 1)"]),
    (lambda d: d["defaults"]["data"].update(val_set="T91"), ["val_set T91", "train_sets"]),
    (lambda d: d["defaults"]["data"].update(train_sets=[]), ["data.train_sets"]),
    (lambda d: d["defaults"]["data"].update(batch_size=0), ["data.batch_size", ">= 1"]),
    (lambda d: d["defaults"]["solver"].update(type="Adamw"), ["type", "Adam"]),
    (lambda d: d["defaults"]["solver"].update(base_lr=0), ["base_lr", "> 0"]),
    (lambda d: d["defaults"]["solver"].update(base_lr="fast"), ["base_lr", "number"]),
    (lambda d: d["defaults"]["solver"].update(momentum=1.0), ["momentum", "[0, 1)"]),
    (lambda d: d["defaults"]["solver"].update(stepvalue=[90000, 60000]), ["stepvalue", "increasing"]),
    (lambda d: d["defaults"]["solver"].update(max_iter=90000), ["stepvalue", "max_iter"]),
    (lambda d: d["defaults"]["solver"].pop("random_seed"), ["missing 'random_seed'"]),
    (lambda d: d["defaults"]["solver"].pop("momentum"), ["needs momentum"]),
    (lambda d: d["defaults"]["solver"].pop("gamma"), ["multistep needs gamma"]),
    (lambda d: d["defaults"]["solver"].update(type="SGD"), ["momentum2", "Adam setting"]),
])
def test_bad_settings_raise_a_clear_error(change, words):
    with pytest.raises(ValueError) as info:
        parse_experiments(_edit(change), source="exp.yaml")
    message = str(info.value)
    assert message.startswith("exp.yaml")
    for word in words:
        assert word in message


def test_a_file_that_is_not_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("experiments: {a: [}\n")
    with pytest.raises(ValueError, match="broken.yaml: not valid YAML"):
        load_experiments(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_experiments(tmp_path / "absent.yaml")
