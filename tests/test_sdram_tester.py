"""The SDRAM self-test gateware (hw/sdram_test.py) in Amaranth's simulator, against its
reference (``squeezefpga.sdram.reference_pattern_test``) on a memory with planted faults, behind a
controller that is not always ready and answers reads a fixed number of cycles late."""

import pytest
from amaranth.sim import Simulator

from squeezefpga.hw.sdram_test import SdramTester
from squeezefpga.sdram import FaultyMemory, PatternResult, reference_pattern_test

from .fake_sdram import controller

LATENCY = 5                 # the controller's: CAS latency 3 + 2
WORDS = 300                 # the whole-memory phases over this many words


def run_tester(memory, words, seed=1):
    """The tester's result on ``memory``, served by a fake controller."""
    dut = SdramTester()
    result = {}

    async def bench(ctx):
        ctx.set(dut.words, words)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await ctx.tick().until(~dut.busy)
        r = dut.result
        result["value"] = PatternResult(bool(ctx.get(r.passed)), ctx.get(r.phase),
                                     ctx.get(r.address), ctx.get(r.expected), ctx.get(r.read),
                                     words)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(controller(dut.sdram, memory, LATENCY, seed, 0.8))
    sim.add_testbench(bench)
    sim.run()
    return result["value"]


@pytest.mark.parametrize("fault", [
    {}, {"stuck_bit": 5, "stuck_value": 1}, {"stuck_bit": 14, "stuck_value": 0},
    {"dead_line": 3}, {"dead_line": 11},
], ids=["good", "bit5-at-1", "bit14-at-0", "A3", "A11"])
def test_the_tester_is_the_reference(fault):
    """Same verdict, phase, address and words as the reference on the same faulty memory."""
    expected = reference_pattern_test(FaultyMemory(**fault), WORDS)
    got = run_tester(FaultyMemory(**fault), WORDS)
    assert got == expected
    assert got.passed == (not fault)


def test_faults_are_named():
    assert "data bit 5 reads 1" in reference_pattern_test(
        FaultyMemory(stuck_bit=5, stuck_value=1), WORDS).describe()
    assert "address line A11 (row) is stuck or shorted" in reference_pattern_test(
        FaultyMemory(dead_line=11), WORDS).describe()
    # A3 carries row bit 3 and column bit 3: either names the pin.
    assert "address line A3 (" in reference_pattern_test(
        FaultyMemory(dead_line=3), WORDS).describe()
