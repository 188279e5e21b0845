"""Verilog of the accelerator top for Verilator and yosys."""

from amaranth.back import verilog

from .accelerator import Accelerator
from .config import AcceleratorConfig
from .ram import RAM_VERILOG, VerilogTarget

__all__ = ["emit_verilog", "TOP"]

TOP = "top"


def emit_verilog(config=None):
    """Return the Verilog source (one file, module ``top`` plus ``sqz_ram``) of an
    accelerator built with ``config`` (default :class:`AcceleratorConfig`)."""
    config = config if config is not None else AcceleratorConfig()
    text = verilog.convert(Accelerator(config), name=TOP, platform=VerilogTarget(),
                           emit_src=False)
    return text + "\n" + RAM_VERILOG
