"""ddsr.evaluation: the per-image protocol, the Caffe runner (padding, tiling, checks), a whole run."""

import json
import shutil

import numpy as np
import pytest
from scipy import ndimage

from ddsr.evaluation import deploy_net, metrics as quality_metrics, protocol, run as eval_run, upscaler
from ddsr.matlab import imread, rgb2y, rgb2ycbcr, ycbcr2rgb

# shared/paper/SUMMARY.md, "Checked values of that protocol for bicubic (4 decimals)".
SRCNN_PROTOCOL_BICUBIC = {
    "Set5": {2: (33.6614, 0.92988), 3: (30.3922, 0.86821), 4: (28.4207, 0.81037)},
    "Set14": {2: (30.2318, 0.86865), 3: (27.5405, 0.77361), 4: (26.0001, 0.70186)},
}


@pytest.fixture(scope="module")
def datasets(shared_dir):
    return shared_dir / "datasets"


def _bicubic_means(data_root, set_name, scales, metrics):
    result = eval_run.evaluate(data_root, [set_name], scales, lambda s: protocol.BicubicUpscaler(), metrics=metrics)
    assert result.errors == []
    return {s: {m: np.mean([r[m] for r in result.records if r["scale"] == s]) for m in metrics} for s in scales}


# --- images and the protocol -------------------------------------------------------------------

def test_prepare_image_steps():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (23, 17, 3), dtype=np.uint8)
    image = protocol.prepare_image(hr, 3, name="r")
    assert image.hr.shape == (21, 15, 3)
    np.testing.assert_array_equal(image.hr_y, rgb2y(hr[:21, :15]))
    assert image.lr_y.dtype == np.float32 and image.lr_y.shape == (7, 5)
    assert image.bicubic_y.dtype == np.float32 and image.bicubic_y.shape == (21, 15)
    assert image.bicubic_cbcr.shape == (21, 15, 2) and image.bicubic_cbcr.dtype == np.uint8
    grey = protocol.prepare_image(hr[..., 0], 2)
    np.testing.assert_array_equal(grey.hr_y, hr[:22, :16, 0])  # a greyscale image is its own Y
    assert grey.bicubic_cbcr is None
    with pytest.raises(protocol.ImageError, match="too small for scale 4"):
        protocol.prepare_image(hr[:9, :9], 4)


def test_bicubic_lr_is_single_precision_and_not_rounded():
    # A horizontal ramp of 10 grey levels per pixel: the antialiased cubic filter (support +-6
    # pixels at 1/3) reproduces a linear function, so LR pixel x (0-based) away from the mirrored
    # borders is the ramp at its centre, input pixel 3x + 1: 10 (3x + 1).
    hr = np.tile(np.arange(0, 240, 10, dtype=np.uint8), (24, 1))
    lr = protocol.prepare_image(hr, 3).lr_y
    assert lr.dtype == np.float32
    np.testing.assert_allclose(lr[0, 2:6] * 255, [70, 100, 130, 160], atol=1e-3)
    # not rounded to 1/255 steps
    noise = np.random.default_rng(5).integers(0, 256, (24, 24), dtype=np.uint8)
    lr = protocol.prepare_image(noise, 3).lr_y * 255
    assert np.abs(lr - np.round(lr)).max() > 0.1


@pytest.mark.parametrize("set_name", ["Set5"])
def test_protocol_reproduces_the_srcnn_bicubic_values(datasets, set_name):
    means = _bicubic_means(datasets, set_name, [2, 3, 4], ("psnr", "ssim"))
    for scale, (psnr, ssim) in SRCNN_PROTOCOL_BICUBIC[set_name].items():
        assert abs(means[scale]["psnr"] - psnr) <= 5e-5, scale
        assert abs(means[scale]["ssim"] - ssim) <= 5e-6, scale


def test_protocol_ifc_set5_x4(datasets):
    # SUMMARY.md: IFC of the protocol's bicubic Set5 x4 is about 2.33 (paper: 2.35).
    means = _bicubic_means(datasets, "Set5", [4], ("ifc",))
    assert abs(means[4]["ifc"] - 2.33) < 0.01


