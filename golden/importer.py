"""Reader for Deep Compression's ``.net`` files (the compressed SqueezeNet v1.0).

Layout (little-endian): one uint32 entry count per conv layer, then per layer a 256 x float32
codebook, ``out_channels`` x float32 biases, ``count`` x uint8 codes and ``ceil(count / 2)``
bytes of 4-bit gaps (low nibble first). Entry i lands at flat position
``sum_{j<=i}(gap_j + 1) - 1`` of the (out, in, ky, kx) weight tensor. Everything read is
validated; every error names the layer and the byte offset.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from squeezefpga.errors import ModelFormatError

from .network import squeezenet_v1_0

__all__ = ["FloatModel", "LayerStats", "load_compressed", "parse_compressed"]

CODEBOOK_SIZE = 256


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
        for what, values, base in (("codebook", codebook, start),
                                   ("bias", bias, start + 4 * CODEBOOK_SIZE)):
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise ModelFormatError(
                    f"{source}: layer {name}: non-finite {what} value {values[bad[0]]} "
                    f"(entry {bad[0]}) at byte offset {base + 4 * bad[0]}")
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
    return FloatModel(network, weights, biases, stats)
