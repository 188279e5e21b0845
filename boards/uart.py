"""UART PHY: 8N1 bytes over a serial line to and from ``lib.stream`` byte streams.

The board's link (docs/PROTOCOL.md) rides on it; the receiver has a small FIFO in front of
the link layer, which takes no byte while it answers (the host sends nothing then anyway).
"""

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UART", "divisor"]


def divisor(clock_hz, baud):
    """Clock cycles per bit; raises ValueError if the baud rate is off by more than 2 %."""
    cycles = round(clock_hz / baud)
    if cycles < 4:
        raise ValueError(f"a {clock_hz / 1e6:g} MHz clock cannot send {baud:,} baud")
    error = abs(clock_hz / cycles - baud) / baud
    if error > 0.02:
        raise ValueError(f"{clock_hz / 1e6:g} MHz gives {clock_hz / cycles:,.0f} baud for "
                         f"{baud:,} ({error:.1%} off, at most 2 % works)")
    return cycles


class UART(wiring.Component):
    """8N1 receiver and transmitter.

    Parameters
    ----------
    cycles_per_bit : int
        From :func:`divisor`.
    rx_depth : int
        Bytes the receive FIFO holds.

    Members
    -------
    rx : In(1); tx : Out(1)
        The line (idle high).
    source : Out(stream.Signature(8))
        Received bytes.
    sink : In(stream.Signature(8))
        Bytes to send.
    overrun : Out(1)
        Pulse when a received byte found the FIFO full (it is lost).
    """

    def __init__(self, cycles_per_bit, rx_depth=64):
        if cycles_per_bit < 4:
            raise ValueError(f"cycles_per_bit must be at least 4, not {cycles_per_bit}")
        self.cycles_per_bit = cycles_per_bit
        self.rx_depth = rx_depth
        super().__init__({
            "rx": In(1, init=1), "tx": Out(1, init=1),
            "source": Out(stream.Signature(8)), "sink": In(stream.Signature(8)),
            "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx_fifo = rx_fifo = fifo.SyncFIFOBuffered(width=8, depth=self.rx_depth)
        m.d.comb += [self.source.payload.eq(rx_fifo.r_data),
                     self.source.valid.eq(rx_fifo.r_rdy),
                     rx_fifo.r_en.eq(self.source.ready)]
        self._receiver(m, rx_fifo)
        self._transmitter(m)
        return m

    def _receiver(self, m, rx_fifo):
        n = self.cycles_per_bit
        line = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(n + n // 2 + 1))
        bits = Signal(8)
        count = Signal(range(9))
        with m.FSM(name="rx"):
            with m.State("IDLE"):
                with m.If(~line):                    # start bit: sample mid-bit from now on
                    m.d.sync += timer.eq(n + n // 2 - 1)
                    m.d.sync += count.eq(0)
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [bits.eq(Cat(bits[1:], line)), count.eq(count + 1),
                                 timer.eq(n - 1)]
                    with m.If(count == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(line):                 # a good stop bit
                        m.d.comb += [rx_fifo.w_data.eq(bits), rx_fifo.w_en.eq(1),
                                     self.overrun.eq(~rx_fifo.w_rdy)]
                    m.next = "IDLE"

    def _transmitter(self, m):
        n = self.cycles_per_bit
        timer = Signal(range(n))
        shift = Signal(10)
        left = Signal(range(11))
        m.d.comb += self.sink.ready.eq(left == 0)
        with m.If(left == 0):
            m.d.comb += self.tx.eq(1)
            with m.If(self.sink.valid):
                m.d.sync += [shift.eq(Cat(Const(0, 1), self.sink.payload, Const(1, 1))), left.eq(10),
                             timer.eq(n - 1)]
        with m.Else():
            m.d.comb += self.tx.eq(shift[0])
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [shift.eq(shift >> 1), left.eq(left - 1), timer.eq(n - 1)]
