"""The compiled blob's layout and limits: the byte contract between the compiler, the host and
the hardware (docs/FORMATS.md describes every field).

Everything here is a constant. ``squeezefpga.golden.blob`` encodes and decodes blobs with
these; the gateware reads descriptors and weight sections laid out by them.
"""

import struct

__all__ = ["MAGIC", "VERSION", "HEADER", "HEADER_LENGTH_OFFSET", "HEADER_CRC_OFFSET", "DESCRIPTOR", "OP_CONV",
           "OP_MAXPOOL", "OP_GLOBAL_SUM", "OP_NAMES", "ENC_NONE", "ENC_DENSE", "ENC_SPARSE",
           "CODE_BITS", "RUN_BITS", "MAX_RUN", "MAX_CODES", "MULTIPLIER_BITS", "MAX_SHIFT",
           "MAX_INPUT_PHASE", "ALIGN", "MAX_BLOB_BYTES", "OP_DMA", "DMA_DESCRIPTOR",
           "FLAG_TILED", "DMA_IN", "DMA_OUT", "DMA_WEIGHTS"]

MAGIC = b"SQZF"
VERSION = 3
#: magic, version, steps, input C/H/W, classes, input phase, reserved, activation bytes,
#: input address, output address, total length, CRC-32 (of the whole blob, this field taken
#: as zero): 40 bytes. The total length is a multiple of ALIGN.
HEADER = struct.Struct("<4sHHHHHHHHIIIII")
HEADER_LENGTH_OFFSET = 32
HEADER_CRC_OFFSET = 36
#: op, kernel, stride, pad, in C/H/W, out C/H/W, src, dst, weights offset, entry count,
#: multiplier, shift, codebook size, encoding, two reserved bytes: 40 bytes.
DESCRIPTOR = struct.Struct("<BBBBHHHHHHIIIIHBBBBH")
OP_CONV, OP_MAXPOOL, OP_GLOBAL_SUM = 1, 2, 3
OP_NAMES = {OP_CONV: "conv", OP_MAXPOOL: "maxpool", OP_GLOBAL_SUM: "global_sum"}

# -- the tiled program of the SDRAM-backed board (docs/FORMATS.md, "The tiled program") -------
#: Header flag (the reserved u16 after the input phase): a tiled program. Its activation
#: bytes, input and output addresses are then SDRAM figures, its steps operations, and its
#: descriptors carry, in the reserved bytes, a u8 (a conv band's first grid row; a max pool
#: with a carried row: 1) and the transfers to wait for (u16); such a max pool's weights
#: offset is the address of its carried row and its entry count that row's channel stride.
FLAG_TILED = 1
#: A transfer: op (OP_DMA), kind, reserved u16, SDRAM byte address, local byte address, run
#: length, run count, SDRAM stride, local stride, 12 reserved bytes: 40 bytes.
OP_DMA = 4
DMA_DESCRIPTOR = struct.Struct("<BBHIIIIII12x")
DMA_IN, DMA_OUT, DMA_WEIGHTS = 0, 1, 2
ENC_NONE, ENC_DENSE, ENC_SPARSE = 0, 1, 2
CODE_BITS, RUN_BITS = 6, 4
MAX_RUN = 2 ** RUN_BITS - 1
MAX_CODES = 2 ** CODE_BITS
MULTIPLIER_BITS = 15    # requantisation multiplier M in [2**14, 2**15)
MAX_SHIFT = 63
MAX_INPUT_PHASE = 4     # input_phase s: the host stores the s*s phases of the image
ALIGN = 4
#: The whole real model must stay under this (the Deep Compression paper's 0.5 MB).
MAX_BLOB_BYTES = 500_000
