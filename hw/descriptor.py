"""The layer descriptor as the hardware sees it: a ``lib.data`` layout over the 40 bytes of
:data:`squeezefpga.blob_format.DESCRIPTOR` (little-endian words, first field lowest)."""

from amaranth.lib import data

from squeezefpga.blob_format import DESCRIPTOR

__all__ = ["DescriptorLayout", "DESCRIPTOR_FIELDS"]

#: Field names and widths in bits, in the order of the blob's descriptor struct.
DESCRIPTOR_FIELDS = (
    ("op", 8), ("kernel", 8), ("stride", 8), ("pad", 8),
    ("in_c", 16), ("in_h", 16), ("in_w", 16),
    ("out_c", 16), ("out_h", 16), ("out_w", 16),
    ("src", 32), ("dst", 32), ("weights", 32), ("count", 32),
    ("multiplier", 16), ("shift", 8), ("n_codes", 8), ("encoding", 8),
    ("reserved0", 8), ("reserved1", 16),
)

#: A descriptor read from the weight buffer, word 0 in the low bits.
DescriptorLayout = data.StructLayout(dict(DESCRIPTOR_FIELDS))

assert DescriptorLayout.size == 8 * DESCRIPTOR.size
