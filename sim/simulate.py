"""Whole-network runs on the Verilated accelerator: the simulated board, reached by the same
:class:`~squeezefpga.host.device.Device` driver as a real board."""

import time
from dataclasses import dataclass

import numpy as np

from squeezefpga.golden.compare import compare_tensors, first_difference
from squeezefpga.golden.integer_model import run_integer
from squeezefpga.golden.perf import layer_work
from squeezefpga.host.device import Device
from squeezefpga.hw.config import AcceleratorConfig, check_program

from .board_server import BoardServer

__all__ = ["SimResult", "simulate"]


@dataclass
class SimResult:
    """One image on the simulated accelerator, checked against the golden model.

    Members
    -------
    run : :class:`squeezefpga.host.inference.BoardRun`
    golden_logits : the integer model's class sums.
    bitexact : all class sums equal the golden model's.
    first_difference : with ``check_all``, the first differing tensor element (layer,
        channel, row, column, values), else the first differing class; None when equal.
    ideal_cycles, layers : totals and per-step rows ``{"name", "cycles", "ideal_cycles"}``.
    seconds : wall time of the run (image write, run, read-back).
    """
    run: object
    golden_logits: np.ndarray
    bitexact: bool
    first_difference: str
    ideal_cycles: float
    layers: list
    seconds: float

    @property
    def utilization(self):
        return self.ideal_cycles / self.run.cycles if self.run.cycles else 0.0


def simulate(blob, program, images, config=None, check_all=False, progress=None,
             timeout=600.0):
    """Run ``images`` (uint8 BGR) on a private simulated board built with ``config``.

    ``progress(message)`` gets one line per stage (build, load, each image). The model is
    loaded once; the board process is always stopped at the end. ``timeout`` bounds each run.
    """
    config = config if config is not None else AcceleratorConfig()
    check_program(config, program, len(blob))
    say = progress or (lambda message: None)
    work = layer_work(program, config.lanes)
    results = []
    with BoardServer.start(config, progress=say) as server, Device.open(server.url) as device:
        say(f"loading {len(blob):,} bytes of weights and program")
        device.load_model(blob)
        for n, image in enumerate(images, 1):
            say(f"running image {n}/{len(images)} on {config.lanes} lanes"
                + (" step by step" if check_all else ""))
            start = time.monotonic()
            run = device.infer(image, timeout, check_all)
            seconds = time.monotonic() - start
            golden = run_integer(program, image)
            if check_all:
                difference = compare_tensors(golden.tensors, run.tensors)
            else:
                difference = None
            if difference is None:
                difference = first_difference("logits", golden.logits, run.logits)
            layers = [{"name": name, "cycles": cycles, "ideal_cycles": w["ideal_cycles"]}
                      for (name, cycles), w in zip(run.layer_cycles, work)]
            results.append(SimResult(run, golden.logits,
                                     bool(np.array_equal(golden.logits, run.logits)),
                                     difference, sum(w["ideal_cycles"] for w in work),
                                     layers, seconds))
    return results