def test_measure_shaves_the_scale():
    hr = np.full((20, 20), 100, dtype=np.uint8)
    sr = hr.copy()
    sr[3:-3, 3:-3] += 2          # a uniform error of 2 inside the border
    sr[:3, :] = 0                # anything in the shaved border is ignored
    values = quality_metrics.measure(hr, sr, 3, metrics=("psnr",))
    assert values["psnr"] == pytest.approx(10 * np.log10(255.0 ** 2 / 4))
    with pytest.raises(ValueError, match="sizes differ"):
        quality_metrics.measure(hr, sr[:-1], 3)


def test_to_uint8_clips_then_rounds_half_away():
    out = protocol.to_uint8(np.array([-0.2, 0.0, 0.5, 1.0, 1.7], dtype=np.float32))
    np.testing.assert_array_equal(out, [0, 0, 128, 255, 255])  # 127.5 -> 128


def test_colour_output():
    # A constant colour survives: bicubic of a constant is that constant.
    hr = np.empty((12, 12, 3), dtype=np.uint8)
    hr[...] = (200, 100, 50)
    image = protocol.prepare_image(hr, 3)
    rgb = protocol.colour_output(image, image.hr_y)
    assert rgb.shape == (12, 12, 3)
    np.testing.assert_array_equal(rgb, ycbcr2rgb(rgb2ycbcr(hr)))
    assert np.abs(rgb.astype(int) - hr).max() <= 1
    # Y comes from the SR image, colour from the bicubic chroma
    dark = protocol.colour_output(image, np.full((12, 12), 100, dtype=np.uint8))
    assert np.abs(rgb2y(dark).astype(int) - 100).max() <= 1  # no channel clips at Y = 100
    grey = protocol.prepare_image(hr[..., 0], 3)
    y = np.full((12, 12), 7, dtype=np.uint8)
    assert protocol.colour_output(grey, y) is y


def test_shift_output():
    y = np.arange(16, dtype=np.float32).reshape(4, 4)
    shifted = upscaler.shift_output(y, (1, 1))
    # pixel (i, j) estimates HR (i+1, j+1): HR (i, j) is y[i-1, j-1], the edge repeated
    np.testing.assert_array_equal(shifted[1:, 1:], y[:-1, :-1])
    np.testing.assert_array_equal(shifted[0], [0, 0, 1, 2])
    assert upscaler.shift_output(y, (0, 0)) is y


# --- sidecar ---------------------------------------------------------------------------------

def test_sidecar_read_and_override(tmp_path):
    deploy = tmp_path / "srcnn_x3_deploy.prototxt"
    deploy.write_text("")
    assert deploy_net.read_sidecar(deploy) == ({}, None)
    sidecar = tmp_path / "srcnn_x3_deploy.eval.json"
    sidecar.write_text(json.dumps({"input": "bicubic", "pad_input": 8, "name": "SRCNN", "scale": 3,
                                   "comment": "converted", "output_offset": [1, 1]}))
    found, path = deploy_net.read_sidecar(deploy, 3)
    assert path == sidecar
    assert found == {"input": "bicubic", "pad_input": 8, "name": "SRCNN", "output_offset": (1, 1)}
    settings, _ = deploy_net.resolve_settings(deploy, 3, pad_input=2, input=None)
    assert (settings.input, settings.pad_input, settings.output_offset) == ("bicubic", 2, (1, 1))
    with pytest.raises(deploy_net.ModelError, match="recorded for scale 3, evaluated at scale 2"):
        deploy_net.read_sidecar(deploy, 2)


def test_sidecar_alternative_name_unknown_keys_and_errors(tmp_path):
    deploy = tmp_path / "net.prototxt"
    sidecar = tmp_path / "net.prototxt.eval.json"
    sidecar.write_text(json.dumps({"pad_input": 4, "padding": 3}))
    with pytest.warns(UserWarning, match="ignoring unknown keys \\['padding'\\]"):
        assert deploy_net.read_sidecar(deploy)[0] == {"pad_input": 4}
    for bad, message in [({"input": "hr"}, "input must be one of"), ({"pad_input": -1}, "pad_input must be"),
                         ({"output_offset": [1]}, "output_offset must be"), ([1, 2], "JSON object")]:
        sidecar.write_text(json.dumps(bad))
        with pytest.raises(deploy_net.ModelError, match=message):
            deploy_net.read_sidecar(deploy)
    sidecar.write_text("{not json")
    with pytest.raises(deploy_net.ModelError, match="cannot read the evaluation sidecar"):
        deploy_net.read_sidecar(deploy)


