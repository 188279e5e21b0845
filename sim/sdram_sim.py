"""Verilog tops that put the simulated SDRAM chip (``sdram_chip.v``) under test: the chip
alone, its pins driven by a cocotb test, and the controller of ``hw/sdram.py`` with the chip
behind it. The cocotb tests are in :mod:`squeezefpga.sim.tb_sdram`."""

from pathlib import Path

from amaranth import ClockSignal, Elaboratable, Instance, Module, Mux, Signal
from amaranth.back import verilog

from squeezefpga.hw.sdram import SdramController

__all__ = ["CHIP_SOURCE", "chip_top_verilog", "controller_top_verilog", "board_verilog"]

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


#: The simulated board of an SDRAM configuration: the framed accelerator (module
#: ``sqz_core``), the board's I/O flip-flops on every SDRAM pin (one cycle out, one in:
#: ``squeezefpga.sdram.IO_REGISTERS``) and the simulated chip. Faults are planted with
#: plusargs on the board's command line: ``+sdram_stuck_bit=N +sdram_stuck_value=V``,
#: ``+sdram_dead_line=L``.
_BOARD_TOP = """\
module top(clk, rst, host_in__payload, host_in__valid, host_in__ready, host_out__payload,
           host_out__valid, host_out__ready, busy, run_error, model_loaded);
    input clk;
    input rst;
    input [7:0] host_in__payload;
    input host_in__valid;
    output host_in__ready;
    output [7:0] host_out__payload;
    output host_out__valid;
    input host_out__ready;
    output busy;
    output run_error;
    output model_loaded;
    wire cke, cs_n, ras_n, cas_n, we_n, dq_oe;
    wire [1:0] ba, dqm;
    wire [12:0] a;
    wire [15:0] dq_o, chip_dq;
    wire chip_oe;
    reg [15:0] dq_i = 16'd0;
    sqz_core core(
        .clk(clk), .rst(rst),
        .host_in__payload(host_in__payload), .host_in__valid(host_in__valid),
        .host_in__ready(host_in__ready), .host_out__payload(host_out__payload),
        .host_out__valid(host_out__valid), .host_out__ready(host_out__ready),
        .busy(busy), .run_error(run_error), .model_loaded(model_loaded),
        .sdram__cke(cke), .sdram__cs_n(cs_n), .sdram__ras_n(ras_n), .sdram__cas_n(cas_n),
        .sdram__we_n(we_n), .sdram__ba(ba), .sdram__a(a), .sdram__dqm(dqm),
        .sdram__dq_o(dq_o), .sdram__dq_oe(dq_oe), .sdram__dq_i(dq_i));
    // The I/O flip-flops of the board top (boards/ulx3s.py).
    reg cke_q = 1'b1, cs_n_q = 1'b1, ras_n_q = 1'b1, cas_n_q = 1'b1, we_n_q = 1'b1;
    reg dq_oe_q = 1'b0;
    reg [1:0] ba_q = 2'd0, dqm_q = 2'd0;
    reg [12:0] a_q = 13'd0;
    reg [15:0] dq_o_q = 16'd0;
    always @(posedge clk) begin
        cke_q <= cke; cs_n_q <= cs_n; ras_n_q <= ras_n; cas_n_q <= cas_n; we_n_q <= we_n;
        ba_q <= ba; dqm_q <= dqm; a_q <= a; dq_o_q <= dq_o; dq_oe_q <= dq_oe;
        dq_i <= chip_oe ? chip_dq : dq_o_q;
    end
    reg [4:0] stuck_bit = 5'd31;
    reg stuck_value = 1'b0;
    reg [3:0] dead_line = 4'd15;
    integer plusarg;
    initial begin
        if ($value$plusargs("sdram_stuck_bit=%d", plusarg)) stuck_bit = plusarg[4:0];
        if ($value$plusargs("sdram_stuck_value=%d", plusarg)) stuck_value = plusarg[0];
        if ($value$plusargs("sdram_dead_line=%d", plusarg)) dead_line = plusarg[3:0];
    end
    sdram_chip #(PARAMETERS) chip(
        .clk(clk), .cke(cke_q), .cs_n(cs_n_q), .ras_n(ras_n_q), .cas_n(cas_n_q), .we_n(we_n_q),
        .ba(ba_q), .a(a_q), .dqm(dqm_q), .dq_in(dq_o_q), .dq_in_oe(dq_oe_q),
        .dq_out(chip_dq), .dq_out_oe(chip_oe), .fault_stuck_bit(stuck_bit),
        .fault_stuck_value(stuck_value), .fault_dead_line(dead_line));
endmodule
"""


def board_verilog(core_verilog, timing):
    """``top`` of the simulated SDRAM board around ``core_verilog`` (a framed accelerator
    emitted as module ``sqz_core``), for the board harness."""
    parameters = ", ".join(f".{k}({v})" for k, v in _parameters(timing).items())
    return (core_verilog + "\n" + _BOARD_TOP.replace("PARAMETERS", parameters) + "\n" +
            CHIP_SOURCE.read_text())
