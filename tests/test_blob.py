import struct

import numpy as np
import pytest

from squeezefpga.errors import BlobFormatError
from squeezefpga.blob_format import ENC_DENSE, ENC_SPARSE, HEADER, VERSION
from squeezefpga.golden.blob import (ConvWeights, blob_crc, decode_program, decode_weights,
                                     encode_program, encode_weights, pack_bits, sparse_entries,
                                     unpack_bits)
from squeezefpga.golden.polyphase import phase_split_weights


def test_real_model_size_under_half_a_megabyte(compiled):
    assert len(compiled.blob) < 500_000


def test_header_layout(compiled):
    assert (HEADER.size, VERSION) == (40, 3)
    fields = HEADER.unpack_from(compiled.blob)
    assert fields[:9] == (b"SQZF", 3, len(compiled.program.descriptors), 3, 227, 227, 1000, 2, 0)
    assert fields[9:12] == (compiled.program.activation_bytes, 0, compiled.program.output_addr)
    assert fields[12] == len(compiled.blob) and len(compiled.blob) % 4 == 0
    assert fields[13] == blob_crc(compiled.blob) == compiled.model.crc


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
    struct.pack_into("<I", blob, HEADER.size - 4, blob_crc(blob))
    return bytes(blob)


def test_corrupt_blobs_give_clear_errors(compiled):
    blob = compiled.blob
    with pytest.raises(BlobFormatError, match="bad magic"):
        decode_program(b"XXXX" + blob[4:])
    with pytest.raises(BlobFormatError, match="version 9"):
        decode_program(blob[:4] + struct.pack("<H", 9) + blob[6:])
    with pytest.raises(BlobFormatError, match="format version 1, this tool reads 3"):
        decode_program(blob[:4] + struct.pack("<H", 1) + blob[6:36])   # a short v1 blob
    with pytest.raises(BlobFormatError, match="format version 2, this tool reads 3"):
        decode_program(blob[:4] + struct.pack("<H", 2) + blob[6:])
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
        decode_program(reseal(blob))


@pytest.mark.parametrize("offset", [8, 10, 12, 14, 16, 20, 24, 28, 29, 30])
def test_every_header_byte_is_covered_by_the_crc(compiled, offset):
    """A changed input shape or address used to give a traceback or wrong logits."""
    blob = bytearray(compiled.blob)
    blob[offset] ^= 1
    with pytest.raises(BlobFormatError, match="CRC-32 mismatch"):
        decode_program(bytes(blob))


def test_input_region_is_the_split_shape(compiled):
    """An input that fits as a raw image but not as its 12x114x114 phases is rejected."""
    blob = bytearray(compiled.blob)
    struct.pack_into("<I", blob, 24, compiled.program.activation_bytes - 3 * 227 * 227)
    with pytest.raises(BlobFormatError, match="input or output address lies outside"):
        decode_program(reseal(blob))
    struct.pack_into("<H", blob, 16, 1)
    with pytest.raises(BlobFormatError, match="descriptor 0 .conv1.: reads bytes .* that no "
                                              "earlier step and not the input wrote"):
        decode_program(reseal(blob))


@pytest.mark.parametrize("offset, fmt, value, message", [
    (10, "<H", 225, r"descriptor 0 \(conv1\): its input \(12, 114, 114\) at 0 does not match "
                    r"what the stored input wrote there \(planes of 12882 bytes from 0, read as "
                    r"114x114 planes from 0\)"),
    (24, "<I", 64, r"descriptor 0 \(conv1\): its input .* at 0 does not match what the stored "
                   r"input wrote there \(planes of 12996 bytes from 64"),
    (28, "<I", 4, r"the header's output \(1000 sums at 4\) is not what the last global sum "
                  r"writes \(1000 sums at \d+\)"),
    (14, "<H", 999, r"the header's output \(999 sums"),
])
def test_a_resealed_header_that_lies_is_caught(compiled, offset, fmt, value, message):
    """Header fields are checked against the program, not only by the CRC."""
    blob = bytearray(compiled.blob)
    struct.pack_into(fmt, blob, offset, value)
    with pytest.raises(BlobFormatError, match=message):
        decode_program(reseal(blob))


def test_steps_must_chain(compiled):
    at = HEADER.size + 40 * 2                          # descriptor 2: fire2/squeeze1x1
    src, = struct.unpack_from("<I", compiled.blob, at + 16)
    for field, value, message in [
            (20, src, r"descriptor 2 \(fire2/squeeze1x1\): its output .* overlaps its input"),
            (16, src - 1, r"descriptor 2 \(fire2/squeeze1x1\): its input \(96, 55, 55\) at "
                          rf"{src - 1} does not match what .* wrote there"),
    ]:
        blob = bytearray(compiled.blob)
        struct.pack_into("<I", blob, at + field, value)
        with pytest.raises(BlobFormatError, match=message):
            decode_program(reseal(blob))
