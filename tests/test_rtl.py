"""The accelerator RTL against the golden model, whole tensors, bit for bit (cocotb +
Verilator through the host port). A failure names the case, layer, channel, row and column."""

import numpy as np
import pytest

from squeezefpga.golden.blob import (OP_CONV, OP_GLOBAL_SUM, OP_MAXPOOL, ConvWeights, Descriptor,
                                     Program, encode_program)
from squeezefpga.golden.compiler import compile_model
from squeezefpga.golden.integer_model import conv_accumulators
from squeezefpga.golden.network import out_size, tiny_squeezenet
from squeezefpga.config import AcceleratorConfig
from squeezefpga.sim.rtl_cases import Case, run_batch

from .test_network import random_model

# Small enough to build in seconds; 8 lanes so that channel counts and row lengths are rarely
# multiples of the lane count.
CONFIG = AcceleratorConfig(lanes=8, activation_bytes=1 << 16, weight_bytes=1 << 15,
                           max_layers=32, max_taps=1024, max_channels=256, timeout_cycles=500)


def _align(n):
    return n + (-n % 4)


def random_weights(rng, shape, density, special=False):
    """Codes with the given density; ``special`` makes filter 0 all zero and filter 1 dense."""
    codes = rng.integers(1, 32, shape) * (rng.random(shape) < density)
    if special and shape[0] >= 2:
        codes[0] = 0
        codes[1] = rng.integers(1, 32, shape[1:])
    book = np.concatenate([[0], rng.integers(-128, 128, 31)]).astype(np.int8)
    bias = rng.integers(-4000, 4000, shape[0]).astype(np.int32)
    return ConvWeights(book, codes.astype(np.uint8), bias)


def conv_step(rng, name, src, dst, in_shape, out_c, kernel, pad, density, special=False):
    """A conv descriptor whose requantisation spreads the outputs over 0..255."""
    c, h, w = in_shape
    weights = random_weights(rng, (out_c, c, kernel, kernel), density, special)
    probe = rng.integers(0, 256, in_shape).astype(np.uint8)
    peak = max(int(np.abs(conv_accumulators(probe, weights, 1, pad)).max()), 1)
    multiplier = int(rng.integers(2 ** 14, 2 ** 15))
    shift = max(1, int(np.ceil(np.log2(peak * multiplier / 300))))
    out_shape = (out_c, out_size(h, kernel, 1, pad), out_size(w, kernel, 1, pad))
    return Descriptor(name, OP_CONV, in_shape, out_shape, src, dst, kernel, 1, pad,
                      multiplier, shift, weights)


def single_step_case(rng, name, descriptor):
    d = descriptor
    # The "result" of a one-step program is the step's output (as whole int32 values).
    classes = d.out_shape[0] if d.op == OP_GLOBAL_SUM else d.out_bytes // 4
    program = Program(d.in_shape, classes, _align(d.dst + d.out_bytes), 0, d.dst, [d])
    image = rng.integers(0, 256, d.in_shape).astype(np.uint8)
    return Case(name, encode_program(program), image)


def conv_case(rng, in_shape, out_c, kernel, pad, density, special=False):
    dst = _align(int(np.prod(in_shape)))
    name = (f"conv {kernel}x{kernel} pad {pad} {in_shape}->{out_c} density {density}"
            + (" +zero/dense filters" if special else ""))
    return single_step_case(rng, name, conv_step(rng, "conv", 0, dst, in_shape, out_c, kernel,
                                                 pad, density, special))


def run(cases):
    failures, cycles = run_batch(CONFIG, cases)
    assert not failures, "\n".join(failures)
    return cycles


def test_conv_engine_random_layers(rng):
    cases = []
    # 1x1 and 3x3 pad 1 ("same"), pad-0 kernels ("valid", like the polyphase conv1) and 1x1
    # pad 1 (conv10's "border"): odd sides, channel counts that are not multiples of 8 lanes,
    # all-zero layers, dense layers, long zero runs (sparse fillers), an all-zero and a dense
    # filter in one layer.
    for in_shape, out_c in [((5, 5, 7), 3), ((13, 9, 11), 11), ((1, 3, 3), 9), ((16, 4, 4), 17)]:
        for density in (0.0, 0.15, 1.0):
            cases.append(conv_case(rng, in_shape, out_c, 1, 0, density))
    for in_shape, out_c in [((3, 6, 5), 4), ((7, 11, 9), 10), ((2, 3, 3), 5), ((4, 1, 5), 3),
                            ((5, 13, 13), 9)]:
        for density in (0.15, 0.6, 1.0):
            cases.append(conv_case(rng, in_shape, out_c, 3, 1, density))
    for kernel, in_shape in [(2, (3, 9, 11)), (4, (12, 14, 14)), (5, (2, 7, 6))]:
        cases.append(conv_case(rng, in_shape, 5, kernel, 0, 0.7))
    for in_shape in [(4, 5, 5), (6, 3, 5), (9, 2, 2)]:
        cases.append(conv_case(rng, in_shape, 6, 1, 1, 0.5))
    cases.append(conv_case(rng, (6, 7, 9), 12, 3, 1, 0.4, special=True))
    cases.append(conv_case(rng, (10, 5, 5), 12, 1, 0, 0.2, special=True))
    run(cases)


