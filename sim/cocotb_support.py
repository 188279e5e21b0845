"""cocotb on Verilator: cached builds, a pass/fail runner, and a byte-stream port for testbenches.

:func:`run_cocotb` builds Verilog with cocotb's Verilator runner (once per content, in
``$SQUEEZEFPGA_CACHE/cocotb/<key>/``) and runs a cocotb test module against it, raising
``AssertionError`` with the failure messages if any cocotb test failed. :class:`CocotbPort`
drives the ``host_in`` / ``host_out`` streams of ``top`` from inside a cocotb test.

Testbench modules take parameters through environment variables: pass
``extra_env={"N": "3"}`` to :func:`run_cocotb` and read ``os.environ["N"]`` in the test.
"""

import contextlib
import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path
from xml.etree import ElementTree

from squeezefpga.errors import SimulationError
from squeezefpga.sim.build import cached_directory
from squeezefpga.sim.toolchain import VERILATOR_WAIVERS, verilator_env, verilator_version

__all__ = ["BoardTimeoutError", "CocotbPort", "run_cocotb"]


class BoardTimeoutError(SimulationError, TimeoutError):
    """The simulated top did not take or send the expected bytes in time."""

#: Verilator options of cocotb builds (on top of those cocotb's runner adds).
COCOTB_BUILD_ARGS = [*VERILATOR_WAIVERS, "-Wno-fatal"]


def _tail(path, lines=40):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:])


@contextlib.contextmanager
def _verilator_in_environ():
    # cocotb's runner finds `verilator` on PATH and copies os.environ into the build commands,
    # so the toolchain settings go there for the duration of the build.
    changes = {name: value for name, value in verilator_env().items()
               if os.environ.get(name) != value}
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _build(verilog_text, build_key, waves):
    from cocotb_tools.runner import get_runner

    digest = hashlib.sha256()
    for part in (verilog_text, "\0".join(COCOTB_BUILD_ARGS), verilator_version(),
                 importlib.metadata.version("cocotb"), str(waves), build_key):
        data = part.encode()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    def populate(directory):
        source = directory / "top.v"
        source.write_text(verilog_text)
        runner = get_runner("verilator")
        try:
            with _verilator_in_environ():
                runner.build(sources=[source], hdl_toplevel="top", build_args=COCOTB_BUILD_ARGS,
                             build_dir=directory, waves=waves,
                             log_file=directory / "build.log")
        except (RuntimeError, SystemExit) as exc:
            raise SimulationError(f"building the cocotb simulation failed ({exc}); end of the "
                                  f"build log:\n{_tail(directory / 'build.log')}") from None

    return cached_directory("cocotb", digest.hexdigest(), populate)


def _failures(results_xml):
    """Return (number of tests, failure messages) from a cocotb results file."""
    root = ElementTree.parse(results_xml).getroot()
    tests, messages = 0, []
    for case in root.iter("testcase"):
        tests += 1
        for outcome in ("failure", "error"):
            for element in case.findall(outcome):
                message, text = element.get("message") or "", element.text or ""
                detail = text if message.strip() in text else f"{message}\n{text}"
                messages.append(f"{case.get('classname')}.{case.get('name')} {outcome}: "
                                f"{detail.strip() or '(no message)'}")
    return tests, messages


def run_cocotb(verilog_text, test_module, testcase=None, extra_env=None, build_key="",
               waves=False):
    """Build ``top`` with Verilator for cocotb and run a cocotb test module against it.

    Parameters
    ----------
    verilog_text : str
        Verilog containing module ``top`` (clock ``clk``).
    test_module : str
        Importable module holding the ``@cocotb.test()`` functions, e.g.
        ``"squeezefpga.sim.tb_toy"``.
    testcase : str or list of str, optional
        Run only these tests (this also runs tests marked ``skip=True``); all by default.
    extra_env : mapping of str to str, optional
        Environment variables for the simulation, read by the tests with ``os.environ``.
        Variables already set in this process take precedence (cocotb's runner merges them).
    build_key : str
        Extra text mixed into the build cache key.
    waves : bool
        Record ``dump.vcd`` (a separate build with tracing); the run directory is then kept
        and its path logged in the failure message or returned.

    Returns
    -------
    pathlib.Path or None
        The kept run directory if ``waves``, else None.

    Raises
    ------
    AssertionError
        If a cocotb test failed or errored (the message has each failure), no test ran, or
        the simulator ended without results.
    SimulationError
        If the build failed.
    """
    from cocotb_tools.runner import get_runner

    build_dir = _build(verilog_text, build_key, waves)
    run_dir = Path(tempfile.mkdtemp(prefix="squeezefpga-cocotb-"))
    results = run_dir / "results.xml"
    log = run_dir / "sim.log"
    runner = get_runner("verilator")
    crash = None
    try:
        runner.test(test_module=test_module, hdl_toplevel="top", hdl_toplevel_lang="verilog",
                    testcase=testcase, extra_env=dict(extra_env or {}), build_dir=build_dir,
                    test_dir=run_dir, results_xml=str(results), log_file=log, waves=waves)
    except (RuntimeError, SystemExit) as exc:     # the runner exits when a test failed
        crash = exc
    keep = f"\n(run directory kept: {run_dir})" if waves else ""
    try:
        if not results.is_file():
            why = f" ({crash})" if crash is not None else ""
            raise AssertionError(f"cocotb simulation of {test_module} ended without "
                                 f"results{why}; end of its log:\n{_tail(log)}{keep}")
        tests, messages = _failures(results)
        if messages:
            # The simulator stopped ($fatal, $finish): what it printed says why.
            ended = any("SimFailure" in m for m in messages)
            tail = f"\nend of the simulation log:\n{_tail(log)}" if ended else ""
            raise AssertionError(f"{len(messages)} of {tests} cocotb tests in {test_module} "
                                 "failed:\n" + "\n".join(messages) + tail + keep)
        if tests == 0:
            raise AssertionError(f"no cocotb test ran in {test_module}"
                                 + (f" matching {testcase!r}" if testcase else "")
                                 + f"; end of the log:\n{_tail(log)}")
    finally:
        if not waves:
            shutil.rmtree(run_dir, ignore_errors=True)
    return run_dir if waves else None


