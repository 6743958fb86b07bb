"""MATLAB-parity image operations, shared by data preparation and evaluation.

The published SR numbers were computed in MATLAB; reproducing them to the last
digit needs MATLAB's exact arithmetic: its colour conversion and rounding, and
``imresize`` with its bicubic kernel, antialiasing, mirrored edges and the
rounding of integer intermediates between the two 1-D passes. Every function
here names the MATLAB call it mirrors and how it is checked (``tests/test_matlab.py``).

Unlike BasicSR's ``matlab_functions.imresize`` (which computes in float and
never rounds between passes), :func:`imresize` is exact for uint8 input.
"""

import numpy as np

__all__ = [
    "imread",
    "im2single",
    "im2uint8",
    "rgb2ycbcr",
    "ycbcr2rgb",
    "rgb2y",
    "modcrop",
    "shave",
    "imresize",
]

# MATLAB's rgb2ycbcr matrix (ITU-R BT.601, range 16-235 / 16-240) and offset.
_YCBCR_T = np.array([[65.481, 128.553, 24.966],
                     [-37.797, -74.203, 112.0],
                     [112.0, -93.786, -18.214]])
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])


def _round_half_away(x):
    """MATLAB's ``round``: halves go away from zero (numpy rounds them to even)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _to_uint8(x):
    """MATLAB's conversion of a double to uint8: round half away, saturate."""
    return np.clip(_round_half_away(x), 0, 255).astype(np.uint8)


def imread(path):
    """Read an image as uint8, the way MATLAB's ``imread`` hands it to SR code.

    Parameters
    ----------
    path : str or path-like
        Any format Pillow reads (BMP, PNG, JPEG, TIFF, ...).

    Returns
    -------
    image : ndarray of uint8
        ``(H, W)`` for greyscale files (kept single-channel, as MATLAB does),
        ``(H, W, 3)`` otherwise.

    Notes
    -----
    Mirrors ``imread`` followed by the conversions SR test code relies on:

    - greyscale (``L``, ``1``) stays one channel; a 1-bit image becomes 0/255
      (MATLAB's ``im2uint8`` of a logical image);
    - an alpha channel (``RGBA``, ``LA``) is dropped: MATLAB returns it as a
      separate output that SR code ignores;
    - a palette image (``P``) is expanded through its colour map to RGB
      (MATLAB's ``ind2rgb`` then ``im2uint8``);
    - 16-bit images are scaled as MATLAB's ``im2uint8`` of uint16 does,
      ``round(x / 257)`` (16-bit colour PNGs are decoded here, since Pillow
      would keep only their high byte);
    - CMYK and other modes are converted to RGB by Pillow.

    Raises
    ------
    OSError
        The file is missing, truncated or not an image (Pillow's message,
        prefixed with the path).
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format == "PNG" and _png_rawmode(im).endswith(";16B") \
                    and im.mode not in ("I;16", "I;16B", "I"):
                # Pillow decodes 16-bit colour PNGs to 8 bits by keeping the high
                # byte; MATLAB's im2uint8 rounds x / 257 instead.
                return _png16_to_uint8(path)
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                arr = np.asarray(im, dtype=np.float64)
                return _to_uint8(arr / 257.0)
            if mode == "1":
                return np.asarray(im, dtype=np.uint8) * np.uint8(255)
            if mode in ("L", "LA"):
                return np.asarray(im.convert("L"), dtype=np.uint8)
            if mode == "P":
                has_alpha = "transparency" in im.info
                im = im.convert("RGBA" if has_alpha else "RGB")
            if im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im, dtype=np.uint8).copy()
    except (OSError, ValueError, SyntaxError) as exc:
        raise OSError(f"{path}: cannot read image ({exc})") from exc


def _png_rawmode(im):
    """The raw mode Pillow decodes a PNG from, e.g. ``RGB;16B`` ('' when unknown)."""
    if not im.tile:
        return ""
    args = im.tile[0][3]
    return args if isinstance(args, str) else str(args[0])


def _png16_to_uint8(path):
    """Decode a non-interlaced 16-bit PNG (grey+alpha, RGB, RGBA) to uint8 like MATLAB.

    Returns the colour channels scaled by ``round(x / 257)`` (``im2uint8`` of
    uint16); alpha is dropped and grey+alpha stays one channel.
    """
    import struct
    import zlib

    data = open(path, "rb").read()
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat.append(chunk)
        elif kind == b"IEND":
            break
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    if depth != 16 or interlace:
        raise ValueError("only non-interlaced 16-bit PNGs take this path")
    bpp = 2 * channels
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 2:
            cur = (line + prev) & 0xFF
        elif kind == 1:
            cur = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) & 0xFF
        else:  # average and Paeth depend on the pixel just decoded: go pixel by pixel
            cur = np.zeros(stride, dtype=np.int32)
            for x in range(0, stride, bpp):
                a = cur[x - bpp:x] if x else np.zeros(bpp, dtype=np.int32)
                b = prev[x:x + bpp]
                if kind == 3:
                    pred = (a + b) // 2
                else:
                    c = prev[x - bpp:x] if x else np.zeros(bpp, dtype=np.int32)
                    p = a + b - c
                    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
                    pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
                cur[x:x + bpp] = (line[x:x + bpp] + pred) & 0xFF
        out[y] = cur
        prev = cur
    values = out.reshape(height, width, bpp).view(">u2").astype(np.float64)
    colour = values[..., :1] if channels <= 2 else values[..., :3]
    image = _to_uint8(colour / 257.0)
    return image[..., 0] if channels <= 2 else image


def im2single(image):
    """MATLAB ``im2single`` of a uint8 image: ``x / 255`` in float32."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"im2single expects uint8, got {image.dtype}")
    return image.astype(np.float32) / np.float32(255)


