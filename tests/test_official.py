"""ddsr.model.official and tools/import_official.py: the official SRCNN/FSRCNN weights in Caffe.

The oracle is ``tests/matlab_forward.py``, the authors' MATLAB forward passes written
out in numpy (replicate padding at every layer, ``deconv.m``'s placement). Caffe pads
with zeros, so a Caffe net and MATLAB agree exactly only where no padding reaches: the
interior, at least the receptive-field radius from every border. The tests compare
that interior (max abs difference < 1e-5), the exact output size, and the padded
evaluation path of ``tools/eval.py`` (replicate-padded input, cropped output).
"""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ddsr.model import official, official_weights
from ddsr.matlab import im2single, imread, imresize, modcrop, rgb2y

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matlab_forward  # noqa: E402

TOL = 1e-5
SRCNN_RADIUS = 4 + 0 + 2       # 9x9, 1x1, 5x5


def fsrcnn_margin(scale):
    """HR pixels from the border beyond which neither padding reaches an FSRCNN output.

    The conv layers see 2 + 0 + 4 * 1 + 0 = 6 LR pixels; deconvolution row r reads
    LR pixels (r - 4) / s .. (r + 4) / s, so rows r >= 6 s + 4 (and as far from the
    bottom, plus one for the x3 shift) are padding-free.
    """
    return 7 * scale + 4


@pytest.fixture(scope="module")
def models_dir(shared_dir):
    return shared_dir / "models"


@pytest.fixture(scope="module")
def butterfly_y(shared_dir):
    """A real image's Y channel, float in [0, 1] (a crop of Set5 butterfly)."""
    return im2single(rgb2y(imread(shared_dir / "datasets" / "Set5" / "butterfly_GT.bmp")))


def _manifest(models_dir):
    with open(models_dir / "MANIFEST.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


# --------------------------------------------------------------------------- registry and fetching

def test_registry_matches_the_shared_manifest(models_dir):
    rows = _manifest(models_dir)
    assert len(rows) == len(official_weights.OFFICIAL_WEIGHTS) == 6
    for row in rows:
        family = "srcnn" if row["folder"].startswith("SRCNN") else "fsrcnn"
        entry = official_weights.get_weights(f"{family}_{row['file'][:-4]}")
        assert (entry.folder, entry.file) == (row["folder"], row["file"])
        assert entry.sha256 == row["sha256"]
        assert entry.size == int(row["bytes"])
        assert (entry.repo, entry.commit, entry.path) == (
            row["source_repo"], row["source_commit"], row["source_path"])


def test_download_url_quotes_the_path():
    url = official_weights.get_weights("srcnn_x3").url()
    assert url == ("https://raw.githubusercontent.com/WangDequan/SRCNN/"
                   "85679e2ef74e058a1f1e79fe6ba349e93f1ee8ea/model/9-1-5%2891%20images%29/x3.mat")


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown official model 'srcnn_x5'"):
        official_weights.get_weights("srcnn_x5")


def test_fetch_from_a_local_copy_checks_sha256(models_dir, tmp_path):
    path = official_weights.fetch_weights("fsrcnn_x3", tmp_path / "cache", source_dir=models_dir)
    assert path == models_dir / "FSRCNN" / "x3.mat"
    assert not (tmp_path / "cache").exists()  # nothing copied or downloaded
    bad = tmp_path / "bad"
    shutil.copytree(models_dir / "FSRCNN", bad / "FSRCNN")
    target = bad / "FSRCNN" / "x3.mat"
    target.chmod(0o644)
    data = bytearray(target.read_bytes())
    data[-1] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        official_weights.fetch_weights("fsrcnn_x3", tmp_path / "cache", source_dir=bad)
    with pytest.raises(ValueError, match="no such file"):
        official_weights.fetch_weights("srcnn_x3", tmp_path / "cache", source_dir=bad)


def _raw_tree(root, models_dir, name, corrupt=False):
    """A file:// stand-in for raw.githubusercontent.com holding one model at its pinned path."""
    entry = official_weights.get_weights(name)
    dest = root / entry.repo / entry.commit / entry.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray((models_dir / entry.relpath).read_bytes())
    if corrupt:
        data[100] ^= 0xFF
    dest.write_bytes(bytes(data))
    return root.as_uri()


def test_fetch_downloads_verifies_and_reuses(models_dir, tmp_path):
    raw_base = _raw_tree(tmp_path / "raw", models_dir, "srcnn_x2")  # path with spaces and ()
    cache = tmp_path / "cache"
    path = official_weights.fetch_weights("srcnn_x2", cache, raw_base=raw_base)
    assert path == cache / "SRCNN-9-1-5-91images" / "x2.mat"
    assert path.read_bytes() == (models_dir / "SRCNN-9-1-5-91images" / "x2.mat").read_bytes()
    shutil.rmtree(tmp_path / "raw")
    # A verified file in the cache is reused without any download.
    assert official_weights.fetch_weights("srcnn_x2", cache, raw_base=raw_base) == path


def test_fetch_rejects_a_corrupt_download(models_dir, tmp_path):
    raw_base = _raw_tree(tmp_path / "raw", models_dir, "fsrcnn_x4", corrupt=True)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="sha256"):
        official_weights.fetch_weights("fsrcnn_x4", cache, raw_base=raw_base)
    assert not any(p.is_file() for p in cache.rglob("*"))  # no partial or bad file left


