"""tools/upscale.py and ddsr.inference.upscale: anyone's images through the evaluation's net running.

Independent checks: the SR Y of a greyscale picture is the net's forward pass (pycaffe, replicate
padding) and nothing else; a colour picture's Y and CbCr are the SR Y and the MATLAB-bicubic
CbCr (to the 1 grey level that ycbcr2rgb's rounding allows); each input kind gives the output of
its imread conversion; tiles give the untiled result; the official FSRCNN x3 on a Set14 image
gives tools/eval.py's per-image PSNR.
"""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ddsr.inference import upscale
from ddsr.matlab import im2single, im2uint8, imread, imresize, rgb2y, rgb2ycbcr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tool_module import load_tool  # noqa: E402




@pytest.fixture(scope="module")
def tool():
    return load_tool("upscale")


def _run(tool, argv, capsys):
    rc = tool.main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _read(path):
    return np.asarray(Image.open(path))


# --------------------------------------------------------------------------- no Caffe

@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(orientation):
    from PIL import ImageOps

    rgb = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    im = Image.fromarray(rgb)
    im.getexif()[0x0112] = orientation  # the image's own (cached) EXIF, which exif_transpose reads
    want = np.asarray(ImageOps.exif_transpose(im))
    assert want.shape == ((5, 7, 3) if orientation < 5 else (7, 5, 3))
    assert np.array_equal(upscale.apply_orientation(rgb, orientation), want)