def im2uint8(image):
    """MATLAB ``im2uint8`` of a float image in [0, 1]: ``round(255 x)``, saturated.

    MATLAB rounds halves away from zero; values outside [0, 1] saturate.
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return _to_uint8(image.astype(np.float64) * 255.0)


def _check_rgb_uint8(image, name):
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{name} expects a uint8 image, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} expects an (H, W, 3) image, got shape {image.shape}")
    return image


def rgb2ycbcr(image):
    """Convert a uint8 RGB image to uint8 YCbCr as MATLAB's ``rgb2ycbcr`` does.

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W, 3)

    Returns
    -------
    ycbcr : ndarray of uint8, shape (H, W, 3)
        Y in 16..235, Cb and Cr in 16..240 (ITU-R BT.601).

    Notes
    -----
    Mirrors MATLAB ``rgb2ycbcr(uint8)``: coefficients ``(1/255) * T`` computed in
    double in that order, ``imlincomb`` summing R, G, B then the offset, the
    result rounded half away from zero. The floating-point form matters at
    exact .5 ties. Checked against the MATLAB-computed metrics in
    ``shared/reference`` (the Y of every HR and bicubic image goes through it;
    all 57 PSNR values agree to 1e-9 dB).
    """
    image = _check_rgb_uint8(image, "rgb2ycbcr")
    rgb = image.astype(np.float64)
    out = np.empty(image.shape, dtype=np.uint8)
    for p in range(3):
        out[..., p] = _ycbcr_channel(rgb, p)
    return out


def _ycbcr_channel(rgb, p):
    """Channel ``p`` of MATLAB's ``rgb2ycbcr`` of a float64 copy of a uint8 RGB image."""
    coeffs = (1.0 / 255.0) * _YCBCR_T[p]
    acc = coeffs[0] * rgb[..., 0]
    acc = acc + coeffs[1] * rgb[..., 1]
    acc = acc + coeffs[2] * rgb[..., 2]
    acc = acc + _YCBCR_OFFSET[p]
    return _to_uint8(acc)


