"""cocotb testbench of the toy byte-stream device in ``tests/test_sim_infra.py``.

The toy answers a byte ``b`` with ``b + 1`` and the command ``0x10 N`` with ``0x00`` after
``N * 1000`` busy cycles. Parameters come from the environment: ``TB_TOY_N`` (default 2) is
the ``N`` of :func:`busy_wait`. :func:`deliberately_failing` is skipped unless selected by
name; it exists to show how a failure is reported.
"""

import os

import cocotb
from cocotb.clock import Clock

from squeezefpga.sim.cocotb_support import CocotbPort


async def _port(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    port = CocotbPort(dut)
    await port.reset()
    return port


@cocotb.test()
async def echo(dut):
    """Every byte but the command byte comes back incremented, one per cycle."""
    port = await _port(dut)
    await port.write(b"\x41")
    assert await port.read(1) == b"\x42"
    data = bytes(b for b in range(256) if b != 0x10)
    # The toy holds one answer, so writing and reading must overlap.
    writer = cocotb.start_soon(port.write(data))
    assert await port.read(len(data)) == bytes((b + 1) % 256 for b in data)
    await writer


@cocotb.test()
async def busy_wait(dut):
    """``0x10 N`` keeps busy high for N * 1000 cycles, then answers 0x00."""
    n = int(os.environ.get("TB_TOY_N", "2"))
    port = await _port(dut)
    await port.write(bytes([0x10, n]))
    cycles = await port.wait_idle(timeout_cycles=n * 1000 + 100)
    assert n * 1000 <= cycles <= n * 1000 + 2, f"busy for {cycles} cycles, expected {n * 1000}"
    assert await port.read(1, timeout_cycles=10) == b"\x00"


@cocotb.test(skip=True)
async def deliberately_failing(dut):
    """Expects a wrong answer, so it fails (run only when selected by name)."""
    port = await _port(dut)
    await port.write(b"\x01")
    answer = await port.read(1)
    assert answer == b"\x05", f"deliberately failing: toy answered {answer.hex()} to 01"
