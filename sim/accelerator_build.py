"""Cached Verilog and Verilator builds of the accelerator top for a configuration."""

import hashlib
from pathlib import Path

from squeezefpga import hw
from squeezefpga.golden import blob as blob_format
from squeezefpga.host import commands
from squeezefpga.hw.config import AcceleratorConfig

from .build import build_board, cached_directory

__all__ = ["accelerator_verilog", "accelerator_board"]


def _key(config, framed=False):
    digest = hashlib.sha256(f"{config!r} framed={framed}".encode())
    sources = sorted(Path(hw.__file__).parent.glob("*.py"))
    for path in [*sources, Path(blob_format.__file__), Path(commands.__file__)]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:32]


def accelerator_verilog(config=None, progress=None, framed=False):
    """Verilog text of the accelerator (cached: emitting 64 lanes takes about a minute);
    ``framed`` gives the board top with the link layer. The build id reported by INFO is the
    first 32 bits of the cache key."""
    from squeezefpga.hw.verilog import emit_verilog
    config = config if config is not None else AcceleratorConfig()
    key = _key(config, framed)

    def populate(directory):
        if progress:
            progress(f"generating Verilog for {config.lanes} lanes")
        (directory / "top.v").write_text(emit_verilog(config, framed, int(key[:8], 16)))

    return (cached_directory("verilog", key, populate) / "top.v").read_text()


def accelerator_board(config=None, progress=None, framed=False):
    """Path of the simulated-board executable for ``config`` (built once, then cached)."""
    return build_board(accelerator_verilog(config, progress, framed), progress=progress)
