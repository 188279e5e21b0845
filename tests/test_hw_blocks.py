"""Gateware blocks on their own, in Amaranth's simulator, each checked as a function against
its reference in the golden model or the protocol."""

import struct

import numpy as np
import pytest
from amaranth import Cat, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from squeezefpga.blob_format import HEADER_CRC_OFFSET, HEADER_LENGTH_OFFSET
from squeezefpga.golden.blob import blob_crc
from squeezefpga.golden.compiler import compile_model
from squeezefpga.golden.network import tiny_squeezenet
from squeezefpga.hw.blob_verifier import BlobVerifier
from squeezefpga.hw.ports import delay

from .test_network import random_model

WORD_BITS = 12                          # a 16 KiB weight buffer


class VerifierBench(wiring.Component):
    """A :class:`BlobVerifier` reading a memory that holds ``blob``."""

    start: In(1)
    expect: In(32)
    done: Out(1)
    ok: Out(1)

    def __init__(self, blob):
        padded = blob + bytes(-len(blob) % 4)
        self.words = list(struct.unpack(f"<{len(padded) // 4}I", padded))
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = memory = Memory(shape=unsigned(32), depth=1 << WORD_BITS,
                                              init=self.words)
        m.submodules.verifier = verifier = BlobVerifier(WORD_BITS)
        read = memory.read_port()
        # The weight buffer's latency (2): the block RAM, then a register.
        data = Signal(32)
        answer = delay(m, Cat(verifier.mem.en, verifier.mem.tag), 2, "answer")
        m.d.sync += data.eq(read.data)
        m.d.comb += [read.addr.eq(verifier.mem.addr), read.en.eq(verifier.mem.en),
                     verifier.mem.data.eq(data), verifier.mem.valid.eq(answer[0]),
                     verifier.mem.rtag.eq(answer[1:]), verifier.start.eq(self.start),
                     verifier.expect.eq(self.expect), self.done.eq(verifier.done),
                     self.ok.eq(verifier.ok)]
        return m


def verify(blob, expect):
    """Run the verifier on ``blob``; return (ok, cycles)."""
    bench = VerifierBench(blob)
    outcome = {}

    async def testbench(ctx):
        ctx.set(bench.expect, expect)
        ctx.set(bench.start, 1)
        await ctx.tick()
        ctx.set(bench.start, 0)
        for cycle in range(len(blob) // 4 + 100):
            if ctx.get(bench.done):
                outcome["ok"], outcome["cycles"] = ctx.get(bench.ok), cycle
                return
            await ctx.tick()
        raise AssertionError("the verifier never finished")

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return outcome["ok"], outcome["cycles"]


@pytest.fixture(scope="module")
def tiny_blob():
    rng = np.random.default_rng(2)
    network = tiny_squeezenet(size=35)
    images = [rng.integers(0, 256, network.input_shape, dtype=np.uint8)]
    return compile_model(random_model(network, rng), images).blob


def test_verifier_accepts_the_blob_the_compiler_wrote(tiny_blob):
    ok, cycles = verify(tiny_blob, blob_crc(tiny_blob))
    assert ok == 1
    assert cycles <= len(tiny_blob) // 4 + 4          # one word per cycle


def test_verifier_rejects_a_damaged_or_mismatched_blob(tiny_blob):
    crc = blob_crc(tiny_blob)
    for where in (0, 17, 39, 40, len(tiny_blob) - 1):      # header, descriptors, the end
        damaged = bytearray(tiny_blob)
        damaged[where] ^= 0x10
        assert verify(bytes(damaged), crc)[0] == 0, where
    assert verify(tiny_blob, crc ^ 1)[0] == 0                # not the model the host sent
    for length in (len(tiny_blob) + 2, 36, 1 << 20):         # not whole words, too short, too big
        bad = bytearray(tiny_blob)
        struct.pack_into("<I", bad, HEADER_LENGTH_OFFSET, length)
        struct.pack_into("<I", bad, HEADER_CRC_OFFSET, blob_crc(bad))   # only the length lies
        assert verify(bytes(bad), blob_crc(bad))[0] == 0, length


# -- the requantiser against golden.quantize.requantize ----------------------------------------

def test_requantizer_matches_the_golden_rounding(rng):
    from squeezefpga.golden.quantize import requantize
    from squeezefpga.hw.requantizer import Requantizer
    cases = [(int(a), int(mu), int(s)) for a, mu, s in zip(
        np.concatenate([rng.integers(-2 ** 31, 2 ** 31, 300), [0, -1, 1, 2 ** 31 - 1, -2 ** 31]]),
        rng.integers(2 ** 14, 2 ** 15, 305), rng.integers(1, 64, 305))]
    cases += [(255 << 20, 1 << 14, 34), (-(1 << 30), 1 << 14, 20), ((1 << 31) - 1, 32767, 47),
              ((1 << 31) - 1, 32767, 48), (-(1 << 31), 32767, 63), (3, 1 << 14, 15)]
    dut = Requantizer(tag_bits=16)
    results = []

    async def testbench(ctx):
        for layer in sorted({s for _, _, s in cases}):      # M and S are held for a layer
            batch = [(a, mu) for a, mu, s in cases if s == layer]
            for mu in sorted({mu for _, mu in batch}):
                ctx.set(dut.multiplier, mu)
                ctx.set(dut.shift, layer)
                await ctx.tick()                              # the rounding constant settles
                for a, mu2 in batch:
                    if mu2 != mu:
                        continue
                    ctx.set(dut.valid, 1)
                    ctx.set(dut.acc, a)
                    for _ in range(Requantizer.LATENCY):
                        await ctx.tick()
                        ctx.set(dut.valid, 0)
                    assert ctx.get(dut.out_valid)
                    results.append(((a, mu, layer), ctx.get(dut.out)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert len(results) == len(cases)
    wrong = [(case, got, int(requantize(case[0], case[1], case[2])))
             for case, got in results if got != int(requantize(case[0], case[1], case[2]))]
    assert not wrong, f"{len(wrong)} of {len(results)} differ, first {wrong[0]}"
