"""The tiled program: the layer program as the SDRAM-backed board runs it, one operation at a
time, and its bit-exact execution.

:func:`~.tiling.plan_program` says which tiles each step is cut into; this module turns the
plan into the operations the board's sequencer executes and fixes every address:

- **transfers** (DMA): rows of a tensor from SDRAM into the on-chip activation buffer
  (``DMA_IN``), results back (``DMA_OUT``), a channel group's weight section into the weight
  buffer (``DMA_WEIGHTS``); each moves ``count`` runs of ``length`` bytes, the runs
  ``sdram_stride`` apart in SDRAM and ``local_stride`` apart on chip;
- **computations**: a conv over a band of input rows (computing grid rows ``row0`` ..
  ``row0 + out_h - 1`` of it: a band with a halo row above has ``row0`` 1), a 3x3/2 max pool
  over conv rows kept on chip (its first window row, the last conv row of the band before,
  read from ``carry``), a global sum of whole planes.

Transfers run one after the other on the DMA engine, beside the computations, which run one
after the other on the conv engine and the pool unit. A computation starts once the first
``wait`` transfers have ended; the builder sets ``wait`` to the last earlier transfer whose
bytes it touches, and :func:`check_hazards` proves that no transfer still running can touch
what a computation reads or writes. So executing the operations one by one, in order
(:func:`run_tiled_program`), is what the board computes: this is the specification the
hardware is checked against, tile by tile.

Memories: the SDRAM holds the weight sections of every channel group (from address 0) and the
activations (every tensor in a region of its own: :func:`sdram_layout`); the activation
buffer is split into two slots each for input bands, conv rows and results, so that the next
tile's transfers go beside the current tile's work (double buffering); the weight buffer
holds the program and two slots for weight sections.
"""

import struct
from dataclasses import dataclass, field, replace

import numpy as np

from squeezefpga.blob_format import (ALIGN, DESCRIPTOR, DMA_DESCRIPTOR, DMA_IN, DMA_OUT,
                                     DMA_WEIGHTS, FLAG_TILED, HEADER, HEADER_CRC_OFFSET, MAGIC,
                                     OP_CONV, OP_DMA, OP_GLOBAL_SUM, OP_MAXPOOL,
                                     VERSION)

from squeezefpga.config import ModelFitError

from .blob import ConvWeights, Descriptor, blob_crc, decode_weights, encode_weights
from .integer_model import conv_accumulators, input_bytes
from .ops import max_pool_ceil
from .quantize import requantize
from .tiling import (Budget, TilingError, _channel_groups, _conv_in_rows, _overlap,
                     _pool_in_rows, _reads, _writes, plan_program)

__all__ = ["DMA_IN", "DMA_OUT", "DMA_WEIGHTS", "Transfer", "Compute", "TiledProgram",
           "TiledRun", "sdram_layout", "build_tiled_program", "run_tiled_program",
           "check_hazards", "HazardError", "estimate_cycles", "encode_tiled",
           "decode_tiled", "tiled_for", "program_area"]

DMA_NAMES = {DMA_IN: "in", DMA_OUT: "out", DMA_WEIGHTS: "weights"}
#: On-chip regions start on a whole row of the 64 lanes' banks.
LOCAL_ALIGN = 64
#: Every SDRAM region starts on a 64-byte boundary (a run never starts mid-word by accident).
SDRAM_ALIGN = 64
#: How many computations a transfer into a buffer may be moved ahead of.
PREFETCH_COMPUTES = 8


class HazardError(AssertionError):
    """A transfer that may still run touches bytes a computation uses."""


@dataclass(frozen=True)
class Transfer:
    """``count`` runs of ``length`` bytes between SDRAM and a buffer.

    ``DMA_IN``: SDRAM -> activation buffer; ``DMA_OUT``: activation buffer -> SDRAM;
    ``DMA_WEIGHTS``: SDRAM -> weight buffer. Run i moves ``sdram + i * sdram_stride`` <->
    ``local + i * local_stride``. ``layer`` is the program step it serves.
    """
    kind: int
    sdram: int
    local: int
    length: int
    count: int = 1
    sdram_stride: int = 0
    local_stride: int = 0
    layer: int = 0

    @property
    def bytes(self):
        return self.length * self.count

    def runs(self):
        return [(self.sdram + i * self.sdram_stride, self.local + i * self.local_stride)
                for i in range(self.count)]

    def apply(self, sdram, act, weights):
        """Move the bytes: the transfer's meaning, on three uint8 arrays."""
        local = weights if self.kind == DMA_WEIGHTS else act
        for s, l in self.runs():
            if self.kind == DMA_OUT:
                sdram[s: s + self.length] = act[l: l + self.length]
            else:
                local[l: l + self.length] = sdram[s: s + self.length]


@dataclass(frozen=True)
class Compute:
    """A conv, max pool or global sum on the activation buffer (``step``: a
    :class:`~.blob.Descriptor` with on-chip addresses and the tile's shapes).

    ``wait``: transfers that must have ended first. Conv: ``row0`` is the first grid row it
    computes (``step.out_shape[1]`` rows from there), ``weights_local`` its section's address
    in the weight buffer. Max pool: ``carry`` (or None) is the address of channel 0's first
    window row when it is the last conv row of the band before, channel c's at
    ``carry + c * carry_stride``; the other input rows follow at ``step.src``.
    """
    step: Descriptor
    layer: int
    wait: int = 0
    row0: int = 0
    weights_local: int = 0
    carry: int = None
    carry_stride: int = 0


