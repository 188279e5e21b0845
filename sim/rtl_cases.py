"""Batches of whole-tensor RTL checks: layer programs run by the cocotb testbench
:mod:`squeezefpga.sim.tb_accelerator`, compared bit for bit with the golden integer model."""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from squeezefpga.blob_format import OP_GLOBAL_SUM
from squeezefpga.golden.blob import Model
from squeezefpga.golden.compare import compare_tensors, first_difference
from squeezefpga.golden.integer_model import input_bytes, run_integer

from .accelerator_build import accelerator_verilog
from .cocotb_support import run_cocotb

__all__ = ["Case", "run_batch"]


@dataclass
class Case:
    """One program and image. ``per_step`` runs the steps one at a time and reads back every
    step's output; otherwise the whole program runs and only the class sums are read."""
    name: str
    blob: bytes
    image: np.ndarray
    per_step: bool = True


def _tensor(d, raw):
    if d.op == OP_GLOBAL_SUM:
        return np.frombuffer(raw, "<i4").astype(np.int32)
    return np.frombuffer(raw, np.uint8).reshape(d.out_shape)


def run_batch(config, cases):
    """Run ``cases`` in one simulation of an accelerator built with ``config``.

    Returns
    -------
    failures : list of str
        One message per case that differs from the golden model, naming the case, then the
        first differing layer, channel, row, column and both values.
    cycles : dict
        Case name -> list of cycle counts, one per run command.
    """
    models = [Model.decode(c.blob, c.name) for c in cases]
    for model in models:
        model.check(config)
    programs = [model.program for model in models]
    with tempfile.TemporaryDirectory(prefix="squeezefpga-rtl-") as tmp:
        tmp = Path(tmp)
        manifest = {"max_layers": config.max_layers, "cases": []}
        for i, (case, program) in enumerate(zip(cases, programs)):
            (tmp / f"c{i}.blob").write_bytes(case.blob)
            (tmp / f"c{i}.in").write_bytes(input_bytes(program, case.image))
            n = len(program.descriptors)
            steps = ([[j, j + 1, d.dst, d.out_bytes] for j, d in enumerate(program.descriptors)]
                     if case.per_step else
                     [[0, n, program.output_addr, 4 * program.classes]])
            manifest["cases"].append({"blob": f"c{i}.blob", "crc": models[i].crc,
                                      "input": f"c{i}.in", "input_addr": program.input_addr,
                                      "steps": steps})
        (tmp / "cases.json").write_text(json.dumps(manifest))
        run_cocotb(accelerator_verilog(config), "squeezefpga.sim.tb_accelerator",
                   testcase="run_cases", extra_env={"SQZ_TB_DIR": str(tmp)},
                   build_key=repr(config))
        failures, cycles = [], {}
        for i, (case, program) in enumerate(zip(cases, programs)):
            raw = (tmp / f"out{i}.bin").read_bytes()
            cycles[case.name] = json.loads((tmp / f"cycles{i}.json").read_text())
            golden = run_integer(program, case.image)
            if case.per_step:
                actual, at = {}, 0
                for d in program.descriptors:
                    actual[d.name] = _tensor(d, raw[at: at + d.out_bytes])
                    at += d.out_bytes
                message = compare_tensors(golden.tensors, actual)
            else:
                message = first_difference("logits", golden.logits,
                                           np.frombuffer(raw, "<i4").astype(np.int32))
            if message:
                failures.append(f"{case.name}: {message}")
    return failures, cycles
