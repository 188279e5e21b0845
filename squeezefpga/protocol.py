"""The host protocol: the accelerator's host-port commands and the framing of the link that
carries them. The gateware, the driver and the testbenches all take their bytes from here.

- Host-port commands (docs/HOST_PORT.md): one command byte and fixed little-endian arguments;
  every reply is the command's data bytes followed by one status byte.
- Link framing (docs/PROTOCOL.md): one request frame carries one host-port command, the device
  answers every complete request frame with one reply frame. Both start with :data:`SOF`,
  carry a sequence number and end with the CRC-32 of everything after the SOF.
  ``squeezefpga.host.link`` encodes and parses frames; ``squeezefpga.hw.link_layer`` is the
  device side.
"""

import struct

__all__ = ["CMD_INFO", "CMD_WRITE_WEIGHTS", "CMD_WRITE_ACT", "CMD_READ_ACT", "CMD_READ_WEIGHTS",
           "CMD_RUN", "CMD_WAIT", "CMD_STATUS", "CMD_COUNTERS", "STATUS_OK",
           "STATUS_UNKNOWN_COMMAND", "STATUS_BUSY", "STATUS_RUN_ERROR", "STATUS_NAMES",
           "STATUS_BAD_MODEL", "STATUS_NO_MODEL", "STATUS_REPLY", "STATUS_FLAG_RUNNING",
           "STATUS_FLAG_ERROR", "STATUS_FLAG_MODEL",
           "INFO", "INFO_MAGIC", "PORT_VERSION", "COUNTER_HEADER", "COUNTER_ENTRY",
           "COUNTER_PAGE", "ARG_BYTES",
           "write_weights", "write_act", "read_act", "read_weights", "run", "info", "wait",
           "status", "counters", "set_model", "counters_reply_bytes", "CMD_SET_MODEL",
           "CMD_WRITE_SDRAM", "CMD_READ_SDRAM", "CMD_SDRAM_TEST", "CMD_SDRAM_RESULT",
           "STATUS_NO_SDRAM", "SDRAM_RESULT", "SDRAM_FLAG_RUNNING", "SDRAM_FLAG_PASSED",
           "write_sdram", "read_sdram", "sdram_test", "sdram_result",
           "SOF", "LINK_VERSION", "MAX_PAYLOAD", "DATA_CHUNK", "CRC_BYTES", "REQUEST_HEADER",
           "REPLY_HEADER", "LINK_OK", "LINK_BAD_CRC", "LINK_TOO_LONG", "LINK_BAD_VERSION",
           "LINK_REPLY_OVERFLOW", "LINK_BUSY", "LINK_STATUS_NAMES"]

CMD_INFO = 0x01
CMD_WRITE_WEIGHTS = 0x02
CMD_WRITE_ACT = 0x03
CMD_READ_ACT = 0x04
CMD_READ_WEIGHTS = 0x05
CMD_RUN = 0x06
CMD_WAIT = 0x07
CMD_STATUS = 0x08
CMD_COUNTERS = 0x09
CMD_SET_MODEL = 0x0A                # verify the blob in the weight buffer against a CRC-32
CMD_WRITE_SDRAM = 0x0B              # bytes into the board's SDRAM
CMD_READ_SDRAM = 0x0C
CMD_SDRAM_TEST = 0x0D               # start the SDRAM pattern test over the first N words (it
                                    # overwrites them: the loaded model is no longer loaded)
CMD_SDRAM_RESULT = 0x0E             # the pattern test's progress and outcome

ARG_BYTES = {CMD_INFO: 0, CMD_WRITE_WEIGHTS: 8, CMD_WRITE_ACT: 8, CMD_READ_ACT: 8,
             CMD_READ_WEIGHTS: 8, CMD_RUN: 4, CMD_WAIT: 0, CMD_STATUS: 0, CMD_COUNTERS: 4,
             CMD_SET_MODEL: 4, CMD_WRITE_SDRAM: 8, CMD_READ_SDRAM: 8, CMD_SDRAM_TEST: 4,
             CMD_SDRAM_RESULT: 0}

STATUS_OK = 0x00
STATUS_UNKNOWN_COMMAND = 0xE1
STATUS_BUSY = 0xE2                  # memory access while the sequencer runs
STATUS_RUN_ERROR = 0xE4             # the sequencer met a descriptor it cannot execute
STATUS_BAD_MODEL = 0xE5             # SET_MODEL: the weight buffer does not hold a blob with that CRC
STATUS_NO_MODEL = 0xE6              # RUN without a model verified by SET_MODEL
STATUS_NO_SDRAM = 0xE7              # an SDRAM command on a device without SDRAM (or not ready)
STATUS_NAMES = {STATUS_OK: "ok", STATUS_UNKNOWN_COMMAND: "unknown command",
                STATUS_BUSY: "busy: the accelerator is running",
                STATUS_RUN_ERROR: "the layer program has a step the hardware cannot run",
                STATUS_BAD_MODEL: "the weight buffer does not hold a valid blob with that CRC-32",
                STATUS_NO_MODEL: "no verified model: load one (SET_MODEL) before RUN",
                STATUS_NO_SDRAM: "the device has no SDRAM (or it has not finished its "
                                 "power-up)"}

