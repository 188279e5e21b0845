"""Running a compiled model on a device: one image, whole program or step by step."""

from dataclasses import dataclass, field

import numpy as np

from squeezefpga.golden.blob import OP_GLOBAL_SUM, Program
from squeezefpga.golden.integer_model import input_bytes
from squeezefpga.hw.config import AcceleratorConfig


__all__ = ["BoardRun", "device_config", "infer", "read_tensor"]


@dataclass
class BoardRun:
    """What one image produced on the accelerator.

    Members
    -------
    logits : int32 array of class scores.
    cycles : total cycles of the run (sum over steps when stepped one by one).
    layer_cycles : list of (step name, cycles).
    busy_lane_cycles, mac_issues : counters of the run (summed likewise).
    tensors : every step's output tensor, read back after that step (``check_all`` only).
    """
    logits: np.ndarray
    cycles: int
    layer_cycles: list
    busy_lane_cycles: int
    mac_issues: int
    tensors: dict = field(default_factory=dict)


def device_config(info):
    """The :class:`AcceleratorConfig` a device reports in its info reply."""
    return AcceleratorConfig(lanes=info.lanes, activation_bytes=info.activation_bytes,
                             weight_bytes=info.weight_bytes, max_layers=info.max_layers,
                             max_taps=info.max_taps, max_channels=info.max_channels)


def read_tensor(client, d):
    """Read descriptor ``d``'s output tensor from activation memory."""
    raw = client.read_act(d.dst, d.out_bytes)
    if d.op == OP_GLOBAL_SUM:
        return np.frombuffer(raw, "<i4").astype(np.int32)
    return np.frombuffer(raw, np.uint8).reshape(d.out_shape)


def infer(client, program: Program, image, check_all=False, timeout=None):
    """Write ``image`` (uint8 BGR) and run the whole program; with ``check_all`` run it one
    step at a time and read back every step's output."""
    client.write_act(program.input_addr, input_bytes(program, image))
    steps = program.descriptors
    tensors = {}
    if check_all:
        totals = np.zeros(3, np.int64)
        per_step = []
        for i, d in enumerate(steps):
            client.run(i, i + 1, timeout)
            counters = client.counters()
            totals += (counters.cycles, counters.busy_lane_cycles, counters.mac_issues)
            per_step.append(counters.layer_cycles[i])
            tensors[d.name] = read_tensor(client, d)
        cycles, lanes, issues = (int(t) for t in totals)
    else:
        client.run(0, len(steps), timeout)
        counters = client.counters()
        cycles, lanes, issues = counters.cycles, counters.busy_lane_cycles, counters.mac_issues
        per_step = counters.layer_cycles[:len(steps)]
    raw = client.read_act(program.output_addr, 4 * program.classes)
    logits = np.frombuffer(raw, "<i4").astype(np.int32)
    return BoardRun(logits, cycles, [(d.name, int(c)) for d, c in zip(steps, per_step)],
                    lanes, issues, tensors)
