"""The SRCNN and FSRCNN authors' MATLAB forward passes, written out in numpy.

This is the independent oracle of ``tests/test_official.py``: it reads the
``.mat`` variables the way the authors' MATLAB test code does (``SRCNN.m``,
``FSRCNN.m`` and its ``deconv.m``) and runs the nets the way that code runs
them, without Caffe and without :mod:`ddsr.model.official`'s conversion:

- every k x k filter is MATLAB's column-major ``reshape(w, k, k)``, written
  here as the index formula ``K(i, j) = w(i + (j - 1) k)`` rather than through
  numpy's ``order="F"`` so that it does not share code with the converter;
- every convolution is ``imfilter(x, K, 'same', 'replicate')``: correlation,
  the input padded by replicating its edge pixels, output the input's size;
- FSRCNN's last layer is ``deconv.m``: the input padded by one replicated
  pixel, ``x(i, j) * K`` added into the output at rows/columns
  ``1 + (i - 1) s`` (1-based, over the padded input), and the ``s H x s W``
  window kept from row/column ``(k + 1) / 2 + s`` (1-based).

Computed in float64 (MATLAB computes these in double or single; the difference
is far below the 1e-5 the tests allow).
"""

import numpy as np


def matlab_reshape_square(w, k):
    """MATLAB ``reshape(w, k, k)`` of a vector of k*k values (column-major)."""
    w = np.asarray(w, dtype=np.float64).ravel()
    if w.size != k * k:
        raise ValueError(f"expected {k * k} values, got {w.size}")
    K = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            K[i, j] = w[i + j * k]
    return K


def imfilter_same_replicate(x, K):
    """MATLAB ``imfilter(x, K, 'same', 'replicate')`` for an odd square K.

    Correlation (no kernel flip): ``out(y, x) = sum_ij K(i, j) in(y + i - c, x + j - c)``
    with ``c`` the kernel centre, ``in`` replicate-padded by ``c``.
    """
    x = np.asarray(x, dtype=np.float64)
    k = K.shape[0]
    if K.shape != (k, k) or k % 2 != 1:
        raise ValueError(f"expected an odd square kernel, got {K.shape}")
    c = (k - 1) // 2
    padded = np.pad(x, c, mode="edge")
    out = np.zeros_like(x)
    h, w = x.shape
    for i in range(k):
        for j in range(k):
            out += K[i, j] * padded[i:i + h, j:j + w]
    return out


def deconv_matlab(x, K, stride):
    """FSRCNN's ``deconv.m``: strided transposed convolution, MATLAB's placement."""
    x = np.asarray(x, dtype=np.float64)
    k = K.shape[0]
    border = 1
    h0, w0 = x.shape
    padded = np.pad(x, border, mode="edge")
    h, w = padded.shape
    full = np.zeros((h * stride + k - 1, w * stride + k - 1))
    # 0-based: padded pixel (i, j) adds K into full[i*s : i*s + k, j*s : j*s + k].
    for a in range(k):
        for b in range(k):
            full[a:a + (h - 1) * stride + 1:stride, b:b + (w - 1) * stride + 1:stride] += K[a, b] * padded
    start = (k + 1) // 2 + stride * border - 1  # the 1-based (k+1)/2 + s*border, made 0-based
    return full[start:start + h0 * stride, start:start + w0 * stride]


def srcnn_forward(mat, im_b):
    """``SRCNN.m``: the 3-layer SRCNN on the bicubic-upscaled Y image (values in [0, 1])."""
    w1 = np.asarray(mat["weights_conv1"], dtype=np.float64)   # (k1*k1, n1)
    b1 = np.asarray(mat["biases_conv1"], dtype=np.float64).ravel()
    w2 = np.asarray(mat["weights_conv2"], dtype=np.float64)   # (n1, k2*k2, n2)
    b2 = np.asarray(mat["biases_conv2"], dtype=np.float64).ravel()
    w3 = np.asarray(mat["weights_conv3"], dtype=np.float64)   # (n2, k3*k3)
    b3 = np.asarray(mat["biases_conv3"], dtype=np.float64).ravel()
    k1 = int(round(np.sqrt(w1.shape[0])))
    k3 = int(round(np.sqrt(w3.shape[1])))
    conv1 = [np.maximum(imfilter_same_replicate(im_b, matlab_reshape_square(w1[:, i], k1)) + b1[i], 0)
             for i in range(w1.shape[1])]
    conv2 = []
    for i in range(w2.shape[2]):
        acc = sum(w2[j, 0, i] * conv1[j] for j in range(w2.shape[0]))
        conv2.append(np.maximum(acc + b2[i], 0))
    conv3 = sum(imfilter_same_replicate(conv2[i], matlab_reshape_square(w3[i, :], k3))
                for i in range(w3.shape[0]))
    return conv3 + b3[0]


def _cell(mat, name):
    return [np.asarray(c) for c in np.asarray(mat[name]).ravel()]


def fsrcnn_forward(mat, im_l, scale):
    """``FSRCNN.m``: FSRCNN on the LR Y image (values in [0, 1]); returns the s*H x s*W output."""
    weights = _cell(mat, "weights_conv")
    biases = _cell(mat, "biases_conv")
    prelus = _cell(mat, "prelu_conv")
    n = len(weights)
    data = [np.asarray(im_l, dtype=np.float64)]
    for idx in range(n - 1):
        w = weights[idx].astype(np.float64)       # (channels, k*k, filters)
        b = biases[idx].astype(np.float64).ravel()
        a = float(prelus[idx].ravel()[0])
        channels, ksq, filters = w.shape
        k = int(round(np.sqrt(ksq)))
        out = []
        for i in range(filters):
            acc = sum(imfilter_same_replicate(data[j], matlab_reshape_square(w[j, :, i], k))
                      for j in range(channels))
            acc = acc + b[i]
            out.append(np.maximum(acc, 0) + a * np.minimum(acc, 0))
        data = out
    w = weights[-1].astype(np.float64)            # (1, k*k, channels)
    b = biases[-1].astype(np.float64).ravel()
    k = int(round(np.sqrt(w.shape[1])))
    result = sum(deconv_matlab(data[j], matlab_reshape_square(w[0, :, j], k), scale)
                 for j in range(w.shape[2]))
    return result + b[0]
