"""A self-contained HTML performance report of a run of the accelerator in simulation.

One page, in the spirit of FINN's and CFU Playground's per-layer reports: a summary, the
top-5 next to the photo, cycles against the ideal per program step, lane utilization, weight
bytes and density per conv layer and, when the data exist, SDRAM traffic per layer and the
FPGA build's resources and fmax. Plots are PNGs drawn with matplotlib's Agg canvas (never a
display) and embedded as ``data:`` URIs, so the file needs nothing else: no network, no
other file.
"""

import base64
import html
import io
import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import StrMethodFormatter
from PIL import Image

from squeezefpga import __version__

from .report import layer_table, top5

__all__ = ["render_report", "SECTIONS", "CYCLES_COLOUR", "IDEAL_COLOUR", "LANE_COLOURS",
           "SDRAM_KEYS", "THUMBNAIL_SIDE"]

#: Section ids of the page, in order; ``sdram`` and ``build`` appear only with their data.
SECTIONS = ("summary", "top5", "cycles", "utilization", "weights", "sdram", "build")

#: Bar colours: measured cycles, the ideal, one colour per lane count (in results order).
CYCLES_COLOUR = "#3b6fb6"
IDEAL_COLOUR = "#f0a030"
LANE_COLOURS = ("#3b6fb6", "#d9534f", "#4fa35b", "#8e6bbf", "#f0a030", "#17a2b8")
DENSE_COLOUR = "#3b6fb6"
SPARSE_COLOUR = "#7fb0e0"
DENSITY_COLOUR = "#c0392b"

#: Optional per-layer row keys of a run with external memory; their chart appears only if a
#: row of some result carries one of them.
SDRAM_KEYS = ("sdram_bytes", "sdram_stall_cycles")

#: Longest side of the embedded photo, in pixels.
THUMBNAIL_SIDE = 227

#: Resources of a build, as (label, used key, total key).
_RESOURCES = (("LUT4", "lut4", "lut4_total"), ("FF", "ff", None),
              ("MULT18X18D", "mult18", "mult18_total"), ("DP16KD", "dp16kd", "dp16kd_total"))

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: #222; background: #fff; max-width: 1180px; margin: 0 auto; padding: 16px 24px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 2px solid #3b6fb6; padding-bottom: 3px;
     margin-top: 1.8em; }
