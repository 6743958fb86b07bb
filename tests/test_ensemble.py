"""ddsr.inference.ensemble: the 8 dihedral transforms, their exact inverses, the mean."""

import numpy as np
import pytest
from scipy import ndimage

from ddsr.inference.ensemble import TRANSFORMS, inverse_transform, self_ensemble, transform
from tool_module import load_tool


@pytest.fixture
def image():
    return np.random.default_rng(0).random((7, 11), dtype=np.float32)


def test_the_eight_transforms_are_distinct_and_exactly_inverted(image):
    seen = set()
    for t in TRANSFORMS:
        y = transform(image, t)
        assert y.shape == (image.shape if t % 2 == 0 else image.shape[::-1])
        assert np.array_equal(inverse_transform(y, t), image)
        seen.add(y.tobytes() + bytes(y.shape))
    assert len(seen) == 8
    # The group: mirror then rotate; t=4 is the plain left-right mirror, t=1 a 90-degree turn.
    assert np.array_equal(transform(image, 4), image[:, ::-1])
    assert np.array_equal(transform(image, 1), np.rot90(image))
    with pytest.raises(ValueError, match="0..7"):
        transform(image, 8)


def test_channels_follow_the_pixels():
    rgb = np.random.default_rng(1).random((5, 6, 3))
    for t in TRANSFORMS:
        y = transform(rgb, t)
        assert y.shape[2] == 3
        assert np.array_equal(inverse_transform(y, t), rgb)


def _upscale_and_filter(kernel):
    def sr(x):
        return ndimage.correlate(np.kron(x, np.ones((2, 2), dtype=x.dtype)), kernel, mode="nearest")
    return sr


def test_a_method_that_commutes_with_the_group_is_unchanged(image):
    """Nearest-neighbour x2 then a square-symmetric 3x3 kernel: equivariant, so x8 = single pass."""
    kernel = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32) / 16
    sr = _upscale_and_filter(kernel)
    np.testing.assert_allclose(self_ensemble(sr, image), sr(image), atol=1e-6)
    assert self_ensemble(sr, image).dtype == np.float32


def test_a_method_that_does_not_commute_is_changed(image):
    kernel = np.array([[0, 0, 0], [0, 0.5, 0.5], [0, 0, 0]], dtype=np.float32)  # looks right only
    sr = _upscale_and_filter(kernel)
    assert np.abs(self_ensemble(sr, image) - sr(image)).max() > 1e-2


def test_the_mean_is_over_the_inverted_outputs(image):
    calls = []

    def identity(x):
        calls.append(x.shape)
        assert x.flags["C_CONTIGUOUS"]
        return x * 2.0

    np.testing.assert_array_equal(self_ensemble(identity, image), image * 2.0)
    assert calls == [(7, 11), (11, 7)] * 4


def test_a_size_changing_method_is_an_error(image):
    with pytest.raises(ValueError, match="transform 1"):
        self_ensemble(lambda x: np.zeros((7, 11)), image)


# --------------------------------------------------------------------------- through Caffe and eval

@pytest.fixture
def small_set(shared_dir, tmp_path):
    """Three Set5 images (the smaller ones) as a set of their own."""
    folder = tmp_path / "data" / "Set5part"
    folder.mkdir(parents=True)
    for name in ("bird_GT", "butterfly_GT", "head_GT"):
        (folder / f"{name}.bmp").symlink_to(shared_dir / "datasets" / "Set5" / f"{name}.bmp")
    return tmp_path / "data"


@pytest.mark.caffe
def test_eval_self_ensemble_is_its_own_row_and_commuting_nets_are_unchanged(caffe, small_set, tmp_path, capsys):
    """eval --self-ensemble: a "<name> (x8)" row beside the single-pass one, in <out>/x8/; a net that
    commutes with flips and rotations (nearest x2 + 3x3 mean) scores the same with it."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tiny_nets

    deploy, weights = tiny_nets.box_net(caffe, tmp_path / "m", 2, name="box_x2")
    out = tmp_path / "run"
    rc = load_tool("eval").main(["--model", str(deploy), "--weights", str(weights), "--sets", "Set5part",
                                 "--data-root", str(small_set), "--out", str(out), "--metrics", "psnr", "ssim",
                                 "--quiet", "--self-ensemble", "--name", "Box"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    single = json.loads((out / "summary.json").read_text())["Set5part"]["x2"]
    x8 = json.loads((out / "x8" / "summary.json").read_text())["Set5part"]["x2"]
    assert abs(single["psnr"] - x8["psnr"]) < 1e-3 and abs(single["ssim"] - x8["ssim"]) < 1e-5
    run = json.loads((out / "x8" / "run.json").read_text())
    assert (run["name"], run["paper_row"], run["self_ensemble"]) == ("Box (x8)", None, 8)
    table = (out / "table3.md").read_text()
    assert table.index("| Box | PSNR |") < table.index("| Box (x8) | PSNR |")
    assert "| Bicubic | PSNR |" in table
    assert sorted(p.name for p in (out / "x8" / "images" / "Set5part" / "x2").iterdir()) == [
        "bird_GT.png", "butterfly_GT.png", "head_GT.png"]


@pytest.mark.caffe
@pytest.mark.slow
def test_self_ensemble_improves_the_official_srcnn_x3(caffe, small_set, shared_dir, tmp_path):
    from ddsr.evaluation.run import evaluate
    from ddsr.evaluation.upscaler import load_upscaler
    from ddsr.inference.ensemble import SelfEnsembleUpscaler
    from ddsr.model import official

    paths = official.import_model("srcnn_x3", tmp_path / "models", source_dir=shared_dir / "models")
    upscaler = load_upscaler(paths["deploy"], paths["weights"], 3, label="SRCNN")
    single = evaluate(small_set, ["Set5part"], [3], lambda s: upscaler, metrics=("psnr",))
    x8 = evaluate(small_set, ["Set5part"], [3], lambda s: SelfEnsembleUpscaler(upscaler), metrics=("psnr",))
    gains = [b["psnr"] - a["psnr"] for a, b in zip(single.records, x8.records)]
    assert len(gains) == 3 and all(g > 0.05 for g in gains), gains
