"""The ULX3S's SDR SDRAM: geometry and the datasheet timings safe for every chip the board
revisions carry, shared by the controller (``hw/sdram.py``), the simulated chip
(``sim/sdram_chip.v``) and the documentation.

Chips reported on ULX3S revisions: Micron MT48LC16M16A2 (32 MB: 8192 rows x 512 columns x 4
banks x 16 bits), ISSI IS42S16160G (the same geometry) and Alliance AS4C32M16SB (64 MB: 1,024
columns). The controller uses 9 column bits, so every chip looks like 32 MB.

Timings, the largest minimum of the three at their slowest speed grade the boards carry:

==========  =======  ==============================================================
parameter   value    meaning
==========  =======  ==============================================================
tRCD        21 ns    ACTIVATE to READ/WRITE in the bank (AS4C32M16SB-7: 21)
tRP         21 ns    PRECHARGE to the next command in the bank (AS4C32M16SB-7: 21)
tRAS        44 ns    ACTIVATE to PRECHARGE (MT48LC16M16A2-75: 44)
tRC         66 ns    ACTIVATE to ACTIVATE, same bank (MT48LC16M16A2-75: 66)
tWR         15 ns    last write data to PRECHARGE; at least 2 clocks (IS42S, AS4C: 2 clk)
tRFC        66 ns    AUTO REFRESH to the next command (MT48LC16M16A2-75: 66)
tMRD        3 clk    LOAD MODE REGISTER to the next command (datasheets: 2)
CL          3        CAS latency: 3 is specified by all three up to 133 MHz
refresh     8192 rows every 64 ms: one AUTO REFRESH per 7.8125 us on average
power-up    200 us of NOP, PRECHARGE ALL, 8 AUTO REFRESH, LOAD MODE REGISTER
==========  =======  ==============================================================
"""

import math
from dataclasses import dataclass

__all__ = ["ROW_BITS", "COLUMN_BITS", "BANK_BITS", "WORD_BITS", "ADDRESS_BITS", "WORDS",
           "SAFE_TIMINGS_NS", "SdramTiming", "split_address", "data_bus_patterns",
           "address_line_addresses", "address_tag", "data_fault", "address_pin",
           "address_fault"]

ROW_BITS, COLUMN_BITS, BANK_BITS = 13, 9, 2
WORD_BITS = 16
#: Word address bits: column (low), bank, row (high).
ADDRESS_BITS = COLUMN_BITS + BANK_BITS + ROW_BITS
WORDS = 1 << ADDRESS_BITS            # 16 Mi words = 32 MB

SAFE_TIMINGS_NS = {"tRCD": 21.0, "tRP": 21.0, "tRAS": 44.0, "tRC": 66.0, "tWR": 15.0,
                   "tRFC": 66.0}
T_WR_MIN_CLOCKS = 2
T_MRD_CLOCKS = 3
CAS_LATENCY = 3
REFRESH_INTERVAL_NS = 64e6 / 8192     # 7,812.5 ns
POWER_UP_NS = 200e3
INIT_REFRESHES = 8


def split_address(address):
    """(row, bank, column) of a word address."""
    column = address & ((1 << COLUMN_BITS) - 1)
    bank = (address >> COLUMN_BITS) & ((1 << BANK_BITS) - 1)
    row = address >> (COLUMN_BITS + BANK_BITS)
    return row, bank, column


@dataclass(frozen=True)
class SdramTiming:
    """The timings in clock cycles of a clock of ``clock_mhz``.

    Members
    -------
    t_rcd, t_rp, t_ras, t_rc, t_wr, t_rfc, t_mrd : cycles between the commands (see the
        table above); a command may follow the one it waits for after this many clock edges.
    cas_latency : edges from READ to the edge where its data is valid.
    refresh_interval : cycles between two AUTO REFRESH commands the controller issues (a
        little under the average the datasheet allows).
    refresh_limit : the chip model's bound: cycles in which 8192 refreshes must come.
    power_up : cycles of NOP before the first command.
    """
    clock_mhz: float
    t_rcd: int
    t_rp: int
    t_ras: int
    t_rc: int
    t_wr: int
    t_rfc: int
    t_mrd: int
    cas_latency: int
    refresh_interval: int
    refresh_limit: int
    power_up: int

    @classmethod
    def safe(cls, clock_mhz, **overrides):
        """The safe timings of every ULX3S chip at ``clock_mhz``; ``overrides`` replace
        cycle counts (to plant a violation in a test)."""
        if not 1 <= clock_mhz <= 133:
            raise ValueError(f"the SDRAM runs at CAS latency 3 up to 133 MHz, not {clock_mhz}")
        period = 1e3 / clock_mhz

        def cycles(ns):
            return max(1, math.ceil(ns / period - 1e-9))
        values = {f"t_{name[1:].lower()}": cycles(ns) for name, ns in SAFE_TIMINGS_NS.items()}
        values["t_wr"] = max(values["t_wr"], T_WR_MIN_CLOCKS)
        values.update(t_mrd=T_MRD_CLOCKS, cas_latency=CAS_LATENCY,
                      refresh_interval=int(0.95 * REFRESH_INTERVAL_NS / period),
                      refresh_limit=int(64e6 / period), power_up=cycles(POWER_UP_NS))
        values.update(overrides)
        return cls(clock_mhz, **values)


# -- the memory test patterns (the self-test, and the simulated chip's tests) -------------------

def data_bus_patterns():
    """Walking ones then walking zeros over the 16 data bits."""
    ones = [1 << bit for bit in range(WORD_BITS)]
    return ones + [~p & 0xFFFF for p in ones]


def address_line_addresses():
    """Address 0 and each power of two: a dead or shorted address line makes two of these
    the same cell."""
    return [0] + [1 << bit for bit in range(ADDRESS_BITS)]


def address_tag(address):
    """The word written at ``address`` in the address-in-address test: distinct for every
    address of :func:`address_line_addresses` (it encodes the address's highest bit)."""
    return ((address.bit_length() + 1) * 0x0A01 ^ 0x5A5A) & 0xFFFF


def data_fault(address, wrote, read):
    """One line naming the bits that differ at ``address``: stuck at 1 or at 0."""
    differing = wrote ^ read
    bit = (differing & -differing).bit_length() - 1
    stuck = (read >> bit) & 1
    return (f"data bit {bit} reads {stuck} at word address {address:#08x} (wrote {wrote:#06x}, "
            f"read {read:#06x})")


def address_pin(bit):
    """The chip pin that carries bit ``bit`` of a word address."""
    if bit < COLUMN_BITS:
        return f"A{bit} (column)"
    if bit < COLUMN_BITS + BANK_BITS:
        return f"BA{bit - COLUMN_BITS}"
    return f"A{bit - COLUMN_BITS - BANK_BITS} (row)"


def address_fault(address, expected, read, written):
    """One line naming the address line that aliases ``address`` onto another address of
    :func:`address_line_addresses` (``written`` maps each of those to its tag)."""
    for other, tag in written.items():
        if other != address and tag == read:
            return (f"address line {address_pin((address ^ other).bit_length() - 1)} is "
                    f"stuck or shorted: word address {address:#08x} reads what was written at "
                    f"{other:#08x}")
    return (f"word address {address:#08x}: expected {expected:#06x}, read {read:#06x}")
