"""Synthetic models: any :class:`~.network.Network` with pruned random weights, for testing and
benchmarking the networks no trained model is bundled for (``--network``).

The weights are what Deep Compression leaves: a fixed fraction of each filter kept (the
largest-magnitude survivors of a random draw), scaled as He initialisation scales them for
the kept fan-in, so the activations neither vanish nor explode through the ReLUs. The same
seed gives the same model on every machine (NumPy's PCG64).
"""

import numpy as np

from .importer import FloatModel

__all__ = ["DEFAULT_SEED", "DEFAULT_DENSITY", "synthetic_model"]

DEFAULT_SEED = 2016        # the year of the SqueezeNet paper
#: Fraction of weights kept: the real v1.0 model keeps 33 % of its conv weights.
DEFAULT_DENSITY = 0.33


def synthetic_model(network, seed=DEFAULT_SEED, density=DEFAULT_DENSITY):
    """A :class:`~.importer.FloatModel` of ``network`` with pruned random weights.

    Parameters
    ----------
    network : Network
    seed : int
    density : float
        Fraction (0, 1] of each conv's weights kept, by magnitude.
    """
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], not {density}")
    rng = np.random.default_rng(seed)
    weights, biases = {}, {}
    for conv in network.convs:
        fan_in = conv.in_ch * conv.kernel ** 2
        w = rng.normal(0.0, np.sqrt(2.0 / (fan_in * density)), conv.weight_shape)
        if density < 1:
            flat = np.abs(w).reshape(conv.out_ch, -1)
            keep = max(1, int(round(density * flat.shape[1])))
            threshold = np.sort(flat, axis=1)[:, -keep][:, None]
            w = np.where(flat >= threshold, w.reshape(conv.out_ch, -1), 0.0).reshape(w.shape)
            w *= np.sqrt(density)    # the survivors are the large ones: keep the output's scale
        weights[conv.name] = w.astype(np.float32)
        biases[conv.name] = rng.normal(0.05, 0.05, conv.out_ch).astype(np.float32)
    if network.input_shape[0] == 3:
        # The image enters mean-subtracted in 0..255 units: conv1 sees ~60x unit inputs.
        first = network.convs[0].name
        weights[first] /= np.float32(60.0)
    return FloatModel(network, weights, biases, {})
