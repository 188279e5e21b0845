import numpy as np
import pytest

from squeezefpga.golden.float_model import float_forward
from squeezefpga.golden.importer import FloatModel
from squeezefpga.golden.network import (NETWORKS, Concat, Conv, lower_adds, network,
                                        squeezenet_v1_0, squeezenet_v1_0_bypass,
                                        squeezenet_torchvision,
                                        squeezenet_v1_0_complex_bypass, squeezenet_v1_1,
                                        tiny_squeezenet)
from squeezefpga.golden.synthetic import synthetic_model


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


@pytest.mark.parametrize("make", [squeezenet_v1_1, squeezenet_v1_0_bypass,
                                  squeezenet_v1_0_complex_bypass, tiny_squeezenet])
def test_forward_runs_every_network(make, rng):
    network = make()
    model = random_model(network, rng)
    image = rng.integers(0, 256, network.input_shape, dtype=np.uint8)
    tensors = float_forward(model, image)
    for name, shape in network.shapes().items():
        assert tensors[name].shape == shape, name
        assert np.isfinite(tensors[name]).all()


@pytest.mark.parametrize("make,sums", [
    (squeezenet_v1_0_bypass, {"fire3/bypass": ("fire2/concat", "fire3/concat"),
                              "fire9/bypass": ("pool8", "fire9/concat")}),
    (squeezenet_v1_0_complex_bypass, {"fire4/bypass": ("fire4/bypass1x1", "fire4/concat"),
                                      "fire5/bypass": ("pool4", "fire5/concat")}),
], ids=["simple", "complex"])
def test_bypass_adds_its_operands(make, sums, rng):
    network = make()
    tensors = float_forward(random_model(network, rng),
                            rng.integers(0, 256, network.input_shape, dtype=np.uint8))
    for name, (a, b) in sums.items():
        np.testing.assert_array_equal(tensors[name], tensors[a] + tensors[b])


def test_complex_bypass_convolves_where_the_channels_differ():
    network = squeezenet_v1_0_complex_bypass()
    assert [op.name for op in network.convs if "bypass" in op.name] == [
        f"fire{i}/bypass1x1" for i in (2, 4, 6, 8)]
    shapes = network.shapes()
    assert network.op("fire2/bypass1x1").in_ch == 96 and shapes["fire2/bypass"] == (128, 55, 55)
    assert network.op("fire8/bypass1x1").in_ch == 384 and shapes["fire8/bypass"] == (512, 27, 27)


def test_torchvision_definitions():
    v10, v11 = squeezenet_torchvision("1_0").shapes(), squeezenet_torchvision("1_1").shapes()
    assert v10["conv1"] == (96, 109, 109) and v10["pool8"] == (512, 13, 13)
    assert v10["conv10"] == (1000, 13, 13)            # unpadded, unlike the Caffe v1.0
    assert v11["conv1"] == (64, 111, 111) and v11["pool5"] == (256, 13, 13)
    assert v11["conv10"] == (1000, 13, 13)


def test_networks_by_name():
    assert set(NETWORKS) == {"v1.0", "v1.1", "v1.0-bypass", "v1.0-complex-bypass"}
    assert network("v1.1").name == "squeezenet_v1.1"
    with pytest.raises(ValueError, match="unknown network 'v2'"):
        network("v2")


def test_an_add_lowers_to_a_conv_over_its_operands_side_by_side():
    lowered = lower_adds(squeezenet_v1_0_bypass())
    operands, conv = lowered.op("fire9/bypass/operands"), lowered.op("fire9/bypass")
    assert isinstance(operands, Concat) and operands.srcs == ("pool8", "fire9/concat")
    assert isinstance(conv, Conv) and (conv.src, conv.in_ch, conv.out_ch, conv.kernel) == (
        "fire9/bypass/operands", 1024, 512, 1)
    assert lowered.shapes()["fire9/bypass"] == squeezenet_v1_0_bypass().shapes()["fire9/bypass"]


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_synthetic_models_are_pruned_and_reproducible(name):
    a, b = (synthetic_model(network(name), seed=7, density=0.25) for _ in range(2))
    for conv in a.network.convs:
        np.testing.assert_array_equal(a.weights[conv.name], b.weights[conv.name])
        kept = np.count_nonzero(a.weights[conv.name]) / a.weights[conv.name].size
        assert abs(kept - 0.25) < 0.5 / conv.in_ch / conv.kernel ** 2 + 1e-9, conv.name
    assert not np.array_equal(synthetic_model(a.network, seed=8).weights["conv10"],
                              a.weights["conv10"])


def test_tiny_network_rejects_too_small_input():
    with pytest.raises(ValueError, match="too small"):
        tiny_squeezenet(size=5, conv1_kernel=7)
