import itertools

import numpy as np
import pytest

from squeezefpga.errors import QuantizationError
from squeezefpga.golden.quantize import (MAX_CODES, cluster_codebook, quantize_weights,
                                         requant_params, requantize)


def brute_force_sse(values, counts, k):
    best = np.inf
    for cuts in itertools.combinations(range(1, len(values)), k - 1):
        sse = 0.0
        for part_v, part_w in zip(np.split(values, cuts), np.split(counts, cuts)):
            mean = np.average(part_v, weights=part_w)
            sse += float((part_w * (part_v - mean) ** 2).sum())
        best = min(best, sse)
    return best


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_cluster_codebook_is_optimal(k, rng):
    values = np.sort(rng.normal(0, 1, 9))
    counts = rng.integers(1, 20, 9).astype(float)
    centroids, labels = cluster_codebook(values, counts, k)
    sse = float((counts * (values - centroids[labels]) ** 2).sum())
    assert sse == pytest.approx(brute_force_sse(values, counts, k), abs=1e-9)
    assert np.all(np.diff(centroids) > 0)


def test_cluster_codebook_unsorted_input_labels_follow_values(rng):
    values = rng.normal(0, 1, 30)
    centroids, labels = cluster_codebook(values, np.ones(30), 30)
    np.testing.assert_allclose(centroids[labels], values)


def test_quantize_weights_keeps_sparsity_and_codebook_limits(rng):
    w = rng.normal(0, 0.1, (8, 4, 3, 3)).astype(np.float32)
    w[rng.random(w.shape) < 0.6] = 0
    codebook, codes, scale = quantize_weights(w)
    assert codebook[0] == 0 and codebook.dtype == np.int8 and codebook.size <= MAX_CODES
    assert np.all(codebook[1:] != 0)
    np.testing.assert_array_equal(codes == 0, w == 0)
    assert np.abs(codebook[codes] * scale - w).max() <= 0.02


def test_requant_params_accuracy():
    for real in [1e-6, 0.0123, 0.5, 1.7, 100.0]:
        m, s = requant_params(real)
        assert 2 ** 14 <= m < 2 ** 15
        assert m / 2 ** s == pytest.approx(real, rel=2 ** -14)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.inf, 1e6])
def test_requant_params_rejects(bad):
    with pytest.raises(QuantizationError, match="conv9"):
        requant_params(bad, "conv9")


def test_requantize_rounds_half_up_and_clamps():
    # M / 2**S = 1/2: x.5 rounds up, negatives clamp to 0 (ReLU), large values to 255.
    acc = np.array([-7, -1, 0, 1, 2, 3, 5, 509, 510, 511, 10 ** 9])
    np.testing.assert_array_equal(requantize(acc, 2 ** 14, 15),
                                  [0, 0, 0, 1, 1, 2, 3, 255, 255, 255, 255])
    np.testing.assert_array_equal(requantize(np.array([508, 509]), 2 ** 14, 15), [254, 255])
