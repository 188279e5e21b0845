import numpy as np
import pytest

from squeezefpga.errors import QuantizationError
from squeezefpga.golden.blob import OP_GLOBAL_SUM
from squeezefpga.golden.compiler import build_program, compile_model
from squeezefpga.golden.float_model import float_forward
from squeezefpga.config import accumulator_bound
from squeezefpga.golden.integer_model import run_integer
from squeezefpga.golden.network import Add, Network, tiny_squeezenet
from squeezefpga.golden.polyphase import phase_split
from squeezefpga.golden.quantize import requantize

from .test_network import random_model
from .test_ops import naive_conv


@pytest.mark.parametrize("photo,expected", [("cat", 285), ("coffee", 967)])
def test_float_reference_classes(float_model, photos, photo, expected):
    scores = float_forward(float_model, photos[photo])["pool10"].ravel()
    assert int(np.argmax(scores)) == expected


@pytest.mark.parametrize("photo", ["cat", "coffee"])
def test_integer_top1_equals_float_top1(float_model, compiled, photos, photo):
    scores = float_forward(float_model, photos[photo])["pool10"].ravel()
    logits = run_integer(compiled.blob, photos[photo]).logits
    assert logits.dtype == np.int32 and logits.shape == (1000,)
    assert int(np.argmax(logits)) == int(np.argmax(scores))
    # The top-5 sets mostly overlap.
    assert len(set(np.argsort(-logits)[:5]) & set(np.argsort(-scores)[:5])) >= 3


def test_accumulators_fit_int32(compiled):
    assert accumulator_bound(compiled.program) < 2 ** 31


def test_tensors_have_declared_shapes(compiled, photos):
    run = run_integer(compiled.program, photos["cat"])
    assert list(run.tensors) == [d.name for d in compiled.program.descriptors]
    for d in compiled.program.descriptors:
        expected = d.out_shape if d.op != OP_GLOBAL_SUM else (d.out_shape[0],)
        assert run.tensors[d.name].shape == expected, d.name


@pytest.mark.parametrize("name,sources", [
    ("conv1", ["data"]),
    ("fire2/expand3x3", ["fire2/squeeze1x1"]),
    ("conv10", ["fire9/expand1x1", "fire9/expand3x3"]),    # reads the concatenation
])
def test_conv_matches_loop_reference(compiled, photos, name, sources):
    """Whole output tensors against a loop-based convolution of the decoded weights."""
    run = run_integer(compiled.program, photos["cat"])
    tensors = dict(run.tensors, data=phase_split(photos["cat"], compiled.program.input_phase))
    x = np.concatenate([tensors[s] for s in sources])
    d = next(d for d in compiled.program.descriptors if d.name == name)
    w = d.weights.codebook.astype(np.int64)[d.weights.codes]
    acc = naive_conv(x, w, d.stride, d.pad) + d.weights.bias[:, None, None]
    np.testing.assert_array_equal(run.tensors[name], requantize(acc, d.multiplier, d.shift))


def test_tiny_network_compiles_and_runs(rng):
    network = tiny_squeezenet(size=35, conv1_kernel=7)
    model = random_model(network, rng)
    images = [rng.integers(0, 256, network.input_shape, dtype=np.uint8) for _ in range(2)]
    compiled = compile_model(model, images)
    assert compiled.program.input_phase == 2
    assert compiled.program.descriptors[0].kernel == 4
    run = run_integer(compiled.blob, images[0])
    assert run.logits.shape == (10,)
    assert set(run.tensors) == {d.name for d in compiled.program.descriptors}
    assert any(np.count_nonzero(t) for t in run.tensors.values())


@pytest.mark.parametrize("bypass,complex_bypass", [((3,), ()), ((3,), (2, 4))])
def test_an_add_is_the_requantised_weighted_sum_of_its_operands(rng, bypass, complex_bypass):
    """Each add of a bypass network runs as a 1x1 conv over its operands side by side with two
    non-zero weights per filter; its output is clamp(((ka*a + kb*b)*M + 2^(S-1)) >> S, 0, 255)
    of the operand tensors, element by element (docs/FORMATS.md)."""
    network = tiny_squeezenet(size=35, conv1_kernel=7, bypass=bypass,
                              complex_bypass=complex_bypass)
    adds = [op for op in network.ops if isinstance(op, Add)]
    images = [rng.integers(0, 256, network.input_shape, dtype=np.uint8) for _ in range(2)]
    model = random_model(network, rng)
    compiled = compile_model(model, images)
    run = run_integer(compiled.program, images[0])
    steps = {d.name: d for d in compiled.program.descriptors}
    scales = compiled.qmodel.scales
    for add in adds:
        d = steps[add.name]
        a, b = (run.tensors[s] if s in run.tensors else
                np.concatenate([run.tensors[f"{s[:-7]}/expand1x1"],
                                run.tensors[f"{s[:-7]}/expand3x3"]]) for s in add.srcs)
        c = a.shape[0]
        assert d.kernel == 1 and d.in_shape == (2 * c,) + a.shape[1:] and d.out_shape == a.shape
        assert not d.weights.bias.any()
        weights = d.weights.codebook.astype(np.int64)[d.weights.codes][:, :, 0, 0]
        ka, kb = weights[0, 0], weights[0, c]
        expected = np.zeros((c, 2 * c), np.int64)
        expected[np.arange(c), np.arange(c)] = ka
        expected[np.arange(c), c + np.arange(c)] = kb
        np.testing.assert_array_equal(weights, expected)
        # The weights carry the ratio of the operands' scales, the larger one as 127.
        sa, sb = (scales[s] for s in add.srcs)
        assert max(ka, kb) == 127 and abs(ka / kb - sa / sb) <= 0.6 / min(ka, kb) * sa / sb
        acc = ka * a.astype(np.int64) + kb * b.astype(np.int64)
        y = np.clip((acc * d.multiplier + (1 << (d.shift - 1))) >> d.shift, 0, 255)
        np.testing.assert_array_equal(run.tensors[add.name], y.astype(np.uint8))
        # And within the quantisation noise of the float sum.
        real = float_forward(model, images[0])[add.name]
        assert np.corrcoef(real.ravel(), y.ravel() * scales[add.name])[0, 1] > 0.99


def test_an_operand_of_two_adds_is_refused_by_name():
    """Two adds sharing an operand cannot both have it beside the other operand."""
    tiny = tiny_squeezenet(size=35, conv1_kernel=7, bypass=(3,))
    ops = tiny.ops + (Add("extra", ("fire2/concat", "fire3/concat")),)
    with pytest.raises(QuantizationError, match="fire2/concat: is an operand of both"):
        build_program(Network("shared", tiny.input_shape, ops, tiny.output), None)


def test_bad_image_shape(compiled):
    with pytest.raises(ValueError, match="uint8"):
        run_integer(compiled.program, np.zeros((3, 10, 10), np.uint8))