# --- a whole run -----------------------------------------------------------------------------

def _make_set(folder, datasets, corrupt=True):
    """bird (colour) and a crop of bridge (greyscale) from the shared sets, and a corrupt file."""
    folder.mkdir(parents=True)
    shutil.copy(datasets / "Set5" / "bird_GT.bmp", folder / "bird_GT.bmp")
    from PIL import Image

    Image.fromarray(imread(datasets / "Set14" / "bridge.bmp")[:100, :120]).save(folder / "bridge.png")
    if corrupt:
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")


def test_evaluate_reports_corrupt_images_and_handles_greyscale(tmp_path, datasets):
    _make_set(tmp_path / "Mini", datasets)
    seen = []
    result = eval_run.evaluate(tmp_path, ["Mini"], [3, 2], lambda s: protocol.BicubicUpscaler(), metrics=("psnr",),
                         image_sink=lambda st, sc, im, sr: seen.append((sc, im.name, protocol.colour_output(im, sr).ndim)))
    assert len(result.errors) == 1 and "broken.png" in result.errors[0]  # reported once, not per scale
    assert [(r["scale"], r["image"]) for r in result.records] == [(3, "bird_GT"), (3, "bridge"),
                                                                  (2, "bird_GT"), (2, "bridge")]
    bird3 = result.records[0]
    # Fig. 7 of the paper prints 32.53 dB for bird; the protocol (and SRCNN's code) gives 32.57
    assert round(bird3["psnr"], 2) == 32.57
    assert (bird3["h"], bird3["w"]) == (288, 288)
    assert (result.records[1]["h"], result.records[1]["w"]) == (99, 120)
    assert seen[1] == (3, "bridge", 2)  # greyscale stays greyscale
    assert seen[0] == (3, "bird_GT", 3)


def test_evaluate_errors_before_work(tmp_path):
    with pytest.raises(ValueError, match="unknown set"):
        eval_run.evaluate(tmp_path, ["Set5"], [3], lambda s: protocol.BicubicUpscaler())
    with pytest.raises(ValueError, match="unknown metric 'mse'"):
        eval_run.evaluate(tmp_path, ["Set5"], [3], lambda s: protocol.BicubicUpscaler(), metrics=("mse",))


def test_evaluate_jobs_give_the_same_records(tmp_path, datasets):
    _make_set(tmp_path / "Mini", datasets, corrupt=False)
    one = eval_run.evaluate(tmp_path, ["Mini"], [3], lambda s: protocol.BicubicUpscaler(), metrics=("psnr", "ssim"))
    two = eval_run.evaluate(tmp_path, ["Mini"], [3], lambda s: protocol.BicubicUpscaler(), metrics=("psnr", "ssim"), jobs=2)
    strip = [{k: v for k, v in r.items() if k != "forward_ms"} for r in one.records]
    assert strip == [{k: v for k, v in r.items() if k != "forward_ms"} for r in two.records]


# --- Caffe -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nets(caffe, tmp_path_factory):
    import tiny_nets

    folder = tmp_path_factory.mktemp("nets")
    return {
        "rand3": tiny_nets.random_upsampler(caffe, folder, 3, name="rand3"),
        "rand3_badpad": tiny_nets.random_upsampler(caffe, folder, 3, name="rand3_badpad", deconv_pad=2),
        "rand3_wide": tiny_nets.random_upsampler(caffe, folder, 3, name="rand3_wide", channels=6),
        "box3": tiny_nets.box_net(caffe, folder, 3, name="box3"),
        "box1": tiny_nets.box_net(caffe, folder, 1, name="box1"),
    }


def _load(nets, key):
    return deploy_net.load_net(*nets[key])


