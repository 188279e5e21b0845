"""Fuzzing the three readers of user input: the ``.net`` importer, the blob decoder and the
image loader. Every input gives a result or a :class:`SqueezeFPGAError`, never another
exception. Hypothesis runs derandomized, so CI sees the same (bounded) set each time."""

import io
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from squeezefpga.errors import SqueezeFPGAError
from squeezefpga.golden.blob import Model, blob_crc
from squeezefpga.golden.compiler import compile_model
from squeezefpga.golden.image import load_image
from squeezefpga.golden.importer import parse_compressed
from squeezefpga.golden.network import tiny_squeezenet

from .test_network import random_model

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
NETWORK = tiny_squeezenet(size=35)


def encode_net(model, rng):
    """A valid Deep Compression ``.net`` file of ``model`` (256-entry codebooks, 4-bit gaps,
    fillers for longer gaps)."""
    head, body = [], bytearray()
    for conv in model.network.convs:
        codebook = np.concatenate([[0.0], np.linspace(-0.5, 0.5, 255)]).astype("<f4")
        flat = model.weights[conv.name].ravel()
        keep = rng.random(flat.size) < 0.6
        codes = np.where(keep, 1 + np.argmin(np.abs(flat[:, None] - codebook[None, 1:]),
                                             axis=1), 0)
        entries, gaps, gap = [], [], 0
        for code in codes:
            if code == 0:
                gap += 1
                if gap == 16:                       # a filler covers 16 positions
                    entries.append(0)
                    gaps.append(15)
                    gap = 0
                continue
            entries.append(int(code))
            gaps.append(gap)
            gap = 0
        gaps += [0] * (len(gaps) % 2)
        packed = bytes(g0 | (g1 << 4) for g0, g1 in zip(gaps[::2], gaps[1::2]))
        head.append(len(entries))
        body += codebook.tobytes() + model.biases[conv.name].astype("<f4").tobytes()
        body += bytes(entries) + packed
    return struct.pack(f"<{len(head)}I", *head) + bytes(body)


@pytest.fixture(scope="module")
def net_file():
    rng = np.random.default_rng(21)
    data = encode_net(random_model(NETWORK, rng), rng)
    assert parse_compressed(data, NETWORK).network is NETWORK
    return data


@pytest.fixture(scope="module")
def blob():
    rng = np.random.default_rng(22)
    image = rng.integers(0, 256, NETWORK.input_shape, dtype=np.uint8)
    return compile_model(random_model(NETWORK, rng), [image]).blob


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(23)
    out = {}
    for name, fmt in (("png", "PNG"), ("jpeg", "JPEG"), ("gif", "GIF")):
        stream = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(stream, fmt)
        out[name] = stream.getvalue()
    return out


def mutate(data, edits):
    """Apply (kind, position, value) edits: flip a byte, cut, or insert."""
    data = bytearray(data)
    for kind, position, value in edits:
        if not data:
            break
        at = position % len(data)
        if kind == "flip":
            data[at] ^= value or 1
        elif kind == "cut":
            del data[at:]
        else:
            data[at:at] = bytes([value])
    return bytes(data)


EDITS = st.lists(st.tuples(st.sampled_from(["flip", "flip", "flip", "cut", "insert"]),
                           st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=6)


def outcome(function, *args):
    """"ok" or "error" (a SqueezeFPGAError); anything else propagates and fails the test."""
    try:
        function(*args)
    except SqueezeFPGAError as exc:
        assert str(exc), "an error without a message"
        assert "\n" not in str(exc), f"a multi-line message: {exc}"
        return "error"
    return "ok"


@FUZZ
@given(edits=EDITS)
def test_net_importer_mutated(net_file, edits):
    outcome(parse_compressed, mutate(net_file, edits), NETWORK)


@FUZZ
@given(data=st.binary(max_size=2048))
def test_net_importer_arbitrary_bytes(data):
    outcome(parse_compressed, data, NETWORK)


@settings(FUZZ, max_examples=25)
@given(edits=EDITS)
def test_real_model_mutated(model_bytes, edits):
    data = mutate(model_bytes, edits)
    assert data == model_bytes or outcome(parse_compressed, data) == "error"


@FUZZ
@given(edits=EDITS, reseal=st.booleans())
def test_blob_decoder_mutated(blob, edits, reseal):
    data = bytearray(mutate(blob, edits))
    if reseal and len(data) >= 40:              # past the CRC, into the deeper checks
        struct.pack_into("<I", data, 36, blob_crc(bytes(data)))
    result = outcome(Model.decode, bytes(data))
    if not reseal:
        assert result == "error" or bytes(data) == blob


@FUZZ
@given(data=st.binary(max_size=512))
def test_blob_decoder_arbitrary_bytes(data):
    outcome(Model.decode, b"SQZF\x03\x00" + data)


@FUZZ
@given(kind=st.sampled_from(["png", "jpeg", "gif"]), edits=EDITS)
def test_image_loader_mutated(tmp_path, pictures, kind, edits):
    path = tmp_path / f"picture.{kind}"
    path.write_bytes(mutate(pictures[kind], edits))
    if outcome(load_image, path) == "ok":
        assert load_image(path).shape == (3, 227, 227)


@FUZZ
@given(data=st.binary(max_size=1024))
def test_image_loader_arbitrary_bytes(tmp_path, data):
    path = tmp_path / "picture.png"
    path.write_bytes(data)
    outcome(load_image, path)
