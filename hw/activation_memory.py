"""Banked activation memory: one wide read and one wide write of ``lanes`` consecutive bytes
from any byte address per cycle."""

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .ram import Ram

__all__ = ["ReadSignature", "WriteSignature", "ActivationMemory", "rotate_left", "rotate_right"]


def ReadSignature(lanes, addr_bits):
    """Wide read: ``data`` (lane l = byte at ``addr + l``) is valid the cycle after ``en``."""
    return wiring.Signature({
        "addr": Out(addr_bits),
        "en": Out(1),
        "data": In(8 * lanes),
    })


def WriteSignature(lanes, addr_bits):
    """Wide write: byte lane l of ``data`` goes to ``addr + l`` where ``mask`` bit l is set."""
    return wiring.Signature({
        "addr": Out(addr_bits),
        "en": Out(1),
        "data": Out(8 * lanes),
        "mask": Out(lanes),
    })


def rotate_left(value, amount, width):
    """``value`` (``width`` bits) rotated left by the variable ``amount`` (< width)."""
    return (Cat(value, value) << amount)[width: 2 * width]


def rotate_right(value, amount, width):
    """``value`` (``width`` bits) rotated right by the variable ``amount`` (< width)."""
    return (Cat(value, value) >> amount)[:width]


class ActivationMemory(wiring.Component):
    """``lanes`` byte-wide banks; byte address a lives in bank ``a % lanes``, row
    ``a // lanes``, so any ``lanes`` consecutive bytes sit in distinct banks.

    Parameters
    ----------
    lanes : int
        Power of two.
    size : int
        Bytes (a multiple of ``lanes``).

    Members
    -------
    read : In(ReadSignature)
    write : In(WriteSignature)
    """

    def __init__(self, lanes, size):
        if lanes & (lanes - 1) or lanes < 2:
            raise ValueError(f"lanes must be a power of two, not {lanes}")
        if size % lanes:
            raise ValueError(f"size {size} is not a multiple of {lanes} lanes")
        self.lanes, self.size = lanes, size
        self.addr_bits = max(1, (size - 1).bit_length())
        super().__init__({
            "read": In(ReadSignature(lanes, self.addr_bits)),
            "write": In(WriteSignature(lanes, self.addr_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        n, shift = self.lanes, (self.lanes - 1).bit_length()
        depth = self.size // n
        r_row, r_off = self.read.addr[shift:], self.read.addr[:shift]
        w_row, w_off = self.write.addr[shift:], self.write.addr[:shift]
        r_off_q = Signal(shift)            # rotation of the read in flight
        with m.If(self.read.en):
            m.d.sync += r_off_q.eq(r_off)
        w_data = rotate_left(self.write.data, w_off * 8, 8 * n)
        w_mask = rotate_left(self.write.mask, w_off, n)
        banks = []
        for b in range(n):
            m.submodules[f"bank{b}"] = bank = Ram(8, depth)
            # Banks below the start offset hold the bytes of the next row (the last bank never).
            r_wrap = (b < r_off) if b < n - 1 else 0
            w_wrap = (b < w_off) if b < n - 1 else 0
            m.d.comb += [
                bank.read_addr.eq(r_row + r_wrap),
                bank.read_en.eq(self.read.en),
                bank.write_addr.eq(w_row + w_wrap),
                bank.write_data.eq(w_data[8 * b: 8 * b + 8]),
                bank.write_en.eq(self.write.en & w_mask[b]),
            ]
            banks.append(bank.read_data)
        # Bank (off + l) % n holds lane l: rotate right by the offset.
        m.d.comb += self.read.data.eq(rotate_right(Cat(*banks), r_off_q * 8, 8 * n))
        return m