@pytest.mark.caffe
def test_pad_input_geometry_for_an_upsampling_net(nets):
    net, _ = _load(nets, "box3")
    x = np.random.default_rng(1).random((7, 9), dtype=np.float32)
    hr = np.kron(x, np.ones((3, 3), dtype=np.float32))  # nearest-neighbour upsampling by 3
    # Caffe's zero padding at the HR border ...
    np.testing.assert_allclose(upscaler.forward_padded(net, x, 3), ndimage.uniform_filter(hr, 3, mode="constant"),
                               atol=1e-6)
    # ... and with the LR input replicate-padded by 1 (= 3 HR pixels), MATLAB's replicate padding
    for pad in (1, 2):
        np.testing.assert_allclose(upscaler.forward_padded(net, x, 3, pad=pad),
                                   ndimage.uniform_filter(hr, 3, mode="nearest"), atol=1e-6)


@pytest.mark.caffe
def test_pad_input_geometry_for_a_net_fed_the_bicubic_image(nets):
    net, _ = _load(nets, "box1")
    x = np.random.default_rng(2).random((10, 13), dtype=np.float32)
    np.testing.assert_allclose(upscaler.forward_padded(net, x, 1, pad=2), ndimage.uniform_filter(x, 3, mode="nearest"),
                               atol=1e-6)


@pytest.mark.caffe
def test_context_radius(nets):
    _, param = _load(nets, "rand3")
    # deconvolution k=5 s=3 p=1: ceil(3/3) + 1 = 2 LR pixels; three 3x3 convs on the HR grid: 3 * 1/3
    assert upscaler.context_radius(param) == 3
    param.layer.add(name="fc", type="InnerProduct", bottom=["recon"], top=["fc"])
    assert upscaler.context_radius(param) is None


@pytest.mark.caffe
def test_tiled_equals_whole_image(nets):
    net, param = _load(nets, "rand3")
    x = np.random.default_rng(3).random((37, 29), dtype=np.float32)
    whole = upscaler.forward_padded(net, x, 3, pad=2)
    overlap = upscaler.context_radius(param)
    tiled = upscaler.forward_padded(net, x, 3, pad=2, tile=10, overlap=overlap)
    assert tiled.shape == whole.shape == (111, 87)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)
    # without context the tile seams show: the check above can fail
    seams = upscaler.forward_padded(net, x, 3, pad=2, tile=10, overlap=0)
    assert np.abs(seams - whole).max() > 1e-3


@pytest.mark.caffe
def test_wrong_output_size_names_both_sizes(nets):
    net, _ = _load(nets, "rand3_badpad")
    x = np.zeros((8, 10), dtype=np.float32)
    with pytest.raises(deploy_net.NetOutputError, match=r"is 1x1x22x28 for a 1x1x8x10 input; expected 1x1x24x30 \(3 x input\)"):
        upscaler.forward_padded(net, x, 3)
    net1, _ = _load(nets, "box3")
    with pytest.raises(deploy_net.NetOutputError, match=r"expected 1x1x8x10 \(the input's size\)"):
        upscaler.forward_padded(net1, x, 1)  # an upsampling net evaluated as if fed the bicubic image


@pytest.mark.caffe
def test_weights_checked_before_caffe_aborts(nets, tmp_path):
    deploy, _ = nets["rand3"]
    _, wide_weights = nets["rand3_wide"]
    with pytest.raises(deploy_net.ModelError, match=r"layer 'up' blob 0 is 1x4x5x5 in the net, 1x6x5x5 in the weights"):
        deploy_net.load_net(deploy, wide_weights)
    _, box_weights = nets["box3"]  # its 'up' has no bias
    with pytest.raises(deploy_net.ModelError, match="layer 'up' has 2 blobs in the net, 1 in the weights"):
        deploy_net.load_net(deploy, box_weights)
    _, blur_weights = nets["box1"]  # only a 'blur' layer
    with pytest.raises(deploy_net.ModelError, match="they have no layer 'up'"):
        deploy_net.load_net(deploy, blur_weights)
    with pytest.raises(deploy_net.ModelError, match="do not exist"):
        deploy_net.load_net(deploy, tmp_path / "missing.caffemodel")
    (tmp_path / "junk.caffemodel").write_bytes(b"\xff\xfe not a protobuf \x00\x01")
    with pytest.raises(deploy_net.ModelError, match="not a Caffe weights file"):
        deploy_net.load_net(deploy, tmp_path / "junk.caffemodel")
    (tmp_path / "bad.prototxt").write_text("layer { name: 'x' type: 'Input' top: 'data' oops }")
    with pytest.raises(deploy_net.ModelError, match="not a Caffe net definition"):
        deploy_net.load_net(tmp_path / "bad.prototxt", wide_weights)
    with pytest.raises(deploy_net.ModelError, match="deploy net .* does not exist"):
        deploy_net.load_net(tmp_path / "none.prototxt", wide_weights)


