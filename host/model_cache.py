"""Compiled-blob cache: compiling the real model takes seconds, so the CLI reuses its result.

The key covers everything the blob depends on: the model file, the calibration pictures and
the compiler's own source, so a changed compiler never serves a stale blob. The cache lives in
``$SQUEEZEFPGA_CACHE`` (default ``~/.cache/squeezefpga``); a cache that cannot be written is
skipped silently, never an error.
"""

import hashlib
import os
from pathlib import Path

from squeezefpga import golden
from squeezefpga.errors import BlobFormatError
from squeezefpga.golden.blob import decode_program
from squeezefpga.golden.compiler import compile_file

__all__ = ["cache_dir", "compiled_blob"]


def cache_dir():
    return Path(os.environ.get("SQUEEZEFPGA_CACHE") or
                Path.home() / ".cache" / "squeezefpga")


def _key(model_path, calibration_paths):
    digest = hashlib.sha256()
    for path in [model_path, *calibration_paths]:
        digest.update(Path(path).read_bytes())
    for source in sorted(Path(golden.__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:32]


def _cached(path):
    try:
        blob = path.read_bytes()
        decode_program(blob)           # a damaged cache entry is recompiled, not trusted
        return blob
    except (OSError, BlobFormatError):
        return None


def compiled_blob(model_path, calibration_paths, progress=None, use_cache=True):
    """Return the compiled blob of ``model_path``, from the cache when possible."""
    try:
        path = cache_dir() / f"{_key(model_path, calibration_paths)}.sqzf" if use_cache else None
    except OSError:                    # unreadable input: let the compiler name the problem
        path = None
    blob = _cached(path) if path is not None else None
    if blob is not None:
        return blob
    blob = compile_file(model_path, calibration_paths, progress).blob
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(blob)
            tmp.replace(path)          # atomic: parallel runs never see half a file
        except OSError:
            pass
    return blob
