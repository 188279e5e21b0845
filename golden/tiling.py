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

    @property
    def working_set(self):
        return self.in_bytes + self.out_bytes


@dataclass(frozen=True)
class StepPlan:
    """The tiles of one descriptor, in execution order."""
    name: str
    op: int
    tiles: tuple

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


def _tile(d, c0, c1, r0, r1):
    _, _, w = d.in_shape
    _, _, ow = d.out_shape
    if d.op == OP_CONV:
        i0, i1 = _conv_in_rows(d, r0, r1)
        in_bytes = d.in_shape[0] * (i1 - i0) * w
        weights = _group_weight_bytes(d, c0, c1)
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
    # Bands outside: weights read once per band; groups outside: inputs once per group.
    # (With one group, or one band, the two orders are the same tiles.)
    bands_out = [_tile(d, c0, c1, r0, r1) for r0, r1 in bands for c0, c1 in groups]
    groups_out = [_tile(d, c0, c1, r0, r1) for c0, c1 in groups for r0, r1 in bands]
    cost = [sum(t.in_bytes + t.weight_bytes for t in o) for o in (bands_out, groups_out)]
    return tuple(bands_out if cost[0] <= cost[1] else groups_out)


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


def plan_program(program, budget=Budget()):
    """The tiles of every step of ``program`` (a list of :class:`StepPlan`)."""
    plans = []
    for d in program.descriptors:
        tiles = _plan_conv(d, budget) if d.op == OP_CONV else _plan_plane_op(d, budget)
        plans.append(StepPlan(d.name, d.op, tiles))
    return plans


def _conv_tile(d, x, tile):
    """Outputs of ``tile`` of conv ``d`` from its input band ``x`` (in_rows of the plane)."""
    (c0, c1), (r0, r1), (i0, i1) = tile.channels, tile.rows, tile.in_rows
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
    are exactly those the plan says it moves.

    Returns
    -------
    (logits int32 array, dict of step name -> output tensor), as :func:`run_integer`.
    """
    sdram = np.zeros(program.activation_bytes, np.uint8)
    data = np.frombuffer(input_bytes(program, image), np.uint8)
    sdram[program.input_addr: program.input_addr + data.size] = data
    tensors = {}
    for d, plan in zip(program.descriptors, plans):
        c, h, w = d.in_shape
        plane = sdram[d.src: d.src + d.in_bytes].reshape(c, h, w)
        out = np.zeros(d.out_shape if d.op != OP_GLOBAL_SUM else (d.out_shape[0],),
                       np.uint8 if d.op != OP_GLOBAL_SUM else "<i4")
        for tile in plan.tiles:
            if tile.working_set > budget.tile_activation or \
                    tile.weight_bytes > budget.tile_weights:
                raise TilingError(f"{d.name}: a tile exceeds its buffers")
            (c0, c1), (r0, r1), (i0, i1) = tile.channels, tile.rows, tile.in_rows
            channels = slice(None) if d.op == OP_CONV else slice(c0, c1)
            band = np.array(plane[channels, i0:i1])         # the copy into the buffer
            assert band.nbytes == tile.in_bytes, (d.name, tile)
            if d.op == OP_CONV:
                out[c0:c1, r0:r1] = _conv_tile(d, band, tile)
            elif d.op == OP_MAXPOOL:
                out[c0:c1, r0:r1] = max_pool_ceil(band, d.kernel, d.stride)[:, :r1 - r0]
            else:
                out[c0:c1] = band.reshape(c1 - c0, -1).sum(axis=1, dtype=np.int64)
        sdram[d.dst: d.dst + d.out_bytes] = np.frombuffer(out.tobytes(), np.uint8)
        tensors[d.name] = out
    logits = np.frombuffer(sdram[program.output_addr: program.output_addr +
                                 4 * program.classes].tobytes(), "<i4").astype(np.int32)
    return logits, tensors


def traffic_table(program, plans, lanes):
    """Per step: tiles, SDRAM bytes, SDRAM cycles at 2 bytes per cycle, and the ideal MAC
    cycles at ``lanes`` lanes (list of dicts)."""
    rows = []
    for d, plan, work in zip(program.descriptors, plans, layer_work(program, lanes)):
        moved = plan.sdram_bytes
        rows.append({"name": d.name, "op": OP_NAMES[d.op], "tiles": len(plan.tiles),
                     "sdram_bytes": moved,
                     "sdram_cycles": -(-moved // SDRAM_BYTES_PER_CYCLE),
                     "mac_cycles": round(work["ideal_cycles"])})
    return rows
