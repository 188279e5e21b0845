"""The accelerator top: host port, sequencer, conv engine, pool unit and on-chip memories."""

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from squeezefpga.blob_format import ENC_SPARSE
from squeezefpga.config import AcceleratorConfig

from .activation_memory import ActivationMemory
from .conv_engine import ConvEngine
from .descriptor import DescriptorLayout
from .host_port import HostPort
from .pool_unit import PoolUnit
from .ports import ReadShare, WriteShare
from .ram import Buffer
from .sequencer import Sequencer

__all__ = ["Accelerator", "byte_stream_ports"]


def byte_stream_ports():
    """The ports every top shares: host bytes in and out, ``busy``, and what a board shows
    on its LEDs: ``run_error`` (the last run met a step it cannot execute) and
    ``model_loaded``."""
    return {"host_in": In(stream.Signature(8)), "host_out": Out(stream.Signature(8)),
            "busy": Out(1), "run_error": Out(1), "model_loaded": Out(1)}


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
    """

    def __init__(self, config=None, build_id=0):
        self.config = config if config is not None else AcceleratorConfig()
        self.build_id = build_id
        super().__init__({**byte_stream_ports(), "port_idle": Out(1)})

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.layer_counters = counters = Memory(shape=unsigned(32),
                                                        depth=cfg.max_layers, init=[])
        c_write, c_read = counters.write_port(), counters.read_port()
        m.submodules.port = port = HostPort(cfg, self.build_id)
        m.submodules.sequencer = seq = Sequencer(cfg)
        m.submodules.conv = conv = ConvEngine(cfg)
        m.submodules.pool = pool = PoolUnit(cfg)

        wiring.connect(m, wiring.flipped(self.host_in), port.host_in)
        wiring.connect(m, port.host_out, wiring.flipped(self.host_out))
        m.d.comb += [self.busy.eq(seq.running | ~port.idle), self.port_idle.eq(port.idle),
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
        wiring.connect(m, port.weights_write, weights.write)
        m.d.comb += weight_reads.select.eq(Mux(~seq.running, 0, Mux(seq.fetching, 1, 2)))

        # Activation memory: the host while idle, else the unit running the current step.
        units = (port, conv, pool)
        m.submodules.act_reads = act_reads = ReadShare(
            cfg.act_addr_bits, 8 * cfg.lanes, [len(u.act_read.tag) for u in units])
        m.submodules.act_writes = act_writes = WriteShare(
            cfg.act_addr_bits, 8 * cfg.lanes, cfg.lanes, len(units))
        m.submodules.activations = act = ActivationMemory(
            cfg.lanes, cfg.activation_bytes, tag_bits=len(act_reads.memory.tag))
        owner = Mux(~seq.running, 0, Mux(seq.use_pool, 2, 1))
        for unit, reader, writer in zip(units, act_reads.readers, act_writes.writers):
            wiring.connect(m, unit.act_read, reader)
            wiring.connect(m, unit.act_write, writer)
        wiring.connect(m, act_reads.memory, act.read)
        wiring.connect(m, act_writes.memory, act.write)
        m.d.comb += [act_reads.select.eq(owner), act_writes.select.eq(owner),
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
            pool.start.eq(seq.pool_start), pool.global_sum.eq(seq.pool_global_sum),
            pool.channels.eq(layer.in_c),
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
            c_write.addr.eq(seq.layer_index), c_write.data.eq(seq.layer_cycles),
            c_write.en.eq(seq.layer_we),
            c_read.addr.eq(port.ctr_addr), c_read.en.eq(1), port.ctr_data.eq(c_read.data),
        ]
        return m
