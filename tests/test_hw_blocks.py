"""Gateware blocks on their own, in Amaranth's simulator, each checked as a function against
its reference in the golden model or the protocol."""

import struct

import numpy as np
import pytest
from amaranth import Cat, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from squeezefpga.blob_format import HEADER_CRC_OFFSET, HEADER_LENGTH_OFFSET
from squeezefpga.golden.blob import blob_crc
from squeezefpga.golden.compiler import compile_model
from squeezefpga.golden.network import tiny_squeezenet
from squeezefpga.hw.blob_verifier import BlobVerifier
from squeezefpga.hw.ports import delay

from .streams import collector, sender
from .test_network import random_model

WORD_BITS = 12                          # a 16 KiB weight buffer


def blob_words(blob):
    padded = blob + bytes(-len(blob) % 4)
    return list(struct.unpack(f"<{len(padded) // 4}I", padded))


def serve(m, words, port):
    """Answer the tagged read ``port`` (:mod:`squeezefpga.hw.ports`) from a memory holding
    ``words``, two cycles late: the block RAM, then a register."""
    m.submodules.memory = memory = Memory(shape=unsigned(32), depth=1 << WORD_BITS,
                                          init=words)
    read = memory.read_port()
    data = Signal(32)
    answer = delay(m, Cat(port.en, port.tag), 2, "answer")
    m.d.sync += data.eq(read.data)
    m.d.comb += [read.addr.eq(port.addr), read.en.eq(port.en), port.data.eq(data),
                 port.valid.eq(answer[0]), port.rtag.eq(answer[1:])]


class VerifierBench(wiring.Component):
    """A :class:`BlobVerifier` reading a memory that holds ``blob``."""

    start: In(1)
    expect: In(32)
    done: Out(1)
    ok: Out(1)

    def __init__(self, blob):
        self.words = blob_words(blob)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.verifier = verifier = BlobVerifier(WORD_BITS)
        serve(m, self.words, verifier.mem)
        m.d.comb += [verifier.start.eq(self.start),
                     verifier.expect.eq(self.expect), self.done.eq(verifier.done),
                     self.ok.eq(verifier.ok)]
        return m