def test_collect_inputs_folders_files_and_errors(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / "d" / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    files, errors = upscale.collect_inputs([tmp_path / "d", tmp_path / "d" / "notes.txt", tmp_path / "empty",
                                            tmp_path / "missing.png"])
    assert [f.name for f in files] == ["a.JPG", "b.png", "notes.txt"]
    assert len(errors) == 2 and "no images" in errors[0] and "no such file" in errors[1]


def test_lr_image_derived_images():
    grey = np.random.default_rng(0).integers(0, 256, (6, 9), dtype=np.uint8)
    image = upscale.LRImage("g", 3, grey)
    assert not image.is_colour and image.bicubic_cbcr is None and image.sr_shape == (18, 27)
    np.testing.assert_array_equal(image.bicubic_y, imresize(im2single(grey), 3))
    rgb = np.random.default_rng(1).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    image = upscale.LRImage("c", 2, rgb)
    cb = rgb2ycbcr(rgb)[..., 1]
    np.testing.assert_array_equal(image.bicubic_cbcr[..., 0], im2uint8(imresize(im2single(cb), 2)))
    with pytest.raises(ValueError, match="uint8"):
        upscale.LRImage("f", 2, rgb.astype(np.float32))


def test_unreadable_file_is_an_input_error(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(upscale.InputError, match="bad.png"):
        upscale.read_image(tmp_path / "bad.png", 3)


# --------------------------------------------------------------------------- through Caffe

@pytest.fixture(scope="module")
def nets(caffe, tmp_path_factory):
    import tiny_nets

    folder = tmp_path_factory.mktemp("nets")
    return {"rand3": tiny_nets.random_upsampler(caffe, folder, 3, name="rand_x3"),
            "box2": tiny_nets.box_net(caffe, folder, 2, name="box_x2"),
            "box3": tiny_nets.box_net(caffe, folder, 3, name="box_x3")}


@pytest.fixture(scope="module")
def photo(shared_dir):
    return imread(shared_dir / "datasets" / "Set5" / "bird_GT.bmp")[60:120, 70:150]  # 60 x 80 colour


def _forward(deploy, weights, y, scale, pad=0):
    from ddsr.evaluation.deploy_net import load_net
    from ddsr.evaluation.protocol import to_uint8
    from ddsr.evaluation.upscaler import forward_padded

    net, _ = load_net(deploy, weights)
    return to_uint8(forward_padded(net, im2single(y), scale, pad=pad))


@pytest.mark.caffe
def test_grey_colour_and_compare(tool, nets, photo, tmp_path, capsys):
    # A net with a known, plausible output (nearest x3 + 3x3 mean), whose Y stays in ycbcr2rgb's range.
    deploy, weights = nets["box3"]
    Image.fromarray(photo).save(tmp_path / "colour.png")
    Image.fromarray(rgb2y(photo)).save(tmp_path / "grey.png")
    rc, _, err = _run(tool, ["--model", str(deploy), "--weights", str(weights), "--scale", "3",
                             str(tmp_path / "colour.png"), str(tmp_path / "grey.png"), "--out", str(tmp_path / "o"),
                             "--compare", "--pad-input", "2", "--quiet"], capsys)
    assert rc == 0, err
    want_y = _forward(deploy, weights, rgb2y(photo), 3, pad=2)
    grey = _read(tmp_path / "o" / "grey.png")
    np.testing.assert_array_equal(grey, want_y)  # greyscale stays greyscale: the net's Y itself
    colour = _read(tmp_path / "o" / "colour.png")
    assert colour.shape == (180, 240, 3)
    ycbcr = rgb2ycbcr(colour).astype(int)
    assert np.abs(ycbcr[..., 0] - want_y).max() <= 1
    cbcr = upscale.LRImage("c", 3, photo).bicubic_cbcr.astype(int)
    assert np.abs(ycbcr[..., 1:] - cbcr).max() <= 2
    side = _read(tmp_path / "o" / "colour_compare.png")
    assert side.shape == (180, 2 * 240 + 4, 3)
    np.testing.assert_array_equal(side[:, -240:], colour)
    bicubic_y = im2uint8(np.clip(imresize(im2single(rgb2y(photo)), 3), 0, 1))
    assert np.abs(rgb2ycbcr(np.ascontiguousarray(side[:, :240])).astype(int)[..., 0] - bicubic_y).max() <= 1


def _save_16bit_rgb_png(path, rgb16):
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    import struct
    import zlib

    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.mark.caffe
def test_each_input_kind_gives_its_imread_conversion(tool, nets, photo, tmp_path, capsys):
    """Alpha kept (bicubic), palette and 16-bit as imread converts them, EXIF orientation applied."""
    deploy, weights = nets["rand3"]
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    alpha = rng.integers(0, 256, photo.shape[:2], dtype=np.uint8)
    Image.fromarray(np.dstack([photo, alpha])).save(src / "rgba.png")
    Image.fromarray(photo).save(src / "rgb.png")
    Image.fromarray(np.dstack([rgb2y(photo), alpha])).save(src / "la.png")
    palette = Image.fromarray(photo).quantize(64)
    palette.save(src / "palette.png")
    Image.fromarray(imread(src / "palette.png")).save(src / "palette_as_rgb.png")
    rgb16 = rng.integers(0, 65536, photo.shape, dtype=np.uint16)
    _save_16bit_rgb_png(src / "deep.png", rgb16)
    Image.fromarray(imread(src / "deep.png")).save(src / "deep_as_8bit.png")
    grey16 = rng.integers(0, 65536, photo.shape[:2], dtype=np.uint16)
    Image.fromarray(grey16.astype(np.int32), mode="I").convert("I;16").save(src / "grey16.png")
    Image.fromarray(imread(src / "grey16.png")).save(src / "grey16_as_8bit.png")
    rotated = Image.fromarray(np.ascontiguousarray(np.rot90(photo)))  # stored turned left, tagged "turn right"
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(src / "turned.jpg", exif=exif, quality=95)
    from PIL import ImageOps

    with Image.open(src / "turned.jpg") as im:
        ImageOps.exif_transpose(im).save(src / "turned_upright.png")
    rc, _, err = _run(tool, ["--model", str(deploy), "--weights", str(weights), "--scale", "3", str(src),
                             "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert rc == 0, err
    out = {p.stem: _read(p) for p in (tmp_path / "o").iterdir()}
    assert len(out) == 11
    up_alpha = im2uint8(imresize(im2single(alpha), 3))
    assert out["rgba"].shape == (180, 240, 4)
    np.testing.assert_array_equal(out["rgba"][..., :3], out["rgb"])
    np.testing.assert_array_equal(out["rgba"][..., 3], up_alpha)
    assert out["la"].shape == (180, 240, 2)
    np.testing.assert_array_equal(out["la"][..., 1], up_alpha)
    np.testing.assert_array_equal(out["la"][..., 0], _forward(deploy, weights, rgb2y(photo), 3))
    np.testing.assert_array_equal(out["palette"], out["palette_as_rgb"])
    np.testing.assert_array_equal(out["deep"], out["deep_as_8bit"])
    assert out["grey16"].ndim == 2
    np.testing.assert_array_equal(out["grey16"], out["grey16_as_8bit"])
    assert out["turned"].shape == (180, 240, 3)  # upright: 60 x 80 input
    np.testing.assert_array_equal(out["turned"], out["turned_upright"])


@pytest.mark.caffe
def test_tiled_equals_untiled(caffe, photo, tmp_path):
    """A DDSR net (random weights): tiles chosen for a small --max-memory give the untiled image."""
    import tiny_nets

    deploy, weights = tiny_nets.ddsr_small(caffe, tmp_path / "m", scale=3, depth=4, num_filters=16)
    big = np.tile(photo, (2, 2, 1))  # 120 x 160
    Image.fromarray(big).save(tmp_path / "big.png")
    common = ["--model", str(deploy), "--weights", str(weights), "--scale", "3", str(tmp_path / "big.png"),
              "--quiet"]

    def run(*extra):
        # A child process: --max-memory counts the whole process, and pytest's own is large.
        proc = subprocess.run([sys.executable, str(REPO / "tools" / "upscale.py"), *common, *extra],
                              capture_output=True, text=True)
        return proc.returncode, proc.stderr

    rc, err = run("--out", str(tmp_path / "whole"))
    assert rc == 0 and "tiles" not in err, err
    rc, err = run("--out", str(tmp_path / "tiled"), "--max-memory", "400M")
    assert rc == 0 and "tiles of" in err, err
    tile = int(err.split("tiles of ")[1].split()[0])
    assert tile < 120  # really tiled, in both directions
    np.testing.assert_array_equal(_read(tmp_path / "tiled" / "big.png"), _read(tmp_path / "whole" / "big.png"))
    rc, err = run("--out", str(tmp_path / "t2"), "--max-memory", "1M")
    assert rc == 1 and "--max-memory 1 MB is too small" in err


@pytest.mark.caffe
def test_memory_model_counts_what_caffe_allocates(nets):
    """net_bytes_per_pixel by Caffe's rules, counted by hand for the tiny x3 net (per LR pixel, floats).

    data 1; Deconvolution 4 ch x 9 HR pixels = 36, its col buffer 4 x 5 x 5 = 100, the in-place
    PReLU's copy 36; two 3x3 convolutions with in-place ReLU: 36 each + col buffers 4 x 9 x 9 = 324
    each; the reconstruction: 9 + 324. (The peak RSS against this model: docs/benchmarks.md.)
    """
    from ddsr.evaluation.deploy_net import load_net

    net, _ = load_net(*nets["rand3"])
    floats = 1 + (36 + 100 + 36) + 2 * (36 + 324) + (9 + 324)
    assert upscale.net_bytes_per_pixel(net) == 4 * floats
    assert upscale.net_bytes_per_pixel(net, reference=17) == 4 * floats


@pytest.mark.caffe
def test_bad_inputs_existing_outputs_and_atomic_writes(tool, nets, photo, tmp_path, capsys):
    deploy, weights = nets["rand3"]
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo).save(src / "a.png")
    (src / "b.png").write_bytes(b"truncated")
    Image.fromarray(photo[:20, :30]).save(src / "c.png")
    Image.fromarray(photo[:10, :10]).save(tmp_path / "a.jpg")  # same output name as in/a.png
    out = tmp_path / "o"
    argv = ["--model", str(deploy), "--weights", str(weights), "--scale", "3", "--quiet", "--out", str(out)]
    rc, _, err = _run(tool, argv + [str(src), str(tmp_path / "a.jpg"), str(tmp_path / "missing.png")], capsys)
    assert rc == 1
    errors = [ln for ln in err.splitlines() if ln.startswith("upscale.py: error:")]
    assert len(errors) == 3
    assert any("b.png" in e and "cannot read" in e for e in errors)
    assert any("missing.png: no such file" in e for e in errors)
    assert any("a.jpg" in e and "already written" in e for e in errors)
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]  # no temporary files left
    first = (out / "a.png").read_bytes()
    (out / "c.png").write_bytes(b"mine")
    rc, _, err = _run(tool, argv + [str(src / "a.png"), str(src / "c.png")], capsys)
    assert rc == 0 and "kept" in err and (out / "c.png").read_bytes() == b"mine"
    rc, _, err = _run(tool, argv + [str(src / "c.png"), "--overwrite"], capsys)
    assert rc == 0 and _read(out / "c.png").shape == (60, 90, 3)
    assert (out / "a.png").read_bytes() == first


@pytest.mark.caffe
def test_self_ensemble(tool, nets, photo, tmp_path, capsys):
    """A net that commutes with flips and rotations (nearest x2 + 3x3 mean) is unchanged; a random one is not."""
    Image.fromarray(photo).save(tmp_path / "p.png")
    outs = {}
    for name in ("box2", "rand3"):
        deploy, weights = nets[name]
        for x8 in (False, True):
            folder = tmp_path / f"{name}{x8}"
            rc, _, err = _run(tool, ["--model", str(deploy), "--weights", str(weights), "--scale", name[-1],
                                     str(tmp_path / "p.png"), "--out", str(folder), "--quiet"]
                              + (["--self-ensemble"] if x8 else []), capsys)
            assert rc == 0, err
            outs[name, x8] = _read(folder / "p.png").astype(int)
    assert np.abs(outs["box2", True] - outs["box2", False]).max() <= 1
    assert np.abs(outs["rand3", True] - outs["rand3", False]).max() > 5


@pytest.mark.parametrize("argv, message", [
    (["x.png", "--out", "o"], "give either --experiment"),
    (["x.png", "--out", "o", "--model", "m_deploy.prototxt"], "--model needs --weights"),
    (["x.png", "--out", "o", "--model", "net.prototxt", "--weights", "w"], "cannot tell the scale"),
    (["x.png", "--out", "o", "--experiment", "nope"], "unknown experiment 'nope'"),
    (["x.png", "--out", "o", "--model", "m_x3.prototxt", "--weights", "w", "--tile", "0"], "--tile must be positive"),
    (["x.png", "--out", "o", "--model", "m_x3.prototxt", "--weights", "w"], "deploy net m_x3.prototxt does not exist"),
])
def test_cli_errors_are_one_line(tool, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    rc, _, err = _run(tool, argv, capsys)
    assert rc == 2
    assert err.strip().splitlines() == [err.strip().splitlines()[0]] and message in err, err
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- against eval

@pytest.fixture(scope="module")
def fsrcnn_x3(caffe, shared_dir, tmp_path_factory):
    from ddsr.model import official

    out = tmp_path_factory.mktemp("fsrcnn")
    return official.import_model("fsrcnn_x3", out, source_dir=shared_dir / "models")


@pytest.mark.caffe
@pytest.mark.slow
def test_fsrcnn_x3_set14_matches_eval(fsrcnn_x3, tool, shared_dir, tmp_path, capsys):
    """The official FSRCNN x3 on Set14 bridge (greyscale) and comic (colour): eval's per-image PSNR.

    eval's LR is the protocol's single-precision bicubic downscale; a file holds it rounded to
    uint8. Fed eval's own LR, upscale gives eval's PSNR exactly; fed the LR as a PNG, within
    the 0.05 dB that the rounding of the LR costs.
    """
    from ddsr.evaluation.metrics import psnr
    from ddsr.evaluation.protocol import prepare_image
    from ddsr.evaluation.upscaler import load_upscaler

    data = tmp_path / "data" / "One"
    data.mkdir(parents=True)
    for name in ("bridge", "comic"):
        (data / f"{name}.bmp").symlink_to(shared_dir / "datasets" / "Set14" / f"{name}.bmp")
    eval_tool = load_tool("eval")
    rc = eval_tool.main(["--model", str(fsrcnn_x3["deploy"]), "--weights", str(fsrcnn_x3["weights"]), "--sets", "One",
                         "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "ev"), "--metrics", "psnr",
                         "--quiet", "--no-baseline"])
    capsys.readouterr()
    assert rc == 0
    with open(tmp_path / "ev" / "per_image.csv") as f:
        eval_psnr = {r["image"]: float(r["psnr"]) for r in csv.DictReader(f)}

    upscaler = load_upscaler(fsrcnn_x3["deploy"], fsrcnn_x3["weights"], 3)
    for name in ("bridge", "comic"):
        p = prepare_image(imread(data / f"{name}.bmp"), 3, name=name)
        lr_file = tmp_path / "lr" / f"{name}.png"
        lr_file.parent.mkdir(exist_ok=True)
        lr8 = im2uint8(p.lr_y)
        if p.is_colour:
            lr8 = np.asarray(Image.fromarray(im2uint8(imresize(im2single(p.hr), 1 / 3))))
        Image.fromarray(lr8).save(lr_file)
        image = upscale.LRImage(name, 3, lr8)
        if not p.is_colour:
            image.lr_y = p.lr_y  # eval's own (unrounded) LR
            sr, _ = upscale.super_resolve(upscaler, image)
            assert psnr(p.hr_y, sr, crop_border=3) == eval_psnr[name]
        rc, _, err = _run(tool, ["--model", str(fsrcnn_x3["deploy"]), "--weights", str(fsrcnn_x3["weights"]),
                                 str(lr_file), "--out", str(tmp_path / "up"), "--quiet"], capsys)
        assert rc == 0, err
        out_y = rgb2y(_read(tmp_path / "up" / f"{name}.png"))
        assert out_y.shape == p.hr_y.shape
        assert abs(psnr(p.hr_y, out_y, crop_border=3) - eval_psnr[name]) < 0.05
