"""Post-synthesis simulation (sim/post_synthesis.py, sim/ecp5_cells.v).

The DP16KD and MULT18X18D models are checked the only way that says they are right for what
yosys builds: small designs are synthesised with ``synth_ecp5``, and the RTL and the netlist
(with the models) run the same random stimulus in Verilator; their outputs must agree on
every cycle. The designs cover every block-RAM configuration yosys makes of our memories
(widths 1 to 36, byte enables, the three write modes, both resets, clock enables, a falling
clock, ports of different widths, initial contents) and multipliers of several widths and
signs; a test checks that the accelerator's netlist uses no configuration they leave out.
The end-to-end test runs the reduced network on the synthesised core of the 8-lane ULX3S build
(the RTLIL ``squeezefpga build`` synthesises, through the same ``synth_ecp5``) behind the
simulated board, through the host driver, against the golden model.
"""

import hashlib
import re
import shutil
import subprocess
from collections import Counter

import numpy as np
import pytest
from amaranth import Module, unsigned
from amaranth.back import verilog as amaranth_verilog
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from squeezefpga.boards.flow import core_rtlil
from squeezefpga.errors import SimulationError
from squeezefpga.golden.integer_model import run_integer
from squeezefpga.host.device import Device
from squeezefpga.hw.ram import RAM_VERILOG
from squeezefpga.sim.board_server import BoardServer
from squeezefpga.sim.build import cached_directory
from squeezefpga.sim.post_synthesis import (cell_library, check_cells, post_synthesis_board,
                                            synthesize_netlist)
from squeezefpga.sim.toolchain import (VERILATOR_WAIVERS, verilator_env, verilator_executable,
                                       verilator_version)

from .test_fpga import CI_LANES
from .test_board import tiny  # noqa: F401  (the reduced network, a fixture)

#: The configuration CI builds into a bitstream: its core is the one simulated here.
BOARD, LANES = "ulx3s-85f", CI_LANES

CYCLES = 20_000

# ---------------------------------------------------------------------------------------------
# A bench: drives `top`'s `stim` with fresh random bits every cycle and prints `out`.

BENCH = """\
module bench(input clk);
    reg [{stim}-1:0] stim = 0;
    wire [{out}-1:0] out;
    reg [63:0] state = 64'h{seed:016x};
    integer cycle = 0, i;
    top dut(.clk(clk), .stim(stim), .out(out));
    always @(posedge clk) begin : drive
        reg [{words}*64-1:0] bits;
        reg [63:0] x;
        $display("%0d %h", cycle, out);
        x = state;
        for (i = 0; i < {words}; i = i + 1) begin
            x = x ^ (x << 13);
            x = x ^ (x >> 7);
            x = x ^ (x << 17);
            bits[i * 64 +: 64] = x;
        end
        state <= x;
        stim <= bits[{stim}-1:0];
        cycle <= cycle + 1;
        if (cycle == {cycles}) $finish;
    end
endmodule
"""

MAIN_CPP = """\
#include "Vbench.h"
#include "verilated.h"
#include <memory>
int main(int argc, char** argv) {
    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(argc, argv);
    auto bench = std::make_unique<Vbench>(ctx.get(), "bench");
    bench->clk = 0;
    bench->eval();
    while (!ctx->gotFinish()) {
        bench->clk = 1;
        bench->eval();
        bench->clk = 0;
        bench->eval();
    }
    bench->final();
    return 0;
}
"""

BENCH_FLAGS = ["--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal", "-Wno-lint",
               "-Wno-style", "-Wno-SPECIFYIGN", "-MAKEFLAGS", "OPT_FAST=-O1"]


