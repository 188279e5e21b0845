"""Compiled models for the commands: from a blob file, or compiled from a ``.net`` model and
cached, since calibration takes seconds.

The cache key covers everything the blob depends on: the model file, the calibration pictures
and the sources of the compiler's import closure, so a changed compiler never serves a stale
blob. The cache lives in ``$SQUEEZEFPGA_CACHE`` (default ``~/.cache/squeezefpga``); a cache
that cannot be written is skipped silently, never an error. Every path returns a
:class:`~squeezefpga.golden.blob.Model`, decoded exactly once.
"""

import hashlib
import os
from pathlib import Path

from squeezefpga.errors import BlobFormatError
from squeezefpga.golden.blob import Model
from squeezefpga.golden.compiler import compile_file
from squeezefpga.imports import source_digest
from squeezefpga.models import CAT_PHOTO, COFFEE_PHOTO, DEFAULT_MODEL

__all__ = ["CALIBRATION", "cache_dir", "load_model"]

#: The calibration pictures of every compile: the two bundled photos.
CALIBRATION = (CAT_PHOTO, COFFEE_PHOTO)
#: The module whose import closure is the compiler.
COMPILER_ROOT = "squeezefpga.golden.compiler"


def cache_dir():
    return Path(os.environ.get("SQUEEZEFPGA_CACHE") or
                Path.home() / ".cache" / "squeezefpga")


def _key(model_path, calibration_paths):
    digest = hashlib.sha256(source_digest([COMPILER_ROOT]).encode())
    for path in [model_path, *calibration_paths]:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:32]


def _cached(path):
    try:
        return Model.decode(path.read_bytes(), str(path))  # a damaged entry is recompiled
    except (OSError, BlobFormatError):
        return None


def load_model(model_path=DEFAULT_MODEL, blob_path=None, use_cache=True, progress=None):
    """The compiled model the commands run.

    Parameters
    ----------
    model_path : path
        Deep Compression ``.net`` file to compile (with :data:`CALIBRATION`).
    blob_path : path or None
        A compiled blob to use instead (then ``model_path`` is not read).
    use_cache : bool
        Reuse (and store) the compiled blob in :func:`cache_dir`.
    progress : callable or None
        Receives the compiler's :class:`squeezefpga.progress.Event` objects.

    Returns
    -------
    Model
    """
    if blob_path is not None:
        return Model.read(blob_path)
    try:
        path = cache_dir() / f"{_key(model_path, CALIBRATION)}.sqzf" if use_cache else None
    except OSError:                    # unreadable input: let the compiler name the problem
        path = None
    model = _cached(path) if path is not None else None
    if model is not None:
        return model
    model = compile_file(model_path, CALIBRATION, progress).model
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(model.blob)
            tmp.replace(path)          # atomic: parallel runs never see half a file
        except OSError:
            pass
    return model