nav a { margin-right: 1em; color: #3b6fb6; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 3px 9px; }
th { background: #eef2f8; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: bold; background: #f6f6f6; }
.yes { color: #1e7b34; font-weight: bold; }
.no { color: #b52a2a; font-weight: bold; }
.difference { color: #b52a2a; font-family: monospace; }
figure { margin: 0.8em 0; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: #555; font-size: 0.9em; margin-top: 4px; max-width: 1100px; }
.photo { display: flex; gap: 28px; align-items: flex-start; }
.photo figure { margin: 0; flex: none; }
.photo > div { flex: 1 1 auto; min-width: 0; }
.photo table { margin-top: 0; }
img.photo { image-rendering: pixelated; border: 1px solid #ccc; }
.side { display: flex; gap: 28px; align-items: flex-start; flex-wrap: wrap; }
details summary { cursor: pointer; color: #3b6fb6; }
footer { color: #777; font-size: 0.85em; margin-top: 3em; border-top: 1px solid #ddd;
         padding-top: 6px; }
"""


# -- HTML helpers -------------------------------------------------------------------------------

def _e(value):
    """``value`` as escaped HTML text."""
    return html.escape(str(value), quote=True)


def _cell(text, key=None, raw=None, num=False):
    """A ``<td>`` of ``text`` (right-aligned if ``num``); ``key`` and ``raw`` become
    ``data-key`` and ``data-value``, the unformatted value for programs reading the page."""
    attrs = ' class="num"' if num else ""
    if key is not None:
        attrs += f' data-key="{_e(key)}"'
    if raw is not None:
        attrs += f' data-value="{_e(raw)}"'
    return f"<td{attrs}>{_e(text)}</td>"


def _num(value, key=None, digits=0):
    """A right-aligned ``<td>`` of a number with thousands separators (``data-value``: the
    number itself, when ``key`` is given)."""
    raw = value if key is not None and value is not None else None
    return _cell(_number(value, digits), key, raw, True)


def _table(headers, rows, row_attrs=None):
    """A table; ``headers`` may be None (no head row), ``rows`` are lists of ready ``<td>``
    strings, ``row_attrs`` optional raw attribute strings, one per row."""
    head = (f"<thead><tr>{''.join(f'<th>{_e(h)}</th>' for h in headers)}</tr></thead>"
            if headers else "")
    body = []
    for i, cells in enumerate(rows):
        attrs = f" {row_attrs[i]}" if row_attrs and row_attrs[i] else ""
        body.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>"


def _figure(uri, alt, caption):
    return (f'<figure><img class="plot" src="{uri}" alt="{_e(alt)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _section(key, heading, body):
    return f'<section id="{key}"><h2>{_e(heading)}</h2>{body}</section>'


def _yes_no(flag):
    return f'<span class="{"yes" if flag else "no"}">{"yes" if flag else "NO"}</span>'


def _number(value, digits=0):
    """``1,234`` (or with ``digits`` decimals); "n/a" for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


# -- images -------------------------------------------------------------------------------------

def _png_uri(data):
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure_png(figure):
    """The figure as a ``data:`` URI of a PNG (Agg canvas; no pyplot, no global state)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, facecolor="white", metadata={"Software": None})
    return _png_uri(buffer.getvalue())


def _thumbnail(image_path):
    """The photo as a PNG ``data:`` URI, its longest side ``THUMBNAIL_SIDE`` pixels.

    Transparency goes over white, as the image loader does; small pictures are enlarged
    without smoothing, so the pixels the network saw stay visible.
    """
    with Image.open(image_path) as image:
        image.load()
        if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.new("RGBA", rgba.size, "white")
            image.alpha_composite(rgba)
        image = image.convert("RGB")
    scale = THUMBNAIL_SIDE / max(image.size)
    size = tuple(max(1, round(side * scale)) for side in image.size)
    image = image.resize(size, Image.NEAREST if scale > 1 else Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return _png_uri(buffer.getvalue()), size


# -- plots --------------------------------------------------------------------------------------

_THOUSANDS = StrMethodFormatter("{x:,.0f}")


def _lane_colour(i):
    return LANE_COLOURS[i % len(LANE_COLOURS)]


def _step_axis(axes, names):
    axes.set_xticks(range(len(names)))
    axes.set_xticklabels(names, rotation=50, ha="right", fontsize=8)
    axes.set_xlim(-0.6, len(names) - 0.4)
    axes.grid(axis="y", color="#dddddd", linewidth=0.6)
    axes.set_axisbelow(True)


def _legend(figure, axes=None, handles=None):
    """One legend above the plot, outside the axes, so it never covers a bar."""
    if handles is None:
        handles, _ = axes.get_legend_handles_labels()
    figure.legend(handles=handles, loc="outside upper center", ncol=len(handles), fontsize=9,
                  frameon=False)


def _positive(values):
    """Bar heights for a log axis: zero (a pool's ideal) becomes NaN, i.e. no bar."""
    return [v if v > 0 else math.nan for v in values]


def _cycles_plot(results):
    """Cycles against the ideal per program step: one panel per lane count, log scale."""
    figure = Figure(figsize=(11, 0.6 + 3.1 * len(results)), layout="constrained")
    axes_list = figure.subplots(len(results), 1, squeeze=False, sharex=True)[:, 0]
    for axes, result in zip(axes_list, results):
        names = [row["name"] for row in result.layers]
        x = np.arange(len(names))
        axes.bar(x - 0.2, _positive([row["cycles"] for row in result.layers]), 0.4,
                 color=CYCLES_COLOUR, label="cycles (measured)")
        axes.bar(x + 0.2, _positive([row["ideal_cycles"] for row in result.layers]), 0.4,
                 color=IDEAL_COLOUR, label="ideal (non-zero MACs / lanes)")
        axes.set_yscale("log")
        axes.set_ylabel("cycles")
        axes.set_title(f"{result.lanes} lanes: {result.run.cycles:,} cycles, ideal "
                       f"{result.ideal_cycles:,.0f} ({result.utilization:.1%})", fontsize=10)
        _step_axis(axes, names)
    _legend(figure, axes_list[0])
    return _figure_png(figure)


def _conv_rows(result):
    """(name, utilization) of the steps with an ideal (the convs); pools have none."""
    return [(row["name"], row["ideal_cycles"] / row["cycles"]) for row in result.layers
            if row["ideal_cycles"] > 0 and row["cycles"] > 0]


def _utilization_plot(results):
    """Lane utilization (ideal / cycles) per conv layer, one bar per lane count."""
    names = [name for name, _ in _conv_rows(results[0])]
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    axes = figure.subplots()
    width = 0.8 / len(results)
    x = np.arange(len(names))
    for i, result in enumerate(results):
        values = dict(_conv_rows(result))
        axes.bar(x - 0.4 + width * (i + 0.5), [100 * values.get(n, math.nan) for n in names],
                 width, color=_lane_colour(i),
                 label=f"{result.lanes} lanes (total {result.utilization:.1%})")
    axes.axhline(100, color="#555555", linewidth=0.8, linestyle="--")
    axes.set_ylabel("lane utilization (%)")
    axes.set_ylim(0, max([110] + [100 * u + 8 for r in results for _, u in _conv_rows(r)]))
    _legend(figure, axes)
    _step_axis(axes, names)
    return _figure_png(figure)


def _weights_plot(convs):
    """Weight bytes (bars, coloured by encoding) and density (points) per conv layer."""
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    axes = figure.subplots()
    x = np.arange(len(convs))
    axes.bar(x, [row["bytes"] for row in convs], 0.6,
             color=[DENSE_COLOUR if row["encoding"] == "dense" else SPARSE_COLOUR
                    for row in convs])
    axes.set_ylabel("bytes in the blob")
    axes.yaxis.set_major_formatter(_THOUSANDS)
    _step_axis(axes, [row["name"] for row in convs])
    density = axes.twinx()
    density.plot(x, [row["density"] for row in convs], "o-", color=DENSITY_COLOUR,
                 linewidth=1, markersize=5)
    density.set_ylim(0, 1.05)
    density.set_ylabel("density (non-zero / weights)", color=DENSITY_COLOUR)
    encodings = {row["encoding"] for row in convs}
    handles = [Patch(color=colour, label=label) for encoding, colour, label in (
        ("dense", DENSE_COLOUR, "bytes, dense 6-bit codes"),
        ("sparse", SPARSE_COLOUR, "bytes, sparse run + code entries")) if encoding in encodings]
    _legend(figure, handles=handles + [Patch(color=DENSITY_COLOUR, label="density")])
    return _figure_png(figure)


def _sdram_plot(results):
    """SDRAM bytes and stall cycles per program step, one bar per lane count."""
    names = [row["name"] for row in results[0].layers]
    figure = Figure(figsize=(11, 6.6), layout="constrained")
    panels = figure.subplots(2, 1, sharex=True)
    width = 0.8 / len(results)
    x = np.arange(len(names))
    for axes, key, label in zip(panels, SDRAM_KEYS, ("SDRAM bytes", "SDRAM stall cycles")):
        for i, result in enumerate(results):
            values = [math.nan if row.get(key) is None else row[key] for row in result.layers]
            axes.bar(x - 0.4 + width * (i + 0.5), values, width, color=_lane_colour(i),
                     label=f"{result.lanes} lanes")
        axes.set_ylabel(label)
        axes.yaxis.set_major_formatter(_THOUSANDS)
        _step_axis(axes, names)
    _legend(figure, panels[0])
    return _figure_png(figure)


def _build_plot(build, percentages):
    """Resource utilization (% of the device) and fmax against the clock."""
    figure = Figure(figsize=(11, 3.0), layout="constrained")
    used, clock = figure.subplots(1, 2, width_ratios=(3, 2))
    labels = [label for label, _ in percentages]
    values = [value for _, value in percentages]
    used.barh(labels, values, color=[LANE_COLOURS[1] if v > 100 else LANE_COLOURS[0]
                                     for v in values])
    used.axvline(100, color="#555555", linewidth=0.8, linestyle="--")
    used.set_xlim(0, max([105] + [v + 5 for v in values]))
    used.invert_yaxis()
    used.set_xlabel("% of the device")
    used.set_title("resources", fontsize=10)
    for y, v in enumerate(values):
        used.text(v + 0.5, y, f"{v:.1f} %", va="center", fontsize=8)
    mhz = [("clock", build.get("clock_mhz")), ("fmax", build.get("fmax_mhz"))]
    mhz = [(label, value) for label, value in mhz if value is not None]
    met = build.get("timing_met")
    clock.barh([label for label, _ in mhz], [value for _, value in mhz],
               color=[IDEAL_COLOUR if label == "clock" else
                      (LANE_COLOURS[2] if met is not False else LANE_COLOURS[1])
                      for label, _ in mhz])
    clock.invert_yaxis()
    clock.set_xlabel("MHz")
    clock.set_title("fmax against the clock", fontsize=10)
    for y, (_, value) in enumerate(mhz):
        clock.text(value, y, f" {value:.1f}", va="center", fontsize=8)
    clock.set_xlim(0, 1.2 * max([value for _, value in mhz] + [1]))
    return _figure_png(figure)


# -- sections -----------------------------------------------------------------------------------

def _summary(results, model):
    headers = ["lanes", "cycles", "ideal cycles", "lane utilization", "bit-exact",
               "MAC issues", "busy lane cycles", "simulator (cycles/s)", "wall time (s)"]
    rows, attrs, differences = [], [], []
    for result in results:
        run = result.run
        speed = run.cycles / result.seconds if result.seconds > 0 else None
        rows.append([
            _num(result.lanes, "lanes"),
            _num(run.cycles, "cycles"),
            _num(round(result.ideal_cycles), "ideal_cycles"),
            _cell(f"{result.utilization:.1%}", "utilization", round(result.utilization, 4), True),
            f'<td data-key="bitexact" data-value="{str(bool(result.bitexact)).lower()}">'
            f"{_yes_no(result.bitexact)}</td>",
            _num(run.mac_issues, "mac_issues"),
            _num(run.busy_lane_cycles, "busy_lane_cycles"),
            _num(round(speed) if speed is not None else None, "cycles_per_second"),
            _cell(f"{result.seconds:.2f}", "seconds", round(result.seconds, 3), True)])
        attrs.append(f'data-lanes="{int(result.lanes)}"')
        if result.first_difference:
            differences.append(f'<p>First difference at {int(result.lanes)} lanes: '
                               f'<span class="difference">{_e(result.first_difference)}'
                               f"</span></p>")
    program = model.program
    nnz = sum(int(np.count_nonzero(d.weights.codes)) for d in program.convs)
    facts = (f"<p>Blob <b data-key=\"blob_bytes\" data-value=\"{len(model.blob)}\">"
             f"{len(model.blob):,} bytes</b> ({len(model.blob) / 1024:.1f} KiB): "
             f"{len(program.descriptors)} program steps, {len(program.convs)} conv layers, "
             f"{nnz:,} non-zero weights; activation memory "
             f"{program.activation_bytes:,} bytes.</p>")
    caption = ("<p class=\"meta\">Ideal cycles: non-zero multiply-accumulates / lanes (pools "
               "count 0). Lane utilization: ideal / cycles. Simulator speed: simulated cycles "
               "per second of wall time for the whole run (image write, run, read-back).</p>")
    return _section("summary", "Summary",
                    _table(headers, rows, attrs) + "".join(differences) + facts + caption)


def _top5(results, image_path, names):
    result = results[0]
    logits = [int(v) for v in result.run.logits]
    golden = getattr(result, "golden_logits", None)
    rows = []
    for rank, entry in enumerate(top5(logits, names), 1):
        cells = [_num(rank), _num(entry["class"], "class"), _cell(entry["name"], "name"),
                 _num(entry["score"], "score")]
        if golden is not None:
            cells.append(_num(int(golden[entry["class"]]), "golden"))
        rows.append(cells)
    headers = ["rank", "class", "name", f"score ({result.lanes} lanes)"]
    if golden is not None:
        headers.append("golden model")
    uri, (width, height) = _thumbnail(image_path)
    agree = all(np.array_equal(r.run.logits, result.run.logits) for r in results)
    note = ("" if len(results) == 1 else
            f"<p>All {len(results)} lane counts give the same class scores: "
            f"{_yes_no(agree)}</p>")
    body = (f'<div class="photo"><figure><img class="photo" src="{uri}" width="{width}" '
            f'height="{height}" alt="the classified photo"><figcaption>{_e(image_path)}'
            f"</figcaption></figure><div>{_table(headers, rows)}{note}</div></div>")
    return _section("top5", "Top-5", body)


def _cycles(results):
    figure = _cycles_plot(results)
    caption = ("Cycles per program step (blue) against the ideal, non-zero MACs / lanes "
               "(orange); log scale, one panel per lane count. Pools have no ideal (no "
               "bar): they do no multiply-accumulates.")
    tables = []
    for result in results:
        rows = [[_cell(row["name"]), _num(row["cycles"]), _num(row["ideal_cycles"]),
                 _cell(f"{row['ideal_cycles'] / row['cycles']:.1%}"
                       if row["ideal_cycles"] > 0 and row["cycles"] else "n/a", num=True)]
                for row in result.layers]
        rows.append([_cell("total"), _num(result.run.cycles), _num(result.ideal_cycles),
                     _cell(f"{result.utilization:.1%}", num=True)])
        table = _table(["step", "cycles", "ideal", "utilization"], rows,
                       [""] * (len(rows) - 1) + ['class="total"'])
        tables.append(f"<details><summary>per-step table, {int(result.lanes)} lanes"
                      f"</summary>{table}</details>")
    return _section("cycles", "Cycles per layer",
                    _figure(figure, "cycles and ideal cycles per layer", caption)
                    + "".join(tables))


def _utilization(results):
    caption = ("Lane utilization (ideal / cycles) per conv layer, one bar per lane count. "
               "Pools are omitted: they have no ideal. Values over 100 % (conv10) come from "
               "its pad-1 border, which the ideal counts as computed and the engine fills "
               "with the bias in one tile per channel.")
    return _section("utilization", "Lane utilization",
                    _figure(_utilization_plot(results), "lane utilization per conv layer",
                            caption))


def _weights(model):
    table = layer_table(model.program)
    convs = [row for row in table if row["op"] == "conv"]
    rows = [[_cell(row["name"]), _cell("x".join(map(str, row["out_shape"])), num=True),
             _num(row["weights"]), _num(row["nnz"]),
             _cell(f"{row['density']:.3f}", num=True), _num(row["codebook"]),
             _cell(row["encoding"]), _num(row["bytes"], "bytes")]
            for row in convs]
    caption = ("Bytes of each conv layer in the blob (descriptor, name, biases, codebook and "
               "codes; the bar's shade is the encoding the compiler chose) and the fraction "
               "of non-zero weights (red points, right axis).")
    body = (_figure(_weights_plot(convs), "weight bytes and density per conv layer", caption)
            + _table(["layer", "output", "weights", "non-zero", "density", "codebook",
                      "encoding", "bytes"], rows))
    return _section("weights", "Weights per conv layer", body)


def _has_sdram(results):
    return any(key in row for result in results for row in result.layers for key in SDRAM_KEYS)


def _sdram(results):
    caption = ("Bytes moved to and from SDRAM and the cycles the engine stalled waiting for "
               "it, per program step; a missing bar is a step without the figure.")
    return _section("sdram", "SDRAM traffic per layer",
                    _figure(_sdram_plot(results), "SDRAM bytes and stall cycles per layer",
                            caption))


def _build(build, results):
    percentages, rows = [], []
    for label, used_key, total_key in _RESOURCES:
        used = build.get(used_key)
        total = build.get(total_key) if total_key else None
        share = 100 * used / total if used is not None and total else None
        if share is not None:
            percentages.append((label, share))
        rows.append([_cell(label), _num(used, used_key), _num(total),
                     _cell("n/a" if share is None else f"{share:.1f} %", num=True)])
    fmax, clock = build.get("fmax_mhz"), build.get("clock_mhz")
    lanes = build.get("lanes", "n/a")
    matching = [r for r in results if r.lanes == lanes]
    facts = [("board", _e(build.get("board", "n/a"))), ("lanes", _e(lanes)),
             ("clock", f"{_e(_number(clock, 1))} MHz"), ("fmax", f"{_e(_number(fmax, 1))} MHz"),
             ("timing met", _yes_no(build.get("timing_met"))
              if build.get("timing_met") is not None else "n/a")]
    if matching and matching[0].run.cycles:
        cycles = matching[0].run.cycles
        if fmax:
            fps = fmax * 1e6 / cycles
            facts.append(("frames/s at fmax",
                          f'<span data-key="fps" data-value="{fps!r}">{fps:,.1f}</span> '
                          f"({cycles:,} cycles at {_e(lanes)} lanes)"))
        if clock:
            facts.append(("frames/s at the clock", f"{clock * 1e6 / cycles:,.1f}"))
    else:
        facts.append(("frames/s", f"n/a: no simulation with {_e(lanes)} lanes in this report"))
    facts += [("bitstream", _e(build.get("bitstream", "n/a"))),
              ("build time", f"{_e(_number(build.get('seconds'), 0))} s")]
    listing = _table(None, [[f"<th>{label}</th>", f"<td>{value}</td>"]
                            for label, value in facts])
    body = (f'<div class="side">{_table(["resource", "used", "available", "utilization"], rows)}'
            f"{listing}</div>")
    if percentages or fmax is not None or clock is not None:
        caption = ("Share of the device's LUT4, MULT18X18D multipliers and DP16KD block RAMs "
                   "the build uses (red: over 100 %), and the fmax the place and route "
                   "reached against the target clock (green: timing met, red: not met).")
        body = _figure(_build_plot(build, percentages), "resources and fmax", caption) + body
    return _section("build", "FPGA build", body)


# -- the page -----------------------------------------------------------------------------------

def render_report(results, model, image_path, names, build=None, title="squeezefpga report"):
    """The HTML page of a simulated run: summary, top-5, cycles, utilization, weights and,
    with their data, SDRAM traffic and the FPGA build.

    Parameters
    ----------
    results : list of :class:`squeezefpga.app.simulate.SimResult`
        One per lane count (as ``bench`` returns; ``sim`` gives one), same model and image.
    model : :class:`squeezefpga.golden.blob.Model`
        The model that ran: blob size, per-layer weight bytes, density and encoding.
    image_path : str or Path
        The classified photo; shown as an embedded thumbnail next to the top-5.
    names : list of str
        Class names, index = class.
    build : dict, optional
        The JSON of an FPGA build (``board``, ``lanes``, ``clock_mhz``, ``fmax_mhz``,
        ``timing_met``, ``lut4``, ``lut4_total``, ``ff``, ``mult18``, ``mult18_total``,
        ``dp16kd``, ``dp16kd_total``, ``bitstream``, ``seconds``); missing keys show as n/a.
        Without it the build section is left out.
    title : str
        Page title and heading.

    Returns
    -------
    str
        A self-contained HTML document: inline CSS, plots as ``data:`` PNGs, no external
        resource. Section ids are :data:`SECTIONS`; summary cells carry ``data-key`` and
        ``data-value`` (the unformatted number).
    """
    results = list(results)
    if not results:
        raise ValueError("render_report needs at least one result")
    # (id, link text, HTML) in page order; the id is also the <section>'s.
    sections = [("summary", "summary", _summary(results, model)),
                ("top5", "top-5", _top5(results, image_path, names)),
                ("cycles", "cycles", _cycles(results)),
                ("utilization", "utilization", _utilization(results)),
                ("weights", "weights", _weights(model))]
    if _has_sdram(results):
        sections.append(("sdram", "SDRAM", _sdram(results)))
    if build is not None:
        sections.append(("build", "FPGA build", _build(build, results)))
    nav = "".join(f'<a href="#{key}">{label}</a>' for key, label, _ in sections)
    lanes = ", ".join(str(r.lanes) for r in results)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{_e(title)}</h1>"
            f'<p class="meta">{_e(image_path)} on the simulated accelerator (Verilator), '
            f"{_e(lanes)} lanes</p><nav>{nav}</nav>"
            + "".join(body for _, _, body in sections)
            + f"<footer>squeezefpga {_e(__version__)}</footer></body></html>\n")
