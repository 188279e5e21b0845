"""The layer descriptor as the hardware sees it: a ``lib.data`` layout over the 40 bytes of
:data:`squeezefpga.blob_format.DESCRIPTOR` (little-endian words, first field lowest), and
the tiled program's transfer (:data:`squeezefpga.blob_format.DMA_DESCRIPTOR`) over the same
bytes."""

from amaranth.lib import data

from squeezefpga.blob_format import DESCRIPTOR, DMA_DESCRIPTOR

__all__ = ["DescriptorLayout", "DESCRIPTOR_FIELDS", "DmaLayout", "DMA_FIELDS"]

#: Field names and widths in bits, in the order of the blob's descriptor struct.
DESCRIPTOR_FIELDS = (
    ("op", 8), ("kernel", 8), ("stride", 8), ("pad", 8),
    ("in_c", 16), ("in_h", 16), ("in_w", 16),
    ("out_c", 16), ("out_h", 16), ("out_w", 16),
    ("src", 32), ("dst", 32), ("weights", 32), ("count", 32),
    ("multiplier", 16), ("shift", 8), ("n_codes", 8), ("encoding", 8),
    ("row0", 8), ("wait", 16),
)

#: A transfer of the tiled program (op ``OP_DMA``) over the same 40 bytes.
DMA_FIELDS = (
    ("op", 8), ("kind", 8), ("reserved", 16),
    ("sdram", 32), ("local", 32), ("length", 32), ("count", 32),
    ("sdram_stride", 32), ("local_stride", 32), ("unused", 96),
)

#: A descriptor read from the weight buffer, word 0 in the low bits.
DescriptorLayout = data.StructLayout(dict(DESCRIPTOR_FIELDS))
#: The same bits read as a transfer.
DmaLayout = data.StructLayout(dict(DMA_FIELDS))

assert DescriptorLayout.size == DmaLayout.size == 8 * DESCRIPTOR.size == 8 * DMA_DESCRIPTOR.size