@dataclass
class TiledProgram:
    """The operations of a whole network on the SDRAM-backed board, and where things are.

    Members
    -------
    ops : list of Transfer and Compute, in execution order.
    program : the layer program it was made from (shapes, requantisation, the input).
    budget : the tiles' buffers (:class:`~.tiling.Budget`: the activation buffer, and the
        two weight slots together).
    program_bytes : bytes of the weight buffer kept for the program (the weight slots
        follow); weight_bytes : the weight buffer's size.
    sdram_weights : {(step index, c0, c1): SDRAM address} of every weight section.
    sections : {(step index, c0, c1): bytes of the section}.
    input_sdram, output_sdram : where the host writes the input and reads the class sums.
    sdram_bytes : SDRAM the program uses.
    """
    ops: list
    program: object
    budget: Budget
    program_bytes: int
    weight_bytes: int
    sdram_weights: dict
    sections: dict
    input_sdram: int
    output_sdram: int
    sdram_bytes: int
    tensors_sdram: dict = field(default_factory=dict)

    @property
    def transfers(self):
        return [op for op in self.ops if isinstance(op, Transfer)]

    @property
    def computes(self):
        return [op for op in self.ops if isinstance(op, Compute)]

    def sdram_image(self):
        """The bytes the host puts in SDRAM before any run (the weight sections)."""
        image = bytearray(max((a + len(self.sections[k]) for k, a in self.sdram_weights.items()),
                              default=0))
        for key, address in self.sdram_weights.items():
            image[address: address + len(self.sections[key])] = self.sections[key]
        return bytes(image)


