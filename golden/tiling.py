"""Tiled execution: the layer program cut into tiles whose working set fits the on-chip
buffers, with the tensors in SDRAM (the SDRAM-backed board).

A tile of a step is a group of output channels times a band of output rows. It reads, from
SDRAM, the input rows the band needs (the halo of a k x k kernel included, every input
channel: the engine accumulates a whole output channel before it requantises) and the weight
section of its channel group, and writes its outputs back. Its input band and its outputs
must fit half of the on-chip activation buffer, its weights half of the weight buffer: the
other halves take the next tile's transfers (double buffering). A pool reads the rows of its
3x3/2 windows; a global sum reads whole planes of a channel group.

:func:`plan_program` chooses the tiles of every step (the largest bands that fit, and the
loop order, bands outside or channel groups outside, that moves fewer bytes);
:func:`run_tiled` executes the plan on a flat SDRAM image tile by tile, through a buffer of
exactly the planned size, and must give what :func:`~.integer_model.run_integer` gives, bit
for bit: the tile schedule is part of the specification. :func:`traffic_table` puts each
step's SDRAM bytes beside its MAC cycles, at the SDRAM's 2 bytes per cycle.
"""

from dataclasses import dataclass

import numpy as np

from squeezefpga.blob_format import OP_CONV, OP_GLOBAL_SUM, OP_MAXPOOL, OP_NAMES

from .blob import ConvWeights, encode_weights
from .integer_model import conv_accumulators, input_bytes
from .ops import max_pool_ceil
from .perf import layer_work
from .quantize import requantize

__all__ = ["Budget", "Tile", "StepPlan", "plan_program", "run_tiled", "traffic_table",
           "TilingError"]

#: SDRAM bytes per clock cycle (16-bit SDR).
SDRAM_BYTES_PER_CYCLE = 2


class TilingError(ValueError):
    """A step cannot be cut into tiles that fit the buffers."""


@dataclass(frozen=True)
class Budget:
    """On-chip buffer sizes in bytes; a tile may use half of each (double buffering)."""
    activation_bytes: int = 128 * 1024
    weight_bytes: int = 64 * 1024

    @property
    def tile_activation(self):
        return self.activation_bytes // 2

    @property
    def tile_weights(self):
        return self.weight_bytes // 2


@dataclass(frozen=True)
class Tile:
    """Output channels ``channels`` = (c0, c1) and rows ``rows`` = (r0, r1) of one step,
    reading input rows ``in_rows`` = (i0, i1) of every input channel (of the group's channels
    for a pool or global sum)."""
    channels: tuple
    rows: tuple
    in_rows: tuple
    in_bytes: int
    out_bytes: int
    weight_bytes: int
    #: A conv tile with its pool fused: the conv rows it computes, and the bytes it keeps on
    #: chip without moving them (the unpooled rows, or the partial sums of a global sum).
    conv_rows: tuple = None
    on_chip: int = 0

    @property
    def working_set(self):
        return self.in_bytes + self.out_bytes + self.on_chip


@dataclass(frozen=True)
class StepPlan:
    """The tiles of one descriptor, in execution order.

    A conv whose output only a pool reads has that pool fused (``into`` names it): its tiles
    pool their rows on chip and write the pooled rows, at ``channel_offset`` among the pool's
    channels; the pool's own plan is then empty (``fused`` true).
    """
    name: str
    op: int
    tiles: tuple
    into: str = None
    channel_offset: int = 0
    fused: bool = False

    @property
    def sdram_bytes(self):
        return sum(t.in_bytes + t.out_bytes + t.weight_bytes for t in self.tiles)


def _conv_in_rows(d, r0, r1):
    """Input rows (clipped to the plane) that output rows r0..r1-1 of conv ``d`` read."""
    h = d.in_shape[1]
    return max(0, r0 - d.pad), min(h, r1 - 1 - d.pad + d.kernel)


def _pool_in_rows(d, r0, r1):
    h = d.in_shape[1]
    return r0 * d.stride, min(h, (r1 - 1) * d.stride + d.kernel)


def _group_weight_bytes(d, c0, c1):
    w = d.weights
    return len(encode_weights(ConvWeights(w.codebook, w.codes[c0:c1], w.bias[c0:c1]))[2])


def _channel_groups(d, budget):
    """Output-channel groups of a conv whose weight sections fit the tile's weight half."""
    groups, start, out_c = [], 0, d.out_shape[0]
    while start < out_c:
        lo, hi = start + 1, out_c        # the largest end whose section fits
        if _group_weight_bytes(d, start, lo) > budget.tile_weights:
            raise TilingError(f"{d.name}: output channel {start}'s weights alone exceed "
                              f"{budget.tile_weights} bytes")
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _group_weight_bytes(d, start, mid) <= budget.tile_weights:
                lo = mid
            else:
                hi = mid - 1
        groups.append((start, lo))
        start = lo
    return groups


