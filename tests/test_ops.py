import numpy as np
import pytest

from squeezefpga.golden.ops import conv2d, max_pool_ceil


def naive_conv(x, w, stride, pad):
    c, h, wd = x.shape
    o, _, k, _ = w.shape
    xp = np.pad(x.astype(np.int64), ((0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    out = np.zeros((o, oh, ow), np.int64)
    for y in range(oh):
        for x_ in range(ow):
            patch = xp[:, y * stride: y * stride + k, x_ * stride: x_ * stride + k]
            out[:, y, x_] = (w.astype(np.int64) * patch[None]).sum(axis=(1, 2, 3))
    return out


def naive_pool(x, k, s):
    c, h, w = x.shape
    oh, ow = -(-(h - k) // s) + 1, -(-(w - k) // s) + 1
    out = np.zeros((c, oh, ow), x.dtype)
    for y in range(oh):
        for x_ in range(ow):
            out[:, y, x_] = x[:, y * s: y * s + k, x_ * s: x_ * s + k].max(axis=(1, 2))
    return out


@pytest.mark.parametrize("k,stride,pad,size", [(1, 1, 0, 9), (1, 1, 1, 7), (3, 1, 1, 8),
                                               (3, 2, 0, 11), (7, 2, 0, 17), (3, 1, 1, 1)])
def test_conv2d_exact_on_integers(k, stride, pad, size, rng):
    x = rng.integers(0, 256, (5, size, size + 2), dtype=np.uint8)
    w = rng.integers(-127, 128, (4, 5, k, k)).astype(np.int64)
    got = conv2d(x, w, stride, pad, dtype=np.float64).astype(np.int64)
    np.testing.assert_array_equal(got, naive_conv(x, w, stride, pad))


@pytest.mark.parametrize("shape", [(3, 111, 111), (2, 8, 9), (1, 4, 4), (2, 3, 3)])
def test_max_pool_ceil_matches_caffe(shape, rng):
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(max_pool_ceil(x), naive_pool(x, 3, 2))


def test_max_pool_ceil_sizes():
    assert max_pool_ceil(np.zeros((1, 111, 111), np.uint8)).shape == (1, 55, 55)
    assert max_pool_ceil(np.zeros((1, 8, 8), np.uint8)).shape == (1, 4, 4)  # clipped window
