"""cocotb tests of the simulated SDRAM chip and of the SDRAM controller (``sdram_sim.py``).

On the chip alone (``chip_top_verilog``): :func:`legal_sequence` drives a correct power-up,
writes and reads; :func:`planted_violation` drives one violation, named by
``SQZ_SDRAM_PLANT``, after logging ``planting <parameter> at cycle <n>, bank <b>``: the chip
must stop the simulation naming the same parameter, cycle and bank.

On the controller with the chip (``controller_top_verilog``): :func:`traffic` checks random
and sequential reads and writes against a Python memory across several refreshes;
:func:`memory_test` runs the self-test's data-bus and address-line patterns with the fault of
``SQZ_SDRAM_FAULT`` ("none", "stuck:BIT:VALUE" or "dead:LINE") planted in the chip, and fails
with the line that names the fault.
"""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from squeezefpga.hw.sdram import ACTIVATE, MODE, NOP, PRECHARGE, READ, REFRESH, WRITE
from squeezefpga.sdram import (ADDRESS_BITS, COLUMN_BITS, INIT_REFRESHES, SdramTiming,
                               address_fault, address_line_addresses, address_tag,
                               data_bus_patterns, data_fault)

__all__ = ["TIMING", "CHIP_TIMING", "PLANTS"]

#: The controller bench: the safe timings at 75 MHz, a short power-up (the 200 us wait is the
#: same counter, 15,000 cycles of nothing).
TIMING = SdramTiming.safe(75, power_up=64)
#: The chip bench: tRC longer than tRAS + tRP, so that it can be violated alone.
CHIP_TIMING = SdramTiming.safe(75, power_up=64, t_rc=8)
#: Violations :func:`planted_violation` can plant, and the parameter the chip must name.
PLANTS = ("tRCD", "tRP", "tRAS", "tRC", "tWR", "tRFC", "tMRD", "refresh", "power-up wait")
NO_FAULT = {"fault_stuck_bit": 31, "fault_stuck_value": 0, "fault_dead_line": 15}


class ChipDriver:
    """Commands on the chip's pins, one per clock edge, counting edges like the chip."""

    def __init__(self, dut):
        self.dut, self.edge = dut, 0
        for name, value in {"cke": 1, "cs_n": 0, "ba": 0, "a": 0, "dqm": 0, "dq_in": 0,
                            "dq_in_oe": 0, **NO_FAULT}.items():
            getattr(dut, name).value = value
        self.nop()

    def nop(self):
        self._pins(NOP)

    def _pins(self, code, bank=0, address=0, data=None):
        d = self.dut
        d.ras_n.value, d.cas_n.value, d.we_n.value = (code >> 2) & 1, (code >> 1) & 1, code & 1
        d.ba.value, d.a.value = bank, address
        d.dq_in_oe.value = int(data is not None)
        d.dq_in.value = data or 0

    async def command(self, code, bank=0, address=0, data=None):
        """Drive one command; returns the cycle number at which the chip samples it."""
        self._pins(code, bank, address, data)
        cycle = self.edge
        await self.tick()
        self.nop()
        return cycle

    async def tick(self, cycles=1):
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
            self.edge += 1

    async def power_up(self, timing):
        """The power-up sequence; returns the cycle of its LOAD MODE REGISTER."""
        await self.tick(timing.power_up)
        await self.command(PRECHARGE, address=1 << 10)
        await self.tick(timing.t_rp)
        for _ in range(INIT_REFRESHES):
            await self.command(REFRESH)
            await self.tick(timing.t_rfc)
        mode = await self.command(MODE, address=timing.cas_latency << 4)
        await self.tick(timing.t_mrd)
        return mode

    async def read(self, timing, bank, column):
        """READ, then the word on DQ CL edges later."""
        await self.command(READ, bank, column)
        await self.tick(timing.cas_latency - 1)
        await ReadOnly()
        assert int(self.dut.dq_out_oe.value) == 1, "the chip does not drive DQ for a read"
        value = int(self.dut.dq_out.value)
        await RisingEdge(self.dut.clk)
        self.edge += 1
        return value


