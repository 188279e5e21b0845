"""What the commands do, as functions of explicit parameters: the command line parses its
arguments, calls one of these and prints the result through :mod:`.report`."""

import dataclasses
import json
import os
from contextlib import contextmanager
from pathlib import Path

from squeezefpga.config import AcceleratorConfig
from squeezefpga.errors import SqueezeFPGAError
from squeezefpga.golden.float_model import float_forward
from squeezefpga.golden.image import load_image
from squeezefpga.golden.integer_model import run_integer
from squeezefpga.golden.perf import layer_work
from squeezefpga.golden.tiled_program import tiled_for
from squeezefpga.host.device import Device
from squeezefpga.models import class_names
from squeezefpga.sim.board_server import BoardServer

from .model_cache import CALIBRATION, Source, cache_dir, compile_source, load_model
from .simulate import layer_rows, simulate

__all__ = ["accelerator_config", "fitting_config", "compile_with_fidelity", "write_output", "check_output", "golden_scores",
           "emit_verilog_file", "bench", "open_device", "classify", "BOARDS", "build_report",
           "write_html_report", "fpga_build", "program_board", "board_config",
           "parse_sdram_fault"]

#: Boards the project builds for.
BOARDS = ("ulx3s-85f",)


def accelerator_config(lanes, **overrides):
    """The :class:`AcceleratorConfig` of ``lanes`` lanes, or a one-line error."""
    try:
        return AcceleratorConfig(lanes=lanes, **overrides)
    except ValueError as exc:
        raise SqueezeFPGAError(str(exc)) from None


def board_config(board, lanes):
    """The configuration of ``board``'s top with ``lanes`` lanes (its memories and its SDRAM),
    which the simulated board then serves; None for the simulation's default configuration."""
    if board is None:
        return accelerator_config(lanes)
    from squeezefpga.boards.ulx3s import BOARDS as BOARD_SPECS
    try:
        return BOARD_SPECS[board].config(lanes)
    except ValueError as exc:
        raise SqueezeFPGAError(str(exc)) from None


def parse_sdram_fault(text):
    """``stuck-bit=N:V`` (data bit N held at V) or ``dead-line=L`` (address pin AL reads 0):
    the planted fault of a simulated SDRAM chip, as :meth:`BoardServer.start` takes it."""
    name, _, value = text.partition("=")
    try:
        if name == "stuck-bit":
            bit, _, level = value.partition(":")
            bit, level = int(bit), int(level or 1)
            if 0 <= bit < 16 and level in (0, 1):
                return {"stuck_bit": bit, "stuck_value": level}
        elif name == "dead-line":
            line = int(value)
            if 0 <= line < 13:
                return {"dead_line": line}
    except ValueError:
        pass
    raise SqueezeFPGAError(f"--sdram-fault {text!r}: give stuck-bit=N:V (N 0..15, V 0 or 1) or "
                           "dead-line=L (L 0..12)")


def _power_of_two_above(n):
    return 1 << max(0, int(n) - 1).bit_length()


#: The memories of the larger simulation configuration, at least: every full-size variant
#: with synthetic weights fits it, so they share one Verilator build.
LARGE_ACTIVATION_BYTES = 4 << 20
LARGE_WEIGHT_BYTES = 1 << 20


def fitting_config(config, model):
    """``config``, or, if ``model`` needs more memory than it has, the larger simulation
    configuration: activation and weight memories of at least
    :data:`LARGE_ACTIVATION_BYTES` / :data:`LARGE_WEIGHT_BYTES`, powers of two that hold the
    model (synthetic variants, imported models). Every other limit stays, so the fit check
    still applies."""
    if model.program.activation_bytes <= config.activation_bytes and \
            len(model.blob) <= config.weight_bytes:
        return config
    activation = max(LARGE_ACTIVATION_BYTES, config.activation_bytes,
                     _power_of_two_above(model.program.activation_bytes))
    weights = max(LARGE_WEIGHT_BYTES, config.weight_bytes,
                  _power_of_two_above(len(model.blob)))
    return dataclasses.replace(config, activation_bytes=activation, weight_bytes=weights)


def compile_with_fidelity(source, calibration=CALIBRATION, progress=None):
    """Compile ``source`` and measure what the compression does to its scores on the
    calibration pictures (:meth:`~squeezefpga.golden.compiler.Compiled.fidelity`).

    Returns (Model, fidelity dict).
    """
    compiled, reference, images = compile_source(source, calibration, progress)
    return compiled.model, compiled.fidelity(images, reference)


def write_output(path, data, what):
    """Write ``data`` (bytes or str) to ``path``; a one-line error names what failed."""
    path = Path(path)
    try:
        if isinstance(data, str):
            path.write_text(data)
        else:
            path.write_bytes(data)
    except OSError as exc:
        raise SqueezeFPGAError(f"{path}: cannot write {what}: {exc.strerror}") from None
    return path


