import dataclasses

import numpy as np
import pytest

from squeezefpga.errors import QuantizationError
from squeezefpga.golden.blob import ConvWeights, decode_program
from squeezefpga.golden.compiler import build_program, compile_model, input_phase
from squeezefpga.golden.integer_model import conv_accumulators, input_bytes, run_integer
from squeezefpga.golden.network import (Conv, GlobalAvgPool, MaxPool, Network, squeezenet_v1_0,
                                        squeezenet_v1_1, tiny_squeezenet)
from squeezefpga.golden.ops import conv2d
from squeezefpga.golden.polyphase import (phase_shape, phase_split, phase_split_weights,
                                          split_conv_out, split_kernel)
from squeezefpga.golden.quantize import requantize

from .test_network import random_model
from .test_ops import naive_conv


def test_phase_split_plane_order_and_zero_fill():
    x = np.arange(2 * 5 * 4, dtype=np.uint8).reshape(2, 5, 4) + 1
    y = phase_split(x, 2)
    assert y.shape == (8, 3, 2) and y.dtype == np.uint8
    for c in range(2):
        for py in range(2):
            for px in range(2):
                plane = y[c * 4 + py * 2 + px]
                phase = x[c, py::2, px::2]
                np.testing.assert_array_equal(plane[: phase.shape[0], : phase.shape[1]], phase)
                assert not plane[phase.shape[0]:].any() and not plane[:, phase.shape[1]:].any()
    assert y[2, 2].tolist() == [0, 0]           # (c 0, py 1, px 0): rows 1, 3 only


@pytest.mark.parametrize("shape,s,expected", [((3, 227, 227), 2, (12, 114, 114)),
                                              ((3, 227, 227), 3, (27, 76, 76)),
                                              ((1, 4, 5), 1, (1, 4, 5))])
def test_phase_shape(shape, s, expected):
    assert phase_shape(shape, s) == expected == phase_split(np.zeros(shape), s).shape


def test_bad_arguments():
    with pytest.raises(ValueError, match="positive integer"):
        phase_split(np.zeros((1, 4, 4)), 0)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        phase_split(np.zeros((4, 4)), 2)
    with pytest.raises(ValueError, match=r"\(O, C, k, k\)"):
        phase_split_weights(np.zeros((1, 1, 3, 2)), 2)


@pytest.mark.parametrize("k,s,h,w", [(3, 2, 11, 12), (7, 2, 17, 20), (7, 2, 227, 31),
                                     (3, 2, 8, 9), (1, 2, 9, 6), (5, 3, 16, 14), (7, 2, 7, 8)])
def test_split_conv_equals_strided_conv(k, s, h, w, rng):
    x = rng.integers(0, 256, (3, h, w), dtype=np.uint8)
    weights = rng.integers(-127, 128, (4, 3, k, k))
    direct = conv2d(x, weights, s, 0, dtype=np.float64)
    split = conv2d(phase_split(x, s), phase_split_weights(weights, s), 1, 0, dtype=np.float64)
    oh, ow = direct.shape[1:]
    assert split_kernel(k, s) == phase_split_weights(weights, s).shape[2]
    assert split_conv_out(h, k, s)[1] == oh and split_conv_out(w, k, s)[1] == ow
    assert split.shape[1:] == (split_conv_out(h, k, s)[0], split_conv_out(w, k, s)[0])
    np.testing.assert_array_equal(split[:, :oh, :ow], direct)
    if s == 2 and k % 2:
        assert split.shape == direct.shape      # no crop: why SqueezeNet's conv1 needs none
    # The zero fill of the shorter phases only meets the added zero weights.
    filled = phase_split(x, s)
    filled[phase_split(np.ones_like(x), s) == 0] = 255
    refill = conv2d(filled, phase_split_weights(weights, s), 1, 0, dtype=np.float64)
    np.testing.assert_array_equal(refill[:, :oh, :ow], direct)


def test_split_conv_out_can_exceed_the_original():
    assert split_conv_out(227, 7, 2) == (111, 111)     # v1.0 conv1
    assert split_conv_out(227, 3, 2) == (113, 113)     # v1.1 conv1
    assert split_conv_out(11, 4, 2) == (5, 4)          # even kernel, odd input
    assert split_conv_out(10, 5, 3) == (3, 2)


def test_split_codes_keep_zero_code_in_new_positions(rng):
    codebook = np.arange(-5, 15, dtype=np.int8)
    codebook[0] = 0
    codes = rng.integers(1, 20, (2, 3, 7, 7)).astype(np.uint8)
    split = phase_split_weights(codes, 2)
    assert split.dtype == np.uint8 and split.shape == (2, 12, 4, 4)
    assert np.count_nonzero(split) == codes.size
    np.testing.assert_array_equal(codebook[split], phase_split_weights(codebook[codes], 2))
    assert split[0, 0 * 4 + 1 * 2 + 1, 3, 3] == 0           # would be w[0, 0, 7, 7]
    assert split[1, 2 * 4 + 1 * 2 + 0, 2, 3] == codes[1, 2, 5, 6]