def verify(blob, expect):
    """Run the verifier on ``blob``; return (ok, cycles)."""
    bench = VerifierBench(blob)
    outcome = {}

    async def testbench(ctx):
        ctx.set(bench.expect, expect)
        ctx.set(bench.start, 1)
        await ctx.tick()
        ctx.set(bench.start, 0)
        for cycle in range(len(blob) // 4 + 100):
            if ctx.get(bench.done):
                outcome["ok"], outcome["cycles"] = ctx.get(bench.ok), cycle
                return
            await ctx.tick()
        raise AssertionError("the verifier never finished")

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return outcome["ok"], outcome["cycles"]


@pytest.fixture(scope="module")
def tiny_blob():
    rng = np.random.default_rng(2)
    network = tiny_squeezenet(size=35)
    images = [rng.integers(0, 256, network.input_shape, dtype=np.uint8)]
    return compile_model(random_model(network, rng), images).blob


def test_verifier_accepts_the_blob_the_compiler_wrote(tiny_blob):
    ok, cycles = verify(tiny_blob, blob_crc(tiny_blob))
    assert ok == 1
    assert cycles <= len(tiny_blob) // 4 + 4          # one word per cycle


def test_verifier_rejects_a_damaged_or_mismatched_blob(tiny_blob):
    crc = blob_crc(tiny_blob)
    for where in (0, 17, 39, 40, len(tiny_blob) - 1):      # header, descriptors, the end
        damaged = bytearray(tiny_blob)
        damaged[where] ^= 0x10
        assert verify(bytes(damaged), crc)[0] == 0, where
    assert verify(tiny_blob, crc ^ 1)[0] == 0                # not the model the host sent
    for length in (len(tiny_blob) + 2, 36, 1 << 20):         # not whole words, too short, too big
        bad = bytearray(tiny_blob)
        struct.pack_into("<I", bad, HEADER_LENGTH_OFFSET, length)
        struct.pack_into("<I", bad, HEADER_CRC_OFFSET, blob_crc(bad))   # only the length lies
        assert verify(bytes(bad), blob_crc(bad))[0] == 0, length


# -- the requantiser against golden.quantize.requantize ----------------------------------------

def test_requantizer_matches_the_golden_rounding(rng):
    from squeezefpga.golden.quantize import requantize
    from squeezefpga.hw.requantizer import Requantizer
    cases = [(int(a), int(mu), int(s)) for a, mu, s in zip(
        np.concatenate([rng.integers(-2 ** 31, 2 ** 31, 300), [0, -1, 1, 2 ** 31 - 1, -2 ** 31]]),
        rng.integers(2 ** 14, 2 ** 15, 305), rng.integers(1, 64, 305))]
    cases += [(255 << 20, 1 << 14, 34), (-(1 << 30), 1 << 14, 20), ((1 << 31) - 1, 32767, 47),
              ((1 << 31) - 1, 32767, 48), (-(1 << 31), 32767, 63), (3, 1 << 14, 15)]
    dut = Requantizer(tag_bits=16)
    results = []

    async def testbench(ctx):
        for layer in sorted({s for _, _, s in cases}):      # M and S are held for a layer
            batch = [(a, mu) for a, mu, s in cases if s == layer]
            for mu in sorted({mu for _, mu in batch}):
                ctx.set(dut.multiplier, mu)
                ctx.set(dut.shift, layer)
                await ctx.tick()                              # the rounding constant settles
                for a, mu2 in batch:
                    if mu2 != mu:
                        continue
                    ctx.set(dut.valid, 1)
                    ctx.set(dut.acc, a)
                    for _ in range(Requantizer.LATENCY):
                        await ctx.tick()
                        ctx.set(dut.valid, 0)
                    assert ctx.get(dut.out_valid)
                    results.append(((a, mu, layer), ctx.get(dut.out)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert len(results) == len(cases)
    wrong = [(case, got, int(requantize(case[0], case[1], case[2])))
             for case, got in results if got != int(requantize(case[0], case[1], case[2]))]
    assert not wrong, f"{len(wrong)} of {len(results)} differ, first {wrong[0]}"


# -- the link layer against host/link.py -------------------------------------------------------

def link_exchange(stream_in, timeout_cycles=64, cycles=20_000):
    """Feed ``stream_in`` to a LinkLayer whose host port answers each payload with its bytes
    reversed and a status byte; return the bytes it sent back and the payloads the port got."""
    from squeezefpga.hw.link_layer import LinkLayer
    dut = LinkLayer(timeout_cycles)
    sent, payloads = bytearray(), []

    async def port(ctx):
        ctx.set(dut.port_idle, 1)
        ctx.set(dut.port_in.ready, 1)
        payload, quiet = bytearray(), 0
        while True:
            _, _, valid, byte = await ctx.tick().sample(dut.port_in.valid, dut.port_in.payload)
            quiet = 0 if valid else quiet + 1
            if valid:
                payload.append(byte)
                ctx.set(dut.port_idle, 0)        # busy from the first byte, as the port is
            elif payload and quiet == 3:   # a byte every 3rd cycle (fetch, latch, forward)
                payloads.append(bytes(payload))
                for b in bytes(reversed(payload)) + b"\x00":
                    ctx.set(dut.port_out.payload, b)
                    ctx.set(dut.port_out.valid, 1)
                    await ctx.tick()
                ctx.set(dut.port_out.valid, 0)
                ctx.set(dut.port_idle, 1)
                payload = bytearray()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(sender(dut.host_in, stream_in))
    sim.add_process(collector(dut.host_out, sent))
    sim.add_process(port)
    sim.run_until(cycles * 1e-8)
    return bytes(sent), payloads


def test_link_layer_frames_as_host_link_says():
    from squeezefpga.host.link import ReplyParser, encode_request
    from squeezefpga.protocol import LINK_BAD_CRC, LINK_OK, LINK_TOO_LONG
    good = encode_request(7, b"\x01\x02\x03")
    corrupt = bytearray(encode_request(8, b"\x09\x09"))
    corrupt[-1] ^= 0xFF
    too_long = bytes([0xA5, 1, 9, 0xFF, 0xFF])
    stream = b"\x00\x13garbage" + good + bytes(corrupt) + too_long + bytes(40) \
        + encode_request(10, b"\xAB")
    sent, payloads = link_exchange(stream)
    replies = ReplyParser().feed(sent)
    assert [(r.seq, r.status, r.payload) for r in replies] == [
        (7, LINK_OK, b"\x03\x02\x01\x00"), (8, LINK_BAD_CRC, b""), (9, LINK_TOO_LONG, b""),
        (10, LINK_OK, b"\xab\x00")]
    assert payloads == [b"\x01\x02\x03", b"\xab"]       # only good frames reach the port


def test_hardware_codes_are_the_protocol_s():
    """The gateware's enums carry exactly the host's constants: each ``CMD_*``, each status
    byte (the ``STATUS_FLAG_*`` bits and the reply layout aside) and each ``LINK_*`` status."""
    from squeezefpga import protocol
    from squeezefpga.hw.codes import LinkStatus, Opcode, Status

    def constants(prefix, skip=()):
        return {name[len(prefix):]: getattr(protocol, name) for name in protocol.__all__
                if name.startswith(prefix) and isinstance(getattr(protocol, name), int)
                and not name.startswith(skip)}

    for enum, expected in ((Opcode, constants("CMD_")),
                           (Status, constants("STATUS_", ("STATUS_FLAG_",))),
                           (LinkStatus, constants("LINK_", ("LINK_VERSION",)))):
        assert {member.name: member.value for member in enum} == expected, enum.__name__
    assert set(protocol.ARG_BYTES) == {op.value for op in Opcode}


# -- the weight decoder against the blob's weight sections -------------------------------------

class DecoderBench(wiring.Component):
    """A :class:`WeightDecoder` reading a weight buffer (latency 2, like the accelerator's)
    that holds ``blob``."""

    def __init__(self, blob, decoder):
        self.words = blob_words(blob)
        self.decoder = decoder
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = dec = self.decoder
        serve(m, self.words, dec.mem)
        return m


@pytest.mark.parametrize("density", [0.05, 0.4, 1.0])
def test_weight_decoder_lists_the_non_zero_weights(density, rng):
    """Every output channel's list of (tap, code) equals the non-zero codes of the layer,
    in order, for sparse and dense sections; the codebook and biases are copied."""
    from squeezefpga.blob_format import ENC_SPARSE, HEADER
    from squeezefpga.golden.blob import (ConvWeights, Descriptor, Program, decode_program,
                                         encode_program)
    from squeezefpga.hw.weight_decoder import WeightDecoder
    shape = (9, 7, 3, 3)
    codes = rng.integers(1, 40, shape) * (rng.random(shape) < density)
    codes[2] = 0                                          # an empty channel
    weights = ConvWeights(np.concatenate([[0], rng.integers(-128, 128, 39)]).astype(np.int8),
                          codes.astype(np.uint8), rng.integers(-999, 999, 9).astype(np.int32))
    d = Descriptor("conv", 1, (7, 5, 5), (9, 5, 5), 0, 256, 3, 1, 1, 1 << 14, 16, weights)
    blob = encode_program(Program((7, 5, 5), 9 * 25 // 4, 512, 0, 256, [d]))
    raw = struct.unpack_from("<BBBBHHHHHHIIIIHBBBBH", blob, HEADER.size)
    offset, count, n_codes, encoding = raw[12], raw[13], raw[16], raw[17]
    assert decode_program(blob).descriptors[0].weights == weights
    dec = WeightDecoder(WORD_BITS, 10, 8)
    bench = DecoderBench(blob, dec)
    lists, book, bias = [], {}, {}

    async def testbench(ctx):
        for port, value in ((dec.sparse, encoding == ENC_SPARSE), (dec.bias_addr, offset),
                            (dec.entries_addr, offset + 4 * 9 + n_codes),
                            (dec.n_codes, n_codes), (dec.count, count), (dec.out_c, 9),
                            (dec.taps, 7 * 9), (dec.full, 0)):
            ctx.set(port, value)
        ctx.set(dec.start, 1)
        await ctx.tick()
        ctx.set(dec.start, 0)
        buffers = [[], []]
        for _ in range(20_000):
            if ctx.get(dec.book_we):
                book[ctx.get(dec.book_addr)] = ctx.get(dec.book_data)
            if ctx.get(dec.bias_we):
                bias[ctx.get(dec.bias_addr_w)] = ctx.get(dec.bias_data)
            if ctx.get(dec.list_we):
                where = ctx.get(dec.list_addr)
                buffers[where >> 10].append((where & 1023, ctx.get(dec.list_tap),
                                             ctx.get(dec.list_code)))
            if ctx.get(dec.chan_done):
                b, n = ctx.get(dec.chan_buf), ctx.get(dec.chan_count)
                assert [i for i, _, _ in buffers[b]] == list(range(n))
                lists.append([(tap, code) for _, tap, code in buffers[b]])
                buffers[b] = []
                if len(lists) == 9:
                    return
            await ctx.tick()
        raise AssertionError(f"only {len(lists)} of 9 channels were published")

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    for o in range(9):
        flat = codes[o].ravel()
        expected = [(int(t), int(flat[t])) for t in np.flatnonzero(flat)]
        assert lists[o] == expected, f"channel {o}"
    assert [book[i] for i in range(n_codes)] == [v & 0xFF for v in weights.codebook.tolist()]
    assert [bias[i] for i in range(9)] == [v & 0xFFFFFFFF for v in weights.bias.tolist()]


# -- the banked activation memory against a flat byte array ------------------------------------

@pytest.mark.parametrize("lanes", [4, 8, 16])
def test_activation_memory_reads_and_writes_any_address(lanes, rng):
    """Wide masked writes and wide reads at any byte address, through the pipelined rotations,
    agree with a flat byte array; answers come back in order with their tags."""
    from squeezefpga.hw.activation_memory import ActivationMemory
    size = 64 * lanes
    dut = ActivationMemory(lanes, size, tag_bits=12)
    model = np.zeros(size + lanes, np.uint8)
    writes = [(int(rng.integers(0, size - lanes)), rng.integers(0, 256, lanes, dtype=np.uint8),
               rng.random(lanes) < 0.7) for _ in range(150)]
    reads = [int(rng.integers(0, size - lanes)) for _ in range(200)]
    answers = []

    async def testbench(ctx):
        for addr, data, mask in writes:
            ctx.set(dut.write.addr, addr)
            ctx.set(dut.write.data, int.from_bytes(data.tobytes(), "little"))
            ctx.set(dut.write.mask, int(sum(1 << l for l in range(lanes) if mask[l])))
            ctx.set(dut.write.en, 1)
            await ctx.tick()
            model[addr:addr + lanes][mask] = data[mask]
        ctx.set(dut.write.en, 0)
        while not ctx.get(dut.write_idle):
            await ctx.tick()
        for i, addr in enumerate(reads + [None] * (dut.read_latency + 1)):
            ctx.set(dut.read.en, addr is not None)
            ctx.set(dut.read.addr, addr or 0)
            ctx.set(dut.read.tag, i)
            await ctx.tick()
            if ctx.get(dut.read.valid):
                answers.append((ctx.get(dut.read.rtag), ctx.get(dut.read.data)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert [tag for tag, _ in answers] == list(range(len(reads)))
    for (tag, value), addr in zip(answers, reads):
        got = value.to_bytes(lanes, "little")
        assert got == model[addr:addr + lanes].tobytes(), f"read at {addr}"


@pytest.mark.parametrize("lanes", [8, 16])
def test_activation_memory_pair_reads(lanes, rng):
    """The DMA engine's pair reads on the banks' second port, at every kind of address (a
    bank's last byte and the next row's first among them), while wide writes keep taking
    the port: each answer is the two bytes the flat array holds there, in order."""
    from squeezefpga.hw.activation_memory import ActivationMemory
    size = 32 * lanes
    dut = ActivationMemory(lanes, size, rows=True)
    model = rng.integers(0, 256, size, dtype=np.uint8)
    pairs = [int(a) for a in rng.integers(0, size - 1, 300)] + [lanes - 1, 2 * lanes - 1]
    answers = []

    async def fill(ctx):
        for at in range(0, size, lanes):
            ctx.set(dut.write.addr, at)
            ctx.set(dut.write.data, int.from_bytes(model[at:at + lanes].tobytes(), "little"))
            ctx.set(dut.write.mask, (1 << lanes) - 1)
            ctx.set(dut.write.en, 1)
            await ctx.tick()
        ctx.set(dut.write.en, 0)
        await ctx.tick().until(dut.write_idle)

    async def testbench(ctx):
        await fill(ctx)
        asked = 0
        for cycle in range(3000):
            # A write (of the bytes already there) every third cycle: the port is taken.
            busy = cycle % 3 == 0
            at = int(rng.integers(0, size - lanes))
            ctx.set(dut.write.en, busy)
            ctx.set(dut.write.addr, at)
            ctx.set(dut.write.data, int.from_bytes(model[at:at + lanes].tobytes(), "little"))
            ctx.set(dut.write.mask, (1 << lanes) - 1)
            ctx.set(dut.pair.en, asked < len(pairs))
            ctx.set(dut.pair.addr, pairs[min(asked, len(pairs) - 1)])
            _, _, ready, valid, value = await ctx.tick().sample(dut.pair.ready, dut.pair.valid,
                                                                dut.pair.data)
            if ready and asked < len(pairs):
                asked += 1
            if valid:
                answers.append(value)
            if len(answers) == len(pairs):
                break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert len(answers) == len(pairs)
    for value, at in zip(answers, pairs):
        assert value == int(model[at]) | int(model[at + 1]) << 8, f"pair at {at}"
