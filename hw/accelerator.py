"""The accelerator top: host port, sequencer, conv engine, pool unit and on-chip memories."""

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from squeezefpga.blob_format import ENC_SPARSE
from squeezefpga.config import AcceleratorConfig
from squeezefpga.sdram import IO_REGISTERS, SdramTiming

from .activation_memory import ActivationMemory
from .conv_engine import ConvEngine
from .descriptor import DescriptorLayout
from .host_port import HostPort
from .pool_unit import PoolUnit
from .ports import ReadShare, WriteShare
from .dma import DmaEngine
from .ram import Buffer
from .sdram import SdramController, SdramPins, SdramShare
from .sdram_test import SdramTester
from .sequencer import Sequencer

__all__ = ["Accelerator", "byte_stream_ports"]


def byte_stream_ports():
    """The ports every top shares: host bytes in and out, ``busy``, and what a board shows
    on its LEDs: ``run_error`` (the last run met a step it cannot execute) and
    ``model_loaded``."""
    return {"host_in": In(stream.Signature(8)), "host_out": Out(stream.Signature(8)),
            "busy": Out(1), "run_error": Out(1), "model_loaded": Out(1)}


def sdram_ports(config):
    """The SDRAM pins of a top built with ``config`` (none without SDRAM)."""
    return {"sdram": Out(SdramPins())} if config.sdram_mhz else {}


