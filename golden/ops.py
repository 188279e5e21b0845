"""Vectorised tensor operations shared by the float reference and the integer model.

Tensors are (C, H, W) arrays, one image at a time, exactly as the accelerator stores them.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .network import out_size

__all__ = ["im2col", "conv2d", "max_pool_ceil"]


def im2col(x, kernel, stride, pad):
    """Return the (C*k*k, OH*OW) patch matrix of ``x`` with zero padding, and (OH, OW).

    Row order is (c, ky, kx), matching the (out, in, ky, kx) order of the weights.
    """
    c, h, w = x.shape
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    oh, ow = out_size(h, kernel, stride, pad), out_size(w, kernel, stride, pad)
    windows = sliding_window_view(x, (kernel, kernel), axis=(1, 2))
    windows = windows[:, : (oh - 1) * stride + 1: stride, : (ow - 1) * stride + 1: stride]
    cols = windows.transpose(0, 3, 4, 1, 2).reshape(c * kernel * kernel, oh * ow)
    return cols, (oh, ow)


def conv2d(x, weight, stride=1, pad=0, dtype=np.float32):
    """Convolution without bias: ``weight`` is (O, C, k, k); the product runs in ``dtype``.

    With ``dtype=np.float64`` and integer inputs whose sums stay below 2**53 the result is exact,
    which is how the integer model gets BLAS speed.
    """
    out_ch, in_ch, kernel, _ = weight.shape
    cols, (oh, ow) = im2col(x.astype(dtype, copy=False), kernel, stride, pad)
    return (weight.reshape(out_ch, -1).astype(dtype, copy=False) @ cols).reshape(out_ch, oh, ow)


def max_pool_ceil(x, kernel=3, stride=2):
    """Caffe max pooling (no padding, ceil-mode output); windows past the edge are clipped."""
    c, h, w = x.shape
    oh, ow = out_size(h, kernel, stride, 0, True), out_size(w, kernel, stride, 0, True)
    # Pad with the dtype's minimum so clipped windows take the max of their in-range part.
    fill = np.iinfo(x.dtype).min if np.issubdtype(x.dtype, np.integer) else -np.inf
    need_h, need_w = (oh - 1) * stride + kernel, (ow - 1) * stride + kernel
    x = np.pad(x, ((0, 0), (0, need_h - h), (0, need_w - w)), constant_values=fill)
    windows = sliding_window_view(x, (kernel, kernel), axis=(1, 2))[:, ::stride, ::stride]
    return windows.max(axis=(3, 4))
