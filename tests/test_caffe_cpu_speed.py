"""The CPU speed patches (tools/caffe-patches/*-cpu-speed-*) keep Caffe's numbers.

They spread Convolution, Deconvolution and PReLU over OpenMP threads: whole
images per thread for a batch, chunks of rows or channels of one image when
the batch is smaller than the thread count (inference). Checked here, through
the built Caffe, in child processes (OpenMP reads OMP_NUM_THREADS once):

- the DDSR net (the package's own builder, small) gives the same output and
  parameter gradients with 1 and 2 threads, for a training batch of 7x7
  patches and for one large image (the chunked path), within the issue's
  bounds (forward 1e-5, gradients 1e-4, relative to the largest value);
- with 2 threads, two runs are identical to the bit (per-thread gradient sums
  added in a fixed order, so nothing depends on timing);
- a Convolution and a Deconvolution layer match a float64 numpy reference
  (forward, weight, bias and bottom gradients) with 2 threads, batch 1 and 3.

With one thread the patched passes do the original code's arithmetic (the
patch header says so); the tests compare against that and against numpy
rather than against a second, unpatched build, which would cost CI a second
Caffe build. `bench/bench_caffe_cpu.py` runs the unpatched build side by side.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

WORKER = textwrap.dedent(r"""
    import json, sys, tempfile
    import numpy as np
    import caffe
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    from ddsr.data.database import DataRecipe
    from ddsr.model import nets
    from ddsr.model.experiments import DataConfig

    case, out = sys.argv[1], sys.argv[2]
    caffe.set_mode_cpu()
    caffe.set_random_seed(7)
    rng = np.random.default_rng(3)
    result = {}

    def load(text, phase=caffe.TRAIN):
        f = tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False)
        f.write(text)
        f.close()
        return caffe.Net(f.name, phase)

    def ddsr(batch, h, w):
        recipe = DataRecipe(scale=3, folder="unused", train_sets=("unused",), val_set="unused_val",
                            val_images=1, patch_size=h, stride=4, flip=False, rot90=False, downscale=(),
                            multiple_of=1, seed=0)
        config = DataConfig(recipe=recipe, batch_size=batch, val_batch_size=batch, shuffle=False)
        train = nets.ddsr(3, depth=4, num_filters=16, train_data=config, name="t")
        train = nets.with_input_layers(train, {"data": (batch, 1, h, w),
                                               "label": (batch, 1, 3 * h, 3 * w)})
        net = load(nets.net_text(train))
        net.blobs["data"].data[...] = rng.random(net.blobs["data"].shape)
        net.blobs["label"].data[...] = rng.random(net.blobs["label"].shape)
        net.forward()
        net.backward()
        result["recon"] = net.blobs["recon"].data.copy()
        for name, params in net.params.items():
            for i, p in enumerate(params):
                result[f"{name}.{i}"] = p.diff.copy()

    LAYERS = '''
    force_backward: true
    layer { name: "x" type: "Input" top: "x" top: "y"
            input_param { shape { dim: %(n)d dim: 8 dim: %(h)d dim: %(w)d }
                          shape { dim: %(n)d dim: 3 dim: %(h)d dim: %(w)d } } }
    layer { name: "conv" type: "Convolution" bottom: "x" top: "conv"
            convolution_param { num_output: 16 kernel_size: 3 pad: 1
              weight_filler { type: "gaussian" std: 0.1 }
              bias_filler { type: "gaussian" std: 0.1 } } }
    layer { name: "deconv" type: "Deconvolution" bottom: "y" top: "deconv"
            convolution_param { num_output: 8 kernel_size: 3 stride: 3
              weight_filler { type: "gaussian" std: 0.1 }
              bias_filler { type: "gaussian" std: 0.1 } } }
    '''

    def layers(n, h, w):
        net = load(LAYERS % dict(n=n, h=h, w=w))
        for blob in ("x", "y"):
            net.blobs[blob].data[...] = rng.standard_normal(net.blobs[blob].shape)
        net.forward()
        for blob in ("conv", "deconv"):
            net.blobs[blob].diff[...] = rng.standard_normal(net.blobs[blob].shape)
        net.backward()
        for blob in ("x", "y", "conv", "deconv"):
            result[blob] = net.blobs[blob].data.copy()
            result[blob + ".diff"] = net.blobs[blob].diff.copy()
        for name in ("conv", "deconv"):
            for i, p in enumerate(net.params[name]):
                result[f"{name}.{i}"] = p.data.copy()
                result[f"{name}.{i}.diff"] = p.diff.copy()

    if case == "train":
        ddsr(8, 7, 7)
    elif case == "large":
        ddsr(1, 60, 45)
    elif case == "layers1":
        layers(1, 90, 70)
    elif case == "layers3":
        layers(3, 12, 10)
    np.savez(out, **result)
