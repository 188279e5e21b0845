"""The HTML performance report (app/html_report.py) of a real run: the reduced network
simulated on the 8-lane accelerator in Verilator, checked as HTML, as PNGs and as a page that
headless Chromium draws."""

import base64
import binascii
import dataclasses
import io
import os
import signal
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from squeezefpga.app.html_report import (CYCLES_COLOUR, IDEAL_COLOUR, SDRAM_KEYS, SECTIONS,
                                         THUMBNAIL_SIDE, render_report)
from squeezefpga.app.report import top5
from squeezefpga.app.simulate import simulate
from squeezefpga.golden.compiler import compile_model
from squeezefpga.golden.network import tiny_squeezenet
from squeezefpga.models import class_names

from .test_board import CONFIG
from .test_network import random_model

CHROMIUM = "/usr/bin/chromium"

#: A plausible `squeezefpga build` JSON for the 8-lane run.
BUILD = {"board": "ulx3s-85f", "lanes": 8, "clock_mhz": 50.0, "fmax_mhz": 62.5,
         "timing_met": True, "lut4": 11_960, "lut4_total": 83_640, "ff": 6_012, "mult18": 26,
         "mult18_total": 156, "dp16kd": 60, "dp16kd_total": 208,
         "bitstream": "build/ulx3s_8.bit", "seconds": 431.5}

#: Sections every report has; ``sdram`` and ``build`` only with their data.
ALWAYS = ("summary", "top5", "cycles", "utilization", "weights")


@dataclasses.dataclass
class Run:
    model: object
    results: list
    picture: object


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The reduced network of tests/test_board.py, compiled and simulated at 8 lanes."""
    rng = np.random.default_rng(7)
    network = tiny_squeezenet(size=35, conv1_kernel=7)
    images = [rng.integers(0, 256, network.input_shape, dtype=np.uint8) for _ in range(2)]
    model = compile_model(random_model(network, rng), images).model
    results = simulate(model, [images[0]], CONFIG)
    picture = tmp_path_factory.mktemp("report") / "noise.png"
    Image.fromarray(np.ascontiguousarray(images[0][::-1].transpose(1, 2, 0))).save(picture)
    return Run(model, results, picture)


@pytest.fixture(scope="module")
def names():
    return class_names()


@pytest.fixture(scope="module")
def plain(run, names):
    """The report as ``sim`` would make it: no build, rows without SDRAM figures."""
    return render_report(run.results, run.model, run.picture, names)


def with_sdram(result, every=1):
    """``result`` whose rows (every ``every``-th) carry SDRAM figures, as a future external
    memory run's would."""
    rows = [dict(row, sdram_bytes=1000 * (i + 1), sdram_stall_cycles=10 * (i + 1))
            if i % every == 0 else dict(row) for i, row in enumerate(result.layers)]
    return dataclasses.replace(result, layers=rows)


@pytest.fixture(scope="module")
def full(run, names):
    """The report with every section: SDRAM rows and a build."""
    return render_report([with_sdram(run.results[0])], run.model, run.picture, names,
                         build=BUILD)


