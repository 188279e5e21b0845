"""The simulated board served on a TCP port: the framed accelerator top in Verilator.

The host driver reaches it as ``socket://HOST:PORT``, exactly as it reaches a real board on a
serial port (docs/PROTOCOL.md). The board keeps its state between clients.
"""

import os
import re
import subprocess
import tempfile
import time

from squeezefpga.errors import SimulationError
from squeezefpga.hw.config import AcceleratorConfig

from .accelerator_build import accelerator_board

__all__ = ["BoardServer"]

_LISTENING = re.compile(rb"listening on (\S+):(\d+)")


class BoardServer:
    """A running ``board --listen`` process; a context manager that always stops it.

    Use :meth:`start`; :attr:`url` is the pyserial URL of the board.
    """

    def __init__(self, process, log, host, port):
        self.process, self._log, self.host, self.port = process, log, host, port

    @property
    def url(self):
        return f"socket://{self.host}:{self.port}"

    @classmethod
    def start(cls, config=None, port=0, host="127.0.0.1", progress=None, timeout=30.0):
        """Build (cached) and start the simulated board of ``config`` on ``host:port``
        (0 picks a free port)."""
        config = config if config is not None else AcceleratorConfig()
        executable = accelerator_board(config, progress, framed=True)
        log = tempfile.TemporaryFile()
        process = subprocess.Popen([os.fspath(executable), "--listen", str(port), "--host", host],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = os.pread(log.fileno(), 1 << 16, 0)
            found = _LISTENING.search(text)
            if found:
                return cls(process, log, found.group(1).decode(), int(found.group(2)))
            if process.poll() is not None:
                log.close()
                message = text.decode(errors="replace").strip()
                raise SimulationError(f"the simulated board could not start on {host}:{port}: "
                                      f"{message or f'exit status {process.returncode}'}")
            time.sleep(0.02)
        process.kill()
        process.wait()
        log.close()
        raise SimulationError(f"the simulated board did not start listening within {timeout} s")

    def log_text(self):
        return os.pread(self._log.fileno(), 1 << 20, 0).decode(errors="replace")

    def wait(self):
        """Wait for the board to end (it ends on SIGINT/SIGTERM)."""
        return self.process.wait()

    def close(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log.closed:
            self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
