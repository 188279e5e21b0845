"""Synchronous client of the accelerator's host port over any byte transport.

A transport has ``write(data)`` and ``read(n, timeout)`` (the simulated board of
:mod:`squeezefpga.sim.board`; the framed serial link comes with the host-driver issue).
"""

from dataclasses import dataclass

import numpy as np

from squeezefpga.errors import SqueezeFPGAError

from . import commands as cmd

__all__ = ["DeviceError", "DeviceInfo", "Counters", "PortClient"]


class DeviceError(SqueezeFPGAError):
    """The accelerator answered a command with an error status."""


@dataclass(frozen=True)
class DeviceInfo:
    port_version: int
    lanes: int
    activation_bytes: int
    weight_bytes: int
    max_layers: int
    max_taps: int
    max_channels: int


@dataclass(frozen=True)
class Counters:
    """Performance counters of the last run: total cycles, lane-cycles spent on grid
    positions, weights issued to the MAC stage, and cycles of every program step."""
    cycles: int
    busy_lane_cycles: int
    mac_issues: int
    layer_cycles: tuple


class PortClient:
    """Commands of :mod:`squeezefpga.host.commands` with their replies checked."""

    def __init__(self, transport, timeout=60.0):
        self.transport = transport
        self.timeout = timeout
        self._info = None

    def _call(self, request, reply_bytes=0, what="command", timeout=None):
        self.transport.write(request)
        reply = self.transport.read(reply_bytes + 1, self.timeout if timeout is None
                                    else timeout)
        status = reply[-1]
        if status != cmd.STATUS_OK:
            name = cmd.STATUS_NAMES.get(status, f"unknown status 0x{status:02x}")
            raise DeviceError(f"{what}: the accelerator answered {name}")
        return reply[:-1]

    def info(self):
        if self._info is None:
            raw = self._call(cmd.info(), cmd.INFO.size, "info")
            magic, *fields = cmd.INFO.unpack(raw)
            if magic != cmd.INFO_MAGIC:
                raise DeviceError(f"info: {magic!r} is not a squeezefpga accelerator")
            self._info = DeviceInfo(*fields)
            if self._info.port_version != cmd.PORT_VERSION:
                raise DeviceError(f"host port version {self._info.port_version}, this driver "
                                  f"speaks {cmd.PORT_VERSION}")
        return self._info

    def write_weights(self, addr, data, chunk=1 << 16, progress=None):
        for at in range(0, len(data), chunk):
            part = data[at: at + chunk]
            self._call(cmd.write_weights(addr + at, part), what="write weights")
            if progress:
                progress(min(at + chunk, len(data)), len(data))

    def read_weights(self, addr, length):
        return self._call(cmd.read_weights(addr, length), length, "read weights")

    def write_act(self, addr, data, chunk=1 << 16):
        for at in range(0, len(data), chunk):
            self._call(cmd.write_act(addr + at, data[at: at + chunk]), what="write activations")

    def read_act(self, addr, length):
        return self._call(cmd.read_act(addr, length), length, "read activations")

    def run(self, first, last, timeout=None):
        """Run program steps ``first`` .. ``last - 1`` and wait for the end."""
        self._call(cmd.run(first, last), what="run")
        self._call(cmd.wait(), what="run", timeout=timeout)

    def counters(self):
        layers = self.info().max_layers
        raw = self._call(cmd.counters(), cmd.counters_reply_bytes(layers), "counters")
        total, lanes, issues = cmd.COUNTER_HEADER.unpack_from(raw)
        steps = np.frombuffer(raw[cmd.COUNTER_HEADER.size:], "<u4")
        return Counters(total, lanes, issues, tuple(int(c) for c in steps))