class Page(HTMLParser):
    """What the tests read from a page: sections, images, ``data-key`` values and texts per
    section, and every URL-carrying attribute."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.sections, self.images, self.urls, self.tags = [], [], [], []
        self.values = {}        # section -> list of (data-key, data-value, text, row lanes)
        self.text = {}          # section -> its text
        self._section = None
        self._lanes = None
        self._open = []         # [tag, depth, key, value, text parts] of data-key elements
        self._depth = 0
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag not in ("img", "meta", "br", "hr", "link", "input"):
            self._depth += 1
        if tag == "section":
            self._section = attrs["id"]
            self.sections.append(self._section)
        if tag == "tr":
            self._lanes = attrs.get("data-lanes")
        if tag == "img":
            self.images.append((self._section, attrs.get("class"), attrs["src"]))
        for name in ("src", "href", "action", "data", "poster"):
            if name in attrs:
                self.urls.append(attrs[name])
        if "data-key" in attrs:
            self._open.append([tag, self._depth, attrs["data-key"], attrs.get("data-value"),
                               [], self._lanes])

    def handle_endtag(self, tag):
        if self._open and self._open[-1][0] == tag and self._open[-1][1] == self._depth:
            _, _, key, value, parts, lanes = self._open.pop()
            self.values.setdefault(self._section, []).append((key, value, "".join(parts),
                                                              lanes))
        if tag == "section":
            self._section = None
        self._depth -= 1

    def handle_data(self, data):
        for entry in self._open:
            entry[4].append(data)
        if self._section:
            self.text[self._section] = self.text.get(self._section, "") + data

    def value(self, section, key, lanes=None):
        """(data-value, text) of the one element of ``section`` with ``data-key`` ``key``
        (in the table row of ``lanes``)."""
        found = [(v, t) for k, v, t, row in self.values.get(section, [])
                 if k == key and (lanes is None or row == str(lanes))]
        assert len(found) == 1, (section, key, found)
        return found[0]

    def plots(self):
        return [(section, decode_png(src)) for section, cls, src in self.images
                if cls == "plot"]


def decode_png(src):
    """The image of a ``data:image/png;base64,`` URI, checked to be a whole, valid PNG."""
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    try:
        data = base64.b64decode(src[len(prefix):], validate=True)
    except binascii.Error as exc:
        raise AssertionError(f"bad base64: {exc}")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def assert_not_blank(image, min_colours=16, min_ink=0.03):
    """More than a handful of colours and a fair share of non-white pixels."""
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    colours = len(np.unique(pixels, axis=0))
    ink = float(np.mean(np.any(pixels < 245, axis=1)))
    assert colours >= min_colours, f"only {colours} distinct colours"
    assert ink >= min_ink, f"only {ink:.1%} non-white pixels"


def rgb(colour):
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])


# -- the run --------------------------------------------------------------------------------------

def test_the_run_is_real_and_bit_exact(run):
    result, = run.results
    assert result.lanes == 8 and result.bitexact and result.first_difference is None
    assert result.run.cycles > result.ideal_cycles > 0
    assert len(result.layers) == len(run.model.program.descriptors)


# -- the HTML -----------------------------------------------------------------------------------

def test_sections_in_order_and_optional_ones_absent(plain, full):
    assert Page(plain).sections == list(ALWAYS)
    assert Page(full).sections == list(SECTIONS)
    assert 'id="sdram"' not in plain and 'id="build"' not in plain
    for key in ALWAYS:
        assert f'href="#{key}"' in plain
    assert 'href="#sdram"' not in plain and 'href="#build"' not in plain


def test_summary_numbers_are_the_run_s(run, plain):
    result, = run.results
    page = Page(plain)

    def check(key, value, text):
        assert page.value("summary", key, 8) == (str(value), text)
    check("lanes", 8, "8")
    check("cycles", result.run.cycles, f"{result.run.cycles:,}")
    check("ideal_cycles", round(result.ideal_cycles), f"{round(result.ideal_cycles):,}")
    check("utilization", round(result.utilization, 4), f"{result.utilization:.1%}")
    check("bitexact", "true", "yes")
    check("mac_issues", result.run.mac_issues, f"{result.run.mac_issues:,}")
    check("busy_lane_cycles", result.run.busy_lane_cycles, f"{result.run.busy_lane_cycles:,}")
    speed = round(result.run.cycles / result.seconds)
    check("cycles_per_second", speed, f"{speed:,}")
    assert page.value("summary", "blob_bytes") == (str(len(run.model.blob)),
                                                   f"{len(run.model.blob):,} bytes")
    assert "First difference" not in page.text["summary"]


def test_a_mismatch_is_shown_with_its_first_difference(run, names):
    difference = "conv1 channel 3 row 1 column 2: golden 17, accelerator <18> & more"
    wrong = dataclasses.replace(run.results[0], bitexact=False, first_difference=difference)
    text = render_report([wrong], run.model, run.picture, names)
    page = Page(text)
    assert page.value("summary", "bitexact", 8) == ("false", "NO")
    assert difference in page.text["summary"]
    assert "&lt;18&gt; &amp; more" in text and "<18>" not in text


def test_several_lane_counts(run, names):
    second = dataclasses.replace(run.results[0], lanes=16)
    page = Page(render_report([run.results[0], second], run.model, run.picture, names))
    assert page.value("summary", "lanes", 16) == ("16", "16")
    assert "All 2 lane counts give the same class scores: yes" in page.text["top5"]
    assert len(page.plots()) == 3


def test_top5_and_the_photo(run, plain, names):
    result, = run.results
    page = Page(plain)
    expected = top5([int(v) for v in result.run.logits], names)
    found = [(k, v, t) for k, v, t, _ in page.values["top5"]]
    for entry in expected:
        assert ("class", str(entry["class"]), str(entry["class"])) in found
        assert ("name", None, entry["name"]) in found
    scores = [v for k, v, _ in found if k == "score"]
    assert scores == [str(entry["score"]) for entry in expected]
    assert [v for k, v, _ in found if k == "golden"] == [
        str(int(result.golden_logits[entry["class"]])) for entry in expected]
    photos = [src for section, cls, src in page.images if cls == "photo"]
    assert len(photos) == 1 and page.images[0][0] == "top5"
    thumbnail = decode_png(photos[0])
    assert max(thumbnail.size) == THUMBNAIL_SIDE
    with Image.open(run.picture) as original:
        original = np.asarray(original.convert("RGB"), float)
    shown = np.asarray(thumbnail, float)
    assert np.abs(shown.mean(axis=(0, 1)) - original.mean(axis=(0, 1))).max() < 4


def test_every_image_is_a_valid_non_blank_png(plain, full):
    for text, sections in ((plain, ["cycles", "utilization", "weights"]),
                           (full, ["cycles", "utilization", "weights", "sdram", "build"])):
        page = Page(text)
        assert all(src.startswith("data:image/png;base64,") for _, _, src in page.images)
        plots = page.plots()
        assert [section for section, _ in plots] == sections
        for section, image in plots:
            assert image.width >= 400 and image.height >= 200, section
            assert_not_blank(image)


def test_the_cycles_plot_draws_both_series(plain):
    (_, image), = [p for p in Page(plain).plots() if p[0] == "cycles"]
    pixels = np.asarray(image).reshape(-1, 3).astype(int)
    for colour in (CYCLES_COLOUR, IDEAL_COLOUR):
        assert np.sum(np.all(np.abs(pixels - rgb(colour)) <= 2, axis=1)) > 1000, colour


def test_self_contained(plain, full):
    for text in (plain, full):
        assert "http://" not in text.lower() and "https://" not in text.lower()
        assert "//cdn" not in text.lower()
        page = Page(text)
        assert page.urls and all(url.startswith(("data:image/png;base64,", "#"))
                                 for url in page.urls)
        assert not {"script", "link", "iframe", "object", "embed"} & set(page.tags)
        assert text.startswith("<!DOCTYPE html>")


def test_text_is_escaped(run, names):
    hostile = list(names)
    best = int(np.argmax(run.results[0].run.logits))
    hostile[best] = "<i>tabby</i> & co"
    text = render_report(run.results, run.model, run.picture, hostile, title="<b>R&D</b>")
    assert "<b>R&D</b>" not in text and "&lt;b&gt;R&amp;D&lt;/b&gt;" in text
    assert "<i>tabby</i>" not in text and "&lt;i&gt;tabby&lt;/i&gt; &amp; co" in text
    shown = [t for k, _, t, _ in Page(text).values["top5"] if k == "name"]
    assert shown[0] == "<i>tabby</i> & co"            # the text a reader sees


def test_build_section(run, full):
    result, = run.results
    page = Page(full)
    assert page.value("build", "lut4") == (str(BUILD["lut4"]), f"{BUILD['lut4']:,}")
    value, text = page.value("build", "fps")
    fps = BUILD["fmax_mhz"] * 1e6 / result.run.cycles
    assert float(value) == pytest.approx(fps) and text == f"{fps:,.1f}"
    section = page.text["build"]
    for used, total in (("lut4", "lut4_total"), ("mult18", "mult18_total"),
                        ("dp16kd", "dp16kd_total")):
        assert f"{100 * BUILD[used] / BUILD[total]:.1f} %" in section
    for word in ("LUT4", "MULT18X18D", "DP16KD", "62.5 MHz", "50.0 MHz", BUILD["board"],
                 BUILD["bitstream"]):
        assert word in section


def test_build_for_another_lane_count_has_no_fps(run, names):
    build = dict(BUILD, lanes=64)
    page = Page(render_report(run.results, run.model, run.picture, names, build=build))
    assert "no simulation with 64 lanes" in page.text["build"]
    assert not [v for k, v, _, _ in page.values.get("build", []) if k == "fps"]


def test_sdram_section_only_with_the_data(run, names, plain, full):
    assert not any(key in row for row in run.results[0].layers for key in SDRAM_KEYS)
    assert "sdram" not in Page(plain).sections and "SDRAM" not in plain
    assert "sdram" in Page(full).sections
    # One row carrying the figures is enough.
    sparse = with_sdram(run.results[0], every=len(run.results[0].layers))
    page = Page(render_report([sparse], run.model, run.picture, names))
    assert "sdram" in page.sections
    assert [section for section, _ in page.plots()][-1] == "sdram"


# -- in a browser -------------------------------------------------------------------------------

def chromium():
    """The Chromium binary, or skip (fail with SQUEEZEFPGA_REQUIRE_BROWSER=1)."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = (f"{CHROMIUM} is not installed (Debian package `chromium`); "
              "set SQUEEZEFPGA_REQUIRE_BROWSER=1 to make this a failure")
    if os.environ.get("SQUEEZEFPGA_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def screenshot(page, output, profile, timeout=120):
    """Headless Chromium's screenshot of ``page`` (1280x4000). The browser runs in its own
    process group, killed whole if it outlives ``timeout``."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
               "--window-size=1280,4000", f"--screenshot={output}", page.as_uri()]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"chromium took more than {timeout} s")
    assert process.returncode == 0 and output.exists(), (
        f"chromium exit {process.returncode}: {err.decode(errors='replace')[-2000:]}")


def test_chromium_draws_the_page(plain, tmp_path):
    browser = chromium()
    assert browser
    page = tmp_path / "report.html"
    page.write_text(plain, encoding="utf-8")
    output = tmp_path / "screenshot.png"
    screenshot(page, output, tmp_path / "profile")
    with Image.open(output) as image:
        image.load()
        shot = image.convert("RGB")
    assert shot.size == (1280, 4000)
    assert_not_blank(shot, min_colours=500, min_ink=0.05)
    # The cycles plot: its orange "ideal" bars appear nowhere else on this page (no build).
    pixels = np.asarray(shot).astype(int)
    ys, xs = np.nonzero(np.all(np.abs(pixels - rgb(IDEAL_COLOUR)) <= 4, axis=2))
    assert ys.size > 1000, "the cycles plot is not on the screen"
    top, bottom = np.percentile(ys, [1, 99]).astype(int)
    left, right = np.percentile(xs, [1, 99]).astype(int)
    assert bottom - top > 100 and right - left > 400
    bars = np.asarray(shot.crop((left, top, right + 1, bottom + 1))).astype(int)
    blue = np.all(np.abs(bars - rgb(CYCLES_COLOUR)) <= 4, axis=2)
    assert blue.sum() > 1000, "the measured-cycles bars are missing"
    # With its axes, ticks and labels around the bars, the plot is anything but uniform.
    plot = shot.crop((max(0, left - 80), max(0, top - 80), right + 80, bottom + 80))
    assert_not_blank(plot, min_colours=32, min_ink=0.1)


def test_a_missing_browser_skips_unless_required(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("SQUEEZEFPGA_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        chromium()
    monkeypatch.setenv("SQUEEZEFPGA_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="not installed"):
        chromium()


@pytest.mark.slow
def test_the_report_command_on_the_real_model_renders(tmp_path, capsys):
    """Acceptance: `squeezefpga report models/chelsea.png -o r.html` (64 lanes, the real
    v1.0 model), then the page in headless Chromium."""
    from squeezefpga.app.cli import main
    from squeezefpga.models import CAT_PHOTO
    browser = chromium()
    assert browser
    page = tmp_path / "r.html"
    assert main(["report", str(CAT_PHOTO), "-o", str(page)]) == 0
    assert "wrote" in capsys.readouterr().out
    text = page.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") >= 4      # three plots and the photo
    output = tmp_path / "screenshot.png"
    screenshot(page, output, tmp_path / "profile")
    with Image.open(output) as image:
        image.load()
        assert_not_blank(image.convert("RGB"), min_colours=500, min_ink=0.05)
