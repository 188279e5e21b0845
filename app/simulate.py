"""Whole-network runs on the Verilated accelerator: the simulated board, reached by the same
:class:`~squeezefpga.host.device.Device` driver as a real board, checked against the golden
model."""

import time
from dataclasses import dataclass

import numpy as np

from squeezefpga.config import AcceleratorConfig
from squeezefpga.golden.compare import compare_tensors, first_difference
from squeezefpga.golden.integer_model import run_integer
from squeezefpga.golden.perf import layer_work
from squeezefpga.golden.tiled_program import Compute, run_tiled_program, tiled_for
from squeezefpga.host.device import Device
from squeezefpga.progress import Stage, emit
from squeezefpga.sim.board_server import BoardServer

__all__ = ["SimResult", "simulate", "layer_rows"]


def layer_rows(names_and_cycles, work):
    """Per-step rows ``{"name", "cycles", "ideal_cycles"}`` of a run."""
    return [{"name": name, "cycles": int(cycles), "ideal_cycles": w["ideal_cycles"]}
            for (name, cycles), w in zip(names_and_cycles, work)]


@dataclass
class SimResult:
    """One image on the simulated accelerator, checked against the golden model.

    Members
    -------
    run : :class:`squeezefpga.host.device.InferenceResult`
    golden_logits : the integer model's class sums.
    bitexact : all class sums equal the golden model's.
    first_difference : with ``check_all``, the first differing tensor element (layer,
        channel, row, column, values), else the first differing class; None when equal.
    ideal_cycles, layers : totals and per-step rows ``{"name", "cycles", "ideal_cycles"}``.
    seconds : wall time of the run (image write, run, read-back).
    lanes : lanes of the accelerator.
    """
    run: object
    golden_logits: np.ndarray
    bitexact: bool
    first_difference: str
    ideal_cycles: float
    layers: list
    seconds: float
    lanes: int

    @property
    def utilization(self):
        return self.ideal_cycles / self.run.cycles if self.run.cycles else 0.0


def simulate(model, images, config=None, check_all=False, progress=None, timeout=600.0):
    """Run ``images`` (uint8 BGR) on a private simulated board built with ``config``.

    The model is checked against ``config`` before the (long) build, loaded once, and the
    board process is always stopped at the end. ``progress`` receives the build, load and run
    events; ``timeout`` bounds each run.

    Returns
    -------
    list of SimResult, one per image.
    """
    config = config if config is not None else AcceleratorConfig()
    # A board with SDRAM runs every model tiled: that program must fit it.
    tiled = tiled_for(model.program, config) if config.sdram_mhz else None
    if tiled is None:
        model.check(config)
    work = layer_work(model.program, config.lanes)
    ideal = sum(w["ideal_cycles"] for w in work)
    results = []
    with BoardServer.start(config, progress=progress) as server, \
            Device.open(server.url) as device:
        device.load_model(model, progress)
        for n, image in enumerate(images, 1):
            emit(progress, Stage.RUN, f"image {n}/{len(images)} on {config.lanes} lanes"
                 + (" step by step" if check_all else ""))
            start = time.monotonic()
            run = device.infer(image, timeout, check_all, progress)
            seconds = time.monotonic() - start
            golden = run_integer(model.program, image)
            expected = golden.tensors
            if tiled is not None:      # tile by tile: every computation's output
                keys = [f"{i}:{op.step.name}" for i, op in enumerate(tiled.ops)
                        if isinstance(op, Compute)]
                expected = dict(zip(keys, run_tiled_program(tiled, image).outputs))
            difference = compare_tensors(expected, run.tensors) if check_all else None
            if difference is None:
                difference = first_difference("logits", golden.logits, run.logits)
            results.append(SimResult(run, golden.logits,
                                     bool(np.array_equal(golden.logits, run.logits)),
                                     difference, ideal, layer_rows(run.layer_cycles, work),
                                     seconds, config.lanes))
    return results
