"""Conv engine: N MAC lanes over N consecutive pixels of a row-flattened input plane.

For every output channel the decoded list of non-zero weights is replayed once per tile of N
grid positions; each weight is broadcast to all lanes, and lane l reads the input byte at
``src + q0 + l + offset(tap)`` — N consecutive bytes, one wide read of the banked activation
memory. 3x3 padding is a per-lane mask; the polyphase conv1 ("valid") and conv10's 1x1 pad 1
("border") write their outputs row segment by row segment. docs/ARCHITECTURE.md has the
picture; golden/integer_model.py is the arithmetic this must match bit for bit.

The pipeline, every stage registered (an FPGA design, not only a simulation):

    issue -> fetch (list -> tap table, codebook) -> address -> [activation memory]
          -> masks -> multiply (one MULT18X18D per lane) -> accumulate
          -> capture -> requantise (shared units) -> collect -> write
"""

from types import SimpleNamespace

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from squeezefpga.blob_format import CODE_BITS, MULTIPLIER_BITS

from .ports import LANES_PER_COPY, ReadSignature, WriteSignature, lane_groups, replicate
from .requantizer import Requantizer
from .multiplier import SequentialMultiplier
from .weight_decoder import WeightDecoder

__all__ = ["ConvEngine", "tile_layout", "tap_layout"]

#: Lanes per requantiser: requantisation runs once per output, time-shared.
LANES_PER_REQUANTIZER = 16


def tile_layout(config):
    """Where a tile's outputs go (carried from the issue to the writer)."""
    S, A = config.side_bits, config.act_addr_bits
    return data.StructLayout({
        "border": 1,                # conv10's bubble tile: writes the border
        "q0": 2 * S,                # grid position of lane 0
        "x0": S, "y0": S + 1,       # its column and row
        "rowbase": 2 * S + 2,       # (oy * out_w + ox) of its first output
        "plane": A,                 # address of the output channel's plane
    })


def tap_layout(config):
    """What one weight carries through the activation memory to the lanes."""
    bits = config.lanes.bit_length()
    return data.StructLayout({
        "first": 1, "last": 1,      # first / last weight of the tile
        "real": 1,                  # a weight (not a padding slot of a short list)
        "tile0": 1,                 # the channel's first tile (lane columns start over)
        "w": signed(8),
        "bias": signed(32),
        "edge": 4,                  # the tap reaches: left, right, top, bottom padding
        "top": bits,                # lanes l < top sit in the first input row
        "bottom": bits,             # lanes l >= bottom sit in the last input row
        "tile": tile_layout(config),
    })


def _thermometer(count, lanes):
    """Bit l set for l < ``count`` (a negative count sets none, one over ``lanes`` all).

    Each bit compares only the low bits that can lie below ``lanes`` and is forced by the
    sign and the rest: compared whole, synthesis chained the 64 bits through a dozen LUTs.
    """
    count = Value.cast(count)
    bits = max(1, (lanes - 1).bit_length())
    if len(count) <= bits:
        return Cat(count > l for l in range(lanes))
    low = count[:bits]
    positive = ~count[-1] if count.shape().signed else Const(1)
    big = positive & (count[bits:] != 0)
    return Cat(positive & (big | (low > l)) for l in range(lanes))


def _clamp(value, top):
    """``value`` limited to 0 .. ``top`` (an unsigned value has no lower bound to check)."""
    value = Value.cast(value)
    upper = Mux(value > top, top, value)
    return Mux(value < 0, 0, upper) if value.shape().signed else upper