class Accelerator(wiring.Component):
    """SqueezeNet accelerator with its whole model on chip.

    The host loads the compiled blob byte for byte into the weight buffer and the image into
    activation memory, then runs the layer program (:mod:`squeezefpga.protocol`).

    Parameters
    ----------
    config : AcceleratorConfig
    build_id : int
        32-bit identifier reported by INFO (the hash of the sources and configuration).

    Members
    -------
    host_in : In(stream.Signature(8))
    host_out : Out(stream.Signature(8))
    busy : Out(1)
        A command or a run is in progress (the simulated board clocks freely while high).
    run_error : Out(1)
        The last run stopped at a step the hardware cannot execute.
    model_loaded : Out(1)
        A model verified by SET_MODEL is loaded.
    port_idle : Out(1)
        The host port has no command in progress (it may still be running the program).
    sdram : Out(SdramPins())
        The SDRAM chip's pins (only with ``config.sdram_mhz``).
    """

    def __init__(self, config=None, build_id=0):
        self.config = config if config is not None else AcceleratorConfig()
        self.build_id = build_id
        super().__init__({**byte_stream_ports(), "port_idle": Out(1),
                          **sdram_ports(self.config)})

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        # Per step: cycles, cycles waiting for transfers (the sequencer's), SDRAM bytes moved
        # (the DMA engine's, written when a transfer ends).
        m.submodules.layer_counters = counters = Memory(shape=unsigned(64),
                                                        depth=cfg.max_layers, init=[])
        m.submodules.byte_counters = byte_counters = Memory(shape=unsigned(32),
                                                            depth=cfg.max_layers, init=[])
        c_write, c_read = counters.write_port(), counters.read_port()
        b_write, b_read = byte_counters.write_port(), byte_counters.read_port()
        m.submodules.port = port = HostPort(cfg, self.build_id)
        has_dma = bool(cfg.sdram_mhz)
        m.submodules.sequencer = seq = Sequencer(cfg, has_dma)
        m.submodules.conv = conv = ConvEngine(cfg)
        m.submodules.pool = pool = PoolUnit(cfg)

        wiring.connect(m, wiring.flipped(self.host_in), port.host_in)
        wiring.connect(m, port.host_out, wiring.flipped(self.host_out))
        word_bits = len(port.weights.addr)
        dma = DmaEngine(cfg.lanes, cfg.act_addr_bits, word_bits) if has_dma else None
        if dma is not None:
            m.submodules.dma = dma
            wiring.connect(m, seq.dma, dma.commands)
            # The transfers a computation waits for count from the program's first step: a
            # run that starts there counts from zero (one that starts later, step by step,
            # continues the count).
            m.d.comb += [dma.clear.eq(port.run & ~seq.running & (port.first == 0)),
                         seq.dma_done.eq(dma.done),
                         seq.dma_idle.eq(dma.idle),
                         b_write.en.eq(dma.counted), b_write.addr.eq(dma.counted_step),
                         b_write.data.eq(dma.counted_bytes)]
        sdram_busy = self._sdram(m, port, dma, seq)
        m.d.comb += [self.busy.eq(seq.running | ~port.idle | sdram_busy),
                     self.port_idle.eq(port.idle),
                     self.run_error.eq(seq.error), self.model_loaded.eq(port.model_loaded)]

        # Weight buffer: the host writes; host, sequencer and weight decoder read, one at a
        # time (the host while the sequencer is idle).
        readers = (port.weights, seq.mem, conv.mem)
        m.submodules.weight_reads = weight_reads = ReadShare(
            len(port.weights.addr), 32, [len(r.tag) for r in readers])
        m.submodules.weights = weights = Buffer(32, cfg.weight_words, granularity=8,
                                                tag_bits=len(weight_reads.memory.tag))
        for reader, shared in zip(readers, weight_reads.readers):
            wiring.connect(m, reader, shared)
        wiring.connect(m, weight_reads.memory, weights.read)
        if dma is None:
            wiring.connect(m, port.weights_write, weights.write)
        else:       # the host while idle, the DMA engine during a run
            m.submodules.weight_writes = weight_writes = WriteShare(word_bits, 32, 4, 2)
            wiring.connect(m, port.weights_write, weight_writes.writers[0])
            wiring.connect(m, dma.weights_write, weight_writes.writers[1])
            wiring.connect(m, weight_writes.memory, weights.write)
            m.d.comb += weight_writes.select.eq(seq.running)
        m.d.comb += weight_reads.select.eq(Mux(~seq.running, 0, Mux(seq.fetching, 1, 2)))

        # Activation memory: the host while idle, else the unit running the current step.
        units = (port, conv, pool)
        # Registered on the way: the units and the banks lie apart on the chip.
        m.submodules.act_reads = act_reads = ReadShare(
            cfg.act_addr_bits, 8 * cfg.lanes, [len(u.act_read.tag) for u in units],
            registered=True)
        m.submodules.act_writes = act_writes = WriteShare(
            cfg.act_addr_bits, 8 * cfg.lanes, cfg.lanes, len(units), registered=True)
        m.submodules.activations = act = ActivationMemory(
            cfg.lanes, cfg.activation_bytes, tag_bits=len(act_reads.memory.tag),
            rows=dma is not None)
        owner = Mux(~seq.running, 0, Mux(seq.use_pool, 2, 1))
        for unit, reader, writer in zip(units, act_reads.readers, act_writes.writers):
            wiring.connect(m, unit.act_read, reader)
            wiring.connect(m, unit.act_write, writer)
        wiring.connect(m, act_reads.memory, act.read)
        if dma is None:
            wiring.connect(m, act_writes.memory, act.write)
        else:
            self._dma_writes(m, act_writes.memory, dma, act)
            wiring.connect(m, dma.act_pair, act.pair)
        # Writes take the owner a cycle late, from a register (it selects ~600 bits): a unit
        # writes only cycles after its step starts, and a step ends when its writes have
        # landed; the host port writes only while no program runs.
        write_owner = Signal.like(act_writes.select)
        m.d.sync += write_owner.eq(owner)
        m.d.comb += [act_reads.select.eq(owner), act_writes.select.eq(write_owner),
                     seq.memory_idle.eq(act.write_idle)]

        # Sequencer <-> host port, engines.
        words = seq.words
        m.d.comb += [
            seq.run.eq(port.run), seq.first.eq(port.first), seq.last.eq(port.last),
            port.running.eq(seq.running), port.error.eq(seq.error),
            port.step.eq(seq.layer_index),
            seq.conv_done.eq(conv.done), seq.pool_done.eq(pool.done),
        ]
        # The units take the layer from registers: a copy of the descriptor, a cycle after
        # the sequencer's words (it waits that cycle before it starts a unit).
        layer = Signal(DescriptorLayout)
        m.d.sync += layer.eq(words)
        conv_fields = ("kernel", "pad", "in_c", "in_h", "in_w", "out_c", "out_h", "out_w",
                       "src", "dst", "count", "multiplier", "shift", "n_codes")
        m.d.comb += [getattr(conv, f).eq(getattr(layer, f)) for f in conv_fields]
        m.d.comb += [
            conv.start.eq(seq.conv_start), conv.weights_addr.eq(layer.weights),
            conv.sparse.eq(layer.encoding == ENC_SPARSE),
            conv.mode_valid.eq((layer.pad == 0) & (layer.kernel != 1)),
            conv.mode_border.eq((layer.kernel == 1) & (layer.pad == 1)),
            conv.row0.eq(layer.row0[0]),
            pool.start.eq(seq.pool_start), pool.global_sum.eq(seq.pool_global_sum),
            pool.channels.eq(layer.in_c),
            pool.carry_valid.eq(layer.row0[0] & ~seq.pool_global_sum),
            pool.carry.eq(layer.weights), pool.carry_stride.eq(layer.count),
        ]
        m.d.comb += [getattr(pool, f).eq(getattr(layer, f))
                     for f in ("src", "dst", "in_h", "in_w", "out_h", "out_w")]

        # Performance counters.
        total, lane_cycles, entries = Signal(64), Signal(64), Signal(64)
        with m.If(port.run & ~seq.running):
            m.d.sync += [total.eq(0), lane_cycles.eq(0), entries.eq(0)]
        with m.Elif(seq.running):
            m.d.sync += [total.eq(total + 1), lane_cycles.eq(lane_cycles + conv.lanes_busy),
                         entries.eq(entries + conv.mac_entries)]
        m.d.comb += [
            port.totals.eq(Cat(total, lane_cycles, entries)),
            c_write.addr.eq(seq.layer_index),
            c_write.data.eq(Cat(seq.layer_cycles, seq.layer_stall)),
            c_write.en.eq(seq.layer_we),
            c_read.addr.eq(port.ctr_addr), c_read.en.eq(1),
            b_read.addr.eq(port.ctr_addr), b_read.en.eq(1),
        ]
        # The counters' block RAM output, registered (its clock-to-out is slow); the host
        # port waits the cycle.
        m.d.sync += port.ctr_data.eq(Cat(c_read.data, b_read.data))
        return m

    @staticmethod
    def _dma_writes(m, units, dma, act):
        """The activation memory's write port: the unit's writes (rare: one per tile at
        most) go first, the DMA engine's in the cycles between."""
        w, d = act.write, dma.act_write
        # The DMA engine writes lanes 0 and 1 only: the other lanes take the units' data
        # whoever writes (their mask is off for the DMA), so `units.en` selects 18 bits and
        # gates the mask instead of selecting the whole 512-bit row.
        pair = 2
        m.d.comb += [w.en.eq(units.en | d.en), w.data[8 * pair:].eq(units.data[8 * pair:]),
                     w.mask[pair:].eq(units.mask[pair:] & units.en.replicate(len(w.mask) - pair))]
        with m.If(units.en):
            m.d.comb += [w.addr.eq(units.addr), w.data[:8 * pair].eq(units.data[:8 * pair]),
                         w.mask[:pair].eq(units.mask[:pair])]
        with m.Else():
            m.d.comb += [w.addr.eq(d.addr), w.data[:8 * pair].eq(d.data[:8 * pair]),
                         w.mask[:pair].eq(d.mask[:pair]), act.write_dma.eq(d.en)]
        m.d.comb += dma.act_write_ready.eq(~units.en)

    def _sdram(self, m, port, dma, seq):
        """The SDRAM controller, shared by the host port (while idle), the DMA engine (during
        a run) and the pattern tester (while it runs); without SDRAM the host port finds it
        never ready. Returns what keeps the core busy: the power-up sequence and the test (a
        simulated board clocks only while the core is busy)."""
        if not self.config.sdram_mhz:
            return 0
        timing = SdramTiming.safe(self.config.sdram_mhz)
        m.submodules.sdram = sdram = SdramController(timing, IO_REGISTERS)
        m.submodules.sdram_tester = tester = SdramTester()
        m.submodules.sdram_share = share = SdramShare(3, sdram.read_latency)
        wiring.connect(m, sdram.pins, wiring.flipped(self.sdram))
        wiring.connect(m, port.sdram, share.clients[0])
        wiring.connect(m, tester.sdram, share.clients[1])
        wiring.connect(m, dma.sdram, share.clients[2])
        # The client, a cycle late from a register (it selects the queue's whole input): a
        # client not yet selected sees no `ready` and holds its request a cycle.
        client = Signal.like(share.select)
        m.d.sync += client.eq(Mux(tester.busy, 1, Mux(seq.running, 2, 0)))
        m.d.comb += [
            sdram.requests.valid.eq(share.controller.requests.valid),
            sdram.requests.payload.eq(share.controller.requests.payload),
            share.controller.requests.ready.eq(sdram.requests.ready),
            share.controller.responses.valid.eq(sdram.responses.valid),
            share.controller.responses.payload.eq(sdram.responses.payload),
            share.select.eq(client),
            port.sdram_ready.eq(sdram.ready), port.refreshes.eq(sdram.refreshes),
            tester.start.eq(port.test_start), tester.words.eq(port.test_words),
            port.test_busy.eq(tester.busy), port.test_result.eq(tester.result),
            port.test_progress.eq(tester.progress),
        ]
        return ~sdram.ready | tester.busy
