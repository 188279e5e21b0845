"""The framed link (host/link.py): encodings, parsers, resynchronisation, fuzzing."""

import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from squeezefpga import protocol as cmd
from squeezefpga.host.link import (RESYNC, Reply, ReplyParser, Request, RequestParser,
                                   encode_reply, encode_request)
from squeezefpga.protocol import (LINK_BAD_CRC, LINK_OK, LINK_REPLY_OVERFLOW, LINK_TOO_LONG,
                                  MAX_PAYLOAD, SOF)


def test_request_layout():
    frame = encode_request(7, cmd.run(0, 14))
    assert frame[:5] == bytes([0xA5, 1, 7, 5, 0])
    assert frame[5:10] == cmd.run(0, 14) == bytes([cmd.CMD_RUN, 0, 0, 14, 0])
    assert frame[10:] == struct.pack("<I", zlib.crc32(frame[1:10]))


def test_reply_layout():
    frame = encode_reply(200, LINK_OK, b"\x01\x00")
    assert frame[:6] == bytes([0xA5, 1, 200, 0, 2, 0])
    assert frame[8:] == struct.pack("<I", zlib.crc32(frame[1:8]))


def test_round_trips():
    requests = [encode_request(s, bytes(range(n % 256)) * (n // 256 + 1))
                for s, n in [(0, 0), (1, 9), (255, 300)]]
    assert RequestParser().feed(b"".join(requests)) == [
        Request(1, 0, b""), Request(1, 1, bytes(range(9))), Request(1, 255, bytes(range(44)) * 2)]
    big = bytes(MAX_PAYLOAD)
    assert ReplyParser().feed(encode_reply(3, LINK_OK, big) + encode_reply(4, 2)) == [
        Reply(1, 3, LINK_OK, big), Reply(1, 4, 2, b"")]


def test_encoders_reject_bad_fields():
    with pytest.raises(ValueError, match="payload length"):
        encode_request(0, bytes(MAX_PAYLOAD + 1))
    with pytest.raises(ValueError, match="sequence number"):
        encode_reply(256, LINK_OK)


def test_garbage_is_skipped_and_counted():
    parser = ReplyParser()
    frame = encode_reply(9, LINK_OK, b"\x00")
    assert parser.feed(b"\x00\x13garbage" + frame + b"\xff") == [Reply(1, 9, LINK_OK, b"\x00")]
    assert parser.skipped_bytes == 10 and parser.bad_frames == 0 and parser.frames == 1


def test_byte_by_byte_and_needed():
    parser = ReplyParser()
    frame = encode_reply(1, LINK_OK, b"abc")
    assert parser.needed() == 6
    for i, byte in enumerate(frame[:-1]):
        assert parser.feed(bytes([byte])) == []
        assert parser.needed() == (6 - i - 1 if i < 5 else len(frame) - i - 1)
    assert parser.feed(frame[-1:]) == [Reply(1, 1, LINK_OK, b"abc")]
    assert parser.pending == 0


def test_bad_crc_resynchronises_after_the_bad_sof():
    good = encode_reply(5, LINK_OK, b"\x00")
    bad = bytearray(encode_reply(4, LINK_OK, good))
    bad[-1] ^= 1                        # a corrupt frame that contains a whole valid one
    parser = ReplyParser()
    assert parser.feed(bytes(bad) + good) == [Reply(1, 5, LINK_OK, b"\x00")] * 2
    assert parser.bad_frames == 1


def test_false_sof_with_a_huge_length_does_not_hide_the_next_frame():
    parser = ReplyParser()
    good = encode_reply(6, LINK_OK, b"\x00")
    assert parser.feed(bytes([SOF, 1, 0, 0]) + struct.pack("<H", MAX_PAYLOAD + 1) + good) == [
        Reply(1, 6, LINK_OK, b"\x00")]
    assert parser.bad_frames == 1


def test_truncated_frame_is_given_up_by_flush():
    parser = ReplyParser()
    good = encode_reply(6, LINK_OK, b"\x00")
    # A cut-off frame whose length claims 100 bytes swallows the next frame until flushed.
    assert parser.feed(encode_reply(5, LINK_OK, bytes(100))[:20] + good) == []
    assert parser.needed() > 0
    assert parser.flush() == [Reply(1, 6, LINK_OK, b"\x00")]
    assert parser.pending == 0 and parser.bad_frames == 1


def test_request_parser_reports_errors():
    parser = RequestParser(report_errors=True)
    bad = bytearray(encode_request(8, cmd.info()))
    bad[5] ^= 0xFF
    too_long = bytes([SOF, 1, 9]) + struct.pack("<H", MAX_PAYLOAD + 1)
    good = encode_request(10, cmd.info())
    assert parser.feed(bytes(bad) + too_long + good) == [
        Request(1, 8, b"", LINK_BAD_CRC), Request(1, 9, b"", LINK_TOO_LONG),
        Request(1, 10, cmd.info())]
    assert RequestParser().feed(bytes(bad) + good) == [Request(1, 10, cmd.info())]


def test_resync_completes_any_half_frame():
    parser = RequestParser()
    start = encode_request(1, bytes(MAX_PAYLOAD))[:3]      # cut after the sequence number
    good = encode_request(2, cmd.status())
    assert parser.feed(start + b"\xff\xff" + RESYNC + good) == [Request(1, 2, cmd.status())]
    assert SOF not in RESYNC


# -- fuzzing -------------------------------------------------------------------------------------

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
payloads = st.binary(max_size=64) | st.builds(bytes, st.integers(0, 600))
garbage = st.binary(max_size=40) | st.lists(st.sampled_from([SOF, 0, 1, 0xFF, 0x12]),
                                            max_size=12).map(bytes)


@st.composite
def streams(draw, make):
    """Valid frames with garbage between them, and the frames expected back."""
    frames, data = [], b""
    for _ in range(draw(st.integers(0, 6))):
        data += draw(garbage)
        frame = make(draw(st.integers(0, 255)), draw(st.integers(0, 4)), draw(payloads))
        frames.append(frame)
        data += frame[0]
    return data + draw(garbage), [f[1] for f in frames]


def reply_frame(seq, status, payload):
    return encode_reply(seq, status, payload), Reply(1, seq, status, payload)


def request_frame(seq, _, payload):
    return encode_request(seq, payload), Request(1, seq, payload)


def feed_in_pieces(parser, data, cuts):
    out, at = [], 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        out += parser.feed(data[at: cut])
        at = cut
    return out + parser.flush()


def is_subsequence(wanted, got):
    it = iter(got)
    return all(any(w == g for g in it) for w in wanted)


@FUZZ
@given(streams(reply_frame), st.lists(st.integers(0, 10_000), max_size=8))
def test_fuzz_reply_parser_recovers_every_frame(stream, cuts):
    data, frames = stream
    got = feed_in_pieces(ReplyParser(), data, cuts)
    assert is_subsequence(frames, got)


@FUZZ
@given(streams(request_frame), st.lists(st.integers(0, 10_000), max_size=8))
def test_fuzz_request_parser_recovers_every_frame(stream, cuts):
    data, frames = stream
    got = feed_in_pieces(RequestParser(report_errors=True), data, cuts)
    assert is_subsequence(frames, [r for r in got if r.status == LINK_OK])


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(0, 3000), max_size=6))
def test_fuzz_random_bytes_never_raise(data, cuts):
    for parser in (ReplyParser(), RequestParser(report_errors=True)):
        got = feed_in_pieces(parser, data, cuts)
        assert parser.pending == 0
        assert parser.skipped_bytes + sum(len(frame.payload) for frame in got) <= len(data)


def test_reply_overflow_status_is_a_plain_frame():
    assert ReplyParser().feed(encode_reply(1, LINK_REPLY_OVERFLOW)) == [
        Reply(1, 1, LINK_REPLY_OVERFLOW, b"")]
