"""Pool unit: 3x3 stride-2 ceil-mode max pooling and the global sum of the class scores,
both streaming: a wide read is issued every cycle and the answers are folded as they come
back from the pipelined activation memory."""

from types import SimpleNamespace

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .multiplier import SequentialMultiplier
from .ports import LANES_PER_COPY, ReadSignature, WriteSignature, delay, lane_groups, replicate

__all__ = ["PoolUnit", "pool_tag_layout"]



def _max(a, b):
    return Mux(a > b, a, b)


def _lanes_below(count, lanes):
    """Mask of the lanes l < ``count`` (a thermometer code; ``count`` is clamped)."""
    return Cat(count > l for l in range(lanes))


def pool_tag_layout(config):
    """What a pool read carries through the memory: enough to fold and write its answer."""
    bits = config.lanes.bit_length()
    return data.StructLayout({
        "row": 2,                           # 0, 1, 2: rows 2*yo .. 2*yo+2 of a segment
        "row_ok": 1,                        # that row is inside the input
        "cols": bits,                       # lanes inside the input row (the rest read as 0)
        "first": 1, "last": 1,              # global sum: first / last chunk of a channel
        "out_addr": config.act_addr_bits,   # where the segment / the channel's sum goes
        "out_count": bits,                  # outputs of the segment
    })


