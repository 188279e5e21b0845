"""Showing progress events (:mod:`squeezefpga.progress`) to a person.

On a terminal (and never with ``--json``), counted work (calibration, model load, a run's
steps, build stages) is a tqdm bar, and a stage that cannot count (Verilog generation, the
Verilator build, synthesis) is a bar that shows the time it has taken so far. Otherwise each
stage prints one line on stderr. Nothing ever goes to stdout.
"""

import os
import sys
import threading

from tqdm import tqdm

__all__ = ["TerminalProgress"]


def _is_terminal(stream):
    """A terminal with a size (a pseudo-terminal of size 0 cannot show a bar)."""
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):
        return False


class TerminalProgress:
    """A ``progress`` callable that shows :class:`~squeezefpga.progress.Event` objects.

    Parameters
    ----------
    bars : bool or None
        Draw progress bars; by default only if ``stream`` is a terminal.
    stream : file
        Where everything goes (stderr).
    prefix : str
        Put before every line.

    Members
    -------
    on_stage : callable or None
        Called with the :class:`~squeezefpga.progress.Stage` of every event whose stage
        differs from the previous one (the demo numbers its steps with it).
    """

    TICK = 0.5          # seconds between redraws of a bar that cannot count

    def __init__(self, bars=None, stream=None, prefix="  "):
        self.stream = stream if stream is not None else sys.stderr
        self.bars = _is_terminal(self.stream) if bars is None else bars
        self.prefix = prefix
        self.on_stage = None
        self._stage = None
        self._bar = None
        self._counting = False
        self._lock = threading.Lock()
        self._stop = None
        self._printed = None

    def __call__(self, event):
        with self._lock:
            if event.stage != self._stage:
                self._close()
                self._stage = event.stage
                if self.on_stage is not None:
                    self.on_stage(event.stage)
            if not self.bars:
                # One line per message: a tool's heartbeat repeats its message every second.
                text = self._text(event)
                if event.done is None and text != self._printed:
                    self._printed = text
                    print(f"{self.prefix}{text} ...", file=self.stream, flush=True)
                return
            counting = event.done is not None
            if self._bar is None or counting != self._counting:
                self._close()
                self._open(event, counting)
            if counting:
                if event.total is not None and self._bar.total != event.total:
                    self._bar.total = event.total
                self._bar.n = event.done
            self._bar.set_postfix_str(event.message, refresh=False)
            self._bar.refresh()
            if event.finished:
                self._close()

    @staticmethod
    def _text(event):
        return f"{event.stage.value}: {event.message}" if event.message else event.stage.value

    def _open(self, event, counting):
        self._counting = counting
        if counting:
            self._bar = tqdm(total=event.total, desc=f"{self.prefix}{event.stage.value}",
                             unit=event.unit or "it", unit_scale=event.unit == "bytes",
                             file=self.stream, leave=True, dynamic_ncols=True)
            return
        # No count: a bar of elapsed time, redrawn by a ticker until the stage ends.
        self._bar = tqdm(total=None, desc=f"{self.prefix}{event.stage.value}",
                         bar_format="{desc}: {elapsed}{postfix}", file=self.stream,
                         leave=True, dynamic_ncols=True)
        self._stop = threading.Event()
        threading.Thread(target=self._tick, args=(self._bar, self._stop), daemon=True).start()

    def _tick(self, bar, stop):
        while not stop.wait(self.TICK):
            with self._lock:
                if bar is self._bar:
                    bar.refresh()

    def _close(self):
        if self._stop is not None:
            self._stop.set()
            self._stop = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self):
        """End a bar left open (a stage that stopped early)."""
        with self._lock:
            self._close()