async def _chip(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    driver = ChipDriver(dut)
    return driver


@cocotb.test()
async def legal_sequence(dut):
    """A correct power-up, writes in two banks, reads back: no violation, the data is kept."""
    t = CHIP_TIMING
    chip = await _chip(dut)
    await chip.power_up(t)
    await chip.command(ACTIVATE, 1, 0x1ABC)
    await chip.command(ACTIVATE, 2, 0x0007)
    await chip.tick(t.t_rcd)
    await chip.command(WRITE, 1, 5, data=0xBEEF)
    await chip.command(WRITE, 2, 5, data=0x1234)
    assert await chip.read(t, 1, 5) == 0xBEEF
    assert await chip.read(t, 2, 5) == 0x1234
    await chip.tick(t.t_ras + t.t_wr)
    await chip.command(PRECHARGE, address=1 << 10)
    await chip.tick(t.t_rp)
    await chip.command(REFRESH)
    await chip.tick(t.t_rfc)
    await chip.command(ACTIVATE, 1, 0x1ABC)
    await chip.tick(t.t_rcd)
    assert await chip.read(t, 1, 5) == 0xBEEF


@cocotb.test(skip=True)
async def planted_violation(dut):
    """One violation (``SQZ_SDRAM_PLANT``); the chip must stop the simulation."""
    t = CHIP_TIMING
    plant = os.environ["SQZ_SDRAM_PLANT"]
    chip = await _chip(dut)
    log = dut._log

    async def violate(code, bank=0, address=0, data=None, name=plant):
        log.info("planting %s at cycle %d, bank %d", name, chip.edge, bank)
        await chip.command(code, bank, address, data)

    if plant == "power-up wait":
        await chip.tick(t.power_up // 2)
        await violate(PRECHARGE, 0, 1 << 10)
    mode = await chip.power_up(t)
    if plant == "tRCD":
        await chip.command(ACTIVATE, 1, 3)
        await chip.tick(t.t_rcd - 2)          # a command() is one edge: READ 1 edge early
        await violate(READ, 1, 0)
    elif plant == "tRP":
        await chip.command(ACTIVATE, 2, 3)
        await chip.tick(t.t_ras)
        await chip.command(PRECHARGE, 2)
        await violate(ACTIVATE, 2, 4)
    elif plant == "tRAS":
        await chip.command(ACTIVATE, 0, 3)
        await chip.tick(t.t_ras - 2)
        await violate(PRECHARGE, 0)
    elif plant == "tRC":
        await chip.command(ACTIVATE, 3, 3)
        await chip.tick(t.t_ras - 1)
        await chip.command(PRECHARGE, 3)
        await chip.tick(t.t_rp - 1)
        await violate(ACTIVATE, 3, 9)
    elif plant == "tWR":
        await chip.command(ACTIVATE, 1, 3)
        await chip.tick(t.t_ras)
        await chip.command(WRITE, 1, 0, data=7)
        await violate(PRECHARGE, 1)
    elif plant == "tRFC":
        await chip.command(REFRESH)
        await violate(ACTIVATE, 0, 1)
    elif plant == "tMRD":
        await chip.command(MODE, address=t.cas_latency << 4)
        await violate(ACTIVATE, 2, 1)
    elif plant == "refresh":
        every = t.refresh_limit // 8192
        # The chip owes one refresh per `every` cycles from the mode register on; the 9th
        # owed at once is one more than may be postponed.
        log.info("planting refresh at cycle %d, bank 0", mode + 9 * every)
        await chip.tick(10 * every)
    await chip.tick(20)
    raise AssertionError(f"the chip did not stop at the planted {plant} violation")


class Requests:
    """The controller's request and response streams, from the test."""

    def __init__(self, dut):
        self.dut = dut
        dut.requests__valid.value = 0
        dut.requests__payload.value = 0
        for name, value in NO_FAULT.items():
            getattr(dut, name).value = value
        self.responses = []
        self.cycles = 0
        cocotb.start_soon(self._collect())

    async def _collect(self):
        while True:
            await RisingEdge(self.dut.clk)
            self.cycles += 1
            await ReadOnly()
            if int(self.dut.responses__valid.value):
                self.responses.append(int(self.dut.responses__payload.value))

    async def ready(self):
        while not int(self.dut.ready.value):
            await RisingEdge(self.dut.clk)

    async def run(self, operations):
        """Send (write, address, data, mask) operations back to back; return the read data
        in order once all have come back."""
        reads = sum(1 for op in operations if not op[0])
        first = len(self.responses)
        for write, address, data, mask in operations:
            await RisingEdge(self.dut.clk)
            self.dut.requests__valid.value = 1
            self.dut.requests__payload.value = (
                write | address << 1 | data << (1 + ADDRESS_BITS) |
                mask << (1 + ADDRESS_BITS + 16))
            while True:
                await ReadOnly()
                taken = int(self.dut.requests__ready.value)
                await RisingEdge(self.dut.clk)
                if taken:
                    break
            self.dut.requests__valid.value = 0
        for _ in range(100):
            if len(self.responses) - first == reads:
                break
            await RisingEdge(self.dut.clk)
        got = self.responses[first:]
        assert len(got) == reads, f"{len(got)} answers to {reads} reads"
        return got


async def _controller(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    port = Requests(dut)
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    await port.ready()
    return port


@cocotb.test()
async def traffic(dut):
    """Random and sequential words across banks and rows, through several refreshes, against a
    Python memory (byte masks included); the chip checks every command's timing."""
    port = await _controller(dut)
    rng = random.Random(5)
    memory = {}
    operations, expected = [], []
    addresses = ([rng.randrange(1 << ADDRESS_BITS) for _ in range(150)] +
                 list(range(1000, 1000 + 700)) +                    # across a row end
                 [rng.randrange(64) << COLUMN_BITS for _ in range(50)])
    for address in addresses:
        if rng.random() < 0.5 or address not in memory:
            # A partial write only where the word is known (the chip starts undefined).
            data = rng.randrange(1 << 16)
            mask = rng.choice([3, 3, 1, 2]) if address in memory else 3
            keep = (0xFF if not mask & 1 else 0) | (0xFF00 if not mask & 2 else 0)
            memory[address] = (memory.get(address, 0) & keep) | (data & ~keep & 0xFFFF)
            operations.append((1, address, data, mask))
        else:
            operations.append((0, address, 0, 0))
            expected.append(memory[address])
    got = await port.run(operations)
    assert got == expected, next(f"read {i}: expected {e:#06x}, got {g:#06x}"
                                 for i, (e, g) in enumerate(zip(expected, got)) if e != g)
    refreshes = int(dut.refreshes.value)
    assert refreshes >= INIT_REFRESHES + 2, f"only {refreshes} refreshes in {port.cycles} cycles"
    # A sequential read of one row: one word per cycle once the row is open.
    start = port.cycles
    await port.run([(0, 4096 + i, 0, 0) for i in range(256)])
    cycles = port.cycles - start
    assert cycles <= 256 * 2 + 60, f"256 sequential reads took {cycles} cycles"
    dut._log.info("256 sequential reads in %d cycles, %d refreshes", cycles, refreshes)


@cocotb.test(skip=True)
async def memory_test(dut):
    """The self-test's patterns with the planted fault of ``SQZ_SDRAM_FAULT``."""
    port = await _controller(dut)
    fault = os.environ.get("SQZ_SDRAM_FAULT", "none").split(":")
    if fault[0] == "stuck":
        dut.fault_stuck_bit.value, dut.fault_stuck_value.value = int(fault[1]), int(fault[2])
    elif fault[0] == "dead":
        dut.fault_dead_line.value = int(fault[1])
    patterns = data_bus_patterns()
    for pattern in patterns:
        (read,) = await port.run([(1, 0, pattern, 3), (0, 0, 0, 0)])
        assert read == pattern, data_fault(0, pattern, read)
    written = {a: address_tag(a) for a in address_line_addresses()}
    await port.run([(1, a, tag, 3) for a, tag in written.items()])
    reads = await port.run([(0, a, 0, 0) for a in written])
    for (address, tag), read in zip(written.items(), reads):
        assert read == tag, address_fault(address, tag, read, written)
