"""tools/eval.py and tools/make_table.py: the command-line contract (issue 5 §2, issue 8 items 2-3)."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ddsr.evaluation import report
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


# --- faults (issue 14): modified sets, mismatched weights, --out, partial means, signals --------

def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _bicubic(data_root, out, *extra):
    return ["--method", "bicubic", "--scale", "3", "--data-root", str(data_root), "--out", str(out),
            "--metrics", "psnr", "--no-images", "--quiet", *extra]


def test_a_registry_set_that_is_not_the_registrys_is_refused_unless_allowed(
        eval_tool, make_table, datasets, tmp_path, capsys):
    # Without woman_GT.bmp, Set5 x3 bicubic is 30.85 dB: +0.46 over the paper's 30.39, for nothing.
    root = tmp_path / "r"
    shutil.copytree(datasets / "Set5", root / "Set5")
    (root / "Set5" / "woman_GT.bmp").unlink()
    out = tmp_path / "out"
    rc, _, err = _run(eval_tool, _bicubic(root, out, "--sets", "Set5"), capsys)
    assert rc == 2
    assert err.splitlines() == [
        f"eval.py: error: Set5 in {root} is not the registry's Set5: woman_GT.bmp (missing) (fetch it again "
        "with tools/fetch_datasets.py Set5, or give --allow-modified-sets to evaluate it as a modified set)"]
    assert not out.exists()
    shutil.copyfile(datasets / "Set5" / "woman_GT.bmp", root / "Set5" / "woman_GT.bmp")
    shutil.copyfile(datasets / "Set14" / "zebra.bmp", root / "Set5" / "zebra.bmp")
    rc, _, err = _run(eval_tool, _bicubic(root, out, "--sets", "Set5"), capsys)
    assert rc == 2 and "zebra.bmp (not in the registry)" in err and not out.exists()

    rc, _, err = _run(eval_tool, _bicubic(root, out, "--sets", "Set5", "--allow-modified-sets"), capsys)
    assert rc == 0, err
    assert "warning: Set5 is a modified set (zebra.bmp (not in the registry))" in err
    cell = json.loads((out / "summary.json").read_text())["Set5"]["x3"]
    assert cell["modified_set"] is True and "psnr" in cell
    assert json.loads((out / "run.json").read_text())["modified_sets"] == {"Set5": ["zebra.bmp (not in the registry)"]}
    for table in ((out / "table3.md").read_text(), _run(make_table, [str(out)], capsys)[1]):
        psnr_line = next(ln for ln in table.splitlines() if ln.startswith("| Bicubic | PSNR |"))
        assert psnr_line.endswith(" † |")
        assert "|  | PSNR Δ | – |" in table and "`†`: the set's files differ" in table


@pytest.mark.caffe
def test_weights_of_a_deeper_net_are_refused(eval_tool, caffe, mini_root, tmp_path, capsys):
    import tiny_nets

    shallow, _ = tiny_nets.ddsr_small(caffe, tmp_path / "m", depth=2, name="d2")
    _, deep_weights = tiny_nets.ddsr_small(caffe, tmp_path / "m", depth=4, name="d4")
    out = tmp_path / "o"
    rc, _, err = _run(eval_tool, ["--model", str(shallow), "--weights", str(deep_weights), "--scale", "3",
                                  "--sets", "Mini", "--data-root", str(mini_root), "--out", str(out), "--quiet"],
                      capsys)
    assert rc == 2
    assert err.splitlines() == [
        f"eval.py: error: weights {deep_weights} do not match {shallow}: they hold learnable layer 'conv2', "
        "which the net does not have (the weights have 9 learnable layers, the net 5: a model of another depth?)"]
    assert not out.exists()


@pytest.mark.parametrize("case", ["file", "under a file", "someone else's folder"])
def test_an_out_that_cannot_be_a_report_fails_before_any_work(eval_tool, mini_root, tmp_path, capsys,
                                                              monkeypatch, case):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the evaluation ran before --out was checked")

    monkeypatch.setattr(eval_tool.eval_run, "evaluate_to_folder", must_not_run)
    (tmp_path / "notes.txt").write_text("keep")
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "main.tex").write_text("keep")
    out, message = {
        "file": (tmp_path / "notes.txt", f"{tmp_path / 'notes.txt'} exists and is not a folder"),
        "under a file": (tmp_path / "notes.txt" / "o",
                         f"cannot write the output folder {tmp_path / 'notes.txt' / 'o'}: "
                         f"{tmp_path / 'notes.txt'} is not a folder"),
        "someone else's folder": (tmp_path / "thesis", f"{tmp_path / 'thesis'} is not empty and holds no "
                                  "run.json: refusing to replace a folder that is not an evaluation folder"),
    }[case]
    rc, _, err = _run(eval_tool, _bicubic(mini_root, out, "--sets", "Mini"), capsys)
    assert rc == 2
    assert err.splitlines() == [f"eval.py: error: --out: {message}"]
    assert (tmp_path / "notes.txt").read_text() == "keep" and (tmp_path / "thesis" / "main.tex").read_text() == "keep"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_an_unwritable_out_fails_before_any_work(eval_tool, mini_root, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        rc, _, err = _run(eval_tool, _bicubic(mini_root, locked / "o", "--sets", "Mini"), capsys)
    finally:
        locked.chmod(0o700)
    assert rc == 2 and err.splitlines() == [
        f"eval.py: error: --out: cannot write the output folder {locked / 'o'}: {locked} is not writable"]


def test_a_mean_over_some_images_is_marked_partial_and_never_compared(eval_tool, make_table, mini_root,
                                                                      tmp_path, capsys):
    (mini_root / "Mini" / "corrupt.bmp").write_bytes(b"BM this is not a bitmap")
    out = tmp_path / "o"
    rc, _, err = _run(eval_tool, _bicubic(mini_root, out, "--sets", "Mini"), capsys)
    assert rc == 1 and "1 image(s) could not be evaluated" in err
    cell = json.loads((out / "summary.json").read_text())["Mini"]["x3"]
    assert cell["partial"] == {"psnr": [2, 3]}
    for table in ((out / "table3.md").read_text(), _run(make_table, [str(out)], capsys)[1]):
        assert " (2 of 3) |" in next(ln for ln in table.splitlines() if ln.startswith("| Bicubic | PSNR |"))
        assert "`(n of N)`: the mean over the n of the set's N images" in table
    # Where the paper has a value, a partial mean gets none of its Δ.
    summary = {"Set5": {"x3": {"psnr": 30.85, "partial": {"psnr": [4, 5]}}}}
    table = report.table3_markdown([report.Row("Bicubic", summary, "Bicubic")])
    assert "| Bicubic | PSNR | 30.85 (4 of 5) |" in table and "|  | PSNR Δ | – |" in table


def test_ifc_below_its_minimum_keeps_psnr_and_ssim(eval_tool, mini_root, tmp_path, capsys):
    from PIL import Image

    Image.fromarray(imread(mini_root / "Mini" / "bird.png")[:60, :60]).save(mini_root / "Mini" / "tiny.png")
    out = tmp_path / "o"
    argv = ["--method", "bicubic", "--scale", "3", "--sets", "Mini", "--data-root", str(mini_root),
            "--out", str(out), "--no-images", "--quiet"]
    rc, _, err = _run(eval_tool, argv, capsys)
    assert rc == 0, err
    assert err.splitlines() == [f"eval.py: warning: {mini_root / 'Mini' / 'tiny.png'}: x3: ifc not computable: "
                                "IFC needs images of at least 72x72 pixels (a 4-level pyramid), got (54, 54)"]
    with open(out / "per_image.csv") as f:
        tiny = next(r for r in csv.DictReader(f) if r["image"] == "tiny")
    assert tiny["psnr"] and tiny["ssim"] and tiny["ifc"] == ""
    cell = json.loads((out / "summary.json").read_text())["Mini"]["x3"]
    assert cell["partial"] == {"ifc": [2, 3]} and set(cell) == {"psnr", "ssim", "ifc", "partial"}
    assert len(json.loads((out / "run.json").read_text())["not_computable"]) == 1

    # Every image failing: the table still shows the set asked for, its mean as 0 of N.
    (mini_root / "Small").mkdir()
    for name in ("a.png", "b.png"):
        shutil.copyfile(mini_root / "Mini" / "tiny.png", mini_root / "Small" / name)
    rc, _, err = _run(eval_tool, ["--method", "bicubic", "--scale", "3", "--sets", "Small", "--data-root",
                                  str(mini_root), "--out", str(out), "--no-images", "--quiet", "--metrics", "ifc"],
                      capsys)
    assert rc == 1 and "2 image(s) could not be evaluated" in err
    table = (out / "table3.md").read_text()
    assert "| Method | Metric | Small x3 |" in table and "| Bicubic | IFC | – (0 of 2) |" in table
    assert json.loads((out / "summary.json").read_text()) == {"Small": {"x3": {"partial": {"ifc": [0, 2]}}}}


# The tool with BicubicUpscaler.upscale made to pause at the second image (the report of a first
# run stays in --out), for the test to send the signal while the evaluation is half done.
_EVAL_CHILD = """
import pathlib, runpy, sys, time
from ddsr.evaluation import protocol
ready, tool = sys.argv[1:3]
real = protocol.BicubicUpscaler.upscale
calls = []

def upscale(self, image):
    calls.append(image.name)
    if len(calls) == 2:
        pathlib.Path(ready).write_text(image.name)
        time.sleep(60)
    return real(self, image)

protocol.BicubicUpscaler.upscale = upscale
sys.argv = [tool] + sys.argv[3:]
runpy.run_path(tool, run_name="__main__")
"""


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_evaluation_leaves_the_previous_report_whole(eval_tool, repo_root, mini_root, tmp_path,
                                                                   capsys, signum, status):
    out = tmp_path / "report"
    assert _run(eval_tool, _bicubic(mini_root, out, "--sets", "Mini"), capsys)[0] == 0
    before = _snapshot(out)
    ready = tmp_path / "ready"
    argv = _bicubic(mini_root, out, "--sets", "Mini", "--scale", "2", "3")
    proc = subprocess.Popen([sys.executable, "-c", _EVAL_CHILD, str(ready), str(repo_root / "tools" / "eval.py"),
                             *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status
    assert err.splitlines() == [f"eval.py: error: interrupted ({signal.Signals(signum).name}); the previous "
                                f"report in {out} (if any) is unchanged"]
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "ready", "report"]
