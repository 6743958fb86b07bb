"""tools/export.py and ddsr.inference's exporters: ONNX and OpenCV against pycaffe.

The oracle is pycaffe running the original deploy net and weights; ONNX Runtime and OpenCV's
dnn (on the ONNX file and on the OpenCV Caffe files) must match it within 1e-4 on [0, 1] inputs
(noise and real photographs, odd and unequal sizes). The DDSR nets have random weights (none
are trained here); SRCNN and FSRCNN are the official weights, imported by tools/import_official.py.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ddsr.matlab import imread
from tool_module import load_tool

REPO = Path(__file__).resolve().parents[1]
SMALL_SIZES = ((9, 13), (20, 17))  # DDSR-18 at x4 costs 1.25 MFLOP per output pixel: keep them small




@pytest.fixture(scope="module")
def export_tool():
    return load_tool("export")


@pytest.fixture(scope="module")
def official_models(caffe, shared_dir, tmp_path_factory):
    """The six official nets, imported the way a user does it (tools/import_official.py --from)."""
    out = tmp_path_factory.mktemp("official")
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "import_official.py"), "--from",
                           str(shared_dir / "models"), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def random_ddsr(caffe, tmp_path_factory):
    """Random weights (the prototxt's fillers) for the generated DDSR and demo deploy nets."""
    out = tmp_path_factory.mktemp("ddsr")
    weights = {}
    for i, name in enumerate(("ddsr_x2", "ddsr_x3", "ddsr_x4", "demo_x3")):
        caffe.set_random_seed(100 + i)
        deploy = REPO / "prototxt" / f"{name}_deploy.prototxt"
        weights[name] = (deploy, out / f"{name}.caffemodel")
        caffe.Net(str(deploy), caffe.TEST).save(str(weights[name][1]))
    return weights


@pytest.fixture(scope="module")
def real_images(shared_dir):
    return [("butterfly", imread(shared_dir / "datasets" / "Set5" / "butterfly_GT.bmp")),
            ("bridge (grey)", imread(shared_dir / "datasets" / "Set14" / "bridge.bmp"))]


def _export_and_verify(deploy, weights, scale, folder, sizes, images):
    from ddsr.evaluation.deploy_net import resolve_settings
    from ddsr.inference import caffe_model, onnx_export, opencv_export, record, verify

    model = caffe_model.read_model(deploy, weights)
    settings, _ = resolve_settings(deploy, scale)
    rec = record.processing_record(model, scale, settings)
    onnx_path, _ = onnx_export.export_onnx(model, folder / f"{Path(deploy).stem}.onnx", rec)
    prototxt, caffemodel, _ = opencv_export.export_opencv(model, folder / "opencv", rec)
    inputs = verify.verify_inputs(sizes=sizes, images=images)
    results = verify.verify_export(model, onnx_path, (prototxt, caffemodel), inputs=inputs)
    return model, onnx_path, (prototxt, caffemodel), results


def _check_results(results, n_inputs):
    backends = {r.backend for r in results}
    assert backends == {"onnxruntime (ONNX)", "opencv dnn (ONNX)", "opencv dnn (Caffe)"}
    assert len(results) == 3 * n_inputs
    assert max(r.max_abs_diff for r in results) <= 1e-4
    assert max(r.max_abs_diff for r in results) > 0  # really compared two computations


@pytest.mark.caffe
@pytest.mark.parametrize("name, scale", [("ddsr_x2", 2), ("ddsr_x3", 3), ("ddsr_x4", 4), ("demo_x3", 3)])
def test_ddsr_nets_export_and_verify(random_ddsr, real_images, tmp_path, name, scale):
    deploy, weights = random_ddsr[name]
    model, onnx_path, _, results = _export_and_verify(deploy, weights, scale, tmp_path, SMALL_SIZES, real_images)
    assert model.factor == scale
    _check_results(results, len(SMALL_SIZES) * 3)
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 1, "height", "width"]  # dynamic height and width
    assert graph.output[0].name == "recon"
    ops = {n.op_type for n in graph.node}
    assert ops == {"ConvTranspose", "Conv", "PRelu", "Add"}


