"""Verilator builds of the simulated board, cached by content.

:func:`build_board` turns the Verilog of the accelerator's ``top`` into an executable running
``harness.cpp``, which serves the design on a TCP port. Builds live in
``$SQUEEZEFPGA_CACHE/verilator/<key>/`` (default cache ``~/.cache/squeezefpga``), keyed by the
SHA-256 of everything that goes into them. A build holds an ``fcntl`` lock, so parallel
processes (pytest-xdist workers) build each key once, and happens in a scratch directory
renamed into place when complete, so a killed build never leaves a half-written entry.
"""

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from squeezefpga import protocol
from squeezefpga.errors import SimulationError
from squeezefpga.progress import Stage, emit
from squeezefpga.sim.toolchain import (VERILATOR_WAIVERS, verilator_env, verilator_executable,
                                       verilator_version)

__all__ = ["BOARD_FLAGS", "BOARD_PORTS", "HARNESS_SOURCE", "build_board", "cache_root",
           "cached_directory", "check_board_ports"]

#: The harness that serves the Verilated ``top``'s byte stream on a TCP port.
HARNESS_SOURCE = Path(__file__).with_name("harness.cpp")

#: Verilator options of the board build, chosen for simulation speed. Measured on two
#: configurations of the accelerator's Verilog (0.9 and 2.5 MB): C++ -O3 runs 1.4-1.5x the
#: cycles/s of verilated.mk's default -Os (-O2: 1.2-1.5x) for about 20% more compile time;
#: Verilator's own -O3 adds nothing. X handling "fast" is free (Amaranth initialises every
#: register). Assertions stay on: they cost nothing in designs without them and stop the board
#: on a failing Amaranth ``Assert``.
BOARD_FLAGS = [
    "--x-assign", "fast",
    "--x-initial", "fast",
    "-MAKEFLAGS", "OPT_FAST=-O3", "-MAKEFLAGS", "OPT_SLOW=-O1", "-MAKEFLAGS", "OPT_GLOBAL=-O2",
]

#: The link constants the harness needs to refuse a second client (docs/PROTOCOL.md).
HARNESS_DEFINES = [f"-DSQZ_SOF={protocol.SOF}", f"-DSQZ_LINK_VERSION={protocol.LINK_VERSION}",
                   f"-DSQZ_LINK_BUSY={protocol.LINK_BUSY}"]

#: Ports the harness drives and samples; ``top`` must have all of them (payloads 8 bits wide).
BOARD_PORTS = ("clk", "rst", "host_in__payload", "host_in__valid", "host_in__ready",
               "host_out__payload", "host_out__valid", "host_out__ready", "busy")

_EXECUTABLE = "board"


def cache_root():
    """Return the cache directory: ``$SQUEEZEFPGA_CACHE``, default ``~/.cache/squeezefpga``."""
    return Path(os.environ.get("SQUEEZEFPGA_CACHE") or Path.home() / ".cache" / "squeezefpga")


