"""tools/eval.py and tools/make_table.py: the command-line contract (issue 5 §2, issue 8 items 2-3)."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from ddsr.matlab import imread
from tool_module import load_tool


@pytest.fixture(scope="module")
def eval_tool(repo_root):
    return load_tool("eval")


@pytest.fixture(scope="module")
def make_table(repo_root):
    return load_tool("make_table")


@pytest.fixture(scope="module")
def datasets(shared_dir):
    return shared_dir / "datasets"


@pytest.fixture
def mini_root(tmp_path, datasets):
    """A data root with a 2-image set (a bird crop, a greyscale bridge crop)."""
    from PIL import Image

    (tmp_path / "data" / "Mini").mkdir(parents=True)
    Image.fromarray(imread(datasets / "Set5" / "bird_GT.bmp")[90:186, 40:160]).save(
        tmp_path / "data" / "Mini" / "bird.png")
    Image.fromarray(imread(datasets / "Set14" / "bridge.bmp")[:96, :90]).save(tmp_path / "data" / "Mini" / "bridge.png")
    return tmp_path / "data"


def _run(tool, argv, capsys):
    rc = tool.main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_help_runs_from_a_clean_environment(repo_root):
    """Both tools find the package themselves (no PYTHONPATH, no install) and document their options."""
    for tool, option in (("eval.py", "--pad-input"), ("make_table.py", "--published-only")):
        proc = subprocess.run([sys.executable, str(repo_root / "tools" / tool), "--help"], capture_output=True,
                              text=True, cwd="/", env={"PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("usage:") and option in proc.stdout


def test_bicubic_set5_outputs(eval_tool, datasets, tmp_path, capsys):
    out = tmp_path / "bic"
    rc, stdout, _ = _run(eval_tool, ["--method", "bicubic", "--scale", "3", "--sets", "Set5", "--data-root",
                                     str(datasets), "--out", str(out), "--metrics", "psnr", "--quiet"], capsys)
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == ["Set5"] and list(summary["Set5"]) == ["x3"]
    assert list(summary["Set5"]["x3"]) == ["psnr"]
    assert abs(summary["Set5"]["x3"]["psnr"] - 30.3922) < 5e-5  # SUMMARY.md, 4 decimals
    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["set", "scale", "image", "psnr", "ssim", "ifc", "forward_ms", "h", "w"]
    assert [r["image"] for r in rows] == ["baby_GT", "bird_GT", "butterfly_GT", "head_GT", "woman_GT"]
    assert (rows[1]["h"], rows[1]["w"]) == ("288", "288")
    table = (out / "table3.md").read_text()
    assert "| Bicubic | PSNR | 30.39 |" in table and "| PSNR paper | 30.39 |" in table
    run = json.loads((out / "run.json").read_text())
    assert run["name"] == "Bicubic" and run["errors"] == [] and run["images"] == {"Set5": 5}
    png = imread(out / "images" / "Set5" / "x3" / "woman_GT.png")
    assert png.shape == (342, 228, 3)  # modcropped, colour


@pytest.mark.parametrize("argv, message", [
    ([], "give either --method bicubic or --model"),
    (["--method", "bicubic", "--sets", "Set6"], "unknown set 'Set6'"),
    (["--method", "bicubic", "--pad-input", "2"], "apply to --model only"),
    (["--model", "x.prototxt"], "--model needs --weights"),
    (["--model", "a_deploy.prototxt", "--weights", "a.caffemodel", "--scale", "2", "3"],
     "1 --model path(s) for 2 scale(s)"),
    (["--model", "a_deploy.prototxt", "--weights", "a.caffemodel"], "cannot tell the scale of a_deploy.prototxt"),
    (["--model", "net_x3.prototxt", "--weights", "w.caffemodel"], "deploy net net_x3.prototxt does not exist"),
    (["--method", "bicubic", "--paper-row", "VDSR"], "--paper-row 'VDSR' is not a Table 3 row"),
])
def test_bad_input_is_one_line_and_exit_2(eval_tool, mini_root, tmp_path, capsys, argv, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = [] if "--sets" in argv else ["--sets", "Mini"]
    rc, _, err = _run(eval_tool, argv + extra + ["--data-root", str(mini_root)], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eval.py: error: ") and message in lines[0], err


def test_empty_set_is_an_error(eval_tool, tmp_path, capsys):
    (tmp_path / "Empty").mkdir()
    rc, _, err = _run(eval_tool, ["--method", "bicubic", "--sets", "Empty", "--data-root", str(tmp_path)], capsys)
    assert rc == 2 and "empty set 'Empty'" in err


def test_corrupt_image_is_reported_and_the_rest_evaluated(eval_tool, mini_root, tmp_path, capsys):
    (mini_root / "Mini" / "corrupt.bmp").write_bytes(b"BM this is not a bitmap")
    out = tmp_path / "o"
    rc, _, err = _run(eval_tool, ["--method", "bicubic", "--scale", "2", "3", "--sets", "Mini", "--data-root",
                                  str(mini_root), "--out", str(out), "--metrics", "psnr", "--quiet"], capsys)
    assert rc == 1
    assert "corrupt.bmp" in err and "1 image(s) could not be evaluated" in err
    run = json.loads((out / "run.json").read_text())
    assert len(run["errors"]) == 1
    with open(out / "per_image.csv") as f:
        assert [(r["scale"], r["image"]) for r in csv.DictReader(f)] == [
            ("2", "bird"), ("2", "bridge"), ("3", "bird"), ("3", "bridge")]
    assert imread(out / "images" / "Mini" / "x3" / "bridge.png").ndim == 2  # greyscale stays greyscale


# --- models ----------------------------------------------------------------------------------

@pytest.fixture
def tiny(caffe, tmp_path):
    import tiny_nets

    folder = tmp_path / "models"
    return {
        "rand3": tiny_nets.random_upsampler(caffe, folder, 3, name="rand_x3"),
        "rand2": tiny_nets.random_upsampler(caffe, folder, 2, name="rand_x2"),
        "wide3": tiny_nets.random_upsampler(caffe, folder, 3, name="wide_x3", channels=6),
        "bad3": tiny_nets.random_upsampler(caffe, folder, 3, name="bad_x3", deconv_pad=2),
        "box1": tiny_nets.box_net(caffe, folder, 1, name="box_x3"),
    }


@pytest.mark.caffe
def test_model_with_scale_placeholder_and_baseline(eval_tool, make_table, tiny, mini_root, tmp_path, capsys):
    out = tmp_path / "run"
    template = str(tmp_path / "models" / "rand_x{scale}_deploy.prototxt")
    weights = str(tmp_path / "models" / "rand_x{scale}.caffemodel")
    rc, _, err = _run(eval_tool, ["--model", template, "--weights", weights, "--scale", "2", "3",
                                  "--sets", "Mini", "--data-root", str(mini_root), "--out", str(out),
                                  "--metrics", "psnr", "ssim", "--name", "DDSR", "--quiet", "--tile", "20"], capsys)
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["Mini"]) == {"x2", "x3"}
    run = json.loads((out / "run.json").read_text())
    assert run["paper_row"] == "DDSR" and run["models"]["x3"]["tile_overlap"] == 3
    assert run["models"]["x2"]["deploy"].endswith("rand_x2_deploy.prototxt")
    base = json.loads((out / "bicubic" / "summary.json").read_text())
    assert set(base["Mini"]) == {"x2", "x3"}
    table = (out / "table3.md").read_text()
    assert "| DDSR | PSNR |" in table and "| Bicubic | PSNR |" in table
    assert table.index("| Bicubic |") < table.index("| DDSR |")
    # make_table combines runs: this one and a bicubic run of the same set, whose cells must agree
    out_b = tmp_path / "bic"
    assert _run(eval_tool, ["--method", "bicubic", "--scale", "3", "--sets", "Mini", "--data-root",
                            str(mini_root), "--out", str(out_b), "--metrics", "psnr", "ssim", "--quiet",
                            "--no-images"], capsys)[0] == 0
    rc, md, err = _run(make_table, [str(out), str(out_b), "--published-only"], capsys)
    assert rc == 0, err
    labels = [ln.split("|")[1].strip() for ln in md.splitlines() if ln.startswith("|")]
    assert [x for x in labels if x and x != "Method" and not x.startswith("---")] == ["Bicubic", "DDSR"]


@pytest.mark.caffe
def test_sidecar_settings_and_cli_override(eval_tool, tiny, mini_root, tmp_path, capsys):
    deploy, weights = tiny["box1"]
    sidecar = deploy.with_suffix(".eval.json")
    sidecar.write_text(json.dumps({"input": "bicubic", "pad_input": 4, "name": "SRCNN", "scale": 3}))
    out = tmp_path / "o"
    argv = ["--model", str(deploy), "--weights", str(weights), "--sets", "Mini", "--data-root", str(mini_root),
            "--out", str(out), "--metrics", "psnr", "--quiet", "--no-images"]
    rc, _, err = _run(eval_tool, argv, capsys)  # the scale comes from the sidecar
    assert rc == 0, err
    run = json.loads((out / "run.json").read_text())
    assert (run["name"], run["paper_row"], run["scales"]) == ("SRCNN", "SRCNN", [3])
    assert run["models"]["x3"]["input"] == "bicubic" and run["models"]["x3"]["pad_input"] == 4
    assert run["models"]["x3"]["sidecar"] == str(sidecar)
    rc, _, err = _run(eval_tool, argv + ["--pad-input", "1"], capsys)
    assert rc == 0 and json.loads((out / "run.json").read_text())["models"]["x3"]["pad_input"] == 1
    # recorded for another scale
    rc, _, err = _run(eval_tool, argv + ["--scale", "2"], capsys)
    assert rc == 2 and "recorded for scale 3, evaluated at scale 2" in err


@pytest.mark.caffe
def test_model_errors(eval_tool, tiny, mini_root, tmp_path, capsys):
    common = ["--sets", "Mini", "--data-root", str(mini_root), "--out", str(tmp_path / "o"), "--quiet",
              "--metrics", "psnr"]
    deploy, _ = tiny["rand3"]
    _, wide_weights = tiny["wide3"]
    rc, _, err = _run(eval_tool, ["--model", str(deploy), "--weights", str(wide_weights)] + common, capsys)
    assert rc == 2 and "do not match" in err and "1x4x5x5 in the net, 1x6x5x5 in the weights" in err
    bad, bad_weights = tiny["bad3"]
    rc, _, err = _run(eval_tool, ["--model", str(bad), "--weights", str(bad_weights)] + common, capsys)
    assert rc == 2 and "expected 1x1x" in err and "(3 x input)" in err
    rc, _, err = _run(eval_tool, ["--model", str(deploy), "--weights", str(tmp_path / "nope.caffemodel")] + common,
                      capsys)
    assert rc == 2 and "nope.caffemodel do not exist" in err


@pytest.mark.caffe
def test_ddsr_deploy_net_with_random_weights(eval_tool, caffe, repo_root, datasets, tmp_path, capsys):
    """The project's DDSR x3 deploy net (prototxt/), random weights, end to end on one small crop."""
    from PIL import Image

    deploy = repo_root / "prototxt" / "ddsr_x3_deploy.prototxt"
    if not deploy.is_file():
        pytest.skip("prototxt/ddsr_x3_deploy.prototxt not generated yet")
    weights = tmp_path / "ddsr_x3_random.caffemodel"
    caffe.Net(str(deploy), caffe.TEST).save(str(weights))
    (tmp_path / "data" / "Tiny").mkdir(parents=True)
    Image.fromarray(imread(datasets / "Set5" / "bird_GT.bmp")[100:148, 80:140]).save(
        tmp_path / "data" / "Tiny" / "bird.png")
    out = tmp_path / "o"
    rc, _, err = _run(eval_tool, ["--model", str(deploy), "--weights", str(weights), "--sets", "Tiny",
                                  "--data-root", str(tmp_path / "data"), "--out", str(out), "--metrics", "psnr",
                                  "--quiet"], capsys)
    assert rc == 0, err
    run = json.loads((out / "run.json").read_text())
    assert run["scales"] == [3] and run["paper_row"] == "DDSR" and run["name"] == "ddsr_x3"
    summary = json.loads((out / "summary.json").read_text())
    assert np.isfinite(summary["Tiny"]["x3"]["psnr"])
    baseline = json.loads((out / "bicubic" / "summary.json").read_text())
    assert summary["Tiny"]["x3"]["psnr"] != baseline["Tiny"]["x3"]["psnr"]
    assert imread(out / "images" / "Tiny" / "x3" / "bird.png").shape == (48, 60, 3)