def _tile(d, c0, c1, r0, r1, weight_bytes=0):
    """The tile of channels c0..c1-1, output rows r0..r1-1; a conv's ``weight_bytes`` (its
    group's section, encoded once per group by the caller) are what it moves of weights."""
    _, _, w = d.in_shape
    _, _, ow = d.out_shape
    if d.op == OP_CONV:
        i0, i1 = _conv_in_rows(d, r0, r1)
        in_bytes = d.in_shape[0] * (i1 - i0) * w
        weights = weight_bytes
    elif d.op == OP_MAXPOOL:
        i0, i1 = _pool_in_rows(d, r0, r1)
        in_bytes, weights = (c1 - c0) * (i1 - i0) * w, 0
    else:
        i0, i1 = 0, d.in_shape[1]
        in_bytes, weights = (c1 - c0) * (i1 - i0) * w, 0
    out_bytes = (c1 - c0) * (r1 - r0) * ow * (4 if d.op == OP_GLOBAL_SUM else 1)
    return Tile((c0, c1), (r0, r1), (i0, i1), in_bytes, out_bytes, weights)


def _band_rows(d, c0, c1, budget):
    """The most output rows per band for channels c0..c1 within the activation half."""
    oh = d.out_shape[1]
    best = 0
    for rows in range(1, oh + 1):
        if max(_tile(d, c0, c1, r0, r1).working_set for r0, r1 in _bands(oh, rows)) > \
                budget.tile_activation:
            break
        best = rows
    return best


def _bands(oh, rows):
    return [(r, min(oh, r + rows)) for r in range(0, oh, rows)]


def _plan_conv(d, budget):
    oh = d.out_shape[1]
    groups = _channel_groups(d, budget)
    rows = min(_band_rows(d, c0, c1, budget) for c0, c1 in groups)
    if rows == 0:
        raise TilingError(f"{d.name}: one output row of a channel group with its input rows "
                          f"exceeds {budget.tile_activation} bytes")
    bands = _bands(oh, rows)
    sizes = {g: _group_weight_bytes(d, *g) for g in groups}
    # Bands outside: weights read once per band; groups outside: inputs once per group.
    # (With one group, or one band, the two orders are the same tiles.)
    bands_out = [_tile(d, c0, c1, r0, r1, sizes[c0, c1]) for r0, r1 in bands
                 for c0, c1 in groups]
    groups_out = [_tile(d, c0, c1, r0, r1, sizes[c0, c1]) for c0, c1 in groups
                  for r0, r1 in bands]
    cost = [sum(t.in_bytes + t.weight_bytes for t in o) for o in (bands_out, groups_out)]
    return tuple(bands_out if cost[0] <= cost[1] else groups_out)


def _reads(d):
    return d.src, d.src + d.in_bytes


def _writes(d):
    return d.dst, d.dst + d.out_bytes


def _overlap(a, b):
    return a[0] < b[1] and b[0] < a[1]


def _fusions(program):
    """{producer index: pool index} for every pool (or global sum) whose input only it reads,
    written entirely by convs of the same plane size."""
    steps = program.descriptors
    found = {}
    for i, pool in enumerate(steps):
        if pool.op == OP_CONV:
            continue
        region = _reads(pool)
        producers = [j for j in range(i) if steps[j].op == OP_CONV and
                     region[0] <= steps[j].dst and _writes(steps[j])[1] <= region[1]]
        # The last writer of each byte must be one of them, covering the region exactly.
        producers = [j for j in producers
                     if not any(_overlap(_writes(steps[k]), _writes(steps[j]))
                                for k in range(j + 1, i))]
        if sum(steps[j].out_bytes for j in producers) != pool.in_bytes or \
                any(steps[j].out_shape[1:] != pool.in_shape[1:] for j in producers):
            continue
        first = min(producers)
        readers = [k for k in range(first, len(steps)) if k != i and
                   _overlap(_reads(steps[k]), region) and
                   not any(_overlap(_writes(steps[w]), _reads(steps[k]))
                           for w in range(i + 1, k))]
        if not readers:
            found.update({j: i for j in producers})
    return found


