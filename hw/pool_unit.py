"""Pool unit: 3x3 stride-2 ceil-mode max pooling and the global sum of the class scores."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .activation_memory import ReadSignature, WriteSignature

__all__ = ["PoolUnit"]


def _max(a, b):
    return Mux(a > b, a, b)


def _tree_sum(values):
    """Balanced adder tree (a chain would be ``lanes`` adders deep)."""
    while len(values) > 1:
        values = [a + b for a, b in zip(values[::2], values[1::2])] + values[len(values) & ~1:]
    return values[0]


class PoolUnit(wiring.Component):
    """Max pooling works on segments of ``lanes // 2 - 1`` outputs of one output row: three
    wide reads of input rows (``2 * lanes - 2`` bytes would be needed for more), a vertical
    max per lane, then a horizontal max over lanes 2j..2j+2. Positions past the input's edge
    read as 0, which leaves every max unchanged: activations are unsigned and ceil mode keeps
    at least one in-range element in each window.

    The global sum adds each channel plane ``lanes`` bytes per cycle and writes one
    little-endian int32 per channel.

    Members
    -------
    start, global_sum : In(1)
    src, dst, channels, in_h, in_w, out_h, out_w : In
    done : Out(1)
    act_read : Out(ReadSignature); act_write : Out(WriteSignature)
    """

    def __init__(self, config):
        self.config = c = config
        a, s = c.act_addr_bits, c.side_bits
        super().__init__({
            "start": In(1), "global_sum": In(1),
            "src": In(a), "dst": In(a), "channels": In(16),
            "in_h": In(s), "in_w": In(s), "out_h": In(s), "out_w": In(s),
            "done": Out(1),
            "act_read": Out(ReadSignature(c.lanes, a)),
            "act_write": Out(WriteSignature(c.lanes, a)),
        })

    def elaborate(self, platform):
        m = Module()
        N, A, S = self.config.lanes, self.config.act_addr_bits, self.config.side_bits
        seg = N // 2 - 1                     # outputs per segment
        lanes = range(N)
        data = [self.act_read.data[8 * l: 8 * l + 8] for l in lanes]

        chan = Signal(16)
        in_plane, out_plane = Signal(A), Signal(A)
        yo, x0 = Signal(S), Signal(S)
        row = Signal(2)
        in_row = Signal(A)                   # address of input row 2*yo in this plane
        vmax = [Signal(8, name=f"vmax{l}") for l in lanes]
        col_ok = Signal(N)                   # lane's input column is inside the row
        row_ok = Signal()
        pend, pend_first = Signal(), Signal()
        plane_in = Signal(2 * S)
        total = Signal(32)
        chunk = Signal(2 * S + 1)            # bytes of the plane before the chunk in flight

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [chan.eq(0), in_plane.eq(self.src), out_plane.eq(self.dst),
                                 yo.eq(0), x0.eq(0), row.eq(0), in_row.eq(self.src),
                                 plane_in.eq(self.in_h * self.in_w), pend.eq(0),
                                 chunk.eq(0), total.eq(0)]
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):
                with m.If(self.global_sum):
                    m.next = "SUM"
                with m.Else():
                    m.next = "READ"

            # ---- max pooling: rows 2*yo, 2*yo+1, 2*yo+2 of one segment -----------------------
            with m.State("READ"):
                m.d.comb += [self.act_read.en.eq(1),
                             self.act_read.addr.eq(in_row + row * self.in_w + 2 * x0)]
                m.d.sync += [pend.eq(1), pend_first.eq(row == 0),
                             row_ok.eq(2 * yo + row < self.in_h),
                             col_ok.eq(Cat(2 * x0 + l < self.in_w for l in lanes))]
                with m.If(row == 2):
                    m.d.sync += row.eq(0)
                    m.next = "LAST"
                with m.Else():
                    m.d.sync += row.eq(row + 1)
            with m.State("LAST"):
                m.d.sync += pend.eq(0)
                m.next = "WRITE"
            with m.State("WRITE"):
                out = Cat(_max(_max(vmax[2 * j], vmax[2 * j + 1]), vmax[2 * j + 2])
                          for j in range(seg))
                m.d.comb += [
                    self.act_write.en.eq(1),
                    self.act_write.addr.eq(out_plane + yo * self.out_w + x0),
                    self.act_write.data.eq(out),
                    self.act_write.mask.eq(Cat(x0 + j < self.out_w for j in range(seg))),
                ]
                with m.If(x0 + seg < self.out_w):
                    m.d.sync += x0.eq(x0 + seg)
                    m.next = "READ"
                with m.Elif(yo + 1 < self.out_h):
                    m.d.sync += [x0.eq(0), yo.eq(yo + 1), in_row.eq(in_row + 2 * self.in_w)]
                    m.next = "READ"
                with m.Elif(chan + 1 < self.channels):
                    m.d.sync += [x0.eq(0), yo.eq(0), chan.eq(chan + 1),
                                 in_row.eq(in_plane + plane_in), in_plane.eq(in_plane + plane_in),
                                 out_plane.eq(out_plane + self.out_h * self.out_w)]
                    m.next = "READ"
                with m.Else():
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"

            # ---- global sum: one chunk of N bytes per cycle ---------------------------------
            with m.State("SUM"):
                m.d.comb += [self.act_read.en.eq(1), self.act_read.addr.eq(in_plane + chunk)]
                m.d.sync += [pend.eq(1), pend_first.eq(chunk == 0),
                             col_ok.eq(Cat(chunk + l < plane_in for l in lanes))]
                with m.If(chunk + N >= plane_in):
                    m.d.sync += chunk.eq(0)
                    m.next = "SUM_LAST"
                with m.Else():
                    m.d.sync += chunk.eq(chunk + N)
            with m.State("SUM_LAST"):
                m.d.sync += pend.eq(0)
                m.next = "SUM_WRITE"
            with m.State("SUM_WRITE"):
                m.d.comb += [
                    self.act_write.en.eq(1),
                    self.act_write.addr.eq(out_plane),
                    self.act_write.data.eq(total),
                    self.act_write.mask.eq(0b1111),
                ]
                m.d.sync += [out_plane.eq(out_plane + 4), in_plane.eq(in_plane + plane_in),
                             chan.eq(chan + 1)]
                with m.If(chan + 1 < self.channels):
                    m.next = "SUM"
                with m.Else():
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"

        # Arriving data: vertical max (pool) or chunk sum (global sum).
        with m.If(pend & ~self.global_sum):
            for l in lanes:
                v = Mux(col_ok[l] & row_ok, data[l], 0)
                m.d.sync += vmax[l].eq(Mux(pend_first, v, _max(vmax[l], v)))
        chunk_sum = _tree_sum([Mux(col_ok[l], data[l], 0) for l in lanes])
        with m.If(pend & self.global_sum):
            m.d.sync += total.eq(Mux(pend_first, 0, total) + chunk_sum)
        return m
