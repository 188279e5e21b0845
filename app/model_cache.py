"""Compiled models for the commands: from a blob file, or compiled from a model source (a
Deep Compression ``.net`` file, a named network with synthetic weights, an ONNX file) and
cached, since calibration takes seconds.

The cache key covers everything the blob depends on: the model source, the calibration
pictures, the pruning density and the sources of the compiler's import closure, so a changed
compiler never serves a stale blob. The cache lives in ``$SQUEEZEFPGA_CACHE`` (default ``~/.cache/squeezefpga``); a cache
that cannot be written is skipped silently, never an error. Every path returns a
:class:`~squeezefpga.golden.blob.Model`, decoded exactly once.
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from squeezefpga.errors import BlobFormatError, ModelFormatError
from squeezefpga.golden.blob import Model
from squeezefpga.golden.compiler import compile_model
from squeezefpga.golden.image import load_image
from squeezefpga.golden.importer import load_compressed
from squeezefpga.golden.network import network as named_network
from squeezefpga.golden.onnx_import import load_onnx
from squeezefpga.golden.quantize import prune
from squeezefpga.golden.synthetic import DEFAULT_DENSITY, DEFAULT_SEED, synthetic_model
from squeezefpga.imports import source_digest
from squeezefpga.models import CAT_PHOTO, COFFEE_PHOTO, DEFAULT_MODEL

__all__ = ["CALIBRATION", "IMAGE_SUFFIXES", "Source", "cache_dir", "calibration_pictures",
           "compile_source", "load_model"]

#: The calibration pictures of every compile: the two bundled photos.
CALIBRATION = (CAT_PHOTO, COFFEE_PHOTO)
#: The module whose import closure is the compiler.
COMPILER_ROOT = "squeezefpga.golden.compiler"


#: Picture files a calibration folder contributes.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class Source:
    """Where a command's model comes from, and how it is compressed.

    Members
    -------
    kind : ``"net"`` (Deep Compression file), ``"network"`` (a name of
        :data:`~squeezefpga.golden.network.NETWORKS` with synthetic pruned weights) or
        ``"onnx"``.
    value : the file's path, or the network's name.
    density : prune each conv to this fraction of its weights first (None: keep them; a
        ``.net`` file is pruned already, a synthetic network is pruned to
        :data:`~squeezefpga.golden.synthetic.DEFAULT_DENSITY`).
    preprocess : the ONNX model's input normalisation (see :mod:`~squeezefpga.golden.onnx_import`).
    """
    kind: str = "net"
    value: str = str(DEFAULT_MODEL)
    density: float = None
    preprocess: str = "torchvision"

    @property
    def label(self):
        return self.value if self.kind != "network" else f"network {self.value}"

    @property
    def stem(self):
        return (Path(self.value).stem if self.kind != "network" else
                f"squeezenet_{self.value}")

    @classmethod
    def of(cls, source):
        """``source`` itself, or the Deep Compression ``.net`` file at that path."""
        return source if isinstance(source, cls) else cls("net", str(source))

    def float_model(self):
        """The float model as given (before the pruning of ``density``)."""
        if self.kind == "network":
            return synthetic_model(named_network(self.value), DEFAULT_SEED, DEFAULT_DENSITY)
        if self.kind == "onnx":
            return load_onnx(self.value, self.preprocess)
        return load_compressed(self.value)

    def key(self):
        """Bytes that identify the float model and its compression."""
        what = (f"{self.kind}:{self.density}:{self.preprocess}:{DEFAULT_SEED}:"
                f"{DEFAULT_DENSITY}").encode()
        return what + (self.value.encode() if self.kind == "network" else
                       Path(self.value).read_bytes())


def calibration_pictures(folder=None):
    """The calibration pictures: every picture file in ``folder`` (sorted), or
    :data:`CALIBRATION`; a one-line error if the folder has none."""
    if folder is None:
        return list(CALIBRATION)
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFormatError(f"{folder}: calibration folder not found")
    pictures = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not pictures:
        raise ModelFormatError(f"{folder}: no calibration pictures ({', '.join(IMAGE_SUFFIXES)})")
    return pictures


def compile_source(source, calibration=CALIBRATION, progress=None):
    """Compile ``source`` (a :class:`Source`) calibrated on the pictures ``calibration``.

    Returns (Compiled, reference float model, calibration images): what the compression is
    measured against (:meth:`~squeezefpga.golden.compiler.Compiled.fidelity`).
    """
    reference = source.float_model()
    model = prune(reference, source.density) if source.density is not None else reference
    size = reference.network.input_shape[1]
    images = [load_image(p, size) for p in calibration]
    return compile_model(model, images, progress), reference, images


def cache_dir():
    return Path(os.environ.get("SQUEEZEFPGA_CACHE") or
                Path.home() / ".cache" / "squeezefpga")


def _key(source, calibration_paths):
    digest = hashlib.sha256(source_digest([COMPILER_ROOT]).encode())
    digest.update(source.key())
    for path in calibration_paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:32]


def _cached(path):
    try:
        return Model.decode(path.read_bytes(), str(path))  # a damaged entry is recompiled
    except (OSError, BlobFormatError):
        return None


def load_model(source=DEFAULT_MODEL, blob_path=None, use_cache=True, progress=None,
               calibration=CALIBRATION):
    """The compiled model the commands run.

    Parameters
    ----------
    source : Source or path
        What to compile (a path is a Deep Compression ``.net`` file).
    blob_path : path or None
        A compiled blob to use instead (then ``source`` is not read).
    use_cache : bool
        Reuse (and store) the compiled blob in :func:`cache_dir`.
    progress : callable or None
        Receives the compiler's :class:`squeezefpga.progress.Event` objects.
    calibration : list of paths
        The calibration pictures.

    Returns
    -------
    Model
    """
    if blob_path is not None:
        return Model.read(blob_path)
    source = Source.of(source)
    try:
        path = cache_dir() / f"{_key(source, calibration)}.sqzf" if use_cache else None
    except OSError:                    # unreadable input: let the compiler name the problem
        path = None
    model = _cached(path) if path is not None else None
    if model is not None:
        return model
    model = compile_source(source, calibration, progress)[0].model
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(model.blob)
            tmp.replace(path)          # atomic: parallel runs never see half a file
        except OSError:
            pass
    return model
