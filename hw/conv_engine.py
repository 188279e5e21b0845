"""Conv engine: N MAC lanes over N consecutive pixels of a row-flattened input plane.

For every output channel the decoded list of non-zero weights is replayed once per tile of N
grid positions; each weight is broadcast to all lanes, and lane l reads the input byte at
``src + q0 + l + offset(tap)`` — N consecutive bytes, one wide read of the banked activation
memory. 3x3 padding is a per-lane mask; the polyphase conv1 ("valid") and conv10's 1x1 pad 1
("border") write their outputs row segment by row segment. docs/ARCHITECTURE.md has the
picture; golden/integer_model.py is the arithmetic this must match bit for bit.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from squeezefpga.blob_format import CODE_BITS, MULTIPLIER_BITS

from .activation_memory import ReadSignature, WriteSignature
from .weight_decoder import WeightDecoder

__all__ = ["ConvEngine"]


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
    multiplier, shift, n_codes, sparse, mode_valid, mode_border : In
        The descriptor (``mode_*`` from :func:`squeezefpga.config.conv_mode`).
    done : Out(1)
        Pulse at the end of the layer.
    mem_addr, mem_en : Out; mem_data : In(32)
        Weight buffer read port.
    act_read : Out(ReadSignature); act_write : Out(WriteSignature)
    mac_entries : Out(1)
        High on every cycle a weight reaches the MAC stage.
    lanes_busy : Out
        Lanes on grid positions during that cycle.
    """

    PIPE = 10                       # cycles from issue to the writer, plus margin

    def __init__(self, config):
        self.config = c = config
        a, s, ch = c.act_addr_bits, c.side_bits, c.channel_bits
        super().__init__({
            "start": In(1),
            "src": In(a), "dst": In(a),
            "in_c": In(16), "in_h": In(s), "in_w": In(s),
            "out_c": In(ch + 1), "out_h": In(s), "out_w": In(s),
            "kernel": In(4), "pad": In(2),
            "weights_addr": In((c.weight_words - 1).bit_length() + 2),
            "count": In(32),
            "multiplier": In(MULTIPLIER_BITS), "shift": In(6),
            "n_codes": In(CODE_BITS + 1), "sparse": In(1),
            "mode_valid": In(1), "mode_border": In(1),
            "done": Out(1),
            "mem_addr": Out(max(1, (c.weight_words - 1).bit_length())),
            "mem_en": Out(1),
            "mem_data": In(32),
            "act_read": Out(ReadSignature(c.lanes, a)),
            "act_write": Out(WriteSignature(c.lanes, a)),
            "mac_entries": Out(1),
            "lanes_busy": Out(c.lanes.bit_length()),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        N = cfg.lanes
        A, S, T = cfg.act_addr_bits, cfg.side_bits, cfg.tap_bits
        OFF = signed(A + 2)                 # tap offsets and signed address arithmetic
        word_bits = len(self.mem_addr)

        # ---- buffers ------------------------------------------------------------------------
        m.submodules.decoder = dec = WeightDecoder(word_bits, T, cfg.channel_bits)
        m.submodules.codebook = book = Memory(shape=signed(8), depth=2 ** CODE_BITS, init=[])
        m.submodules.biases = biases = Memory(shape=signed(32), depth=cfg.max_channels, init=[])
        m.submodules.lists = lists = Memory(shape=unsigned(T + CODE_BITS), depth=2 * cfg.max_taps,
                                            init=[])
        # Tap table: input offset of each (c, ky, kx) and which pad edges it reaches.
        m.submodules.taps = taps = Memory(shape=unsigned(A + 2 + 4), depth=cfg.max_taps, init=[])
        book_w, book_r = book.write_port(), book.read_port()
        bias_w, bias_r = biases.write_port(), biases.read_port()
        list_w, list_r = lists.write_port(), lists.read_port()
        tap_w, tap_r = taps.write_port(), taps.read_port()

        full = Signal(2)
        counts = Array([Signal(T + 1, name=f"count{i}") for i in range(2)])
        release = Signal(2)
        m.d.comb += [
            dec.sparse.eq(self.sparse),
            dec.bias_addr.eq(self.weights_addr),
            dec.entries_addr.eq(self.weights_addr + 4 * self.out_c + self.n_codes),
            dec.n_codes.eq(self.n_codes), dec.count.eq(self.count), dec.out_c.eq(self.out_c),
            self.mem_addr.eq(dec.mem_addr), self.mem_en.eq(dec.mem_en),
            dec.mem_data.eq(self.mem_data),
            book_w.en.eq(dec.book_we), book_w.addr.eq(dec.book_addr), book_w.data.eq(dec.book_data),
            bias_w.en.eq(dec.bias_we), bias_w.addr.eq(dec.bias_addr_w),
            bias_w.data.eq(dec.bias_data),
            list_w.en.eq(dec.list_we), list_w.addr.eq(dec.list_addr),
            list_w.data.eq(Cat(dec.list_tap, dec.list_code)),
            dec.full.eq(full),
        ]
        m.d.sync += full.eq((full | Mux(dec.chan_done, 1 << dec.chan_buf, 0)) & ~release)
        with m.If(dec.chan_done):
            m.d.sync += counts[dec.chan_buf].eq(dec.chan_count)

        # ---- layer constants (SETUP) ----------------------------------------------------------
        plane_in, plane_out = Signal(2 * S), Signal(2 * S)
        n_taps, q_end = Signal(T + 1), Signal(2 * S)
        div_a, div_b = Signal(range(N + 1)), Signal(range(N + 1))   # N = a * in_w + b
        rows_per_tile = Signal(S + 1)
        masked = Signal()                  # 3x3 pad 1: per-lane edge masks
        merged = Signal()                  # output grid == input grid: one write per tile
        wv, hv = Signal(S), Signal(S)      # valid grid columns / rows
        origin_out = Signal(S + 1)         # (oy * out_w + ox) of the first written pixel
        row_step = Signal(2 * S + 1)       # a * out_w
        m.d.comb += dec.taps.eq(n_taps)
        x_init = [Signal(S, name=f"x_init{l}") for l in range(N)]
        x_cur = [Signal(S, name=f"x_cur{l}") for l in range(N)]
        # table build counters
        tky, tkx = Signal(4), Signal(4)
        t_idx = Signal(T + 1)
        t_cbase, t_row = Signal(OFF), Signal(OFF)
        lane_x, lane_i = Signal(S), Signal(range(N + 1))

        # ---- issue (S0) state -----------------------------------------------------------------
        rb = Signal()
        chan = Signal(len(self.out_c))
        plane = Signal(A)
        q0, x0, y0 = Signal(2 * S), Signal(S), Signal(S + 1)
        rowbase = Signal(2 * S + 2)
        j, length, n_real = Signal(T + 1), Signal(T + 1), Signal(T + 1)
        tile0, border = Signal(), Signal()
        drain = Signal(range(self.PIPE + 1))
        writer_busy = Signal()

        s0 = Signal()                      # an entry is issued this cycle
        s0_first, s0_last, s0_real = Signal(), Signal(), Signal()

        m.d.comb += [
            list_r.addr.eq(Cat(j[:T], rb)), list_r.en.eq(1),
            bias_r.addr.eq(chan), bias_r.en.eq(1),
            s0_first.eq(j == 0), s0_last.eq(j == length - 1), s0_real.eq(j < n_real),
        ]

        def length_of(count):
            return Mux(count > rows_per_tile, count, rows_per_tile)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += dec.start.eq(1)
                    m.d.sync += [
                        plane_in.eq(self.in_h * self.in_w),
                        plane_out.eq(self.out_h * self.out_w),
                        n_taps.eq(self.in_c * self.kernel * self.kernel),
                        masked.eq(~self.mode_valid & ~self.mode_border & (self.pad == 1)),
                        merged.eq(~self.mode_valid & ~self.mode_border),
                        wv.eq(Mux(self.mode_valid, self.out_w, self.in_w)),
                        hv.eq(Mux(self.mode_valid, self.out_h, self.in_h)),
                        origin_out.eq(Mux(self.mode_border, self.out_w + 1, 0)),
                        div_a.eq(0), div_b.eq(N),
                        tky.eq(0), tkx.eq(0), t_idx.eq(0), t_cbase.eq(0),
                        t_row.eq(0), lane_x.eq(0), lane_i.eq(0),
                    ]
                    m.next = "DIVIDE"
            with m.State("DIVIDE"):        # N = a * in_w + b by repeated subtraction
                with m.If(div_b >= self.in_w):
                    m.d.sync += [div_b.eq(div_b - self.in_w), div_a.eq(div_a + 1)]
                with m.Else():
                    m.d.sync += [
                        q_end.eq(hv * self.in_w),
                        row_step.eq(div_a * self.out_w),
                        rows_per_tile.eq(Mux(merged, 1, Mux(self.mode_border,
                                                            Mux(self.out_h + 1 > div_a + 2,
                                                                self.out_h + 1, div_a + 2),
                                                            div_a + 2))),
                    ]
                    m.next = "TABLE"
            with m.State("TABLE"):
                # Tap table (one tap per cycle) and the lanes' column positions (shifted in).
                pad = Mux(masked, 1, 0)
                m.d.comb += [
                    tap_w.en.eq(t_idx < n_taps), tap_w.addr.eq(t_idx),
                    tap_w.data.eq(Cat((t_cbase + t_row + tkx - pad * (self.in_w + 1))[:A + 2],
                                      masked & (tkx < 1), masked & (tkx > 1),
                                      masked & (tky < 1), masked & (tky > 1))),
                ]
                with m.If(t_idx < n_taps):
                    m.d.sync += t_idx.eq(t_idx + 1)
                    with m.If(tkx + 1 < self.kernel):
                        m.d.sync += tkx.eq(tkx + 1)
                    with m.Else():
                        m.d.sync += tkx.eq(0)
                        with m.If(tky + 1 < self.kernel):
                            m.d.sync += [tky.eq(tky + 1), t_row.eq(t_row + self.in_w)]
                        with m.Else():
                            m.d.sync += [tky.eq(0), t_row.eq(0),
                                         t_cbase.eq(t_cbase + plane_in)]
                with m.If(lane_i < N):
                    m.d.sync += [x_init[N - 1].eq(lane_x), lane_i.eq(lane_i + 1),
                                 lane_x.eq(Mux(lane_x + 1 >= self.in_w, 0, lane_x + 1))]
                    m.d.sync += [x_init[l].eq(x_init[l + 1]) for l in range(N - 1)]
                with m.If((t_idx >= n_taps) & (lane_i >= N)):
                    m.d.sync += [rb.eq(0), chan.eq(0), plane.eq(self.dst)]
                    m.next = "CHANNEL"
            with m.State("CHANNEL"):
                with m.If(chan == self.out_c):
                    m.d.sync += drain.eq(self.PIPE)
                    m.next = "DRAIN"
                with m.Elif(full.bit_select(rb, 1)):
                    m.d.sync += [j.eq(0), n_real.eq(counts[rb]), length.eq(length_of(counts[rb])),
                                 q0.eq(0), x0.eq(0), y0.eq(0), rowbase.eq(origin_out),
                                 tile0.eq(1), border.eq(0)]
                    m.next = "REPLAY"
            with m.State("REPLAY"):
                m.d.comb += s0.eq(1)
                m.d.sync += j.eq(j + 1)
                with m.If(s0_last):
                    m.d.sync += [j.eq(0), tile0.eq(0)]
                    last_tile = q0 + N >= q_end
                    with m.If(border | last_tile & ~self.mode_border):
                        m.d.comb += release.eq(1 << rb)
                        m.d.sync += [rb.eq(~rb), chan.eq(chan + 1), plane.eq(plane + plane_out)]
                        m.next = "CHANNEL"
                    with m.Elif(last_tile):
                        # conv10's border: one bubble tile whose accumulators are the bias.
                        m.d.sync += [border.eq(1), n_real.eq(0), length.eq(self.out_h + 1)]
                    with m.Else():
                        wrap = x0 + div_b >= self.in_w
                        m.d.sync += [
                            q0.eq(q0 + N),
                            x0.eq(Mux(wrap, x0 + div_b - self.in_w, x0 + div_b)),
                            y0.eq(y0 + div_a + wrap),
                            rowbase.eq(rowbase + row_step + Mux(wrap, self.out_w, 0)),
                        ]
            with m.State("DRAIN"):
                with m.If(drain != 0):
                    m.d.sync += drain.eq(drain - 1)
                with m.Elif(~writer_busy):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"

        # ---- S1: list entry -> tap table and codebook reads -----------------------------------
        def stage(name, fields):
            return {k: Signal(v, name=f"{name}_{k}") for k, v in fields.items()}

        info = {"first": 1, "last": 1, "real": 1, "tile0": 1, "border": 1, "q0": 2 * S,
                "x0": S, "y0": S + 1, "rowbase": 2 * S + 2, "plane": A}
        s1 = stage("s1", {"valid": 1, **info})
        m.d.sync += s1["valid"].eq(s0)
        m.d.sync += [s1[k].eq(v) for k, v in dict(
            first=s0_first, last=s0_last, real=s0_real, tile0=tile0, border=border, q0=q0,
            x0=x0, y0=y0, rowbase=rowbase, plane=plane).items()]
        m.d.comb += [tap_r.addr.eq(list_r.data[:T]), tap_r.en.eq(1),
                     book_r.addr.eq(list_r.data[T:]), book_r.en.eq(1)]

        # ---- S2: address of the lanes' input bytes ----------------------------------------------
        s2 = stage("s2", {"valid": 1, "bias": signed(32), **info})
        m.d.sync += [s2[k].eq(s1[k]) for k in ("valid", *info)]
        m.d.sync += s2["bias"].eq(bias_r.data)
        offset = tap_r.data[:A + 2].as_signed()
        edge = tap_r.data[A + 2:]
        m.d.comb += [self.act_read.addr.eq(self.src + s2["q0"] + offset),
                     self.act_read.en.eq(s2["valid"])]

        # ---- S3: lanes receive their bytes; padding masks ---------------------------------------
        s3 = stage("s3", {"valid": 1, "bias": signed(32), "w": signed(8), "edge": 4, **info})
        m.d.sync += [s3[k].eq(s2[k]) for k in ("valid", "bias", *info)]
        m.d.sync += [s3["w"].eq(Mux(s2["real"], book_r.data, 0)), s3["edge"].eq(edge)]
        x_used = [Mux(s3["tile0"], x_init[l], x_cur[l]) for l in range(N)]
        bottom_start = Signal(2 * S)
        m.d.comb += bottom_start.eq(plane_in - self.in_w)
        xs = []
        for l in range(N):
            pos = s3["q0"] + l
            invalid = ((s3["edge"][0] & (x_used[l] == 0))
                       | (s3["edge"][1] & (x_used[l] == self.in_w - 1))
                       | (s3["edge"][2] & (pos < self.in_w))
                       | (s3["edge"][3] & (pos >= bottom_start)))
            xs.append(Mux(invalid, 0, self.act_read.data[8 * l: 8 * l + 8]))
        with m.If(s3["valid"] & s3["last"] & ~s3["border"]):
            for l in range(N):
                step = x_used[l] + div_b
                m.d.sync += x_cur[l].eq(Mux(step >= self.in_w, step - self.in_w, step))

        # ---- S4: products -----------------------------------------------------------------------
        s4 = stage("s4", {"valid": 1, "bias": signed(32), "w": signed(8), **info})
        m.d.sync += [s4[k].eq(s3[k]) for k in ("valid", "bias", "w", *info)]
        x4 = [Signal(8, name=f"x4_{l}") for l in range(N)]
        m.d.sync += [x4[l].eq(xs[l]) for l in range(N)]
        s5 = stage("s5", {"valid": 1, "bias": signed(32), **info})
        m.d.sync += [s5[k].eq(s4[k]) for k in ("valid", "bias", *info)]
        prod = [Signal(signed(17), name=f"prod{l}") for l in range(N)]
        m.d.sync += [prod[l].eq(s4["w"] * x4[l]) for l in range(N)]

        # ---- S5: accumulate (bias on a tile's first weight) -------------------------------------
        acc = [Signal(signed(32), name=f"acc{l}") for l in range(N)]
        acc_next = [Mux(s5["first"], s5["bias"], acc[l]) + prod[l] for l in range(N)]
        with m.If(s5["valid"]):
            m.d.sync += [acc[l].eq(acc_next[l]) for l in range(N)]
        m.d.comb += [self.mac_entries.eq(s5["valid"] & s5["real"])]
        span = q_end - s5["q0"]
        with m.If(s5["valid"] & s5["real"]):
            m.d.comb += self.lanes_busy.eq(Mux(span > N, N, span))

        # ---- R1, R2: requantisation -------------------------------------------------------------
        tile = ("border", "q0", "x0", "y0", "rowbase", "plane")
        r1 = stage("r1", {"valid": 1, **{k: info[k] for k in tile}})
        r1_acc = [Signal(signed(32), name=f"r1_acc{l}") for l in range(N)]
        m.d.sync += r1["valid"].eq(s5["valid"] & s5["last"])
        with m.If(s5["valid"] & s5["last"]):
            m.d.sync += [r1[k].eq(s5[k]) for k in tile]
            m.d.sync += [r1_acc[l].eq(acc_next[l]) for l in range(N)]
        r2 = stage("r2", {"valid": 1, **{k: info[k] for k in tile}})
        r2_prod = [Signal(signed(48), name=f"r2_prod{l}") for l in range(N)]
        m.d.sync += [r2[k].eq(r1[k]) for k in ("valid", *tile)]
        m.d.sync += [r2_prod[l].eq(r1_acc[l] * self.multiplier) for l in range(N)]
        r3 = stage("r3", {"valid": 1, **{k: info[k] for k in tile}})
        r3_out = [Signal(8, name=f"r3_out{l}") for l in range(N)]
        m.d.sync += [r3[k].eq(r2[k]) for k in ("valid", *tile)]
        rounding = (Const(1, 64) << (self.shift - 1)[:6])[:64]
        for l in range(N):
            value = (r2_prod[l] + rounding) >> self.shift
            m.d.sync += r3_out[l].eq(Mux(value < 0, 0, Mux(value > 255, 255, value[:8])))

        # ---- writer -----------------------------------------------------------------------------
        w_active, w_border = Signal(), Signal()
        w_data = Signal(8 * N)
        w_plane, w_q0 = Signal(A), Signal(2 * S)
        w_lo = Signal(signed(2 * S + 2))
        w_y = Signal(S + 2)
        w_rowaddr = Signal(A + 1)
        w_step = Signal(S + 1)
        lane_ids = range(N)
        m.d.comb += writer_busy.eq(w_active | r3["valid"] | r2["valid"] | r1["valid"]
                                   | s5["valid"] | s4["valid"] | s3["valid"] | s2["valid"]
                                   | s1["valid"])
        m.d.comb += self.act_write.data.eq(w_data)
        with m.If(w_active):
            m.d.comb += self.act_write.en.eq(1)
            with m.If(w_border):
                last_row = w_step == self.out_h
                m.d.comb += self.act_write.addr.eq(
                    Mux(w_step == 0, w_plane,
                        Mux(last_row, w_rowaddr - self.out_w + 1, w_rowaddr)))
                m.d.comb += self.act_write.mask.eq(Cat(
                    Mux((w_step == 0) | last_row, l < self.out_w, l < 2) for l in lane_ids))
                m.d.sync += w_step.eq(w_step + 1)
                with m.If(w_step != 0):
                    m.d.sync += w_rowaddr.eq(w_rowaddr + self.out_w)
                with m.If(last_row):
                    m.d.sync += w_active.eq(0)
            with m.Elif(merged):
                m.d.comb += [self.act_write.addr.eq(w_plane + w_q0),
                             self.act_write.mask.eq(Cat(w_q0 + l < q_end for l in lane_ids))]
                m.d.sync += w_active.eq(0)
            with m.Else():
                m.d.comb += [
                    self.act_write.addr.eq(w_rowaddr - w_lo),
                    self.act_write.mask.eq(Cat((w_lo <= l) & (l < w_lo + wv) for l in lane_ids)),
                ]
                m.d.sync += [w_lo.eq(w_lo + self.in_w), w_y.eq(w_y + 1),
                             w_rowaddr.eq(w_rowaddr + self.out_w)]
                with m.If((w_lo + self.in_w >= N) | (w_y + 1 >= hv)):
                    m.d.sync += w_active.eq(0)
        with m.If(r3["valid"]):
            m.d.sync += [
                w_active.eq(1), w_border.eq(r3["border"]), w_data.eq(Cat(*r3_out)),
                w_plane.eq(r3["plane"]), w_q0.eq(r3["q0"]), w_lo.eq(-r3["x0"]),
                w_y.eq(r3["y0"]), w_step.eq(0),
                w_rowaddr.eq(Mux(r3["border"], r3["plane"] + self.out_w - 1,
                                 r3["plane"] + r3["rowbase"])),
            ]
        return m
