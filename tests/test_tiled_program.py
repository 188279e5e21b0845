"""The tiled program (golden/tiled_program.py): the operations the SDRAM-backed board runs,
bit-exact against the integer model, and never racing a transfer."""

from dataclasses import replace

import numpy as np
import pytest

from squeezefpga.blob_format import OP_CONV, OP_GLOBAL_SUM, OP_MAXPOOL
from squeezefpga.golden.compiler import compile_model
from squeezefpga.golden.integer_model import run_integer
from squeezefpga.golden.network import tiny_squeezenet
from squeezefpga.golden.tiled_program import (DMA_IN, DMA_OUT, DMA_WEIGHTS, Compute,
                                              HazardError, Transfer, build_tiled_program,
                                              check_hazards, estimate_cycles,
                                              run_tiled_program, sdram_layout)

from .test_network import random_model


@pytest.fixture(scope="module")
def real_tiled(compiled):
    return build_tiled_program(compiled.program)


def test_the_real_model_tile_by_tile_is_bitexact(compiled, photos, real_tiled):
    """The board's operations, executed one by one, give the integer model's class sums; the
    fused pools and the global sum are computed on chip from conv rows that never reach the
    SDRAM."""
    for image in photos.values():
        run = run_tiled_program(real_tiled, image)
        np.testing.assert_array_equal(run.logits, run_integer(compiled.program, image).logits)
    kinds = {(op.step.op, op.carry is not None) for op in real_tiled.computes}
    assert kinds == {(OP_CONV, False), (OP_MAXPOOL, False), (OP_MAXPOOL, True),
                     (OP_GLOBAL_SUM, False)}
    assert {op.kind for op in real_tiled.transfers} == {DMA_IN, DMA_OUT, DMA_WEIGHTS}


def test_every_tensor_in_sdram_is_the_integer_models(compiled, photos, real_tiled):
    """Each step's output that the board writes to SDRAM, read back from its region there."""
    golden = run_integer(compiled.program, photos["cat"])
    run = run_tiled_program(real_tiled, photos["cat"])
    written = {op.layer for op in real_tiled.transfers if op.kind == DMA_OUT}
    for i, d in enumerate(compiled.program.descriptors):
        if i not in written:
            continue
        at = real_tiled.tensors_sdram[d.name]
        raw = run.sdram[at: at + d.out_bytes].tobytes()
        got = (np.frombuffer(raw, "<i4") if d.op == OP_GLOBAL_SUM
               else np.frombuffer(raw, np.uint8).reshape(d.out_shape))
        np.testing.assert_array_equal(got, golden.tensors[d.name], err_msg=d.name)


def test_the_program_fits_its_buffers_and_overlaps_transfers(real_tiled):
    """The ops fit the weight buffer's program area; every computation waits for the
    transfer that brings its band, and the next tile's transfers go before it (double
    buffering): a design guard, counted, not timed."""
    assert len(real_tiled.ops) * 40 + 40 <= real_tiled.program_bytes
    first_compute = next(i for i, op in enumerate(real_tiled.ops) if isinstance(op, Compute))
    assert all(isinstance(op, Transfer) for op in real_tiled.ops[:first_compute])
    ahead = sum(1 for a, b in zip(real_tiled.ops, real_tiled.ops[1:])
                if isinstance(a, Transfer) and a.kind == DMA_IN and isinstance(b, Compute)
                and b.wait < sum(1 for op in real_tiled.ops[:real_tiled.ops.index(b)]
                                 if isinstance(op, Transfer)))
    assert ahead > 20
    model = estimate_cycles(real_tiled, 64)
    assert model["stall"] < 0.2 * model["compute"]


def test_a_missing_wait_is_a_hazard(real_tiled):
    """The check fails when a computation does not wait for the transfer bringing its band."""
    ops = list(real_tiled.ops)
    at = next(i for i, op in enumerate(ops) if isinstance(op, Compute) and op.wait > 0)
    ops[at] = replace(ops[at], wait=ops[at].wait - 1)
    broken = replace(real_tiled, ops=ops)
    with pytest.raises(HazardError, match="may run during transfer"):
        check_hazards(broken)
    ops = list(real_tiled.ops)
    t = next(i for i, op in enumerate(ops) if isinstance(op, Transfer))
    ops[t] = replace(ops[t], local=real_tiled.budget.activation_bytes - 8, count=1)
    with pytest.raises(HazardError, match="outside"):
        check_hazards(replace(real_tiled, ops=ops))


def test_sdram_regions_are_never_shared(compiled, real_tiled):
    """Every step's output has SDRAM of its own (a fused pool writes while its producer still
    reads): no two written regions overlap, and a reader reads its writers' regions."""
    src, dst, input_at, end = sdram_layout(compiled.program, 0)
    regions = sorted((a, a + d.out_bytes) for a, d in zip(dst, compiled.program.descriptors))
    assert all(a1 <= b0 for (_, a1), (b0, _) in zip(regions, regions[1:]))
    assert end >= regions[-1][1]
    first = compiled.program.descriptors[0]
    assert src[0] == input_at


@pytest.mark.parametrize("fires, activation, weights, program, kind", [
    (((4, 8), (4, 8), (8, 16)), 8 * 1024, 12 * 1024, 8 * 1024, "carry"),
    (((8, 16), (8, 16), (8, 16)), 6 * 1024, 24 * 1024, 16 * 1024, "halo"),
], ids=["pool bands", "conv bands"])
def test_small_buffers_tile_by_tile(rng, fires, activation, weights, program, kind):
    """A reduced network with bypasses under buffers so small that its convs run in bands
    (with halo rows) and its pools in bands (with the carried row); bit-exact, and
    hazard-free by the check."""
    network = tiny_squeezenet(size=67, conv1_kernel=7, fires=fires, bypass=(3,),
                              complex_bypass=(2, 4))
    images = [rng.integers(0, 256, network.input_shape, dtype=np.uint8) for _ in range(2)]
    compiled = compile_model(random_model(network, rng), images)
    tiled = build_tiled_program(compiled.program, activation, weights, program)
    for image in images:
        run = run_tiled_program(tiled, image)
        np.testing.assert_array_equal(run.logits, run_integer(compiled.program, image).logits)
    if kind == "carry":
        assert any(op.carry is not None for op in tiled.computes)
    else:
        assert any(op.row0 for op in tiled.computes)
