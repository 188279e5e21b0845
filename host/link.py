"""Encoder and parsers of the framed, CRC-checked link (docs/PROTOCOL.md; the constants are
in :mod:`squeezefpga.protocol`).

The parsers are incremental: :meth:`ReplyParser.feed` takes bytes as they arrive, in any split,
and returns the frames they complete. Bytes before an SOF are skipped; a frame with a bad CRC
or an impossible length is dropped and the parser resynchronises on the next SOF after the bad
frame's SOF, so a valid frame hidden behind a false start is still found.
"""

import struct
import zlib
from dataclasses import dataclass

from squeezefpga.protocol import (CRC_BYTES, LINK_BAD_CRC, LINK_OK, LINK_TOO_LONG,
                                  LINK_VERSION, MAX_PAYLOAD, REPLY_HEADER, REQUEST_HEADER, SOF)

__all__ = ["RESYNC", "Request", "Reply", "encode_request", "encode_reply", "RequestParser",
           "ReplyParser"]

# Zero bytes (no SOF) as long as the largest request frame: sent after a lost reply, they
# complete any request frame the device has half received (it then fails its CRC) and leave
# the device hunting for the next SOF.
RESYNC = bytes(REQUEST_HEADER.size + MAX_PAYLOAD + CRC_BYTES)


@dataclass(frozen=True)
class Request:
    """A request frame. ``status`` is :data:`LINK_OK` for a valid frame; a
    :class:`RequestParser` made with ``report_errors`` also returns the frames it drops, with
    status :data:`LINK_BAD_CRC` or :data:`LINK_TOO_LONG` and an empty payload."""
    version: int
    seq: int
    payload: bytes
    status: int = LINK_OK


@dataclass(frozen=True)
class Reply:
    """A reply frame: the device's link version, the echoed sequence number, the link status
    and the payload (the host port's reply: data bytes then its status byte)."""
    version: int
    seq: int
    status: int
    payload: bytes


def _check(name, value, limit):
    if not 0 <= value <= limit:
        raise ValueError(f"{name} must be in 0..{limit}, not {value}")


def _seal(frame):
    frame += struct.pack("<I", zlib.crc32(frame[1:]))
    return bytes(frame)


def encode_request(seq, payload, version=LINK_VERSION):
    """The request frame carrying ``payload`` (one host-port command).

    Raises
    ------
    ValueError
        If ``seq`` or ``version`` is not a byte or the payload exceeds :data:`MAX_PAYLOAD`.
    """
    _check("sequence number", seq, 255)
    _check("link version", version, 255)
    _check("request payload length", len(payload), MAX_PAYLOAD)
    return _seal(bytearray(REQUEST_HEADER.pack(SOF, version, seq, len(payload))) + payload)


def encode_reply(seq, status, payload=b"", version=LINK_VERSION):
    """The reply frame a device sends (for fakes and tests)."""
    _check("sequence number", seq, 255)
    _check("link status", status, 255)
    _check("link version", version, 255)
    _check("reply payload length", len(payload), MAX_PAYLOAD)
    return _seal(bytearray(REPLY_HEADER.pack(SOF, version, seq, status, len(payload))) + payload)


class _FrameParser:
    """Incremental frame parser; subclasses give the header layout and build the frames."""
    _header = None

    def __init__(self):
        self._buffer = bytearray()
        self.frames = 0             # valid frames returned
        self.bad_frames = 0         # dropped frame starts: bad CRC, impossible length, cut off
        self.skipped_bytes = 0      # bytes not part of a valid frame (bad frames' SOFs included)

    @property
    def pending(self):
        """Bytes held: the start of a frame not yet complete."""
        return len(self._buffer)

    def needed(self):
        """How many more bytes at least complete the frame being received (a header's worth
        while hunting for an SOF)."""
        size = self._header.size
        if len(self._buffer) < size:
            return size - len(self._buffer)
        return size + self._length() + CRC_BYTES - len(self._buffer)

    def feed(self, data):
        """Take received bytes; return the frames they complete, oldest first."""
        self._buffer += data
        return self._parse()

    def flush(self):
        """No more bytes are coming: drop the half-received frame (counted as bad) and return
        the frames found in the bytes after its SOF."""
        out = []
        while self._buffer:
            self.bad_frames += 1
            self.skipped_bytes += 1
            del self._buffer[0]
            out += self._parse()
        return out

    def reset(self):
        """Forget everything buffered (counted as skipped)."""
        self.skipped_bytes += len(self._buffer)
        self._buffer.clear()

    def _length(self):
        return struct.unpack_from("<H", self._buffer, self._header.size - 2)[0]

    def _parse(self):
        buf, size, out = self._buffer, self._header.size, []
        at = 0
        while True:
            start = buf.find(SOF, at)
            if start < 0:
                self.skipped_bytes += len(buf) - at
                at = len(buf)
                break
            self.skipped_bytes += start - at
            at = start
            if len(buf) - at < size:
                break
            length, = struct.unpack_from("<H", buf, at + size - 2)
            if length > MAX_PAYLOAD:
                self._drop(buf, at, LINK_TOO_LONG, out)
                at += 1
                continue
            end = at + size + length
            if len(buf) < end + CRC_BYTES:
                break
            crc, = struct.unpack_from("<I", buf, end)
            if zlib.crc32(buf[at + 1: end]) != crc:
                self._drop(buf, at, LINK_BAD_CRC, out)
                at += 1
                continue
            out.append(self._frame(buf, at, bytes(buf[at + size: end])))
            self.frames += 1
            at = end + CRC_BYTES
        del buf[:at]
        return out

    def _drop(self, buf, at, status, out):
        self.bad_frames += 1
        self.skipped_bytes += 1

    def _frame(self, buf, at, payload):
        raise NotImplementedError


class ReplyParser(_FrameParser):
    """Incremental parser of reply frames (the host's side); returns :class:`Reply` objects.

    Attributes
    ----------
    frames, bad_frames, skipped_bytes : int
        Valid frames returned, frame starts dropped (bad CRC, length above
        :data:`MAX_PAYLOAD`, abandoned by :meth:`flush`), bytes not part of a valid frame.
    """
    _header = REPLY_HEADER

    def _frame(self, buf, at, payload):
        return Reply(buf[at + 1], buf[at + 2], buf[at + 3], payload)


class RequestParser(_FrameParser):
    """Incremental parser of request frames (the device's side); returns :class:`Request`
    objects.

    Parameters
    ----------
    report_errors : bool
        Also return a :class:`Request` with status :data:`LINK_BAD_CRC` or
        :data:`LINK_TOO_LONG` (version and sequence number as received) for every frame start
        dropped for that reason, so that a device model can answer it.
    """
    _header = REQUEST_HEADER

    def __init__(self, report_errors=False):
        super().__init__()
        self.report_errors = report_errors

    def _drop(self, buf, at, status, out):
        super()._drop(buf, at, status, out)
        if self.report_errors:
            out.append(Request(buf[at + 1], buf[at + 2], b"", status))

    def _frame(self, buf, at, payload):
        return Request(buf[at + 1], buf[at + 2], payload)
