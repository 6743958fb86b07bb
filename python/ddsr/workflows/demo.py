"""The CPU demo: a small DDSR trained on images that ship with scikit-image.

``make demo`` must run offline, on any machine, in half an hour on two cores.
Its default data are photographs bundled inside the scikit-image wheel
(``skimage/data/*.png|jpg``; loading them needs no network, unlike the
``skimage.data`` images fetched with pooch). They are written as ordinary set
folders, so the same tools that read the paper's sets read them:

- ``skimage-train``: the training images (colour and greyscale photographs:
  Y only is used, as in the paper);
- ``skimage-val``: one held-out image for Caffe's TEST phase (the validation loss);
- ``skimage-test``: three colour photographs the report evaluates (astronaut, coffee,
  motorcycle), never trained on.

With real image sets (``DATA=DIR``) the demo trains on T91 and tests on Set5
instead (:data:`REAL_SETS`).
"""

import json
from pathlib import Path

import numpy as np

from ddsr.atomic import replacing_directory

DEMO_SETS = {
    # name of the set folder -> skimage.data loader names
    "skimage-train": (
        "camera", "coins", "page", "text", "grass", "gravel", "brick",
        "rocket", "immunohistochemistry", "chelsea",
    ),
    "skimage-val": ("moon",),
    "skimage-test": ("astronaut", "coffee", "motorcycle_left"),
}
"""The bundled images of each demo set. Test images are colour photographs with edges
and fine detail (the comparison figure shows colour); none of them is used for training,
and neither is ``motorcycle_right``, the other view of the test image's stereo pair.
``hubble_deep_field`` (mostly black sky: 29% of the patches and nothing to learn) and
``retina`` (smooth) are left out."""

SKIMAGE_SETS = {"train": "skimage-train", "val": "skimage-val", "test": "skimage-test"}

REAL_SETS = {"train": "T91", "val": "BSD200-train", "val_fallback": "General-100", "test": "Set5"}
"""The sets used with ``DATA=DIR``: train T91, validate on held-out images
(the first images of BSD200-train, else of General-100), test Set5."""


def load_bundled_image(name):
    """One image bundled with scikit-image, as uint8 ``(H, W)`` or ``(H, W, 3)``.

    ``motorcycle_left`` is the left view of ``skimage.data.stereo_motorcycle()``;
    every other name is a ``skimage.data`` function. RGBA is not accepted
    (none of the chosen images has alpha).

    Raises
    ------
    ValueError
        Unknown name, or an image that is not uint8 grey or RGB.
    """
    import skimage.data

    if name == "motorcycle_left":
        image = skimage.data.stereo_motorcycle()[0]
    else:
        loader = getattr(skimage.data, name, None)
        if loader is None or not callable(loader):
            raise ValueError(f"skimage.data has no image {name!r}")
        image = loader()
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"skimage.data.{name} is {image.dtype} {image.shape}, not uint8 grey or RGB")
    return image


def _write_png(path, image):
    from PIL import Image

    Image.fromarray(image).save(path, format="PNG")


def write_demo_sets(data_root, sets=None):
    """Write the bundled images as PNG set folders ``data_root/<set>/<name>.png``.

    Each set folder is written to a temporary folder and renamed into place, so
    a set is either complete or absent. Sets that already hold exactly the
    expected image files (the names recorded in ``demo.json``, all present) are
    left as they are.

    Parameters
    ----------
    data_root : str or Path
        Folder for the set folders (the demo uses ``data/demo``).
    sets : dict or None
        Set name -> loader names (default :data:`DEMO_SETS`).

    Returns
    -------
    dict
        Set name -> list of written (or found) PNG paths.
    """
    sets = DEMO_SETS if sets is None else sets
    data_root = Path(data_root)
    data_root.mkdir(parents=True, exist_ok=True)
    written = {}
    for set_name, names in sets.items():
        if not names:
            raise ValueError(f"demo set {set_name!r} has no images")
        folder = data_root / set_name
        expected = {name: f"{name}.png" for name in names}
        stamp = folder / "demo.json"
        if stamp.is_file():
            try:
                recorded = json.loads(stamp.read_text())
            except ValueError:
                recorded = None
            if recorded == {"images": expected} and all((folder / f).is_file() for f in expected.values()):
                written[set_name] = [folder / f for f in expected.values()]
                continue
        with replacing_directory(folder, sync=False) as temp:
            for name, file_name in expected.items():
                _write_png(temp / file_name, load_bundled_image(name))
            (temp / "demo.json").write_text(json.dumps({"images": expected}, indent=1) + "\n")
        written[set_name] = [folder / f for f in expected.values()]
    return written


