"""Verilog tops that put the simulated SDRAM chip (``sdram_chip.v``) under test: the chip
alone, its pins driven by a cocotb test, and the controller of ``hw/sdram.py`` with the chip
behind it. The cocotb tests are in :mod:`squeezefpga.sim.tb_sdram`."""

from pathlib import Path

from amaranth import ClockSignal, Elaboratable, Instance, Module, Mux, Signal
from amaranth.back import verilog

from squeezefpga.hw.sdram import SdramController

__all__ = ["CHIP_SOURCE", "chip_top_verilog", "controller_top_verilog"]

CHIP_SOURCE = Path(__file__).with_name("sdram_chip.v")


def _parameters(timing):
    return {"T_RCD": timing.t_rcd, "T_RP": timing.t_rp, "T_RAS": timing.t_ras,
            "T_RC": timing.t_rc, "T_WR": timing.t_wr, "T_RFC": timing.t_rfc,
            "T_MRD": timing.t_mrd, "CL": timing.cas_latency,
            "REFRESH_LIMIT": timing.refresh_limit, "POWER_UP": timing.power_up}


class _Faults:
    """The chip's fault inputs, as ports of the bench."""

    def __init__(self):
        self.stuck_bit = Signal(5, name="fault_stuck_bit")
        self.stuck_value = Signal(name="fault_stuck_value")
        self.dead_line = Signal(4, name="fault_dead_line")

    def ports(self):
        return [self.stuck_bit, self.stuck_value, self.dead_line]

    def connections(self):
        return {"i_fault_stuck_bit": self.stuck_bit, "i_fault_stuck_value": self.stuck_value,
                "i_fault_dead_line": self.dead_line}


def _chip(timing, faults, **pins):
    parameters = {f"p_{k}": v for k, v in _parameters(timing).items()}
    return Instance("sdram_chip", **parameters, i_clk=ClockSignal(), **pins,
                    **faults.connections())


class _ChipBench(Elaboratable):
    """The chip alone: every pin a port of ``top``."""

    def __init__(self, timing):
        self.timing = timing
        self.faults = _Faults()
        self.inputs = {name: Signal(width, name=name) for name, width in (
            ("cke", 1), ("cs_n", 1), ("ras_n", 1), ("cas_n", 1), ("we_n", 1), ("ba", 2),
            ("a", 13), ("dqm", 2), ("dq_in", 16), ("dq_in_oe", 1))}
        self.outputs = {"dq_out": Signal(16, name="dq_out"),
                        "dq_out_oe": Signal(name="dq_out_oe")}

    def ports(self):
        return [*self.inputs.values(), *self.outputs.values(), *self.faults.ports()]

    def elaborate(self, platform):
        m = Module()
        m.submodules.chip = _chip(self.timing, self.faults,
                                  **{f"i_{k}": v for k, v in self.inputs.items()},
                                  **{f"o_{k}": v for k, v in self.outputs.items()})
        return m


class _ControllerBench(Elaboratable):
    """The controller with the chip on its pins; its streams, ``ready`` and ``refreshes``
    are the ports of ``top``."""

    def __init__(self, timing):
        self.timing = timing
        self.faults = _Faults()
        self.controller = SdramController(timing)
        self.request_valid = Signal(name="requests__valid")
        self.request_ready = Signal(name="requests__ready")
        self.request = Signal(len(self.controller.requests.payload.as_value()),
                              name="requests__payload")
        self.response_valid = Signal(name="responses__valid")
        self.response = Signal(16, name="responses__payload")
        self.ready = Signal(name="ready")
        self.refreshes = Signal(32, name="refreshes")

    def ports(self):
        return [self.request_valid, self.request_ready, self.request, self.response_valid,
                self.response, self.ready, self.refreshes, *self.faults.ports()]

    def elaborate(self, platform):
        m = Module()
        m.submodules.controller = c = self.controller
        pins = c.pins
        m.d.comb += [c.requests.valid.eq(self.request_valid),
                     c.requests.payload.eq(self.request),
                     self.request_ready.eq(c.requests.ready),
                     self.response_valid.eq(c.responses.valid),
                     self.response.eq(c.responses.payload),
                     self.ready.eq(c.ready), self.refreshes.eq(c.refreshes)]
        chip_dq, chip_oe = Signal(16), Signal()
        # The DQ bus: the chip's value while it drives, the controller's otherwise.
        m.d.comb += pins.dq_i.eq(Mux(chip_oe, chip_dq, pins.dq_o))
        m.submodules.chip = _chip(
            self.timing, self.faults, i_cke=pins.cke, i_cs_n=pins.cs_n, i_ras_n=pins.ras_n,
            i_cas_n=pins.cas_n, i_we_n=pins.we_n, i_ba=pins.ba, i_a=pins.a, i_dqm=pins.dqm,
            i_dq_in=pins.dq_o, i_dq_in_oe=pins.dq_oe, o_dq_out=chip_dq, o_dq_out_oe=chip_oe)
        return m


def _verilog(bench):
    text = verilog.convert(bench, name="top", ports=bench.ports(), emit_src=False)
    return text + "\n" + CHIP_SOURCE.read_text()


def chip_top_verilog(timing):
    """``top``: the chip alone, every pin a port (for tests that plant violations)."""
    return _verilog(_ChipBench(timing))


def controller_top_verilog(timing):
    """``top``: the controller (its request and response streams as ports) and the chip."""
    return _verilog(_ControllerBench(timing))
