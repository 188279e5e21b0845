"""Every shape the commands print: the JSON objects and the text tables, built from results.

Each ``*_json`` function returns a JSON-ready dict; each ``*_text`` function returns the lines
a person reads. The command line only chooses between them.
"""

import numpy as np

from squeezefpga.blob_format import DESCRIPTOR, ENC_DENSE, HEADER, OP_CONV, OP_NAMES
from squeezefpga.golden.blob import encode_weights

__all__ = ["layer_table", "top5", "compile_json", "compile_text", "golden_json", "top5_text",
           "layer_json", "sim_json", "sim_text", "bench_json", "bench_text", "classify_json",
           "classify_text", "verilog_json", "verilog_text", "selftest_json", "selftest_text"]


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


def top5(logits, names):
    """The five best classes: ``[{"class", "name", "score"}]``, best first (stable order)."""
    order = np.argsort(-np.asarray(logits), kind="stable")[:5]
    # A model with more classes than names (an imported one) gets numbers for the rest.
    return [{"class": int(c), "name": names[c] if c < len(names) else f"class {c}",
             "score": logits[c]} for c in order]


def _ints(values):
    return [int(v) for v in values]


# -- compile --------------------------------------------------------------------------------------

def _padding(model, rows):
    """Zero bytes that pad the blob to whole words (after the name table)."""
    return len(model.blob) - HEADER.size - sum(r["bytes"] for r in rows)


def compile_json(model, output, fidelity=None):
    rows = layer_table(model.program)
    return {"total_bytes": len(model.blob), "output": str(output),
            "activation_bytes": model.program.activation_bytes, "layers": rows,
            "padding_bytes": _padding(model, rows), "fidelity": fidelity}


def compile_text(model, output, fidelity=None):
    rows = layer_table(model.program)
    lines = [f"{'layer':<20} {'op':<10} {'output':>14} {'nnz':>7} {'density':>7} {'codes':>5} "
             f"{'encoding':>8} {'bytes':>7}"]
    for r in rows:
        shape = "x".join(map(str, r["out_shape"]))
        density = f"{r['density']:.3f}" if "density" in r else ""
        lines.append(f"{r['name']:<20} {r['op']:<10} {shape:>14} {r['nnz'] or '':>7} "
                     f"{density:>7} {r.get('codebook', ''):>5} {r.get('encoding', ''):>8} "
                     f"{r['bytes']:>7}")
    lines.append(f"{'header':<20} {'':<10} {'':>14} {'':>7} {'':>7} {'':>5} {'':>8} "
                 f"{HEADER.size:>7}")
    lines.append(f"{'padding':<20} {'':<10} {'':>14} {'':>7} {'':>7} {'':>5} {'':>8} "
                 f"{_padding(model, rows):>7}")
    nnz = sum(r["nnz"] for r in rows)
    size = len(model.blob)
    lines.append(f"total: {size:,} bytes ({size / 1024:.1f} KiB) for {nnz:,} non-zero weights; "
                 f"activation memory {model.program.activation_bytes:,} bytes; written to "
                 f"{output}")
    if fidelity:
        lines.append(f"against the float model on {fidelity['images']} calibration pictures: "
                     f"top-1 agreement {fidelity['top1_agreement']:.0%}, top-5 overlap "
                     f"{fidelity['top5_overlap']:.1f} of 5, relative score error at most "
                     f"{fidelity['relative_error']:.2%}")
    return lines


# -- classification results ---------------------------------------------------------------------

def golden_json(logits, names):
    return {"top5": top5(logits, names), "logits": logits}


def top5_text(logits, names, title):
    lines = [title]
    for rank, entry in enumerate(top5(logits, names), 1):
        score = entry["score"]
        shown = f"{score:10.3f}" if isinstance(score, float) else f"{score:10d}"
        lines.append(f"  {rank}. {entry['class']:4d} {shown}  {entry['name']}")
    return lines


