"""Weight decoder: turns one conv layer's compressed weight section into per-output-channel
lists of non-zero (tap, code) pairs, one compressed entry per cycle."""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
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

    #: Words of the entry stream fetched ahead (in flight or waiting), so that the stream
    #: keeps up with one entry per cycle through the weight buffer's latency.
    PREFETCH = 4

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
        # Layer constants, registered at start (they come from the descriptor's copy).
        sparse, taps, out_c = Signal(), Signal(tap_bits + 1), Signal(len(self.out_c))
        entries_word, entries_bit = Signal(len(mem.addr)), Signal(5)
        count = Signal(32)
        streaming = Signal()
        # Two stages, each a short loop: the parser cuts the bit stream into entries, the
        # assigner gives each entry its channel and tap.
        m.submodules.entries = entries = SyncFIFOBuffered(width=RUN_BITS + CODE_BITS, depth=4)
        parsed_all = self._parser(m, sparse, entries_word, entries_bit, count, streaming,
                                  entries)
        published_all = self._assigner(m, sparse, taps, out_c, count, streaming, entries)

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
            m.d.comb += self._restart.eq(1)
            m.next = "STREAM"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [idx.eq(0), got.eq(0)]
                    m.next = "SETUP"
            with m.State("SETUP"):
                # The layer's constants, from registers from now on.
                m.d.sync += [sparse.eq(self.sparse), taps.eq(self.taps), out_c.eq(self.out_c),
                             count.eq(self.count), entries_word.eq(self.entries_addr[2:]),
                             entries_bit.eq(Cat(Const(0, 3), self.entries_addr[:2]))]
                m.next = "BOOK"
            with m.State("BOOK"):
                copy(self.n_codes, lambda i: bias_word + out_c + (i >> 2), write_book,
                     to_bias)
            with m.State("BIAS"):
                copy(out_c, lambda i: bias_word + i, write_bias, to_stream)
            with m.State("STREAM"):
                m.d.comb += streaming.eq(1)
                with m.If(published_all & parsed_all):
                    m.next = "IDLE"
        return m

    def _parser(self, m, sparse, entries_word, entries_bit, count, streaming, entries):
        """The bit stream, a window of two words read at a bit offset (refilled from a small
        FIFO of words fetched ahead), cut into ``count`` entries pushed into ``entries``.
        Returns a signal that is high once every entry is parsed and no word is in flight."""
        mem = self.mem
        m.submodules.words = words = SyncFIFO(width=32, depth=self.PREFETCH)
        self._restart = restart = Signal()
        cur, nxt = Signal(32), Signal(32)
        full_window, half_window = Signal(), Signal()    # both words / only cur present
        offset = Signal(5)
        fetch_addr = Signal(len(mem.addr))
        in_flight = Signal(range(self.PREFETCH + 1))
        to_parse = Signal(32)
        # to_parse != 0, kept as a flag updated with the counter: the 32-bit compare sat at
        # the start of the window's refill decision (a 64-lane critical path).
        more = Signal()
        width = Mux(sparse, RUN_BITS + CODE_BITS, CODE_BITS)
        parse = Signal()
        m.d.comb += [parse.eq(streaming & full_window & more & entries.w_rdy),
                     entries.w_en.eq(parse),
                     entries.w_data.eq(Cat(cur, nxt).bit_select(offset, RUN_BITS + CODE_BITS))]
        with m.If(restart):
            m.d.sync += [full_window.eq(0), half_window.eq(0), offset.eq(entries_bit),
                         fetch_addr.eq(entries_word), to_parse.eq(count),
                         more.eq(count != 0)]
        with m.Elif(parse):
            m.d.sync += [to_parse.eq(to_parse - 1), more.eq(to_parse != 1)]
        # Consuming moves the offset; crossing a word boundary moves nxt into cur and takes
        # the next word from the FIFO.
        step = offset + Mux(parse, width, 0)
        with m.If(streaming):
            m.d.sync += offset.eq(step[:5])
            with m.If(~half_window & ~full_window):
                m.d.comb += words.r_en.eq(1)
                with m.If(words.r_rdy):
                    m.d.sync += [cur.eq(words.r_data), half_window.eq(1)]
            with m.Elif(half_window):
                m.d.comb += words.r_en.eq(1)
                with m.If(words.r_rdy):
                    m.d.sync += [nxt.eq(words.r_data), half_window.eq(0), full_window.eq(1)]
            with m.Elif(step[5]):
                m.d.comb += words.r_en.eq(1)
                m.d.sync += [cur.eq(nxt), nxt.eq(words.r_data)]
                with m.If(~words.r_rdy):
                    m.d.sync += [full_window.eq(0), half_window.eq(1)]
        with m.Elif(words.r_rdy):              # words fetched ahead belong to nobody
            m.d.comb += words.r_en.eq(1)
        # Fetch ahead while the FIFO has room for everything in flight.
        fetch = Signal()
        m.d.comb += fetch.eq(streaming & more & (words.level + in_flight < self.PREFETCH))
        m.d.sync += in_flight.eq(in_flight + fetch - (streaming & mem.valid))
        with m.If(fetch):
            m.d.comb += [mem.en.eq(1), mem.addr.eq(fetch_addr)]
            m.d.sync += fetch_addr.eq(fetch_addr + 1)
        m.d.comb += [words.w_en.eq(streaming & mem.valid), words.w_data.eq(mem.data)]
        done = Signal()
        m.d.comb += done.eq(~more & (in_flight == 0))
        return done

    def _assigner(self, m, sparse, taps, out_c, count, streaming, entries):
        """Each entry's channel and tap: published channel lists (ping-pong buffers).

        ``room`` = taps - pos is how far the channel's end is: an entry whose zero-run reaches
        it belongs to a later channel, so the current one is published first. Returns a
        register, high once every channel is published.

        What it does in a cycle is decided on registers: "every channel published" and "no
        entry left" are kept as flags, updated with the counters they summarise (the 64-lane
        critical path compared the channel and entry counters in that cycle)."""
        tap_bits = self.tap_bits
        entry = entries.r_data
        run = Mux(sparse, entry[:RUN_BITS], 0)
        code = Mux(sparse, entry[RUN_BITS:], entry[:CODE_BITS])
        pos = Signal(signed(tap_bits + 4))      # position in the current channel
        room = Signal(signed(tap_bits + 5))     # taps - pos
        remaining = Signal(32)                  # entries not yet assigned
        channel = Signal(len(self.out_c))
        published_all, none_left = Signal(), Signal()     # channel == out_c, remaining == 0
        wbuf = Signal()
        n = Signal(tap_bits + 1)
        with m.If(self._restart):
            m.d.sync += [pos.eq(0), room.eq(taps), remaining.eq(count),
                         channel.eq(0), wbuf.eq(0), n.eq(0),
                         published_all.eq(out_c == 0), none_left.eq(count == 0)]
        with m.Elif(~streaming | published_all | self.full.bit_select(wbuf, 1)):
            pass                                # nothing to do, or the engine replays wbuf
        with m.Elif(none_left | entries.r_rdy & (run >= room)):
            # The next entry belongs to a later channel (or none is left): publish.
            m.d.comb += [self.chan_done.eq(1), self.chan_buf.eq(wbuf), self.chan_count.eq(n)]
            m.d.sync += [channel.eq(channel + 1), wbuf.eq(~wbuf), n.eq(0),
                         pos.eq(pos - taps), room.eq(room + taps),
                         published_all.eq(channel + 1 == out_c)]
        with m.Elif(entries.r_rdy):
            m.d.comb += entries.r_en.eq(1)
            m.d.sync += [pos.eq(pos + run + 1), room.eq(room - run - 1),
                         remaining.eq(remaining - 1), none_left.eq(remaining == 1)]
            with m.If(code != 0):
                m.d.comb += [self.list_we.eq(1), self.list_addr.eq(Cat(n[:tap_bits], wbuf)),
                             self.list_tap.eq(pos + run), self.list_code.eq(code)]
                m.d.sync += n.eq(n + 1)
        # Entries parsed after the last channel was published belong to nobody.
        with m.If(~streaming & entries.r_rdy):
            m.d.comb += entries.r_en.eq(1)
        return published_all
