"""Weight decoder: turns one conv layer's compressed weight section into per-output-channel
lists of non-zero (tap, code) pairs, one compressed entry per cycle."""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from squeezefpga.blob_format import CODE_BITS, RUN_BITS

from .ports import ReadSignature

__all__ = ["WeightDecoder"]


class WeightDecoder(wiring.Component):
    """Reads a weight section (docs/FORMATS.md) from the 32-bit weight buffer.

    After ``start`` it copies the codebook and the biases into the engine's buffers, then
    decodes the dense or sparse entry stream. Zero codes are dropped, so the engine spends no
    cycle on them. Each output channel's list goes to one of two buffers (ping-pong): the
    decoder fills buffer ``b`` only while ``full[b]`` is low and publishes it with
    ``chan_done``; the engine clears ``full[b]`` after replaying it.

    Members
    -------
    start : In(1)
        Pulse; the layer parameters must then stay stable until ``done``.
    sparse, bias_addr, entries_addr, n_codes, count, out_c, taps : In
        Layer parameters: encoding, byte address of the biases (word aligned), byte address
        of the first entry, codebook size, entry count, output channels, ``in_c * k * k``.
    mem : Out(ReadSignature)
        Weight buffer read port (:mod:`.ports`): the tag is the copy index, or marks the first
        word of the entry stream.
    book_we, book_addr, book_data : Out
        Codebook writes.
    bias_we, bias_addr_w, bias_data : Out
        Bias buffer writes.
    list_we, list_addr, list_tap, list_code : Out
        Channel list writes; ``list_addr`` is ``Cat(index, buffer)``.
    full : In(2)
    chan_done, chan_buf, chan_count : Out
        Publish one channel's list.
    """

    #: Entry-stream bits held; two words may be in flight, so the stream keeps up with one
    #: entry per cycle through the weight buffer's latency.
    BUFFER_BITS = 96

    def __init__(self, word_bits, tap_bits, channel_bits):
        self.tap_bits = tap_bits
        self.index_bits = max(channel_bits + 1, CODE_BITS + 1)
        super().__init__({
            "start": In(1),
            "sparse": In(1),
            "bias_addr": In(word_bits + 2),
            "entries_addr": In(word_bits + 2),
            "n_codes": In(CODE_BITS + 1),
            "count": In(32),
            "out_c": In(channel_bits + 1),
            "taps": In(tap_bits + 1),
            "mem": Out(ReadSignature(word_bits, 32, max(channel_bits + 1, CODE_BITS + 1))),
            "book_we": Out(1),
            "book_addr": Out(CODE_BITS),
            "book_data": Out(8),
            "bias_we": Out(1),
            "bias_addr_w": Out(channel_bits),
            "bias_data": Out(32),
            "list_we": Out(1),
            "list_addr": Out(tap_bits + 1),
            "list_tap": Out(tap_bits),
            "list_code": Out(CODE_BITS),
            "full": In(2),
            "chan_done": Out(1),
            "chan_buf": Out(1),
            "chan_count": Out(tap_bits + 1),
        })

    def elaborate(self, platform):
        m = Module()
        tap_bits, mem = self.tap_bits, self.mem
        # Copy loops (codebook, biases): one read per cycle; each answer carries its index.
        idx, got = Signal(self.index_bits), Signal(self.index_bits)
        bias_word = self.bias_addr[2:]
        # Entry bit stream.
        bits, nbits = Signal(self.BUFFER_BITS), Signal(range(self.BUFFER_BITS + 1))
        fetch_addr, skip = Signal(len(mem.addr)), Signal(5)
        in_flight = Signal(2)
        first_word = Signal()
        width = Mux(self.sparse, RUN_BITS + CODE_BITS, CODE_BITS)
        run = Mux(self.sparse, bits[:RUN_BITS], 0)
        code = Mux(self.sparse, bits[RUN_BITS:RUN_BITS + CODE_BITS], bits[:CODE_BITS])
        pos = Signal(signed(tap_bits + 4))      # position in the current channel
        target = Signal(signed(tap_bits + 4))
        m.d.comb += target.eq(pos + run)
        consumed = Signal(32)
        channel = Signal(len(self.out_c))
        wbuf = Signal()
        n = Signal(tap_bits + 1)
        consume = Signal()
        streaming = Signal()

        def copy(count, address, write, then):
            """Read ``count`` words from ``address(i)``, ``write(i, data)`` each answer."""
            with m.If(idx < count):
                m.d.comb += [mem.en.eq(1), mem.addr.eq(address(idx)), mem.tag.eq(idx)]
                m.d.sync += idx.eq(idx + 1)
            with m.If(mem.valid):
                write(mem.rtag, mem.data)
                m.d.sync += got.eq(got + 1)
            with m.Elif((idx >= count) & (got == count)):
                m.d.sync += [idx.eq(0), got.eq(0)]
                then()

        def write_book(i, data):
            m.d.comb += [self.book_we.eq(1), self.book_addr.eq(i),
                         self.book_data.eq(data.word_select(i[:2], 8))]

        def write_bias(i, data):
            m.d.comb += [self.bias_we.eq(1), self.bias_addr_w.eq(i), self.bias_data.eq(data)]

        def to_bias():
            m.next = "BIAS"

        def to_stream():
            m.d.sync += [bits.eq(0), nbits.eq(0), in_flight.eq(0), first_word.eq(1),
                         fetch_addr.eq(self.entries_addr[2:]),
                         skip.eq(Cat(0, 0, 0, self.entries_addr[:2])),
                         pos.eq(0), consumed.eq(0), channel.eq(0), wbuf.eq(0), n.eq(0)]
            m.next = "STREAM"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [idx.eq(0), got.eq(0)]
                    m.next = "BOOK"
            with m.State("BOOK"):
                copy(self.n_codes, lambda i: bias_word + self.out_c + (i >> 2), write_book,
                     to_bias)
            with m.State("BIAS"):
                copy(self.out_c, lambda i: bias_word + i, write_bias, to_stream)
            with m.State("STREAM"):
                m.d.comb += streaming.eq(1)
                with m.If(channel == self.out_c):         # all channels published
                    with m.If(in_flight == 0):            # no word of this layer in flight
                        m.next = "IDLE"
                with m.Elif(self.full.bit_select(wbuf, 1)):
                    pass                          # the engine still replays this buffer
                with m.Elif((consumed == self.count) | (nbits >= width) & (target >= self.taps)):
                    # The next entry belongs to a later channel (or none is left): publish.
                    m.d.comb += [self.chan_done.eq(1), self.chan_buf.eq(wbuf),
                                 self.chan_count.eq(n)]
                    m.d.sync += [channel.eq(channel + 1), wbuf.eq(~wbuf), n.eq(0),
                                 pos.eq(pos - self.taps)]
                with m.Elif(nbits >= width):
                    m.d.comb += consume.eq(1)
                    m.d.sync += [pos.eq(target + 1), consumed.eq(consumed + 1)]
                    with m.If(code != 0):
                        m.d.comb += [self.list_we.eq(1),
                                     self.list_addr.eq(Cat(n[:tap_bits], wbuf)),
                                     self.list_tap.eq(target), self.list_code.eq(code)]
                        m.d.sync += n.eq(n + 1)

        # Bit buffer: drop consumed bits, append an arriving word. A word is asked for while
        # the bits held plus those in flight leave room for it.
        used = Mux(consume, width, 0)
        left = Signal(range(self.BUFFER_BITS + 1))
        m.d.comb += left.eq(nbits - used)
        arriving = Signal(32)
        m.d.comb += arriving.eq(mem.data >> Mux(mem.rtag[0], skip, 0))
        fetch = Signal()
        m.d.comb += fetch.eq(streaming & (channel != self.out_c)
                             & (left + 32 * (in_flight + 1) <= self.BUFFER_BITS))
        with m.If(streaming):
            with m.If(mem.valid):
                m.d.sync += [bits.eq((bits >> used) | (arriving << left)),
                             nbits.eq(left + 32 - Mux(mem.rtag[0], skip, 0))]
            with m.Else():
                m.d.sync += [bits.eq(bits >> used), nbits.eq(left)]
            m.d.sync += in_flight.eq(in_flight + fetch - mem.valid)
            with m.If(fetch):
                m.d.comb += [mem.en.eq(1), mem.addr.eq(fetch_addr), mem.tag.eq(first_word)]
                m.d.sync += [fetch_addr.eq(fetch_addr + 1), first_word.eq(0)]
        return m
