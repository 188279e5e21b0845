"""The simulated SDRAM chip (sim/sdram_chip.v) and the SDRAM controller (hw/sdram.py), in
Verilator through cocotb (sim/tb_sdram.py)."""

import re

import pytest

from squeezefpga.sdram import (SdramTiming, address_fault, address_line_addresses, address_tag,
                               data_fault, split_address)
from squeezefpga.sim.cocotb_support import run_cocotb
from squeezefpga.sim.sdram_sim import chip_top_verilog, controller_top_verilog
from squeezefpga.sim.tb_sdram import CHIP_TIMING, PLANTS, TIMING

TB = "squeezefpga.sim.tb_sdram"


@pytest.fixture(scope="module")
def chip_verilog():
    return chip_top_verilog(CHIP_TIMING)


@pytest.fixture(scope="module")
def controller_verilog():
    return controller_top_verilog(TIMING)


def test_safe_timings_at_75_mhz():
    t = SdramTiming.safe(75)
    # 13.3 ns per cycle: 21 ns -> 2, 44 -> 4, 66 -> 5 cycles; 200 us -> 15,000 cycles.
    assert (t.t_rcd, t.t_rp, t.t_ras, t.t_rc, t.t_wr, t.t_rfc) == (2, 2, 4, 5, 2, 5)
    assert t.power_up == 15000 and t.cas_latency == 3
    # 8192 refreshes in 64 ms = one per 586 cycles on average; the controller issues one per
    # 556 (5 % margin).
    assert t.refresh_interval == 556 and t.refresh_limit // 8192 == 585
    with pytest.raises(ValueError, match="up to 133 MHz"):
        SdramTiming.safe(150)


def test_address_split_and_fault_naming():
    assert split_address((5 << 11) | (2 << 9) | 17) == (5, 2, 17)
    assert data_fault(0x40, 0x0001, 0x0021) == (
        "data bit 5 reads 1 at word address 0x000040 (wrote 0x0001, read 0x0021)")
    written = {a: address_tag(a) for a in address_line_addresses()}
    assert len(set(written.values())) == len(written)       # every tag tells its address
    message = address_fault(0, written[0], written[1 << 14], written)
    assert message.startswith("address line A3 (row) is stuck or shorted")


def test_the_chip_accepts_a_legal_sequence(chip_verilog):
    run_cocotb(chip_verilog, TB, testcase="legal_sequence")


@pytest.mark.parametrize("plant", PLANTS)
def test_the_chip_stops_at_a_planted_violation(chip_verilog, plant):
    """Each violation stops the simulation with a line naming the parameter, the cycle and
    the bank, the same the testbench logged when it planted it."""
    with pytest.raises(AssertionError) as failure:
        run_cocotb(chip_verilog, TB, testcase="planted_violation",
                   extra_env={"SQZ_SDRAM_PLANT": plant})
    log = str(failure.value)
    planted = re.search(rf"planting {re.escape(plant)} at cycle (\d+), bank (\d+)", log)
    assert planted, log
    cycle, bank = planted.groups()
    assert f"SDRAM timing violation: {plant}" in log, log
    assert re.search(rf"violation: {re.escape(plant)}[^\n]* at cycle {cycle}, bank {bank}",
                     log), log


def test_the_controller_keeps_every_timing(controller_verilog):
    """Random and sequential traffic through refreshes: data right, the chip silent."""
    run_cocotb(controller_verilog, TB, testcase="traffic")


@pytest.mark.parametrize("fault,message", [
    ("none", None),
    ("stuck:5:1", "data bit 5 reads 1 at word address 0x000000"),
    ("stuck:12:0", "data bit 12 reads 0 at word address 0x000000"),
    ("dead:3", "address line A3 (row) is stuck or shorted: word address 0x000000 reads what "
               "was written at 0x004000"),
    ("dead:11", "address line A11 (row) is stuck or shorted"),
])
def test_the_memory_test_names_a_planted_fault(controller_verilog, fault, message):
    if message is None:
        run_cocotb(controller_verilog, TB, testcase="memory_test",
                   extra_env={"SQZ_SDRAM_FAULT": fault})
        return
    with pytest.raises(AssertionError, match=re.escape(message)):
        run_cocotb(controller_verilog, TB, testcase="memory_test",
                   extra_env={"SQZ_SDRAM_FAULT": fault})