def _align(n, to):
    return -(-n // to) * to


# -- the SDRAM layout -----------------------------------------------------------------------

def sdram_layout(program, base):
    """Every tensor of ``program`` in an SDRAM region of its own from ``base``: the resident
    layout reuses memory once a tensor is dead, but the tiled schedule writes a fused pool's
    output while its producer still reads its input, so nothing is shared here.

    A region is what one reader reads as a whole: the outputs of the steps it spans (a
    Fire module's two expands, the operands of an add) keep their places in it.

    Returns
    -------
    (src, dst, input address, end): SDRAM addresses of each step's input and output (lists
    by step index), of the program's input, and the end of the activations.
    """
    steps = program.descriptors
    # Which writer's bytes each reader reads: the last writer of every byte before it.
    live = [(program.input_addr, program.input_addr + int(np.prod(program.stored_input_shape)),
             -1)]
    parent = {-1: -1}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    readers = []
    for i, d in enumerate(steps):
        lo, hi = d.src, d.src + d.in_bytes
        writers = {w for s, e, w in live if s < hi and lo < e}
        if not writers:
            raise TilingError(f"{d.name}: reads bytes no step wrote")
        first = min(writers)
        for w in writers:
            parent[find(w)] = find(first)
        readers.append(first)
        parent[i] = i
        a, b = d.dst, d.dst + d.out_bytes
        kept = []
        for s, e, w in live:          # the bytes this step overwrites are no longer w's
            if e <= a or b <= s:
                kept.append((s, e, w))
            else:
                if s < a:
                    kept.append((s, a, w))
                if b < e:
                    kept.append((b, e, w))
        live = kept + [(a, b, i)]
    spans = {}
    starts = {-1: program.input_addr}
    ends = {-1: program.input_addr + int(np.prod(program.stored_input_shape))}
    for i, d in enumerate(steps):
        starts[i], ends[i] = d.dst, d.dst + d.out_bytes
    for w in starts:
        g = find(w)
        lo, hi = spans.get(g, (starts[w], ends[w]))
        spans[g] = (min(lo, starts[w]), max(hi, ends[w]))
    blocks, at = {}, base
    for g in sorted(spans, key=lambda g: (g != -1, g)):
        blocks[g] = at
        at = _align(at + spans[g][1] - spans[g][0], SDRAM_ALIGN)

    def where(writer, address):
        g = find(writer)
        return blocks[g] + address - spans[g][0]

    src = [where(r, d.src) for r, d in zip(readers, steps)]
    dst = [where(i, d.dst) for i, d in enumerate(steps)]
    return src, dst, where(-1, program.input_addr), at


# -- the builder ------------------------------------------------------------------------------

class _WeightCache:
    """The weight buffer's room beside the program, handed out in order and wrapping: a
    section stays (and is not moved again) while nothing has been put over it, so the
    sections a band of a fused chain uses are there for the next band."""

    def __init__(self, base, size):
        self.base, self.size, self.at = base, size, 0
        self.held, self.sizes = {}, {}

    def take(self, key, size):
        """(address, whether it must be moved in) of the section ``key`` of ``size``
        bytes."""
        if key in self.held:
            return self.held[key], False
        size = _align(size, LOCAL_ALIGN)
        if size > self.size:
            raise TilingError(f"a weight section of {size:,} bytes exceeds the "
                              f"{self.size:,} bytes of weight buffer beside the program")
        if self.at + size > self.size:
            self.at = 0
        start, end = self.base + self.at, self.base + self.at + size
        self.held = {k: a for k, a in self.held.items()
                     if not (a < end and start < a + self.sizes[k])}
        self.held[key] = start
        self.sizes[key] = size
        self.at += size
        return start, True


class _Builder:
    def __init__(self, program, budget, program_bytes):
        self.program, self.budget = program, budget
        self.ops, self.transfers = [], 0
        self.program_bytes = program_bytes
        self.weights = _WeightCache(program_bytes, budget.weight_bytes)
        self.sections, self.sdram_weights = {}, {}

    def transfer(self, *args, **kwargs):
        op = Transfer(*args, **kwargs)
        if op.bytes:
            self.ops.append(op)
            self.transfers += 1

    def compute(self, step, layer, **kwargs):
        self.ops.append(Compute(step, layer, **kwargs))

    def section(self, index, d, c0, c1):
        """The weight section of channels c0..c1 of conv ``d`` (step ``index``), placed in
        SDRAM once."""
        key = (index, c0, c1)
        if key not in self.sections:
            w = d.weights
            weights = ConvWeights(w.codebook, w.codes[c0:c1], w.bias[c0:c1])
            self.sections[key] = encode_weights(weights)[2]
        return key


class _Ring:
    """The activation buffer handed out in order, wrapping at its end: a tile's buffers come
    after the tile before's, so the next tile's transfers land beside the current tile's work
    (the waits make any overlap safe; the order makes it rare). A band is kept, not taken
    again, while consecutive tiles read the same rows, and nothing is handed out over it or
    over a row a pool will still read (:attr:`keep`)."""

    def __init__(self, size):
        self.size, self.at, self.band, self.keep = size, 0, None, []

    def _protected(self):
        kept = list(self.keep)
        if self.band:
            kept.append(self.band[1])
        return kept

    def take(self, size, key=None):
        """(address, whether it is new) of ``size`` bytes; ``key`` names a band."""
        if key is not None and self.band and self.band[0] == key:
            return self.band[1][0], False
        size = _align(max(size, 1), LOCAL_ALIGN)
        protected = self._protected() if key is None else list(self.keep)
        for _ in range(2 * len(protected) + 2):
            if self.at + size > self.size:
                self.at = 0
            clash = [e for s, e in protected if s < self.at + size and self.at < e]
            if not clash:
                break
            self.at = _align(max(clash), LOCAL_ALIGN)
        else:
            raise TilingError(f"a tile's {size:,} bytes do not fit beside the "
                              f"{sum(e - s for s, e in protected):,} kept in the "
                              f"{self.size:,}-byte activation buffer")
        address, self.at = self.at, self.at + size
        if key is not None:
            self.band = (key, (address, address + size))
        return address, True


def _conv_band(d, r0, r1):
    """(first input row, input rows, row0) of the band computing output rows r0..r1-1."""
    i0, i1 = _conv_in_rows(d, r0, r1)
    if d.pad == 0:                      # valid (or 1x1): the band is the rows read
        return i0, i1 - i0, 0
    if d.kernel == 1:                   # 1x1 pad 1 (conv10's border): whole planes only
        if (r0, r1) != (0, d.out_shape[1]):
            raise TilingError(f"{d.name}: a 1x1 pad 1 conv runs on whole planes only")
        return 0, d.in_shape[1], 0
    return i0, i1 - i0, r0 - i0


def _conv_tile(b, index, d, tile, slots, src_sdram, out_bytes):
    """The transfers and the conv of one conv tile, and a buffer of ``out_bytes`` for what
    follows it; returns (conv output address, its rows, that buffer's address)."""
    _, h, w = d.in_shape
    (c0, c1), (r0, r1) = tile.channels, tile.conv_rows or tile.rows
    i0, band, row0 = _conv_band(d, r0, r1)
    key = b.section(index, d, c0, c1)
    wlocal, new = b.weights.take(key, len(b.sections[key]))
    if new:
        b.transfer(DMA_WEIGHTS, b.sdram_weights[key], wlocal, len(b.sections[key]),
                   layer=index)
    local, new = slots.take(tile.in_bytes, (src_sdram + i0 * w, band * w, d.in_shape[0]))
    if new:
        b.transfer(DMA_IN, src_sdram + i0 * w, local, band * w, d.in_shape[0], h * w,
                   band * w, layer=index)
    out_w = d.out_shape[2]
    conv_slot, _ = slots.take((c1 - c0) * (r1 - r0) * out_w)
    follow = slots.take(out_bytes)[0] if tile.conv_rows else conv_slot
    step = replace(d, in_shape=(d.in_shape[0], band, w),
                   out_shape=(c1 - c0, r1 - r0, out_w), src=local, dst=conv_slot,
                   weights=ConvWeights(d.weights.codebook, d.weights.codes[c0:c1],
                                       d.weights.bias[c0:c1]))
    b.compute(step, index, row0=row0, weights_local=wlocal)
    return conv_slot, r1 - r0, follow


#: The ULX3S board's buffers: the activation buffer, the weight buffer, and the part of the
#: weight buffer kept for the program (the rest is two slots for weight sections).
BOARD_ACTIVATION_BYTES = 256 * 1024
BOARD_WEIGHT_BYTES = 64 * 1024
BOARD_PROGRAM_BYTES = 24 * 1024


def build_tiled_program(program, activation_bytes=BOARD_ACTIVATION_BYTES,
                        weight_bytes=BOARD_WEIGHT_BYTES, program_bytes=BOARD_PROGRAM_BYTES):
    """The :class:`TiledProgram` of ``program`` for an activation buffer of
    ``activation_bytes`` and a weight buffer of ``weight_bytes``, whose first
    ``program_bytes`` hold the program (header and operations) and the rest two weight
    slots."""
    slot = (weight_bytes - program_bytes) // 2 // LOCAL_ALIGN * LOCAL_ALIGN
    if slot <= 0:
        raise TilingError(f"a {program_bytes:,}-byte program area leaves no room for weights "
                          f"in a {weight_bytes:,}-byte weight buffer")
    budget = Budget(activation_bytes, 2 * slot)
    plans = plan_program(program, budget)
    steps = program.descriptors
    b = _Builder(program, budget, program_bytes)
    # First pass: the weight sections, so the activations' SDRAM addresses come after them.
    for index, (d, plan) in enumerate(zip(steps, plans)):
        for tile in plan.tiles:
            if d.op == OP_CONV:
                b.section(index, d, *tile.channels)
    # A chain whose single band row does not fit the buffers runs as separate steps.
    chains, bands = [], {}
    for chain in _chains(program, plans):
        try:
            bands[chain.consumer] = _chain_rows(program, chain, budget)
        except TilingError:
            continue
        chains.append(chain)
    for chain in chains:
        for j in (*chain.producers, chain.consumer):
            for c0, c1 in _channel_groups(steps[j], budget):
                b.section(j, steps[j], c0, c1)
    sdram_weights, at = b.sdram_weights, 0
    for key, section in b.sections.items():
        sdram_weights[key] = at
        at = _align(at + len(section), SDRAM_ALIGN)
    src_sdram, dst_sdram, input_sdram, end = sdram_layout(program, at)
    index_of = {d.name: i for i, d in enumerate(steps)}
    ring = _Ring(budget.activation_bytes)
    in_chain = {i: chain for chain in chains for i in chain.members}
    for index, (d, plan) in enumerate(zip(steps, plans)):
        if index in in_chain:
            chain = in_chain[index]
            if index == chain.producers[0]:
                _emit_chain(b, ring, program, chain, bands[chain.consumer], src_sdram,
                            dst_sdram)
            continue
        if plan.fused or not plan.tiles:
            continue
        into = steps[index_of[plan.into]] if plan.into else None
        slots = ring
        ring.keep = []
        carry = None                                        # (address, stride) of the band before
        for tile in plan.tiles:
            (c0, c1), (r0, r1) = tile.channels, tile.rows
            if d.op == OP_CONV and into is None:
                out = _conv_tile(b, index, d, tile, slots, src_sdram[index], tile.out_bytes)[2]
                _, oh, ow = d.out_shape
                b.transfer(DMA_OUT, dst_sdram[index] + c0 * oh * ow + r0 * ow, out,
                           (r1 - r0) * ow, c1 - c0, oh * ow, (r1 - r0) * ow, layer=index)
            elif d.op == OP_CONV:
                conv_slot, rows, out = _conv_tile(b, index, d, tile, slots, src_sdram[index],
                                                  tile.out_bytes)
                cw = d.out_shape[2]
                group = c1 - c0
                k = plan.channel_offset
                pool_index = index_of[into.name]
                if into.op == OP_MAXPOOL:
                    first = _pool_in_rows(into, r0, r1)[0]
                    has_carry = tile.conv_rows[0] != first
                    if has_carry and (carry is None or carry[2] != (c0, c1)):
                        raise TilingError(f"{d.name}: a band's first window row is not the "
                                          "band before's last")
                    in_h = rows + (1 if has_carry else 0)
                    pool = Descriptor(into.name, OP_MAXPOOL, (group, in_h, cw),
                                      (group, r1 - r0, into.out_shape[2]), conv_slot, out,
                                      into.kernel, into.stride)
                    b.compute(pool, pool_index,
                              carry=carry[0] if has_carry else None,
                              carry_stride=carry[1] if has_carry else 0)
                    carry = (conv_slot + (rows - 1) * cw, rows * cw, (c0, c1))
                    # The band's last conv rows stay until the next band's pool reads them.
                    ring.keep = [(conv_slot, conv_slot + group * rows * cw)]
                    _, oh, ow = into.out_shape
                    b.transfer(DMA_OUT, dst_sdram[pool_index] + (k + c0) * oh * ow + r0 * ow,
                               out, (r1 - r0) * ow, group, oh * ow, (r1 - r0) * ow,
                               layer=pool_index)
                else:
                    if (r0, r1) != (0, d.out_shape[1]):
                        raise TilingError(f"{d.name}: a global sum over a band of rows")
                    pool = Descriptor(into.name, OP_GLOBAL_SUM, (group, rows, cw), (group, 1, 1),
                                      conv_slot, out)
                    b.compute(pool, pool_index)
                    b.transfer(DMA_OUT, dst_sdram[pool_index] + 4 * (k + c0), out, 4 * group,
                               layer=pool_index)
            else:
                # A pool or a global sum of its own: a channel group's rows in, the result out.
                _, h, w = d.in_shape
                i0, i1 = tile.in_rows
                local, new = slots.take(tile.in_bytes, (src_sdram[index] + c0 * h * w + i0 * w,
                                                        (i1 - i0) * w, c1 - c0))
                if new:
                    b.transfer(DMA_IN, src_sdram[index] + c0 * h * w + i0 * w, local,
                               (i1 - i0) * w, c1 - c0, h * w, (i1 - i0) * w, layer=index)
                out, _ = slots.take(tile.out_bytes)
                if d.op == OP_MAXPOOL:
                    _, oh, ow = d.out_shape
                    step = replace(d, in_shape=(c1 - c0, i1 - i0, w),
                                   out_shape=(c1 - c0, r1 - r0, ow), src=local, dst=out)
                    b.compute(step, index)
                    b.transfer(DMA_OUT, dst_sdram[index] + c0 * oh * ow + r0 * ow, out,
                               (r1 - r0) * ow, c1 - c0, oh * ow, (r1 - r0) * ow, layer=index)
                else:
                    step = replace(d, in_shape=(c1 - c0, h, w), out_shape=(c1 - c0, 1, 1),
                                   src=local, dst=out)
                    b.compute(step, index)
                    b.transfer(DMA_OUT, dst_sdram[index] + 4 * c0, out, 4 * (c1 - c0),
                               layer=index)
    ops = _set_waits(_prefetch(b.ops), budget)
    if len(ops) * DESCRIPTOR.size + HEADER.size > program_bytes:
        raise TilingError(f"{len(ops)} operations do not fit the {program_bytes:,}-byte "
                          "program area")
    output = max(i for i, d in enumerate(steps) if d.dst == program.output_addr)
    tiled = TiledProgram(ops, program, budget, program_bytes, weight_bytes, sdram_weights,
                         b.sections, input_sdram, dst_sdram[output], end,
                         {d.name: dst_sdram[i] for i, d in enumerate(steps)})
    check_hazards(tiled)
    return tiled


# -- a 1x1 conv fused onto the tiles that produce its input -----------------------------------

@dataclass(frozen=True)
class _Chain:
    """Convs (``producers``; through the max pool ``pool`` when there is one) whose output
    only the 1x1 conv ``consumer`` reads: run band by band, the producers' rows stay on chip
    and only the consumer's go to SDRAM."""
    producers: tuple
    pool: int
    consumer: int

    @property
    def members(self):
        return (*self.producers, *(() if self.pool is None else (self.pool,)), self.consumer)


def _data_flow(program):
    """(writers, readers): for each step, the steps whose bytes it reads (-1: the input), and
    for each step, the steps that read bytes it wrote, following the resident layout's
    reuse of memory."""
    steps = program.descriptors
    live = [(program.input_addr,
             program.input_addr + int(np.prod(program.stored_input_shape)), -1)]
    writers, readers = [], {i: set() for i in range(-1, len(steps))}
    for i, d in enumerate(steps):
        lo, hi = d.src, d.src + d.in_bytes
        mine = {w for s, e, w in live if s < hi and lo < e}
        writers.append(mine)
        for w in mine:
            readers[w].add(i)
        a, b = d.dst, d.dst + d.out_bytes
        live = [piece for s, e, w in live
                for piece in ([(s, e, w)] if e <= a or b <= s else
                              [p for p in ((s, a, w), (b, e, w)) if p[0] < p[1]])]
        live.append((a, b, i))
    return writers, readers


def _chains(program, plans):
    """The chains of ``program``: a Fire module's squeeze fused onto the expands (and the pool)
    before it, conv1 and pool1 before fire2's squeeze."""
    steps = program.descriptors
    writers, readers = _data_flow(program)
    found = []
    for s, d in enumerate(steps):
        if d.op != OP_CONV or d.kernel != 1 or d.pad != 0 or plans[s].into or plans[s].fused:
            continue
        mine = sorted(writers[s])
        pool = None
        if len(mine) == 1 and mine[0] >= 0 and steps[mine[0]].op == OP_MAXPOOL:
            pool = mine[0]
            if not plans[pool].fused or _writes(steps[pool]) != _reads(d):
                continue
            producers = sorted(writers[pool])
            if any(plans[j].into != steps[pool].name or readers[j] != {pool}
                   for j in producers):
                continue
        else:
            producers = mine
            if any(j < 0 or plans[j].into or plans[j].fused for j in producers) or \
                    sum(steps[j].out_bytes for j in producers) != d.in_bytes:
                continue
        if any(j < 0 or steps[j].op != OP_CONV or readers[j] - {pool, s}
               for j in producers) or (pool is not None and readers[pool] != {s}):
            continue
        members = set(producers) | {s} | ({pool} if pool is not None else set())
        if max(members) - min(members) + 1 != len(members):
            continue            # something else runs in between
        found.append(_Chain(tuple(producers), pool, s))
    return found


def _chain_band(program, chain, t0, t1):
    """Per producer: the conv rows it computes for rows t0..t1-1 of the consumer's input,
    and whether the first window row comes from the band before (a pool)."""
    steps = program.descriptors
    rows = {}
    for j in chain.producers:
        d = steps[j]
        if chain.pool is None:
            rows[j] = (t0, t1, False)
        else:
            first, r1 = _pool_in_rows(steps[chain.pool], t0, t1)
            carry = t0 > 0 and steps[chain.pool].kernel > steps[chain.pool].stride
            rows[j] = (first + 1 if carry else first, r1, carry)
    return rows


def _chain_working_set(program, chain, budget, t0, t1):
    steps = program.descriptors
    consumer = steps[chain.consumer]
    c_t, _, w_t = consumer.in_shape
    total = c_t * (t1 - t0) * w_t + consumer.out_shape[0] * (t1 - t0) * w_t
    bands = {}
    for j, (r0, r1, carry) in _chain_band(program, chain, t0, t1).items():
        d = steps[j]
        i0, i1 = _conv_in_rows(d, r0, r1)
        key = (d.src, d.in_shape)
        lo, hi = bands.get(key, (i0, i1))
        bands[key] = (min(lo, i0), max(hi, i1))
        if chain.pool is not None:
            c, _, w = d.out_shape
            total += c * (r1 - r0 + 1) * w + c * w     # its conv rows, and the carried row
    for (src, (c, _, w)), (i0, i1) in bands.items():
        total += c * (i1 - i0) * w
    return total


def _chain_rows(program, chain, budget):
    """The most rows of the consumer's input per band whose working set fits half the
    activation buffer."""
    steps = program.descriptors
    height = steps[chain.consumer].in_shape[1]
    for rows in range(height, 0, -1):
        bands = [(t, min(height, t + rows)) for t in range(0, height, rows)]
        if all(_chain_working_set(program, chain, budget, *band) <= budget.tile_activation
               for band in bands):
            return bands
    raise TilingError(f"{steps[chain.consumer].name}: one row of its fused producers exceeds "
                      f"{budget.tile_activation:,} bytes")


def _emit_chain(b, ring, program, chain, bands, src_sdram, dst_sdram):
    """The operations of a chain, band by band (``bands``: its consumer's input rows, from
    :func:`_chain_rows`): the producers' input bands (shared by producers that read the same
    tensor), their convs (and pools) into the consumer's input band on chip, then the
    consumer, whose rows alone go to SDRAM."""
    steps = program.descriptors
    budget = b.budget
    consumer = steps[chain.consumer]
    c_t, h_t, w_t = consumer.in_shape
    pool = steps[chain.pool] if chain.pool is not None else None
    region = pool.dst if pool is not None else consumer.src
    plane_t = h_t * w_t
    carries = {}
    ring.keep = []
    for t0, t1 in bands:
        rows_t = t1 - t0
        band_rows = _chain_band(program, chain, t0, t1)
        # One input band per source tensor: the union of what its producers read.
        spans = {}
        for j, (r0, r1, _) in band_rows.items():
            d = steps[j]
            i0, i1 = _conv_in_rows(d, r0, r1)
            source = (d.src, d.in_shape)
            lo, hi = spans.get(source, (i0, i1))
            spans[source] = (min(lo, i0), max(hi, i1))
        local_in = {}
        for (src, (c, h, w)), (i0, i1) in spans.items():
            j = next(j for j in chain.producers if (steps[j].src, steps[j].in_shape) ==
                     (src, (c, h, w)))
            sdram = src_sdram[j] + i0 * w
            local, new = ring.take(c * (i1 - i0) * w, (sdram, (i1 - i0) * w, c))
            if new:
                b.transfer(DMA_IN, sdram, local, (i1 - i0) * w, c, h * w, (i1 - i0) * w,
                           layer=j)
            local_in[src] = (local, i0, i1)
            ring.keep = [k for k in ring.keep] + [(local, local + c * (i1 - i0) * w)]
        band_t, _ = ring.take(c_t * rows_t * w_t)
        ring.keep.append((band_t, band_t + c_t * rows_t * w_t))
        kept = []
        for j in chain.producers:
            d = steps[j]
            r0, r1, carried = band_rows[j]
            local, i0, i1 = local_in[d.src]
            # The producer's channels among the consumer's input (among the pool's before).
            offset = ((d.dst - pool.src) // (d.out_shape[1] * d.out_shape[2]) if pool
                      else (d.dst - region) // plane_t)
            # "Same" convs (1x1, 3x3 pad 1) compute the band's grid rows from r0 (its top may
            # be a halo row, or a row another producer's halo needs); a valid conv (the
            # polyphase conv1) every row its band gives.
            row0 = r0 - i0 if 2 * d.pad == d.kernel - 1 else 0
            if row0 > 1:
                raise TilingError(f"{d.name}: a band {row0} rows above its first output")
            for c0, c1 in _channel_groups(d, budget):
                key = b.section(j, d, c0, c1)
                wlocal, new = b.weights.take(key, len(b.sections[key]))
                if new:
                    b.transfer(DMA_WEIGHTS, b.sdram_weights[key], wlocal, len(b.sections[key]),
                               layer=j)
                weights = ConvWeights(d.weights.codebook, d.weights.codes[c0:c1],
                                      d.weights.bias[c0:c1])
                conv_rows, src, in_rows = r1 - r0, local, i1 - i0
                cw = d.out_shape[2]
                if pool is None:
                    dst = band_t + (offset + c0) * rows_t * w_t
                    step = replace(d, in_shape=(d.in_shape[0], in_rows, d.in_shape[2]),
                                   out_shape=(c1 - c0, conv_rows, cw), src=src, dst=dst,
                                   weights=weights)
                    b.compute(step, j, row0=row0, weights_local=wlocal)
                    continue
                conv_buffer, _ = ring.take((c1 - c0) * conv_rows * cw)
                step = replace(d, in_shape=(d.in_shape[0], in_rows, d.in_shape[2]),
                               out_shape=(c1 - c0, conv_rows, cw), src=src, dst=conv_buffer,
                               weights=weights)
                b.compute(step, j, row0=row0, weights_local=wlocal)
                carry = carries.get((j, c0)) if carried else None
                if carried and carry is None:
                    raise TilingError(f"{d.name}: a band's first window row is not the band "
                                      "before's last")
                pooled = Descriptor(pool.name, OP_MAXPOOL,
                                    (c1 - c0, conv_rows + (1 if carried else 0), cw),
                                    (c1 - c0, rows_t, pool.out_shape[2]), conv_buffer,
                                    band_t + (offset + c0) * rows_t * w_t, pool.kernel,
                                    pool.stride)
                b.compute(pooled, chain.pool, carry=carry[0] if carry else None,
                          carry_stride=carry[1] if carry else 0)
                carries[(j, c0)] = (conv_buffer + (conv_rows - 1) * cw, conv_rows * cw)
                kept.append((conv_buffer, conv_buffer + (c1 - c0) * conv_rows * cw))
                ring.keep.append(kept[-1])
        # The consumer on the band of its input, its rows to SDRAM.
        _, _, w_out = consumer.out_shape
        for c0, c1 in _channel_groups(consumer, budget):
            key = b.section(chain.consumer, consumer, c0, c1)
            wlocal, new = b.weights.take(key, len(b.sections[key]))
            if new:
                b.transfer(DMA_WEIGHTS, b.sdram_weights[key], wlocal, len(b.sections[key]),
                           layer=chain.consumer)
            out, _ = ring.take((c1 - c0) * rows_t * w_out)
            step = replace(consumer, in_shape=(c_t, rows_t, w_t),
                           out_shape=(c1 - c0, rows_t, w_out), src=band_t, dst=out,
                           weights=ConvWeights(consumer.weights.codebook,
                                               consumer.weights.codes[c0:c1],
                                               consumer.weights.bias[c0:c1]))
            b.compute(step, chain.consumer, row0=0, weights_local=wlocal)
            oh = consumer.out_shape[1]
            b.transfer(DMA_OUT, dst_sdram[chain.consumer] + c0 * oh * w_out + t0 * w_out, out,
                       rows_t * w_out, c1 - c0, oh * w_out, rows_t * w_out,
                       layer=chain.consumer)
        # Only the carried rows outlive the band.
        ring.keep = kept
    ring.keep = []


# -- footprints, waits and the hazard check ----------------------------------------------------

def _footprint(op):
    """(space, start, end, writes) ranges an operation touches."""
    if isinstance(op, Transfer):
        local_space = "weights" if op.kind == DMA_WEIGHTS else "act"
        into_local = op.kind != DMA_OUT
        ranges = []
        for s, l in op.runs():
            ranges.append(("sdram", s, s + op.length, not into_local))
            ranges.append((local_space, l, l + op.length, into_local))
        return ranges
    d = op.step
    ranges = [("act", d.src, d.src + d.in_bytes - (d.in_shape[2] * d.in_shape[0]
                                                   if op.carry is not None else 0), False),
              ("act", d.dst, d.dst + d.out_bytes, True)]
    if op.carry is not None:
        c, _, w = d.in_shape
        ranges += [("act", op.carry + i * op.carry_stride, op.carry + i * op.carry_stride + w,
                    False) for i in range(c)]
    if d.op == OP_CONV:
        section = len(encode_weights(d.weights)[2])
        ranges.append(("weights", op.weights_local, op.weights_local + section, False))
    return ranges


def _conflict(a, b):
    return any(sa == sb and s0 < e1 and s1 < e0 and (wa or wb)
               for sa, s0, e0, wa in a for sb, s1, e1, wb in b)


def _prefetch(ops):
    """Move every transfer into a buffer (a band, a weight section) as early as it can go:
    past the operations before it that touch none of its bytes, but not past another
    transfer into a buffer (they keep their order) nor past more than one tile's
    computations. So a tile's inputs arrive while the tile before computes."""
    out = []
    for op in ops:
        out.append(op)
        if not (isinstance(op, Transfer) and op.kind != DMA_OUT):
            continue
        mine, at, computes = _footprint(op), len(out) - 1, 0
        while at > 0:
            before = out[at - 1]
            if isinstance(before, Transfer) and before.kind != DMA_OUT:
                break
            if isinstance(before, Compute):
                computes += 1
            if _conflict(_footprint(before), mine) or computes > PREFETCH_COMPUTES:
                break
            out[at - 1], out[at] = out[at], out[at - 1]
            at -= 1
    return out


def _set_waits(ops, budget):
    """Each computation waits for the last earlier transfer that touches its bytes."""
    done, out, transfers = [], [], 0
    for op in ops:
        if isinstance(op, Transfer):
            transfers += 1
            done.append((transfers, _footprint(op)))
            out.append(op)
        else:
            mine = _footprint(op)
            wait = max((n for n, f in done if _conflict(f, mine)), default=0)
            out.append(replace(op, wait=wait))
    return out


def check_hazards(tiled):
    """Raise :class:`HazardError` if a computation may run while a transfer that touches its
    bytes has not ended, or if an operation leaves its buffer.

    A computation starts after the first ``wait`` transfers ended and after every earlier
    computation; a transfer starts after every operation before it was issued (the sequencer
    issues in order) and after the transfers before it. So the transfers that may overlap a
    computation are those issued before it with a number above its ``wait``.
    """
    budget = tiled.budget
    limits = {"act": budget.activation_bytes, "weights": tiled.weight_bytes,
              "sdram": 1 << 25}
    issued = []
    for op in tiled.ops:
        for space, start, end, _ in _footprint(op):
            low = tiled.program_bytes if space == "weights" else 0
            if start < low or end > limits[space]:
                raise HazardError(f"{_describe(op)} touches {space} bytes {start}..{end}, "
                                  f"outside {low}..{limits[space]}")
        if isinstance(op, Transfer):
            issued.append((len(issued) + 1, op, _footprint(op)))
            continue
        mine = _footprint(op)
        for number, transfer, theirs in issued:
            if number > op.wait and _conflict(theirs, mine):
                raise HazardError(f"{_describe(op)} may run during transfer {number} "
                                  f"({_describe(transfer)}), which touches its bytes")


def _describe(op):
    if isinstance(op, Transfer):
        return (f"DMA {DMA_NAMES[op.kind]} of {op.count} x {op.length} bytes, SDRAM "
                f"{op.sdram:#x}, local {op.local:#x}")
    return f"{op.step.name} (waiting for {op.wait} transfers)"


# -- execution ----------------------------------------------------------------------------------

@dataclass
class TiledRun:
    """What :func:`run_tiled_program` produced: the class sums, the SDRAM at the end, and every
    computation's output in order (for comparison with the hardware, tile by tile)."""
    logits: np.ndarray
    sdram: np.ndarray
    outputs: list


def _conv(op, act, wbuf):
    d = op.step
    x = act[d.src: d.src + d.in_bytes].reshape(d.in_shape)
    # The weights as the engine's decoder finds them: what the transfers put in the weight
    # buffer, decoded with the step's encoding and entry count.
    encoding, count, expected = encode_weights(d.weights)
    section = bytes(wbuf[op.weights_local: op.weights_local + len(expected)])
    weights = decode_weights(section, 0, encoding, count, d.weights.codebook.size,
                             d.weights.codes.shape, d.name)
    acc = conv_accumulators(x, weights, 1, d.pad)
    y = requantize(acc, d.multiplier, d.shift)[:, op.row0: op.row0 + d.out_shape[1]]
    if y.shape != d.out_shape:
        raise TilingError(f"{d.name}: the band gives {y.shape}, the step says {d.out_shape}")
    return y


def _maxpool(op, act):
    d = op.step
    c, h, w = d.in_shape
    rows = h - (1 if op.carry is not None else 0)
    x = act[d.src: d.src + c * rows * w].reshape(c, rows, w)
    if op.carry is not None:
        carried = np.stack([act[op.carry + i * op.carry_stride:
                                op.carry + i * op.carry_stride + w] for i in range(c)])
        x = np.concatenate([carried[:, None, :], x], axis=1)
    return max_pool_ceil(x, d.kernel, d.stride)[:, :d.out_shape[1]]


def run_tiled_program(tiled, image):
    """Execute ``tiled`` operation by operation on a uint8 image: the SDRAM starts with the
    weight sections and the input (as the host writes them), the buffers empty."""
    program = tiled.program
    budget = tiled.budget
    sdram = np.zeros(tiled.sdram_bytes, np.uint8)
    weights = np.frombuffer(tiled.sdram_image(), np.uint8)
    sdram[:weights.size] = weights
    data = np.frombuffer(input_bytes(program, image), np.uint8)
    sdram[tiled.input_sdram: tiled.input_sdram + data.size] = data
    act = np.zeros(budget.activation_bytes, np.uint8)
    wbuf = np.zeros(tiled.weight_bytes, np.uint8)
    outputs = []
    for op in tiled.ops:
        if isinstance(op, Transfer):
            op.apply(sdram, act, wbuf)
            continue
        d = op.step
        if d.op == OP_CONV:
            y = _conv(op, act, wbuf)
        elif d.op == OP_MAXPOOL:
            y = _maxpool(op, act)
        else:
            c = d.in_shape[0]
            x = act[d.src: d.src + d.in_bytes].reshape(c, -1)
            y = x.sum(axis=1, dtype=np.int64).astype("<i4")
        raw = np.frombuffer(y.tobytes(), np.uint8)
        act[d.dst: d.dst + raw.size] = raw
        outputs.append(y)
    c = program.classes
    logits = np.frombuffer(sdram[tiled.output_sdram: tiled.output_sdram + 4 * c].tobytes(),
                           "<i4").astype(np.int32)
    return TiledRun(logits, sdram, outputs)


# -- a timing model -----------------------------------------------------------------------------

#: SDRAM cycles a transfer run costs beyond its words: a row opened and closed (tRP + tRCD +
#: the pipeline), and the refresh's share (one AUTO REFRESH of ~6 cycles every 556).
RUN_OVERHEAD = 8
REFRESH_SHARE = 1.012


def estimate_cycles(tiled, lanes, group=16):
    """Cycles of ``tiled`` on ``lanes`` lanes by a model of the sequencer: transfers one after
    the other at one 16-bit word per cycle (plus :data:`RUN_OVERHEAD` per run), computations
    one after the other at their non-zero MACs per lane (every tile of ``lanes`` grid
    positions at least ``group`` cycles: the requantisers'), each starting when the
    transfers it waits for have ended. A design figure for the plan, not the hardware's count.

    Returns
    -------
    dict: ``cycles``, ``compute`` (busy cycles of the engines), ``transfer`` (of the DMA),
    ``stall`` (cycles computations waited for transfers).
    """
    dma_free, compute_free, ends = 0.0, 0.0, [0.0]
    busy_compute = busy_dma = stall = 0.0
    for op in tiled.ops:
        if isinstance(op, Transfer):
            words = sum(-(-(s % 2 + op.length) // 2) for s, _ in op.runs())
            time = (words + RUN_OVERHEAD * op.count) * REFRESH_SHARE
            # Issued when the sequencer reaches it: after the computations before it.
            dma_free = max(dma_free, compute_free) + time
            busy_dma += time
            ends.append(dma_free)
            continue
        d = op.step
        if d.op == OP_CONV:
            positions = d.out_shape[1] * d.in_shape[2]
            tiles = -(-positions // lanes)
            per_channel = np.count_nonzero(d.weights.codes.reshape(d.out_shape[0], -1), axis=1)
            time = float(sum(max(int(n), group) * tiles for n in per_channel))
        elif d.op == OP_MAXPOOL:
            segments = -(-d.out_shape[2] // (lanes // 2 - 1))
            time = 3.0 * d.out_shape[0] * d.out_shape[1] * segments
        else:
            time = float(d.in_shape[0] * -(-d.in_shape[1] * d.in_shape[2] // lanes))
        start = max(compute_free, ends[op.wait])
        stall += start - compute_free
        compute_free = start + time
        busy_compute += time
    total = max(compute_free, dma_free)
    return {"cycles": round(total), "compute": round(busy_compute), "transfer": round(busy_dma),
            "stall": round(stall)}


# -- the bytes the device holds ---------------------------------------------------------------

def encode_tiled(tiled):
    """The program part the host writes into the weight buffer (docs/FORMATS.md, "The tiled
    program"): a header flagged :data:`~squeezefpga.blob_format.FLAG_TILED` and one 40-byte
    descriptor per operation; its CRC-32 is what SET_MODEL checks and INFO reports."""
    program = tiled.program
    body = bytearray()
    for op in tiled.ops:
        if isinstance(op, Transfer):
            body += DMA_DESCRIPTOR.pack(OP_DMA, op.kind, 0, op.sdram, op.local, op.length,
                                        op.count, op.sdram_stride, op.local_stride)
            continue
        d = op.step
        encoding = count = n_codes = 0
        weights = op.weights_local
        if d.op == OP_CONV:
            encoding, count, _ = encode_weights(d.weights)
            n_codes = d.weights.codebook.size
        row0 = op.row0
        if d.op == OP_MAXPOOL and op.carry is not None:
            row0, weights, count = 1, op.carry, op.carry_stride
        body += DESCRIPTOR.pack(d.op, d.kernel, d.stride, d.pad, *d.in_shape, *d.out_shape,
                                d.src, d.dst, weights, count, d.multiplier, d.shift, n_codes,
                                encoding, row0, op.wait)
    header = HEADER.pack(MAGIC, VERSION, len(tiled.ops), *program.input_shape, program.classes,
                         program.input_phase, FLAG_TILED, tiled.sdram_bytes, tiled.input_sdram,
                         tiled.output_sdram, HEADER.size + len(body), 0)
    blob = header + bytes(body)
    return blob[:HEADER_CRC_OFFSET] + struct.pack("<I", blob_crc(blob)) + bytes(body)


def decode_tiled(data):
    """The operations of :func:`encode_tiled`'s bytes as (kind, fields) tuples: ``("dma",
    Transfer)`` or ``("compute", dict of the descriptor's fields)`` (for tests and tools)."""
    header = HEADER.unpack_from(data)
    if header[0] != MAGIC or not header[8] & FLAG_TILED:
        raise ValueError("not a tiled program")
    ops = []
    for i in range(header[2]):
        at = HEADER.size + i * DESCRIPTOR.size
        if data[at] == OP_DMA:
            _, kind, _, sdram, local, length, count, ss, ls = DMA_DESCRIPTOR.unpack_from(data, at)
            ops.append(("dma", Transfer(kind, sdram, local, length, count, ss, ls)))
        else:
            names = ("op", "kernel", "stride", "pad", "in_c", "in_h", "in_w", "out_c", "out_h",
                     "out_w", "src", "dst", "weights", "count", "multiplier", "shift", "n_codes",
                     "encoding", "row0", "wait")
            ops.append(("compute", dict(zip(names, DESCRIPTOR.unpack_from(data, at)))))
    return ops


def program_area(weight_bytes):
    """The part of a weight buffer of ``weight_bytes`` kept for the program: 24 KiB on the
    board (64 KiB), a third of a smaller one."""
    return min(BOARD_PROGRAM_BYTES, weight_bytes // 3 // LOCAL_ALIGN * LOCAL_ALIGN)


def tiled_for(program, config, sdram_bytes=None):
    """The tiled program of ``program`` for a device built with ``config`` (its activation
    buffer, its weight buffer) and ``sdram_bytes`` of SDRAM (default: the configuration's),
    checked against the device's limits.

    Raises
    ------
    squeezefpga.config.ModelFitError
        Naming the limit (a tile that fits no buffer, too many operations, the SDRAM).
    """
    def fail(message):
        raise ModelFitError(f"model does not fit the accelerator ({config.lanes} lanes, tiled "
                            f"through the SDRAM): {message}")
    try:
        tiled = build_tiled_program(program, config.activation_bytes, config.weight_bytes,
                                    program_area(config.weight_bytes))
    except TilingError as exc:
        fail(str(exc))
    if len(tiled.ops) > config.max_layers:
        fail(f"{len(tiled.ops)} operations, the device counts {config.max_layers}")
    sdram_bytes = config.sdram_bytes if sdram_bytes is None else sdram_bytes
    if tiled.sdram_bytes > sdram_bytes:
        fail(f"it needs {tiled.sdram_bytes:,} bytes of SDRAM, the device has {sdram_bytes:,}")
    for op in tiled.computes:
        d = op.step
        c, h, w = d.in_shape
        if max(h, w, *d.out_shape[1:]) > config.max_side:
            fail(f"{d.name}: side {max(h, w, *d.out_shape[1:])} exceeds {config.max_side}")
        if d.op == OP_CONV:
            if c * d.kernel ** 2 > config.max_taps:
                fail(f"{d.name}: {c * d.kernel ** 2} taps per channel, the list holds "
                     f"{config.max_taps}")
            if d.out_shape[0] > config.max_channels:
                fail(f"{d.name}: a group of {d.out_shape[0]} channels, the bias buffer holds "
                     f"{config.max_channels}")
            if d.kernel == 1 and d.pad == 1 and d.out_shape[2] > config.lanes:
                fail(f"{d.name}: a border row of {d.out_shape[2]} pixels exceeds the "
                     f"{config.lanes} lanes")
    return tiled
