"""The ULX3S (Lattice ECP5 LFE5U-85F) board: the framed accelerator behind the FTDI UART.

- an EHXPLLL makes the core clock from the 25 MHz oscillator (:mod:`.pll`);
- a UART PHY (:mod:`.uart`) at 3 Mbaud on the FTDI pins carries the framed link
  (docs/PROTOCOL.md), exactly what the simulated board serves on TCP;
- the 32 MB SDRAM on its own controller (``hw/sdram.py``): every pin through an I/O
  flip-flop, its clock from a second PLL output shifted by :data:`SDRAM_CLOCK_DEGREES`;
- LEDs: 0 alive (blinks once a second), 1 busy, 2 run error, 3 model loaded, 7 PLL locked;
  the PWR button resets the core.

The on-chip memories are sized for the 85F (docs/ARCHITECTURE.md has the per-buffer budget):
the whole real model does not fit with its activations, so this board runs models that do
(the reduced network) until the SDRAM-backed configuration exists.
"""

from dataclasses import dataclass

from amaranth import ClockDomain, ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import AsyncFFSynchronizer
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from squeezefpga.config import AcceleratorConfig
from squeezefpga.hw.framed_accelerator import FramedAccelerator

from .pll import phase_steps, pll_settings
from .uart import UART, divisor

__all__ = ["Board", "ULX3S_85F", "ULX3SPlatform", "ULX3STop", "BOARDS",
           "SDRAM_CLOCK_DEGREES"]

#: How far the SDRAM's clock lags the core's. The chip must see each command (launched by an
#: output flip-flop at a core edge) after its setup time, and its read data (valid from
#: tAC = 5.4-6 ns after the chip's edge, CAS latency 3) must be settled at the input
#: flip-flop's core edge: at 75 MHz both hold for a lag of about 4.5 to 6.4 ns, and 146 degrees
#: (5.4 ns) sits between. An estimate from the datasheets, not a measurement on a board:
#: docs/BOARD_BRINGUP.md says how to try others (``build --sdram-phase``).
SDRAM_CLOCK_DEGREES = 146.25


@dataclass(frozen=True)
class Board:
    """What the build needs to know about a board.

    Members
    -------
    name : str
        As the command line spells it.
    device, package, speed : str
        nextpnr-ecp5's ``--85k``, ``--package``, ``--speed``.
    oscillator_mhz : float
    lut4, mult18, dp16kd : int
        The device's LUT4 slots, 18x18 multipliers and 18 Kbit block RAMs.
    baud : int
        The UART's speed.
    """
    name: str
    device: str
    package: str
    speed: str
    oscillator_mhz: float
    lut4: int
    mult18: int
    dp16kd: int
    baud: int = 3_000_000

    def config(self, lanes, clock_mhz=75.0):
        """The :class:`AcceleratorConfig` built for this board with ``lanes`` lanes at
        ``clock_mhz`` (the SDRAM's timings in cycles depend on it)."""
        return AcceleratorConfig(lanes=lanes, activation_bytes=256 * 1024,
                                 weight_bytes=64 * 1024, max_layers=1024, max_taps=1024,
                                 max_channels=1024, max_side=1023,
                                 timeout_cycles=1 << 20, sdram_mhz=clock_mhz)


ULX3S_85F = Board("ulx3s-85f", "85k", "CABGA381", "6", 25.0, lut4=83_640, mult18=156,
                  dp16kd=208)
BOARDS = {ULX3S_85F.name: ULX3S_85F}


class ULX3SPlatform(ULX3S_85F_Platform):
    """amaranth-boards' ULX3S 85F; programming goes through ``squeezefpga program``."""

    @property
    def required_tools(self):
        return ["yosys", "nextpnr-ecp5", "ecppack"]


