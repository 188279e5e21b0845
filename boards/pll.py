"""ECP5 PLL (EHXPLLL) settings for a core clock, found the way Lattice's ecppll finds them."""

from dataclasses import dataclass

from squeezefpga.errors import SqueezeFPGAError

__all__ = ["PllSettings", "pll_settings", "PllError", "phase_steps"]

#: EHXPLLL limits (ECP5 data sheet): phase-detector input and VCO frequency, in MHz.
PFD_RANGE = (3.125, 400.0)
VCO_RANGE = (400.0, 800.0)


class PllError(SqueezeFPGAError):
    """The PLL cannot make the clock asked for."""


@dataclass(frozen=True)
class PllSettings:
    """EHXPLLL dividers: f_out = f_in / CLKI_DIV * CLKFB_DIV (feedback from CLKOP), with the
    VCO at f_out * CLKOP_DIV."""
    clki_div: int
    clkfb_div: int
    clkop_div: int
    f_in: float
    f_out: float
    f_vco: float

    @property
    def clkop_cphase(self):
        """Half the output divider, as ecppll sets it (a 180 degree phase)."""
        return self.clkop_div // 2


def pll_settings(f_in_mhz, f_out_mhz, tolerance=1e-6):
    """The dividers that make exactly ``f_out_mhz`` from ``f_in_mhz`` (VCO nearest 600 MHz).

    Raises
    ------
    PllError
        Naming the nearest frequency the PLL can make, if it cannot make this one.
    """
    best, nearest = None, None
    for clki in range(1, 129):
        pfd = f_in_mhz / clki
        if not PFD_RANGE[0] <= pfd <= PFD_RANGE[1]:
            continue
        for clkfb in range(1, 81):
            f = pfd * clkfb
            for clkop in range(1, 129):
                vco = f * clkop
                if not VCO_RANGE[0] <= vco <= VCO_RANGE[1]:
                    continue
                key = (abs(f - f_out_mhz), abs(vco - 600))
                if nearest is None or key < nearest[0]:
                    nearest = (key, f)
                if abs(f - f_out_mhz) <= tolerance * f_out_mhz:
                    if best is None or key < best[0]:
                        best = (key, PllSettings(clki, clkfb, clkop, f_in_mhz, f, vco))
    if best is None:
        near = f" (nearest: {nearest[1]:g} MHz)" if nearest else ""
        raise PllError(f"the ECP5 PLL cannot make {f_out_mhz:g} MHz from the {f_in_mhz:g} MHz "
                       f"oscillator{near}")
    return best[1]


def phase_steps(settings, degrees):
    """(CPHASE, FPHASE) of a second output with CLKOP's divider that lags CLKOP by about
    ``degrees`` (its phase counted from CLKOP's :attr:`~PllSettings.clkop_cphase`): coarse
    steps of one VCO period, fine steps of an eighth of one."""
    eighths = round(degrees / 360 * settings.clkop_div * 8)
    return settings.clkop_cphase + eighths // 8, eighths % 8
