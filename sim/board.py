"""The simulated board as a Python object: a byte pipe to the board executable.

:class:`SimBoard` runs an executable from :func:`squeezefpga.sim.build.build_board` in its stdio
mode and exchanges bytes with it. Writing drains the board's output at the same time, so
neither side can block the other on a full pipe; every read has a timeout; the process is killed
when the board is closed, garbage-collected, or the interpreter exits.
"""

import os
import select
import subprocess
import tempfile
import time
import weakref

from squeezefpga.errors import SimulationError

__all__ = ["BoardTimeoutError", "SimBoard"]

_CHUNK = 1 << 16


class BoardTimeoutError(SimulationError, TimeoutError):
    """The simulated board did not send the expected bytes in time."""


def _stop(process, grace):
    """Let ``process`` finish within ``grace`` seconds after its stdin closed, then kill it."""
    if process.poll() is None:
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class SimBoard:
    """A running simulated board (the harness in stdio mode).

    Use :meth:`start` to create one, preferably as a context manager::

        with SimBoard.start(build_board(verilog)) as board:
            board.write(b"\\x01")
            assert board.read(1) == b"\\x02"
    """

    def __init__(self, process, stderr_file):
        self._process = process
        self._stderr = stderr_file
        self._in = process.stdin.fileno()
        self._out = process.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        self._buffer = bytearray()
        self._eof = False
        self._finalizer = weakref.finalize(self, _stop, process, 0)

    @classmethod
    def start(cls, executable, args=()):
        """Start the board executable in stdio mode.

        Parameters
        ----------
        executable : str or os.PathLike
            A board built by :func:`~squeezefpga.sim.build.build_board`.
        args : sequence of str
            Extra harness arguments, e.g. ``["--stats"]``.

        Returns
        -------
        SimBoard

        Raises
        ------
        SimulationError
            If the executable cannot be started.
        """
        stderr_file = tempfile.TemporaryFile()
        try:
            process = subprocess.Popen([os.fspath(executable), *args], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=stderr_file)
        except OSError as exc:
            stderr_file.close()
            raise SimulationError(f"cannot start the simulated board {executable}: "
                                  f"{exc.strerror}") from exc
        return cls(process, stderr_file)

    @property
    def pid(self):
        """Process id of the board executable."""
        return self._process.pid

    @property
    def returncode(self):
        """Exit status of the board executable, or None while it runs."""
        return self._process.poll()

    def stderr_text(self):
        """Return what the board printed on stderr so far."""
        if self._stderr.closed:
            return ""
        fd = self._stderr.fileno()            # shared with the board: read without seeking
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def _exited(self, what):
        try:
            status = self._process.wait(5)
        except subprocess.TimeoutExpired:           # closed its output but still runs
            self._process.kill()
            status = self._process.wait()
        stderr = "\n".join(self.stderr_text().strip().splitlines()[-40:])
        return SimulationError(f"the simulated board exited with status {status} {what}"
                               + (f"; its stderr:\n{stderr}" if stderr else ""))

    def _check_open(self):
        if self._finalizer.alive is False:
            raise SimulationError("the simulated board is closed")

    def _drain(self):
        """Move the bytes the board has sent into the buffer; note end of file."""
        while not self._eof:
            try:
                chunk = os.read(self._out, _CHUNK)
            except BlockingIOError:
                return
            if not chunk:
                self._eof = True
                return
            self._buffer += chunk

    def write(self, data, timeout=None):
        """Send bytes to the board's host_in stream.

        Parameters
        ----------
        data : bytes-like
            Bytes to send.
        timeout : float, optional
            Seconds to wait for the board to take them; no limit by default (the board takes
            input at least as fast as the design accepts it).

        Raises
        ------
        BoardTimeoutError
            If ``timeout`` passed before all bytes were taken.
        SimulationError
            If the board exited.
        """
        self._check_open()
        view = memoryview(bytes(data))
        deadline = None if timeout is None else time.monotonic() + timeout
        while view:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise BoardTimeoutError(f"the simulated board took only {len(data) - len(view)} "
                                        f"of {len(data)} bytes in {timeout} s")
            readable, writable, _ = select.select([] if self._eof else [self._out], [self._in],
                                                  [], remaining)
            if readable:
                self._drain()
            if writable:
                try:
                    view = view[os.write(self._in, view[:_CHUNK]):]
                except BlockingIOError:
                    pass
                except BrokenPipeError:
                    raise self._exited(f"after taking {len(data) - len(view)} of {len(data)} "
                                       "bytes") from None

    def read(self, n, timeout=10.0):
        """Receive exactly ``n`` bytes from the board's host_out stream.

        Parameters
        ----------
        n : int
            Number of bytes.
        timeout : float
            Seconds to wait for all of them.

        Returns
        -------
        bytes

        Raises
        ------
        BoardTimeoutError
            If fewer than ``n`` bytes arrived within ``timeout``; the message says how many did.
        SimulationError
            If the board exited first.
        """
        self._check_open()
        deadline = time.monotonic() + timeout
        self._drain()
        while len(self._buffer) < n:
            if self._eof:
                raise self._exited(f"after sending {len(self._buffer)} of {n} expected bytes")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got = bytes(self._buffer[:16])
                raise BoardTimeoutError(
                    f"timed out after {timeout} s waiting for {n} bytes from the simulated "
                    f"board: {len(self._buffer)} arrived"
                    + (f" (starting {got.hex(' ')})" if got else ""))
            if select.select([self._out], [], [], remaining)[0]:
                self._drain()
        result = bytes(self._buffer[:n])
        del self._buffer[:n]
        return result

    def close(self, grace=1.0):
        """End the board: close its input, give it ``grace`` seconds to finish, then kill it.

        Safe to call more than once.
        """
        if not self._finalizer.alive:
            return
        self._finalizer.detach()
        try:
            self._process.stdin.close()
        except OSError:
            pass
        try:
            _stop(self._process, grace)
        finally:
            if self._process.poll() is None:       # interrupted while waiting
                self._process.kill()
                self._process.wait()
            self._process.stdout.close()
            self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(grace=1.0 if exc_type is None else 0)
