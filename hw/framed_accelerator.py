"""The board top: the link layer in front of the accelerator."""

from amaranth import Module
from amaranth.lib import wiring

from squeezefpga.config import AcceleratorConfig

from .accelerator import Accelerator, byte_stream_ports, sdram_ports
from .link_layer import LinkLayer

__all__ = ["FramedAccelerator"]


class FramedAccelerator(wiring.Component):
    """:class:`Accelerator` behind a :class:`LinkLayer`: what a board (real or simulated)
    exposes on its serial link.

    Parameters
    ----------
    config : AcceleratorConfig
    build_id : int

    Members
    -------
    host_in : In(stream.Signature(8)); host_out : Out(stream.Signature(8))
        Framed requests and replies (docs/PROTOCOL.md).
    busy : Out(1)
        A frame, a command or a run is in progress.
    run_error, model_loaded : Out(1); sdram : Out(SdramPins())
        As :class:`Accelerator`'s.
    """

    def __init__(self, config=None, build_id=0):
        self.config = config if config is not None else AcceleratorConfig()
        self.build_id = build_id
        super().__init__({**byte_stream_ports(), **sdram_ports(self.config)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = LinkLayer(self.config.timeout_cycles)
        m.submodules.accelerator = accel = Accelerator(self.config, self.build_id)
        wiring.connect(m, wiring.flipped(self.host_in), link.host_in)
        wiring.connect(m, link.host_out, wiring.flipped(self.host_out))
        wiring.connect(m, link.port_in, accel.host_in)
        wiring.connect(m, accel.host_out, link.port_out)
        m.d.comb += [link.port_idle.eq(accel.port_idle), self.busy.eq(accel.busy | ~link.idle),
                     self.run_error.eq(accel.run_error),
                     self.model_loaded.eq(accel.model_loaded)]
        if self.config.sdram_mhz:
            wiring.connect(m, accel.sdram, wiring.flipped(self.sdram))
        return m
