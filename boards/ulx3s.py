"""The ULX3S (Lattice ECP5 LFE5U-85F) board: the framed accelerator behind the FTDI UART.

- an EHXPLLL makes the core clock from the 25 MHz oscillator (:mod:`.pll`);
- a UART PHY (:mod:`.uart`) at 3 Mbaud on the FTDI pins carries the framed link
  (docs/PROTOCOL.md), exactly what the simulated board serves on TCP;
- LEDs: 0 alive (blinks once a second), 1 busy, 2 run error, 3 model loaded, 7 PLL locked;
  the PWR button resets the core.

The on-chip memories are sized for the 85F (docs/ARCHITECTURE.md has the per-buffer budget):
the whole real model does not fit with its activations, so this board runs models that do
(the reduced network) until the SDRAM-backed configuration exists.
"""

from dataclasses import dataclass

from amaranth import ClockDomain, Instance, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from squeezefpga.config import AcceleratorConfig
from squeezefpga.hw.framed_accelerator import FramedAccelerator

from .pll import pll_settings
from .uart import UART, divisor

__all__ = ["Board", "ULX3S_85F", "ULX3SPlatform", "ULX3STop", "BOARDS"]


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

    def config(self, lanes):
        """The :class:`AcceleratorConfig` built for this board with ``lanes`` lanes."""
        return AcceleratorConfig(lanes=lanes, activation_bytes=128 * 1024,
                                 weight_bytes=64 * 1024, max_layers=64, max_taps=1024,
                                 max_channels=1024, max_side=1023,
                                 timeout_cycles=1 << 20)


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

    def __init__(self, config, clock_mhz, build_id=0, board=ULX3S_85F):
        self.config, self.clock_mhz, self.build_id, self.board = config, clock_mhz, build_id, \
            board
        self.pll = pll_settings(board.oscillator_mhz, clock_mhz)
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
        return m

    def _clock(self, m, platform, locked):
        """The sync domain from the PLL, held in reset until it locks or while PWR is held."""
        p = self.pll
        m.submodules.clk25 = clk25 = io.Buffer("i", platform.request("clk25", 0, dir="-"))
        m.domains.sync = sync = ClockDomain("sync")
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
            i_RST=0, i_STDBY=0, i_CLKI=clk25.i, o_CLKOP=sync.clk,
            i_CLKFB=sync.clk, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1,
            i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
        platform.add_clock_constraint(sync.clk, p.f_out * 1e6)
        m.submodules.button_pwr = button = io.Buffer("i",
                                                     platform.request("button_pwr", 0, dir="-"))
        m.submodules.reset = ResetSynchronizer(~locked | button.i, domain="sync")