@pytest.mark.parametrize("conv1_kernel,size", [(7, 35), (3, 29)])
def test_first_layer_kernel(conv1_kernel, size, rng):
    """The stride-2 first layer through the compiler's polyphase rewrite (v1.0's 7x7 and
    v1.1's 3x3): conv1 and the rest of a reduced network, step by step."""
    network = tiny_squeezenet(size=size, conv1_kernel=conv1_kernel)
    images = [rng.integers(0, 256, network.input_shape, dtype=np.uint8) for _ in range(2)]
    compiled = compile_model(random_model(network, rng), images)
    assert compiled.program.descriptors[0].kernel == -(-conv1_kernel // 2)
    run([Case(f"tiny network, conv1 {conv1_kernel}x{conv1_kernel}/2", compiled.blob,
              images[0])])


@pytest.mark.parametrize("bypass,complex_bypass", [((3,), ()), ((3,), (2, 4))],
                         ids=["simple bypass", "complex bypass"])
def test_bypass_networks(bypass, complex_bypass, rng):
    """Reduced bypass networks step by step: every add (a two-tap 1x1 conv over its operands
    side by side) and every bypass conv bit for bit, then as one program."""
    network = tiny_squeezenet(size=35, conv1_kernel=7, bypass=bypass,
                              complex_bypass=complex_bypass)
    images = [rng.integers(0, 256, network.input_shape, dtype=np.uint8) for _ in range(2)]
    compiled = compile_model(random_model(network, rng), images)
    names = [d.name for d in compiled.program.descriptors]
    assert [f"fire{i}/bypass" for i in sorted(bypass + complex_bypass)] == [
        n for n in names if n.endswith("/bypass")]
    run([Case(f"tiny network, bypass {bypass} complex {complex_bypass}", compiled.blob,
              images[0]),
         Case("the same, one program", compiled.blob, images[1], per_step=False)])


def test_reduced_network_whole_program(rng):
    """A reduced SqueezeNet run as one program (no host between steps), class sums compared."""
    network = tiny_squeezenet(size=35, conv1_kernel=7, fires=((4, 8), (6, 12), (8, 16)))
    images = [rng.integers(0, 256, network.input_shape, dtype=np.uint8) for _ in range(3)]
    compiled = compile_model(random_model(network, rng), images)
    cycles = run([Case(f"tiny network image {i}", compiled.blob, image, per_step=False)
                  for i, image in enumerate(images)])
    assert all(c[0] > 0 for c in cycles.values())


def test_pool_unit(rng):
    cases = []
    for shape in [(3, 9, 11), (2, 7, 7), (4, 27, 29), (1, 4, 6), (2, 3, 3), (5, 13, 13)]:
        out = (shape[0], out_size(shape[1], 3, 2, 0, True), out_size(shape[2], 3, 2, 0, True))
        d = Descriptor("pool", OP_MAXPOOL, shape, out, 0, _align(int(np.prod(shape))), 3, 2)
        cases.append(single_step_case(rng, f"maxpool {shape}", d))
    for shape in [(5, 4, 5), (3, 15, 15), (7, 1, 1), (2, 9, 9)]:
        d = Descriptor("sum", OP_GLOBAL_SUM, shape, (shape[0], 1, 1), 0,
                       _align(int(np.prod(shape))))
        cases.append(single_step_case(rng, f"global sum {shape}", d))
    run(cases)


def test_fire_module(rng):
    """squeeze1x1 -> expand1x1 and expand3x3 written side by side into one concat tensor."""
    in_shape, squeeze, expand = (24, 13, 13), 6, 10
    h, w = in_shape[1:]
    sq_at = _align(int(np.prod(in_shape)))
    cat_at = _align(sq_at + squeeze * h * w)
    steps = [
        conv_step(rng, "fire/squeeze1x1", 0, sq_at, in_shape, squeeze, 1, 0, 0.9),
        conv_step(rng, "fire/expand1x1", sq_at, cat_at, (squeeze, h, w), expand, 1, 0, 0.9),
        conv_step(rng, "fire/expand3x3", sq_at, cat_at + expand * h * w, (squeeze, h, w),
                  expand, 3, 1, 0.4),
    ]
    program = Program(in_shape, 2 * expand, _align(cat_at + 2 * expand * h * w), 0, 0, steps)
    image = rng.integers(0, 256, in_shape).astype(np.uint8)
    run([Case("fire module", encode_program(program), image)])


def test_host_port_robustness():
    """Unknown command bytes, arguments cut short and a truncated write: the port answers the
    next command (the watchdog abandons a command after ``timeout_cycles``)."""
    from squeezefpga.sim.accelerator_build import accelerator_verilog
    from squeezefpga.sim.cocotb_support import run_cocotb
    run_cocotb(accelerator_verilog(CONFIG), "squeezefpga.sim.tb_accelerator",
               testcase="host_port_robustness",
               extra_env={"SQZ_TB_TIMEOUT": str(CONFIG.timeout_cycles)}, build_key=repr(CONFIG))