@pytest.mark.caffe
@pytest.mark.parametrize("name", ["srcnn_x2", "srcnn_x3", "srcnn_x4", "fsrcnn_x2", "fsrcnn_x3", "fsrcnn_x4"])
def test_official_nets_export_and_verify(official_models, real_images, tmp_path, name):
    scale = int(name[-1])
    deploy = official_models / f"{name}_deploy.prototxt"
    model, onnx_path, (prototxt, caffemodel), results = _export_and_verify(
        deploy, official_models / f"{name}.caffemodel", scale, tmp_path, ((17, 23), (40, 64)), real_images)
    _check_results(results, 2 * 3)
    record = json.loads((tmp_path / f"{name}_deploy.json").read_text())
    sidecar = json.loads((official_models / f"{name}_deploy.eval.json").read_text())
    assert (record["input"], record["pad_input"], record["scale"], record["name"]) == (
        sidecar["input"], sidecar["pad_input"], scale, sidecar["name"])
    assert record["output_crop"] == (scale if sidecar["input"] == "lr" else 1) * sidecar["pad_input"]
    if name.startswith("fsrcnn"):
        # Channel-shared PReLU: a 0-D blob in Caffe, [1] in the OpenCV weights and in ONNX.
        from caffe.proto import caffe_pb2

        assert model.params["prelu1"][0].shape == ()
        stored = caffe_pb2.NetParameter.FromString(caffemodel.read_bytes())
        assert [list(b.shape.dim) for lay in stored.layer if lay.name == "prelu1" for b in lay.blobs] == [[1]]
        import onnx

        slope = [t for t in onnx.load(str(onnx_path)).graph.initializer if t.name == "prelu1/slope"]
        assert list(slope[0].dims) == [1]


@pytest.mark.caffe
def test_verify_catches_a_wrong_export(random_ddsr, tmp_path):
    import onnx
    from onnx import numpy_helper

    from ddsr.inference import verify

    deploy, weights = random_ddsr["demo_x3"]
    model, onnx_path, _, _ = _export_and_verify(deploy, weights, 3, tmp_path, ((9, 13),), [])
    broken = onnx.load(str(onnx_path))
    bias = next(t for t in broken.graph.initializer if t.name == "recon/bias")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(1e-3), "recon/bias"))
    onnx.save(broken, str(tmp_path / "broken.onnx"))
    with pytest.raises(verify.VerifyError, match=r"max \|difference\| 0.001"):
        verify.verify_export(model, tmp_path / "broken.onnx", inputs=verify.verify_inputs(((9, 13),), images=[]))


@pytest.mark.caffe
def test_untranslatable_layer_is_a_clear_error(caffe, tmp_path):
    from caffe import layers as L

    from ddsr.inference import caffe_model, onnx_export

    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 8, 8]))
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=3, pad=1, weight_filler=dict(type="gaussian"))
    n.act = L.TanH(n.conv)
    deploy = tmp_path / "tanh_deploy.prototxt"
    deploy.write_text(str(n.to_proto()))
    caffe.Net(str(deploy), caffe.TEST).save(str(tmp_path / "tanh.caffemodel"))
    model = caffe_model.read_model(deploy, tmp_path / "tanh.caffemodel")
    with pytest.raises(onnx_export.ExportError, match=r"type TanH.*supported: Input, Convolution, Deconvolution"):
        onnx_export.build_onnx(model)


def test_conv_geometry_follows_caffe_rules():
    from caffe.proto import caffe_pb2

    from ddsr.inference.onnx_export import ExportError, conv_geometry

    p = caffe_pb2.ConvolutionParameter(kernel_size=[3], pad=[1])
    assert conv_geometry(p) == ((3, 3), (1, 1), (1, 1), (1, 1))
    p = caffe_pb2.ConvolutionParameter(kernel_h=5, kernel_w=3, stride=[2, 3], dilation=[2])
    assert conv_geometry(p) == ((5, 3), (0, 0), (2, 3), (2, 2))
    with pytest.raises(ExportError, match="kernel size"):
        conv_geometry(caffe_pb2.ConvolutionParameter())


# --------------------------------------------------------------------------- the tool

def _run(tool, argv, capsys):
    rc = tool.main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.caffe
def test_tool_exports_verifies_and_prints_runnable_lines(export_tool, official_models, shared_dir, tmp_path,
                                                         capsys, monkeypatch):
    """The printed ONNX Runtime and OpenCV lines, run as they are, give pycaffe's SR Y (to 1 grey level)."""
    from ddsr.evaluation.deploy_net import load_net
    from ddsr.evaluation.protocol import to_uint8
    from ddsr.evaluation.upscaler import forward_padded
    from ddsr.matlab import im2single, rgb2y

    rc, out, err = _run(export_tool, [
        "--model", str(official_models / "fsrcnn_x3_deploy.prototxt"),
        "--weights", str(official_models / "fsrcnn_x3.caffemodel"),
        "--out", str(tmp_path / "exp" / "fsrcnn_x3.onnx"), "--opencv", str(tmp_path / "exp" / "cv"), "--verify"],
        capsys)
    assert rc == 0, err
    assert "onnxruntime (ONNX)" in out and "opencv dnn (Caffe)" in out and out.count("  ok") == 3
    assert (tmp_path / "exp" / "fsrcnn_x3.json").is_file()
    assert (tmp_path / "exp" / "cv" / "fsrcnn_x3_deploy.caffemodel").is_file()
    snippets = out.split("\n# Run it with ")[1:]
    assert [s.split(":", 1)[0] for s in snippets] == ["ONNX Runtime", "OpenCV dnn"]

    rgb = imread(shared_dir / "datasets" / "Set5" / "bird_GT.bmp")[40:120, 50:140]
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    Image.fromarray(rgb).save("photo.png")
    net, _ = load_net(official_models / "fsrcnn_x3_deploy.prototxt", official_models / "fsrcnn_x3.caffemodel")
    want = to_uint8(forward_padded(net, im2single(rgb2y(rgb)), 3, pad=8))
    for snippet in snippets:
        Path("photo_sr_y.png").unlink(missing_ok=True)
        exec(compile(snippet.split("\n", 1)[1], "snippet", "exec"), {})
        got = np.asarray(Image.open("photo_sr_y.png"))
        assert got.shape == want.shape == (240, 270)
        diff = np.abs(got.astype(int) - want)
        assert diff.max() <= 1 and diff.mean() < 0.01