@contextlib.contextmanager
def _locked(path):
    with open(path, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cached_directory(kind, key, populate):
    """Return ``cache_root()/kind/key``, creating it with ``populate`` if it does not exist.

    Parameters
    ----------
    kind : str
        Sub-directory of the cache, e.g. ``"verilator"``.
    key : str
        Content hash naming the entry.
    populate : callable
        ``populate(directory)`` fills an empty scratch directory; it is renamed into place only
        if it returns. It runs under an exclusive lock, so at most one process builds a key.

    Returns
    -------
    pathlib.Path
        The complete cache entry.

    Raises
    ------
    SimulationError
        If the cache directory cannot be created.
    """
    parent = cache_root() / kind
    final = parent / key
    if final.is_dir():
        return final
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SimulationError(f"cannot create the build cache {parent}: {exc.strerror}; "
                              "set SQUEEZEFPGA_CACHE to a writable directory") from exc
    with _locked(parent / f"{key}.lock"):
        if final.is_dir():                  # another process built it while we waited
            return final
        scratch = parent / f"{key}.partial"
        shutil.rmtree(scratch, ignore_errors=True)  # left by a killed build
        scratch.mkdir()
        try:
            populate(scratch)
            scratch.rename(final)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return final


def check_board_ports(verilog_text):
    """Check that ``verilog_text`` has a module ``top`` with the ports the harness needs.

    Raises
    ------
    SimulationError
        Naming the missing ports, or a payload that is not 8 bits wide.
    """
    header = re.search(r"\bmodule\s+top\s*\(([^)]*)\)\s*;", verilog_text)
    if header is None:
        raise SimulationError("the Verilog has no module named `top`; emit it with "
                              "amaranth.back.verilog.convert(..., name=\"top\")")
    ports = {name.strip() for name in header.group(1).split(",")}
    missing = [port for port in BOARD_PORTS if port not in ports]
    if missing:
        raise SimulationError(f"module top lacks the board port(s) {', '.join(missing)}; it "
                              f"needs {', '.join(BOARD_PORTS)}")
    for payload in ("host_in__payload", "host_out__payload"):
        if not re.search(rf"\b(input|output)\s+(wire\s+|reg\s+)?\[7:0\]\s*{payload}\s*;",
                         verilog_text):
            raise SimulationError(f"port {payload} of module top is not 8 bits wide")


def _tail(text, lines=60):
    return "\n".join(text.strip().splitlines()[-lines:])


def build_board(verilog_text, cache_key_extra="", progress=None, flags=None):
    """Verilate and compile ``top`` with the board harness; return the executable.

    Parameters
    ----------
    verilog_text : str
        Verilog with a module ``top`` that has the host byte-stream ports (``clk``, ``rst``,
        ``host_in__payload/valid/ready``, ``host_out__payload/valid/ready``, ``busy``).
    cache_key_extra : str
        Extra text mixed into the cache key.
    progress : callable, optional
        Receives :class:`squeezefpga.progress.Event` objects (stage ``VERILATOR``) when a
        build starts and ends.
    flags : list of str, optional
        Verilator options replacing :data:`BOARD_FLAGS`.

    Returns
    -------
    pathlib.Path
        The board executable: ``board --listen PORT`` (see ``harness.cpp``), usually through
        :class:`squeezefpga.sim.board_server.BoardServer`.

    Raises
    ------
    SimulationError
        If ``top`` lacks a board port, or Verilator or the C++ compiler fails; the message
        carries the end of the build log.
    """
    check_board_ports(verilog_text)
    flags = list(BOARD_FLAGS if flags is None else flags)
    flags += [item for define in HARNESS_DEFINES for item in ("-CFLAGS", define)]
    harness = HARNESS_SOURCE.read_bytes()
    digest = hashlib.sha256()
    for part in (verilog_text.encode(), harness, "\0".join(flags).encode(),
                 "\0".join(VERILATOR_WAIVERS).encode(), verilator_version().encode(),
                 cache_key_extra.encode()):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    key = digest.hexdigest()

    def populate(directory):
        for tool in ("make", "c++"):
            if shutil.which(tool) is None:
                raise SimulationError(f"building the simulator needs `{tool}`, which is not on "
                                      "PATH; install make and a C++ compiler (g++ or clang)")
        (directory / "top.v").write_text(verilog_text)
        (directory / "harness.cpp").write_bytes(harness)
        cmd = [str(verilator_executable()), "--cc", "--exe", "--build", "-j", "2",
               *flags, *VERILATOR_WAIVERS, "-Wno-fatal", "--top-module", "top",
               "--Mdir", "obj", "-o", _EXECUTABLE, "top.v", "harness.cpp"]
        emit(progress, Stage.VERILATOR, f"Verilator {verilator_version()} in "
             f"{directory.parent / key}")
        start = time.monotonic()
        result = subprocess.run(cmd, cwd=directory, env=verilator_env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                check=False)
        (directory / "build.log").write_text(result.stdout)
        executable = directory / "obj" / _EXECUTABLE
        if result.returncode != 0 or not executable.is_file():
            raise SimulationError(f"building the simulator failed (exit status "
                                  f"{result.returncode}); end of the build log:\n"
                                  f"{_tail(result.stdout)}")
        executable.rename(directory / _EXECUTABLE)
        shutil.rmtree(directory / "obj")
        emit(progress, Stage.VERILATOR, f"built in {time.monotonic() - start:.1f} s")

    return cached_directory("verilator", key, populate) / _EXECUTABLE
