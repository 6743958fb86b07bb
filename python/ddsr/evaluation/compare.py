"""The visual comparison of the paper's Fig. 7: crops of bicubic, model(s) and ground truth.

For each chosen image, one row: the whole ground truth with the crop marked,
then the same crop of the bicubic upscale, of each model's output and of the
ground truth, each titled with its PSNR (the whole image's, Y channel, border
shaved by the scale: the numbers Fig. 7 prints). The images go through the
evaluation protocol of :mod:`ddsr.evaluation` (modcrop, Y, single-precision
MATLAB bicubic LR); colour outputs are the model's Y with the bicubic Cb and Cr
(:func:`ddsr.evaluation.colour_output`), as the paper does.

Where no crop is given, :func:`best_crop` picks the window where the first
model removes the most squared error relative to bicubic: the place where the
difference is visible.
"""

import numpy as np

PAPER_IMAGES = ("Set5/bird_GT", "Set14/monarch", "Set14/comic", "BSD200/12003")
"""The images of the paper's Fig. 7 (x3), as ``set/stem`` under a data root."""


def find_image(data_root, spec):
    """The file of ``set/stem`` (or ``set/file.ext``) under ``data_root``.

    Raises
    ------
    ValueError
        No such set folder or image.
    """
    from pathlib import Path

    from ddsr.data.registry import list_set_images

    if "/" not in spec:
        raise ValueError(f"image {spec!r}: give it as SET/NAME, e.g. Set5/bird_GT")
    set_name, name = spec.split("/", 1)
    files = list_set_images(data_root, set_name)
    for path in files:
        if name in (path.stem, path.name):
            return path
    raise ValueError(f"no image {name!r} in {Path(data_root) / set_name} "
                     f"(it has {', '.join(p.stem for p in files[:8])}{', ...' if len(files) > 8 else ''})")


def best_crop(hr_y, bicubic_y, sr_y, size, border=0):
    """Top-left corner of the ``size`` x ``size`` window where ``sr_y`` gains most over ``bicubic_y``.

    The gain of a window is the sum over its pixels of ``(bicubic - hr)^2 - (sr - hr)^2``,
    computed for every window with a summed-area table; windows stay ``border`` pixels
    away from the image edges (the shaved border).

    Parameters
    ----------
    hr_y, bicubic_y, sr_y : ndarray, shape (H, W)
        Ground truth, bicubic and model Y (uint8 or float on the same scale).
    size : int
    border : int

    Returns
    -------
    (int, int)
        ``(top, left)``.
    """
    hr = np.asarray(hr_y, dtype=np.float64)
    gain = (np.asarray(bicubic_y, dtype=np.float64) - hr) ** 2 - (np.asarray(sr_y, dtype=np.float64) - hr) ** 2
    h, w = gain.shape
    size = int(size)
    if size < 1 or size + 2 * border > min(h, w):
        raise ValueError(f"crop size {size} with border {border} does not fit a {h}x{w} image")
    table = np.zeros((h + 1, w + 1))
    table[1:, 1:] = gain.cumsum(0).cumsum(1)
    sums = table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]
    # sums[i, j] is the window with top-left (i, j); keep those inside the border
    valid = sums[border:h - size - border + 1, border:w - size - border + 1]
    i, j = np.unravel_index(np.argmax(valid), valid.shape)
    return int(i + border), int(j + border)


def comparison_entry(path, scale, models, name=None):
    """Run one HR image through the protocol: bicubic and every model, colour outputs and PSNR.

    Parameters
    ----------
    path : str or Path
        The HR image.
    scale : int
    models : list of (label, upscaler)
        Upscalers of :mod:`ddsr.evaluation` (``CaffeUpscaler``).
    name : str or None
        Label (default: the file's stem).

    Returns
    -------
    dict
        ``name``, ``scale``, ``hr`` (modcropped, uint8), ``hr_y``, and ``outputs``: a list of
        ``(label, rgb_or_grey uint8, y uint8, psnr)`` starting with ``"Bicubic"``.
    """
    from pathlib import Path

    from ddsr.evaluation.protocol import colour_output, prepare_image, to_uint8
    from ddsr.evaluation.metrics import measure
    from ddsr.matlab import imread

    image = prepare_image(imread(path), scale, name=name or Path(path).stem)
    outputs = []
    bicubic = to_uint8(image.bicubic_y)
    outputs.append(("Bicubic", colour_output(image, bicubic), bicubic,
                    measure(image.hr_y, bicubic, scale, metrics=("psnr",))["psnr"]))
    for label, upscaler in models:
        sr, _ = upscaler.upscale(image)
        sr = to_uint8(sr)
        outputs.append((label, colour_output(image, sr), sr,
                        measure(image.hr_y, sr, scale, metrics=("psnr",))["psnr"]))
    return {"name": image.name, "scale": scale, "hr": image.hr, "hr_y": image.hr_y, "outputs": outputs}