def _fused_tile(d, pool, c0, c1, q0, q1, last=True, weight_bytes=0):
    """Tile of conv ``d`` computing the conv rows that pool rows q0..q1-1 of ``pool`` need
    (a max pool), or conv rows q0..q1-1 summed into partial sums (a global sum).

    3x3/2 windows of consecutive bands share a row: the band before computed it and kept it
    on chip (``on_chip`` counts it), so no conv row is computed twice.
    """
    _, h, w = d.in_shape
    _, oh, ow = d.out_shape
    group = c1 - c0
    if pool.op == OP_MAXPOOL:
        first, r1 = _pool_in_rows(pool, q0, q1)
        r0 = first + 1 if q0 > 0 and pool.kernel > pool.stride else first
        out_bytes = group * (q1 - q0) * pool.out_shape[2]
        on_chip = group * (r1 - first) * ow
    else:
        r0, r1 = q0, q1
        out_bytes = 4 * group if last else 0
        on_chip = group * (r1 - r0) * ow + 4 * group
    i0, i1 = _conv_in_rows(d, r0, r1)
    return Tile((c0, c1), (q0, q1), (i0, i1), d.in_shape[0] * (i1 - i0) * w, out_bytes,
                weight_bytes, (r0, r1), on_chip)


def _plan_fused(d, pool, budget):
    groups = _channel_groups(d, budget)
    rows_out = pool.out_shape[1] if pool.op == OP_MAXPOOL else d.out_shape[1]

    def fits(c0, c1, rows):
        return all(_fused_tile(d, pool, c0, c1, q0, q1).working_set <= budget.tile_activation
                   for q0, q1 in _bands(rows_out, rows))
    rows = 0
    while rows < rows_out and all(fits(c0, c1, rows + 1) for c0, c1 in groups):
        rows += 1
    if rows == 0:
        raise TilingError(f"{d.name}: one pooled row of a channel group exceeds "
                          f"{budget.tile_activation} bytes")
    bands = _bands(rows_out, rows)
    sizes = {g: _group_weight_bytes(d, *g) for g in groups}
    # Groups outside: a global sum's partial sums complete group by group.
    return tuple(_fused_tile(d, pool, c0, c1, q0, q1, q1 == rows_out, sizes[c0, c1])
                 for c0, c1 in groups for q0, q1 in bands)


def _plan_plane_op(d, budget):
    """Pools and global sums: per channel, so channel groups of full or banded planes."""
    c, _, _ = d.in_shape
    oh = d.out_shape[1]
    if _tile(d, 0, 1, 0, oh).working_set <= budget.tile_activation:
        per_group = max(g for g in range(1, c + 1)
                        if _tile(d, 0, g, 0, oh).working_set <= budget.tile_activation)
        return tuple(_tile(d, c0, min(c, c0 + per_group), 0, oh)
                     for c0 in range(0, c, per_group))
    if d.op == OP_GLOBAL_SUM:
        raise TilingError(f"{d.name}: one channel's plane exceeds {budget.tile_activation} "
                          "bytes")
    rows = _band_rows(d, 0, 1, budget)
    return tuple(_tile(d, c0, c0 + 1, r0, r1) for c0 in range(c) for r0, r1 in _bands(oh, rows))


def plan_program(program, budget=Budget(), fuse_pools=True):
    """The tiles of every step of ``program`` (a list of :class:`StepPlan`), with each pool
    fused into the convs that produce its input where only it reads them and the fused tiles
    fit (``fuse_pools``)."""
    steps = program.descriptors
    fusions = _fusions(program) if fuse_pools else {}
    fused_tiles = {}
    for pool in set(fusions.values()):
        producers = [j for j, i in fusions.items() if i == pool]
        try:
            fused_tiles.update({j: _plan_fused(steps[j], steps[pool], budget)
                                for j in producers})
        except TilingError:        # the unpooled rows do not fit beside the band: unfused
            for j in producers:
                del fusions[j]
    absorbed = set(fusions.values())
    plans = []
    for i, d in enumerate(steps):
        if i in fusions:
            pool = steps[fusions[i]]
            offset = (d.dst - pool.src) // (d.out_shape[1] * d.out_shape[2])
            plans.append(StepPlan(d.name, d.op, fused_tiles[i], pool.name, offset))
        elif i in absorbed:
            plans.append(StepPlan(d.name, d.op, (), fused=True))
        else:
            tiles = _plan_conv(d, budget) if d.op == OP_CONV else _plan_plane_op(d, budget)
            plans.append(StepPlan(d.name, d.op, tiles))
    return plans


def _conv_rows(d, x, channels, rows, in_rows):
    """Output rows ``rows`` of output channels ``channels`` of conv ``d`` from its input band
    ``x`` (rows ``in_rows`` of the plane, every channel)."""
    (c0, c1), (r0, r1), (i0, i1) = channels, rows, in_rows
    p = d.pad
    # The band with the zero rows of the padding above and below, and the side padding.
    top = i0 - (r0 - p)
    bottom = (r1 - 1 - p + d.kernel) - i1
    band = np.pad(x, ((0, 0), (top, bottom), (p, p)))
    w = d.weights
    weights = ConvWeights(w.codebook, w.codes[c0:c1], w.bias[c0:c1])
    return requantize(conv_accumulators(band, weights, 1, 0), d.multiplier, d.shift)


