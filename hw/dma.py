"""The DMA engine of the SDRAM-backed board: the tiled program's transfers
(``golden/tiled_program.py``, docs/FORMATS.md), one after the other, beside the
computations.

- SDRAM -> activation buffer (``DMA_IN``): 16-bit words read in order; each answer is written
  as two bytes (a byte-masked write of the wide write port, which takes any address) when the
  conv engine and the pool unit leave the port free, which they do on all but one cycle in
  sixteen at least.
- SDRAM -> weight buffer (``DMA_WEIGHTS``): the same into half a 32-bit word (weight sections
  and their places are 4-byte aligned).
- Activation buffer -> SDRAM (``DMA_OUT``): whole rows of the buffer (``lanes`` bytes at an
  aligned address, read on the banks' second port, no rotation) into a two-row window, from
  which each SDRAM word takes the two bytes it needs, whatever the parity of the two
  addresses.

Every run's first and last word may be half used (odd addresses and lengths): the byte masks
say which half.
"""

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from squeezefpga.blob_format import DMA_OUT, DMA_WEIGHTS
from squeezefpga.sdram import ADDRESS_BITS, WORD_BITS

from .ports import RowReadSignature, WriteSignature
from .sdram import SdramPort
from .sequencer import DmaCommand

__all__ = ["DmaEngine", "READS_IN_FLIGHT"]

#: SDRAM reads in flight at most (their answers wait in a queue this deep).
READS_IN_FLIGHT = 16


#: What travels beside an SDRAM read: where its two bytes go, and which are wanted.
_Tag = data.StructLayout({"at": 32, "lo": 1, "hi": 1})


