"""Weight decoder: turns one conv layer's compressed weight section into per-output-channel
lists of non-zero (tap, code) pairs, one compressed entry per cycle."""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from squeezefpga.blob_format import CODE_BITS, RUN_BITS

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
    mem_addr, mem_en : Out; mem_data : In(32)
        Weight buffer read port (data the cycle after ``mem_en``).
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

    def __init__(self, word_bits, tap_bits, channel_bits):
        self.tap_bits = tap_bits
        super().__init__({
            "start": In(1),
            "sparse": In(1),
            "bias_addr": In(word_bits + 2),
            "entries_addr": In(word_bits + 2),
            "n_codes": In(CODE_BITS + 1),
            "count": In(32),
            "out_c": In(channel_bits + 1),
            "taps": In(tap_bits + 1),
            "mem_addr": Out(word_bits),
            "mem_en": Out(1),
            "mem_data": In(32),
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
        tap_bits = self.tap_bits
        # Copy loops (codebook, biases): one read issued per cycle, written the cycle after.
        idx = Signal(32)
        pend, pend_idx = Signal(), Signal(32)
        bias_word = self.bias_addr[2:]
        # Entry bit stream.
        bits, nbits = Signal(64), Signal(7)
        fetch_addr, skip, fetch_pend = Signal(len(self.mem_addr)), Signal(5), Signal()
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

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [idx.eq(0), pend.eq(0)]
                    m.next = "BOOK"
            with m.State("BOOK"):
                m.d.sync += pend.eq(idx < self.n_codes)
                with m.If(idx < self.n_codes):
                    m.d.comb += [self.mem_en.eq(1),
                                 self.mem_addr.eq(bias_word + self.out_c + (idx >> 2))]
                    m.d.sync += [idx.eq(idx + 1), pend_idx.eq(idx)]
                with m.If(pend):
                    m.d.comb += [self.book_we.eq(1), self.book_addr.eq(pend_idx),
                                 self.book_data.eq(self.mem_data.word_select(pend_idx[:2], 8))]
                with m.If((idx >= self.n_codes) & ~pend):
                    m.d.sync += idx.eq(0)
                    m.next = "BIAS"
            with m.State("BIAS"):
                m.d.sync += pend.eq(idx < self.out_c)
                with m.If(idx < self.out_c):
                    m.d.comb += [self.mem_en.eq(1), self.mem_addr.eq(bias_word + idx)]
                    m.d.sync += [idx.eq(idx + 1), pend_idx.eq(idx)]
                with m.If(pend):
                    m.d.comb += [self.bias_we.eq(1), self.bias_addr_w.eq(pend_idx),
                                 self.bias_data.eq(self.mem_data)]
                with m.If((idx >= self.out_c) & ~pend):
                    m.d.sync += [bits.eq(0), nbits.eq(0), fetch_pend.eq(0),
                                 fetch_addr.eq(self.entries_addr[2:]),
                                 skip.eq(Cat(0, 0, 0, self.entries_addr[:2])),
                                 pos.eq(0), consumed.eq(0), channel.eq(0), wbuf.eq(0),
                                 n.eq(0)]
                    m.next = "STREAM"
            with m.State("STREAM"):
                m.d.comb += streaming.eq(1)
                with m.If(channel == self.out_c):         # all channels published
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
                        m.d.comb += [self.list_we.eq(1), self.list_addr.eq(Cat(n[:tap_bits], wbuf)),
                                     self.list_tap.eq(target), self.list_code.eq(code)]
                        m.d.sync += n.eq(n + 1)

        # Bit buffer: drop consumed bits, append an arriving word, keep at most 64 bits.
        used = Mux(consume, width, 0)
        left = Signal(7)
        m.d.comb += left.eq(nbits - used)
        arriving = Signal(32)
        m.d.comb += arriving.eq(self.mem_data >> skip)
        with m.If(streaming):
            with m.If(fetch_pend):
                m.d.sync += [bits.eq((bits >> used) | (arriving << left)),
                             nbits.eq(left + 32 - skip), skip.eq(0)]
            with m.Else():
                m.d.sync += [bits.eq(bits >> used), nbits.eq(left)]
            fetch = Signal()
            m.d.comb += fetch.eq(left + Mux(fetch_pend, 32, 0) <= 32)
            m.d.sync += fetch_pend.eq(fetch)
            with m.If(fetch):
                m.d.comb += [self.mem_en.eq(1), self.mem_addr.eq(fetch_addr)]
                m.d.sync += fetch_addr.eq(fetch_addr + 1)
        return m