@pytest.mark.slow
def test_full_bicubic_set5_set14_four_decimals(eval_tool, datasets, tmp_path, capsys):
    """Issue 5 'must show' (Set5 and Set14 part): PSNR/SSIM to SUMMARY.md's decimals, IFC close."""
    out = tmp_path / "bic"
    rc, _, err = _run(eval_tool, ["--method", "bicubic", "--scale", "2", "3", "4", "--sets", "Set5", "Set14",
                                  "--data-root", str(datasets), "--out", str(out), "--quiet", "--no-images"], capsys)
    assert rc == 0, err
    s = json.loads((out / "summary.json").read_text())
    expected = {  # shared/paper/SUMMARY.md: PSNR 4 decimals, SSIM 5 decimals, IFC "about" (2 decimals)
        "Set5": {2: (33.6614, 0.92988, 6.08), 3: (30.3922, 0.86821, 3.58), 4: (28.4207, 0.81037, 2.33)},
        "Set14": {2: (30.2318, 0.86865, 6.10), 3: (27.5405, 0.77361, 3.47), 4: (26.0001, 0.70186, 2.24)},
    }
    from ddsr.evaluation.published import TABLE3

    for set_name, by_scale in expected.items():
        for scale, (psnr, ssim, ifc) in by_scale.items():
            cell = s[set_name][f"x{scale}"]
            assert abs(cell["psnr"] - psnr) <= 5e-5, (set_name, scale)
            assert abs(cell["ssim"] - ssim) <= 5e-6, (set_name, scale)
            assert abs(cell["ifc"] - ifc) <= 0.006, (set_name, scale)
            paper = TABLE3["Bicubic"][set_name][f"x{scale}"]
            assert round(cell["psnr"], 2) == paper["psnr"] and round(cell["ssim"], 2) == paper["ssim"]
            if (set_name, scale) != ("Set5", 3):  # the paper's 3.10 is a misprint
                assert abs(cell["ifc"] - paper["ifc"]) <= 0.07
