"""The compiled blob: layer program + compressed weights, byte for byte as the hardware reads it.

``encode_program`` and ``decode_program`` are exact inverses; docs/FORMATS.md is the prose
version of this module and :mod:`squeezefpga.blob_format` holds the layout's constants. All
multi-byte fields are little-endian. A :class:`Model` is a blob with its decoded program:
decode once, then pass the model along.
"""

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from squeezefpga.blob_format import (ALIGN, CODE_BITS, DESCRIPTOR, ENC_DENSE, ENC_NONE,
                                     ENC_SPARSE, HEADER, HEADER_CRC_OFFSET, MAGIC, MAX_CODES,
                                     MAX_INPUT_PHASE, MAX_RUN, MAX_SHIFT, MULTIPLIER_BITS,
                                     OP_CONV, OP_GLOBAL_SUM, OP_MAXPOOL, OP_NAMES, RUN_BITS,
                                     VERSION)
from squeezefpga.config import check_program
from squeezefpga.errors import BlobFormatError

from .network import out_size
from .polyphase import phase_shape

__all__ = ["ConvWeights", "Descriptor", "Program", "Model", "encode_program", "decode_program",
           "encode_weights", "decode_weights", "pack_bits", "unpack_bits", "sparse_entries",
           "weights_end", "weight_sections", "blob_crc", "check_dataflow"]


@dataclass
class ConvWeights:
    """Weights of one conv layer: codebook (int8, entry 0 = 0), per-weight codes (uint8,
    shape (O, C, k, k)) and int32 biases."""
    codebook: np.ndarray
    codes: np.ndarray
    bias: np.ndarray

    def __eq__(self, other):
        return (isinstance(other, ConvWeights) and np.array_equal(self.codebook, other.codebook)
                and np.array_equal(self.codes, other.codes)
                and np.array_equal(self.bias, other.bias))


@dataclass(eq=True)
class Descriptor:
    """One step of the layer program.

    Tensors are uint8 (C, H, W) planes in activation memory at byte addresses ``src`` and
    ``dst``; a global sum writes ``out_c`` little-endian int32 values at ``dst``.
    """
    name: str
    op: int
    in_shape: tuple
    out_shape: tuple
    src: int
    dst: int
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    multiplier: int = 0
    shift: int = 0
    weights: ConvWeights = None

    @property
    def out_bytes(self):
        c, h, w = self.out_shape
        return c * h * w * (4 if self.op == OP_GLOBAL_SUM else 1)

    @property
    def in_bytes(self):
        return int(np.prod(self.in_shape))


@dataclass(eq=True)
class Program:
    """A whole compiled network: input/output locations and the layer program.

    ``input_shape`` is the image's (C, H, W). With ``input_phase`` s > 1 the host stores
    ``polyphase.phase_split(image, s)``, of shape :attr:`stored_input_shape`, at
    ``input_addr``.
    """
    input_shape: tuple
    classes: int
    activation_bytes: int
    input_addr: int
    output_addr: int
    descriptors: list = field(default_factory=list)
    input_phase: int = 1

    @property
    def stored_input_shape(self):
        """Shape of the uint8 tensor at ``input_addr``: the image, or its s*s phases."""
        return phase_shape(self.input_shape, self.input_phase)

    @property
    def convs(self):
        return [d for d in self.descriptors if d.op == OP_CONV]


