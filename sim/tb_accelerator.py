"""cocotb testbenches of the accelerator top, driven through its host port.

``run_cases`` executes a batch prepared by :mod:`squeezefpga.sim.rtl_cases` (directory in
``SQZ_TB_DIR``): for each case it loads the blob and the input bytes, runs the listed program
steps and reads back the listed memory ranges into ``out<i>.bin``. The comparison with the
golden model happens in pytest, which can name the first differing layer, channel and pixel.
"""

import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from squeezefpga import protocol as cmd
from squeezefpga.sim.cocotb_support import CocotbPort

RUN_CYCLES = 5_000_000


async def _port(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    port = CocotbPort(dut)
    await port.reset()
    return port


async def _command(port, request, reply_bytes=0, timeout_cycles=100_000):
    writer = cocotb.start_soon(port.write(request))
    reply = await port.read(reply_bytes + 1, timeout_cycles)
    await writer
    assert reply[-1] == cmd.STATUS_OK, (
        f"command 0x{request[0]:02x}: status 0x{reply[-1]:02x} "
        f"({cmd.STATUS_NAMES.get(reply[-1], 'unknown')})")
    return reply[:-1]


@cocotb.test()
async def run_cases(dut):
    """Every case of the batch in ``SQZ_TB_DIR``; see the module docstring."""
    directory = Path(os.environ["SQZ_TB_DIR"])
    manifest = json.loads((directory / "cases.json").read_text())
    port = await _port(dut)
    for i, case in enumerate(manifest["cases"]):
        await _command(port, cmd.write_weights(0, (directory / case["blob"]).read_bytes()))
        await _command(port, cmd.set_model(case["crc"]), timeout_cycles=1_000_000)
        await _command(port, cmd.write_act(case["input_addr"],
                                           (directory / case["input"]).read_bytes()))
        out = bytearray()
        cycles = []
        for first, last, addr, length in case["steps"]:
            await _command(port, cmd.run(first, last))
            await _command(port, cmd.wait(), timeout_cycles=RUN_CYCLES)
            raw = await _command(port, cmd.counters(0, 0), cmd.counters_reply_bytes(0))
            cycles.append(cmd.COUNTER_HEADER.unpack_from(raw)[0])
            out += await _command(port, cmd.read_act(addr, length), length)
        (directory / f"out{i}.bin").write_bytes(bytes(out))
        (directory / f"cycles{i}.json").write_text(json.dumps(cycles))


@cocotb.test()
async def host_port_robustness(dut):
    """Unknown commands, truncated arguments and truncated writes leave the port usable."""
    timeout = int(os.environ["SQZ_TB_TIMEOUT"])
    port = await _port(dut)
    info = await _command(port, cmd.info(), cmd.INFO.size)
    assert info[:4] == cmd.INFO_MAGIC
    for junk in (0x00, 0xFF, 0x5A):
        await port.write(bytes([junk]))
        assert await port.read(1) == bytes([cmd.STATUS_UNKNOWN_COMMAND]), f"byte 0x{junk:02x}"
    # A write of 100 bytes that stops after 10, and a command cut inside its arguments.
    for truncated in (cmd.write_act(64, bytes(range(100)))[:19], cmd.read_act(0, 4)[:3]):
        await port.write(truncated)
        await ClockCycles(dut.clk, timeout + 10)
        assert await _command(port, cmd.info(), cmd.INFO.size) == info
    await _command(port, cmd.write_act(64, b"\x11\x22\x33"))
    assert await _command(port, cmd.read_act(64, 3), 3) == b"\x11\x22\x33"
