"""Reader for Deep Compression's ``.net`` files (the compressed SqueezeNet v1.0).

Layout (little-endian): one uint32 entry count per conv layer, then per layer a 256 x float32
codebook, ``out_channels`` x float32 biases, ``count`` x uint8 codes and ``ceil(count / 2)``
bytes of 4-bit gaps (low nibble first). Entry i lands at flat position
``sum_{j<=i}(gap_j + 1) - 1`` of the (out, in, ky, kx) weight tensor. Everything read is
validated; every error names the layer and the byte offset:

- sizes, positions and the end of the file;
- values: finite, |codebook| <= :data:`MAX_WEIGHT`, |bias| <= :data:`MAX_BIAS` (far above any
  trained SqueezeNet, far below what overflows float32 in a forward pass);
- fillers: a code-0 entry only ever bridges a gap of 15 (the format's own rule);
- the published model: a file with the published v1.0 model's layer sizes must be that
  model byte for byte (:data:`PUBLISHED_SHA256`). The format has no checksum, so this is how a
  flipped byte in the codes of the one model we know is caught.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from squeezefpga.errors import ModelFormatError

from .network import squeezenet_v1_0

__all__ = ["FloatModel", "LayerStats", "load_compressed", "parse_compressed", "MAX_WEIGHT",
           "MAX_BIAS", "PUBLISHED_SHA256"]

CODEBOOK_SIZE = 256
FILLER_GAP = 15
#: Largest magnitude accepted for a weight (codebook value) and a bias. The real model's are
#: below 1.7 and 4.7.
MAX_WEIGHT = 1e3
MAX_BIAS = 1e6
#: The published Deep Compression SqueezeNet v1.0 (models/compressed_SqueezeNet.net): its
#: entry-count table and SHA-256.
PUBLISHED_COUNTS = (13902, 1528, 1020, 3073, 2038, 1023, 3081, 4085, 4071, 12288, 8160, 4067,
                    12343, 12161, 4602, 27558, 9205, 9132, 27564, 24388, 8190, 44919, 16371,
                    16303, 45038, 105973)
PUBLISHED_SHA256 = "e4ab6960ae8cd81505e1c2136921201507e930966c53deaf15862a395b3a3261"


@dataclass(frozen=True)
class LayerStats:
    """What the file stores for one layer."""
    entries: int   # stored (gap, code) entries, filler entries included
    nonzero: int   # entries whose value is not zero


@dataclass
class FloatModel:
    """Float weights and biases of every conv layer of ``network``, keyed by layer name."""
    network: object
    weights: dict
    biases: dict
    stats: dict

    @property
    def parameter_count(self):
        return sum(w.size + self.biases[n].size for n, w in self.weights.items())

    @property
    def stored_entries(self):
        return sum(s.entries for s in self.stats.values())


def load_compressed(path, network=None):
    """Read a ``.net`` file; see :func:`parse_compressed`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFormatError(f"{path}: no such model file") from None
    except IsADirectoryError:
        raise ModelFormatError(f"{path}: is a directory, not a model file") from None
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot read model file: {exc.strerror}") from None
    return parse_compressed(data, network, source=str(path))


def _take(data, offset, nbytes, what, layer, source):
    end = offset + nbytes
    if end > len(data):
        raise ModelFormatError(
            f"{source}: truncated in layer {layer}: {what} needs {nbytes} bytes at byte offset "
            f"{offset}, but the file ends at byte {len(data)}")
    return data[offset:end], end


