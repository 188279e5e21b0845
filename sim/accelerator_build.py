"""Cached Verilog and Verilator builds of the accelerator top for a configuration."""

import hashlib
from pathlib import Path

from squeezefpga import hw
from squeezefpga.golden import blob as blob_format
from squeezefpga.host import commands
from squeezefpga.hw.config import AcceleratorConfig

from .build import build_board, cached_directory

__all__ = ["accelerator_verilog", "accelerator_board"]


def _key(config):
    digest = hashlib.sha256(repr(config).encode())
    sources = sorted(Path(hw.__file__).parent.glob("*.py"))
    for path in [*sources, Path(blob_format.__file__), Path(commands.__file__)]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:32]


def accelerator_verilog(config=None, progress=None):
    """Verilog text of the accelerator (cached: emitting 64 lanes takes about a minute)."""
    from squeezefpga.hw.verilog import emit_verilog
    config = config if config is not None else AcceleratorConfig()

    def populate(directory):
        if progress:
            progress(f"generating Verilog for {config.lanes} lanes")
        (directory / "top.v").write_text(emit_verilog(config))

    return (cached_directory("verilog", _key(config), populate) / "top.v").read_text()


def accelerator_board(config=None, progress=None):
    """Path of the simulated-board executable for ``config`` (built once, then cached)."""
    return build_board(accelerator_verilog(config, progress), progress=progress)
