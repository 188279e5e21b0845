"""Requantiser: one accumulator per cycle to its uint8 output, pipelined for an FPGA.

``clamp((acc * M + 2**(S-1)) >> S, 0, 255)``, the arithmetic of
:func:`squeezefpga.golden.quantize.requantize`, bit for bit. The conv engine shares a few of
these among its lanes: requantisation happens once per output, not once per MAC.
"""

from amaranth import Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from squeezefpga.blob_format import MULTIPLIER_BITS

from .ports import delay

__all__ = ["Requantizer"]

#: |acc * M| < 2**46 (32-bit accumulator, 15-bit multiplier): with S >= 48 the rounded
#: quotient is 0 whatever the sign, and below that 48-bit arithmetic is exact.
PRODUCT_BITS = 48


class Requantizer(wiring.Component):
    """Five registered stages: operands (the multiplier's input registers), the product (its
    output register, two MULT18X18D), plus rounding, the arithmetic shift, the clamp.

    Parameters
    ----------
    tag_bits : int
        Bits carried alongside each value.

    Members
    -------
    valid : In(1); acc : In(signed(32)); tag : In(tag_bits)
        One accumulator per cycle.
    multiplier : In(15); shift : In(6)
        The layer's M and S (held for the layer).
    out_valid : Out(1); out : Out(8); out_tag : Out(tag_bits)
        The result :attr:`LATENCY` cycles later.
    """

    LATENCY = 5

    def __init__(self, tag_bits=1):
        super().__init__({
            "valid": In(1), "acc": In(signed(32)), "tag": In(tag_bits),
            "multiplier": In(MULTIPLIER_BITS), "shift": In(6),
            "out_valid": Out(1), "out": Out(8), "out_tag": Out(tag_bits),
        })

    def elaborate(self, platform):
        m = Module()
        acc = Signal(signed(32))
        multiplier = Signal(MULTIPLIER_BITS)
        product = Signal(signed(PRODUCT_BITS))
        rounded = Signal(signed(PRODUCT_BITS))
        shifted = Signal(signed(PRODUCT_BITS))
        rounding = Signal(PRODUCT_BITS)        # 2**(S-1), a layer constant
        tiny = Signal()                          # S >= 48: the result is 0
        m.d.sync += [
            rounding.eq(Mux(self.shift < PRODUCT_BITS,
                            Const(1, PRODUCT_BITS) << (self.shift - 1)[:6], 0)),
            tiny.eq(self.shift >= PRODUCT_BITS),
            acc.eq(self.acc), multiplier.eq(self.multiplier),
            product.eq(acc * multiplier),
            rounded.eq(product + rounding),
            shifted.eq(rounded >> self.shift[:6]),
            self.out.eq(Mux((shifted < 0) | tiny, 0, Mux(shifted > 255, 255, shifted[:8]))),
        ]
        m.d.comb += self.out_valid.eq(delay(m, self.valid, self.LATENCY, "valid"))
        m.d.comb += self.out_tag.eq(delay(m, self.tag, self.LATENCY, "tag"))
        return m
