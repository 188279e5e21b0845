"""The bit-exact integer model: executes a compiled blob's layer program on a uint8 image.

This is the specification of the accelerator. It works on one flat activation memory exactly
as laid out by the compiler, so it also checks the addresses; every step's output tensor is
kept for comparison with the hardware.
"""

from dataclasses import dataclass

import numpy as np

from squeezefpga.blob_format import OP_CONV, OP_MAXPOOL

from .blob import Program, decode_program
from .ops import conv2d, max_pool_ceil
from .polyphase import phase_split
from .quantize import requantize

__all__ = ["IntegerRun", "run_integer", "input_bytes", "conv_accumulators"]


@dataclass
class IntegerRun:
    """Result of :func:`run_integer`.

    Members
    -------
    logits : int32 array of per-class sums over the last feature map.
    tensors : dict mapping each descriptor's name to its output tensor (uint8 (C, H, W), or
        int32 (C,) for the global sum), in program order.
    memory : the activation memory at the end.
    """
    logits: np.ndarray
    tensors: dict
    memory: np.ndarray


def conv_accumulators(x, weights, stride, pad):
    """int64 accumulators ``bias + sum(w * x)`` of one conv layer on a uint8 (C, H, W) input.

    The products run in float64 BLAS: every partial sum is an integer far below 2**53, so the
    result is exact.
    """
    w = weights.codebook.astype(np.int64)[weights.codes]
    acc = conv2d(x, w, stride, pad, dtype=np.float64)
    return acc.astype(np.int64) + weights.bias.astype(np.int64)[:, None, None]


def input_bytes(program, image):
    """The exact bytes the host writes at ``program.input_addr`` for a uint8 BGR image.

    Parameters
    ----------
    program : Program
    image : uint8 array of ``program.input_shape`` (C, H, W)

    Returns
    -------
    bytes of the image in CHW order, or, if ``program.input_phase`` s > 1, of
    ``phase_split(image, s)`` (shape ``program.stored_input_shape``).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.shape != tuple(program.input_shape):
        raise ValueError(f"image must be uint8 {tuple(program.input_shape)}, got {image.dtype} "
                         f"{image.shape}")
    if program.input_phase > 1:
        image = phase_split(image, program.input_phase)
    return np.ascontiguousarray(image).tobytes()


def run_integer(program, image):
    """Run ``program`` (a :class:`Program` or blob bytes) on a uint8 BGR (3, H, W) image.

    The image is written to memory as :func:`input_bytes` gives it (phase-split if the
    program says so), exactly as the host driver writes it to the accelerator.
    """
    if not isinstance(program, Program):
        program = decode_program(program)
    data = np.frombuffer(input_bytes(program, image), np.uint8)
    memory = np.zeros(program.activation_bytes, np.uint8)
    memory[program.input_addr: program.input_addr + data.size] = data
    tensors = {}
    for d in program.descriptors:
        x = memory[d.src: d.src + d.in_bytes].reshape(d.in_shape)
        if d.op == OP_CONV:
            y = requantize(conv_accumulators(x, d.weights, d.stride, d.pad), d.multiplier,
                           d.shift)
        elif d.op == OP_MAXPOOL:
            y = max_pool_ceil(x, d.kernel, d.stride)
        else:
            y = x.reshape(d.in_shape[0], -1).sum(axis=1, dtype=np.int64).astype("<i4")
        memory[d.dst: d.dst + d.out_bytes] = np.frombuffer(y.tobytes(), np.uint8)
        tensors[d.name] = y
    c = program.classes
    logits = np.frombuffer(memory[program.output_addr: program.output_addr + 4 * c].tobytes(),
                           "<i4").astype(np.int32)
    return IntegerRun(logits, tensors, memory)