class ConvEngine(wiring.Component):
    """Runs one conv descriptor; see the module docstring.

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    start : In(1)
        Pulse; the layer fields must stay stable until ``done``.
    src, dst, in_c, in_h, in_w, out_c, out_h, out_w, kernel, pad, weights_addr, count,
    multiplier, shift, n_codes, sparse, mode_valid, mode_border, row0 : In
        The descriptor (``mode_*`` from :func:`squeezefpga.config.conv_mode`; ``row0``, in
        the "same" mode, the band's first grid row computed: the output is the grid rows
        ``row0 .. row0 + out_h - 1``, the rows above and below the band's edges padded).
    done : Out(1)
        Pulse once the last output has been given to the write port.
    mem : Out(ReadSignature)
        Weight buffer read port (the weight decoder's).
    act_read : Out(ReadSignature); act_write : Out(WriteSignature)
    mac_entries : Out(1)
        High on every cycle a weight reaches the accumulators (a cycle late).
    lanes_busy : Out
        Lanes on grid positions during that cycle.
    """

    def __init__(self, config):
        self.config = c = config
        a, s, ch = c.act_addr_bits, c.side_bits, c.channel_bits
        word_bits = max(1, (c.weight_words - 1).bit_length())
        self.tap = tap_layout(c)
        self.requantizers = max(1, c.lanes // LANES_PER_REQUANTIZER)
        self.group = c.lanes // self.requantizers       # lanes per requantiser
        self._decoder = WeightDecoder(word_bits, c.tap_bits, ch)
        super().__init__({
            "start": In(1),
            "src": In(a), "dst": In(a),
            "in_c": In(16), "in_h": In(s), "in_w": In(s),
            "out_c": In(ch + 1), "out_h": In(s), "out_w": In(s),
            "kernel": In(4), "pad": In(2),
            "weights_addr": In(word_bits + 2),
            "count": In(32),
            "multiplier": In(MULTIPLIER_BITS), "shift": In(6),
            "n_codes": In(CODE_BITS + 1), "sparse": In(1),
            "mode_valid": In(1), "mode_border": In(1), "row0": In(1),
            "done": Out(1),
            "mem": Out(ReadSignature(word_bits, 32, len(self._decoder.mem.tag))),
            "act_read": Out(ReadSignature(a, 8 * c.lanes, self.tap.size)),
            "act_write": Out(WriteSignature(a, 8 * c.lanes, c.lanes)),
            "mac_entries": Out(1),
            "lanes_busy": Out(c.lanes.bit_length()),
        })

    def elaborate(self, platform):
        m = Module()
        st = SimpleNamespace(platform=platform)   # the signals the stages share
        self._buffers(m, st)
        self._control(m, st)
        self._fetch(m, st)
        self._lanes(m, st)
        self._requantize(m, st)
        self._writer(m, st)
        m.d.comb += st.busy.eq(Cat(st.s1.valid, st.s1b.valid, st.s2.valid, st.s2b.valid,
                                   st.s3.valid, st.in_flight != 0,
                                   st.z_valid, st.x_valid, st.p_valid, st.rq_left != 0,
                                   st.collected, st.w_active, st.w_pending).any())
        return m

    # -- buffers and the weight decoder --------------------------------------------------------

    def _buffers(self, m, st):
        cfg, T = self.config, self.config.tap_bits
        A = cfg.act_addr_bits
        m.submodules.decoder = dec = self._decoder
        m.submodules.codebook = book = Memory(shape=signed(8), depth=2 ** CODE_BITS, init=[])
        m.submodules.biases = biases = Memory(shape=signed(32), depth=cfg.max_channels,
                                              init=[])
        m.submodules.lists = lists = Memory(shape=unsigned(T + CODE_BITS),
                                            depth=2 * cfg.max_taps, init=[])
        # Tap table: input offset of each (c, ky, kx) and which pad edges it reaches.
        m.submodules.taps = taps = Memory(shape=unsigned(A + 2 + 4), depth=cfg.max_taps,
                                          init=[])
        st.book_w, st.book_r = book.write_port(), book.read_port()
        st.bias_w, st.bias_r = biases.write_port(), biases.read_port()
        st.list_w, st.list_r = lists.write_port(), lists.read_port()
        st.tap_w, st.tap_r = taps.write_port(), taps.read_port()
        st.full = Signal(2)
        st.counts = Array([Signal(T + 1, name=f"count{i}") for i in range(2)])
        st.release = Signal(2)
        st.n_taps = Signal(T + 1)
        wiring.connect(m, dec.mem, wiring.flipped(self.mem))
        m.d.comb += [
            dec.sparse.eq(self.sparse),
            dec.bias_addr.eq(self.weights_addr),
            dec.entries_addr.eq(self.weights_addr + 4 * self.out_c + self.n_codes),
            dec.n_codes.eq(self.n_codes), dec.count.eq(self.count), dec.out_c.eq(self.out_c),
            dec.taps.eq(st.n_taps),
            st.book_w.en.eq(dec.book_we), st.book_w.addr.eq(dec.book_addr),
            st.book_w.data.eq(dec.book_data),
            st.bias_w.en.eq(dec.bias_we), st.bias_w.addr.eq(dec.bias_addr_w),
            st.bias_w.data.eq(dec.bias_data),
            st.list_w.en.eq(dec.list_we), st.list_w.addr.eq(dec.list_addr),
            st.list_w.data.eq(Cat(dec.list_tap, dec.list_code)),
            dec.full.eq(st.full),
        ]
        m.d.sync += st.full.eq((st.full | Mux(dec.chan_done, 1 << dec.chan_buf, 0))
                               & ~st.release)
        with m.If(dec.chan_done):
            m.d.sync += st.counts[dec.chan_buf].eq(dec.chan_count)

    # -- the layer: setup, tap table, channels and tiles, issue (S0) ---------------------------

    def _control(self, m, st):
        cfg = self.config
        N, A, S, T = cfg.lanes, cfg.act_addr_bits, cfg.side_bits, cfg.tap_bits
        OFF = signed(A + 2)                 # tap offsets and signed address arithmetic
        dec = self._decoder
        # Layer constants.
        st.plane_in, plane_out = Signal(2 * S), Signal(2 * S)
        st.q_end = Signal(2 * S)
        st.div_a, st.div_b = Signal(range(N + 1)), Signal(range(N + 1))   # N = a*in_w + b
        rows_per_tile = Signal(S + 1)
        st.masked = Signal()               # 3x3 pad 1: per-lane edge masks
        st.merged = Signal()               # output grid == input grid: one write per tile
        st.wv, st.hv = Signal(S), Signal(S)       # valid grid columns / rows
        st.q_start = Signal(S)              # the grid position of the first output
        origin_out = Signal(S + 1)         # (oy * out_w + ox) of the first written pixel
        row_step = Signal(2 * S + 1)       # a * out_w
        st.x_init = [Signal(S, name=f"x_init{l}") for l in range(N)]
        m.submodules.multiplier = mul = SequentialMultiplier(16, 16)
        kk = Signal(8)
        step = Signal(range(8))
        products = [(self.kernel, self.kernel, kk), (self.in_c, kk, st.n_taps),
                    (self.in_h, self.in_w, st.plane_in), (self.out_h, self.out_w, plane_out),
                    (st.hv, self.in_w, st.q_end), (st.div_a, self.out_w, row_step)]
        # Tap table build counters.
        tky, tkx = Signal(4), Signal(4)
        t_idx = Signal(T + 1)
        t_cbase, t_row = Signal(OFF), Signal(OFF)
        lane_x, lane_i = Signal(S), Signal(range(N + 1))
        # Issue state.
        rb = Signal()
        st.chan = chan = Signal(len(self.out_c))
        plane = Signal(A)
        q0, x0, y0 = Signal(2 * S), Signal(S), Signal(S + 1)
        rowbase = Signal(2 * S + 2)
        j, length, n_real = Signal(T + 1), Signal(T + 1), Signal(T + 1)
        tile0, border = Signal(), Signal()
        st.busy = Signal()                 # any stage after issue still holds work
        st.s0 = SimpleNamespace(valid=Signal(), first=Signal(), last=Signal(), real=Signal(),
                                tile0=tile0, border=border, q0=q0, x0=x0, y0=y0,
                                rowbase=rowbase, plane=plane)
        s0 = st.s0
        # The issue arithmetic, precomputed: the tile's position changes only at its last
        # weight and is next needed at the next tile's last, at least `group` (>= 4) cycles
        # later, so registers recomputed every cycle (two cycles stale at most) keep the
        # adders and comparators out of the cycle that decides the next tile.
        last_j = Signal(T + 1)
        last_tile, wrap = Signal(), Signal()
        q0_next, x0_plain, x0_wrapped = Signal(2 * S), Signal(S + 1), Signal(S + 1)
        y0_next, rowbase_next = Signal(S + 1), Signal(2 * S + 2)
        plane_next = Signal(A)
        # Likewise whether the channel being issued is the last: `chans_done` is set from it
        # when the channel ends, so CHANNEL decides on a register.
        last_chan, chans_done = Signal(), Signal()
        # And the decision itself from registers: `at_last` (j is the tile's last: set a
        # cycle ahead, from a `last_j` that may be a cycle stale at a tile's first weight,
        # harmless as tiles are >= 4 long) and `ends_chan` (the tile ends the channel).
        at_last, ends_chan = Signal(), Signal()
        m.d.sync += [
            ends_chan.eq(border | last_tile & ~self.mode_border),
            last_chan.eq(chan + 1 == self.out_c),
            last_j.eq(length - 1),
            last_tile.eq(q0 + N >= st.q_end),
            wrap.eq(x0 + st.div_b >= self.in_w),
            q0_next.eq(q0 + N),
            x0_plain.eq(x0 + st.div_b), x0_wrapped.eq(x0 + st.div_b - self.in_w),
            y0_next.eq(y0 + st.div_a + wrap),
            rowbase_next.eq(rowbase + row_step + Mux(wrap, self.out_w, 0)),
            plane_next.eq(plane + plane_out),
        ]
        m.d.comb += [
            st.list_r.addr.eq(Cat(j[:T], rb)), st.list_r.en.eq(1),
            st.bias_r.addr.eq(chan), st.bias_r.en.eq(1),
            s0.first.eq(j == 0), s0.last.eq(at_last), s0.real.eq(j < n_real),
        ]

        # The lanes' columns shift in while `lane_shift` (TABLE, lane_i < N): a register, in
        # one copy per LANES_PER_COPY lanes, enables the shift (else one compare enables the
        # columns of every lane).
        enter_table, lane_shift = Signal(), Signal()
        shift_next = enter_table | (lane_shift & (lane_i != N - 1))
        m.d.sync += lane_shift.eq(shift_next)
        shifts = replicate(m, st.platform, shift_next, lane_groups(N), "lane_shift")
        for l in range(N):
            with m.If(shifts[l // LANES_PER_COPY]):
                m.d.sync += st.x_init[l].eq(lane_x if l == N - 1 else st.x_init[l + 1])

        def length_of(count):
            # A tile takes at least the writes it needs and what the requantisers need.
            floor = Mux(rows_per_tile > self.group, rows_per_tile, self.group)
            return Mux(count > floor, count, floor)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [
                        st.masked.eq(~self.mode_valid & ~self.mode_border & (self.pad == 1)),
                        st.merged.eq(~self.mode_valid & ~self.mode_border),
                        st.wv.eq(Mux(self.mode_valid, self.out_w, self.in_w)),
                        st.hv.eq(Mux(self.mode_valid, self.out_h,
                                     Mux(self.mode_border, self.in_h, self.row0 + self.out_h))),
                        st.q_start.eq(Mux(~self.mode_valid & ~self.mode_border & self.row0,
                                          self.in_w, 0)),
                        origin_out.eq(Mux(self.mode_border, self.out_w + 1, 0)),
                        st.div_a.eq(0), st.div_b.eq(N),
                        tky.eq(0), tkx.eq(0), t_idx.eq(0), t_cbase.eq(0),
                        t_row.eq(0), lane_x.eq(0), lane_i.eq(0),
                    ]
                    m.next = "DIVIDE"
            with m.State("DIVIDE"):        # N = a * in_w + b by repeated subtraction
                with m.If(st.div_b >= self.in_w):
                    m.d.sync += [st.div_b.eq(st.div_b - self.in_w), st.div_a.eq(st.div_a + 1)]
                with m.Else():
                    m.d.sync += [
                        rows_per_tile.eq(Mux(st.merged, 1, Mux(
                            self.mode_border,
                            Mux(self.out_h + 1 > st.div_a + 2, self.out_h + 1, st.div_a + 2),
                            st.div_a + 2))),
                        step.eq(0),
                    ]
                    m.next = "MULTIPLY"
            # The layer's products, one after the other on the shift-and-add multiplier.
            with m.State("MULTIPLY"):
                m.d.comb += mul.start.eq(1)
                with m.Switch(step):
                    for i, (a, b, _) in enumerate(products):
                        with m.Case(i):
                            m.d.comb += [mul.a.eq(a), mul.b.eq(b)]
                m.next = "PRODUCT"
            with m.State("PRODUCT"):
                with m.If(~mul.busy):
                    with m.Switch(step):
                        for i, (_, _, dest) in enumerate(products):
                            with m.Case(i):
                                m.d.sync += dest.eq(mul.product)
                    m.d.sync += step.eq(step + 1)
                    with m.If(step == len(products) - 1):
                        m.d.comb += [dec.start.eq(1), enter_table.eq(1)]
                        m.next = "TABLE"
                    with m.Else():
                        m.next = "MULTIPLY"
            with m.State("TABLE"):
                # Tap table (one tap per cycle) and the lanes' column positions (shifted in).
                m.d.comb += [
                    st.tap_w.en.eq(t_idx < st.n_taps), st.tap_w.addr.eq(t_idx),
                    st.tap_w.data.eq(Cat(
                        (t_cbase + t_row + tkx - Mux(st.masked, self.in_w + 1, 0))[:A + 2],
                        st.masked & (tkx < 1), st.masked & (tkx > 1),
                        st.masked & (tky < 1), st.masked & (tky > 1))),
                ]
                with m.If(t_idx < st.n_taps):
                    m.d.sync += t_idx.eq(t_idx + 1)
                    with m.If(tkx + 1 < self.kernel):
                        m.d.sync += tkx.eq(tkx + 1)
                    with m.Else():
                        m.d.sync += tkx.eq(0)
                        with m.If(tky + 1 < self.kernel):
                            m.d.sync += [tky.eq(tky + 1), t_row.eq(t_row + self.in_w)]
                        with m.Else():
                            m.d.sync += [tky.eq(0), t_row.eq(0),
                                         t_cbase.eq(t_cbase + st.plane_in)]
                with m.If(lane_shift):
                    m.d.sync += [lane_i.eq(lane_i + 1),
                                 lane_x.eq(Mux(lane_x + 1 >= self.in_w, 0, lane_x + 1))]
                with m.If((t_idx >= st.n_taps) & (lane_i >= N)):
                    # A band's outputs start at its grid position q_start: the planes are
                    # offset so that position q lands at dst + q - q_start.
                    m.d.sync += [rb.eq(0), chan.eq(0), plane.eq(self.dst - st.q_start),
                                 chans_done.eq(self.out_c == 0)]
                    m.next = "CHANNEL"
            with m.State("CHANNEL"):
                with m.If(chans_done):
                    m.next = "DRAIN"
                with m.Elif(st.full.bit_select(rb, 1)):
                    m.d.sync += [j.eq(0), n_real.eq(st.counts[rb]),
                                 length.eq(length_of(st.counts[rb])),
                                 q0.eq(st.q_start), x0.eq(0), y0.eq(self.row0 & st.merged),
                                 rowbase.eq(origin_out),
                                 tile0.eq(1), border.eq(0), at_last.eq(0)]
                    m.next = "REPLAY"
            with m.State("REPLAY"):
                m.d.comb += s0.valid.eq(1)
                m.d.sync += [j.eq(j + 1), at_last.eq(j + 1 == last_j)]
                with m.If(s0.last):
                    m.d.sync += [j.eq(0), tile0.eq(0), at_last.eq(0)]
                    with m.If(ends_chan):
                        m.d.comb += st.release.eq(1 << rb)
                        m.d.sync += [rb.eq(~rb), chan.eq(chan + 1), plane.eq(plane_next),
                                     chans_done.eq(last_chan)]
                        m.next = "CHANNEL"
                    with m.Elif(last_tile):
                        # conv10's border: one bubble tile whose accumulators are the bias.
                        m.d.sync += [border.eq(1), n_real.eq(0),
                                     length.eq(length_of(self.out_h + 1))]
                    with m.Else():
                        m.d.sync += [q0.eq(q0_next), x0.eq(Mux(wrap, x0_wrapped, x0_plain)),
                                     y0.eq(y0_next), rowbase.eq(rowbase_next)]
            with m.State("DRAIN"):
                with m.If(~st.busy):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"

    # -- S1: list entry; S1b: tap table and codebook asked; S2, S3: the address ---------

    def _fetch(self, m, st):
        cfg = self.config
        N, A, T = cfg.lanes, cfg.act_addr_bits, cfg.tap_bits
        s0 = st.s0
        tile = tile_layout(cfg)
        fields = ("first", "last", "real", "tile0")
        st.s1 = s1 = SimpleNamespace(valid=Signal(name="s1_valid"),
                                     tile=Signal(tile, name="s1_tile"),
                                     **{k: Signal(name=f"s1_{k}") for k in fields})
        m.d.sync += [s1.valid.eq(s0.valid)] + [getattr(s1, k).eq(getattr(s0, k))
                                              for k in fields]
        m.d.sync += [s1.tile.border.eq(s0.border), s1.tile.q0.eq(s0.q0), s1.tile.x0.eq(s0.x0),
                     s1.tile.y0.eq(s0.y0), s1.tile.rowbase.eq(s0.rowbase),
                     s1.tile.plane.eq(s0.plane)]
        # S1b: the list entry and the bias (asked for at S0), registered: the block RAM's slow
        # output drives no address (the codebook is LUT RAM, its read a wide multiplexer).
        st.s1b = s1b = SimpleNamespace(valid=Signal(name="s1b_valid"),
                                       tile=Signal(tile, name="s1b_tile"),
                                       entry=Signal(len(st.list_r.data), name="s1b_entry"),
                                       bias=Signal(signed(32), name="s1b_bias"),
                                       **{k: Signal(name=f"s1b_{k}") for k in fields})
        m.d.sync += [s1b.valid.eq(s1.valid), s1b.tile.eq(s1.tile),
                     s1b.entry.eq(st.list_r.data), s1b.bias.eq(st.bias_r.data)]
        m.d.sync += [getattr(s1b, k).eq(getattr(s1, k)) for k in fields]
        m.d.comb += [st.tap_r.addr.eq(s1b.entry[:T]), st.tap_r.en.eq(1),
                     st.book_r.addr.eq(s1b.entry[T:]), st.book_r.en.eq(1)]

        # S2: the tap table and codebook answer.
        st.s2 = s2 = SimpleNamespace(valid=Signal(name="s2_valid"),
                                     tile=Signal(tile, name="s2_tile"),
                                     bias=Signal(signed(32), name="s2_bias"),
                                     **{k: Signal(name=f"s2_{k}") for k in fields})
        m.d.sync += [s2.valid.eq(s1b.valid), s2.tile.eq(s1b.tile), s2.bias.eq(s1b.bias)]
        m.d.sync += [getattr(s2, k).eq(getattr(s1b, k)) for k in fields]

        # S2b: the tap table's and the codebook's answers registered (the block RAM's output
        # is slow), with the tile's part of the address and the lane masks' row thresholds.
        st.s2b = s2b = SimpleNamespace(
            valid=Signal(name="s2b_valid"), tag=Signal(self.tap, name="s2b_tag"),
            base=Signal(A + 1, name="s2b_base"), offset=Signal(signed(A + 2), name="s2b_offset"))
        q0 = s2.tile.q0
        bottom_start = st.plane_in - self.in_w
        m.d.sync += [
            s2b.valid.eq(s2.valid),
            s2b.base.eq(self.src + q0),
            s2b.offset.eq(st.tap_r.data[:A + 2].as_signed()),
            s2b.tag.first.eq(s2.first), s2b.tag.last.eq(s2.last), s2b.tag.real.eq(s2.real),
            s2b.tag.tile0.eq(s2.tile0), s2b.tag.tile.eq(s2.tile),
            s2b.tag.w.eq(Mux(s2.real, st.book_r.data, 0)),
            s2b.tag.bias.eq(s2.bias),
            s2b.tag.edge.eq(st.tap_r.data[A + 2:]),
            s2b.tag.top.eq(_clamp(self.in_w - q0.as_signed(), N)),
            s2b.tag.bottom.eq(_clamp(bottom_start.as_signed() - q0, N)),
        ]

        # S3: the address, registered: the memory's request comes straight from registers.
        st.s3 = s3 = SimpleNamespace(valid=Signal(name="s3_valid"), addr=Signal(A),
                                     tag=Signal(self.tap))
        m.d.sync += [s3.valid.eq(s2b.valid), s3.addr.eq(s2b.base + s2b.offset),
                     s3.tag.eq(s2b.tag)]
        m.d.comb += [self.act_read.addr.eq(s3.addr), self.act_read.en.eq(s3.valid),
                     self.act_read.tag.eq(s3.tag)]
        st.in_flight = Signal(range(64))
        m.d.sync += st.in_flight.eq(st.in_flight + s3.valid - self.act_read.valid)

    # -- the lanes: masks, products, accumulators ----------------------------------------------

    def _lanes(self, m, st):
        cfg = self.config
        N, S = cfg.lanes, cfg.side_bits
        # R: the memory's answer registered once more, the fields every lane reads in one
        # copy per LANES_PER_COPY lanes, so that no register drives all the lanes' masks.
        groups = lane_groups(N)
        answer = Signal(self.tap, name="answer")
        valid = Signal(name="answer_valid")
        lane_data = Signal(8 * N, name="answer_data")
        m.d.sync += [answer.eq(self.act_read.rtag), valid.eq(self.act_read.valid),
                     lane_data.eq(self.act_read.data)]
        early = data.View(self.tap, self.act_read.rtag)
        lane_fields = data.StructLayout({"tile0": 1, "edge": 4, "top": len(early.top),
                                         "bottom": len(early.bottom), "advance": 1})
        copies = [data.View(lane_fields, c) for c in replicate(
            m, st.platform, Cat(early.tile0, early.edge, early.top, early.bottom,
                                self.act_read.valid & early.last & ~early.tile.border),
            groups, "lanes")]
        # Lane columns: from the table for a channel's first tile, then advanced per tile.
        # The layer's row length, last column and columns per tile, one copy per
        # LANES_PER_COPY lanes (constant through the layer).
        x_cur = [Signal(S, name=f"x_cur{l}") for l in range(N)]
        row_fields = data.StructLayout({"width": S, "last_column": S, "step": len(st.div_b)})
        rows = [data.View(row_fields, c) for c in replicate(
            m, st.platform, Cat(self.in_w, (self.in_w - 1)[:S], st.div_b), groups, "row")]
        # Z: each lane's byte and its padding test, registered apart: the test (a column
        # picked, two compares) and the multiplier's input register lie far apart on the chip.
        st.z_valid = Signal()
        z_answer = Signal(self.tap, name="z_answer")
        z_bytes = [Signal(8, name=f"z_byte{l}") for l in range(N)]
        z_zero = [Signal(name=f"z_zero{l}") for l in range(N)]
        m.d.sync += [st.z_valid.eq(valid), z_answer.eq(answer)]
        for l in range(N):
            c = copies[l // LANES_PER_COPY]
            row = rows[l // LANES_PER_COPY]
            x_used = Mux(c.tile0, st.x_init[l], x_cur[l])
            m.d.sync += [
                z_bytes[l].eq(lane_data[8 * l: 8 * l + 8]),
                z_zero[l].eq((c.edge[0] & (x_used == 0))
                             | (c.edge[1] & (x_used == row.last_column))
                             | (c.edge[2] & (c.top > l))
                             | (c.edge[3] & ~(c.bottom > l))),
            ]
            with m.If(c.advance):
                step = x_used + row.step
                m.d.sync += x_cur[l].eq(Mux(step >= row.width, step - row.width, step))

        # X: the lanes' bytes and the weight, registered: the multipliers' input registers.
        # What every lane takes (the weight; below the bias, the load and enables) has one
        # copy per LANES_PER_COPY lanes.
        groups = lane_groups(N)
        st.x_valid = Signal()
        x = [Signal(8, name=f"x{l}") for l in range(N)]
        weights = [w.as_signed() for w in replicate(m, st.platform, z_answer.w, groups, "w")]
        info = Signal(data.StructLayout({"first": 1, "last": 1, "real": 1, "bias": signed(32),
                                         "tile": tile_layout(cfg)}))
        m.d.sync += [st.x_valid.eq(st.z_valid)]
        m.d.sync += [x[l].eq(Mux(z_zero[l], 0, z_bytes[l])) for l in range(N)]
        m.d.sync += [info.first.eq(z_answer.first), info.last.eq(z_answer.last),
                     info.real.eq(z_answer.real), info.bias.eq(z_answer.bias),
                     info.tile.eq(z_answer.tile)]

        # P: products (the multipliers' output registers).
        st.p_valid = Signal()
        prod = [Signal(signed(17), name=f"prod{l}") for l in range(N)]
        p_info = Signal(info.shape(), name="p_info")
        m.d.sync += [st.p_valid.eq(st.x_valid), p_info.eq(info)]
        m.d.sync += [prod[l].eq(weights[l // LANES_PER_COPY] * x[l]) for l in range(N)]
        # Load the bias (a tile's first weight), accumulate, capture (its last). The bias has
        # one copy per LANES_PER_COPY lanes; the controls, which select or enable all 32 bits
        # of a lane's accumulator and shadow, one copy per lane (else each drives hundreds).
        biases = [b.as_signed() for b in replicate(m, st.platform, info.bias, groups, "bias")]
        controls = replicate(m, st.platform, Cat(info.first, st.x_valid & info.last,
                                                 st.x_valid), N, "control")
        st.capture_lane = [c[1] for c in controls]

        # Accumulate (the bias on a tile's first weight); capture the tile at its last.
        acc = [Signal(signed(32), name=f"acc{l}") for l in range(N)]
        st.acc_next = []
        for l in range(N):
            c = controls[l]
            st.acc_next.append(Mux(c[0], biases[l // LANES_PER_COPY], acc[l]) + prod[l])
            with m.If(c[2]):
                m.d.sync += acc[l].eq(st.acc_next[l])
        # The counters' inputs, registered (the counters' adders are 64 bits wide).
        m.d.sync += self.mac_entries.eq(st.p_valid & p_info.real)
        span = st.q_end - p_info.tile.q0
        m.d.sync += self.lanes_busy.eq(Mux(st.p_valid & p_info.real, Mux(span > N, N, span),
                                           0))
        st.capture = Signal()
        st.capture_tile = p_info.tile
        m.d.comb += st.capture.eq(st.p_valid & p_info.last)

    # -- requantisation: a shadow of the accumulators, shared requantisers ---------------------

    def _requantize(self, m, st):
        cfg = self.config
        N, G, K = cfg.lanes, self.group, self.requantizers
        tile = tile_layout(cfg)
        shadow = [Signal(signed(32), name=f"shadow{l}") for l in range(N)]
        shadow_tile = Signal(tile)
        # rq_left counts the lanes each requantiser still has to take from the shadow, then
        # the cycles until its last result is out.
        st.rq_left = Signal(range(G + Requantizer.LATENCY + 2))
        index = Signal(range(G))
        feeding = Signal()
        m.d.comb += feeding.eq(st.rq_left > Requantizer.LATENCY + 1)
        # The shadow of a group shifts down one lane per cycle while it feeds its
        # requantiser, which always takes the group's first: neighbour-to-neighbour wires
        # instead of a 16:1 multiplexer over the group's accumulators.
        # (``feeding`` of the next cycle, registered: one copy per lane.)
        shifts = replicate(m, st.platform,
                           st.capture | (st.rq_left > Requantizer.LATENCY + 2), N, "shift")
        for l in range(N):
            with m.If(st.capture_lane[l]):
                m.d.sync += shadow[l].eq(st.acc_next[l])
            if (l + 1) % G:
                with m.Elif(shifts[l]):
                    m.d.sync += shadow[l].eq(shadow[l + 1])
        with m.If(st.capture):
            m.d.sync += shadow_tile.eq(st.capture_tile)
        with m.If(st.capture):
            m.d.sync += [st.rq_left.eq(G + Requantizer.LATENCY + 1), index.eq(0)]
        with m.Elif(st.rq_left != 0):
            m.d.sync += st.rq_left.eq(st.rq_left - 1)
            with m.If(feeding):
                m.d.sync += index.eq(index + 1)
        groups = []
        # The layer's multiplier and shift, one copy per requantiser (each drives its
        # multipliers and its barrel shifter).
        scales = replicate(m, st.platform, Cat(self.multiplier, self.shift), K, "scale")
        for k in range(K):
            rq = Requantizer(tag_bits=1 + tile.size if k == 0 else 1)
            m.submodules[f"requantizer{k}"] = rq
            m.d.comb += [rq.valid.eq(feeding), rq.acc.eq(shadow[k * G]),
                         rq.multiplier.eq(scales[k][:len(self.multiplier)]),
                         rq.shift.eq(scales[k][len(self.multiplier):]),
                         rq.tag.eq(Cat(index == G - 1, shadow_tile) if k == 0
                                   else index == G - 1)]
            # Collect the group's bytes: they come in lane order, in G consecutive cycles,
            # and shift down. The shift runs every cycle (no enable across 8 * G flip-flops):
            # the writer takes the bytes the cycle after the last one came.
            bytes_ = Signal(8 * G, name=f"collected{k}")
            m.d.sync += bytes_.eq(Cat(bytes_[8:], rq.out))
            groups.append((rq, bytes_))
        first = groups[0][0]
        st.collected = Signal()
        st.collected_tile = Signal(tile)
        collected = first.out_valid & first.out_tag[0]
        m.d.sync += st.collected.eq(collected)
        # The writer's copy of the bytes is loaded in groups of LANES_PER_COPY lanes, each
        # enabled by its own copy of `collected`.
        st.collected_lanes = replicate(m, st.platform, collected, lane_groups(N), "collected")
        with m.If(collected):
            m.d.sync += st.collected_tile.eq(first.out_tag[1:])
        st.collected_data = Cat(*(bytes_ for _, bytes_ in groups))
        # The tile rides with every result of its group (G >= 4 consecutive cycles before
        # `collected`), so the writer can prepare its masks from it.
        st.result_valid = first.out_valid
        st.result_tile = tile(first.out_tag[1:])

    # -- the writer ----------------------------------------------------------------------------

    def _writer(self, m, st):
        cfg = self.config
        N, A, S = cfg.lanes, cfg.act_addr_bits, cfg.side_bits
        st.w_active = w_active = Signal()
        w_border = Signal()
        w_data = Signal(8 * N)
        w_plane, w_q0 = Signal(A), Signal(2 * S)
        # The row's first and past-the-end lanes (lo, hi = lo + wv) and, merged, the positions
        # left (q_end - q0) make the lane mask through their thermometers (bit l: the value
        # > l, the same as its clamp to 0..N > l). The mask, on its way to the memory's far
        # banks, is one LUT of thermometer registers, and no thermometer is computed in the
        # cycle of an adder: they are prepared from the tile while its results come out
        # (differences, then thermometers), and the next row's a row ahead.
        V = signed(2 * S + 2)
        early = st.result_tile
        e_lo, e_hi, e_left = (Signal(V, name=f"w_early_{n}") for n in ("lo", "hi", "left"))
        with m.If(st.result_valid):
            m.d.sync += [e_lo.eq(-early.x0), e_hi.eq(st.wv - early.x0),
                         e_left.eq(st.q_end - early.q0)]
        p_lo, p_hi, p_left = (Signal(N, name=f"w_ready_{n}") for n in ("lo", "hi", "left"))
        m.d.sync += [p_lo.eq(_thermometer(e_lo, N)), p_hi.eq(_thermometer(e_hi, N)),
                     p_left.eq(_thermometer(e_left, N))]
        w_lo, lo_next, hi_next = Signal(V), Signal(V), Signal(V)
        th_lo, th_hi, th_left, th_row = (Signal(N, name=f"w_th_{n}")
                                         for n in ("lo", "hi", "left", "row"))
        # The output row's thermometer: out_w is constant through a layer, whose first write
        # comes many cycles after its start.
        m.d.sync += th_row.eq(_thermometer(self.out_w, N))
        w_y = Signal(S + 2)
        w_rowaddr = Signal(A + 1)
        w_step = Signal(S + 1)
        # The write is computed in one cycle and presented, from registers, in the next: its
        # mask fans out to every lane of the activation memory.
        w = SimpleNamespace(addr=Signal(A), mask=Signal(N), en=Signal())
        port = self.act_write
        st.w_pending = Signal()
        m.d.sync += [port.addr.eq(w.addr), port.mask.eq(w.mask), port.data.eq(w_data),
                     st.w_pending.eq(w.en)]
        m.d.comb += port.en.eq(st.w_pending)
        with m.If(w_active):
            m.d.comb += w.en.eq(1)
            with m.If(w_border):
                last_row = w_step == self.out_h
                m.d.comb += w.addr.eq(Mux(w_step == 0, w_plane,
                                          Mux(last_row, w_rowaddr - self.out_w + 1, w_rowaddr)))
                m.d.comb += w.mask.eq(Mux((w_step == 0) | last_row, th_row, Const(0b11, N)))
                m.d.sync += w_step.eq(w_step + 1)
                with m.If(w_step != 0):
                    m.d.sync += w_rowaddr.eq(w_rowaddr + self.out_w)
                with m.If(last_row):
                    m.d.sync += w_active.eq(0)
            with m.Elif(st.merged):
                m.d.comb += [w.addr.eq(w_plane + w_q0), w.mask.eq(th_left)]
                m.d.sync += w_active.eq(0)
            with m.Else():
                m.d.comb += [w.addr.eq(w_rowaddr - w_lo), w.mask.eq(th_hi & ~th_lo)]
                m.d.sync += [w_lo.eq(lo_next), th_lo.eq(_thermometer(lo_next, N)),
                             th_hi.eq(_thermometer(hi_next, N)),
                             lo_next.eq(lo_next + self.in_w), hi_next.eq(hi_next + self.in_w),
                             w_y.eq(w_y + 1),
                             w_rowaddr.eq(w_rowaddr + self.out_w)]
                with m.If((lo_next >= N) | (w_y + 1 >= st.hv)):
                    m.d.sync += w_active.eq(0)
        t = st.collected_tile
        span = 8 * LANES_PER_COPY
        for g, enable in enumerate(st.collected_lanes):
            with m.If(enable):
                m.d.sync += w_data[g * span: (g + 1) * span].eq(
                    st.collected_data[g * span: (g + 1) * span])
        with m.If(st.collected):
            m.d.sync += [
                w_active.eq(1), w_border.eq(t.border),
                w_plane.eq(t.plane), w_q0.eq(t.q0), w_lo.eq(e_lo),
                lo_next.eq(e_lo + self.in_w), hi_next.eq(e_hi + self.in_w),
                th_lo.eq(p_lo), th_hi.eq(p_hi), th_left.eq(p_left),
                w_y.eq(t.y0), w_step.eq(0),
                w_rowaddr.eq(Mux(t.border, t.plane + self.out_w - 1, t.plane + t.rowbase)),
            ]
