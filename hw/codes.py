"""The host port's command and status bytes and the link's status byte as
:mod:`amaranth.lib.enum` shapes, each member equal to its constant in
:mod:`squeezefpga.protocol` (the contract the host side uses): signals of these shapes
compare and switch only against their own members, and show names in waveforms."""

from amaranth.lib import enum

from squeezefpga import protocol as p

__all__ = ["Opcode", "Status", "LinkStatus"]


class Opcode(enum.Enum, shape=8):
    """A host-port command (``protocol.CMD_*``)."""
    INFO = p.CMD_INFO
    WRITE_WEIGHTS = p.CMD_WRITE_WEIGHTS
    WRITE_ACT = p.CMD_WRITE_ACT
    READ_ACT = p.CMD_READ_ACT
    READ_WEIGHTS = p.CMD_READ_WEIGHTS
    RUN = p.CMD_RUN
    WAIT = p.CMD_WAIT
    STATUS = p.CMD_STATUS
    COUNTERS = p.CMD_COUNTERS
    SET_MODEL = p.CMD_SET_MODEL
    WRITE_SDRAM = p.CMD_WRITE_SDRAM
    READ_SDRAM = p.CMD_READ_SDRAM
    SDRAM_TEST = p.CMD_SDRAM_TEST
    SDRAM_RESULT = p.CMD_SDRAM_RESULT


class Status(enum.Enum, shape=8):
    """A host-port reply's status byte (``protocol.STATUS_*`` but the flags)."""
    OK = p.STATUS_OK
    UNKNOWN_COMMAND = p.STATUS_UNKNOWN_COMMAND
    BUSY = p.STATUS_BUSY
    RUN_ERROR = p.STATUS_RUN_ERROR
    BAD_MODEL = p.STATUS_BAD_MODEL
    NO_MODEL = p.STATUS_NO_MODEL
    NO_SDRAM = p.STATUS_NO_SDRAM


class LinkStatus(enum.Enum, shape=8):
    """A reply frame's link status (``protocol.LINK_*``; BUSY is the simulated board's)."""
    OK = p.LINK_OK
    BAD_CRC = p.LINK_BAD_CRC
    TOO_LONG = p.LINK_TOO_LONG
    BAD_VERSION = p.LINK_BAD_VERSION
    REPLY_OVERFLOW = p.LINK_REPLY_OVERFLOW
    BUSY = p.LINK_BUSY