def layer_json(rows):
    """Per-step rows with the ideal rounded: ``[{"name", "cycles", "ideal_cycles"}]``."""
    return [{"name": r["name"], "cycles": r["cycles"], "ideal_cycles": round(r["ideal_cycles"])}
            for r in rows]


def sim_json(result, names):
    run = result.run
    logits = _ints(run.logits)
    shown = {"top5": top5(logits, names), "logits": logits, "cycles": run.cycles,
             "ideal_cycles": round(result.ideal_cycles), "bitexact": result.bitexact,
             "first_difference": result.first_difference,
             "lane_utilization": round(result.utilization, 4),
             "busy_lane_cycles": run.busy_lane_cycles, "mac_issues": run.mac_issues,
             "layers": layer_json(result.layers)}
    return _sdram_fields(run, shown)        # a tiled program through the SDRAM


def sim_text(result, names, image):
    run = result.run
    lines = top5_text(_ints(run.logits), names, f"{image} (Verilator, {result.lanes} lanes):")
    lines.append(f"cycles {run.cycles:,} (ideal {result.ideal_cycles:,.0f}, lane "
                 f"utilization {result.utilization:.1%}); bit-exact with the golden model: "
                 f"{'yes' if result.bitexact else 'NO'}")
    if run.layer_bytes:
        lines.append(f"SDRAM: {run.sdram_bytes:,} bytes moved; computations waited "
                     f"{run.sdram_stall_cycles:,} cycles for them")
    return lines


# -- bench --------------------------------------------------------------------------------------

def _speed(result, build):
    """fmax of the board build of that lane count and frames per second at it (None, None
    without a build that met timing)."""
    if not build or not build.get("timing_met") or not build.get("fmax_mhz"):
        return None, None
    return build["fmax_mhz"], round(build["fmax_mhz"] * 1e6 / result.run.cycles, 2)


def bench_json(results, image_name, builds=None, board=None, model=None):
    builds = builds or {}
    runs = []
    for r in results:
        fmax, fps = _speed(r, builds.get(r.lanes))
        runs.append({"lanes": r.lanes, "cycles": r.run.cycles,
                     "ideal_cycles": round(r.ideal_cycles),
                     "lane_utilization": round(r.utilization, 4), "bitexact": r.bitexact,
                     "simulated_cycles_per_second": round(r.run.cycles / r.seconds),
                     "board": board, "fmax_mhz": fmax, "fps": fps,
                     "layers": layer_json(r.layers)})
    return {"model": model, "image": image_name, "runs": runs}


def bench_text(results, image_name, builds=None, board=None, model=None):
    report = bench_json(results, image_name, builds, board)["runs"]
    heads = [f"{r['lanes']} lanes: cycles" for r in report]
    lines = [f"model: {model}"] if model else []
    lines.append(f"{'layer':<20}" + "".join(f"{head:>20}{'ideal':>10}" for head in heads))
    for i, layer in enumerate(report[0]["layers"]):
        lines.append(f"{layer['name']:<20}" + "".join(
            f"{r['layers'][i]['cycles']:>20,}{r['layers'][i]['ideal_cycles']:>10,}"
            for r in report))
    lines.append(f"{'total':<20}" + "".join(f"{r['cycles']:>20,}{r['ideal_cycles']:>10,}"
                                            for r in report))
    for r in report:
        speed = (f", {r['board']} fmax {r['fmax_mhz']:.1f} MHz: {r['fps']:.2f} frames/s"
                 if r["fps"] else f", no {r['board']} build of {r['lanes']} lanes that met "
                                  "timing (squeezefpga build)" if r["board"] else "")
        lines.append(f"{r['lanes']:>3} lanes: utilization {r['lane_utilization']:.1%}, "
                     f"bit-exact {'yes' if r['bitexact'] else 'NO'}, simulator "
                     f"{r['simulated_cycles_per_second']:,} cycles/s{speed}")
    return lines


# -- FPGA build ---------------------------------------------------------------------------------

def build_json(result):
    return result.json()


