"""Verilog of the accelerator top for Verilator and yosys."""

from amaranth.back import verilog

from squeezefpga.config import AcceleratorConfig

from .accelerator import Accelerator
from .framed_accelerator import FramedAccelerator
from .ram import RAM_VERILOG, VerilogTarget

__all__ = ["emit_verilog", "TOP"]

TOP = "top"


def emit_verilog(config=None, framed=False, build_id=0, name=TOP):
    """Return the Verilog source (one file, module ``name`` plus ``sqz_ram``) of an
    accelerator built with ``config`` (default :class:`AcceleratorConfig`); ``framed`` puts
    the link layer in front (the board top), otherwise it speaks the raw host-port
    commands."""
    config = config if config is not None else AcceleratorConfig()
    top = (FramedAccelerator if framed else Accelerator)(config, build_id)
    text = verilog.convert(top, name=name, platform=VerilogTarget(), emit_src=False)
    return text + "\n" + RAM_VERILOG
