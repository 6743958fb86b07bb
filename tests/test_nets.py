"""The generated DDSR nets, through pycaffe: sizes, alignment, initial scale, parameters."""

import math

import numpy as np
import pytest

from ddsr.model import nets
from ddsr.model.experiments import load_experiments

SIZES = (7, 8, 17, 32)
SLOPE = 0.25  # the PReLU's initial slope written in the nets


@pytest.fixture(scope="module")
def experiments(repo_root):
    return load_experiments(repo_root / "experiments.yaml")


def _deploy(caffe, repo_root, name):
    return caffe.Net(str(repo_root / "prototxt" / f"{name}_deploy.prototxt"), caffe.TEST)


# --- geometry, by hand ------------------------------------------------------------------

@pytest.mark.parametrize("scale, kernel, pad", [(2, 4, 1), (2, 2, 0), (3, 3, 0), (3, 5, 1),
                                                (3, 7, 2), (4, 4, 0), (4, 8, 2)])
def test_deconv_pad_gives_scale_times_n(scale, kernel, pad):
    assert nets.deconv_pad(scale, kernel) == pad
    for n in SIZES:  # Caffe's deconvolution output size: s(n - 1) + k - 2p
        assert scale * (n - 1) + kernel - 2 * pad == scale * n


@pytest.mark.parametrize("scale, kernel", [(2, 3), (4, 3), (3, 4), (3, 1)])
def test_deconv_pad_rejects_kernels_that_cannot_align(scale, kernel):
    with pytest.raises(ValueError, match="cannot give exactly"):
        nets.deconv_pad(scale, kernel)


def test_he_std_values():
    # sqrt(2 / ((1 + 0.25^2) * 3*3*64)) by hand = 0.0571662
    assert nets.he_std(576) == pytest.approx(0.0571662, rel=1e-6)
    # x3, 3x3 deconvolution: each HR pixel gets exactly one LR pixel; the image is not rectified
    assert nets.he_std(nets.deconv_fan_in(1, 3, 3), rectified_input=False) == 1.0
    assert nets.deconv_fan_in(1, 4, 2) == 4.0
    assert nets.deconv_fan_in(1, 7, 3) == pytest.approx(49 / 9)


def test_hand_parameter_count():
    # DDSR-18 x3: deconv 9*64 + 64 bias + 64 slopes = 704; 17 x (9*64*64 + 64 + 64) = 628864;
    # reconstruction 9*64 + 1 = 577.
    assert nets.parameter_count() == 704 + 628864 + 577 == 630145


# --- through pycaffe --------------------------------------------------------------------

@pytest.mark.caffe
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_deploy_output_is_scale_times_input(caffe, repo_root, scale):
    net = _deploy(caffe, repo_root, f"ddsr_x{scale}")
    assert list(net.inputs) == ["data"] and list(net.outputs) == ["recon"]
    for h in SIZES:
        for w in SIZES:
            net.blobs["data"].reshape(1, 1, h, w)
            net.reshape()
            assert net.blobs["recon"].data.shape == (1, 1, scale * h, scale * w)
    net.blobs["data"].reshape(1, 1, 7, 8)
    net.reshape()
    net.blobs["data"].data[...] = np.random.default_rng(0).random((1, 1, 7, 8))
    assert net.forward()["recon"].shape == (1, 1, 7 * scale, 8 * scale)


def _set_interpolator(net, experiment, kernel_1d):
    """Weights that make the whole net an upsampler with the separable ``kernel_1d``.

    Channel 0 of the deconvolution carries the interpolation, every PReLU is the
    identity (slope 1), each 3x3 conv copies channel 0 (centre tap 1) and the
    reconstruction layer reads channel 0 (halved when the residual doubles it).
    """
    c = experiment.net
    for name, blobs in net.params.items():
        for blob in blobs:
            blob.data[...] = 1.0 if name.startswith(("prelu", "upsample_prelu")) else 0.0
    net.params["upsample"][0].data[0, 0] = np.outer(kernel_1d, kernel_1d)
    for i in range(1, c.depth):
        net.params[f"conv{i}"][0].data[0, 0, 1, 1] = 1.0
    net.params["recon"][0].data[0, 0, 1, 1] = 0.5 if c.residual else 1.0


