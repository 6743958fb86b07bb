"""Small Caffe deploy nets for the evaluation tests (written with NetSpec, weights via net.save).

Imported by ``tests/test_evaluate.py`` and ``tests/test_eval_tool.py``; needs pycaffe.
"""

from pathlib import Path


def _save(caffe, net_param, folder, name):
    """Write ``<name>_deploy.prototxt`` and ``<name>.caffemodel`` (weights from the fillers)."""
    from google.protobuf import text_format

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    deploy = folder / f"{name}_deploy.prototxt"
    deploy.write_text(text_format.MessageToString(net_param))
    weights = folder / f"{name}.caffemodel"
    caffe.Net(str(deploy), caffe.TEST).save(str(weights))
    return deploy, weights


def random_upsampler(caffe, folder, scale, name="tiny", channels=4, depth=2, deconv_pad=1, seed=0):
    """A random net that upsamples by ``scale``: Deconvolution (kernel s+2, pad 1), PReLU, ``depth``
    3x3 conv + ReLU layers, a 3x3 reconstruction conv. ``deconv_pad=1`` gives ``s * n`` pixels;
    another pad gives a wrong-sized output."""
    from caffe import layers as L

    caffe.set_random_seed(seed)
    gauss = dict(type="gaussian", std=0.2)
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 8, 8]))
    n.up = L.Deconvolution(n.data, convolution_param=dict(
        num_output=channels, kernel_size=scale + 2, stride=scale, pad=deconv_pad,
        weight_filler=gauss, bias_filler=dict(type="constant", value=0.1)))
    n.up_prelu = L.PReLU(n.up, in_place=True)
    top = n.up_prelu
    for i in range(depth):
        n[f"conv{i}"] = L.Convolution(top, num_output=channels, kernel_size=3, pad=1, weight_filler=gauss,
                                      bias_filler=dict(type="constant", value=0.01))
        n[f"relu{i}"] = L.ReLU(n[f"conv{i}"], in_place=True)
        top = n[f"relu{i}"]
    n.recon = L.Convolution(top, num_output=1, kernel_size=3, pad=1, weight_filler=gauss)
    return _save(caffe, n.to_proto(), folder, name)


def box_net(caffe, folder, scale, name="box"):
    """A net with known output: ``scale`` > 1: nearest-neighbour upsampling (Deconvolution kernel =
    stride = scale, weights 1), then a 3x3 mean filter (Convolution pad 1, weights 1/9), both
    without bias. ``scale`` = 1: the mean filter alone (a net fed the bicubic image)."""
    from caffe import layers as L

    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 8, 8]))
    top = n.data
    if scale > 1:
        n.up = L.Deconvolution(n.data, convolution_param=dict(
            num_output=1, kernel_size=scale, stride=scale, bias_term=False,
            weight_filler=dict(type="constant", value=1.0)))
        top = n.up
    n.blur = L.Convolution(top, num_output=1, kernel_size=3, pad=1, bias_term=False,
                           weight_filler=dict(type="constant", value=1.0 / 9.0))
    return _save(caffe, n.to_proto(), folder, name)


def ddsr_small(caffe, folder, scale=3, depth=3, num_filters=8, name="ddsr_small", seed=0):
    """A small DDSR (``ddsr.model.nets.ddsr``: deconvolution + PReLU, conv + PReLU, residual, recon)."""
    from ddsr.model import nets

    caffe.set_random_seed(seed)
    return _save(caffe, nets.ddsr(scale, depth=depth, num_filters=num_filters), folder, name)
