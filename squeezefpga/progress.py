"""Progress of long work as structured events.

Every layer reports its long steps (compiling, Verilog generation, the Verilator build, model
load, runs, FPGA build stages) by calling a ``progress`` callable with :class:`Event` objects;
the application decides how to show them (progress bars on a terminal, nothing in ``--json``
output). Nothing here prints.
"""

import enum
from dataclasses import dataclass

__all__ = ["Stage", "Event", "emit"]


class Stage(enum.Enum):
    """The long steps a user may wait for; the value is how a person reads it."""
    COMPILE = "compiling the model"
    VERILOG = "generating Verilog"
    VERILATOR = "building the simulator"
    START = "starting the simulated board"
    LOAD = "loading the model"
    RUN = "running"
    SYNTH = "synthesis (yosys)"
    PLACE_ROUTE = "place and route (nextpnr)"
    PACK = "bitstream (ecppack)"
    PROGRAM = "programming the board"
    SDRAM = "testing the SDRAM"
    SELFTEST = "self-test"


@dataclass(frozen=True)
class Event:
    """One report of progress.

    Members
    -------
    stage : Stage
    message : str
        What is happening, e.g. the layer being loaded; may be empty.
    done, total : int or None
        Units of work done and expected (``total`` None if unknown); both None for a message
        that only says the stage started or what it is doing.
    unit : str
        What ``done`` counts ("bytes", "cycles", "images", "steps").
    """
    stage: Stage
    message: str = ""
    done: int = None
    total: int = None
    unit: str = ""

    @property
    def finished(self):
        """The last event of a counted stage."""
        return self.total is not None and self.done is not None and self.done >= self.total


def emit(progress, stage, message="", done=None, total=None, unit=""):
    """Send an :class:`Event` to ``progress`` if there is one."""
    if progress is not None:
        progress(Event(stage, message, done, total, unit))
