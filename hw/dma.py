"""The DMA engine of the SDRAM-backed board: the tiled program's transfers
(``golden/tiled_program.py``, docs/FORMATS.md), one after the other, beside the
computations.

- SDRAM -> activation buffer (``DMA_IN``): 16-bit words read in order; each answer is written
  as two bytes (a byte-masked write of the wide write port, which takes any address) when the
  conv engine and the pool unit leave the port free, which they do on all but one cycle in
  sixteen at least.
- SDRAM -> weight buffer (``DMA_WEIGHTS``): the same into half a 32-bit word (weight sections
  and their places are 4-byte aligned).
- Activation buffer -> SDRAM (``DMA_OUT``): the two bytes each SDRAM word takes, read from
  the buffer's banks on their second port (each group of banks picks its byte and only the
  picks travel), whatever the parity of either address.

Every run's first and last word may be half used (odd addresses and lengths): the byte masks
say which half.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from squeezefpga.blob_format import DMA_OUT, DMA_WEIGHTS
from squeezefpga.sdram import ADDRESS_BITS, WORD_BITS

from .ports import PairReadSignature, WriteSignature
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
    act_pair : Out(PairReadSignature)
        Two bytes of the activation buffer at a time, read on the banks' second port.
    weights_write : Out(WriteSignature)
    counted, counted_step : Out; counted_bytes : Out(32)
        A transfer has ended: the program step it was and the bytes it moved.
    """

    def __init__(self, lanes, act_bits, weight_word_bits):
        if lanes & (lanes - 1) or lanes < 4:
            raise ValueError(f"lanes must be a power of two from 4, not {lanes}")
        self.lanes, self.act_bits = lanes, act_bits
        super().__init__({
            "commands": In(stream.Signature(DmaCommand(16))),
            "clear": In(1), "done": Out(16), "idle": Out(1),
            "sdram": Out(SdramPort()),
            "act_write": Out(WriteSignature(act_bits, 8 * lanes, lanes)),
            "act_write_ready": In(1),
            "act_pair": Out(PairReadSignature(act_bits)),
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
        reads_idle = self._moves(m, x)

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
                # A run: its words, and where the first word's low byte is on chip (one
                # before the run's first byte if it starts on an odd SDRAM byte).
                with m.If((x.runs == 0) | (x.length == 0)):
                    m.next = "FINISH"
                with m.Else():
                    m.d.sync += [x.word.eq(first_word), x.last.eq(last_word),
                                 x.at.eq(x.local - x.sdram[0]), x.start.eq(x.sdram),
                                 x.end.eq(x.sdram + x.length)]
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += x.reading.eq(1)
                with m.If(self._issued_last):
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

    def _moves(self, m, x):
        """The words of a run are read one by one with a tag each (state ISSUE): from the
        SDRAM for a transfer into a buffer, as byte pairs from the activation buffer for one
        out of it. Their answers, in order, are written where they go: two bytes into the
        activation buffer (when the units leave its write port free), half a word of the
        weight buffer, or a word of the SDRAM. Returns a signal: nothing is in flight."""
        self._issued_last = Signal()
        depth = READS_IN_FLIGHT + 2
        m.submodules.tags = tags = SyncFIFOBuffered(width=_Tag.size, depth=depth)
        m.submodules.answers = answers = SyncFIFOBuffered(width=WORD_BITS, depth=depth)
        in_flight = Signal(range(depth + 1))
        out = x.kind == DMA_OUT
        request, pair = self.sdram.requests, self.act_pair
        tag = Signal(_Tag)
        # Out of the buffer the tag carries the SDRAM word, into it the local address.
        m.d.comb += [tag.at.eq(Mux(out, x.word, x.at)),
                     tag.lo.eq(Cat(0, x.word) >= x.start), tag.hi.eq(Cat(1, x.word) < x.end)]
        room = x.reading & (in_flight < READS_IN_FLIGHT) & tags.w_rdy
        taken = Signal()
        # A pair read is offered from registers (the banks lie across the chip): `taken`
        # loads the next one as the memory accepts the one before; its tag goes into the
        # FIFO when the memory accepts it. (`in_flight` counts it from `taken`.)
        offered, offered_addr = Signal(), Signal(len(pair.addr))
        offered_tag = Signal(_Tag)
        accepted = offered & pair.ready
        with m.If(out):
            m.d.comb += [pair.en.eq(offered), pair.addr.eq(offered_addr),
                         taken.eq(room & (~offered | accepted)),
                         tags.w_en.eq(accepted), tags.w_data.eq(offered_tag),
                         answers.w_en.eq(pair.valid), answers.w_data.eq(pair.data)]
            with m.If(taken):
                m.d.sync += [offered.eq(1), offered_addr.eq(x.at), offered_tag.eq(tag)]
            with m.Elif(accepted):
                m.d.sync += offered.eq(0)
        with m.Else():
            m.d.comb += [request.valid.eq(room), request.payload.address.eq(x.word),
                         request.payload.write.eq(0), taken.eq(room & request.ready),
                         tags.w_en.eq(taken), tags.w_data.eq(tag),
                         answers.w_en.eq(self.sdram.responses.valid),
                         answers.w_data.eq(self.sdram.responses.payload)]
        with m.If(taken):
            m.d.sync += [x.word.eq(x.word + 1), x.at.eq(x.at + 2)]
            m.d.comb += self._issued_last.eq(x.word == x.last)
        # An answer and its tag: written where they go.
        head = data.View(_Tag, tags.r_data)
        word = answers.r_data
        both = tags.r_rdy & answers.r_rdy
        w, ww = self.act_write, self.weights_write
        m.d.comb += [
            w.addr.eq(head.at), w.data.eq(word), w.mask.eq(Cat(head.lo, head.hi)),
            ww.addr.eq(head.at[2:]), ww.data.eq(Cat(word, word)),
            ww.mask.eq(Mux(head.at[1], Cat(0, 0, head.lo, head.hi), Cat(head.lo, head.hi))),
        ]
        written = Signal()
        with m.If(both & out):
            m.d.comb += [request.valid.eq(1), request.payload.write.eq(1),
                         request.payload.address.eq(head.at),
                         request.payload.data.eq(word),
                         request.payload.mask.eq(Cat(head.lo, head.hi)),
                         written.eq(request.ready)]
        with m.Elif(both & (x.kind == DMA_WEIGHTS)):
            m.d.comb += [ww.en.eq(1), written.eq(1)]
        with m.Elif(both):
            m.d.comb += [w.en.eq(1), written.eq(self.act_write_ready)]
        m.d.comb += [tags.r_en.eq(written), answers.r_en.eq(written)]
        m.d.sync += in_flight.eq(in_flight + taken - written)
        return (in_flight == 0) & ~tags.r_rdy


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
        self.reading = Signal(name="reading")
