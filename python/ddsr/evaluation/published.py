"""The DDSR paper's published numbers, one place for every tool that compares with them.

Values are copied from ``shared/paper/DDSR-paper.txt`` (Table 1, Table 2, Table 3), at the
precision the paper prints. Table 3 uses the same nesting as ``tools/eval.py``'s
``summary.json`` -- ``{method: {set: {"x<scale>": {metric: value}}}}`` -- so a computed
summary and a published row compare cell by cell.

Known problem: the Bicubic IFC of Set5 x3 (3.10) is almost certainly a typo in the paper.
The evaluation protocol gives 3.58; MATLAB's IFC of the SelfExSR bicubic Set5 x3 images
(``shared/reference``, a close variant of the protocol) averages 3.45; and the paper's Set5
IFC is above Set14's at every other scale. See :data:`KNOWN_TYPOS`.
"""

import re

__all__ = [
    "TABLE3",
    "TABLE3_METHODS",
    "TABLE3_SETS",
    "TABLE3_SCALES",
    "METRICS",
    "KNOWN_TYPOS",
    "TABLE1",
    "TABLE2",
    "published_row",
    "match_method",
]

TABLE3_SETS = ("Set5", "Set14", "BSD200")
TABLE3_SCALES = (2, 3, 4)
METRICS = ("psnr", "ssim", "ifc")