def rgb2y(image):
    """The Y channel of MATLAB's ``rgb2ycbcr``; a greyscale image is returned as it is.

    This is the SR protocol's first step: a single-channel file is used as it is.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        if image.dtype != np.uint8:
            raise ValueError(f"rgb2y expects a uint8 image, got {image.dtype}")
        return image
    image = _check_rgb_uint8(image, "rgb2y")
    return _ycbcr_channel(image.astype(np.float64), 0)


def ycbcr2rgb(image):
    """Convert a uint8 YCbCr image to uint8 RGB as MATLAB's ``ycbcr2rgb`` does.

    Notes
    -----
    Mirrors MATLAB ``ycbcr2rgb(uint8)``: ``T = 255 * inv(Tycbcr)``,
    ``offset = 255 * inv(Tycbcr) * [16; 128; 128]``, ``imlincomb`` of Y, Cb, Cr
    minus the offset, rounded half away from zero and saturated to 0..255.
    There is no MATLAB oracle for it here; ``tests/test_matlab.py`` checks that
    it inverts :func:`rgb2ycbcr` to within two grey levels (the 8-bit
    YCbCr grid is coarser than RGB's).
    """
    image = _check_rgb_uint8(image, "ycbcr2rgb")
    tinv = np.linalg.inv(_YCBCR_T)
    coeffs = 255.0 * tinv
    offset = (255.0 * tinv) @ _YCBCR_OFFSET
    ycc = image.astype(np.float64)
    out = np.empty(image.shape, dtype=np.uint8)
    for p in range(3):
        acc = coeffs[p, 0] * ycc[..., 0]
        acc = acc + coeffs[p, 1] * ycc[..., 1]
        acc = acc + coeffs[p, 2] * ycc[..., 2]
        acc = acc - offset[p]
        out[..., p] = _to_uint8(acc)
    return out


def modcrop(image, scale):
    """Crop the bottom and right so that height and width are multiples of ``scale``.

    Mirrors the ``modcrop.m`` of the SRCNN/FSRCNN test code
    (``imgs(1:sz(1)-mod(sz(1),scale), 1:sz(2)-mod(sz(2),scale), :)``).
    """
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    image = np.asarray(image)
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale, ...]


def shave(image, border):
    """Remove ``border`` pixels from each side (``shave.m`` of the SRCNN test code)."""
    border = int(border)
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    image = np.asarray(image)
    if border == 0:
        return image
    if image.shape[0] <= 2 * border or image.shape[1] <= 2 * border:
        raise ValueError(f"cannot shave {border} pixels from an image of shape {image.shape}")
    return image[border:-border, border:-border, ...]


def _cubic(x):
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB ``imresize``'s ``cubic``)."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    return ((1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1)
            + (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((1 < absx) & (absx <= 2)))


def _contributions(in_length, out_length, scale, antialiasing):
    """Indices and weights of one 1-D pass, as MATLAB's ``contributions`` computes them."""
    kernel_width = 4.0
    if scale < 1 and antialiasing:
        # Widen the kernel by 1/scale and lower it: a low-pass filter before decimation.
        kernel_width = kernel_width / scale

        def kernel(x):
            return scale * _cubic(scale * x)
    else:
        kernel = _cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    p = int(np.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(p, dtype=np.float64)[None, :]
    weights = kernel(u[:, None] - indices)
    weights = weights / np.sum(weights, axis=1, keepdims=True)
    # Symmetric mirroring that repeats the edge pixel: [1..n, n..1] (1-based).
    aux = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    indices = aux[np.mod(indices.astype(np.int64) - 1, aux.size)]
    keep = np.any(weights != 0, axis=0)
    return indices[:, keep], weights[:, keep]


def _resize_along(image, axis, out_length, scale, antialiasing):
    indices, weights = _contributions(image.shape[axis], out_length, scale, antialiasing)
    src = np.moveaxis(image, axis, 0).astype(np.float64)
    acc = np.zeros((out_length,) + src.shape[1:], dtype=np.float64)
    extra = (1,) * (src.ndim - 1)
    # Accumulate tap by tap, in MATLAB's order, so that sums are bit-identical.
    for k in range(indices.shape[1]):
        acc += weights[:, k].reshape((-1,) + extra) * src[indices[:, k]]
    if image.dtype == np.uint8:
        out = _to_uint8(acc)
    else:
        out = acc.astype(image.dtype)
    return np.moveaxis(out, 0, axis)


def imresize(image, scale=None, output_shape=None, antialiasing=True):
    """Bicubic resize exactly as MATLAB's ``imresize(image, scale, 'bicubic')``.

    Parameters
    ----------
    image : ndarray, uint8, float32 or float64, shape (H, W) or (H, W, C)
    scale : float, optional
        Resize factor; the output is ``ceil(scale * H) x ceil(scale * W)``.
    output_shape : tuple of int, optional
        ``(rows, cols)`` instead of ``scale`` (``imresize(image, [rows cols])``).
    antialiasing : bool
        MATLAB's ``'Antialiasing'`` (on by default, effective when shrinking).

    Returns
    -------
    resized : ndarray of the input's dtype

    Notes
    -----
    Mirrors MATLAB ``imresize`` with the ``'bicubic'`` method: Keys' kernel
    (a = -0.5), widened by ``1/scale`` and scaled when shrinking with
    antialiasing; input coordinate ``u = x/scale + 0.5 (1 - 1/scale)``; weights
    normalised to sum 1; edges mirrored with the edge pixel repeated; rows
    (dimension 1) first, then columns, for equal scales; the intermediate kept
    in the input's class, so a uint8 image is rounded between the passes
    (half away from zero) and a float32 image is stored as float32.

    Checked in ``tests/test_matlab.py``: the bicubic upscale of uint8 RGB
    against the MATLAB-computed metrics in ``shared/reference`` (57 images,
    PSNR to 1e-9 dB), and the antialiased float32 downscale through the
    bicubic baseline of the SRCNN protocol (Set5 and Set14 mean PSNR to the
    four published decimals).
    """
    image = np.asarray(image)
    if image.dtype not in (np.uint8, np.float32, np.float64):
        raise ValueError(f"imresize supports uint8, float32 and float64, got {image.dtype}")
    if image.ndim not in (2, 3):
        raise ValueError(f"imresize expects (H, W) or (H, W, C), got shape {image.shape}")
    h, w = image.shape[:2]
    if (scale is None) == (output_shape is None):
        raise ValueError("give exactly one of scale and output_shape")
    if scale is not None:
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        scales = (float(scale), float(scale))
        out_shape = (int(np.ceil(scale * h)), int(np.ceil(scale * w)))
    else:
        out_shape = tuple(int(n) for n in output_shape)
        if len(out_shape) != 2 or min(out_shape) < 1:
            raise ValueError(f"output_shape must be two positive ints, got {output_shape}")
        scales = (out_shape[0] / h, out_shape[1] / w)
    # MATLAB resizes along the dimension with the smaller scale first (stable sort).
    order = sorted((0, 1), key=lambda d: scales[d])
    out = image
    for axis in order:
        out = _resize_along(out, axis, out_shape[axis], scales[axis], antialiasing)
    return out
