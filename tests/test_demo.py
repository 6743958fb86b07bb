"""ddsr.workflows.demo: the offline demo data and the demo's report."""

import socket

import numpy as np
import pytest

from ddsr.workflows import demo
from ddsr.matlab import imread


def test_demo_sets_are_disjoint_and_fit_the_roles():
    seen = {}
    for set_name, names in demo.DEMO_SETS.items():
        for name in names:
            assert name not in seen, f"{name} is in {seen.get(name)} and {set_name}"
            seen[name] = set_name
    assert set(demo.SKIMAGE_SETS.values()) == set(demo.DEMO_SETS)
    # test images are colour photographs (the comparison shows colour), big enough for x3 crops
    for name in demo.DEMO_SETS[demo.SKIMAGE_SETS["test"]]:
        image = demo.load_bundled_image(name)
        assert image.ndim == 3 and min(image.shape[:2]) >= 200, name


def test_bundled_images_load_without_network(monkeypatch):
    """Every demo image ships inside the scikit-image wheel: loading it opens no connection."""
    def no_network(*args, **kwargs):
        raise AssertionError("the demo data tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for names in demo.DEMO_SETS.values():
        for name in names:
            image = demo.load_bundled_image(name)
            assert image.dtype == np.uint8 and min(image.shape[:2]) >= 21, name  # one 7x7 x3 patch at least


def test_unknown_image():
    with pytest.raises(ValueError, match="no image"):
        demo.load_bundled_image("no_such_image")


def test_write_demo_sets(tmp_path):
    import skimage.data

    sets = {"a-train": ("camera", "motorcycle_left"), "a-test": ("chelsea",)}
    written = demo.write_demo_sets(tmp_path, sets)
    assert sorted(p.name for p in (tmp_path / "a-train").iterdir()) == ["camera.png", "demo.json",
                                                                       "motorcycle_left.png"]
    # PNG is lossless: the files hold exactly the bundled pixels
    assert np.array_equal(imread(written["a-train"][0]), skimage.data.camera())
    assert np.array_equal(imread(written["a-train"][1]), skimage.data.stereo_motorcycle()[0])
    assert np.array_equal(imread(written["a-test"][0]), skimage.data.chelsea())
    # a second call finds them and rewrites nothing
    before = (tmp_path / "a-test" / "chelsea.png").stat().st_mtime_ns
    demo.write_demo_sets(tmp_path, sets)
    assert (tmp_path / "a-test" / "chelsea.png").stat().st_mtime_ns == before
    # a changed selection replaces the set folder
    demo.write_demo_sets(tmp_path, {"a-test": ("coffee",)})
    assert sorted(p.name for p in (tmp_path / "a-test").iterdir()) == ["coffee.png", "demo.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_real_sets(tmp_path):
    with pytest.raises(ValueError, match="no T91"):
        demo.real_sets(tmp_path)
    for name in ("T91", "Set5", "General-100"):
        (tmp_path / name).mkdir()
    assert demo.real_sets(tmp_path) == {"train": "T91", "val": "General-100", "test": "Set5"}
    (tmp_path / "BSD200-train").mkdir()
    assert demo.real_sets(tmp_path)["val"] == "BSD200-train"


def _facts(model_psnr):
    return {
        "experiment": "demo_x3", "net": "a small net", "data": "bundled photographs",
        "test_set": "skimage-test", "scale": 3, "iterations": 4000,
        "model": {"psnr": model_psnr, "ssim": 0.87, "ifc": 4.5},
        "bicubic": {"psnr": 29.99, "ssim": 0.85, "ifc": 4.0},
        "per_image": {"astronaut": (28.68, 29.5), "chelsea": (32.88, 33.0)},
        "min_gain": 0.5, "seconds": {"data": 2.0, "database": 3.0, "train": 600.0, "evaluate": 10.0},
        "seconds_per_iteration": 0.15, "machine": "2 CPU cores",
        "table3": "| Method | Metric | skimage-test x3 |\n", "commands": ["caffe train -solver solvers/demo_x3.prototxt"],
        "figures": {"Comparison": "comparison.png"},
    }


def test_report_markdown():
    text = demo.report_markdown(_facts(30.80))
    assert "PSNR 30.80 dB vs bicubic 29.99 dB (+0.81 dB; the demo's bar is +0.5 dB: passes)" in text
    assert "| gain | +0.81 | +0.0200 | +0.50 |" in text
    assert "| astronaut | 28.68 | 29.50 | +0.82 |" in text
    assert "| chelsea | 32.88 | 33.00 | +0.12 |" in text
    assert "10.2 min (0.150 s/iteration)" not in text  # training minutes are the train step's
    assert "4000 iterations, 10.0 min (0.150 s/iteration)" in text
    assert "Total time: 10.2 min" in text
    assert "![Comparison](comparison.png)" in text
    assert "caffe train -solver solvers/demo_x3.prototxt" in text
    assert "FAILS" in demo.report_markdown(_facts(30.20))