class CocotbPort:
    """The host byte streams of ``top`` from a cocotb test.

    Drives ``host_in__payload/valid`` and ``host_out__ready``, samples the other side in the
    read-only phase before each rising edge of ``clk`` (a byte moves on an edge where valid and
    ready are both 1). The caller starts the clock, e.g.
    ``cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())``.

    Parameters
    ----------
    dut : cocotb handle
        The ``top`` module.
    """

    def __init__(self, dut):
        from cocotb.triggers import ReadOnly, RisingEdge

        self.dut = dut
        self._rising = RisingEdge(dut.clk)
        self._read_only = ReadOnly()
        dut.host_in__valid.value = 0
        dut.host_in__payload.value = 0
        dut.host_out__ready.value = 0

    async def _edge(self):
        await self._rising

    async def _settle(self):
        await self._read_only

    async def reset(self, cycles=4):
        """Hold ``rst`` high for ``cycles`` clock cycles with both streams idle."""
        self.dut.host_in__valid.value = 0
        self.dut.host_out__ready.value = 0
        self.dut.rst.value = 1
        for _ in range(cycles):
            await self._edge()
        self.dut.rst.value = 0

    async def write(self, data, timeout_cycles=None):
        """Send ``data`` on host_in, one byte per accepted cycle.

        Raises
        ------
        BoardTimeoutError
            If ``timeout_cycles`` cycles pass before all bytes are accepted.
        """
        dut = self.dut
        waited = 0
        for sent, byte in enumerate(bytes(data)):
            dut.host_in__payload.value = byte
            dut.host_in__valid.value = 1
            while True:
                await self._settle()
                accepted = dut.host_in__ready.value == 1
                await self._edge()
                if accepted:
                    break
                waited += 1
                if timeout_cycles is not None and waited > timeout_cycles:
                    dut.host_in__valid.value = 0
                    raise BoardTimeoutError(f"top accepted only {sent} of {len(data)} bytes "
                                            f"in {timeout_cycles} cycles")
        dut.host_in__valid.value = 0

    async def read(self, n, timeout_cycles=100_000):
        """Receive exactly ``n`` bytes from host_out.

        Raises
        ------
        BoardTimeoutError
            If fewer than ``n`` bytes arrived within ``timeout_cycles`` cycles; the message
            says how many did.
        """
        dut = self.dut
        received = bytearray()
        if n == 0:
            return b""
        dut.host_out__ready.value = 1
        for _ in range(timeout_cycles):
            await self._settle()
            if dut.host_out__valid.value == 1:
                received.append(int(dut.host_out__payload.value))
            await self._edge()
            if len(received) == n:
                dut.host_out__ready.value = 0
                return bytes(received)
        dut.host_out__ready.value = 0
        raise BoardTimeoutError(f"timed out after {timeout_cycles} cycles waiting for {n} bytes "
                                f"from top: {len(received)} arrived"
                                + (f" ({bytes(received[:16]).hex(' ')})" if received else ""))

    async def wait_idle(self, timeout_cycles=100_000):
        """Wait until ``busy`` is 0; return the number of cycles waited.

        Raises
        ------
        BoardTimeoutError
            If ``busy`` stays 1 for ``timeout_cycles`` cycles.
        """
        for cycles in range(timeout_cycles):
            await self._settle()
            idle = self.dut.busy.value == 0
            await self._edge()              # leave the read-only phase before returning
            if idle:
                return cycles
        raise BoardTimeoutError(f"top stayed busy for {timeout_cycles} cycles")
