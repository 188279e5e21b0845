"""The accelerator's build-time configuration and the check that a compiled model fits it.

The gateware is built from an :class:`AcceleratorConfig`; the host checks a decoded program
against the configuration a device reports (:func:`check_program`) before sending it.
"""

from dataclasses import dataclass

import numpy as np

from .blob_format import OP_CONV, OP_MAXPOOL
from .errors import SqueezeFPGAError
from .sdram import WORDS

__all__ = ["AcceleratorConfig", "ModelFitError", "accumulator_bound", "check_program",
           "conv_mode"]


class ModelFitError(SqueezeFPGAError):
    """A compiled model does not fit an accelerator configuration."""


def _is_power_of_two(n):
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class AcceleratorConfig:
    """Parameters of one accelerator build.

    The defaults hold the whole compiled SqueezeNet v1.0 on chip ("resident" configuration).

    Parameters
    ----------
    lanes : int
        MAC lanes of the conv engine (power of two, 4..256); each lane computes one output pixel.
    activation_bytes : int
        Activation memory size; split into ``lanes`` byte-wide banks.
    weight_bytes : int
        Weight buffer size; holds the compiled blob byte for byte.
    max_layers : int
        Program steps (or a tiled program's operations) that get counters; the longest
        program the device runs.
    max_taps : int
        Largest ``in_c * k * k`` of one output channel (depth of the decoded-weight lists).
    max_channels : int
        Largest number of output channels of a conv layer (depth of the bias buffer).
    max_side : int
        Largest input row length or column height.
    timeout_cycles : int
        Host-port watchdog: a command whose next byte does not arrive within this many cycles
        is abandoned, so a vanished host never wedges the core.
    sdram_mhz : float
        The clock of the board's SDRAM (the core's clock) in MHz, which sets its timings in
        cycles; 0 for a configuration without SDRAM.
    """
    lanes: int = 64
    activation_bytes: int = 2 * 1024 * 1024
    weight_bytes: int = 512 * 1024
    max_layers: int = 64
    max_taps: int = 1024
    max_channels: int = 1024
    max_side: int = 1023
    timeout_cycles: int = 1 << 20
    sdram_mhz: float = 0.0

    def __post_init__(self):
        if not _is_power_of_two(self.lanes) or not 4 <= self.lanes <= 256:
            raise ValueError(f"lanes must be a power of two from 4 to 256, not {self.lanes}")
        if self.activation_bytes <= 0 or self.activation_bytes % self.lanes:
            raise ValueError(f"activation_bytes ({self.activation_bytes}) must be a positive "
                             f"multiple of lanes ({self.lanes})")
        if self.weight_bytes <= 0 or self.weight_bytes % 4:
            raise ValueError(f"weight_bytes ({self.weight_bytes}) must be a positive multiple "
                             "of 4")
        for name in ("max_layers", "max_taps", "max_channels", "max_side", "timeout_cycles"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.max_layers > 4096:
            raise ValueError(f"max_layers must be at most 4096, not {self.max_layers}")
        if self.sdram_mhz and not 1 <= self.sdram_mhz <= 133:
            raise ValueError(f"the SDRAM runs at 1 to 133 MHz, not {self.sdram_mhz}")

    @property
    def fit_key(self):
        """The fields a model's fit depends on (:func:`check_program`): equal keys, same
        verdict."""
        return (self.lanes, self.activation_bytes, self.weight_bytes, self.max_layers,
                self.max_taps, self.max_channels, self.max_side)

    @property
    def sdram_bytes(self):
        return 2 * WORDS if self.sdram_mhz else 0

    @property
    def act_addr_bits(self):
        return max(1, (self.activation_bytes - 1).bit_length())

    @property
    def weight_words(self):
        return self.weight_bytes // 4

    @property
    def side_bits(self):
        return self.max_side.bit_length()

    @property
    def tap_bits(self):
        return max(1, (self.max_taps - 1).bit_length())

    @property
    def channel_bits(self):
        return max(1, (self.max_channels - 1).bit_length())


def conv_mode(d):
    """How the conv engine runs a conv descriptor, or None if it cannot.

    ``same``: output grid = input grid (1x1 pad 0, 3x3 pad 1): one merged write per tile.
    ``valid``: pad 0, larger kernel (the polyphase conv1): outputs written row by row.
    ``border``: 1x1 pad 1 (SqueezeNet v1.0's conv10): interior computed as 1x1 pad 0, the
    one-pixel border is the requantised bias.
    """
    _, h, w = d.in_shape
    _, oh, ow = d.out_shape
    if d.stride != 1:
        return None
    if d.kernel in (1, 3) and 2 * d.pad == d.kernel - 1:
        return "same"
    if d.pad == 0:
        return "valid"
    if d.kernel == 1 and d.pad == 1 and (oh, ow) == (h + 2, w + 2):
        return "border"
    return None


def accumulator_bound(program):
    """Largest |accumulator| any uint8 input can produce, over all conv layers of ``program``
    (a decoded :class:`squeezefpga.golden.blob.Program`)."""
    bound = 0
    for d in program.convs:
        w = np.abs(d.weights.codebook.astype(np.int64)[d.weights.codes])
        per_channel = np.abs(d.weights.bias.astype(np.int64)) + 255 * w.sum(axis=(1, 2, 3))
        bound = max(bound, int(per_channel.max()))
    return bound


def check_program(config, program, blob_size=None):
    """Raise :class:`ModelFitError` naming the buffer and the sizes if ``program`` does not
    run on an accelerator built with ``config``."""
    def fail(message):
        raise ModelFitError(f"model does not fit the accelerator ({config.lanes} lanes): "
                            f"{message}")
    if blob_size is not None and blob_size > config.weight_bytes:
        fail(f"weight buffer holds {config.weight_bytes:,} bytes, the blob has {blob_size:,}")
    if program.activation_bytes > config.activation_bytes:
        fail(f"activation memory holds {config.activation_bytes:,} bytes, the model needs "
             f"{program.activation_bytes:,}")
    if len(program.descriptors) > config.max_layers:
        fail(f"{len(program.descriptors)} program steps, the layer counters hold "
             f"{config.max_layers}")
    bound = accumulator_bound(program)
    if bound >= 2 ** 31:
        fail(f"accumulators are 32-bit, the model can reach {bound:,}")
    for d in program.descriptors:
        c, h, w = d.in_shape
        oc, oh, ow = d.out_shape
        if max(h, w, oh, ow) > config.max_side:
            fail(f"{d.name}: side {max(h, w, oh, ow)} exceeds max_side {config.max_side}")
        if d.op == OP_CONV:
            mode = conv_mode(d)
            if mode is None:
                fail(f"{d.name}: the conv engine does {d.kernel}x{d.kernel} stride {d.stride} "
                     f"pad {d.pad} only through a compiler rewrite")
            if c * d.kernel ** 2 > config.max_taps:
                fail(f"{d.name}: weight list holds {config.max_taps} taps per output channel, "
                     f"the layer has {c * d.kernel ** 2}")
            if oc > config.max_channels:
                fail(f"{d.name}: bias buffer holds {config.max_channels} channels, the layer "
                     f"has {oc}")
            if mode == "border" and ow > config.lanes:
                fail(f"{d.name}: a border row of {ow} pixels exceeds the {config.lanes} lanes")
        elif d.op == OP_MAXPOOL and (d.kernel, d.stride) != (3, 2):
            fail(f"{d.name}: the pool unit does 3x3 stride 2 max pooling, not "
                 f"{d.kernel}x{d.kernel} stride {d.stride}")
