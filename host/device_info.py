"""What a device reports: its INFO reply, its counters, and its error statuses."""

from dataclasses import dataclass

from squeezefpga.errors import SqueezeFPGAError

__all__ = ["DeviceError", "DeviceInfo", "Counters"]


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
    build_id: int
    model_loaded: int
    model_crc: int


@dataclass(frozen=True)
class Counters:
    """Performance counters of the last run: total cycles, lane-cycles spent on grid
    positions, weights issued to the MAC stage, and cycles of every program step."""
    cycles: int
    busy_lane_cycles: int
    mac_issues: int
    layer_cycles: tuple
