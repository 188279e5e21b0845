"""Polyphase splitting: a stride-s convolution rewritten as a stride-1 one.

The accelerator's conv engine only does stride 1. A stride-s, unpadded convolution of x with
a k x k kernel reads ``x[c, s*oy + ky, s*ox + kx]``; writing ``ky = s*qy + py`` and
``kx = s*qx + px`` turns this into a stride-1 convolution over the s*s *phases*
``x[c, py::s, px::s]`` with ceil(k/s) x ceil(k/s) kernels. The rewrite is exact, also on
integer weight codes (the kernel positions it adds get code 0, i.e. weight 0).
"""

import numpy as np

__all__ = ["phase_shape", "split_kernel", "split_conv_out", "phase_split",
           "phase_split_weights"]


def _check_stride(s):
    if int(s) != s or s < 1:
        raise ValueError(f"stride must be a positive integer, got {s!r}")
    return int(s)


def phase_shape(shape, s):
    """Shape (C*s*s, ceil(H/s), ceil(W/s)) of :func:`phase_split` of a (C, H, W) tensor."""
    s = _check_stride(s)
    c, h, w = shape
    return (c * s * s, -(-h // s), -(-w // s))


def split_kernel(k, s):
    """Side ceil(k/s) of the kernel after :func:`phase_split_weights`."""
    return -(-k // _check_stride(s))


def split_conv_out(h, k, s):
    """(stride-1 output side on the phases, original stride-s output side) of an unpadded conv.

    The two are equal whenever s = 2 and k is odd (every SqueezeNet conv1). Otherwise the
    stride-1 side can be one larger, its last row/column reading the zero fill of the shorter
    phases; callers must reject that case rather than crop silently.
    """
    if h < k:
        raise ValueError(f"window {k} does not fit an input of {h}")
    s = _check_stride(s)
    return -(-h // s) - split_kernel(k, s) + 1, (h - k) // s + 1


def phase_split(x, s):
    """Split a (C, H, W) tensor into its s*s phases.

    Returns
    -------
    ndarray of shape (C*s*s, ceil(H/s), ceil(W/s)), same dtype: plane ``c*s*s + py*s + px``
    holds ``x[c, py::s, px::s]``, zero-filled at the bottom/right where that phase is shorter.
    """
    s = _check_stride(s)
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"expected a (C, H, W) tensor, got shape {x.shape}")
    c, h, w = x.shape
    _, hp, wp = phase_shape(x.shape, s)
    padded = np.zeros((c, hp * s, wp * s), x.dtype)
    padded[:, :h, :w] = x
    # (c, hp, py, wp, px) -> (c, py, px, hp, wp)
    return (padded.reshape(c, hp, s, wp, s).transpose(0, 2, 4, 1, 3)
            .reshape(c * s * s, hp, wp))


def phase_split_weights(w, s):
    """Rearrange (O, C, k, k) weights (or codes) for a stride-1 conv over :func:`phase_split`.

    Returns
    -------
    ndarray of shape (O, C*s*s, ceil(k/s), ceil(k/s)), same dtype, with
    ``out[o, c*s*s + py*s + px, qy, qx] = w[o, c, s*qy + py, s*qx + px]`` where that index is
    inside the kernel, and 0 elsewhere. An unpadded stride-s conv of x with ``w`` equals the
    unpadded stride-1 conv of ``phase_split(x, s)`` with the result, over the original output
    size (see :func:`split_conv_out`).
    """
    s = _check_stride(s)
    w = np.asarray(w)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ValueError(f"expected (O, C, k, k) weights, got shape {w.shape}")
    o, c, k, _ = w.shape
    kq = split_kernel(k, s)
    padded = np.zeros((o, c, kq * s, kq * s), w.dtype)
    padded[:, :, :k, :k] = w
    # (o, c, qy, py, qx, px) -> (o, c, py, px, qy, qx)
    return (padded.reshape(o, c, kq, s, kq, s).transpose(0, 1, 3, 5, 2, 4)
            .reshape(o, c * s * s, kq, kq))