# --------------------------------------------------------------------------- conversion (numpy)

@pytest.mark.parametrize("scale", [2, 3, 4])
def test_srcnn_blobs_are_matlab_column_major_filters(models_dir, scale):
    mat = official.load_mat(models_dir / "SRCNN-9-1-5-91images" / f"x{scale}.mat")
    params = official.srcnn_params(mat)
    assert [b.shape for b in params["conv1"]] == [(64, 1, 9, 9), (64,)]
    assert [b.shape for b in params["conv2"]] == [(32, 64, 1, 1), (32,)]
    assert [b.shape for b in params["conv3"]] == [(1, 32, 5, 5), (1,)]
    for i in (0, 17, 63):
        np.testing.assert_allclose(params["conv1"][0][i, 0],
                                   matlab_forward.matlab_reshape_square(mat["weights_conv1"][:, i], 9), rtol=1e-6)
    assert params["conv2"][0][5, 40, 0, 0] == np.float32(mat["weights_conv2"][40, 0, 5])
    np.testing.assert_allclose(params["conv3"][0][0, 31],
                               matlab_forward.matlab_reshape_square(mat["weights_conv3"][31, :], 5), rtol=1e-6)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fsrcnn_blobs_and_geometry(models_dir, scale):
    path = models_dir / "FSRCNN" / f"x{scale}.mat"
    mat = official.load_mat(path)
    params = official.convert(f"fsrcnn_x{scale}", path)
    weights = [np.asarray(c) for c in mat["weights_conv"].ravel()]
    np.testing.assert_allclose(params["conv3"][0][7, 2],
                               matlab_forward.matlab_reshape_square(weights[2][2, :, 7], 3), rtol=1e-6)
    assert params["prelu1"][0].shape == ()  # channel-shared: Caffe's scalar slope blob
    assert params["prelu1"][0] == np.float32(mat["prelu_conv"].ravel()[0].ravel()[0])
    kernel, pad, taps = official.fsrcnn_deconv_geometry(scale)
    assert params["deconv"][0].shape == (56, 1, kernel, kernel)
    deconv = params["deconv"][0][:, 0]
    np.testing.assert_allclose(deconv[33, taps:taps + 9, taps:taps + 9],
                               matlab_forward.matlab_reshape_square(weights[7][0, :, 33], 9), rtol=1e-6)
    # Everything outside the released 9x9 taps is zero.
    assert np.abs(deconv).sum() == pytest.approx(np.abs(deconv[:, taps:taps + 9, taps:taps + 9]).sum())
    # Caffe's output rows: s (H - 1) + kernel - 2 pad = s H for every H.
    assert kernel - 2 * pad == scale


def test_deconv_geometry_of_the_x3_windows():
    assert official.fsrcnn_deconv_geometry(3, 9, "demo") == (9, 3, 0)     # pad 3: the demo's window
    assert official.fsrcnn_deconv_geometry(3, 9, "matlab") == (11, 4, 0)  # deconv.m's window
    assert official.fsrcnn_deconv_geometry(2) == official.fsrcnn_deconv_geometry(2, 9, "matlab") == (10, 4, 0)
    with pytest.raises(ValueError, match="x3_window"):
        official.fsrcnn_deconv_geometry(3, 9, "shifted")


def test_sidecar_settings():
    assert official.eval_settings("srcnn_x4")["input"] == "bicubic"
    fs = official.eval_settings("fsrcnn_x3")
    assert (fs["input"], fs["pad_input"], fs["name"], fs["scale"]) == ("lr", 8, "FSRCNN", 3)
    assert "pad 3" in fs["comment"]