@pytest.mark.caffe
def test_tool_bicubic_net_lines_upscale_first(export_tool, official_models, tmp_path, capsys):
    rc, out, err = _run(export_tool, ["--model", str(official_models / "srcnn_x2_deploy.prototxt"),
                                      "--weights", str(official_models / "srcnn_x2.caffemodel"),
                                      "--out", str(tmp_path / "srcnn_x2.onnx")], capsys)
    assert rc == 0, err
    assert "input bicubic, pad 8" in out
    assert "Image.BICUBIC" in out and "cv2.INTER_CUBIC" in out and "sr = sr[8:-8, 8:-8]" in out
    assert "readNetFromONNX" in out  # no --opencv: OpenCV reads the ONNX file


@pytest.mark.parametrize("argv, message", [
    ([], "give either --model"),
    (["--model", "x_deploy.prototxt", "--weights", "w", "--experiment", "ddsr_x3", "--out", "a.onnx"], "give either"),
    (["--model", "x_deploy.prototxt", "--out", "a.onnx"], "--model needs --weights"),
    (["--model", "x_deploy.prototxt", "--weights", "w"], "nothing to write"),
    (["--model", "x_deploy.prototxt", "--weights", "w", "--out", "a.txt"], "must end in .onnx"),
    (["--experiment", "no_such", "--out", "a.onnx"], "unknown experiment 'no_such'"),
    (["--model", "/nowhere_deploy.prototxt", "--weights", "w", "--out", "a.onnx"], "does not exist"),
])
def test_tool_bad_input_is_one_line_and_exit_2(export_tool, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    rc, out, err = _run(export_tool, argv, capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("export.py: error:") and message in lines[0]
    assert not any(tmp_path.iterdir())  # nothing written


def test_experiment_model_finds_the_newest_snapshot(tmp_path):
    import shutil

    from ddsr.evaluation.deploy_net import ModelError
    from ddsr.inference.caffe_model import experiment_model

    shutil.copy(REPO / "experiments.yaml", tmp_path / "experiments.yaml")
    with pytest.raises(ModelError, match="no snapshot yet"):
        experiment_model("ddsr_x4", tmp_path)
    (tmp_path / "snapshots").mkdir()
    for it in (2000, 10000, 9000):
        (tmp_path / "snapshots" / f"ddsr_x4_iter_{it}.caffemodel").write_bytes(b"")
    deploy, weights, scale = experiment_model("ddsr_x4", tmp_path)
    assert deploy == tmp_path / "prototxt" / "ddsr_x4_deploy.prototxt"
    assert weights.name == "ddsr_x4_iter_10000.caffemodel" and scale == 4
    assert experiment_model("ddsr_x4", tmp_path, weights="mine.caffemodel")[1] == Path("mine.caffemodel")


@pytest.mark.caffe
def test_readme_shows_what_the_tool_prints(official_models):
    """README's "Using a trained model" snippets are usage_snippets' text for the official FSRCNN x3."""
    from ddsr.evaluation.deploy_net import resolve_settings
    from ddsr.inference import caffe_model, record

    deploy = official_models / "fsrcnn_x3_deploy.prototxt"
    model = caffe_model.read_model(deploy, official_models / "fsrcnn_x3.caffemodel")
    rec = record.processing_record(model, 3, resolve_settings(deploy, 3)[0])
    snippets = record.usage_snippets(rec, "exported/fsrcnn_x3.onnx",
                                     ("exported/opencv/fsrcnn_x3_deploy.prototxt",
                                      "exported/opencv/fsrcnn_x3_deploy.caffemodel"))
    readme = (REPO / "README.md").read_text()
    for text in snippets.values():
        assert f"```python\n{text}\n```" in readme
