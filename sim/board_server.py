"""The simulated board served on a TCP port: a Verilated top running ``harness.cpp``.

The host driver reaches the accelerator's board as ``socket://HOST:PORT``, exactly as it
reaches a real board on a serial port (docs/PROTOCOL.md). The board keeps its state between
clients, refuses a second client with a BUSY frame, drops idle clients, and stops when the
process that started it dies.
"""

import os
import re
import subprocess
import tempfile
import time

from squeezefpga.config import AcceleratorConfig
from squeezefpga.errors import SimulationError
from squeezefpga.progress import Stage, emit

from .accelerator_build import accelerator_board

__all__ = ["BoardServer", "IDLE_TIMEOUT"]

_LISTENING = re.compile(rb"listening on (\S+):(\d+)")
#: Seconds of silence after which the board drops a client (``--idle-timeout``).
IDLE_TIMEOUT = 120.0


class BoardServer:
    """A running ``board --listen`` process; a context manager that always stops it.

    Use :meth:`start` for the accelerator of a configuration, :meth:`launch` for any board
    executable. :attr:`url` is the pyserial URL of the board.
    """

    def __init__(self, process, log, host, port):
        self.process, self._log, self.host, self.port = process, log, host, port

    @property
    def url(self):
        return f"socket://{self.host}:{self.port}"

    @property
    def pid(self):
        return self.process.pid

    @classmethod
    def start(cls, config=None, port=0, host="127.0.0.1", progress=None, timeout=30.0,
              idle_timeout=IDLE_TIMEOUT, cycles_per_second=None, faults=None):
        """Build (cached) and start the simulated board of ``config`` (the framed accelerator
        top; with SDRAM, also the simulated chip) on ``host:port`` (0 picks a free port).
        ``faults`` plants faults in the simulated SDRAM chip: {"stuck_bit": N,
        "stuck_value": V} and/or {"dead_line": L}."""
        config = config if config is not None else AcceleratorConfig()
        executable = accelerator_board(config, progress, framed=True)
        emit(progress, Stage.START, f"{config.lanes} lanes")
        plusargs = [f"+sdram_{name}={value}" for name, value in (faults or {}).items()]
        return cls.launch(executable, port, host, timeout, idle_timeout, cycles_per_second,
                          args=plusargs)

    @classmethod
    def launch(cls, executable, port=0, host="127.0.0.1", timeout=30.0,
               idle_timeout=IDLE_TIMEOUT, cycles_per_second=None, args=()):
        """Start a board executable built by :func:`squeezefpga.sim.build.build_board`.

        Waits (``timeout`` seconds at most) until it listens.

        Raises
        ------
        SimulationError
            If it cannot start or listen; the message carries what it printed.
        """
        command = [os.fspath(executable), "--listen", str(port), "--host", host,
                   "--idle-timeout", f"{idle_timeout:g}", *args]
        if cycles_per_second:
            command += ["--cycles-per-second", f"{cycles_per_second:g}"]
        log = tempfile.TemporaryFile()
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=log)
        except OSError as exc:
            log.close()
            raise SimulationError(f"cannot start the simulated board {executable}: "
                                  f"{exc.strerror}") from None
        try:
            return cls._until_listening(process, log, host, port, timeout)
        except BaseException:               # also Ctrl-C while it starts: never an orphan
            if process.poll() is None:
                process.kill()
                process.wait()
            if not log.closed:
                log.close()
            raise

    @classmethod
    def _until_listening(cls, process, log, host, port, timeout):
        deadline = time.monotonic() + timeout
        while True:
            text = os.pread(log.fileno(), 1 << 16, 0)
            found = _LISTENING.search(text)
            if found:
                return cls(process, log, found.group(1).decode(), int(found.group(2)))
            if process.poll() is not None:
                message = text.decode(errors="replace").strip()
                raise SimulationError(f"the simulated board could not start on {host}:{port}: "
                                      f"{message or f'exit status {process.returncode}'}")
            if time.monotonic() >= deadline:
                raise SimulationError(f"the simulated board did not start listening within "
                                      f"{timeout} s")
            time.sleep(0.02)

    def log_text(self):
        """What the board printed on stderr so far."""
        if self._log.closed:
            return ""
        return os.pread(self._log.fileno(), 1 << 20, 0).decode(errors="replace")

    def wait(self, timeout=None):
        """Wait for the board to end (it ends on SIGINT/SIGTERM); return its exit status."""
        return self.process.wait(timeout)

    def close(self):
        """Stop the board (SIGTERM, then SIGKILL after 5 s). Safe to call more than once."""
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        finally:                            # also when interrupted while waiting
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if not self._log.closed:
                self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