class PoolUnit(wiring.Component):
    """Max pooling works on segments of ``lanes // 2 - 1`` outputs of one output row: three
    wide reads of input rows, a vertical max per lane, then a horizontal max over lanes
    2j..2j+2. Positions past the input's edge read as 0, which leaves every max unchanged:
    activations are unsigned and ceil mode keeps at least one in-range element in each
    window.

    The global sum adds each channel plane ``lanes`` bytes per cycle (an adder tree in two
    registered stages) and writes one little-endian int32 per channel.

    A max pool on a band may take its first window row from elsewhere (``carry_valid``): the
    last conv row of the band before, channel c's at ``carry + c * carry_stride``; ``in_h``
    then counts it, and the other ``in_h - 1`` rows of each channel are packed at ``src``.

    Members
    -------
    start, global_sum : In(1)
    src, dst, channels, in_h, in_w, out_h, out_w : In
    carry_valid : In(1); carry : In; carry_stride : In
    done : Out(1)
        Pulse when every output is written (given to the memory's write port).
    act_read : Out(ReadSignature); act_write : Out(WriteSignature)
    """

    def __init__(self, config):
        self.config = c = config
        a, s = c.act_addr_bits, c.side_bits
        self.tag = pool_tag_layout(c)
        super().__init__({
            "start": In(1), "global_sum": In(1),
            "src": In(a), "dst": In(a), "channels": In(16),
            "in_h": In(s), "in_w": In(s), "out_h": In(s), "out_w": In(s),
            "carry_valid": In(1), "carry": In(a), "carry_stride": In(2 * s),
            "done": Out(1),
            "act_read": Out(ReadSignature(a, 8 * c.lanes, self.tag.size)),
            "act_write": Out(WriteSignature(a, 8 * c.lanes, c.lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        issuing, in_flight = Signal(), Signal(range(64))
        issued = Signal()
        m.d.comb += issued.eq(self.act_read.en)
        # The request is computed here and registered: the memory gets it from registers.
        request = SimpleNamespace(en=Signal(), addr=Signal(len(self.act_read.addr)),
                                  tag=Signal(self.tag))
        m.d.sync += [self.act_read.en.eq(request.en), self.act_read.addr.eq(request.addr),
                     self.act_read.tag.eq(request.tag)]
        self._issue(m, request, issuing)
        answers = self._answers(m, platform)
        m.d.sync += in_flight.eq(in_flight + issued - self.act_read.valid)
        # Done once nothing is issued or in flight, and the folding stages have written.
        finishing = Signal()
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(~issuing & ~issued & (in_flight == 0) & ~self.act_read.valid
                          & ~answers):
                    m.d.comb += finishing.eq(1)
                    m.next = "IDLE"
        m.d.comb += self.done.eq(finishing)
        return m

    # -- issue: one wide read per cycle --------------------------------------------------------

    def _issue(self, m, request, issuing):
        c = self.config
        N, A, S = c.lanes, c.act_addr_bits, c.side_bits
        seg = N // 2 - 1                     # outputs per segment
        tag = request.tag
        chan = Signal(16)
        in_plane, out_plane = Signal(A), Signal(A)
        yo, x0, row = Signal(S), Signal(S), Signal(2)
        in_row = Signal(A)                   # address of input row 2*yo in this plane
        carry_row = Signal(A)                # this channel's carried row
        plane_in = Signal(2 * S)
        # Global sum: this chunk's address, the plane's bytes from it on, whether it is the
        # plane's first / last (registers: no subtract-and-compare before the FSM's next).
        sum_at, left = Signal(A), Signal(2 * S)
        sum_first, sum_last = Signal(), Signal()
        out_count = self.out_w - x0
        out_row = Signal(A)                  # address of output row yo in this plane
        plane_out = Signal(2 * S)
        m.submodules.multiplier = mul = SequentialMultiplier(S, S)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    # With a carried row, row r >= 1 of a channel is at in_row + r * in_w:
                    # the packed rows start one row past in_row.
                    first = self.src - Mux(self.carry_valid, self.in_w, 0)
                    m.d.comb += [mul.start.eq(1), mul.b.eq(self.in_w),
                                 mul.a.eq(self.in_h - self.carry_valid)]
                    m.d.sync += [chan.eq(0), in_plane.eq(first), out_plane.eq(self.dst),
                                 yo.eq(0), x0.eq(0), row.eq(0), in_row.eq(first),
                                 out_row.eq(self.dst), carry_row.eq(self.carry)]
                    m.next = "PLANE_IN"
            with m.State("PLANE_IN"):           # the plane sizes, on the multiplier
                m.d.comb += issuing.eq(1)
                with m.If(~mul.busy):
                    m.d.sync += plane_in.eq(mul.product)
                    m.d.comb += [mul.start.eq(1), mul.a.eq(self.out_h), mul.b.eq(self.out_w)]
                    m.next = "PLANE_OUT"
            with m.State("PLANE_OUT"):
                m.d.comb += issuing.eq(1)
                with m.If(~mul.busy):
                    m.d.sync += plane_out.eq(mul.product)
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):
                m.d.comb += issuing.eq(1)
                m.d.sync += [sum_at.eq(in_plane), left.eq(plane_in), sum_first.eq(1),
                             sum_last.eq(plane_in <= N)]
                with m.If(self.global_sum):
                    m.next = "SUM"
                with m.Else():
                    m.next = "POOL"
            with m.State("POOL"):
                carried = self.carry_valid & (yo == 0) & (row == 0)
                m.d.comb += [issuing.eq(1), request.en.eq(1),
                             request.addr.eq(Mux(carried, carry_row, in_row + Mux(
                                 row == 1, self.in_w, Mux(row == 2, self.in_w << 1, 0)))
                                             + (x0 << 1)),
                             tag.row.eq(row), tag.row_ok.eq((yo << 1) + row < self.in_h),
                             tag.cols.eq(Mux(self.in_w - (x0 << 1) > N, N,
                                             self.in_w - (x0 << 1))),
                             tag.out_addr.eq(out_row + x0),
                             tag.out_count.eq(Mux(out_count > seg, seg, out_count))]
                m.d.sync += row.eq(row + 1)
                with m.If(row == 2):
                    m.d.sync += row.eq(0)
                    with m.If(x0 + seg < self.out_w):
                        m.d.sync += x0.eq(x0 + seg)
                    with m.Elif(yo + 1 < self.out_h):
                        m.d.sync += [x0.eq(0), yo.eq(yo + 1),
                                     in_row.eq(in_row + (self.in_w << 1)),
                                     out_row.eq(out_row + self.out_w)]
                    with m.Elif(chan + 1 < self.channels):
                        m.d.sync += [x0.eq(0), yo.eq(0), chan.eq(chan + 1),
                                     in_row.eq(in_plane + plane_in),
                                     in_plane.eq(in_plane + plane_in),
                                     out_row.eq(out_plane + plane_out),
                                     out_plane.eq(out_plane + plane_out),
                                     carry_row.eq(carry_row + self.carry_stride)]
                    with m.Else():
                        m.next = "IDLE"
            with m.State("SUM"):
                m.d.comb += [issuing.eq(1), request.en.eq(1), request.addr.eq(sum_at),
                             tag.first.eq(sum_first), tag.last.eq(sum_last),
                             tag.cols.eq(Mux(sum_last, left, N)),
                             tag.out_addr.eq(out_plane)]
                m.d.sync += sum_first.eq(0)
                with m.If(sum_last):
                    next_plane = in_plane + plane_in
                    m.d.sync += [in_plane.eq(next_plane), sum_at.eq(next_plane),
                                 left.eq(plane_in), sum_first.eq(1),
                                 sum_last.eq(plane_in <= N),
                                 out_plane.eq(out_plane + 4), chan.eq(chan + 1)]
                    with m.If(chan + 1 == self.channels):
                        m.next = "IDLE"
                with m.Else():
                    m.d.sync += [sum_at.eq(sum_at + N), left.eq(left - N),
                                 sum_last.eq(left <= 2 * N)]

    # -- answers: fold and write ---------------------------------------------------------------

    def _answers(self, m, platform):
        """Fold the answers; return a signal that is high while a result is still on its way
        to the write port."""
        c = self.config
        N = c.lanes
        seg = N // 2 - 1
        # The memory's answer, registered: its rotation's last stage drives no fold logic.
        # What every lane reads of it (the row, the columns, whether to fold) has one copy
        # per LANES_PER_COPY lanes, so that no register drives the logic of all the lanes.
        answer = Signal(self.tag, name="answer")
        valid = Signal(name="answer_valid")
        lane_data = Signal(8 * N, name="answer_data")
        m.d.sync += [answer.eq(self.act_read.rtag), valid.eq(self.act_read.valid),
                     lane_data.eq(self.act_read.data)]
        lanes = [lane_data[8 * l: 8 * l + 8] for l in range(N)]
        early = data.View(self.tag, self.act_read.rtag)
        fields = data.StructLayout({"fold": 1, "row": 2, "row_ok": 1, "cols": len(early.cols)})
        copies = [data.View(fields, copy) for copy in replicate(
            m, platform, Cat(self.act_read.valid & ~self.global_sum, early.row, early.row_ok,
                             early.cols), lane_groups(N), "fold")]
        copy = [copies[l // LANES_PER_COPY] for l in range(N)]
        cols = Cat(copy[l].cols > l for l in range(N))

        # Max pooling: vertical max per lane, then (a cycle later) the horizontal max.
        vmax = [Signal(8, name=f"vmax{l}") for l in range(N)]
        pool_ready, pool_addr, pool_count = Signal(), Signal(len(answer.out_addr)), \
            Signal(len(answer.out_count))
        m.d.sync += pool_ready.eq(valid & ~self.global_sum & (answer.row == 2))
        for l in range(N):
            with m.If(copy[l].fold):
                v = Mux(cols[l] & copy[l].row_ok, lanes[l], 0)
                m.d.sync += vmax[l].eq(Mux(copy[l].row == 0, v, _max(vmax[l], v)))
        with m.If(valid & ~self.global_sum):
            with m.If(answer.row == 2):
                m.d.sync += [pool_addr.eq(answer.out_addr), pool_count.eq(answer.out_count)]
        pool_data = Signal(8 * N)
        pool_write, pool_write_addr, pool_mask = Signal(), Signal(len(pool_addr)), Signal(N)
        m.d.sync += [pool_write.eq(pool_ready),
                     pool_data.eq(Cat(_max(_max(vmax[2 * j], vmax[2 * j + 1]), vmax[2 * j + 2])
                                      for j in range(seg))),
                     pool_write_addr.eq(pool_addr),
                     pool_mask.eq(_lanes_below(pool_count, seg))]

        # Global sum: masked lanes, groups of 8 added and registered, then the groups, then
        # the channel's running total.
        group = 8 if N >= 8 else N
        partial = [Signal(11, name=f"sum_group{g}") for g in range(N // group)]
        for g in range(N // group):
            values = [Mux(cols[l], lanes[l], 0) for l in range(g * group, (g + 1) * group)]
            while len(values) > 1:
                values = [a + b for a, b in zip(values[::2], values[1::2])]
            m.d.sync += partial[g].eq(values[0])
        flags = delay(m, Cat(valid & self.global_sum, answer.first, answer.last,
                             answer.out_addr), 1, "sum_flags")
        chunk_sum = Signal(32)
        values = list(partial)
        while len(values) > 1:
            values = [a + b for a, b in zip(values[::2], values[1::2])] + values[len(values) & ~1:]
        m.d.sync += chunk_sum.eq(values[0])
        flags2 = delay(m, flags, 1, "sum_flags")
        total = Signal(32)
        sum_write, sum_addr = Signal(), Signal(len(answer.out_addr))
        new_total = Mux(flags2[1], 0, total) + chunk_sum
        m.d.sync += sum_write.eq(0)
        with m.If(flags2[0]):
            m.d.sync += total.eq(new_total)
            with m.If(flags2[2]):
                m.d.sync += [sum_write.eq(1), sum_addr.eq(flags2[3:])]

        w = self.act_write
        with m.If(pool_write):
            m.d.comb += [w.en.eq(1), w.addr.eq(pool_write_addr), w.data.eq(pool_data),
                         w.mask.eq(pool_mask)]
        with m.Elif(sum_write):
            m.d.comb += [w.en.eq(1), w.addr.eq(sum_addr), w.data.eq(total),
                         w.mask.eq(Const(0b1111, N))]
        pending = Signal()
        m.d.comb += pending.eq(valid | pool_ready | pool_write | flags[0] | flags2[0]
                               | sum_write)
        return pending
