"""Blob verifier: checks that the weight buffer holds a whole, intact compiled blob."""

from amaranth import Module, Mux, Signal
from amaranth.lib import crc, wiring
from amaranth.lib.wiring import In, Out

from squeezefpga.blob_format import HEADER, HEADER_CRC_OFFSET, HEADER_LENGTH_OFFSET

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
    mem_addr, mem_en : Out; mem_data : In(32)
        Weight buffer read port (data the cycle after ``mem_en``).
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
            "mem_addr": Out(word_bits), "mem_en": Out(1), "mem_data": In(32),
            "done": Out(1), "ok": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc32 = crc.catalog.CRC32_ISO_HDLC(data_width=32).create()
        capacity = 1 << self.word_bits
        issue, limit = Signal(self.word_bits + 1), Signal(self.word_bits + 1)
        pending, pending_word = Signal(), Signal(self.word_bits + 1)
        length_ok, stored, expect = Signal(), Signal(32), Signal(32)
        words = self.mem_data[2:]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [issue.eq(0), limit.eq(_HEADER_WORDS), pending.eq(0),
                                 length_ok.eq(0), expect.eq(self.expect)]
                    m.next = "READ"
            with m.State("READ"):
                # Issue word `issue`; the word read last cycle arrives now.
                m.d.sync += pending.eq(issue < limit)
                with m.If(issue < limit):
                    m.d.comb += [self.mem_addr.eq(issue), self.mem_en.eq(1)]
                    m.d.sync += [issue.eq(issue + 1), pending_word.eq(issue)]
                with m.If(pending):
                    m.d.comb += [crc32.valid.eq(1), crc32.start.eq(pending_word == 0),
                                 crc32.data.eq(Mux(pending_word == _CRC_WORD, 0,
                                                   self.mem_data))]
                    with m.If(pending_word == _LENGTH_WORD):
                        fits = ((self.mem_data[:2] == 0) & (words >= _HEADER_WORDS)
                                & (words <= capacity))
                        m.d.sync += [length_ok.eq(fits),
                                     limit.eq(Mux(fits, words, _HEADER_WORDS))]
                    with m.If(pending_word == _CRC_WORD):
                        m.d.sync += stored.eq(self.mem_data)
                with m.Elif(issue >= limit):
                    m.next = "DECIDE"           # the CRC register holds the last word now
            with m.State("DECIDE"):
                m.d.comb += [self.done.eq(1),
                             self.ok.eq(length_ok & (crc32.crc == stored) & (stored == expect))]
                m.next = "IDLE"
        return m
