"""Gateware blocks on their own, in Amaranth's simulator, each checked as a function against
its reference in the golden model or the protocol."""

import struct

import numpy as np
import pytest
from amaranth import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from squeezefpga.blob_format import HEADER_CRC_OFFSET, HEADER_LENGTH_OFFSET
from squeezefpga.golden.blob import blob_crc
from squeezefpga.golden.compiler import compile_model
from squeezefpga.golden.network import tiny_squeezenet
from squeezefpga.hw.blob_verifier import BlobVerifier

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
        m.d.comb += [read.addr.eq(verifier.mem_addr), read.en.eq(verifier.mem_en),
                     verifier.mem_data.eq(read.data), verifier.start.eq(self.start),
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