def _tap_offsets(scale, kernel):
    """HR offset of each deconvolution tap from its LR pixel's centre s*i + (s-1)/2."""
    pad = nets.deconv_pad(scale, kernel)
    return np.arange(kernel) - pad - (scale - 1) / 2


@pytest.mark.caffe
@pytest.mark.parametrize("name", ["ddsr_x2", "ddsr_x3", "ddsr_x4", "ddsr_x3_k5", "ddsr_x3_k7",
                                  "ddsr_x3_d6", "ddsr_x3_nores", "demo_x3"])
def test_nearest_neighbour_weights_give_each_lr_pixel_its_hr_block(caffe, repo_root,
                                                                   experiments, name):
    # With taps 1 where |offset| < s/2, a net aligned with MATLAB's grid (LR pixel i covers
    # HR pixels s*i .. s*i + s - 1) must be exactly nearest-neighbour upsampling, i.e.
    # np.kron(lr, ones((s, s))), border pixels included. A half-pixel shift or a missing
    # row/column fails.
    e = experiments[name]
    s = e.scale
    net = _deploy(caffe, repo_root, name)
    taps = (np.abs(_tap_offsets(s, e.net.deconv_kernel)) < s / 2).astype(np.float32)
    assert taps.sum() == s
    _set_interpolator(net, e, taps)
    lr = np.random.default_rng(1).random((7, 8)).astype(np.float32)
    net.blobs["data"].reshape(1, 1, *lr.shape)
    net.reshape()
    net.blobs["data"].data[0, 0] = lr
    hr = net.forward()["recon"][0, 0]
    np.testing.assert_allclose(hr, np.kron(lr, np.ones((s, s))), rtol=0, atol=1e-6)


@pytest.mark.caffe
def test_x2_bilinear_weights_match_linear_interpolation_on_matlabs_grid(caffe, repo_root,
                                                                        experiments):
    # The 4x4 pad-1 deconvolution at x2 holds the bilinear kernel 1/4, 3/4, 3/4, 1/4. The HR
    # pixel j sits at LR coordinate (j - (s-1)/2) / s (MATLAB imresize); away from the border
    # the net must give the linear interpolation of the LR samples there.
    e = experiments["ddsr_x2"]
    net = _deploy(caffe, repo_root, "ddsr_x2")
    offsets = _tap_offsets(2, e.net.deconv_kernel)
    np.testing.assert_allclose(offsets, [-1.5, -0.5, 0.5, 1.5])
    _set_interpolator(net, e, np.maximum(0, 1 - np.abs(offsets) / 2).astype(np.float32))
    lr = np.random.default_rng(2).random((9, 10)).astype(np.float32)
    net.blobs["data"].reshape(1, 1, *lr.shape)
    net.reshape()
    net.blobs["data"].data[0, 0] = lr
    hr = net.forward()["recon"][0, 0]
    u = (np.arange(20) - 0.5) / 2  # LR coordinate of each HR column / row
    v = (np.arange(18) - 0.5) / 2
    rows = np.array([np.interp(v, np.arange(9), lr[:, x]) for x in range(10)]).T
    expected = np.array([np.interp(u, np.arange(10), row) for row in rows])
    np.testing.assert_allclose(hr[1:-1, 1:-1], expected[1:-1, 1:-1], atol=1e-5)


@pytest.mark.caffe
@pytest.mark.parametrize("name", ["ddsr_x3", "ddsr_x2", "ddsr_x4", "ddsr_x3_k7"])
def test_impulse_lands_centred_on_its_hr_block(caffe, repo_root, experiments, name):
    # A symmetric interpolator (a tent over the whole kernel) spreads an impulse at LR pixel
    # (i, j) around its HR centre (s*i + (s-1)/2, s*j + (s-1)/2): the response's centroid.
    e = experiments[name]
    s, k = e.scale, e.net.deconv_kernel
    net = _deploy(caffe, repo_root, name)
    offsets = _tap_offsets(s, k)
    _set_interpolator(net, e, (k / 2 + 0.5 - np.abs(offsets)).astype(np.float32))
    net.blobs["data"].reshape(1, 1, 9, 9)
    net.reshape()
    net.blobs["data"].data[...] = 0
    net.blobs["data"].data[0, 0, 4, 5] = 1
    hr = net.forward()["recon"][0, 0]
    ys, xs = np.indices(hr.shape)
    centroid = (ys * hr).sum() / hr.sum(), (xs * hr).sum() / hr.sum()
    assert centroid == pytest.approx((s * 4 + (s - 1) / 2, s * 5 + (s - 1) / 2), abs=1e-4)


