"""The DMA engine (hw/dma.py) in Amaranth's simulator, as a function against its reference:
the transfers of golden/tiled_program.py (``run_tiled_program`` moves the same bytes), with a
controller that is not always ready, a write port the units take one cycle in three, and pair
reads that are not granted at once."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from squeezefpga.blob_format import DMA_DESCRIPTOR, DMA_IN, DMA_OUT, DMA_WEIGHTS, OP_DMA
from squeezefpga.golden.tiled_program import Transfer
from squeezefpga.hw.dma import DmaEngine

from .fake_sdram import ByteMemory, controller

LANES = 8
ACT_BITS = 12                   # a 4 KiB activation buffer
WORD_BITS = 9                   # a 2 KiB weight buffer
SDRAM_BYTES = 1 << 14
LATENCY = 7                     # the controller's read latency with the board's I/O registers


def reference(transfers, sdram, act, wbuf):
    """The bytes the transfers leave, as run_tiled_program moves them."""
    for t in transfers:
        t.apply(sdram, act, wbuf)


def simulate(transfers, sdram, act, wbuf, seed):
    dut = DmaEngine(LANES, ACT_BITS, WORD_BITS)
    rng = random.Random(seed)
    state = {"done": False, "counted": []}

    async def memories(ctx):
        pending = []                 # pair reads: (cycle due, address)
        cycle = 0
        while True:
            units = rng.random() < 0.33           # the units write this cycle
            ctx.set(dut.act_write_ready, not units)
            grant = rng.random() < 0.6
            ctx.set(dut.act_pair.ready, grant)
            due = bool(pending) and pending[0][0] == cycle
            ctx.set(dut.act_pair.valid, due)
            if due:
                at = pending.pop(0)[1]
                ctx.set(dut.act_pair.data, int(act[at % act.size])
                        | int(act[(at + 1) % act.size]) << 8)
            sampled = await ctx.tick().sample(
                dut.act_write.en, dut.act_write.addr, dut.act_write.data, dut.act_write.mask,
                dut.act_pair.en, dut.act_pair.addr, dut.weights_write.en,
                dut.weights_write.addr, dut.weights_write.data, dut.weights_write.mask,
                dut.counted, dut.counted_step, dut.counted_bytes)
            (en, addr, wdata, mask, pair_en, pair_at, w_en, w_addr, w_data, w_mask,
             counted, step, moved) = sampled[2:]
            cycle += 1
            if en and not units:
                for lane in range(LANES):
                    if mask >> lane & 1:
                        act[(addr + lane) % act.size] = wdata >> (8 * lane) & 0xFF
            if w_en:
                for byte in range(4):
                    if w_mask >> byte & 1:
                        wbuf[4 * w_addr + byte] = w_data >> (8 * byte) & 0xFF
            if pair_en and grant:
                pending.append((cycle + 2, pair_at))
            if counted:
                state["counted"].append((step, moved))

    async def bench(ctx):
        for i, t in enumerate(transfers):
            raw = DMA_DESCRIPTOR.pack(OP_DMA, t.kind, 0, t.sdram, t.local, t.length, t.count,
                                      t.sdram_stride, t.local_stride)
            ctx.set(dut.commands.payload.transfer.as_value(), int.from_bytes(raw, "little"))
            ctx.set(dut.commands.payload.step, i + 100)
            ctx.set(dut.commands.valid, 1)
            await ctx.tick().until(dut.commands.ready)
        ctx.set(dut.commands.valid, 0)
        await ctx.tick().repeat(4)
        await ctx.tick().until(dut.idle)
        state["done"] = ctx.get(dut.done)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(controller(dut.sdram, ByteMemory(sdram), LATENCY, seed, 0.7))
    sim.add_process(memories)
    sim.add_testbench(bench)
    sim.run()
    return state


def random_transfers(rng, count):
    transfers = []
    for _ in range(count):
        kind = rng.choice([DMA_IN, DMA_IN, DMA_OUT, DMA_OUT, DMA_WEIGHTS])
        if kind == DMA_WEIGHTS:              # sections: 4-byte aligned
            length = 4 * rng.randrange(1, 40)
            transfers.append(Transfer(kind, 4 * rng.randrange(0, 3000), 4 * rng.randrange(0, 300),
                                      length))
            continue
        length, runs = rng.randrange(1, 150), rng.randrange(1, 5)
        transfers.append(Transfer(kind, rng.randrange(0, 8000), rng.randrange(0, 3000), length,
                                  runs, rng.randrange(length, length + 300),
                                  rng.randrange(length, length + 64)))
    return transfers


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_transfers_move_the_reference_bytes(seed):
    """Odd and even addresses and lengths on both sides, several runs, every kind: the
    SDRAM, activation buffer and weight buffer end as the reference leaves them, and each
    transfer is counted once with its bytes."""
    rng = random.Random(seed)
    transfers = random_transfers(rng, 12)
    init = np.random.default_rng(seed)
    memories = [init.integers(0, 256, n, dtype=np.uint8)
                for n in (SDRAM_BYTES, 1 << ACT_BITS, 4 << WORD_BITS)]
    expected = [m.copy() for m in memories]
    reference(transfers, *expected)
    state = simulate(transfers, *memories, seed)
    for name, got, want in zip(("SDRAM", "activation buffer", "weight buffer"), memories,
                               expected):
        differ = np.flatnonzero(got != want)
        assert differ.size == 0, f"{name}: first wrong byte at {differ[0]}"
    assert state["done"] == len(transfers)
    assert state["counted"] == [(i + 100, t.bytes) for i, t in enumerate(transfers)]