# --------------------------------------------------------------------------- Caffe vs the MATLAB oracle

@pytest.fixture(scope="module")
def imported(caffe, models_dir, tmp_path_factory):
    """All six models (and FSRCNN x3 in deconv.m's window) imported offline into a temp folder."""
    out = tmp_path_factory.mktemp("models")
    paths = {name: official.import_model(name, out, source_dir=models_dir) for name in official_weights.MODEL_NAMES}
    paths["fsrcnn_x3_matlab"] = official.import_model("fsrcnn_x3", out / "matlab", source_dir=models_dir,
                                                      x3_window="matlab")
    return paths


def _forward(caffe, paths, x):
    net = caffe.Net(str(paths["deploy"]), str(paths["weights"]), caffe.TEST)
    net.blobs["data"].reshape(1, 1, *x.shape)
    net.reshape()
    net.blobs["data"].data[...] = x
    net.forward()
    return np.array(net.blobs[net.outputs[-1]].data[0, 0], dtype=np.float64)


@pytest.mark.caffe
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_srcnn_caffe_equals_matlab_forward(caffe, imported, models_dir, butterfly_y, scale):
    x = imresize(imresize(butterfly_y[100:148, 60:102], 1 / scale), scale)  # a bicubic image
    out = _forward(caffe, imported[f"srcnn_x{scale}"], x)
    ref = matlab_forward.srcnn_forward(official.load_mat(imported[f"srcnn_x{scale}"]["mat"]), x)
    assert out.shape == ref.shape == x.shape
    m = SRCNN_RADIUS
    assert np.abs(out - ref)[m:-m, m:-m].max() < TOL
    assert np.abs(out - ref).max() > 1e-3  # the border differs: zero vs replicate padding


@pytest.mark.caffe
@pytest.mark.parametrize("name, shift", [("fsrcnn_x2", 0), ("fsrcnn_x3", 1), ("fsrcnn_x4", 0),
                                         ("fsrcnn_x3_matlab", 0)])
def test_fsrcnn_caffe_equals_matlab_deconv_window(caffe, imported, butterfly_y, name, shift):
    scale = int(name[8])
    lr = imresize(modcrop(butterfly_y[90:210, 40:172], scale), 1 / scale)
    assert lr.shape[0] != lr.shape[1]
    out = _forward(caffe, imported[name], lr)
    ref = matlab_forward.fsrcnn_forward(official.load_mat(imported[name]["mat"]), lr, scale)
    assert out.shape == ref.shape == (scale * lr.shape[0], scale * lr.shape[1])
    # Caffe's row r is MATLAB's row r - shift (the demo's window at x3, deconv.m's otherwise).
    h, w = ref.shape
    diff = np.abs(out[shift:, shift:] - ref[:h - shift, :w - shift])
    m = fsrcnn_margin(scale)
    assert np.abs(diff[m:-m, m:-m]).max() < TOL
    if shift:
        # Without the shift the two would not agree anywhere near 1e-5.
        assert np.abs(out - ref)[m:-m, m:-m].max() > 1e-2


@pytest.mark.caffe
@pytest.mark.parametrize("name", ["srcnn_x3", "fsrcnn_x2", "fsrcnn_x3"])
def test_padded_evaluation_reproduces_matlab_up_to_the_border(caffe, imported, butterfly_y, name):
    """tools/eval.py's --pad-input path (replicate pad, forward, crop) against MATLAB on a whole image.

    The crop must land on the same pixels as MATLAB's output (exact in the interior);
    near the border, replicating the input once is MATLAB's replicate padding at every
    layer for SRCNN's shaved window, and close to it for FSRCNN.
    """
    from ddsr.evaluation.upscaler import forward_padded

    scale = int(name[-1])
    settings = json.loads(imported[name]["sidecar"].read_text())
    net = caffe.Net(str(imported[name]["deploy"]), str(imported[name]["weights"]), caffe.TEST)
    mat = official.load_mat(imported[name]["mat"])
    lr = imresize(modcrop(butterfly_y[60:156, 30:156], scale), 1 / scale)
    shift = 1 if name == "fsrcnn_x3" else 0
    if settings["input"] == "bicubic":
        x = imresize(lr, scale)
        out = forward_padded(net, x, 1, pad=settings["pad_input"])
        ref = matlab_forward.srcnn_forward(mat, x)
    else:
        out = forward_padded(net, lr, scale, pad=settings["pad_input"])
        ref = matlab_forward.fsrcnn_forward(mat, lr, scale)
    assert out.shape == ref.shape
    h, w = ref.shape
    diff = np.abs(out[shift:, shift:] - ref[:h - shift, :w - shift])
    m = fsrcnn_margin(scale) if name.startswith("fsrcnn") else SRCNN_RADIUS
    assert diff[m:-m, m:-m].max() < TOL
    # What the metrics see (a border of `scale` pixels shaved): SRCNN is exact there, since only
    # conv3's 2-pixel padding reads features that MATLAB pads and Caffe computes; FSRCNN's
    # deeper padding leaves a small difference near the border (0.02-0.03 on this crop).
    if name.startswith("srcnn"):
        assert diff[scale:-scale, scale:-scale].max() < TOL
    else:
        assert 1e-3 < diff[scale:-scale, scale:-scale].max() < 0.05


