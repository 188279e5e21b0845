import numpy as np
import pytest

from squeezefpga.golden.float_model import float_forward
from squeezefpga.golden.importer import FloatModel
from squeezefpga.golden.network import (squeezenet_v1_0, squeezenet_v1_0_bypass, squeezenet_v1_1,
                                        tiny_squeezenet)


def random_model(network, rng):
    weights = {c.name: rng.normal(0, 0.05, c.weight_shape).astype(np.float32)
               for c in network.convs}
    biases = {c.name: rng.normal(0, 0.05, c.out_ch).astype(np.float32) for c in network.convs}
    return FloatModel(network, weights, biases, {})


def test_v1_0_caffe_shapes():
    shapes = squeezenet_v1_0().shapes()
    assert shapes["conv1"] == (96, 111, 111)
    assert shapes["pool1"] == (96, 55, 55)
    assert shapes["pool4"] == (256, 27, 27)
    assert shapes["pool8"] == (512, 13, 13)
    assert shapes["conv10"] == (1000, 15, 15)     # pad 1 on a 1x1 kernel, as in Caffe
    assert shapes["pool10"] == (1000, 1, 1)
    assert len(squeezenet_v1_0().convs) == 26


def test_v1_0_dense_macs():
    assert sum(squeezenet_v1_0().macs().values()) == pytest.approx(861e6, rel=0.01)


def test_v1_1_shapes():
    shapes = squeezenet_v1_1().shapes()
    assert shapes["conv1"] == (64, 113, 113)
    assert shapes["pool1"] == (64, 56, 56)
    assert shapes["pool3"] == (128, 28, 28)
    assert shapes["pool5"] == (256, 14, 14)
    assert shapes["conv10"] == (1000, 14, 14)


@pytest.mark.parametrize("make", [squeezenet_v1_1, squeezenet_v1_0_bypass, tiny_squeezenet])
def test_forward_runs_every_network(make, rng):
    network = make()
    model = random_model(network, rng)
    image = rng.integers(0, 256, network.input_shape, dtype=np.uint8)
    tensors = float_forward(model, image)
    for name, shape in network.shapes().items():
        assert tensors[name].shape == shape, name
        assert np.isfinite(tensors[name]).all()


def test_bypass_adds_block_input(rng):
    network = squeezenet_v1_0_bypass()
    tensors = float_forward(random_model(network, rng),
                            rng.integers(0, 256, network.input_shape, dtype=np.uint8))
    np.testing.assert_array_equal(tensors["fire3/bypass"],
                                  tensors["fire2/concat"] + tensors["fire3/concat"])
    np.testing.assert_array_equal(tensors["fire9/bypass"],
                                  tensors["pool8"] + tensors["fire9/concat"])


def test_tiny_network_rejects_too_small_input():
    with pytest.raises(ValueError, match="too small"):
        tiny_squeezenet(size=5, conv1_kernel=7)