def verilate(verilog_text, stim_bits, out_bits, cycles=CYCLES, seed=0x5EED_1234_ABCD_0001):
    """A cached Verilator build of ``verilog_text`` (module ``top``) under :data:`BENCH`."""
    bench = BENCH.format(stim=stim_bits, out=out_bits, words=-(-stim_bits // 64),
                         cycles=cycles, seed=seed)
    digest = hashlib.sha256()
    for part in (verilog_text, bench, MAIN_CPP, "\0".join(BENCH_FLAGS + VERILATOR_WAIVERS),
                 verilator_version()):
        digest.update(len(part.encode()).to_bytes(8, "little") + part.encode())

    def populate(directory):
        (directory / "design.v").write_text(verilog_text)
        (directory / "bench.v").write_text(bench)
        (directory / "main.cpp").write_text(MAIN_CPP)
        cmd = [str(verilator_executable()), "--cc", "--exe", "--build", "-j", "2",
               *BENCH_FLAGS, *VERILATOR_WAIVERS, "--top-module", "bench", "--Mdir", "obj",
               "-o", "sim", "bench.v", "design.v", "main.cpp"]
        result = subprocess.run(cmd, cwd=directory, env=verilator_env(), capture_output=True,
                                text=True, errors="replace", check=False)
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        (directory / "obj" / "sim").rename(directory / "sim")
        shutil.rmtree(directory / "obj")

    return cached_directory("post-synthesis-tests", digest.hexdigest()[:40], populate) / "sim"


def run(executable):
    result = subprocess.run([str(executable)], capture_output=True, text=True, errors="replace",
                            check=False)
    return result.returncode, result.stdout, result.stderr


def trace(executable):
    code, out, err = run(executable)
    assert code == 0, f"{executable} failed ({code}):\n{out[-2000:]}{err[-2000:]}"
    return [line for line in out.splitlines() if line and line[0].isdigit()]


def differences(reference, other, fields):
    """{field: "cycle N: expected X, got Y"} for the first cycle each field differs in (empty
    if the traces agree). ``fields`` are (name, width) from bit 0 of ``out`` up."""
    assert len(reference) == len(other) > 0
    found = {}
    for ref_line, line in zip(reference, other):
        if ref_line == line:
            continue
        cycle, ref_value = ref_line.split()
        ref_value, value, low = int(ref_value, 16), int(line.split()[1], 16), 0
        for name, width in fields:
            mask = (1 << width) - 1
            a, b = (ref_value >> low) & mask, (value >> low) & mask
            if a != b and name not in found:
                found[name] = f"cycle {cycle}: expected {a:#x}, got {b:#x}"
            low += width
    return found


# ---------------------------------------------------------------------------------------------
# The designs: units `u_<name>(clk, s, o)` of `s` random input bits and `o` output bits, and a
# `top` that gives each its slice of `stim` and concatenates their outputs into `out`.

def near(offset, bits):
    """An address of ``bits`` bits from ``s[offset+1 +: bits]``; every other cycle (``s[offset]``
    low) one of the first four, so that reads and writes of one word meet often."""
    return f"(s[{offset}] ? s[{offset + 1} +: {bits}] : {{{bits - 2}'d0, s[{offset + 1} +: 2]}})"


def init(width, depth, salt):
    """Verilog initialising the first 1,024 words of ``mem`` with a hash of the address
    (yosys evaluates it alike; initialising every word costs yosys a minute)."""
    x = f"(i + {salt})"
    return (f"integer i;\n    initial for (i = 0; i < {min(depth, 1024)}; i = i + 1)\n"
            f"        mem[i] = (({x} * 32'h9E3779B1) ^ ({x} * 32'h85EBCA6B >> 13))"
            f" >> {32 - width};")


def ram_units():
    """(name, stim bits, out bits, body) of the memory designs."""
    units = []

    def single_port(name, width, depth, mode):
        abits = (depth - 1).bit_length()
        write = {"rbw": "if (we) mem[a] <= d;\n        q <= mem[a];",
                 "wt": "if (we) begin\n            mem[a] <= d;\n            q <= d;\n"
                       "        end else\n            q <= mem[a];",
                 "nc": "if (we) mem[a] <= d;\n        else q <= mem[a];"}[mode]
        body = f"""
    reg [{width - 1}:0] mem [0:{depth - 1}];
    {init(width, depth, len(units))}
    wire [{abits - 1}:0] a = {near(0, abits)};
    wire we = s[{abits + 1}];
    wire [{width - 1}:0] d = s[{abits + 2} +: {width}];
    reg [{width - 1}:0] q = 0;
    always @(posedge clk) begin
        {write}
    end
    assign o = q;"""
        units.append((name, abits + 2 + width, width, body))

    single_port("sp_rbw_1", 1, 16384, "rbw")
    single_port("sp_wt_2", 2, 8192, "wt")
    single_port("sp_nc_4", 4, 4096, "nc")
    single_port("sp_rbw_9", 9, 2048, "rbw")
    single_port("sp_wt_18", 18, 1024, "wt")

    def simple_dual_port(name, width, depth, lanes=1, edge="posedge", reset=None):
        abits = (depth - 1).bit_length()
        gran = width // lanes
        writes = "\n        ".join(
            f"if (we[{i}]) mem[wa][{i * gran} +: {gran}] <= d[{i * gran} +: {gran}];"
            for i in range(lanes))
        n = 2 * abits + 2 + lanes + width + 4
        sensitivity = f"{edge} clk"
        read = "if (re) q <= mem[ra];"
        if reset == "sync":
            read = "if (rst) q <= 0;\n        else if (re) q <= mem[ra];"
        elif reset == "async":
            sensitivity += " or posedge rst"
            read = "if (rst) q <= 0;\n        else q <= mem[ra];"
        body = f"""
    reg [{width - 1}:0] mem [0:{depth - 1}];
    {init(width, depth, len(units))}
    wire [{abits - 1}:0] ra = {near(0, abits)};
    wire [{abits - 1}:0] wa = {near(abits + 1, abits)};
    wire [{lanes - 1}:0] we = s[{2 * abits + 2} +: {lanes}];
    wire [{width - 1}:0] d = s[{2 * abits + 2 + lanes} +: {width}];
    wire re = s[{n - 4}] | s[{n - 3}];
    wire rst = &s[{n - 3} +: 3];
    reg [{width - 1}:0] q = 0;
    always @({sensitivity}) begin
        {read}
    end
    always @({edge} clk) begin
        {writes}
    end
    assign o = q;"""
        units.append((name, n, width, body))

    simple_dual_port("sdp_9", 8, 2048)
    simple_dual_port("sdp_be_18", 16, 1024, lanes=2)
    simple_dual_port("sdp_be_36", 32, 512, lanes=4)
    simple_dual_port("sdp_srst", 18, 1024, reset="sync")
    simple_dual_port("sdp_arst", 9, 2048, reset="async")
    simple_dual_port("sdp_negedge", 8, 2048, edge="negedge")

    # True dual port: two read-write ports (old data on both), never writing on the same edge.
    units.append(("tdp", 2 * 12 + 2 + 18, 18, f"""
    reg [8:0] mem [0:2047];
    {init(9, 2048, len(units))}
    wire [10:0] aa = {near(0, 11)};
    wire [10:0] ab = {near(12, 11)};
    wire wea = s[24];
    wire web = s[25] & ~wea;
    reg [8:0] qa = 0, qb = 0;
    always @(posedge clk) begin
        if (wea) mem[aa] <= s[26 +: 9];
        qa <= mem[aa];
    end
    always @(posedge clk) begin
        if (web) mem[ab] <= s[35 +: 9];
        qb <= mem[ab];
    end
    assign o = {{qb, qa}};"""))

    # Ports of different widths: 16-bit reads and writes of a memory of bytes.
    units.append(("wide_read", 2 * 12 + 1 + 8, 16, f"""
    reg [7:0] mem [0:4095];
    {init(8, 4096, len(units))}
    wire [10:0] ra = {near(0, 11)};
    wire [11:0] wa = {{1'b0, {near(12, 11)}}};
    wire we = s[24];
    reg [15:0] q = 0;
    always @(posedge clk) begin
        if (we) mem[wa] <= s[25 +: 8];
        q <= {{mem[{{ra, 1'b1}}], mem[{{ra, 1'b0}}]}};
    end
    assign o = q;"""))
    units.append(("wide_write", 2 * 12 + 1 + 16, 8, f"""
    reg [7:0] mem [0:4095];
    {init(8, 4096, len(units))}
    wire [11:0] ra = {{1'b0, {near(0, 11)}}};
    wire [10:0] wa = {near(12, 11)};
    wire we = s[24];
    reg [7:0] q = 0;
    always @(posedge clk) begin
        if (we) begin
            mem[{{wa, 1'b0}}] <= s[25 +: 8];
            mem[{{wa, 1'b1}}] <= s[33 +: 8];
        end
        q <= mem[ra];
    end
    assign o = q;"""))

    # The accelerator's own behavioural RAM (hw/ram.py), in the shapes it instantiates.
    for width, depth, lanes in ((1, 8192, 1), (8, 8192, 1), (8, 4608, 1), (32, 512, 4)):
        abits = (depth - 1).bit_length()
        units.append((f"sqz_ram_{width}x{depth}", 2 * (abits + 1) + 1 + lanes + width, width, f"""
    wire [{abits - 1}:0] ra0 = {near(0, abits)}, wa0 = {near(abits + 1, abits)};
    wire [{abits - 1}:0] ra = ra0 >= {depth} ? ra0 - {depth} : ra0;   // within DEPTH
    wire [{abits - 1}:0] wa = wa0 >= {depth} ? wa0 - {depth} : wa0;
    sqz_ram #(.WIDTH({width}), .DEPTH({depth}), .ABITS({abits}), .LANES({lanes})) ram (
        .clk(clk), .raddr(ra), .ren(s[{2 * abits + 2}]), .rdata(o), .waddr(wa),
        .wen(s[{2 * abits + 3} +: {lanes}]), .wdata(s[{2 * abits + 3 + lanes} +: {width}]));"""))
    return units


class AmaranthMemories(wiring.Component):
    """``lib.memory.Memory`` as the accelerator's tables use it: initial contents, a
    transparent and a non-transparent read port, a write port with byte lanes."""

    STIM = 52

    def __init__(self):
        super().__init__({"s": In(self.STIM), "o": Out(32)})

    def elaborate(self, platform):
        m = Module()
        rng = np.random.default_rng(11)
        m.submodules.memory = memory = Memory(shape=unsigned(16), depth=2048,
                                              init=[int(v) for v in rng.integers(0, 1 << 16,
                                                                                 2048)])
        write = memory.write_port(granularity=8)
        transparent = memory.read_port(transparent_for=(write,))
        old = memory.read_port()
        s = self.s
        m.d.comb += [write.addr.eq(s[0:11]), transparent.addr.eq(s[0:11]),
                     old.addr.eq(s[11:22]), write.en.eq(s[33:35]), write.data.eq(s[35:51]),
                     transparent.en.eq(s[51] | s[34]), old.en.eq(1),
                     self.o.eq(transparent.data | (old.data << 16))]
        with m.If(s[24]):                    # every other cycle the same word on both
            m.d.comb += old.addr.eq(s[0:11])
        return m


def amaranth_unit():
    text = amaranth_verilog.convert(AmaranthMemories(), name="u_amaranth_mem", emit_src=False)
    return text


def multiplier_units():
    """Products of several widths and signs, registered."""
    cases = [("u8x8", 8, 8, False, False), ("s8x8", 8, 8, True, True),
             ("u8xs8", 8, 8, False, True), ("u18x18", 18, 18, False, False),
             ("s18x18", 18, 18, True, True), ("s17xu12", 17, 12, True, False),
             ("s24x24", 24, 24, True, True), ("u30x20", 30, 20, False, False),
             ("s9x4", 9, 4, True, True)]
    lines, stim, out = [], 0, 0
    for name, wa, wb, sa, sb in cases:
        a = f"s[{stim} +: {wa}]"
        b = f"s[{stim + wa} +: {wb}]"
        # A signed operand times an unsigned one: the unsigned one is zero-extended.
        ea = f"$signed({a})" if sa else (f"$signed({{1'b0, {a}}})" if sb else a)
        eb = f"$signed({b})" if sb else (f"$signed({{1'b0, {b}}})" if sa else b)
        lines.append(f"    reg [{wa + wb - 1}:0] {name} = 0;\n"
                     f"    always @(posedge clk) {name} <= {ea} * {eb};")
        stim += wa + wb
        out += wa + wb
    names = ", ".join(name for name, *_ in reversed(cases))
    body = "\n".join(lines) + f"\n    assign o = {{{names}}};"
    fields = [(f"mul.{name}", wa + wb) for name, wa, wb, *_ in cases]
    return ("mul", stim, out, body), fields


def unit_design():
    """(Verilog of `top`, stim bits, out bits, output fields)."""
    units = ram_units()
    mul, mul_fields = multiplier_units()
    units.append(mul)
    modules, ports, fields, stim = [RAM_VERILOG, amaranth_unit()], [], [], 0
    for name, n_in, n_out, body in units:
        modules.append(f"module u_{name}(input clk, input [{n_in - 1}:0] s, "
                       f"output [{n_out - 1}:0] o);{body}\nendmodule\n")
        ports.append((name, n_in, n_out))
    ports.append(("amaranth_mem", AmaranthMemories.STIM, 32))
    out = 0
    instances = []
    for name, n_in, n_out in ports:
        extra = ".rst(1'b0), " if name == "amaranth_mem" else ""
        instances.append(f"    u_{name} {name} (.clk(clk), {extra}.s(stim[{stim} +: {n_in}]), "
                         f".o(out[{out} +: {n_out}]));")
        fields += mul_fields if name == "mul" else [(name, n_out)]
        stim += n_in
        out += n_out
    top = (f"module top(input clk, input [{stim - 1}:0] stim, output [{out - 1}:0] out);\n"
           + "\n".join(instances) + "\nendmodule\n")
    return "\n".join(modules) + "\n" + top, stim, out, fields


def instances(netlist_text, cell):
    """[(instance name, {parameter: value}, {pin: net})] of the ``cell``s of a netlist."""
    found = []
    for match in re.finditer(rf"^\s*{cell}\s+(?:#\((.*?)\)\s*)?(\S+)\s*\((.*?)\);",
                             netlist_text, re.S | re.M):
        params = dict(re.findall(r"\.(\w+)\(([^()]*)\)", match.group(1) or ""))
        found.append((match.group(2), {k: v.replace("32'd", "") for k, v in params.items()},
                      dict(re.findall(r"\.(\w+)\(([^()]*)\)", match.group(3)))))
    return found


#: What tells two configurations of a cell apart (the pins: those yosys ties to constants).
DISTINCT = {"DP16KD": ("DATA_WIDTH_A", "DATA_WIDTH_B", "WRITEMODE_A", "WRITEMODE_B",
                       "REGMODE_A", "REGMODE_B", "RESETMODE", "CLKAMUX", "CLKBMUX",
                       "CSDECODE_A", "CSDECODE_B"),
            "MULT18X18D": ("SIGNEDA", "SIGNEDB", "SOURCEA", "SOURCEB")}


def configurations(netlist_text, cell):
    """Counter of the configurations of a netlist's ``cell``s: parameters (not the
    contents) and how the pins of :data:`DISTINCT` are tied."""
    found = Counter()
    for _, params, pins in instances(netlist_text, cell):
        found[tuple((k, params.get(k, pins.get(k))) for k in DISTINCT[cell])
              + tuple((k, v) for k, v in sorted(params.items())
                      if k.startswith("REG_") or k.endswith("MUX") and k[:3] != "CLK")] += 1
    return found


def is_constant(net):
    return net is None or re.fullmatch(r"\d+'[hb][0-9a-fx]+", net.strip()) is not None


@pytest.fixture(scope="module")
def unit_netlist():
    text, stim, out, fields = unit_design()
    return text, synthesize_netlist(text), stim, out, fields


def test_rtl_and_netlist_agree_on_memories_and_multipliers(unit_netlist):
    rtl, netlist, stim, out, fields = unit_netlist
    library = cell_library()
    check_cells(netlist, library)
    # Every unit was mapped to the cell it is meant to test.
    rams = instances(netlist, "DP16KD")
    assert {p[k] for _, p, _ in rams for k in ("DATA_WIDTH_A", "DATA_WIDTH_B")} \
        == {"1", "2", "4", "9", "18", "36"}
    assert any(p["DATA_WIDTH_A"] != p["DATA_WIDTH_B"] and p["DATA_WIDTH_A"] != "36"
               and not is_constant(pins["CLKB"]) for _, p, pins in rams)   # two widths
    assert {p.get(k) for _, p, _ in rams for k in ("WRITEMODE_A", "WRITEMODE_B")} \
        >= {'"NORMAL"', '"WRITETHROUGH"', '"READBEFOREWRITE"'}
    for mode in ('"SYNC"', '"ASYNC"'):                   # both resets, in use
        assert any(p["RESETMODE"] == mode and not is_constant(pins["RSTB"])
                   for _, p, pins in rams), mode
    assert any(not is_constant(pins["CEB"]) for _, _, pins in rams)       # clock enables
    assert any(not is_constant(pins["ADA0"]) and p["DATA_WIDTH_A"] == "18"
               for _, p, pins in rams)                                    # byte enables
    assert any(p["CLKAMUX"] == '"INV"' for _, p, _ in rams)               # falling edge
    assert any(re.fullmatch(r"320'h0*[1-9a-f][0-9a-f]*", p["INITVAL_00"])
               for _, p, _ in rams)                                       # contents
    signs = {(pins["SIGNEDA"], pins["SIGNEDB"]) for _, _, pins in instances(netlist,
                                                                            "MULT18X18D")}
    assert signs == {("1'h0", "1'h0"), ("1'h0", "1'h1"), ("1'h1", "1'h0"), ("1'h1", "1'h1")}
    reference = trace(verilate(rtl, stim, out))
    synthesised = trace(verilate(netlist + "\n" + library, stim, out))
    assert len(reference) == CYCLES + 1
    assert differences(reference, synthesised, fields) == {}
    # The stimulus exercises the units: every output field changes.
    values = [int(line.split()[1], 16) for line in reference]
    low = 0
    for name, width in fields:
        seen = {(v >> low) & ((1 << width) - 1) for v in values}
        assert len(seen) > 1, f"{name} never changes"
        low += width


#: Deliberate errors in the models, and units of the design that must catch each.
MUTATIONS = [
    # READBEFOREWRITE shows the word being written, as WRITETHROUGH does.
    ([('if (WRITEMODE_A == "WRITETHROUGH")', 'if (WRITEMODE_A != "NORMAL")'),
      ('if (write_b && WRITEMODE_B == "WRITETHROUGH")', 'if (write_b && WRITEMODE_B != "NORMAL")')],
     {"sp_rbw_1", "sp_rbw_9", "tdp"}),
    # 1-bit words in rows without skipping the 9th bits.
    ([("1: offset = {1'b0, addr[3:0]} + {4'd0, addr[3]};", "1: offset = {1'b0, addr[3:0]};")],
     {"sp_rbw_1", "sqz_ram_1x8192"}),
    # The second byte lane of an 18-bit write takes the first lane's enable.
    ([("{{9{ada[1]}}, {9{ada[0]}}}", "{{9{ada[0]}}, {9{ada[0]}}}"),
      ("{{9{adb[1]}}, {9{adb[0]}}}", "{{9{adb[0]}}, {9{adb[0]}}}")],
     {"sdp_be_18", "sp_wt_18", "amaranth_mem"}),
    # SIGNEDA ignored.
    ([("{SIGNEDA && a[17], a}", "{1'b0, a}")], {"mul.s8x8", "mul.s18x18", "mul.s24x24"}),
]


def test_a_wrong_model_fails_the_comparison(unit_netlist):
    """The comparison is sharp: each error of :data:`MUTATIONS` (all built into one
    simulator) makes a unit meant to catch it disagree with the RTL."""
    rtl, netlist, stim, out, fields = unit_netlist
    mutant = cell_library()
    for replacements, _ in MUTATIONS:
        for old, new in replacements:
            assert mutant.count(old) == 1, old
            mutant = mutant.replace(old, new)
    reference = trace(verilate(rtl, stim, out, cycles=5000))
    broken = differences(reference, trace(verilate(netlist + "\n" + mutant, stim, out,
                                                   cycles=5000)), fields)
    for replacements, catchers in MUTATIONS:
        assert catchers & set(broken), f"{replacements[0][1]!r} went unnoticed: {broken}"


# ---------------------------------------------------------------------------------------------
# What yosys does not make: checked against a behavioural description of the same behaviour.

DIRECT_WIRES = """\
module top(input clk, input [138:0] stim, output [35:0] out);
    // one: port A 18-bit words with byte enables, READBEFOREWRITE, chip select 0b010, sync
    // reset; port B 9-bit words, writes with WRITETHROUGH, output register (OCE), chip
    // select 0b101, sync reset. Neither port writes the row the other one uses.
    wire [9:0] aa = {stim[0] ? stim[1 +: 8] : 8'd0, stim[9 +: 2]};
    wire [10:0] ab = {stim[11] ? stim[12 +: 8] : 8'd0, stim[20 +: 3]};
    wire cea = stim[23], wea = stim[24] && aa != ab[10:1];
    wire [1:0] be = stim[25 +: 2];
    wire [17:0] da = stim[27 +: 18];
    wire [2:0] csa = stim[45 +: 3] | 3'b010, csb = stim[48 +: 3] | 3'b101;
    wire ceb = stim[51], oceb = stim[52], rstb = &stim[53 +: 3], rsta = &stim[56 +: 4];
    wire web = stim[60] && ab[10:1] != aa;
    wire [8:0] db = stim[61 +: 9];
    // two: the 36-bit pseudo-dual-port block read 9 bits at a time, asynchronous reset and
    // output register (OCE) on the read port.
    wire [8:0] wa2 = {stim[70] ? stim[71 +: 6] : 6'd0, stim[77 +: 3]};
    wire [10:0] rb2 = {stim[80] ? stim[81 +: 8] : 8'd0, stim[89 +: 3]};
    wire [3:0] be2 = stim[92 +: 4];
    wire wea2 = stim[96] && wa2 != rb2[10:2];
    wire [35:0] d2 = stim[97 +: 36];
    wire ceb2 = stim[133], oceb2 = stim[134], rst2 = &stim[135 +: 3], cea2 = stim[138];
"""

#: What the instances of :func:`direct_instances` do, as behavioural Verilog.
DIRECT_REFERENCE = DIRECT_WIRES + """\
    reg [17:0] mem [0:1023], m2 [0:1023];
    integer i;
    initial for (i = 0; i < 1024; i = i + 1) begin
        mem[i] = i * 18'h2f3d5;
        m2[i] = i * 18'h1d2b7;
    end
    reg [17:0] qa = 0;
    reg [8:0] lb = 0, ob = 0, l2 = 0, o2 = 0;
    always @(posedge clk) begin
        if (rsta)
            qa <= 0;
        else if (cea && csa == 3'b010) begin
            qa <= mem[aa];
            if (wea && be[0]) mem[aa][8:0] <= da[8:0];
            if (wea && be[1]) mem[aa][17:9] <= da[17:9];
        end
        if (rstb) begin
            lb <= 0;
            ob <= 0;
        end else begin
            if (oceb) ob <= lb;
            if (ceb && csb == 3'b101) begin
                if (web) begin
                    lb <= db;
                    if (ab[0]) mem[ab[10:1]][17:9] <= db;
                    else mem[ab[10:1]][8:0] <= db;
                end else
                    lb <= ab[0] ? mem[ab[10:1]][17:9] : mem[ab[10:1]][8:0];
            end
        end
        if (cea2 && wea2) begin
            if (be2[0]) m2[{wa2, 1'b0}][8:0] <= d2[8:0];
            if (be2[1]) m2[{wa2, 1'b0}][17:9] <= d2[17:9];
            if (be2[2]) m2[{wa2, 1'b1}][8:0] <= d2[26:18];
            if (be2[3]) m2[{wa2, 1'b1}][17:9] <= d2[35:27];
        end
    end
    always @(posedge clk or posedge rst2)
        if (rst2) begin
            l2 <= 0;
            o2 <= 0;
        end else begin
            if (oceb2) o2 <= l2;
            if (ceb2) l2 <= rb2[0] ? m2[rb2[10:1]][17:9] : m2[rb2[10:1]][8:0];
        end
    assign out = {o2, ob, qa};
endmodule
"""


def initvals(multiplier):
    """INITVAL_00..3F of rows ``row * multiplier`` (18 bits)."""
    values = []
    for block in range(64):
        slots = 0
        for slot in range(16):
            slots |= (((block * 16 + slot) * multiplier) & 0x3FFFF) << (20 * slot)
        values.append(f".INITVAL_{block:02X}(320'h{slots:080x})")
    return values


def dp16kd(name, params, pins):
    """A DP16KD instance: ``pins`` maps a pin to a net, a bus (``DIA``...) to a vector."""
    connections = []
    for pin, net in pins.items():
        if pin[:3] in ("DIA", "DIB", "DOA", "DOB", "ADA", "ADB") and len(pin) == 3:
            width = 14 if pin.startswith("AD") else 18
            connections += [f".{pin}{i}({net}[{i}])" for i in range(width)]
        else:
            connections.append(f".{pin}({net})")
    return ("    DP16KD #(\n        " + ",\n        ".join(params) + f"\n    ) {name} (\n        "
            + ",\n        ".join(connections) + ");\n")


def direct_instances():
    """The behaviour of :data:`DIRECT_REFERENCE` from two DP16KD instances."""
    one = dp16kd("one", ['.DATA_WIDTH_A(18)', '.DATA_WIDTH_B(9)', '.REGMODE_B("OUTREG")',
                         '.WRITEMODE_A("READBEFOREWRITE")', '.WRITEMODE_B("WRITETHROUGH")',
                         '.CSDECODE_A("0b010")', '.CSDECODE_B("0b101")', *initvals(0x2F3D5)],
                 {"CLKA": "clk", "CEA": "cea", "OCEA": "1'b1", "WEA": "wea", "RSTA": "rsta",
                  "CSA2": "csa[2]", "CSA1": "csa[1]", "CSA0": "csa[0]", "ADA": "ada",
                  "DIA": "da", "DOA": "doa", "CLKB": "clk", "CEB": "ceb", "OCEB": "oceb",
                  "WEB": "web", "RSTB": "rstb", "CSB2": "csb[2]", "CSB1": "csb[1]",
                  "CSB0": "csb[0]", "ADB": "adb", "DIB": "dib", "DOB": "dob"})
    two = dp16kd("two", ['.DATA_WIDTH_A(36)', '.DATA_WIDTH_B(9)', '.REGMODE_B("OUTREG")',
                         '.RESETMODE("ASYNC")', *initvals(0x1D2B7)],
                 {"CLKA": "clk", "CEA": "cea2", "OCEA": "1'b0", "WEA": "wea2", "RSTA": "1'b0",
                  "ADA": "ada2", "DIA": "dia2", "DIB": "dib2", "DOB": "dob2",
                  "CLKB": "clk", "CEB": "ceb2", "OCEB": "oceb2", "WEB": "1'b0",
                  "RSTB": "rst2", "ADB": "adb2"})
    return DIRECT_WIRES + f"""\
    wire [13:0] ada = {{aa, 2'b00, be}}, adb = {{ab, 3'b000}};
    wire [13:0] ada2 = {{wa2, 1'b0, be2}}, adb2 = {{rb2, 3'b000}};
    wire [17:0] dib = {{9'd0, db}}, dia2 = d2[17:0], dib2 = d2[35:18];
    wire [17:0] doa, dob, dob2;
{one}{two}    assign out = {{dob2[8:0], dob[8:0], doa}};
endmodule
"""


def test_what_yosys_does_not_make_against_a_behavioural_description():
    """Output registers, chip selects, writes on port B, resets on port A, the 36-bit block
    read in narrow words: instances against behavioural Verilog of the same behaviour."""
    fields = [("one.A", 18), ("one.B", 9), ("two.B", 9)]
    reference = trace(verilate(DIRECT_REFERENCE, 139, 36))
    instances = trace(verilate(direct_instances() + "\n" + cell_library(), 139, 36))
    assert differences(reference, instances, fields) == {}
    for low, (name, width) in zip((0, 18, 27), fields):
        assert len({int(line.split()[1], 16) >> low & ((1 << width) - 1)
                    for line in reference}) > 100, name


COLLISION = """\
module top(input clk, input [31:0] stim, output [17:0] out);
    // Port A writes the word port B reads, on every edge; now and then port B writes it too.
    wire [10:0] a = {{8'd0, stim[0 +: 3]}};
    wire [8:0] da = stim[3 +: 9], db = stim[12 +: 9];
    wire web = &stim[21 +: 3];
{body}
endmodule
"""


def test_undefined_collisions_are_not_given_a_value():
    """A read of a word the other port writes on the same edge gives neither the old nor the
    new word, and two writes of one word are reported: a netlist relying on either fails."""
    old_data = COLLISION.format(body="""\
    reg [8:0] mem [0:2047];
    reg [8:0] qb = 0;
    integer i;
    initial for (i = 0; i < 2048; i = i + 1) mem[i] = 0;
    always @(posedge clk) begin
        mem[a] <= da;
        qb <= mem[a];
    end
    assign out = {9'd0, qb};""")
    instance = COLLISION.format(body="""\
    wire [13:0] ad = {a, 3'b000};
    wire [17:0] dia = {9'd0, da}, dib = {9'd0, db}, doa, dob;
""" + dp16kd("ram", ['.DATA_WIDTH_A(9)', '.DATA_WIDTH_B(9)', '.WRITEMODE_B("READBEFOREWRITE")'],
             {"CLKA": "clk", "CEA": "1'b1", "OCEA": "1'b1", "WEA": "1'b1", "RSTA": "1'b0",
              "ADA": "ad", "DIA": "dia", "DOA": "doa", "CLKB": "clk", "CEB": "1'b1",
              "OCEB": "1'b1", "WEB": "web", "RSTB": "1'b0", "ADB": "ad", "DIB": "dib",
              "DOB": "dob"}) + "    assign out = {doa[8:0], dob[8:0]};")
    reference = trace(verilate(old_data, 32, 18, cycles=2000))
    code, stdout, stderr = run(verilate(instance + cell_library(), 32, 18, cycles=2000))
    assert code == 0, stderr
    lines = [line for line in stdout.splitlines() if line[:1].isdigit()]
    differing = sum(int(x.split()[1], 16) & 0x1FF != int(y.split()[1], 16) & 0x1FF
                    for x, y in zip(reference[2:], lines[2:]))
    assert differing > 0.9 * (len(lines) - 2)
    assert "both ports wrote bits" in stdout


@pytest.mark.parametrize("cell, parameter, value", [
    ("DP16KD", "REGMODE_B", '"BYPASS"'),
    ("DP16KD", "DATA_WIDTH_A", "3"),
    ("DP16KD", "DIA3MUX", '"INV"'),
    ("MULT18X18D", "REG_OUTPUT_CLK", '"CLK0"'),
])
def test_unmodelled_parameters_stop_the_simulation(cell, parameter, value):
    design = (f"module top(input clk, input [7:0] stim, output [7:0] out);\n"
              f"    assign out = stim;\n    {cell} #(.{parameter}({value})) probe ();\nendmodule\n")
    code, out, err = run(verilate(design + cell_library(), 8, 8, cycles=10))
    assert code != 0
    message = out + err
    assert f"{cell} " in message and parameter in message and value.strip('"') in message
    assert "is not modelled" in message


def test_the_cell_library_and_the_error_messages():
    library = cell_library()
    modules = re.findall(r"^\s*module\s+\\?([\w$]+)", library, re.M)
    assert len(modules) == len(set(modules))
    assert {"DP16KD", "MULT18X18D", "LUT4", "TRELLIS_FF", "CCU2C", "TRELLIS_DPR16X4",
            "PFUMX", "L6MUX21"} <= set(modules)
    check_cells("  LUT4 #(.INIT(16'h8000)) \\x  (.A(a), .Z(z));\n", library)
    with pytest.raises(SimulationError, match="FOO.*blackbox"):
        check_cells("  FOO \\x  (.A(1'h0));\n", "(* blackbox *)\nmodule FOO(input A);\nendmodule\n")
    with pytest.raises(SimulationError, match=r"synth_ecp5 failed.*\n.*syntax error"):
        synthesize_netlist("module top(input a; endmodule\n")


# ---------------------------------------------------------------------------------------------
# The accelerator.

@pytest.fixture(scope="module")
def accelerator_netlist():
    return synthesize_netlist(core_rtlil(BOARD, LANES), language="rtlil")


def test_the_unit_designs_cover_the_accelerators_cells(accelerator_netlist, unit_netlist):
    netlist = unit_netlist[1]
    for cell in ("DP16KD", "MULT18X18D"):
        used, tested = configurations(accelerator_netlist, cell), configurations(netlist, cell)
        assert used, f"the accelerator has no {cell}"
        assert set(used) <= set(tested), f"{cell} configurations not tested: " \
                                         f"{set(used) - set(tested)}"


def test_reduced_network_on_the_synthesised_accelerator(tiny):  # noqa: F811
    blob, images = tiny
    executable = post_synthesis_board(BOARD, LANES)
    with BoardServer.launch(executable, timeout=60) as board:
        # The netlist simulates at ~10,000 cycles/s and the board flushes its output every
        # 16,384 cycles: a long reply comes in pieces seconds apart (frame_gap).
        with Device.open(board.url, timeout=60, frame_gap=30) as device:
            assert device.info().lanes == LANES
            assert device.load_model(blob) is True
            for image in images:
                result = device.infer(image)
                np.testing.assert_array_equal(result.logits, run_integer(blob, image).logits)
                assert result.cycles > 0
        # No block RAM saw both of its ports write one word at once (undefined on the chip).
        assert "both ports wrote" not in board.log_text()