""")


def run_worker(case, threads, tmp_path, tag=""):
    out = tmp_path / f"{case}-{threads}{tag}.npz"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), GLOG_minloglevel="2")
    proc = subprocess.run([sys.executable, "-c", WORKER, case, str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


def max_rel_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.mark.parametrize("case", ["train", "large"])
def test_ddsr_same_with_one_and_two_threads(caffe, tmp_path, case):
    one = run_worker(case, 1, tmp_path)
    two = run_worker(case, 2, tmp_path)
    again = run_worker(case, 2, tmp_path, tag="-again")
    assert one.keys() == two.keys() and "upsample.0" in one and "conv3.0" in one
    errors = {k: max_rel_error(two[k], one[k]) for k in one}
    assert errors["recon"] <= 1e-5, errors
    assert max(v for k, v in errors.items() if k != "recon") <= 1e-4, json.dumps(errors)
    for k in two:  # a fixed thread count: identical to the bit, run after run
        assert np.array_equal(two[k], again[k]), k


def conv_reference(x, w, b, dy, pad=1):
    """Convolution (stride 1) forward and gradients in float64."""
    x, w, b, dy = (np.asarray(a, np.float64) for a in (x, w, b, dy))
    kh, kw = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    y = np.einsum("nchwij,ocij->nohw", win, w) + b[None, :, None, None]
    dw = np.einsum("nohw,nchwij->ocij", dy, win)
    db = dy.sum(axis=(0, 2, 3))
    dxp = np.zeros_like(xp)
    h, wd = dy.shape[2:]
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + h, j:j + wd] += np.einsum("nohw,oc->nchw", dy, w[:, :, i, j])
    return y, dw, db, dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]]


def deconv_reference(x, w, b, dy, s=3):
    """Deconvolution with kernel == stride (DDSR's upsampling) in float64."""
    x, w, b, dy = (np.asarray(a, np.float64) for a in (x, w, b, dy))
    n, c, h, wd = x.shape
    o = w.shape[1]
    y = np.einsum("ncyx,coij->noyixj", x, w).reshape(n, o, h * s, wd * s)
    y += b[None, :, None, None]
    dyb = dy.reshape(n, o, h, s, wd, s)
    dw = np.einsum("ncyx,noyixj->coij", x, dyb)
    db = dy.sum(axis=(0, 2, 3))
    dx = np.einsum("noyixj,coij->ncyx", dyb, w)
    return y, dw, db, dx


@pytest.mark.parametrize("case", ["layers1", "layers3"])
def test_conv_and_deconv_match_numpy(caffe, tmp_path, case):
    r = run_worker(case, 2, tmp_path)
    y, dw, db, dx = conv_reference(r["x"], r["conv.0"], r["conv.1"], r["conv.diff"])
    assert max_rel_error(r["conv"], y) <= 1e-5
    assert max_rel_error(r["conv.0.diff"], dw) <= 1e-4
    assert max_rel_error(r["conv.1.diff"], db) <= 1e-4
    assert max_rel_error(r["x.diff"], dx) <= 1e-4
    y, dw, db, dx = deconv_reference(r["y"], r["deconv.0"], r["deconv.1"], r["deconv.diff"])
    assert max_rel_error(r["deconv"], y) <= 1e-5
    assert max_rel_error(r["deconv.0.diff"], dw) <= 1e-4
    assert max_rel_error(r["deconv.1.diff"], db) <= 1e-4
    assert max_rel_error(r["y.diff"], dx) <= 1e-4
