"""Fire sequencer: walks the layer program in the weight buffer and runs it step by step."""

from amaranth import Array, Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from squeezefpga.blob_format import DESCRIPTOR, HEADER, OP_CONV, OP_GLOBAL_SUM, OP_MAXPOOL

from .descriptor import DescriptorLayout
from .ports import ReadSignature

__all__ = ["Sequencer", "DESCRIPTOR_WORDS"]

DESCRIPTOR_WORDS = DESCRIPTOR.size // 4
FIRST_DESCRIPTOR_WORD = HEADER.size // 4


class Sequencer(wiring.Component):
    """Runs descriptors ``first`` .. ``last - 1`` of the blob held in the weight buffer with no
    host involvement: fetch the 40-byte descriptor, start the conv engine or the pool unit,
    wait, record the step's cycles.

    Members
    -------
    run : In(1)
        Pulse with ``first`` / ``last`` valid.
    running, error : Out(1)
        ``error`` (sticky until the next run) flags a descriptor the hardware cannot execute.
    mem : Out(ReadSignature); fetching : Out(1)
        Weight buffer read port (the tag is the descriptor word), used while ``fetching``.
    words : Out(DescriptorLayout)
        The current descriptor.
    conv_start, pool_start, pool_global_sum : Out(1); conv_done, pool_done : In(1)
    use_pool : Out(1)
        The pool unit owns the activation memory (else the conv engine).
    memory_idle : In(1)
        No write is in flight in the activation memory: a step ends only once its last
        output has landed, so that the next step reads it.
    layer_we, layer_index : Out; layer_cycles : Out(32)
        Per-step cycle counter writes.
    """

    def __init__(self, config):
        self.config = config
        word_bits = max(1, (config.weight_words - 1).bit_length())
        super().__init__({
            "run": In(1), "first": In(8), "last": In(8),
            "running": Out(1), "error": Out(1),
            "mem": Out(ReadSignature(word_bits, 32, 4)),
            "fetching": Out(1),
            "words": Out(DescriptorLayout),
            "conv_start": Out(1), "conv_done": In(1),
            "pool_start": Out(1), "pool_done": In(1), "pool_global_sum": Out(1),
            "memory_idle": In(1),
            "use_pool": Out(1),
            "layer_we": Out(1), "layer_index": Out(8), "layer_cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        words = Array(Signal(32, name=f"word{i}") for i in range(DESCRIPTOR_WORDS))
        m.d.comb += self.words.eq(Cat(*words))
        desc = self.words
        op, kernel, stride, pad = desc.op, desc.kernel, desc.stride, desc.pad
        index, last = Signal(8), Signal(8)
        k, got = Signal(4), Signal(4)           # descriptor words asked for, words back
        cycles = Signal(32)
        # The step ends in NEXT, which counts too.
        m.d.comb += [self.layer_index.eq(index), self.layer_cycles.eq(cycles + 1)]
        m.d.sync += cycles.eq(cycles + 1)
        supported_conv = (stride == 1) & ((pad == 0) | (pad == 1) & ((kernel == 1)
                                                                      | (kernel == 3)))

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.run):
                    m.d.sync += [index.eq(self.first), last.eq(self.last), self.error.eq(0),
                                 self.running.eq(self.first < self.last)]
                    with m.If(self.first < self.last):
                        m.d.sync += [k.eq(0), got.eq(0), cycles.eq(0)]
                        m.next = "FETCH"
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
            with m.State("DECODE"):       # the units' copy of the descriptor is registered
                m.next = "DISPATCH"
            with m.State("DISPATCH"):
                with m.If((op == OP_CONV) & supported_conv):
                    m.d.comb += self.conv_start.eq(1)
                    m.d.sync += self.use_pool.eq(0)
                    m.next = "CONV"
                with m.Elif((op == OP_MAXPOOL) | (op == OP_GLOBAL_SUM)):
                    m.d.comb += self.pool_start.eq(1)
                    m.d.sync += [self.use_pool.eq(1),
                                 self.pool_global_sum.eq(op == OP_GLOBAL_SUM)]
                    m.next = "POOL"
                with m.Else():
                    m.d.sync += [self.error.eq(1), self.running.eq(0)]
                    m.next = "IDLE"
            with m.State("CONV"):
                with m.If(self.conv_done):
                    m.next = "SETTLE"
            with m.State("POOL"):
                with m.If(self.pool_done):
                    m.next = "SETTLE"
            with m.State("SETTLE"):
                with m.If(self.memory_idle):
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.d.comb += self.layer_we.eq(1)
                m.d.sync += [index.eq(index + 1), k.eq(0), got.eq(0), cycles.eq(0)]
                with m.If(index + 1 < last):
                    m.next = "FETCH"
                with m.Else():
                    m.d.sync += self.running.eq(0)
                    m.next = "IDLE"
        return m