class DmaEngine(wiring.Component):
    """Executes transfers from its queue, in order, and counts those that have ended.

    Parameters
    ----------
    lanes : int
        Bytes of one row of the activation buffer (one per bank).
    act_bits, weight_word_bits : int
        Address widths of the activation buffer (bytes) and of the weight buffer (words).

    Members
    -------
    commands : In(stream.Signature(DmaCommand(16)))
        Transfers from the sequencer.
    clear : In(1)
        A run starts: the count of ended transfers returns to 0.
    done : Out(16)
        Transfers ended since ``clear``.
    idle : Out(1)
        Nothing queued or moving.
    sdram : Out(SdramPort())
    act_write : Out(WriteSignature); act_write_ready : In(1)
        The activation buffer's write port, which the units leave free when ready.
    act_row : Out(RowReadSignature)
    weights_write : Out(WriteSignature)
    counted, counted_step : Out; counted_bytes : Out(32)
        A transfer has ended: the program step it was and the bytes it moved.
    """

    def __init__(self, lanes, act_bits, weight_word_bits):
        if lanes & (lanes - 1) or lanes < 4:
            raise ValueError(f"lanes must be a power of two from 4, not {lanes}")
        self.lanes, self.act_bits = lanes, act_bits
        self.shift = (lanes - 1).bit_length()
        super().__init__({
            "commands": In(stream.Signature(DmaCommand(16))),
            "clear": In(1), "done": Out(16), "idle": Out(1),
            "sdram": Out(SdramPort()),
            "act_write": Out(WriteSignature(act_bits, 8 * lanes, lanes)),
            "act_write_ready": In(1),
            "act_row": Out(RowReadSignature(act_bits - self.shift, 8 * lanes)),
            "weights_write": Out(WriteSignature(weight_word_bits, 32, 4)),
            "counted": Out(1), "counted_step": Out(16), "counted_bytes": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.queue = queue = SyncFIFOBuffered(
            width=len(self.commands.payload.as_value()), depth=4)
        m.d.comb += [queue.w_en.eq(self.commands.valid), queue.w_data.eq(self.commands.payload),
                     self.commands.ready.eq(queue.w_rdy)]
        head = data.View(DmaCommand(16), queue.r_data)
        x = _Transfer(m)
        m.d.comb += [self.counted_step.eq(x.step), self.counted_bytes.eq(x.moved)]
        with m.If(self.clear):
            m.d.sync += self.done.eq(0)
        with m.Elif(self.counted):
            m.d.sync += self.done.eq(self.done + 1)
        reads_idle = self._reads(m, x)
        self._writes(m, x)

        first_word = x.sdram[1:]
        last_word = (x.sdram + x.length - 1)[1:]
        with m.FSM():
            with m.State("IDLE"):
                # A transfer queued a cycle ago counts (the queue's output is a cycle late).
                m.d.comb += self.idle.eq(queue.level == 0)
                with m.If(queue.r_rdy):
                    t = head.transfer
                    m.d.comb += queue.r_en.eq(1)
                    m.d.sync += [x.kind.eq(t.kind), x.step.eq(head.step), x.sdram.eq(t.sdram),
                                 x.local.eq(t.local), x.length.eq(t.length),
                                 x.runs.eq(t.count), x.s_stride.eq(t.sdram_stride),
                                 x.l_stride.eq(t.local_stride), x.moved.eq(0)]
                    m.next = "RUN"
            with m.State("RUN"):
                # A run: its words, and where the first word's low byte goes on chip (one
                # before the run's first byte if it starts on an odd SDRAM byte).
                with m.If((x.runs == 0) | (x.length == 0)):
                    m.next = "FINISH"
                with m.Else():
                    m.d.sync += [x.word.eq(first_word), x.last.eq(last_word),
                                 x.at.eq(x.local - x.sdram[0]), x.start.eq(x.sdram),
                                 x.end.eq(x.sdram + x.length)]
                    with m.If(x.kind == DMA_OUT):
                        m.d.comb += self._window_start.eq(1)
                        m.next = "OUT"
                    with m.Else():
                        m.next = "IN"
            with m.State("IN"):
                m.d.comb += x.reading.eq(1)
                with m.If(self._issued_last):
                    m.next = "NEXT_RUN"
            with m.State("OUT"):
                m.d.comb += x.out_active.eq(1)
                with m.If(self._sent_last):
                    m.next = "OUT_END"
            with m.State("OUT_END"):         # a row read still coming back is not the next's
                with m.If(~self._row_asked):
                    m.next = "NEXT_RUN"
            with m.State("NEXT_RUN"):
                m.d.sync += [x.runs.eq(x.runs - 1), x.moved.eq(x.moved + x.length),
                             x.sdram.eq(x.sdram + x.s_stride),
                             x.local.eq(x.local + x.l_stride)]
                m.next = "RUN"
            with m.State("FINISH"):          # every word read has been written
                with m.If(reads_idle):
                    m.d.comb += self.counted.eq(1)
                    m.next = "IDLE"
        return m

    # -- SDRAM -> buffers ----------------------------------------------------------------------

    def _reads(self, m, x):
        """Issue the run's reads (state IN) with a tag each; write the answers as they come
        (the write port permitting). Returns a signal: no read is in flight."""
        self._issued_last = Signal()
        m.submodules.tags = tags = SyncFIFOBuffered(width=_Tag.size, depth=READS_IN_FLIGHT + 2)
        m.submodules.answers = answers = SyncFIFOBuffered(width=WORD_BITS,
                                                          depth=READS_IN_FLIGHT + 2)
        in_flight = Signal(range(READS_IN_FLIGHT + 2))
        issuing = Signal()
        tag = Signal(_Tag)
        request = self.sdram.requests
        m.d.comb += [
            tag.at.eq(x.at),
            tag.lo.eq(Cat(0, x.word) >= x.start), tag.hi.eq(Cat(1, x.word) < x.end),
            tags.w_data.eq(tag),
            issuing.eq(x.reading & (in_flight < READS_IN_FLIGHT) & tags.w_rdy),
            answers.w_en.eq(self.sdram.responses.valid),
            answers.w_data.eq(self.sdram.responses.payload),
        ]
        with m.If(x.reading):
            m.d.comb += [request.valid.eq(issuing), request.payload.address.eq(x.word),
                         request.payload.write.eq(0), tags.w_en.eq(issuing & request.ready)]
            with m.If(issuing & request.ready):
                m.d.sync += [x.word.eq(x.word + 1), x.at.eq(x.at + 2)]
                m.d.comb += self._issued_last.eq(x.word == x.last)
        # An answer and its tag: two bytes at tag.at, on chip.
        head = data.View(_Tag, tags.r_data)
        pair = answers.r_data
        both = tags.r_rdy & answers.r_rdy
        weights = x.kind == DMA_WEIGHTS
        w = self.act_write
        ww = self.weights_write
        m.d.comb += [
            w.addr.eq(head.at), w.data.eq(pair), w.mask.eq(Cat(head.lo, head.hi)),
            ww.addr.eq(head.at[2:]), ww.data.eq(Cat(pair, pair)),
            ww.mask.eq(Mux(head.at[1], Cat(0, 0, head.lo, head.hi), Cat(head.lo, head.hi))),
        ]
        taken = Signal()
        with m.If(both & weights):
            m.d.comb += [ww.en.eq(1), taken.eq(1)]
        with m.Elif(both):
            m.d.comb += [w.en.eq(1), taken.eq(self.act_write_ready)]
        m.d.comb += [tags.r_en.eq(taken), answers.r_en.eq(taken)]
        m.d.sync += in_flight.eq(in_flight + (issuing & request.ready & x.reading) - taken)
        return (in_flight == 0) & ~tags.r_rdy

    # -- activation buffer -> SDRAM ------------------------------------------------------------

    def _writes(self, m, x):
        """State OUT: rows into a two-row window; each SDRAM word takes its two bytes from
        it."""
        n = self.lanes
        self._window_start = Signal()
        self._sent_last = Signal()
        rows = [Array(Signal(8, name=f"window{r}_{b}") for b in range(n)) for r in range(2)]
        r0, r1 = rows
        have = Signal(2)                      # R0, R1 hold their rows
        row = Signal(self.act_bits - self.shift)      # the row to ask for next
        asked, filling = Signal(), Signal()   # a row read in flight, and into which slot
        self._row_asked = asked
        p = Signal(self.shift)                # R0's byte of the next word's low byte
        rr = self.act_row
        with m.If(self._window_start):
            start = x.local - x.sdram[0]
            m.d.sync += [row.eq(start[self.shift:]), p.eq(start[:self.shift]), have.eq(0),
                         asked.eq(0)]
        # Ask for the next row whenever a slot is free and no read is in flight.
        want = x.out_active & ~asked & ~have[1]
        m.d.comb += [rr.row.eq(row), rr.en.eq(want)]
        with m.If(want & rr.ready):
            m.d.sync += [asked.eq(1), filling.eq(have[0]), row.eq(row + 1)]
        with m.If(rr.valid & asked):
            m.d.sync += asked.eq(0)
            with m.If(~filling):
                m.d.sync += [r0[b].eq(rr.data[8 * b: 8 * b + 8]) for b in range(n)]
                m.d.sync += have[0].eq(1)
            with m.Else():
                m.d.sync += [r1[b].eq(rr.data[8 * b: 8 * b + 8]) for b in range(n)]
                m.d.sync += have[1].eq(1)

        request = self.sdram.requests
        lo = r0[p]
        hi = Mux(p == n - 1, r1[0], r0[(p + 1)[:self.shift]])
        crossing = p >= n - 2
        ready = have[0] & (have[1] | ~crossing)
        with m.If(x.out_active):
            m.d.comb += [request.valid.eq(ready), request.payload.write.eq(1),
                         request.payload.address.eq(x.word),
                         request.payload.data.eq(Cat(lo, hi)),
                         request.payload.mask.eq(Cat(Cat(0, x.word) >= x.start,
                                                     Cat(1, x.word) < x.end))]
            with m.If(ready & request.ready):
                m.d.sync += [x.word.eq(x.word + 1), p.eq(p + 2)]
                m.d.comb += self._sent_last.eq(x.word == x.last)
                with m.If(crossing):         # R0 is used up: R1 moves in
                    m.d.sync += [r0[b].eq(r1[b]) for b in range(n)]
                    m.d.sync += have.eq(0b01)


class _Transfer:
    """The registers of the transfer being moved."""

    def __init__(self, m):
        self.kind, self.step = Signal(2, name="kind"), Signal(16, name="step")
        self.sdram = Signal(ADDRESS_BITS + 1, name="sdram")       # the run's SDRAM byte
        self.local = Signal(32, name="local")
        self.length, self.runs = Signal(32, name="length"), Signal(32, name="runs")
        self.s_stride, self.l_stride = Signal(32, name="s_stride"), Signal(32, name="l_stride")
        self.moved = Signal(32, name="moved")
        self.word, self.last = Signal(ADDRESS_BITS, name="word"), Signal(ADDRESS_BITS,
                                                                          name="last_word")
        self.at = Signal(32, name="at")
        self.start = Signal(ADDRESS_BITS + 1, name="run_start")
        self.end = Signal(ADDRESS_BITS + 2, name="run_end")
        self.reading, self.out_active = Signal(name="reading"), Signal(name="out_active")
