"""Cached Verilog and Verilator builds of the accelerator top for a configuration.

The cache key covers every source the Verilog is generated from: the import closure of
:mod:`squeezefpga.hw.verilog` (:func:`squeezefpga.imports.source_digest`), so a change to
any module the gateware reads — the protocol constants included — builds anew.
"""

from squeezefpga.config import AcceleratorConfig
from squeezefpga.imports import source_digest
from squeezefpga.progress import Stage, emit
from squeezefpga.sdram import SdramTiming

from .build import build_board, cached_directory
from .sdram_sim import CHIP_SOURCE, board_verilog

__all__ = ["accelerator_verilog", "accelerator_board", "gateware_key"]

#: The module whose imports reach every source of the generated Verilog.
GATEWARE_ROOT = "squeezefpga.hw.verilog"
#: The simulated SDRAM board around the core.
SDRAM_BOARD_ROOT = "squeezefpga.sim.sdram_sim"


def gateware_key(config, framed=False):
    """Cache key of the Verilog of ``config``: the configuration and the gateware sources
    (with SDRAM, the simulated chip and the board around the core too)."""
    roots, extra = [GATEWARE_ROOT], f"{config!r} framed={framed}"
    if config.sdram_mhz:
        roots.append(SDRAM_BOARD_ROOT)
        extra += CHIP_SOURCE.read_text()
    return source_digest(roots, extra)[:32]


def accelerator_verilog(config=None, progress=None, framed=False):
    """Verilog text of the accelerator (cached: emitting 64 lanes takes about a minute);
    ``framed`` gives the board top with the link layer. A configuration with SDRAM is always
    the simulated board: the framed core, the board's I/O registers and the simulated chip.
    The build id reported by INFO is the first 32 bits of the cache key."""
    from squeezefpga.hw.verilog import emit_verilog
    config = config if config is not None else AcceleratorConfig()
    key = gateware_key(config, framed)

    def populate(directory):
        emit(progress, Stage.VERILOG, f"{config.lanes} lanes")
        build_id = int(key[:8], 16)
        if config.sdram_mhz:
            text = board_verilog(emit_verilog(config, True, build_id, name="sqz_core"),
                                 SdramTiming.safe(config.sdram_mhz))
        else:
            text = emit_verilog(config, framed, build_id)
        (directory / "top.v").write_text(text)

    return (cached_directory("verilog", key, populate) / "top.v").read_text()


def accelerator_board(config=None, progress=None, framed=False):
    """Path of the simulated-board executable for ``config`` (built once, then cached)."""
    return build_board(accelerator_verilog(config, progress, framed), progress=progress)