def parse_compressed(data, network=None, source="model"):
    """Decode the bytes of a ``.net`` file into a :class:`FloatModel`.

    Parameters
    ----------
    data : bytes
        The whole file.
    network : Network, optional
        The network the file belongs to; SqueezeNet v1.0 by default.
    source : str
        Name used in error messages.
    """
    network = network or squeezenet_v1_0()
    convs = network.convs
    if not data:
        raise ModelFormatError(f"{source}: the file is empty")
    header, offset = _take(data, 0, 4 * len(convs), f"the header of {len(convs)} entry counts",
                           convs[0].name, source)
    counts = np.frombuffer(header, "<u4")
    weights, biases, stats = {}, {}, {}
    for index, (conv, count) in enumerate(zip(convs, counts)):
        name, count, size = conv.name, int(count), int(np.prod(conv.weight_shape))
        if count > size:
            raise ModelFormatError(
                f"{source}: layer {name}: entry count {count} (header byte offset {4 * index}) "
                f"exceeds the {size} weights of its {conv.weight_shape} tensor")
        start = offset
        raw, offset = _take(data, offset, 4 * CODEBOOK_SIZE, "codebook", name, source)
        codebook = np.frombuffer(raw, "<f4")
        raw, offset = _take(data, offset, 4 * conv.out_ch, "bias", name, source)
        bias = np.frombuffer(raw, "<f4")
        for what, values, base, limit in (("codebook", codebook, start, MAX_WEIGHT),
                                          ("bias", bias, start + 4 * CODEBOOK_SIZE, MAX_BIAS)):
            with np.errstate(invalid="ignore"):
                bad = np.flatnonzero(~(np.abs(values) <= limit))
            if bad.size:
                value = values[bad[0]]
                kind = "non-finite" if not np.isfinite(value) else "implausible"
                why = "" if kind == "non-finite" else f" (magnitude above {limit:g})"
                raise ModelFormatError(
                    f"{source}: layer {name}: {kind} {what} value {value:g} (entry {bad[0]}) "
                    f"at byte offset {base + 4 * bad[0]}{why}")
        if codebook[0] != 0.0:
            raise ModelFormatError(
                f"{source}: layer {name}: codebook entry 0 (the filler code) is "
                f"{codebook[0]}, not 0.0, at byte offset {start}")
        codes_at = offset
        raw, offset = _take(data, offset, count, "codes", name, source)
        codes = np.frombuffer(raw, np.uint8)
        gaps_at = offset
        raw, offset = _take(data, offset, (count + 1) // 2, "gaps", name, source)
        packed = np.frombuffer(raw, np.uint8)
        gaps = np.stack([packed & 15, packed >> 4], axis=1).ravel()[:count]
        fillers = np.flatnonzero((codes == 0) & (gaps != FILLER_GAP))
        if fillers.size:
            i = int(fillers[0])
            raise ModelFormatError(
                f"{source}: layer {name}: entry {i} is a filler (code 0) with gap {gaps[i]}, "
                f"not {FILLER_GAP} (gap byte offset {gaps_at + i // 2}, code byte offset "
                f"{codes_at + i}): the file is corrupt")
        positions = np.cumsum(gaps.astype(np.int64) + 1) - 1
        over = np.flatnonzero(positions >= size)
        if over.size:
            i = int(over[0])
            raise ModelFormatError(
                f"{source}: layer {name}: entry {i} lands at position {positions[i]}, outside "
                f"the {size} weights of its {conv.weight_shape} tensor (gap byte offset "
                f"{gaps_at + i // 2}, code byte offset {codes_at + i})")
        flat = np.zeros(size, np.float32)
        flat[positions] = codebook[codes]
        weights[name] = flat.reshape(conv.weight_shape)
        biases[name] = bias.copy()
        stats[name] = LayerStats(entries=count, nonzero=int(np.count_nonzero(flat)))
    if offset != len(data):
        raise ModelFormatError(
            f"{source}: {len(data) - offset} unexpected bytes after the last layer "
            f"({convs[-1].name}) at byte offset {offset}; the file should end there")
    if tuple(int(c) for c in counts) == PUBLISHED_COUNTS:
        digest = hashlib.sha256(data).hexdigest()
        if digest != PUBLISHED_SHA256:
            raise ModelFormatError(
                f"{source}: has the layer sizes of the published Deep Compression SqueezeNet "
                f"v1.0 but not its contents (SHA-256 {digest[:16]}..., expected "
                f"{PUBLISHED_SHA256[:16]}...): the file is corrupt or modified")
    return FloatModel(network, weights, biases, stats)