def choose_crop(entry, size, crop=None):
    """The crop ``(top, left, size)`` for an entry: the one given, else :func:`best_crop` of the first model."""
    h, w = entry["hr_y"].shape
    if crop is not None:
        top, left, size = (int(v) for v in crop)
        if top < 0 or left < 0 or size < 1 or top + size > h or left + size > w:
            raise ValueError(f"{entry['name']}: crop {top},{left},{size} is outside the {h}x{w} image")
        return top, left, size
    size = min(int(size), h - 2 * entry["scale"], w - 2 * entry["scale"])
    _, _, bicubic_y, _ = entry["outputs"][0]
    model_y = entry["outputs"][1][2] if len(entry["outputs"]) > 1 else bicubic_y
    top, left = best_crop(entry["hr_y"], bicubic_y, model_y, size, border=entry["scale"])
    return top, left, size


def plot_comparison(entries, path, crop_size=96, crops=None, title=None):
    """Write the comparison figure: one row per image, one column per method plus ground truth.

    Parameters
    ----------
    entries : list of dict
        From :func:`comparison_entry`.
    path : str or Path
        PNG to write (atomically).
    crop_size : int
        Side of the automatic crop, in HR pixels.
    crops : dict or None
        Image name -> ``(top, left, size)`` to override the automatic crop.
    title : str or None

    Returns
    -------
    list of dict
        Per image and method: ``image``, ``method``, ``psnr``, ``crop_top``, ``crop_left``,
        ``crop_size`` (the CSV rows behind the figure).
    """
    from matplotlib.patches import Rectangle

    from ddsr.figures import pyplot, save_figure

    if not entries:
        raise ValueError("no images to compare")
    crops = crops or {}
    plt = pyplot()
    columns = 1 + len(entries[0]["outputs"]) + 1
    fig, axes = plt.subplots(len(entries), columns, figsize=(2.6 * columns, 3.0 * len(entries)),
                             squeeze=False, layout="constrained")
    rows = []
    for r, entry in enumerate(entries):
        top, left, size = choose_crop(entry, crop_size, crops.get(entry["name"]))
        grey = entry["hr"].ndim == 2
        show = dict(cmap="gray", vmin=0, vmax=255) if grey else {}
        window = (slice(top, top + size), slice(left, left + size))
        ax = axes[r, 0]
        ax.imshow(entry["hr"], **show)
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), size, size, fill=False, ec="yellow", lw=1.5))
        ax.set_title(f"{entry['name']} (x{entry['scale']})", fontsize=9)
        panels = [(label, image, f"{label}\n{value:.2f} dB") for label, image, _, value in entry["outputs"]]
        panels.append(("Ground truth", entry["hr"], "Ground truth\n(HR)"))
        for c, (label, image, caption) in enumerate(panels, start=1):
            axes[r, c].imshow(image[window], interpolation="nearest", **show)
            axes[r, c].set_title(caption, fontsize=9)
        for label, _, _, value in entry["outputs"]:
            rows.append({"image": entry["name"], "method": label, "psnr": value,
                         "crop_top": top, "crop_left": left, "crop_size": size})
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)
    return rows


COMPARISON_COLUMNS = ("image", "method", "psnr", "crop_top", "crop_left", "crop_size")


def write_comparison(models, images, data_root, scale, out, *, crop_size=96, crops=None, title=None, tile=None):
    """The comparison figure of some models on some test images, and its CSV beside it.

    Parameters
    ----------
    models : list of (label, deploy, weights)
        The first one chooses the automatic crop.
    images : list of str
        ``SET/NAME`` specs under ``data_root`` (:func:`find_image`).
    data_root : path-like
    scale : int
    out : path-like
        The PNG; the CSV of every panel's PSNR and crop is ``out`` with ``.csv``.
    crop_size, crops, title
        As :func:`plot_comparison`.
    tile : int, optional
        Run the nets on tiles of this many LR pixels (the same result, less memory).

    Returns
    -------
    (list of dict, Path)
        The entries (:func:`comparison_entry`) and the CSV written.
    """
    from pathlib import Path

    from ddsr.csvfiles import write_csv_atomic
    from ddsr.evaluation.upscaler import load_upscaler

    upscalers = [(label, load_upscaler(deploy, weights, scale, label=label, tile=tile))
                 for label, deploy, weights in models]
    entries = [comparison_entry(find_image(data_root, spec), scale, upscalers) for spec in images]
    unknown = set(crops or {}) - {e["name"] for e in entries}
    if unknown:
        raise ValueError(f"--crop for images not compared: {', '.join(sorted(unknown))}")
    rows = plot_comparison(entries, out, crop_size=crop_size, crops=crops, title=title)
    csv_path = Path(out).with_suffix(".csv")
    write_csv_atomic(csv_path, rows, COMPARISON_COLUMNS)
    return entries, csv_path