def _interior_rms(blob, margin):
    return float(np.sqrt(np.mean(blob[:, :, margin:-margin, margin:-margin] ** 2)))


@pytest.mark.caffe
@pytest.mark.parametrize("name", ["ddsr_x3", "ddsr_x3_nores", "ddsr_x2"])
def test_activation_scale_at_initialisation(caffe, repo_root, experiments, name):
    # He et al.'s analysis for PReLU (slope a = 0.25): with Var(w) = 2 / ((1 + a^2) n) every
    # pre-activation keeps the input's second moment (1 here: Gaussian input), so every PReLU
    # output has RMS sqrt((1 + a^2) / 2) = 0.729, and the linear reconstruction layer's
    # expected square is 2 / (1 + a^2) times its input's (the residual sum, or the last PReLU
    # output). One draw of the weights wanders around that (a product of random gains), so the
    # test averages over 6 seeds, away from the zero-padded border: each PReLU output within a
    # factor 1.6 of the analysis (geometric mean). The 3x3x1 layer has a single filter and
    # deep features are dominated by per-channel means, so its gain is close to one chi-square
    # draw per seed: it gets a wider band (root mean square over the seeds, factor 2.5).
    e = experiments[name]
    depth, s = e.net.depth, e.scale
    margin = depth + 2  # HR pixels the zero padding of the 3x3 layers reaches
    lr_size = math.ceil((2 * margin + 16) / s)
    layers = ["upsample"] + [f"conv{i}" for i in range(1, depth)]
    last = "residual" if e.net.residual else layers[-1]
    hidden, recon = [], []
    for seed in range(6):
        caffe.set_random_seed(1000 + seed)
        net = _deploy(caffe, repo_root, name)
        net.blobs["data"].reshape(1, 1, lr_size, lr_size)
        net.reshape()
        net.blobs["data"].data[...] = np.random.default_rng(seed).standard_normal(
            (1, 1, lr_size, lr_size))
        net.forward()
        hidden.append([_interior_rms(net.blobs[b].data, margin) / math.sqrt((1 + SLOPE ** 2) / 2)
                       for b in layers])
        recon.append(_interior_rms(net.blobs["recon"].data, margin)
                     / (math.sqrt(2 / (1 + SLOPE ** 2)) * _interior_rms(net.blobs[last].data, margin)))
    for layer, ratio in zip(layers, np.exp(np.log(hidden).mean(axis=0))):
        assert 1 / 1.6 < ratio < 1.6, (layer, ratio)
    assert 1 / 2.5 < math.sqrt(np.mean(np.square(recon))) < 2.5


@pytest.mark.caffe
def test_caffe_fills_the_written_he_stds(caffe, repo_root):
    # The stds Caffe draws are He's for each layer's true fan-in (4% sampling error at 576).
    caffe.set_random_seed(7)
    net = _deploy(caffe, repo_root, "ddsr_x3_k5")
    assert net.params["upsample"][0].data.std() == pytest.approx(math.sqrt(9 / 25), rel=0.1)
    for layer in ["conv1", "conv17"]:
        assert net.params[layer][0].data.std() == pytest.approx(
            math.sqrt(2 / (1.0625 * 576)), rel=0.02)
    assert net.params["recon"][0].data.std() == pytest.approx(math.sqrt(2 / (1.0625 * 576)),
                                                              rel=0.15)
    assert all(np.all(blobs[1].data == 0) for k, blobs in net.params.items() if len(blobs) == 2)


@pytest.mark.caffe
def test_caffes_msra_filler_would_shrink_the_upsampling_features(caffe, repo_root, tmp_path):
    # Why the nets carry explicit Gaussian stds: Caffe's msra filler takes the fan-in of the
    # Deconvolution blob (1 x 64 x 3 x 3) as 64*9 = 576, not the 1 input per HR pixel, so
    # the upsampling features start sqrt(576 / (2 / (1 + a^2)))~ 17 times smaller than He's.
    text = (repo_root / "prototxt" / "ddsr_x3_deploy.prototxt").read_text()
    head, tail = text.split('name: "upsample"', 1)
    tail = tail.replace('type: "gaussian"\n      std: 1.0', 'type: "msra"', 1)
    assert 'type: "msra"' in tail
    path = tmp_path / "msra.prototxt"
    path.write_text(head + 'name: "upsample"' + tail)
    caffe.set_random_seed(1234)
    net = caffe.Net(str(path), caffe.TEST)
    assert net.params["upsample"][0].data.std() == pytest.approx(math.sqrt(2 / 576), rel=0.1)
    net.blobs["data"].reshape(1, 1, 8, 8)
    net.reshape()
    net.blobs["data"].data[...] = np.random.default_rng(4).standard_normal((1, 1, 8, 8))
    net.forward()
    assert np.sqrt(np.mean(net.blobs["upsample"].data ** 2)) < 0.1