def check_output(path, what):
    """Fail at once (before any long work) if ``path`` cannot be written: its folder is
    missing or not writable, or it is a folder."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise SqueezeFPGAError(f"{path}: is a folder; give a file name for {what}")
    if not folder.is_dir():
        raise SqueezeFPGAError(f"{path}: cannot write {what}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SqueezeFPGAError(f"{path}: cannot write {what}: permission denied")
    return path


def _build_record(board, lanes):
    return cache_dir() / "builds" / board / f"{lanes}-lanes" / "build.json"


def build_report(board, lanes):
    """The JSON report of the last ``squeezefpga build`` of ``board`` with ``lanes`` lanes, or
    None if there is none."""
    try:
        return json.loads(_build_record(board, lanes).read_text())
    except (OSError, ValueError):
        return None


def fpga_build(board, lanes, clock_mhz, output=None, progress=None, sdram_degrees=None,
               seeds=None):
    """Build the board's bitstream (:func:`squeezefpga.boards.flow.build`) into ``output``
    (default ``build/BOARD-LANES``); the report is also kept for ``bench`` and ``report``.
    ``sdram_degrees`` overrides the SDRAM clock's phase lag; ``seeds`` are nextpnr's
    placement seeds, tried in turn until one meets timing."""
    from squeezefpga.boards.flow import build, check_build, check_sdram_phase, TOOLS, tool
    from squeezefpga.boards.ulx3s import SDRAM_CLOCK_DEGREES
    sdram_degrees = SDRAM_CLOCK_DEGREES if sdram_degrees is None else sdram_degrees
    check_build(board, lanes, clock_mhz)              # the quick checks, before anything
    check_sdram_phase(sdram_degrees)
    for name in TOOLS:
        tool(name)
    output = Path(output or Path("build") / f"{board}-{lanes}")
    if output.exists() and not output.is_dir():
        raise SqueezeFPGAError(f"{output}: is a file, not a build folder")
    result = build(board, lanes, clock_mhz, output, progress, sdram_degrees=sdram_degrees,
                   seeds=seeds)
    record = _build_record(board, lanes)
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(result.json()))
    except OSError:
        pass
    return result


def program_board(bitstream):
    """Load a bitstream into the ULX3S (:func:`squeezefpga.boards.program.program`)."""
    from squeezefpga.boards.program import program
    return program(bitstream)


def write_html_report(path, results, model, image_path, board=None):
    """The HTML report (:mod:`.html_report`) of a run, with the board's build figures if a
    build of that lane count exists."""
    from .html_report import render_report
    build = build_report(board, results[0].lanes) if board else None
    return write_output(path, render_report(results, model, image_path, class_names(), build),
                        "the report")


def golden_scores(image_path, source, use_float=False, blob_path=None, use_cache=True,
                  progress=None, calibration=CALIBRATION):
    """Class scores of the golden model for one picture: float32 reference (floats) or the
    bit-exact integer model (ints). ``source`` is a :class:`Source` or a ``.net`` path."""
    source = Source.of(source)
    if use_float:
        model = source.float_model()
        image = load_image(image_path, model.network.input_shape[1])
        return [float(s) for s in float_forward(model, image)[model.network.output].ravel()]
    model = load_model(source, blob_path, use_cache, progress, calibration)
    image = load_image(image_path, model.program.input_shape[1])
    return [int(s) for s in run_integer(model.program, image).logits]


def emit_verilog_file(config, output, framed=False, lint=False, synth=False, progress=None):
    """Write the accelerator's Verilog to ``output``; optionally lint it and run synth_ecp5.

    Returns
    -------
    (size in bytes, synthesis figures or None)
    """
    from squeezefpga.boards.synthesis import synthesize_ecp5
    from squeezefpga.sim.accelerator_build import accelerator_verilog
    from squeezefpga.sim.toolchain import lint as verilator_lint
    text = accelerator_verilog(config, progress, framed=framed)
    path = write_output(output, text, "Verilog")
    if lint:
        verilator_lint(path)
    figures = synthesize_ecp5(text, progress=progress) if synth else None
    return len(text), figures


def bench(model, image, lane_counts, progress=None, board=None):
    """One simulation per lane count (all checked before the first build): of ``board``'s
    top (tiled through its SDRAM) if one is named, else of the simulation's default
    configuration grown to fit the model."""
    if board:
        configs = [board_config(board, lanes) for lanes in lane_counts]
        for config in configs:
            tiled_for(model.program, config)
    else:
        configs = [fitting_config(accelerator_config(lanes), model) for lanes in lane_counts]
        for config in configs:
            model.check(config)
    return [simulate(model, [image], config, progress=progress)[0] for config in configs]


@contextmanager
def open_device(url, config=None, timeout=10.0, progress=None, faults=None):
    """A :class:`Device` on ``url``; ``"sim"`` starts a private simulated board of ``config``
    (with ``faults`` planted in its SDRAM chip) for the duration (always stopped at the
    end)."""
    if faults and url != "sim":
        raise SqueezeFPGAError("--sdram-fault plants a fault in a simulated board: use it "
                               "with --device sim")
    server = None
    try:
        if url == "sim":
            server = BoardServer.start(config, progress=progress, faults=faults)
            url = server.url
        with Device.open(url, timeout=timeout) as device:
            yield device
    finally:
        if server is not None:
            server.close()


def classify(device, model, image_paths, progress=None):
    """Load ``model`` if the device lacks it, then classify each picture.

    Yields
    ------
    (path, InferenceResult, per-step rows, ideal cycles)
    """
    work = layer_work(model.program, device.info().lanes)
    ideal = sum(w["ideal_cycles"] for w in work)
    device.load_model(model, progress)
    for path in image_paths:
        image = load_image(path, model.program.input_shape[1])
        result = device.infer(image, progress=progress)
        yield path, result, layer_rows(result.layer_cycles, work), ideal