# --------------------------------------------------------------------------- the tool

TOOL = Path(__file__).resolve().parents[1] / "tools" / "import_official.py"


def _run_tool(*args, cwd):
    env = dict(os.environ, GLOG_minloglevel="2")
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env)


@pytest.mark.caffe
def test_import_tool_offline_writes_net_weights_and_sidecar(caffe, models_dir, tmp_path):
    result = _run_tool("--from", models_dir, "--out", tmp_path / "models", "fsrcnn_x3", "srcnn_x2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "models"
    for name in ("fsrcnn_x3", "srcnn_x2"):
        assert (out / f"{name}_deploy.prototxt").is_file()
        assert (out / f"{name}.caffemodel").is_file()
    assert not (out / "official").exists()  # offline: nothing downloaded or cached
    text = (out / "fsrcnn_x3_deploy.prototxt").read_text()
    assert "channel_shared: true" in text and "type: \"Deconvolution\"" in text
    from ddsr.evaluation.deploy_net import read_sidecar

    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every sidecar key is one eval.py knows
        settings, path = read_sidecar(out / "srcnn_x2_deploy.prototxt", scale=2)
    assert path == out / "srcnn_x2_deploy.eval.json"
    assert settings == {"input": "bicubic", "pad_input": 8, "name": "SRCNN"}
    # The channel-shared PReLU slope is a 0-axis blob with an explicit empty shape, so that
    # eval.py's weight check (which reads the file, not the net) sees a scalar.
    from ddsr.evaluation.deploy_net import stored_weight_shapes

    stored = stored_weight_shapes(out / "fsrcnn_x3.caffemodel")
    assert stored["prelu1"] == [((), False)]
    assert stored["deconv"][0] == ((56, 1, 9, 9), False)


def test_import_tool_errors_are_one_line(tmp_path, models_dir):
    result = _run_tool("--from", tmp_path / "nowhere", "--out", tmp_path / "m", cwd=tmp_path)
    assert result.returncode != 0
    assert "import_official.py: error:" in result.stderr
    result = _run_tool("srcnn_x9", "--out", tmp_path / "m", cwd=tmp_path)
    assert result.returncode != 0 and "unknown model" in result.stderr
    empty = tmp_path / "empty"
    (empty / "FSRCNN").mkdir(parents=True)
    result = _run_tool("--from", empty, "--out", tmp_path / "m", "fsrcnn_x2", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("import_official.py: error:")
    assert "no such file" in result.stderr


# --------------------------------------------------------------------------- published numbers

@pytest.mark.caffe
@pytest.mark.slow
@pytest.mark.parametrize("name, published, tol", [("srcnn_x3", 32.39, 0.02), ("fsrcnn_x3", 33.16, 0.05)])
def test_set5_x3_psnr_matches_the_paper(caffe, imported, shared_dir, name, published, tol):
    """Set5 x3 mean PSNR through the evaluation pipeline: the SRCNN/FSRCNN papers' values."""
    from ddsr.evaluation.upscaler import CaffeUpscaler
    from ddsr.evaluation.deploy_net import EvalSettings
    from ddsr.evaluation.run import evaluate

    settings_json = json.loads(imported[name]["sidecar"].read_text())
    net = caffe.Net(str(imported[name]["deploy"]), str(imported[name]["weights"]), caffe.TEST)
    settings = EvalSettings(input=settings_json["input"], pad_input=settings_json["pad_input"])
    result = evaluate(shared_dir / "datasets", ["Set5"], [3], lambda s: CaffeUpscaler(net, s, settings),
                      metrics=("psnr",))
    assert not result.errors
    mean = np.mean([r["psnr"] for r in result.records])
    assert len(result.records) == 5
    assert abs(mean - published) <= tol
