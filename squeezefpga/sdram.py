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
           "SAFE_TIMINGS_NS", "IO_REGISTERS", "SdramTiming", "split_address",
           "data_bus_patterns", "address_line_addresses", "address_tag", "data_fault", "address_pin",
           "address_fault", "fill_pattern", "PATTERN_PHASES", "pattern_items", "PatternResult",
           "FaultyMemory", "reference_pattern_test"]

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
#: Registers between the controller's pin registers and the chip, both ways together: the
#: board top puts every SDRAM pin through an I/O flip-flop (one cycle out, one in), and the
#: simulated board models the same two.
IO_REGISTERS = 2


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


def fill_pattern(address):
    """The word the whole-memory passes write at ``address`` (the second pass writes its
    complement): the low 16 address bits, with the high 8 in both bytes, so that no two
    addresses of a 64 KiB stretch, nor the same offset in two stretches, hold the same word."""
    return (address ^ (address >> 16) * 0x0101) & 0xFFFF


#: The self-test's phases, in order (``hw/sdram_test.py`` runs them, as
#: :func:`reference_pattern_test` says).
PATTERN_PHASES = ("data bus", "address lines", "fill", "inverted fill")


def pattern_items(phase, words=WORDS):
    """(address, word) pairs the self-test writes, then reads back, in ``phase`` (an index of
    :data:`PATTERN_PHASES`) over the first ``words`` words."""
    if phase == 0:          # walking ones and zeros, at address 0 (each read back at once)
        return [(0, pattern) for pattern in data_bus_patterns()]
    if phase == 1:
        return [(a, address_tag(a)) for a in address_line_addresses()]
    invert = 0xFFFF if phase == 3 else 0
    return [(a, fill_pattern(a) ^ invert) for a in range(words)]


@dataclass(frozen=True)
class PatternResult:
    """The self-test's outcome as the device reports it.

    Members
    -------
    passed : bool
    phase : int
        The phase that failed (an index of :data:`PATTERN_PHASES`), or the last one run.
    address, expected, read : int
        The first word that read back wrong.
    words : int
        The words the whole-memory passes covered.
    """
    passed: bool
    phase: int
    address: int
    expected: int
    read: int
    words: int

    def describe(self):
        """One line: what passed, or which data bit or address line is at fault."""
        if self.passed:
            return (f"SDRAM pattern test passed: data bus, {ADDRESS_BITS} address lines, "
                    f"{self.words:,} words written and read back twice")
        where = f"{PATTERN_PHASES[self.phase]} phase: "
        if self.phase == 1:
            written = dict(pattern_items(1))
            return where + address_fault(self.address, self.expected, self.read, written)
        return where + data_fault(self.address, self.expected, self.read)


class FaultyMemory:
    """The SDRAM as the simulated chip models it (``sim/sdram_chip.v``), with its planted
    faults: data bit ``stuck_bit`` held at ``stuck_value`` on every write, address pin
    ``dead_line`` (A0-A12) read as 0 in the row and the column it carries."""

    def __init__(self, stuck_bit=None, stuck_value=0, dead_line=None):
        self.stuck_bit, self.stuck_value, self.dead_line = stuck_bit, stuck_value, dead_line
        self.words = {}

    def _cell(self, address):
        row, bank, column = split_address(address)
        if self.dead_line is not None:
            row &= ~(1 << self.dead_line)
            column &= ~(1 << self.dead_line) & ((1 << COLUMN_BITS) - 1)
        return row, bank, column

    def write(self, address, word, mask=0b11):
        if self.stuck_bit is not None:
            word = word & ~(1 << self.stuck_bit) | self.stuck_value << self.stuck_bit
        cell = self._cell(address)
        keep = (0xFF if not mask & 1 else 0) | (0xFF00 if not mask & 2 else 0)
        self.words[cell] = self.words.get(cell, 0) & keep | word & ~keep & 0xFFFF

    def read(self, address):
        return self.words.get(self._cell(address), 0)


def reference_pattern_test(memory, words=WORDS):
    """The self-test on ``memory`` (``write(address, word)``, ``read(address)``) exactly as
    the gateware runs it: each phase writes all its items, then reads them back; the first
    wrong word ends the test."""
    for phase in range(len(PATTERN_PHASES)):
        items = pattern_items(phase, words)
        # The data bus phase reads each pattern back before the next (one address, so an
        # address fault cannot pass for a data bit's); the others write all, then read all.
        groups = [[item] for item in items] if phase == 0 else [items]
        for group in groups:
            for address, word in group:
                memory.write(address, word)
            for address, word in group:
                read = memory.read(address)
                if read != word:
                    return PatternResult(False, phase, address, word, read, words)
    return PatternResult(True, len(PATTERN_PHASES) - 1, 0, 0, 0, words)
