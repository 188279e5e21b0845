import struct

import numpy as np
import pytest

from squeezefpga.errors import ModelFormatError
from squeezefpga.golden.importer import load_compressed, parse_compressed
from squeezefpga.golden.network import squeezenet_v1_0


def test_model_facts(float_model):
    assert len(float_model.weights) == 26
    assert float_model.parameter_count == 1_248_424
    assert float_model.stored_entries == 422_083
    assert sum(s.nonzero for s in float_model.stats.values()) == 415_921


def reference_decode(data, layer_index):
    """Straight-line decoding of one layer, entry by entry, written from the format notes."""
    convs = squeezenet_v1_0().convs
    counts = struct.unpack_from("<26I", data)
    offset = 104
    for conv, count in zip(convs, counts):
        codebook = struct.unpack_from("<256f", data, offset)
        offset += 1024
        bias = struct.unpack_from(f"<{conv.out_ch}f", data, offset)
        offset += 4 * conv.out_ch
        codes = data[offset: offset + count]
        offset += count
        gaps = data[offset: offset + (count + 1) // 2]
        offset += (count + 1) // 2
        if conv is convs[layer_index]:
            flat = [0.0] * int(np.prod(conv.weight_shape))
            position = -1
            for i in range(count):
                gap = (gaps[i // 2] >> (4 * (i % 2))) & 15
                position += gap + 1
                flat[position] = codebook[codes[i]]
            return np.array(flat, np.float32).reshape(conv.weight_shape), np.array(bias, np.float32)


@pytest.mark.parametrize("index", [0, 4, 25])
def test_weights_match_reference_decoding(model_bytes, float_model, index):
    name = squeezenet_v1_0().convs[index].name
    weights, bias = reference_decode(model_bytes, index)
    np.testing.assert_array_equal(float_model.weights[name], weights)
    np.testing.assert_array_equal(float_model.biases[name], bias)


@pytest.mark.parametrize("cut,where", [(50, "header"), (104 + 10, "conv1: codebook"),
                                       (104 + 1024 + 8, "conv1: bias"),
                                       (675_763 - 1, "conv10: gaps")])
def test_truncated_file_names_layer_and_offset(model_bytes, cut, where):
    layer, what = where.split(": ") if ": " in where else ("conv1", where)
    with pytest.raises(ModelFormatError, match=f"truncated in layer {layer}") as info:
        parse_compressed(model_bytes[:cut])
    assert what in str(info.value) and "byte offset" in str(info.value)


def test_trailing_bytes(model_bytes):
    with pytest.raises(ModelFormatError, match=r"3 unexpected bytes .* byte offset 675763"):
        parse_compressed(model_bytes + b"abc")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_codebook(model_bytes, value):
    data = bytearray(model_bytes)
    struct.pack_into("<f", data, 104 + 4 * 7, value)        # conv1 codebook entry 7
    with pytest.raises(ModelFormatError, match=r"layer conv1: non-finite codebook value .* "
                                               r"\(entry 7\) at byte offset 132"):
        parse_compressed(bytes(data))


def test_count_larger_than_tensor(model_bytes):
    data = bytearray(model_bytes)
    struct.pack_into("<I", data, 4, 10 ** 6)                 # fire2/squeeze1x1 count
    with pytest.raises(ModelFormatError, match="fire2/squeeze1x1: entry count 1000000"):
        parse_compressed(bytes(data))


def test_positions_overrunning_tensor(model_bytes):
    data = bytearray(model_bytes)
    # Every gap of conv1 set to 15: the entries walk far past the 14,112 weights.
    gaps_at = 104 + 1024 + 4 * 96 + 14_112
    data[gaps_at: gaps_at + 7_056] = b"\xff" * 7_056
    with pytest.raises(ModelFormatError, match=r"layer conv1: entry \d+ lands at position "
                                               r"\d+, outside the 14112 weights"):
        parse_compressed(bytes(data))


def test_missing_empty_and_directory(tmp_path):
    with pytest.raises(ModelFormatError, match="no such model file"):
        load_compressed(tmp_path / "nope.net")
    (tmp_path / "empty.net").write_bytes(b"")
    with pytest.raises(ModelFormatError, match="empty"):
        load_compressed(tmp_path / "empty.net")
    with pytest.raises(ModelFormatError, match="directory"):
        load_compressed(tmp_path)


def test_implausible_values_are_rejected(model_bytes):
    """A codebook value of 1e30 used to give scores of 1.4e31 and exit 0."""
    data = bytearray(model_bytes)
    struct.pack_into("<f", data, 104 + 4 * 9, 1e30)         # conv1 codebook entry 9
    with pytest.raises(ModelFormatError, match=r"layer conv1: implausible codebook value 1e\+30 "
                                               r"\(entry 9\) at byte offset 140 \(magnitude "
                                               r"above 1000\)"):
        parse_compressed(bytes(data))
    data = bytearray(model_bytes)
    struct.pack_into("<f", data, 104 + 1024 + 4 * 3, -5e7)  # conv1 bias 3
    with pytest.raises(ModelFormatError, match=r"layer conv1: implausible bias value -5e\+07"):
        parse_compressed(bytes(data))


def test_bytes_xored_in_the_middle_are_caught(model_bytes):
    """400 bytes XOR-ed in the middle used to change the top-1 silently; wherever such damage
    lands (codes, gaps, codebooks) the file is rejected."""
    rng = np.random.default_rng(0)
    for start in [len(model_bytes) // 2, 150_000, 420_000, 600_000]:
        data = bytearray(model_bytes)
        mask = rng.integers(1, 256, 400, dtype=np.uint8)
        data[start: start + 400] = (np.frombuffer(data[start: start + 400], np.uint8)
                                    ^ mask).tobytes()
        with pytest.raises(ModelFormatError, match="corrupt|outside the .* weights"):
            parse_compressed(bytes(data))


def test_a_filler_must_bridge_fifteen_zeros(model_bytes):
    """Fillers (code 0) exist only to bridge gaps of 15; one with another gap is damage."""
    counts = struct.unpack_from("<26I", model_bytes)
    convs = squeezenet_v1_0().convs
    offset = 104
    for conv, count in zip(convs, counts):
        offset += 1024 + 4 * conv.out_ch
        codes_at, gaps_at = offset, offset + count
        offset += count + (count + 1) // 2
        if conv.name == "fire2/expand3x3":
            break
    codes = np.frombuffer(model_bytes, np.uint8, count, codes_at)
    i = int(np.flatnonzero(codes == 0)[0])
    data = bytearray(model_bytes)
    data[gaps_at + i // 2] &= 0xF0 if i % 2 == 0 else 0x0F      # its gap becomes 0
    with pytest.raises(ModelFormatError, match=rf"layer fire2/expand3x3: entry {i} is a filler "
                                               r"\(code 0\) with gap 0, not 15"):
        parse_compressed(bytes(data))


def test_the_published_model_passes_its_own_check(model_bytes, float_model):
    assert parse_compressed(model_bytes).stored_entries == float_model.stored_entries