def build_text(result):
    def share(used, total):
        return f"{used:,} of {total:,} ({used / total:.0%})" if total else f"{used:,}"
    fmax = f"{result.fmax_mhz:.2f} MHz" if result.fmax_mhz else "unknown"
    lines = [f"{result.board}, {result.lanes} lanes at {result.clock_mhz:g} MHz: fmax {fmax} "
             f"(nextpnr) - timing {'met' if result.timing_met else 'NOT met'}",
             f"  LUT4        {share(result.lut4, result.lut4_total)}",
             f"  FF          {result.ff:,}",
             f"  MULT18X18D  {share(result.mult18, result.mult18_total)} ({result.lanes} lanes "
             f"+ {result.mult18 - result.lanes} for requantisation)",
             f"  DP16KD      {share(result.dp16kd, result.dp16kd_total)}",
             "  time        " + ", ".join(f"{k.replace('_', ' ')} {v:.0f} s"
                                          for k, v in result.stages.items())
             + f" ({result.seconds:.0f} s in all)"]
    if len(result.attempts) > 1:
        lines.append("  seeds       " + ", ".join(
            f"{a['seed']}: " + (f"{a['fmax_mhz']:.2f} MHz" if a["fmax_mhz"] else "unknown")
            + (" (met)" if a["timing_met"] else "") for a in result.attempts))
    lines.append(f"  bitstream   {result.bitstream}" if result.bitstream else
                 "  no bitstream: timing was not met")
    return lines


# -- classify on a device -----------------------------------------------------------------------

def _sdram_fields(run, shown):
    """A tiled run's SDRAM figures, in all and per layer, added to ``shown``."""
    if run.layer_bytes:
        stalls, moved = dict(run.layer_stalls), dict(run.layer_bytes)
        shown.update(sdram_stall_cycles=run.sdram_stall_cycles, sdram_bytes=run.sdram_bytes)
        for row in shown["layers"]:
            row.update(sdram_stall_cycles=stalls[row["name"]], sdram_bytes=moved[row["name"]])
    return shown


def classify_json(path, device, result, rows, ideal, names):
    logits = _ints(result.logits)
    return _sdram_fields(result, {
        "image": str(path), "device": device, "top5": top5(logits, names),
        "logits": logits, "cycles": result.cycles, "ideal_cycles": round(ideal),
        "lane_utilization": round(ideal / result.cycles, 4) if result.cycles else 0.0,
        "layers": layer_json(rows)})


def classify_text(path, device, result, names):
    return top5_text(_ints(result.logits), names, f"{path} ({device}):") + [
        f"  {result.cycles:,} cycles"]


# -- verilog ------------------------------------------------------------------------------------

def verilog_json(output, lanes, size, lint, synth):
    report = {"output": str(output), "lanes": lanes, "bytes": size}
    if lint:
        report["lint"] = "clean"
    if synth is not None:
        report["synth_ecp5"] = synth
    return report


def verilog_text(output, lanes, size, lint, synth):
    lines = [f"wrote {output}: {size:,} bytes of Verilog, {lanes} lanes"]
    if lint:
        lines.append("verilator --lint-only -Wall: clean (waivers in squeezefpga/sim/toolchain.py)")
    if synth is not None:
        lines.append(f"synth_ecp5: {synth['luts']:,} LUT4, {synth['flip_flops']:,} FF, "
                     f"{synth['dsp']} MULT18X18D, {synth['block_ram']} DP16KD block RAMs")
    return lines


def selftest_json(device, checks):
    return {"device": device, "passed": all(c.status != "fail" for c in checks),
            "checks": [c.json() for c in checks]}


def selftest_text(device, checks):
    lines = [f"self-test of {device}:"]
    for c in checks:
        lines.append(f"  {c.name:8} {c.status.upper():5} {c.detail} ({c.seconds:g} s)")
    failed = [c.name for c in checks if c.status == "fail"]
    lines.append("FAILED: " + ", ".join(failed) if failed else "all checks passed")
    return lines