def _rows(psnr, ssim=None, ifc=None):
    """Nest nine values given in the paper's column order (x2: Set5 Set14 BSD200, x3 ..., x4 ...)."""
    out = {s: {} for s in TABLE3_SETS}
    for i, value in enumerate(psnr):
        scale = TABLE3_SCALES[i // 3]
        cell = {"psnr": value}
        if ssim is not None:
            cell["ssim"] = ssim[i]
        if ifc is not None:
            cell["ifc"] = ifc[i]
        out[TABLE3_SETS[i % 3]][f"x{scale}"] = cell
    return out


# Table 3 of the paper (mean PSNR dB / SSIM / IFC on the Y channel, shave = scale).
TABLE3 = {
    "Bicubic": _rows(
        psnr=(33.66, 30.23, 29.70, 30.39, 27.54, 27.26, 28.42, 26.00, 25.97),
        ssim=(0.93, 0.87, 0.86, 0.87, 0.77, 0.76, 0.81, 0.70, 0.69),
        ifc=(6.10, 6.09, 5.70, 3.10, 3.41, 3.19, 2.35, 2.23, 2.04),
    ),
    "A+": _rows(
        psnr=(36.55, 32.28, 31.44, 32.59, 29.13, 28.36, 30.28, 27.32, 26.83),
        ssim=(0.95, 0.91, 0.90, 0.91, 0.82, 0.81, 0.86, 0.75, 0.74),
        ifc=(8.48, 8.11, 7.49, 4.84, 4.45, 4.07, 3.26, 2.74, 2.62),
    ),
    "SRF": _rows(
        psnr=(36.87, 32.51, 31.65, 32.71, 29.23, 28.45, 30.35, 27.41, 26.89),
        ssim=(0.96, 0.91, 0.91, 0.91, 0.82, 0.81, 0.86, 0.75, 0.74),
        ifc=(8.63, 8.22, 7.60, 4.90, 4.49, 4.11, 3.26, 2.94, 2.62),
    ),
    "SRCNN": _rows(
        psnr=(36.34, 32.18, 31.38, 32.39, 29.00, 28.28, 30.09, 27.20, 26.73),
        ssim=(0.95, 0.90, 0.93, 0.90, 0.81, 0.80, 0.85, 0.74, 0.73),
        ifc=(7.54, 7.22, 6.80, 4.25, 3.96, 3.67, 2.86, 2.60, 2.37),
    ),
    "FSRCNN": _rows(
        psnr=(37.00, 32.63, 31.80, 33.16, 29.43, 28.60, 30.71, 27.59, 26.98),
        ssim=(0.96, 0.91, 0.91, 0.91, 0.82, 0.81, 0.87, 0.75, 0.74),
        ifc=(8.06, 7.71, 7.25, 4.88, 4.47, 4.11, 3.01, 2.70, 2.41),
    ),
    "DDSR": _rows(
        psnr=(37.10, 32.65, 32.35, 33.33, 29.57, 29.17, 31.25, 28.02, 27.60),
        ssim=(0.96, 0.91, 0.91, 0.92, 0.83, 0.82, 0.88, 0.77, 0.75),
        ifc=(8.22, 7.92, 7.12, 4.83, 4.42, 3.83, 3.39, 3.02, 2.53),
    ),
}
TABLE3_METHODS = tuple(TABLE3)

# Published cells believed to be misprints: (method, set, "x<scale>", metric) -> why.
KNOWN_TYPOS = {
    ("Bicubic", "Set5", "x3", "ifc"): (
        "published 3.10; the protocol gives 3.58, MATLAB's own IFC of the SelfExSR bicubic "
        "images (a close variant, in the project's MATLAB reference values) averages 3.45, and Set5 is above Set14 "
        "at every other scale"
    ),
}

# Table 1 (x3, DDSR with an 18-layer mapping): PSNR dB / time (s per image) by deconvolution kernel.
TABLE1 = {
    "3x3x64": {"Set5": {"psnr": 33.32, "time_s": 0.40}, "Set14": {"psnr": 29.57, "time_s": 0.39}},
    "5x5x64": {"Set5": {"psnr": 33.33, "time_s": 0.41}, "Set14": {"psnr": 29.57, "time_s": 0.40}},
    "7x7x64": {"Set5": {"psnr": 33.36, "time_s": 0.40}, "Set14": {"psnr": 29.62, "time_s": 0.42}},
}

# Table 2 (x3): PSNR dB / SSIM / time (s per image) by mapping depth.
TABLE2 = {
    "DDSR-6": {
        "Set5": {"psnr": 33.09, "ssim": 0.9149, "time_s": 0.26},
        "Set14": {"psnr": 29.41, "ssim": 0.8272, "time_s": 0.20},
        "BSD200": {"psnr": 29.08, "ssim": 0.8133, "time_s": 0.18},
    },
    "DDSR-12": {
        "Set5": {"psnr": 33.23, "ssim": 0.9163, "time_s": 0.29},
        "Set14": {"psnr": 29.50, "ssim": 0.8287, "time_s": 0.28},
        "BSD200": {"psnr": 29.13, "ssim": 0.8146, "time_s": 0.28},
    },
    "DDSR-18": {
        "Set5": {"psnr": 33.33, "ssim": 0.9174, "time_s": 0.38},
        "Set14": {"psnr": 29.57, "ssim": 0.8297, "time_s": 0.37},
        "BSD200": {"psnr": 29.17, "ssim": 0.8155, "time_s": 0.39},
    },
}


def published_row(method):
    """Table 3's published values of one method (``{set: {"x<s>": {metric: value}}}``).

    Raises
    ------
    ValueError
        ``method`` is not a row of Table 3.
    """
    if method not in TABLE3:
        raise ValueError(f"no published Table 3 row {method!r}; rows: {', '.join(TABLE3_METHODS)}")
    return TABLE3[method]


def match_method(label):
    """The Table 3 row a result label refers to, or ``None``.

    A label matches a row when it equals the row's name, or when its first word (split at
    ``_``, ``-``, space or ``.``) does, ignoring case: ``"DDSR"``, ``"ddsr_x3"`` and
    ``"srcnn-915"`` match DDSR and SRCNN; ``"demo_x3"`` matches nothing.
    """
    if not label:
        return None
    by_lower = {m.lower(): m for m in TABLE3_METHODS}
    text = str(label).strip().lower()
    if text in by_lower:
        return by_lower[text]
    first = re.split(r"[_\-\s.]", text, maxsplit=1)[0]
    return by_lower.get(first)