def run_tiled(program, image, plans, budget=Budget()):
    """Execute ``plans`` tile by tile on a flat SDRAM image; returns the step outputs.

    Every tile's input band is copied out of SDRAM into a buffer of ``budget.tile_activation``
    bytes (beside its outputs), computed there, and copied back: the bytes a tile may touch
    are exactly those the plan says it moves. A conv with its pool fused pools on chip and
    writes the pool's output; its own output never reaches SDRAM.

    Returns
    -------
    (logits int32 array, dict of step name -> output tensor for every step whose output is
    written to SDRAM), as :func:`run_integer`.
    """
    sdram = np.zeros(program.activation_bytes, np.uint8)
    data = np.frombuffer(input_bytes(program, image), np.uint8)
    sdram[program.input_addr: program.input_addr + data.size] = data
    steps = {d.name: d for d in program.descriptors}
    tensors, pending, carried = {}, {}, {}

    def output(d):
        return np.zeros(d.out_shape if d.op != OP_GLOBAL_SUM else (d.out_shape[0],),
                        np.uint8 if d.op != OP_GLOBAL_SUM else np.int64)

    for d, plan in zip(program.descriptors, plans):
        c, h, w = d.in_shape
        plane = sdram[d.src: d.src + d.in_bytes].reshape(c, h, w)
        if plan.fused:
            out = pending.pop(d.name)
        else:
            target = steps[plan.into] if plan.into else d
            out = pending.setdefault(target.name, output(target)) if plan.into else output(d)
        for tile in plan.tiles:
            if tile.working_set > budget.tile_activation or \
                    tile.weight_bytes > budget.tile_weights:
                raise TilingError(f"{d.name}: a tile exceeds its buffers")
            (c0, c1), (r0, r1), (i0, i1) = tile.channels, tile.rows, tile.in_rows
            channels = slice(None) if d.op == OP_CONV else slice(c0, c1)
            band = np.array(plane[channels, i0:i1])         # the copy into the buffer
            assert band.nbytes == tile.in_bytes, (d.name, tile)
            if d.op == OP_CONV and plan.into:
                y = _conv_rows(d, band, (c0, c1), tile.conv_rows, (i0, i1))
                k0, k1 = plan.channel_offset + c0, plan.channel_offset + c1
                pool = steps[plan.into]
                if pool.op == OP_MAXPOOL:
                    if tile.conv_rows[0] != _pool_in_rows(pool, r0, r1)[0]:
                        y = np.concatenate([carried[c0], y], axis=1)   # the kept row
                    carried[c0] = y[:, -1:]
                    out[k0:k1, r0:r1] = max_pool_ceil(y, pool.kernel, pool.stride)[:, :r1 - r0]
                else:
                    out[k0:k1] += y.reshape(c1 - c0, -1).sum(axis=1, dtype=np.int64)
            elif d.op == OP_CONV:
                out[c0:c1, r0:r1] = _conv_rows(d, band, (c0, c1), (r0, r1), (i0, i1))
            elif d.op == OP_MAXPOOL:
                out[c0:c1, r0:r1] = max_pool_ceil(band, d.kernel, d.stride)[:, :r1 - r0]
            else:
                out[c0:c1] = band.reshape(c1 - c0, -1).sum(axis=1, dtype=np.int64)
        if plan.into:
            continue
        if d.op == OP_GLOBAL_SUM:
            out = out.astype("<i4")
        sdram[d.dst: d.dst + d.out_bytes] = np.frombuffer(out.tobytes(), np.uint8)
        tensors[d.name] = out
    logits = np.frombuffer(sdram[program.output_addr: program.output_addr +
                                 4 * program.classes].tobytes(), "<i4").astype(np.int32)
    return logits, tensors


def traffic_table(program, plans, lanes):
    """Per step: tiles, SDRAM bytes, SDRAM cycles at 2 bytes per cycle, and the ideal MAC
    cycles at ``lanes`` lanes, those of conv rows computed twice by fused pool bands
    included (list of dicts; ``"fused_into"`` names a fused pool)."""
    rows = []
    for d, plan, work in zip(program.descriptors, plans, layer_work(program, lanes)):
        moved = plan.sdram_bytes
        mac = work["ideal_cycles"]
        if plan.into:
            computed = sum((t.conv_rows[1] - t.conv_rows[0]) * (t.channels[1] - t.channels[0])
                           for t in plan.tiles)
            mac *= computed / (d.out_shape[0] * d.out_shape[1])
        rows.append({"name": d.name, "op": OP_NAMES[d.op], "tiles": len(plan.tiles),
                     "fused_into": plan.into, "sdram_bytes": moved,
                     "sdram_cycles": -(-moved // SDRAM_BYTES_PER_CYCLE),
                     "mac_cycles": round(mac)})
    return rows
