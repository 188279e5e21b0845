"""Blob verifier: checks that the weight buffer holds a whole, intact compiled blob."""

from amaranth import Module, Mux, Signal
from amaranth.lib import crc, wiring
from amaranth.lib.wiring import In, Out

from squeezefpga.blob_format import HEADER, HEADER_CRC_OFFSET, HEADER_LENGTH_OFFSET

from .ports import ReadSignature

__all__ = ["BlobVerifier"]

_LENGTH_WORD = HEADER_LENGTH_OFFSET // 4
_CRC_WORD = HEADER_CRC_OFFSET // 4
_HEADER_WORDS = HEADER.size // 4


class BlobVerifier(wiring.Component):
    """Reads the blob from the 32-bit weight buffer, one word per cycle, and checks it.

    The blob's length comes from its header; the CRC-32 (zlib's) runs over every word with the
    header's CRC field taken as zero (:func:`squeezefpga.golden.blob.blob_crc`). The blob is
    ``ok`` if its length is a multiple of 4 that fits the buffer and holds the header, and the
    CRC equals both the header's CRC field and ``expect``.

    Parameters
    ----------
    word_bits : int
        Address width of the weight buffer (in words).

    Members
    -------
    start : In(1)
        Pulse with ``expect`` valid.
    expect : In(32)
        The CRC-32 the host says the blob has.
    mem : Out(ReadSignature)
        Weight buffer read port (:mod:`.ports`); the tag is the word index.
    done : Out(1)
        Pulse when the verdict is in ``ok``.
    ok : Out(1)
    """

    def __init__(self, word_bits):
        if word_bits < 4:
            raise ValueError(f"a weight buffer of {word_bits}-bit word addresses cannot hold a "
                             "blob header")
        self.word_bits = word_bits
        super().__init__({
            "start": In(1), "expect": In(32),
            "mem": Out(ReadSignature(word_bits, 32, word_bits + 1)),
            "done": Out(1), "ok": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc32 = crc.catalog.CRC32_ISO_HDLC(data_width=32).create()
        capacity = 1 << self.word_bits
        issued, answered = Signal(self.word_bits + 1), Signal(self.word_bits + 1)
        limit = Signal(self.word_bits + 1)
        length_ok, stored, expect = Signal(), Signal(32), Signal(32)
        word, data = self.mem.rtag, self.mem.data
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [issued.eq(0), answered.eq(0), limit.eq(_HEADER_WORDS),
                                 length_ok.eq(0), expect.eq(self.expect)]
                    m.next = "READ"
            with m.State("READ"):
                # Words go out one per cycle up to the limit: the header's first, then as many
                # as the header's length says, once that word is back.
                with m.If(issued < limit):
                    m.d.comb += [self.mem.addr.eq(issued), self.mem.en.eq(1),
                                 self.mem.tag.eq(issued)]
                    m.d.sync += issued.eq(issued + 1)
                with m.If(self.mem.valid):
                    m.d.sync += answered.eq(answered + 1)
                    m.d.comb += [crc32.valid.eq(1), crc32.start.eq(word == 0),
                                 crc32.data.eq(Mux(word == _CRC_WORD, 0, data))]
                    with m.If(word == _LENGTH_WORD):
                        words = data[2:]
                        fits = (data[:2] == 0) & (words >= _HEADER_WORDS) & (words <= capacity)
                        m.d.sync += [length_ok.eq(fits),
                                     limit.eq(Mux(fits, words, _HEADER_WORDS))]
                    with m.If(word == _CRC_WORD):
                        m.d.sync += stored.eq(data)
                with m.Elif((issued >= limit) & (answered == issued)):
                    m.next = "DECIDE"           # the CRC register holds the last word now
            with m.State("DECIDE"):
                m.d.comb += [self.done.eq(1),
                             self.ok.eq(length_ok & (crc32.crc == stored) & (stored == expect))]
                m.next = "IDLE"
        return m
