import struct
import zlib

import numpy as np
import pytest

from squeezefpga.errors import BlobFormatError
from squeezefpga.golden.blob import (ENC_DENSE, ENC_SPARSE, HEADER, VERSION, ConvWeights,
                                     decode_program, decode_weights, encode_program,
                                     encode_weights, pack_bits, sparse_entries, unpack_bits)
from squeezefpga.golden.polyphase import phase_split_weights


def test_real_model_size_under_half_a_megabyte(compiled):
    assert len(compiled.blob) < 500_000


def test_header_layout(compiled):
    assert (HEADER.size, VERSION) == (40, 2)
    fields = HEADER.unpack_from(compiled.blob)
    assert fields[:9] == (b"SQZF", 2, len(compiled.program.descriptors), 3, 227, 227, 1000, 2, 0)
    assert fields[9:12] == (compiled.program.activation_bytes, 0, compiled.program.output_addr)
    assert fields[12] == len(compiled.blob)


def test_round_trip_is_exact(compiled):
    decoded = decode_program(compiled.blob)
    assert decoded == compiled.program
    assert encode_program(decoded) == compiled.blob
    assert decoded.input_shape == (3, 227, 227) and decoded.input_phase == 2
    assert decoded.stored_input_shape == (12, 114, 114)
    for d in decoded.convs:
        q = compiled.qmodel.layers[d.name]
        codes = phase_split_weights(q.codes, 2) if d.name == "conv1" else q.codes
        np.testing.assert_array_equal(d.weights.codes, codes)
        np.testing.assert_array_equal(d.weights.codebook, q.codebook)
        np.testing.assert_array_equal(d.weights.bias, q.bias)
        assert (d.multiplier, d.shift) == (q.multiplier, q.shift)


@pytest.mark.parametrize("width", [1, 6, 10])
def test_bit_packing_round_trip(width, rng):
    values = rng.integers(0, 2 ** width, 37)
    assert np.array_equal(unpack_bits(pack_bits(values, width), width, 37), values)


def test_pack_bits_is_lsb_first():
    assert pack_bits([0b1, 0b10], 2) == bytes([0b1001])


def test_sparse_entries_bridge_long_runs_with_fillers():
    codes = np.zeros(60, np.uint8)
    codes[[0, 17, 50]] = [3, 4, 5]
    runs, values = sparse_entries(codes)
    # gap 16 -> filler (15, 0) + (0, 4); gap 32 -> two fillers + (0, 5)
    assert runs.tolist() == [0, 15, 0, 15, 15, 0]
    assert values.tolist() == [3, 0, 4, 0, 0, 5]


@pytest.mark.parametrize("density", [0.0, 0.05, 0.3, 0.7, 1.0])
def test_weights_round_trip_and_encoding_choice(density, rng):
    shape = (7, 5, 3, 3)
    codes = rng.integers(1, 20, shape).astype(np.uint8)
    codes[rng.random(shape) >= density] = 0
    weights = ConvWeights(np.arange(20, dtype=np.int8), codes,
                          rng.integers(-2 ** 31, 2 ** 31, 7, dtype=np.int64).astype(np.int32))
    encoding, count, section = encode_weights(weights)
    assert len(section) % 4 == 0
    assert encoding == (ENC_SPARSE if density <= 0.3 else ENC_DENSE)
    decoded = decode_weights(section, 0, encoding, count, 20, shape, "test")
    assert decoded == weights


def reseal(blob):
    """Recompute the CRC so a test reaches the check behind it."""
    blob = bytearray(blob)
    struct.pack_into("<I", blob, HEADER.size - 4, zlib.crc32(blob[HEADER.size:]))
    return bytes(blob)


def test_corrupt_blobs_give_clear_errors(compiled):
    blob = compiled.blob
    with pytest.raises(BlobFormatError, match="bad magic"):
        decode_program(b"XXXX" + blob[4:])
    with pytest.raises(BlobFormatError, match="version 9"):
        decode_program(blob[:4] + struct.pack("<H", 9) + blob[6:])
    with pytest.raises(BlobFormatError, match="format version 1, this tool reads 2"):
        decode_program(blob[:4] + struct.pack("<H", 1) + blob[6:36])   # a short v1 blob
    with pytest.raises(BlobFormatError, match="format version 1, this tool reads 2"):
        decode_program(blob[:4] + struct.pack("<H", 1) + blob[6:])
    with pytest.raises(BlobFormatError, match="truncated"):
        decode_program(blob[:-10])
    with pytest.raises(BlobFormatError, match="shorter than"):
        decode_program(blob[:10])
    flipped = bytearray(blob)
    flipped[5000] ^= 1
    with pytest.raises(BlobFormatError, match="CRC-32"):
        decode_program(bytes(flipped))
    bad_op = bytearray(blob)
    bad_op[HEADER.size] = 77
    with pytest.raises(BlobFormatError, match="descriptor 0: unknown operation 77"):
        decode_program(reseal(bad_op))
    bad_shape = bytearray(blob)
    struct.pack_into("<H", bad_shape, HEADER.size + 12, 112)     # conv1 out_h
    with pytest.raises(BlobFormatError, match="descriptor 0: conv .* cannot give"):
        decode_program(reseal(bad_shape))
    zero_stride = bytearray(blob)
    zero_stride[HEADER.size + 2] = 0                              # conv1 stride
    with pytest.raises(BlobFormatError, match="descriptor 0: kernel 4 / stride 0"):
        decode_program(reseal(zero_stride))


@pytest.mark.parametrize("phase", [0, 5])
def test_input_phase_out_of_range(compiled, phase):
    blob = bytearray(compiled.blob)
    struct.pack_into("<H", blob, 16, phase)
    with pytest.raises(BlobFormatError, match=f"input_phase {phase} outside 1..4"):
        decode_program(bytes(blob))


def test_input_region_is_the_split_shape(compiled):
    """An input that fits as a raw image but not as its 12x114x114 phases is rejected."""
    blob = bytearray(compiled.blob)
    struct.pack_into("<I", blob, 24, compiled.program.activation_bytes - 3 * 227 * 227)
    with pytest.raises(BlobFormatError, match="input or output address lies outside"):
        decode_program(bytes(blob))
    struct.pack_into("<H", blob, 16, 1)
    assert decode_program(bytes(blob)).input_phase == 1
