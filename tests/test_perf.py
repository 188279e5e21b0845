import numpy as np
import pytest

from squeezefpga.golden.blob import OP_CONV
from squeezefpga.golden.compiler import compile_model
from squeezefpga.golden.network import tiny_squeezenet
from squeezefpga.golden.perf import ideal_cycles, layer_work

from .test_network import random_model


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(7)
    network = tiny_squeezenet(size=35, conv1_kernel=7)
    images = [rng.integers(0, 256, network.input_shape, dtype=np.uint8)]
    return compile_model(random_model(network, rng), images)


def test_layer_work_counts_nonzero_macs(tiny):
    program = tiny.program
    rows = layer_work(program, 16)
    assert [r["name"] for r in rows] == [d.name for d in program.descriptors]
    for row, d in zip(rows, program.descriptors):
        if d.op == OP_CONV:
            nnz = sum(int(np.count_nonzero(d.weights.codes[o])) for o in range(d.out_shape[0]))
            assert row["op"] == "conv"
            assert row["nonzero_macs"] == nnz * d.out_shape[1] * d.out_shape[2]
            assert row["dense_macs"] == d.weights.codes.size * d.out_shape[1] * d.out_shape[2]
        else:
            assert row["op"] in ("maxpool", "global_sum")
            assert row["nonzero_macs"] == row["dense_macs"] == 0
        assert row["ideal_cycles"] == row["nonzero_macs"] / 16
    assert ideal_cycles(program, 16) == pytest.approx(sum(r["ideal_cycles"] for r in rows))
    assert ideal_cycles(program, 1) == sum(r["nonzero_macs"] for r in rows)


def test_split_conv1_has_the_original_nonzero_macs(tiny):
    conv1 = layer_work(tiny.program, 1)[0]
    q = tiny.qmodel.layers["conv1"]
    oh, ow = tiny.program.descriptors[0].out_shape[1:]
    assert conv1["nonzero_macs"] == np.count_nonzero(q.codes) * oh * ow
    assert conv1["dense_macs"] == q.codes.shape[0] * 3 * 4 * 4 * 4 * oh * ow   # 3x4 planes, 4x4


def test_real_model_work(compiled):
    """Non-zero MACs of the compiled program equal those of the network's own convs."""
    rows = {r["name"]: r for r in layer_work(compiled.program, 32)}
    shapes = compiled.float_model.network.shapes()
    convs = compiled.float_model.network.convs
    for conv in convs:
        nnz = np.count_nonzero(compiled.qmodel.layers[conv.name].codes)
        assert rows[conv.name]["nonzero_macs"] == nnz * shapes[conv.name][1] * shapes[conv.name][2]
    total = sum(r["nonzero_macs"] for r in rows.values())
    assert 0.4 < total / sum(compiled.float_model.network.macs().values()) < 0.6


@pytest.mark.parametrize("lanes", [0, -1, 2.5, True])
def test_bad_lanes(tiny, lanes):
    with pytest.raises(ValueError, match="lanes"):
        layer_work(tiny.program, lanes)
