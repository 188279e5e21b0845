"""Banked activation memory: one wide read and one wide write of ``lanes`` consecutive bytes
from any byte address per cycle, pipelined for an FPGA."""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .ports import (LANES_PER_COPY, PairReadSignature, ReadSignature, WriteSignature, delay,
                    group_lanes, lane_groups, replicate)
from .ram import Ram

__all__ = ["ActivationMemory", "rotate_stages", "ROTATE_LEVELS_PER_STAGE"]

#: Barrel-shifter levels between two registers of a rotation (2 levels of 2:1 muxes fit a
#: LUT4 level each; measured on ECP5: 3 stages of 2 levels close at 100 MHz for 64 lanes).
ROTATE_LEVELS_PER_STAGE = 2


def rotate_stages(m, lanes, amount_early, left, name, platform=None):
    """Rotate the list ``lanes`` by an amount of lanes, :data:`ROTATE_LEVELS_PER_STAGE`
    barrel levels per registered stage.

    ``amount_early`` is the amount one cycle before ``lanes`` arrive: it is registered into
    one copy per :data:`~.ports.LANES_PER_COPY` lanes (each drives only its lanes'
    multiplexers), and every copy travels down the stages with its lanes. Rotating left
    moves lane l to position ``(l + amount) % n``; right, to ``(l - amount) % n``.

    Returns
    -------
    (rotated lanes, latency in cycles)
    """
    n = len(lanes)
    levels = (n - 1).bit_length()
    groups = lane_groups(n)
    copies = replicate(m, platform, amount_early, groups, f"{name}_amount")
    stage = 0
    for first in range(0, levels, ROTATE_LEVELS_PER_STAGE):
        for bit in range(first, min(levels, first + ROTATE_LEVELS_PER_STAGE)):
            shift = 1 << bit
            src = [(l - shift) % n if left else (l + shift) % n for l in range(n)]
            lanes = [Mux(copies[l // LANES_PER_COPY][bit], lanes[src[l]], lanes[l])
                     for l in range(n)]
        registered = []
        for l, value in enumerate(lanes):
            reg = Signal(len(value), name=f"{name}{stage}_{l}")
            m.d.sync += reg.eq(value)
            registered.append(reg)
        lanes = registered
        copies = [replicate(m, platform, c, 1, f"{name}{stage}_amount{g}")[0]
                  for g, c in enumerate(copies)]
        stage += 1
    return lanes, stage


class ActivationMemory(wiring.Component):
    """``lanes`` byte-wide banks; byte address a lives in bank ``a % lanes``, row
    ``a // lanes``, so any ``lanes`` consecutive bytes sit in distinct banks.

    Both sides are pipelined: a read is answered :attr:`read_latency` cycles after the request
    (input registers, per-bank row registers, the block RAM, its output register, then a
    rotation in stages of :data:`ROTATE_LEVELS_PER_STAGE` levels); a write reaches the banks
    :attr:`write_latency` cycles after it was given (the same rotation the other way).

    Parameters
    ----------
    lanes : int
        Power of two.
    size : int
        Bytes (a multiple of ``lanes``).
    tag_bits : int
        Width of the readers' tags.
    rows : bool
        Also read two consecutive bytes at a time on the banks' write port, for the DMA
        engine.

    Members
    -------
    read : In(ReadSignature)
        Lane l of ``data`` is the byte at ``addr + l``.
    write : In(WriteSignature)
        Byte lane l of ``data`` goes to ``addr + l`` where ``mask`` bit l is set.
    write_dma : In(1)
        The write given now is the DMA engine's: ``write_idle`` does not wait for it.
    write_idle : Out(1)
        No write of the units is in flight: a read now sees every write they gave before.
    pair : In(PairReadSignature)
        (With ``rows``.) The bytes at ``addr`` and ``addr + 1``: a request is taken into a
        register, granted on a cycle no write reaches the banks, answered in order
        :attr:`pair_latency` cycles after the grant. Each group of LANES_PER_COPY banks picks
        its bytes and registers them; only the groups' 16-bit picks travel to the reader, not a
        row of every bank.
    """

    def __init__(self, lanes, size, tag_bits=1, rows=False):
        if lanes & (lanes - 1) or lanes < 2:
            raise ValueError(f"lanes must be a power of two, not {lanes}")
        if size % lanes:
            raise ValueError(f"size {size} is not a multiple of {lanes} lanes")
        self.lanes, self.size, self.rows = lanes, size, rows
        self.addr_bits = max(1, (size - 1).bit_length())
        stages = -(-(lanes - 1).bit_length() // ROTATE_LEVELS_PER_STAGE)
        self.read_latency = 4 + stages          # input, rows, block RAM, output register
        self.write_latency = 1 + stages         # input registers, rotation
        members = {
            "read": In(ReadSignature(self.addr_bits, 8 * lanes, tag_bits)),
            "write": In(WriteSignature(self.addr_bits, 8 * lanes, lanes)),
            "write_dma": In(1), "write_idle": Out(1),
        }
        if rows:
            members["pair"] = In(PairReadSignature(self.addr_bits))
        #: Cycles from a pair read's grant to its answer: block RAM, the bank's output register,
        #: group pick, merge.
        self.pair_latency = 4
        super().__init__(members)

    def _rows(self, m, addr, name, banks=None):
        """Registered row of each bank in ``banks`` (all by default) for a wide access at
        ``addr``: banks below the start offset hold the bytes of the next row (one shared
        incrementer)."""
        n, shift = self.lanes, (self.lanes - 1).bit_length()
        row, offset = addr[shift:], addr[:shift]
        row1 = Signal(len(row), name=f"{name}_row1")
        m.d.comb += row1.eq(row + 1)
        rows = []
        for b in banks if banks is not None else range(n):
            reg = Signal(len(row), name=f"{name}_row{b}")
            m.d.sync += reg.eq(Mux(Const(b, shift) < offset, row1, row) if b < n - 1 else row)
            rows.append(reg)
        return rows

    def elaborate(self, platform):
        m = Module()
        n, shift = self.lanes, (self.lanes - 1).bit_length()
        depth = self.size // n
        banks = []
        for b in range(n):
            m.submodules[f"bank{b}"] = bank = Ram(8, depth, second_read=self.rows)
            banks.append(bank)

        # Read: input registers (1: the address in one copy per LANES_PER_COPY banks, so no
        # register drives every bank's row logic), rows (1), block RAM (1), output register
        # (1), rotation.
        groups = lane_groups(n)
        r_addrs = replicate(m, platform, self.read.addr, groups, "rd_addr")
        rows = []
        for g, addr in enumerate(r_addrs):
            rows += self._rows(m, addr, f"rd{g}", group_lanes(g, n))
        enable = delay(m, self.read.en, 2, "rd_en")
        outputs = []
        for b, bank in enumerate(banks):
            m.d.comb += [bank.read_addr.eq(rows[b]), bank.read_en.eq(enable)]
            q = Signal(8, name=f"rd_q{b}")
            m.d.sync += q.eq(bank.read_data)
            outputs.append(q)
        offset = delay(m, self.read.addr[:shift], 3, "rd_offset")
        # Bank (offset + l) % n holds lane l: rotate right by the offset.
        data, stages = rotate_stages(m, outputs, offset, left=False, name="rd_rot",
                                     platform=platform)
        assert 4 + stages == self.read_latency
        m.d.comb += self.read.data.eq(Cat(*data))
        answer = delay(m, Cat(self.read.en, self.read.tag), self.read_latency, "rd_answer")
        m.d.comb += [self.read.valid.eq(answer[0]), self.read.rtag.eq(answer[1:])]

        # Write: input registers (1), rotation; the row registers ride along. The address
        # has one copy per LANES_PER_COPY banks, each with its own row + 1.
        w = self.write
        w_en = delay(m, w.en, 1, "wr_en")
        groups = lane_groups(n)
        w_addrs = replicate(m, platform, w.addr, groups, "wr_addr")
        lanes = [delay(m, Cat(w.data[8 * l: 8 * l + 8], w.mask[l]), 1, f"wr_lane{l}")
                 for l in range(n)]
        rows = []
        for g, addr in enumerate(w_addrs):
            rows += self._rows(m, addr, f"wr{g}", group_lanes(g, n))
        lanes, stages = rotate_stages(m, lanes, w.addr[:shift], left=True, name="wr_rot",
                                      platform=platform)
        rows = [delay(m, row, stages - 1, f"wr_row{b}") for b, row in enumerate(rows)]
        before = delay(m, w_en, stages - 1, "wr_en_rot")
        en = delay(m, before, 1, "wr_en_rot_last")
        grants = None
        if self.rows:
            grants, pair_rows = self._pair_requests(m, platform, before, en)
        for b, bank in enumerate(banks):
            if grants is None:
                m.d.comb += bank.write_addr.eq(rows[b])
            else:
                g = b // LANES_PER_COPY
                m.d.comb += [bank.write_addr.eq(Mux(grants[g], pair_rows[b], rows[b])),
                             bank.read_b_en.eq(grants[g])]
            m.d.comb += [bank.write_data.eq(lanes[b][:8]), bank.write_en.eq(en & lanes[b][8])]
        if self.rows:
            self._pair_answers(m, platform, banks, grants)
        unit = w.en & ~self.write_dma
        unit_en = delay(m, unit, 1, "wr_unit")
        in_flight = [unit, unit_en] + [delay(m, unit_en, i, f"wr_flight{i}")
                                       for i in range(1, stages + 1)]
        m.d.comb += self.write_idle.eq(~Cat(*in_flight).any())
        return m

    def _pair_requests(self, m, platform, before, writing):
        """A pair request is taken into registers (``ready`` while they are free): each bank
        of each group its row for the request (the row of ``addr``, or the next one below its
        offset), and each group whether a write reaches the banks. It is granted on a cycle
        none does. Returns (grant of each group, the row of each bank)."""
        r = self.pair
        n, shift = self.lanes, (self.lanes - 1).bit_length()
        groups = lane_groups(n)
        pending = Signal(name="pair_pending")
        grant = Signal()
        # A request may be taken in the cycle the one before is granted: one pair a cycle.
        take = r.en & (~pending | grant)
        m.d.comb += [r.ready.eq(~pending | grant), grant.eq(pending & ~writing)]
        next_pending = Mux(take, 1, Mux(grant, 0, pending))
        m.d.sync += pending.eq(next_pending)
        pendings = replicate(m, platform, next_pending, groups, "pair_pending")
        writes = replicate(m, platform, before, groups, "pair_writing")
        grants = [Signal(name=f"pair_grant{g}") for g in range(groups)]
        m.d.comb += [grants[g].eq(pendings[g] & ~writes[g]) for g in range(groups)]
        # The rows, loaded when the request is taken (one incrementer per group), each group
        # deciding that from its own copies: one ``take`` would enable every bank's row
        # register (~800 flip-flops across the chip).
        row, offset = r.addr[shift:], r.addr[:shift]
        rows = []
        for g in range(groups):
            row1 = Signal(len(row), name=f"pair_row1_{g}")
            take_g = Signal(name=f"pair_take{g}")
            m.d.comb += [row1.eq(row + 1), take_g.eq(r.en & (~pendings[g] | grants[g]))]
            for b in group_lanes(g, n):
                reg = Signal(len(row), name=f"pair_row{b}")
                with m.If(take_g):
                    m.d.sync += reg.eq(Mux(b < offset, row1, row) if b < n - 1 else row)
                rows.append(reg)
        # Which byte of the pair each group answers: its offset, kept with the request.
        self._pair_offset = Signal(shift, name="pair_offset")
        with m.If(take):
            m.d.sync += self._pair_offset.eq(offset)
        self._grant = grant
        return grants, rows

    def _pair_answers(self, m, platform, banks, grants):
        """Each bank's second-port output is registered (a flip-flop beside its block RAM:
        a group's banks lie far apart, and a block RAM's unregistered output leaves 5.6 ns
        late); each group picks from them the pair's low byte (bank offset) and high byte
        (bank offset + 1) if it holds them, registered; the groups' picks are merged (each is
        zero unless it holds the byte) and registered again."""
        n, shift = self.lanes, (self.lanes - 1).bit_length()
        groups = len(grants)
        outputs = [delay(m, bank.read_b_data, 1, f"pair_bank{b}") for b, bank in enumerate(banks)]
        offsets = replicate(m, platform, delay(m, self._pair_offset, 1, "pair_offset"), groups,
                            "pair_offset")
        picks = []
        for g in range(groups):
            lo, hi = Signal(8, name=f"pair_lo{g}"), Signal(8, name=f"pair_hi{g}")
            members = group_lanes(g, n)
            m.d.sync += [lo.eq(0), hi.eq(0)]
            for b in members:
                with m.If(offsets[g] == b):
                    m.d.sync += lo.eq(outputs[b])
                with m.If(offsets[g] == (b - 1) % n):
                    m.d.sync += hi.eq(outputs[b])
            picks.append(Cat(lo, hi))
        data = Signal(16, name="pair_data")
        merged = picks[0]
        for pick in picks[1:]:
            merged = merged | pick
        m.d.sync += data.eq(merged)
        r = self.pair
        m.d.comb += [r.data.eq(data), r.valid.eq(delay(m, self._grant, self.pair_latency,
                                                        "pair_valid"))]