@pytest.mark.caffe
def test_gpu_that_cannot_be_used_is_a_clear_error(caffe):
    # CPU-only Caffe aborts on set_device; a CUDA build has no GPU 99 either
    with pytest.raises(deploy_net.ModelError, match="cannot use GPU 99"):
        deploy_net.use_gpu(99)


@pytest.mark.caffe
def test_ddsr_net_end_to_end_with_tiling(caffe, tmp_path, datasets):
    """A small DDSR (ddsr.model.nets) with random weights through evaluate(), whole and tiled."""
    import tiny_nets

    deploy, weights = tiny_nets.ddsr_small(caffe, tmp_path / "net", scale=3)
    (tmp_path / "Mini").mkdir()
    from PIL import Image

    Image.fromarray(imread(datasets / "Set5" / "bird_GT.bmp")[100:190, 60:171]).save(tmp_path / "Mini" / "crop.png")

    def run(tile):
        net, param = deploy_net.load_net(deploy, weights)
        settings = deploy_net.EvalSettings(pad_input=2, tile=tile)
        return eval_run.evaluate(tmp_path, ["Mini"], [3],
                           lambda s: upscaler.CaffeUpscaler(net, s, settings, net_param=param, label="ddsr"),
                           metrics=("psnr", "ssim"), baseline=True)

    whole, tiled = run(None), run(16)
    (rec,), (base,) = whole.records, whole.baseline
    assert (rec["h"], rec["w"]) == (90, 111) and rec["forward_ms"] > 0
    assert np.isfinite(rec["psnr"]) and rec["psnr"] != base["psnr"]
    assert abs(tiled.records[0]["psnr"] - rec["psnr"]) < 1e-6
    # the bicubic baseline of the crop, computed beside the model, is the bicubic method's value
    alone = eval_run.evaluate(tmp_path, ["Mini"], [3], lambda s: protocol.BicubicUpscaler(), metrics=("psnr", "ssim"))
    assert alone.records[0]["psnr"] == base["psnr"]


def test_weights_check_reads_scalar_blobs_as_caffe_does(caffe, tmp_path):
    # A channel-shared PReLU slope is a 0-axis blob: net.save writes it without any shape
    # field, and Caffe (Blob::FromProto) reads that as a scalar, not as a legacy 4-D blob.
    from caffe.proto import caffe_pb2

    deploy = tmp_path / "prelu.prototxt"
    deploy.write_text(
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }\n'
        'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"\n'
        '        convolution_param { num_output: 2 kernel_size: 3 pad: 1 } }\n'
        'layer { name: "prelu" type: "PReLU" bottom: "conv" top: "conv" prelu_param { channel_shared: true } }\n')
    net = caffe.Net(str(deploy), caffe.TEST)
    weights = tmp_path / "prelu.caffemodel"
    net.save(str(weights))
    param = caffe_pb2.NetParameter()
    param.ParseFromString(weights.read_bytes())
    slope = [layer for layer in param.layer if layer.name == "prelu"][0].blobs[0]
    assert not slope.HasField("shape") and not slope.HasField("num")
    shapes = {name: [tuple(b.data.shape) for b in blobs] for name, blobs in net.params.items()}
    assert shapes["prelu"] == [()]
    deploy_net.check_weights(shapes, weights)  # must not raise
    # A legacy blob (num/channels/height/width set) still compares as 4-D.
    slope.num, slope.channels, slope.height, slope.width = 1, 1, 1, 2
    weights.write_bytes(param.SerializeToString())
    with pytest.raises(deploy_net.ModelError, match="prelu"):
        deploy_net.check_weights(shapes, weights)