class ULX3STop(wiring.Component):
    """The board top: PLL, reset, UART, the framed accelerator, LEDs.

    Parameters
    ----------
    config : AcceleratorConfig
    clock_mhz : float
        The core clock (the PLL must be able to make it).
    build_id : int
    board : Board
    """

    def __init__(self, config, clock_mhz, build_id=0, board=ULX3S_85F,
                 sdram_degrees=SDRAM_CLOCK_DEGREES):
        self.config, self.clock_mhz, self.build_id, self.board = config, clock_mhz, build_id, \
            board
        self.pll = pll_settings(board.oscillator_mhz, clock_mhz)
        self.sdram_phase = phase_steps(self.pll, sdram_degrees)
        self.cycles_per_bit = divisor(clock_mhz * 1e6, board.baud)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        locked = Signal()
        self._clock(m, platform, locked)
        m.submodules.uart = uart = UART(self.cycles_per_bit)
        m.submodules.core = core = FramedAccelerator(self.config, self.build_id)
        wiring.connect(m, uart.source, core.host_in)
        wiring.connect(m, core.host_out, uart.sink)
        pins = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", pins.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", pins.tx)
        m.d.comb += [uart.rx.eq(rx.i), tx.o.eq(uart.tx)]
        heartbeat = Signal(range(int(self.clock_mhz * 1e6)))
        alive = Signal()
        with m.If(heartbeat == 0):
            m.d.sync += [heartbeat.eq(int(self.clock_mhz * 1e6) - 1), alive.eq(~alive)]
        with m.Else():
            m.d.sync += heartbeat.eq(heartbeat - 1)
        leds = []
        for i in range(8):
            m.submodules[f"led_{i}"] = led = io.Buffer("o", platform.request("led", i, dir="-"))
            leds.append(led)
        m.d.comb += [leds[0].o.eq(alive), leds[1].o.eq(core.busy), leds[2].o.eq(core.run_error),
                     leds[3].o.eq(core.model_loaded), leds[7].o.eq(locked)]
        if self.config.sdram_mhz:
            self._sdram(m, platform, core.sdram)
        return m

    def _sdram(self, m, platform, pins):
        """The controller's pins through the I/O flip-flops (``squeezefpga.sdram.IO_REGISTERS``
        counts them); the resource's active-low pins are inverted by amaranth-boards."""
        sdram = platform.request("sdram", 0, dir={"clk": "-", "clk_en": "-", "cs": "-",
                                                  "we": "-", "ras": "-", "cas": "-",
                                                  "ba": "-", "a": "-", "dq": "-", "dqm": "-"})
        m.submodules.sdram_clk = clk = io.Buffer("o", sdram.clk)
        m.d.comb += clk.o.eq(ClockSignal("sdram"))
        outputs = {"clk_en": pins.cke, "cs": ~pins.cs_n, "we": ~pins.we_n, "ras": ~pins.ras_n,
                   "cas": ~pins.cas_n, "ba": pins.ba, "a": pins.a, "dqm": pins.dqm}
        for name, value in outputs.items():
            m.submodules[f"sdram_{name}"] = buffer = io.FFBuffer("o", getattr(sdram, name))
            m.d.comb += buffer.o.eq(value)
        m.submodules.sdram_dq = dq = io.FFBuffer("io", sdram.dq)
        m.d.comb += [dq.o.eq(pins.dq_o), dq.oe.eq(pins.dq_oe), pins.dq_i.eq(dq.i)]

    def _clock(self, m, platform, locked):
        """The sync domain from the PLL, held in reset until it locks or while PWR is held."""
        p = self.pll
        m.submodules.clk25 = clk25 = io.Buffer("i", platform.request("clk25", 0, dir="-"))
        m.domains.sync = sync = ClockDomain("sync")
        m.domains.sdram = sdram = ClockDomain("sdram", reset_less=True)
        cphase, fphase = self.sdram_phase
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{p.f_in:g}", a_FREQUENCY_PIN_CLKOP=f"{p.f_out:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=p.clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p.clkop_div,
            p_CLKOP_CPHASE=p.clkop_cphase, p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=p.clkfb_div,
            p_CLKOS_ENABLE="ENABLED", p_CLKOS_DIV=p.clkop_div, p_CLKOS_CPHASE=cphase,
            p_CLKOS_FPHASE=fphase, o_CLKOS=sdram.clk,
            i_RST=0, i_STDBY=0, i_CLKI=clk25.i, o_CLKOP=sync.clk,
            i_CLKFB=sync.clk, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1,
            i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
        platform.add_clock_constraint(sync.clk, p.f_out * 1e6)
        m.submodules.button_pwr = button = io.Buffer("i",
                                                     platform.request("button_pwr", 0, dir="-"))
        # The synchronised reset goes out on a global network (a DCCA, as a clock would): it
        # reaches every flip-flop of the design (~25,000 at 64 lanes), which in the fabric's
        # routing is one huge net across the whole chip.
        reset = Signal()
        m.submodules.reset = AsyncFFSynchronizer(~locked | button.i, reset, o_domain="sync")
        m.submodules.reset_global = Instance("DCCA", i_CLKI=reset, i_CE=Const(1, 1),
                                             o_CLKO=sync.rst)
