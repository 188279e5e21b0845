"""Fire sequencer: walks the layer program in the weight buffer and runs it step by step."""

from types import SimpleNamespace

from amaranth import Array, Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from squeezefpga.blob_format import (DESCRIPTOR, HEADER, OP_CONV, OP_DMA, OP_GLOBAL_SUM,
                                     OP_MAXPOOL)

from .descriptor import DescriptorLayout, DmaLayout
from .ports import ReadSignature

__all__ = ["Sequencer", "DESCRIPTOR_WORDS", "DmaCommand"]

DESCRIPTOR_WORDS = DESCRIPTOR.size // 4
FIRST_DESCRIPTOR_WORD = HEADER.size // 4


def DmaCommand(index_bits):
    """What the sequencer hands the DMA engine: a transfer and the step it is."""
    return data.StructLayout({"transfer": DmaLayout, "step": index_bits})


class Sequencer(wiring.Component):
    """Runs descriptors ``first`` .. ``last - 1`` of the program held in the weight buffer
    with no host involvement: fetch the 40-byte descriptor, start the conv engine or the pool
    unit and wait, or (a tiled program's transfer) queue it for the DMA engine and go on;
    record every step's cycles.

    A computation of a tiled program starts only once ``dma_done`` has reached its ``wait``
    (the transfers it needs have ended); the cycles it waits are its stall count. A run ends
    when its last step has and the DMA engine is idle.

    Members
    -------
    run : In(1)
        Pulse with ``first`` / ``last`` valid.
    running, error : Out(1)
        ``error`` (sticky until the next run) flags a descriptor the hardware cannot execute
        (a transfer on a device without a DMA engine among them).
    mem : Out(ReadSignature); fetching : Out(1)
        Weight buffer read port (the tag is the descriptor word), used while ``fetching``.
    words : Out(DescriptorLayout)
        The current descriptor.
    conv_start, pool_start, pool_global_sum : Out(1); conv_done, pool_done : In(1)
    use_pool : Out(1)
        The pool unit owns the activation memory (else the conv engine).
    memory_idle : In(1)
        No write of the units is in flight in the activation memory: a step ends only once
        its last output has landed, so that the next step reads it.
    dma : Out(stream.Signature(DmaCommand)); dma_done : In(16); dma_idle : In(1)
        The DMA engine's queue, the transfers it has ended since the run started, and
        whether it is idle (``has_dma`` false: there is none).
    layer_we, layer_index : Out; layer_cycles, layer_stall : Out(32)
        Per-step counter writes.
    """

    def __init__(self, config, has_dma=False):
        self.config, self.has_dma = config, has_dma
        word_bits = max(1, (config.weight_words - 1).bit_length())
        super().__init__({
            "run": In(1), "first": In(16), "last": In(16),
            "running": Out(1), "error": Out(1),
            "mem": Out(ReadSignature(word_bits, 32, 4)),
            "fetching": Out(1),
            "words": Out(DescriptorLayout),
            "conv_start": Out(1), "conv_done": In(1),
            "pool_start": Out(1), "pool_done": In(1), "pool_global_sum": Out(1),
            "memory_idle": In(1),
            "use_pool": Out(1),
            "dma": Out(stream.Signature(DmaCommand(16))),
            "dma_done": In(16), "dma_idle": In(1),
            "layer_we": Out(1), "layer_index": Out(16), "layer_cycles": Out(32),
            "layer_stall": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        words = Array(Signal(32, name=f"word{i}") for i in range(DESCRIPTOR_WORDS))
        m.d.comb += self.words.eq(Cat(*words))
        desc = self.words
        op, kernel, stride, pad = desc.op, desc.kernel, desc.stride, desc.pad
        index, last = Signal(16), Signal(16)
        k, got = Signal(4), Signal(4)           # descriptor words asked for, words back
        cycles, stall = Signal(32), Signal(32)
        # The step ends in NEXT, which counts too.
        m.d.comb += [self.layer_index.eq(index), self.layer_cycles.eq(cycles + 1),
                     self.layer_stall.eq(stall)]
        m.d.sync += cycles.eq(cycles + 1)
        m.d.comb += [self.dma.payload.transfer.eq(self.words), self.dma.payload.step.eq(index)]
        supported_conv = (stride == 1) & ((pad == 0) | (pad == 1) & ((kernel == 1)
                                                                      | (kernel == 3)))
        # The transfers it waits for have ended (registered: a cycle late at most).
        ready = Signal()
        m.d.sync += ready.eq(self.dma_done >= desc.wait)
        kind = SimpleNamespace(dma=Signal(name="is_dma"), conv=Signal(name="is_conv"),
                               pool=Signal(name="is_pool"), known=Signal(name="is_known"))

        # SETTLE decides on a register: whether the memories were idle (and the transfers
        # done) in its cycle before (the memories' idle gathers every unit's pipeline).
        settled, final = Signal(), Signal()
        m.d.sync += final.eq(index + 1 == last)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.run):
                    # The host port's command is taken into registers and compared in BEGIN
                    # (running from now: the port waits on it the cycle after).
                    m.d.sync += [index.eq(self.first), last.eq(self.last), self.error.eq(0),
                                 self.running.eq(1), k.eq(0), got.eq(0), cycles.eq(0),
                                 stall.eq(0)]
                    m.next = "BEGIN"
            with m.State("BEGIN"):          # counted in the first step's cycles
                with m.If(index < last):
                    m.next = "FETCH"
                with m.Else():
                    m.d.sync += self.running.eq(0)
                    m.next = "IDLE"
            with m.State("FETCH"):
                m.d.comb += self.fetching.eq(1)
                with m.If(k < DESCRIPTOR_WORDS):
                    # index * 10 as shifts: a constant product needs no multiplier block.
                    assert DESCRIPTOR_WORDS == 10
                    m.d.comb += [self.mem.en.eq(1), self.mem.tag.eq(k),
                                 self.mem.addr.eq(FIRST_DESCRIPTOR_WORD + (index << 3)
                                                  + (index << 1) + k)]
                    m.d.sync += k.eq(k + 1)
                with m.If(self.mem.valid):
                    m.d.sync += [words[self.mem.rtag].eq(self.mem.data), got.eq(got + 1)]
                with m.Elif(got == DESCRIPTOR_WORDS):
                    m.next = "DECODE"
            with m.State("DECODE"):
                # What the step is, decided into registers (the units' copy of the descriptor
                # is registered meanwhile): DISPATCH acts on registers only.
                m.d.sync += [kind.dma.eq(op == OP_DMA), kind.conv.eq(op == OP_CONV),
                             kind.pool.eq((op == OP_MAXPOOL) | (op == OP_GLOBAL_SUM)),
                             kind.known.eq((op == OP_DMA) & int(self.has_dma)
                                           | (op == OP_CONV) & supported_conv
                                           | (op == OP_MAXPOOL) | (op == OP_GLOBAL_SUM)),
                             self.pool_global_sum.eq(op == OP_GLOBAL_SUM)]
                m.next = "DISPATCH"
            with m.State("DISPATCH"):
                with m.If(~kind.known):
                    m.d.sync += [self.error.eq(1), self.running.eq(0)]
                    m.next = "IDLE"
                with m.Elif(kind.dma):
                    m.d.sync += self.dma.valid.eq(1)
                    m.next = "QUEUE"
                with m.Elif(~ready):
                    m.d.sync += stall.eq(stall + 1)
                with m.Elif(kind.conv):
                    m.d.sync += [self.use_pool.eq(0), self.conv_start.eq(1)]
                    m.next = "START_CONV"
                with m.Else():
                    m.d.sync += [self.use_pool.eq(1), self.pool_start.eq(1)]
                    m.next = "START_POOL"
            # The transfer is offered, and a unit started, from registers (set in DISPATCH):
            # the DMA engine's queue and the units lie apart from the sequencer.
            with m.State("QUEUE"):
                with m.If(self.dma.ready):
                    m.d.sync += self.dma.valid.eq(0)
                    m.next = "SETTLE"
            with m.State("START_CONV"):
                m.d.sync += self.conv_start.eq(0)
                m.next = "CONV"
            with m.State("START_POOL"):
                m.d.sync += self.pool_start.eq(0)
                m.next = "POOL"
            with m.State("CONV"):
                with m.If(self.conv_done):
                    m.next = "SETTLE"
            with m.State("POOL"):
                with m.If(self.pool_done):
                    m.next = "SETTLE"
            with m.State("SETTLE"):
                # The run's last step also waits for its transfers to end: the run ends when
                # they have, and its cycles are the step's.
                drained = (self.dma_idle | ~final) if self.has_dma else 1
                with m.If(settled):
                    m.next = "NEXT"
                m.d.sync += settled.eq(self.memory_idle & drained)
            with m.State("NEXT"):
                m.d.comb += self.layer_we.eq(1)
                m.d.sync += [index.eq(index + 1), k.eq(0), got.eq(0), cycles.eq(0),
                             stall.eq(0), settled.eq(0)]
                with m.If(index + 1 < last):
                    m.next = "FETCH"
                with m.Else():
                    m.d.sync += self.running.eq(0)
                    m.next = "IDLE"
        return m
