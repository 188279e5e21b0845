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
