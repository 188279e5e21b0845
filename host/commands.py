"""The accelerator's host-port commands: byte encodings shared by the gateware, the driver and
the testbenches (docs/HOST_PORT.md describes them).

Every command is one command byte and fixed little-endian arguments; every reply is the
command's data bytes followed by one status byte.
"""

import struct

__all__ = ["CMD_INFO", "CMD_WRITE_WEIGHTS", "CMD_WRITE_ACT", "CMD_READ_ACT", "CMD_READ_WEIGHTS",
           "CMD_RUN", "CMD_WAIT", "CMD_STATUS", "CMD_COUNTERS", "STATUS_OK",
           "STATUS_UNKNOWN_COMMAND", "STATUS_BUSY", "STATUS_RUN_ERROR", "STATUS_NAMES",
           "INFO", "INFO_MAGIC", "PORT_VERSION", "COUNTER_HEADER", "ARG_BYTES",
           "write_weights", "write_act", "read_act", "read_weights", "run", "info", "wait",
           "status", "counters", "set_model", "counters_reply_bytes", "CMD_SET_MODEL"]

CMD_INFO = 0x01
CMD_WRITE_WEIGHTS = 0x02
CMD_WRITE_ACT = 0x03
CMD_READ_ACT = 0x04
CMD_READ_WEIGHTS = 0x05
CMD_RUN = 0x06
CMD_WAIT = 0x07
CMD_STATUS = 0x08
CMD_COUNTERS = 0x09
CMD_SET_MODEL = 0x0A                # record the CRC-32 of the loaded blob (cleared by writes)

ARG_BYTES = {CMD_INFO: 0, CMD_WRITE_WEIGHTS: 8, CMD_WRITE_ACT: 8, CMD_READ_ACT: 8,
             CMD_READ_WEIGHTS: 8, CMD_RUN: 2, CMD_WAIT: 0, CMD_STATUS: 0, CMD_COUNTERS: 0,
             CMD_SET_MODEL: 4}

STATUS_OK = 0x00
STATUS_UNKNOWN_COMMAND = 0xE1
STATUS_BUSY = 0xE2                  # memory access while the sequencer runs
STATUS_RUN_ERROR = 0xE4             # the sequencer met a descriptor it cannot execute
STATUS_NAMES = {STATUS_OK: "ok", STATUS_UNKNOWN_COMMAND: "unknown command",
                STATUS_BUSY: "busy: the accelerator is running",
                STATUS_RUN_ERROR: "the layer program has a step the hardware cannot run"}

PORT_VERSION = 1
INFO_MAGIC = b"SQZA"
# magic, port version, lanes, activation bytes, weight bytes, max layers, max taps, max channels,
# build id, model loaded (0/1), CRC-32 of the loaded model (as recorded by SET_MODEL)
INFO = struct.Struct("<4sBHIIBHHIBI")
# total cycles, busy lane-cycles, MAC-stage weight issues (then max_layers x u32 step cycles)
COUNTER_HEADER = struct.Struct("<QQQ")


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
    return bytes([CMD_RUN, first, last])


def wait():
    return bytes([CMD_WAIT])


def status():
    return bytes([CMD_STATUS])


def counters():
    return bytes([CMD_COUNTERS])


def set_model(crc):
    return bytes([CMD_SET_MODEL]) + struct.pack("<I", crc)


def counters_reply_bytes(max_layers):
    return COUNTER_HEADER.size + 4 * max_layers
