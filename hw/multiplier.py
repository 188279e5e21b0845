"""A shift-and-add multiplier for layer constants (plane sizes, tap counts): one bit of the
multiplier per cycle. The DSP blocks are the MAC lanes'; products computed once per layer
need no multiplier block and no long combinational path."""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SequentialMultiplier"]


class SequentialMultiplier(wiring.Component):
    """``a * b`` of unsigned operands, ``b_bits`` cycles at most.

    Members
    -------
    start : In(1); a : In(a_bits); b : In(b_bits)
        Pulse with the operands (sampled then).
    busy : Out(1)
    product : Out(a_bits + b_bits)
        Valid once ``busy`` is low again.
    """

    def __init__(self, a_bits, b_bits):
        self.a_bits, self.b_bits = a_bits, b_bits
        super().__init__({"start": In(1), "a": In(a_bits), "b": In(b_bits), "busy": Out(1),
                          "product": Out(a_bits + b_bits)})

    def elaborate(self, platform):
        m = Module()
        a = Signal(self.a_bits + self.b_bits)
        b = Signal(self.b_bits)
        with m.If(self.start):
            m.d.sync += [a.eq(self.a), b.eq(self.b), self.product.eq(0), self.busy.eq(1)]
        with m.Elif(self.busy):
            with m.If(b[0]):
                m.d.sync += self.product.eq(self.product + a)
            m.d.sync += [a.eq(a << 1), b.eq(b >> 1)]
            with m.If(b[1:] == 0):
                m.d.sync += self.busy.eq(0)
        return m