@pytest.mark.caffe
def test_every_deploy_net_has_the_hand_counted_parameters(caffe, repo_root, experiments):
    for name, e in experiments.items():
        net = _deploy(caffe, repo_root, name)
        counted = sum(b.data.size for blobs in net.params.values() for b in blobs)
        c = e.net
        assert counted == nets.parameter_count(c.num_filters, c.depth, c.deconv_kernel), name
        prelus = [k for k in net.params if "prelu" in k]
        assert len(prelus) == c.depth  # channel-wise: one slope per channel
        assert all(net.params[k][0].data.shape == (c.num_filters,) for k in prelus)
        assert all(np.all(net.params[k][0].data == SLOPE) for k in prelus)


@pytest.mark.caffe
def test_train_net_reads_the_h5_lists_and_ends_in_a_euclidean_loss(caffe, repo_root):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    net = text_format.Parse((repo_root / "prototxt" / "ddsr_x3_train.prototxt").read_text(),
                            caffe_pb2.NetParameter())
    data = [layer for layer in net.layer if layer.type == "HDF5Data"]
    assert [(d.include[0].phase, d.hdf5_data_param.source, d.hdf5_data_param.batch_size,
             list(d.top)) for d in data] == [
        (caffe_pb2.TRAIN, "data/h5/x3/train.txt", 128, ["data", "label"]),
        (caffe_pb2.TEST, "data/h5/x3/val.txt", 128, ["data", "label"])]
    assert data[0].hdf5_data_param.shuffle
    loss = net.layer[-1]
    assert loss.type == "EuclideanLoss" and list(loss.bottom) == ["recon", "label"]
    types = [layer.type for layer in net.layer[2:-1]]
    assert types == ["Deconvolution", "PReLU"] + ["Convolution", "PReLU"] * 17 + \
        ["Eltwise", "Convolution"]


@pytest.mark.caffe
def test_train_net_loss_is_half_the_summed_squared_error(caffe, experiments, tmp_path):
    # EuclideanLoss = sum((recon - label)^2) / (2 * batch), checked with a zeroed net
    # (recon = 0) against a hand computation.
    e = experiments["ddsr_x3_d6"]
    shapes = {"data": (2, 1, 7, 7), "label": (2, 1, 21, 21)}
    built = nets.with_input_layers(nets.train_net(e), shapes)
    assert [layer.type for layer in built.layer[:2]] == ["Input", "Input"]
    path = tmp_path / "train.prototxt"
    path.write_text(nets.net_text(built))
    net = caffe.Net(str(path), caffe.TRAIN)
    for blobs in net.params.values():
        for b in blobs:
            b.data[...] = 0
    label = np.random.default_rng(5).random(shapes["label"]).astype(np.float32)
    net.blobs["label"].data[...] = label
    loss = net.forward()["loss"]
    assert float(loss) == pytest.approx(float((label.astype(np.float64) ** 2).sum() / 4), rel=1e-5)


@pytest.mark.caffe
def test_a_net_caffe_rejects_becomes_a_value_error(experiments):
    e = experiments["demo_x3"]
    wrong = nets.with_input_layers(nets.train_net(e), {"data": (2, 1, 7, 7),
                                                       "label": (2, 1, 20, 20)})
    with pytest.raises(ValueError, match=r"Caffe rejected the demo train net: .*Check failed"):
        nets.construct_with_caffe([dict(label="demo train", net=wrong, phase="TRAIN")])
    good = nets.construct_with_caffe([dict(label="demo deploy", net=nets.deploy_net(e),
                                           phase="TEST", reshape={"data": [1, 1, 5, 6]},
                                           report=["recon"])])
    assert good[0]["shapes"]["recon"] == [1, 1, 15, 18]