def unsplit(program, qmodel):
    """The same program with conv1 as the original stride-2 conv on the raw image."""
    first = program.descriptors[0]
    q = qmodel.layers[first.name]
    original = qmodel.network.op(first.name)
    raw = dataclasses.replace(first, in_shape=tuple(qmodel.network.input_shape),
                              kernel=original.kernel, stride=original.stride,
                              weights=ConvWeights(q.codebook, q.codes, q.bias))
    return dataclasses.replace(program, descriptors=[raw, *program.descriptors[1:]],
                               input_phase=1)


def direct_conv1(qmodel, image):
    """conv1 as a direct stride-s integer conv of the quantized codes on the raw image."""
    q = qmodel.layers["conv1"]
    op = qmodel.network.op("conv1")
    acc = naive_conv(image, q.codebook.astype(np.int64)[q.codes], op.stride, op.pad)
    return requantize(acc + q.bias[:, None, None], q.multiplier, q.shift)


@pytest.mark.parametrize("size,kernel", [(35, 3), (36, 3), (35, 7), (38, 7), (29, 3)])
def test_rewritten_program_is_bit_identical(size, kernel, rng):
    network = tiny_squeezenet(size=size, conv1_kernel=kernel)
    model = random_model(network, rng)
    images = [rng.integers(0, 256, network.input_shape, dtype=np.uint8) for _ in range(2)]
    compiled = compile_model(model, images)
    program = compiled.program
    first = program.descriptors[0]
    assert program.input_phase == 2 and first.stride == 1 and first.pad == 0
    assert first.kernel == -(-kernel // 2)
    assert first.in_shape == program.stored_input_shape == phase_shape(network.input_shape, 2)
    assert first.out_shape == network.shapes()["conv1"]
    assert decode_program(compiled.blob) == program
    reference = unsplit(program, compiled.qmodel)
    for image in images:
        run = run_integer(compiled.blob, image)
        np.testing.assert_array_equal(run.tensors["conv1"], direct_conv1(compiled.qmodel, image))
        ref = run_integer(reference, image)
        np.testing.assert_array_equal(run.logits, ref.logits)
        for name, tensor in ref.tensors.items():
            np.testing.assert_array_equal(run.tensors[name], tensor, err_msg=name)


def test_real_model_conv1_equals_direct_stride2_conv(compiled, photos):
    program = compiled.program
    first = program.descriptors[0]
    assert (first.name, first.in_shape, first.kernel, first.stride, first.pad,
            first.out_shape) == ("conv1", (12, 114, 114), 4, 1, 0, (96, 111, 111))
    assert program.input_phase == 2 and program.input_shape == (3, 227, 227)
    image = photos["cat"]
    q = compiled.qmodel.layers["conv1"]
    w = q.codebook.astype(np.int64)[q.codes]
    acc = conv2d(image, w, 2, 0, dtype=np.float64).astype(np.int64) + q.bias[:, None, None]
    np.testing.assert_array_equal(conv_accumulators(phase_split(image, 2), first.weights, 1, 0),
                                  acc)
    run = run_integer(program, image)
    np.testing.assert_array_equal(run.tensors["conv1"], requantize(acc, q.multiplier, q.shift))
    reference = run_integer(unsplit(program, compiled.qmodel), image)
    np.testing.assert_array_equal(run.logits, reference.logits)


def test_input_bytes(compiled, photos):
    image = photos["coffee"]
    data = input_bytes(compiled.program, image)
    assert len(data) == 12 * 114 * 114
    assert data == phase_split(image, 2).tobytes()
    raw = dataclasses.replace(compiled.program, input_phase=1)
    assert input_bytes(raw, image) == image.tobytes()
    with pytest.raises(ValueError, match=r"uint8 \(3, 227, 227\)"):
        input_bytes(compiled.program, image[:, :100])


def test_v1_1_conv1_is_split_too():
    network = squeezenet_v1_1()
    assert input_phase(network) == 2
    assert split_conv_out(227, 3, 2) == (113, 113) and network.shapes()["conv1"][1] == 113
    assert input_phase(squeezenet_v1_0()) == 2


def small(*ops):
    return Network("t", (3, 15, 15), (*ops, GlobalAvgPool("gap", ops[-1].name)))


@pytest.mark.parametrize("network,message", [
    (small(Conv("conv1", "data", 3, 4, 3), Conv("conv2", "conv1", 4, 4, 3, stride=2)),
     "conv2: stride 2.*only as the first layer"),
    (small(Conv("conv1", "data", 3, 4, 3, stride=2, pad=1)), "conv1: .*must be unpadded"),
    (small(Conv("conv1", "data", 3, 4, 4, stride=2)), "the polyphase rewrite does not crop"),
    (small(Conv("conv1", "data", 3, 4, 3, stride=5)), "stride 5 exceeds"),
    (small(Conv("conv1", "data", 3, 4, 3, stride=2), MaxPool("pool1", "conv1"),
           Conv("conv2", "pool1", 4, 4, 1, stride=2)), "conv2: stride 2"),
])
def test_compiler_rejects_strides_it_cannot_split(network, message):
    with pytest.raises(QuantizationError, match=message):
        build_program(network, None)


def test_stride_one_network_has_no_phase():
    network = small(Conv("conv1", "data", 3, 4, 3), MaxPool("pool1", "conv1"))
    assert input_phase(network) == 1