def pack_bits(values, width):
    """Pack unsigned ``values`` of ``width`` bits each, LSB first, into bytes."""
    values = np.asarray(values, np.uint32)
    bits = ((values[:, None] >> np.arange(width, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(bits.ravel(), bitorder="little").tobytes()


def unpack_bits(data, width, count):
    """Inverse of :func:`pack_bits`."""
    bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")[: count * width]
    return (bits.reshape(count, width).astype(np.uint32) << np.arange(width, dtype=np.uint32)
            ).sum(axis=1, dtype=np.uint32)


def sparse_entries(codes):
    """(zero-run, code) entries of a flat code array; runs over 15 are bridged by fillers
    (run 15, code 0). Zeros after the last non-zero need no entries."""
    flat = codes.ravel()
    positions = np.flatnonzero(flat)
    gaps = np.diff(positions, prepend=-1) - 1
    fillers = gaps // (MAX_RUN + 1)
    runs = np.full(int(fillers.sum()) + positions.size, MAX_RUN, np.uint32)
    values = np.zeros(runs.size, np.uint32)
    ends = np.cumsum(fillers + 1) - 1           # index of each real entry
    runs[ends] = gaps - fillers * (MAX_RUN + 1)
    values[ends] = flat[positions]
    return runs, values


def encode_weights(weights):
    """Return (encoding, entry count, section bytes) for one conv layer's weights.

    The section is: biases (int32 x out_c), codebook (int8 x n_codes), then either dense 6-bit
    codes for every weight or 10-bit entries (4-bit zero-run low, 6-bit code high), whichever
    is smaller; padded with zeros to a multiple of 4 bytes.
    """
    codes = weights.codes
    runs, values = sparse_entries(codes)
    dense = pack_bits(codes.ravel(), CODE_BITS)
    sparse = pack_bits(runs | (values << RUN_BITS), RUN_BITS + CODE_BITS)
    if len(sparse) < len(dense):
        encoding, count, payload = ENC_SPARSE, runs.size, sparse
    else:
        encoding, count, payload = ENC_DENSE, codes.size, dense
    section = (weights.bias.astype("<i4").tobytes() + weights.codebook.astype(np.int8).tobytes()
               + payload)
    return encoding, count, section + bytes(-len(section) % ALIGN)


def _fail(message, offset):
    raise BlobFormatError(f"{message} (byte offset {offset})")


def _entry_width(encoding):
    return CODE_BITS if encoding == ENC_DENSE else RUN_BITS + CODE_BITS


def weights_end(offset, encoding, count, n_codes, out_c):
    """End of a weight section's content (before its padding to 4 bytes)."""
    return offset + 4 * out_c + n_codes + (count * _entry_width(encoding) + 7) // 8


def decode_weights(blob, offset, encoding, count, n_codes, shape, name):
    """Inverse of :func:`encode_weights`; validates codes and positions."""
    out_c = shape[0]
    size = int(np.prod(shape))
    bias_end = offset + 4 * out_c
    book_end = bias_end + n_codes
    width = _entry_width(encoding)
    end = weights_end(offset, encoding, count, n_codes, out_c)
    if end > len(blob):
        _fail(f"{name}: weight section needs bytes up to {end}, blob has {len(blob)}", offset)
    bias = np.frombuffer(blob, "<i4", out_c, offset).astype(np.int32)
    codebook = np.frombuffer(blob, np.int8, n_codes, bias_end).copy()
    if codebook[0] != 0:
        _fail(f"{name}: codebook entry 0 is {codebook[0]}, must be 0", bias_end)
    raw = unpack_bits(blob[book_end:end], width, count)
    if encoding == ENC_DENSE:
        if count != size:
            _fail(f"{name}: dense layer has {count} codes for {size} weights", offset)
        codes = raw
    else:
        runs, codes_sparse = raw & MAX_RUN, raw >> RUN_BITS
        positions = np.cumsum(runs.astype(np.int64) + 1) - 1
        if count and positions[-1] >= size:
            i = int(np.argmax(positions >= size))
            _fail(f"{name}: sparse entry {i} lands at position {positions[i]}, outside the "
                  f"{size} weights", book_end + i * width // 8)
        codes = np.zeros(size, np.uint32)
        codes[positions] = codes_sparse
    if codes.size and codes.max() >= n_codes:
        i = int(np.argmax(codes >= n_codes))
        _fail(f"{name}: code {codes[i]} at weight {i} exceeds the {n_codes}-entry codebook",
              book_end)
    return ConvWeights(codebook, codes.astype(np.uint8).reshape(shape), bias)


def _names_section(program):
    out = bytearray()
    for d in program.descriptors:
        name = d.name.encode("utf-8")
        if len(name) > 255:
            raise ValueError(f"layer name too long: {d.name!r}")
        out += bytes([len(name)]) + name
    return bytes(out)


def encode_program(program):
    """Serialise a :class:`Program` to the blob the hardware loads."""
    n = len(program.descriptors)
    body = bytearray()
    sections = []
    weights_base = HEADER.size + n * DESCRIPTOR.size
    for d in program.descriptors:
        if d.weights is None:
            sections.append((ENC_NONE, 0, 0, 0))
            continue
        encoding, count, section = encode_weights(d.weights)
        sections.append((encoding, count, weights_base + len(body), d.weights.codebook.size))
        body += section
    names = _names_section(program)
    descs = bytearray()
    for d, (encoding, count, offset, n_codes) in zip(program.descriptors, sections):
        descs += DESCRIPTOR.pack(d.op, d.kernel, d.stride, d.pad, *d.in_shape, *d.out_shape,
                                 d.src, d.dst, offset, count, d.multiplier, d.shift, n_codes,
                                 encoding, 0, 0)
    payload = bytes(descs) + bytes(body) + names
    payload += bytes(-len(payload) % ALIGN)     # the device checks the CRC word by word
    header = HEADER.pack(MAGIC, VERSION, n, *program.input_shape, program.classes,
                         program.input_phase, 0, program.activation_bytes, program.input_addr,
                         program.output_addr, HEADER.size + len(payload), 0)
    blob = header + payload
    return blob[:HEADER_CRC_OFFSET] + struct.pack("<I", blob_crc(blob)) + payload


def blob_crc(blob):
    """The CRC-32 a blob carries: of every byte, the header included, with the CRC field
    itself (header bytes 36..39) taken as zero."""
    crc = zlib.crc32(bytes(4), zlib.crc32(blob[:HEADER_CRC_OFFSET]))
    return zlib.crc32(blob[HEADER_CRC_OFFSET + 4:], crc)


def expected_out_shape(op, in_shape, kernel, stride, pad, out_c):
    """Output shape a descriptor must declare, from its input shape and kernel parameters."""
    c, h, w = in_shape
    if op == OP_CONV:
        return (out_c, out_size(h, kernel, stride, pad), out_size(w, kernel, stride, pad))
    if op == OP_MAXPOOL:
        return (c, out_size(h, kernel, stride, 0, True), out_size(w, kernel, stride, 0, True))
    return (c, 1, 1)


def decode_program(blob, source="blob"):
    """Parse and validate a blob; the inverse of :func:`encode_program`."""
    blob = bytes(blob)
    if len(blob) < HEADER.size:
        if len(blob) >= 6 and blob[:4] == MAGIC:    # e.g. a short blob of another version
            version, = struct.unpack_from("<H", blob, 4)
            if version != VERSION:
                raise BlobFormatError(f"{source}: format version {version}, this tool reads "
                                      f"{VERSION}")
        raise BlobFormatError(f"{source}: {len(blob)} bytes is shorter than the "
                              f"{HEADER.size}-byte header")
    magic, version = struct.unpack_from("<4sH", blob)
    if magic != MAGIC:
        raise BlobFormatError(f"{source}: bad magic {magic!r}, expected {MAGIC!r} "
                              "(not a squeezefpga blob)")
    if version != VERSION:
        raise BlobFormatError(f"{source}: format version {version}, this tool reads {VERSION}")
    (_, _, n, in_c, in_h, in_w, classes, phase, _, act_bytes, in_addr, out_addr, length,
     crc) = HEADER.unpack_from(blob)
    if length != len(blob):
        raise BlobFormatError(f"{source}: header says {length} bytes, blob has {len(blob)} "
                              f"({'truncated' if len(blob) < length else 'trailing bytes'})")
    if blob_crc(blob) != crc:
        raise BlobFormatError(f"{source}: CRC-32 mismatch (header and contents): the blob is "
                              "corrupt")
    if not 1 <= phase <= MAX_INPUT_PHASE:
        _fail(f"{source}: input_phase {phase} outside 1..{MAX_INPUT_PHASE}", 16)
    names_at = HEADER.size + n * DESCRIPTOR.size
    if names_at > len(blob):
        _fail(f"{source}: {n} descriptors do not fit the blob", HEADER.size)
    raw_descs = [DESCRIPTOR.unpack_from(blob, HEADER.size + i * DESCRIPTOR.size)
                 for i in range(n)]
    # The name table follows the last weight section.
    ends = [names_at]
    descriptors = []
    for i, r in enumerate(raw_descs):
        (op, kernel, stride, pad, ic, ih, iw, oc, oh, ow, src, dst, w_off, count, mult, shift,
         n_codes, encoding, _, _) = r
        at = HEADER.size + i * DESCRIPTOR.size
        where = f"{source}: descriptor {i}"
        if op not in OP_NAMES:
            _fail(f"{where}: unknown operation {op}", at)
        in_shape, out_shape = (ic, ih, iw), (oc, oh, ow)
        if op != OP_GLOBAL_SUM and (stride == 0 or kernel == 0):
            _fail(f"{where}: kernel {kernel} / stride {stride} must be non-zero", at)
        try:
            expected = expected_out_shape(op, in_shape, kernel, stride, pad, oc)
        except ValueError as exc:
            _fail(f"{where}: {exc}", at)
        if out_shape != expected or min(in_shape) == 0:
            _fail(f"{where}: {OP_NAMES[op]} of {in_shape} with kernel {kernel}, stride "
                  f"{stride}, pad {pad} cannot give {out_shape}", at)
        weights = None
        if op == OP_CONV:
            if encoding not in (ENC_DENSE, ENC_SPARSE) or not 1 <= n_codes <= MAX_CODES:
                _fail(f"{where}: bad weight encoding {encoding} / codebook size {n_codes}", at)
            if (not 1 <= shift <= MAX_SHIFT
                    or not 2 ** (MULTIPLIER_BITS - 1) <= mult < 2 ** MULTIPLIER_BITS):
                _fail(f"{where}: requantisation multiplier {mult} / shift {shift} outside "
                      f"[2**{MULTIPLIER_BITS - 1}, 2**{MULTIPLIER_BITS}) / 1..{MAX_SHIFT}", at)
            weights = decode_weights(blob, w_off, encoding, count, n_codes,
                                     (oc, ic, kernel, kernel), f"{where}")
            end = weights_end(w_off, encoding, count, n_codes, oc)
            ends.append(end + (-end % ALIGN))
        d = Descriptor("", op, in_shape, out_shape, src, dst, kernel, stride, pad, mult, shift,
                       weights)
        if max(d.src + d.in_bytes, d.dst + d.out_bytes) > act_bytes:
            _fail(f"{where}: a tensor lies outside the {act_bytes}-byte activation memory", at)
        descriptors.append(d)
    stored = int(np.prod(phase_shape((in_c, in_h, in_w), phase)))
    if in_addr + stored > act_bytes or out_addr + 4 * classes > act_bytes:
        _fail(f"{source}: input or output address lies outside the {act_bytes}-byte activation "
              "memory", 0)
    at = max(ends)
    names = []
    for i in range(n):
        if at >= len(blob) or at + 1 + blob[at] > len(blob):
            _fail(f"{source}: name table truncated at layer {i}", at)
        names.append(blob[at + 1: at + 1 + blob[at]].decode("utf-8", "replace"))
        at += 1 + blob[at]
    padding = blob[at:]
    if len(padding) != -at % ALIGN or any(padding):
        _fail(f"{source}: {len(blob) - at} unexpected bytes after the name table (it is "
              f"padded to a multiple of {ALIGN} bytes with zeros)", at)
    for d, name in zip(descriptors, names):
        d.name = name
    program = Program((in_c, in_h, in_w), classes, act_bytes, in_addr, out_addr, descriptors,
                      phase)
    check_dataflow(program, source)
    return program


def _overlap(a0, a1, b0, b1):
    return a0 < b1 and b0 < a1


def check_dataflow(program, source="blob"):
    """Check that the program's tensors chain from step to step.

    Every step reads only bytes that the stored input or an earlier step wrote, in whole
    channel planes of its own height and width (a concatenation is several writers side by
    side); no step writes over its own input; the results at ``output_addr`` are the
    ``classes`` sums of the last global sum, if the program has one (else bytes it wrote).

    Raises
    ------
    BlobFormatError
        Naming the step (descriptor index and name) and the fields that disagree.
    """
    # Who wrote each region last: (start, end, plane bytes, what); later writers win.
    c, h, w = program.stored_input_shape
    writers = [(program.input_addr, program.input_addr + c * h * w, h * w, "the stored input")]

    def covering(start, end):
        """The writers' pieces that hold [start, end), newest first; gaps are reported."""
        pieces, todo = [], [(start, end)] if start < end else []
        for w0, w1, plane, what in reversed(writers):
            rest = []
            for t0, t1 in todo:
                if _overlap(t0, t1, w0, w1):
                    pieces.append((max(t0, w0), min(t1, w1), w0, plane, what))
                    rest += [(t0, max(t0, w0))] if t0 < w0 else []
                    rest += [(min(t1, w1), t1)] if w1 < t1 else []
                else:
                    rest.append((t0, t1))
            todo = rest
        return pieces, todo

    for i, d in enumerate(program.descriptors):
        where = f"{source}: descriptor {i} ({d.name or OP_NAMES[d.op]})"
        src_end, dst_end = d.src + d.in_bytes, d.dst + d.out_bytes
        if _overlap(d.src, src_end, d.dst, dst_end):
            raise BlobFormatError(f"{where}: its output [{d.dst}, {dst_end}) overlaps its input "
                                  f"[{d.src}, {src_end})")
        _, ih, iw = d.in_shape
        pieces, gaps = covering(d.src, src_end)
        for p0, p1, w0, plane, what in pieces:
            if plane != ih * iw or (p0 - d.src) % plane or (p1 - p0) % plane \
                    or (p0 - w0) % plane:
                raise BlobFormatError(
                    f"{where}: its input {d.in_shape} at {d.src} does not match what {what} "
                    f"wrote there (planes of {plane} bytes from {w0}, read as {ih}x{iw} "
                    f"planes from {d.src})")
        if gaps:
            raise BlobFormatError(f"{where}: reads bytes [{gaps[0][0]}, {gaps[0][1]}) that no "
                                  "earlier step and not the input wrote")
        plane = 4 if d.op == OP_GLOBAL_SUM else d.out_shape[1] * d.out_shape[2]
        writers.append((d.dst, dst_end, plane, f"descriptor {i} ({d.name})"))
    sums = [d for d in program.descriptors if d.op == OP_GLOBAL_SUM]
    out_end = program.output_addr + 4 * program.classes
    if sums:
        last = sums[-1]
        if (program.output_addr, program.classes) != (last.dst, last.out_shape[0]):
            raise BlobFormatError(
                f"{source}: the header's output ({program.classes} sums at "
                f"{program.output_addr}) is not what the last global sum writes "
                f"({last.out_shape[0]} sums at {last.dst})")
    elif covering(program.output_addr, out_end)[1]:
        raise BlobFormatError(f"{source}: the output at {program.output_addr} is never written")


def weight_sections(model):
    """Split a model's blob into the pieces a loader reports progress by.

    Returns
    -------
    list of (name, start, end): ``"program"`` (header and descriptors), each conv layer's
    weight section under the layer's name, ``"padding"`` between sections if any, then
    ``"names"`` (the name table).
    """
    blob = model.blob
    cuts = []
    for i, d in enumerate(model.program.descriptors):
        raw = DESCRIPTOR.unpack_from(blob, HEADER.size + i * DESCRIPTOR.size)
        offset, count, n_codes, encoding = raw[12], raw[13], raw[16], raw[17]
        if encoding != ENC_NONE:
            end = weights_end(offset, encoding, count, n_codes, d.out_shape[0])
            cuts.append((offset, d.name, end + (-end % ALIGN)))
    sections, at = [], 0
    for offset, name, end in sorted(cuts):
        if offset > at:
            sections.append(("program" if not sections else "padding", at, offset))
        sections.append((name, offset, end))
        at = end
    if at < len(blob):
        sections.append(("names", at, len(blob)))
    return sections


@dataclass(eq=False)
class Model:
    """A compiled model: the blob, byte for byte as the hardware loads it, and its program.

    Build one with :meth:`decode` (or :meth:`read`), which validates the blob once; everything
    downstream takes the model and never decodes the bytes again.

    Members
    -------
    blob : bytes
    program : Program
    source : str
        Where the blob came from (used in messages).
    """
    blob: bytes
    program: Program
    source: str = "blob"
    _fits: set = field(default_factory=set, repr=False)

    @classmethod
    def decode(cls, blob, source="blob"):
        """Validate ``blob`` and return it with its decoded program.

        Raises
        ------
        BlobFormatError
            Naming the field and byte offset of the first problem.
        """
        blob = bytes(blob)
        return cls(blob, decode_program(blob, source), source)

    @classmethod
    def read(cls, path):
        """:meth:`decode` the blob file at ``path``."""
        try:
            blob = Path(path).read_bytes()
        except OSError as exc:
            raise BlobFormatError(f"{path}: cannot read blob: {exc.strerror}") from None
        return cls.decode(blob, str(path))

    @property
    def crc(self):
        """The blob's CRC-32 (:func:`blob_crc`, also in its header): what a device checks and
        records for the model it holds."""
        return blob_crc(self.blob)

    def check(self, config):
        """Raise :class:`squeezefpga.config.ModelFitError` if the model does not run on an
        accelerator built with ``config``; each configuration is checked once."""
        if config.fit_key not in self._fits:
            check_program(config, self.program, len(self.blob))
            self._fits.add(config.fit_key)