PORT_VERSION = 3
INFO_MAGIC = b"SQZA"
# magic, port version, lanes, activation bytes, weight bytes, max layers, max taps, max channels,
# SDRAM bytes (0: none), build id, model loaded (0/1), CRC-32 of the loaded model (as recorded
# by SET_MODEL)
INFO = struct.Struct("<4sBHIIHHHIIBI")
# total cycles, busy lane-cycles, MAC-stage weight issues, then one COUNTER_ENTRY per step
# asked for
COUNTER_HEADER = struct.Struct("<QQQ")
# a step's cycles, the cycles it waited for transfers before it could start, the SDRAM bytes
# its transfer moved (a tiled program's; 0 otherwise)
COUNTER_ENTRY = struct.Struct("<III")
#: Steps one COUNTERS reply carries at most (the driver asks page by page).
COUNTER_PAGE = 256
# flags (STATUS_FLAG_*), the step running (or last run), the run's end step, cycles of the run
# so far (low 32 bits)
STATUS_REPLY = struct.Struct("<BHHI")
STATUS_FLAG_RUNNING = 0x01
STATUS_FLAG_ERROR = 0x02
STATUS_FLAG_MODEL = 0x04            # a model verified by SET_MODEL is loaded
# SDRAM_RESULT: flags (SDRAM_FLAG_*), phase (squeezefpga.sdram.PATTERN_PHASES), words of the
# phase read back so far, then the first word that read back wrong: its word address, the
# word expected, the word read; the words of the whole-memory phases; refreshes since reset
SDRAM_RESULT = struct.Struct("<BBIIHHII")
SDRAM_FLAG_RUNNING = 0x01
SDRAM_FLAG_PASSED = 0x02


# -- link framing -----------------------------------------------------------------------------

SOF = 0xA5
LINK_VERSION = 1
MAX_PAYLOAD = 4608                      # largest payload of either direction
DATA_CHUNK = 4096                       # data bytes per WRITE_*/READ_* command
CRC_BYTES = 4
REQUEST_HEADER = struct.Struct("<BBBH")     # SOF, version, sequence number, payload length
REPLY_HEADER = struct.Struct("<BBBBH")      # SOF, version, sequence number, status, length

LINK_OK = 0
LINK_BAD_CRC = 1                # the request's CRC was wrong; not executed
LINK_TOO_LONG = 2               # the request's length field exceeded MAX_PAYLOAD; not executed
LINK_BAD_VERSION = 3            # the request's link version is not the device's; not executed
LINK_REPLY_OVERFLOW = 4         # the command's reply exceeded MAX_PAYLOAD bytes (cut)
LINK_BUSY = 5                   # a simulated board serving another client; the payload names it
LINK_STATUS_NAMES = {LINK_OK: "ok", LINK_BAD_CRC: "bad CRC", LINK_TOO_LONG: "too long",
                     LINK_BAD_VERSION: "bad link version", LINK_REPLY_OVERFLOW: "reply overflow",
                     LINK_BUSY: "busy with another client"}


# -- command encoders ---------------------------------------------------------------------------

def _addr_len(cmd, addr, length):
    return bytes([cmd]) + struct.pack("<II", addr, length)


def info():
    return bytes([CMD_INFO])


def write_weights(addr, data):
    return _addr_len(CMD_WRITE_WEIGHTS, addr, len(data)) + bytes(data)


def write_act(addr, data):
    return _addr_len(CMD_WRITE_ACT, addr, len(data)) + bytes(data)


def read_act(addr, length):
    return _addr_len(CMD_READ_ACT, addr, length)


def read_weights(addr, length):
    return _addr_len(CMD_READ_WEIGHTS, addr, length)


def run(first, last):
    return bytes([CMD_RUN]) + struct.pack("<HH", first, last)


def wait():
    return bytes([CMD_WAIT])


def status():
    return bytes([CMD_STATUS])


def counters(first=0, count=COUNTER_PAGE):
    return bytes([CMD_COUNTERS]) + struct.pack("<HH", first, count)


def set_model(crc):
    return bytes([CMD_SET_MODEL]) + struct.pack("<I", crc)


def write_sdram(addr, data):
    return _addr_len(CMD_WRITE_SDRAM, addr, len(data)) + bytes(data)


def read_sdram(addr, length):
    return _addr_len(CMD_READ_SDRAM, addr, length)


def sdram_test(words):
    return bytes([CMD_SDRAM_TEST]) + struct.pack("<I", words)


def sdram_result():
    return bytes([CMD_SDRAM_RESULT])


def counters_reply_bytes(count):
    return COUNTER_HEADER.size + COUNTER_ENTRY.size * count
