"""The SDRAM self-test in gateware: the patterns of :mod:`squeezefpga.sdram` (``PATTERN_PHASES``,
``pattern_items``) written and read back at the controller's full speed, so that the whole
32 MB is checked in about a second at 75 MHz instead of the hours it would take over the
3 Mbaud link."""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from squeezefpga.sdram import ADDRESS_BITS, PATTERN_PHASES, WORD_BITS, data_bus_patterns

from .sdram import SdramPort

__all__ = ["SdramTester", "PatternResultLayout"]

#: What the tester reports (``squeezefpga.sdram.PatternResult`` on the host).
PatternResultLayout = data.StructLayout({
    "passed": 1,
    "phase": 2,
    "address": ADDRESS_BITS,
    "expected": WORD_BITS,
    "read": WORD_BITS,
})

DATA_ITEMS = len(data_bus_patterns())           # 32: walking ones, then walking zeros
ADDRESS_ITEMS = ADDRESS_BITS + 1                # address 0 and every power of two


def _item(phase, index):
    """(address, word) of item ``index`` of ``phase``: ``squeezefpga.sdram.pattern_items`` as
    logic (no multiplier: the address tag's factor 0x0A01 is two shifts and an add)."""
    low = index[:4]
    walking = Const(1, WORD_BITS) << low
    tag_count = (index + 1)[:WORD_BITS]
    tag = ((tag_count << 11) + (tag_count << 9) + tag_count)[:WORD_BITS] ^ 0x5A5A
    power = Mux(index == 0, 0, (Const(1, ADDRESS_BITS) << (index - 1)[:5])[:ADDRESS_BITS])
    fill = index[:16] ^ Cat(index[16:ADDRESS_BITS], index[16:ADDRESS_BITS])
    address = Mux(phase == 0, 0, Mux(phase == 1, power, index[:ADDRESS_BITS]))
    word = Mux(phase == 0, Mux(index < 16, walking, ~walking),
               Mux(phase == 1, tag, Mux(phase == 2, fill, ~fill)))
    return address, word[:WORD_BITS]


class SdramTester(wiring.Component):
    """Runs :func:`squeezefpga.sdram.reference_pattern_test`: each phase writes its items and
    reads them back (the data bus phase one at a time), comparing every word; the first word
    that reads back wrong ends the test.

    Members
    -------
    start : In(1)
        Pulse: run the test over the first ``words`` words (the whole-memory phases).
    words : In(ADDRESS_BITS + 1)
    busy : Out(1)
    result : Out(PatternResultLayout)
        Valid once ``busy`` falls after a start.
    progress : Out(ADDRESS_BITS + 1)
        Items of the current phase read back so far (``result.phase`` is the phase).
    sdram : Out(SdramPort())
        To the controller (through its share).
    """

    def __init__(self):
        super().__init__({
            "start": In(1), "words": In(ADDRESS_BITS + 1),
            "busy": Out(1), "result": Out(PatternResultLayout),
            "progress": Out(ADDRESS_BITS + 1),
            "sdram": Out(SdramPort()),
        })

    def elaborate(self, platform):
        m = Module()
        phase = self.result.phase
        issued = Signal(ADDRESS_BITS + 1)      # items requested in this pass
        count = Signal(ADDRESS_BITS + 1)       # items of this phase
        words = Signal(ADDRESS_BITS + 1)
        reading = Signal()
        failed = Signal()
        m.d.comb += count.eq(Mux(phase == 0, DATA_ITEMS,
                                 Mux(phase == 1, ADDRESS_ITEMS, words)))
        address, word = _item(phase, issued)
        request = self.sdram.requests.payload
        m.d.comb += [request.write.eq(~reading), request.address.eq(address),
                     request.data.eq(word), request.mask.eq(0b11)]

        # The answers, in request order: registered with the word expected, then compared.
        answer, answer_valid = Signal(WORD_BITS), Signal()
        expect_address, expect_word = Signal(ADDRESS_BITS), Signal(WORD_BITS)
        checked = self.progress
        e_address, e_word = _item(phase, checked)
        m.d.sync += [answer_valid.eq(self.sdram.responses.valid), answer.eq(self.sdram.responses.payload),
                     expect_address.eq(e_address), expect_word.eq(e_word)]
        with m.If(self.sdram.responses.valid):
            m.d.sync += checked.eq(checked + 1)
        mismatch = answer_valid & (answer != expect_word) & ~failed
        with m.If(mismatch):
            m.d.sync += [failed.eq(1), self.result.address.eq(expect_address),
                         self.result.expected.eq(expect_word), self.result.read.eq(answer)]

        # Down-counters and a count of reads in flight: the end of a pass is a register
        # reaching 1 or 0, not a 25-bit compare of two counters.
        left = Signal(ADDRESS_BITS + 1)        # items of this pass still to request
        outstanding = Signal(range(64))        # reads requested, not yet answered
        taken = self.sdram.requests.valid & self.sdram.requests.ready
        m.d.sync += outstanding.eq(outstanding + (taken & reading)
                                   - self.sdram.responses.valid)
        next_count = Mux(phase == 0, ADDRESS_ITEMS, words)     # the next phase's items

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), phase.eq(0), issued.eq(0), reading.eq(0),
                                 checked.eq(0), failed.eq(0), self.result.passed.eq(0),
                                 words.eq(Mux(self.words == 0, 1, self.words)),
                                 left.eq(DATA_ITEMS)]
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += self.sdram.requests.valid.eq(~failed)
                with m.If(failed):
                    m.next = "DRAIN"
                with m.Elif(self.sdram.requests.ready & (phase == 0)):
                    # The data bus: each pattern written, then read back, at address 0.
                    m.d.sync += reading.eq(~reading)
                    with m.If(reading):
                        m.d.sync += [issued.eq(issued + 1), left.eq(left - 1)]
                        with m.If(left == 1):
                            m.next = "DRAIN"
                with m.Elif(self.sdram.requests.ready):
                    m.d.sync += [issued.eq(issued + 1), left.eq(left - 1)]
                    with m.If(left == 1):
                        m.d.sync += issued.eq(0)
                        with m.If(~reading):
                            m.d.sync += [reading.eq(1), checked.eq(0), left.eq(count)]
                        with m.Else():
                            m.next = "DRAIN"
            with m.State("DRAIN"):             # every answer of the pass back and compared
                with m.If(~answer_valid & (outstanding == 0) & ~self.sdram.responses.valid):
                    with m.If(failed | (phase == len(PATTERN_PHASES) - 1)):
                        m.d.sync += [self.busy.eq(0), self.result.passed.eq(~failed)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [phase.eq(phase + 1), reading.eq(0), issued.eq(0),
                                     checked.eq(0), left.eq(next_count)]
                        m.next = "ISSUE"
        return m