def real_sets(data_root):
    """The train/val/test set names to use with real data under ``data_root``.

    Raises
    ------
    ValueError
        ``data_root`` lacks T91 or Set5, or has no set to validate on.
    """
    root = Path(data_root)
    for key in ("train", "test"):
        if not (root / REAL_SETS[key]).is_dir():
            raise ValueError(f"DATA={data_root}: no {REAL_SETS[key]} folder (the demo trains on T91 "
                             f"and tests on Set5; fetch them with tools/fetch_datasets.py)")
    for key in ("val", "val_fallback"):
        if (root / REAL_SETS[key]).is_dir():
            return {"train": REAL_SETS["train"], "val": REAL_SETS[key], "test": REAL_SETS["test"]}
    raise ValueError(f"DATA={data_root}: no {REAL_SETS['val']} or {REAL_SETS['val_fallback']} folder "
                     f"to take validation images from")


# --- the report ----------------------------------------------------------------


def per_image_psnr(per_image_csv):
    """Image name -> PSNR from a ``tools/eval.py`` ``per_image.csv``."""
    import csv

    with open(per_image_csv, newline="") as handle:
        return {row["image"]: float(row["psnr"]) for row in csv.DictReader(handle) if row.get("psnr")}


def report_markdown(facts):
    """The demo's report (``reports/demo/README.md``) from what the run measured.

    Parameters
    ----------
    facts : dict
        ``experiment``, ``net`` (one line describing it), ``data`` (one line), ``test_set``,
        ``scale``, ``iterations``, ``model`` and ``bicubic`` (``{"psnr", "ssim", "ifc"}``
        means), ``per_image`` (name -> (bicubic PSNR, model PSNR)), ``min_gain``,
        ``seconds`` (step -> seconds, ``train`` included), ``seconds_per_iteration`` (None
        when this run trained nothing),
        ``machine`` (one line: CPUs, load), ``table3`` (the Markdown of tools/eval.py),
        ``commands`` (the plain commands, one per line), ``figures`` (caption -> file name).

    Returns
    -------
    str
    """
    model, bicubic = facts["model"], facts["bicubic"]
    gain = model["psnr"] - bicubic["psnr"]
    verdict = "passes" if gain >= facts["min_gain"] else "FAILS"
    total = sum(facts["seconds"].values())
    lines = [
        f"# DDSR demo: x{facts['scale']} super-resolution trained on the CPU",
        "",
        f"**{facts['test_set']} x{facts['scale']}: PSNR {model['psnr']:.2f} dB vs bicubic {bicubic['psnr']:.2f} dB "
        f"({gain:+.2f} dB; the demo's bar is +{facts['min_gain']:.1f} dB: {verdict}).**",
        "",
        f"- Net: `{facts['experiment']}`: {facts['net']}.",
        f"- Data: {facts['data']}.",
        f"- Training: `caffe train`, {facts['iterations']} iterations, "
        + (f"{facts['seconds']['train'] / 60:.1f} min ({facts['seconds_per_iteration']:.3f} s/iteration)."
           if facts["seconds_per_iteration"] else "trained by an earlier run (resumed or reused)."),
        f"- Total time: {total / 60:.1f} min ("
        + ", ".join(f"{step} {sec:.0f} s" for step, sec in facts["seconds"].items()) + ").",
        f"- Machine: {facts['machine']}.",
        "",
        "| method | PSNR (dB) | SSIM | IFC |",
        "|---|---:|---:|---:|",
    ]
    for label, values in (("Bicubic", bicubic), (f"{facts['experiment']} ({facts['iterations']} it)", model)):
        lines.append(f"| {label} | {values['psnr']:.2f} | {values['ssim']:.4f} | "
                     + (f"{values['ifc']:.2f}" if values.get("ifc") is not None else "–") + " |")
    lines.append(f"| gain | {gain:+.2f} | {model['ssim'] - bicubic['ssim']:+.4f} | "
                 + (f"{model['ifc'] - bicubic['ifc']:+.2f}" if model.get("ifc") is not None
                    and bicubic.get("ifc") is not None else "–") + " |")
    lines += ["", "Per image (PSNR, dB):", "", "| image | bicubic | model | gain |", "|---|---:|---:|---:|"]
    for name, (b, m) in facts["per_image"].items():
        lines.append(f"| {name} | {b:.2f} | {m:.2f} | {m - b:+.2f} |")
    lines += ["", "Y channel, border of `scale` pixels shaved, the SRCNN/FSRCNN MATLAB protocol "
              "(`tools/eval.py`). These are not the paper's numbers: the demo net is small and "
              "trained for minutes (see `make reproduce`).", ""]
    for caption, file_name in facts["figures"].items():
        lines += [f"## {caption}", "", f"![{caption}]({file_name})", ""]
    lines += ["## Table 3 layout (tools/eval.py)", "", facts["table3"].strip(), "",
              "## The same, by hand", "", "```sh", *facts["commands"], "```", ""]
    return "\n".join(lines)
