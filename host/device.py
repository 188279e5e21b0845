"""The driver of an accelerator board, real (UART) or simulated (TCP), over the framed link.

:class:`Device` sends each host-port command (:mod:`squeezefpga.protocol`) in one request
frame of :mod:`squeezefpga.host.link` and checks the reply; lost and corrupted frames are
retried without ever starting a run twice. docs/PROTOCOL.md describes the protocol and the
rules followed here. The device owns inference: it loads a decoded
:class:`~squeezefpga.golden.blob.Model` and runs it on images.

Example::

    with Device.open("socket://127.0.0.1:5555") as device:
        device.load_model(Model.read("model.sqzf"))
        result = device.infer(image)
"""

import random
import time
from dataclasses import dataclass, field

import numpy as np
import serial

from squeezefpga import protocol as cmd
from squeezefpga.blob_format import OP_GLOBAL_SUM
from squeezefpga.config import AcceleratorConfig, ModelFitError
from squeezefpga.errors import SqueezeFPGAError
from squeezefpga.golden.blob import Model, blob_crc, weight_sections
from squeezefpga.golden.integer_model import input_bytes
from squeezefpga.golden.tiled_program import Compute, encode_tiled, tiled_for
from squeezefpga.progress import Stage, emit
from squeezefpga.sdram import PATTERN_PHASES, WORDS, PatternResult, pattern_items
from squeezefpga.protocol import (DATA_CHUNK, LINK_BAD_CRC, LINK_BAD_VERSION, LINK_BUSY,
                                  LINK_OK, LINK_REPLY_OVERFLOW, LINK_STATUS_NAMES, LINK_TOO_LONG,
                                  LINK_VERSION, MAX_PAYLOAD)

from .link import RESYNC, ReplyParser, encode_request

__all__ = ["Device", "DeviceInfo", "Counters", "InferenceResult", "DeviceError",
           "DeviceBusyError", "DeviceStatusError", "LinkError", "DeviceConnectionError", "DeviceTimeout",
           "ProtocolVersionError", "RunUncertainError", "RUN_TIMEOUT", "check_url"]

RUN_TIMEOUT = 600.0         # seconds a run may take by default (a minute in simulation)
_SLICE = 0.05               # seconds per blocking read: the granularity of every deadline


@dataclass(frozen=True)
class DeviceInfo:
    """A device's INFO reply (docs/HOST_PORT.md)."""
    port_version: int
    lanes: int
    activation_bytes: int
    weight_bytes: int
    max_layers: int
    max_taps: int
    max_channels: int
    sdram_bytes: int
    build_id: int
    model_loaded: int
    model_crc: int

    @property
    def config(self):
        """The :class:`AcceleratorConfig` the device was built with, as far as a model's fit
        depends on it."""
        return AcceleratorConfig(lanes=self.lanes, activation_bytes=self.activation_bytes,
                                 weight_bytes=self.weight_bytes, max_layers=self.max_layers,
                                 max_taps=self.max_taps, max_channels=self.max_channels)


@dataclass(frozen=True)
class RunStatus:
    """A device's STATUS reply: whether it runs, the step it is on (or ran last) and the end
    step of the run, the run's cycles so far (low 32 bits), and whether a verified model is
    loaded."""
    running: bool
    error: bool
    model_loaded: bool
    step: int
    last: int
    cycles: int


@dataclass(frozen=True)
class Counters:
    """Performance counters of the last run: total cycles, lane-cycles spent on grid
    positions, weights issued to the MAC stage, and for every program step (a tiled
    program's operation) its cycles, the cycles it waited for transfers and the SDRAM bytes
    its transfer moved."""
    cycles: int
    busy_lane_cycles: int
    mac_issues: int
    layer_cycles: tuple
    layer_stalls: tuple = ()
    layer_bytes: tuple = ()


@dataclass
class InferenceResult:
    """What one image produced on the accelerator (:meth:`Device.infer`).

    Members
    -------
    logits : int32 array of class scores.
    cycles : total cycles of the run (sum over steps when stepped one by one).
    layer_cycles : list of (step name, cycles).
    busy_lane_cycles, mac_issues : counters of the run (summed likewise).
    tensors : every step's output tensor, read back after that step (``check_all`` only); of
        a tiled program, every computation's, as ``"index:name"``.
    layer_stalls, layer_bytes : list of (step name, cycles computations waited for transfers)
        and (step name, SDRAM bytes moved): a tiled program's.
    """
    logits: np.ndarray
    cycles: int
    layer_cycles: list
    busy_lane_cycles: int
    mac_issues: int
    tensors: dict = field(default_factory=dict)
    layer_stalls: list = field(default_factory=list)
    layer_bytes: list = field(default_factory=list)

    @property
    def sdram_stall_cycles(self):
        """Cycles computations waited for SDRAM transfers (a tiled program's)."""
        return sum(c for _, c in self.layer_stalls)

    @property
    def sdram_bytes(self):
        """Bytes the transfers moved between SDRAM and the buffers."""
        return sum(b for _, b in self.layer_bytes)


class DeviceError(SqueezeFPGAError):
    """The accelerator answered a command with an error status."""


class DeviceStatusError(DeviceError):
    """The host port answered a command with an error status (``status``, one of
    ``protocol.STATUS_*``)."""

    def __init__(self, what, status, attempts=1):
        name = cmd.STATUS_NAMES.get(status, f"unknown status 0x{status:02x}")
        super().__init__(f"{what}: the accelerator answered {name}")
        self.status = status
        self.attempts = attempts


class LinkError(DeviceError):
    """The link to the device failed: replies kept arriving corrupted, or made no sense."""


class DeviceConnectionError(LinkError):
    """The device cannot be opened, or the connection to it was lost."""


class DeviceTimeout(LinkError, TimeoutError):
    """The device did not answer in time."""


class DeviceBusyError(DeviceError):
    """The device serves another client (a simulated board serves one at a time)."""


class ProtocolVersionError(DeviceError):
    """The device speaks another link or host-port version than this driver."""


class RunUncertainError(LinkError):
    """The reply to RUN was lost and the accelerator is not running: the run either never
    started or has already ended, so the input must be written again before another RUN."""


class _ReplyLost(Exception):
    """Internal: a command that must not be re-sent blindly got no valid reply."""


#: pyserial URL schemes a device can be reached by (a path is a serial port).
URL_SCHEMES = ("socket", "rfc2217", "loop")


def check_url(url):
    """Raise :class:`DeviceConnectionError` with a one-line reason if ``url`` is not a device
    address this driver can open: a serial port path, or ``socket://HOST:PORT`` (and the other
    :data:`URL_SCHEMES`) with a port in 1..65535."""
    if not url:
        raise DeviceConnectionError("no device given: a serial port (/dev/ttyUSB0) or "
                                    "socket://HOST:PORT")
    if "://" not in url:
        return
    scheme, rest = url.split("://", 1)
    if scheme not in URL_SCHEMES:
        raise DeviceConnectionError(f"cannot open {url}: unknown scheme {scheme!r} (use a serial "
                                    "port path or socket://HOST:PORT)")
    if scheme == "loop":
        return
    where = rest.split("?", 1)[0].split("/", 1)[0]
    host, colon, port = where.rpartition(":")
    if not colon or not host.strip("[]"):
        raise DeviceConnectionError(f"cannot open {url}: it needs a host and a port, like "
                                    f"{scheme}://127.0.0.1:5555")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise DeviceConnectionError(f"cannot open {url}: port {port!r} is not a number in "
                                    "1..65535")


class Device:
    """A connection to one accelerator.

    Parameters
    ----------
    port : serial.Serial-like
        An open port: ``read(n)`` honouring its ``timeout`` attribute, ``write``,
        ``reset_input_buffer``, ``close``.
    url : str
        Where the port leads (used in messages).
    timeout : float
        Seconds to wait for the reply to one request frame.
    retries : int
        Attempts per command (1 = no retry).
    frame_gap : float
        Seconds without a byte after which a half-received reply frame is given up, and after
        which a corrupted frame is taken for the lost reply (the request is sent again).

    Attributes
    ----------
    model : Model or None
        The model given to the last :meth:`load_model`.
    tiled : TiledProgram or None
        Its tiled program, on a device with SDRAM (which runs every model tiled).
    chunk : int
        Data bytes per WRITE_*/READ_* command (at most :data:`~squeezefpga.host.link.DATA_CHUNK`).
    resent : int
        Request frames sent again so far (after corrupted or lost frames).
    stale : int
        Valid reply frames discarded because their sequence number was not awaited.
    """

    def __init__(self, port, url="device", timeout=10.0, retries=3, frame_gap=0.5):
        if retries < 1:
            raise ValueError(f"retries must be at least 1, not {retries}")
        self._port = port
        self._port.timeout = _SLICE
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.frame_gap = frame_gap
        self.poll_interval = 0.2
        self.chunk = DATA_CHUNK
        self.model = None
        self.tiled = None
        self.resent = 0
        self.stale = 0
        self._parser = ReplyParser()
        self._seq = random.randrange(256)
        self._info = None

    @classmethod
    def open(cls, url, timeout=10.0, baudrate=3_000_000, retries=3, frame_gap=0.5):
        """Open ``url``: a serial port (``/dev/ttyUSB0``), ``socket://host:port`` (the
        simulated board) or any other pyserial URL.

        Parameters
        ----------
        url : str
        timeout, retries, frame_gap
            As for :class:`Device`.
        baudrate : int
            UART speed (ignored by ``socket://``).

        Raises
        ------
        DeviceConnectionError
            If the port does not exist or nothing listens there.
        """
        check_url(url)
        port = None
        try:
            port = serial.serial_for_url(url, baudrate=baudrate, timeout=_SLICE,
                                         write_timeout=timeout)
            port.reset_input_buffer()
        except (serial.SerialException, OSError, ValueError) as exc:
            if port is not None:
                port.close()
            why = str(exc)
            if "Connection refused" in why:
                why = "nothing is listening there (is `squeezefpga sim-board` running?)"
            elif why.startswith("Could not open port"):
                why = why.split(": ", 1)[-1]      # pyserial repeats the URL
            raise DeviceConnectionError(f"cannot open {url}: {why}") from None
        return cls(port, url, timeout, retries, frame_gap)

    def close(self):
        # pyserial's socket:// close() skips closing a socket whose shutdown fails (a
        # connection the device dropped): close it here, so that no descriptor leaks.
        sock = getattr(self._port, "_socket", None)
        try:
            self._port.close()
        finally:
            if sock is not None:
                sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Device({self.url!r})"

    # -- link layer ----------------------------------------------------------------------------

    def _next_seq(self):
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _send(self, frame, what):
        try:
            self._port.write(frame)
        except serial.SerialTimeoutException:
            raise DeviceTimeout(f"{what}: {self.url} did not take the request within "
                                f"{self.timeout:g} s") from None
        except (serial.SerialException, OSError) as exc:
            raise DeviceConnectionError(f"{what}: connection to {self.url} lost ({exc})") \
                from None

    def _read(self, n, what):
        try:
            return self._port.read(n)
        except (serial.SerialException, OSError) as exc:
            raise DeviceConnectionError(f"{what}: connection to {self.url} lost ({exc})") \
                from None

    def _drain(self, what):
        self._parser.reset()
        try:
            self._port.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            raise DeviceConnectionError(f"{what}: connection to {self.url} lost ({exc})") \
                from None

    def _await(self, seqs, seq, timeout, what):
        """Read until the reply to ``seq`` (or an OK reply to an earlier attempt in ``seqs``)
        arrives: ``("reply", Reply)``; ``("corrupt", None)`` if a corrupted frame came and then
        :attr:`frame_gap` seconds of silence; ``("timeout", None)``."""
        parser = self._parser
        bad = parser.bad_frames
        deadline = time.monotonic() + timeout
        last_byte = time.monotonic()
        while True:
            data = self._read(parser.needed(), what)
            now = time.monotonic()
            silent = now - last_byte >= self.frame_gap
            if data:
                last_byte, silent = now, False
                frames = parser.feed(data)
            elif parser.pending and (silent or now >= deadline):
                frames = parser.flush()         # a half frame that will never be completed
            else:
                frames = []
            for frame in frames:
                if frame.seq == seq or (frame.seq in seqs and frame.status == LINK_OK):
                    return "reply", frame
                self.stale += 1
            if now >= deadline:
                return "timeout", None
            if parser.bad_frames > bad and silent and not parser.pending:
                return "corrupt", None

    def _transact(self, payload, what, timeout=None, resend_after_loss=True):
        """Send ``payload`` (one command) in a request frame and return the host port's reply
        (data bytes and status byte) and the number of attempts it took.

        A request the device reports corrupted (BAD_CRC, TOO_LONG) is sent again. So is one
        whose reply was lost or corrupted, unless ``resend_after_loss`` is false: then
        :class:`_ReplyLost` is raised, since the command may have been executed.
        """
        timeout = self.timeout if timeout is None else timeout
        seqs, problem = set(), None
        for attempt in range(1, self.retries + 1):
            if attempt > 1:
                self.resent += 1
            seq = self._next_seq()
            seqs.add(seq)
            self._send(encode_request(seq, payload), what)
            outcome, reply = self._await(seqs, seq, timeout, what)
            if outcome == "reply":
                if reply.version != LINK_VERSION:
                    raise ProtocolVersionError(
                        f"{what}: {self.url} speaks link version {reply.version}, this driver "
                        f"speaks {LINK_VERSION}")
                if reply.status == LINK_BAD_VERSION:
                    raise ProtocolVersionError(f"{what}: {self.url} rejected link version "
                                               f"{LINK_VERSION}")
                if reply.status == LINK_OK:
                    return reply.payload, attempt
                if reply.status == LINK_BUSY:
                    who = reply.payload.decode("ascii", "replace")
                    raise DeviceBusyError(f"{what}: {self.url} is busy {who}: it serves one "
                                          "client at a time; try again when that one is done")
                if reply.status == LINK_REPLY_OVERFLOW:
                    raise LinkError(f"{what}: the reply exceeded the {MAX_PAYLOAD}-byte frame "
                                    "payload and was cut")
                if reply.status not in (LINK_BAD_CRC, LINK_TOO_LONG):
                    raise LinkError(f"{what}: {self.url} answered unknown link status "
                                    f"{reply.status}")
                problem = (f"{self.url} received the request corrupted "
                           f"({LINK_STATUS_NAMES[reply.status]})")
                if reply.status == LINK_TOO_LONG:
                    self._send(RESYNC, what)
                self._drain(what)
                continue
            if outcome == "timeout":
                problem = f"no reply from {self.url} within {timeout:g} s"
                # Complete any request the device holds half received, so that it hunts again.
                self._send(RESYNC, what)
            else:
                problem = f"the reply from {self.url} was corrupted"
            self._drain(what)
            if not resend_after_loss:
                raise _ReplyLost(problem)
        message = f"{what}: {problem} ({self.retries} attempts)"
        raise (DeviceTimeout if outcome == "timeout" else LinkError)(message)

    def _command(self, payload, what, reply_bytes=0, timeout=None, resend_after_loss=True):
        """Run one command; return its reply's data bytes (``reply_bytes`` of them, any number
        if None) after checking its status byte."""
        reply, attempts = self._transact(payload, what, timeout, resend_after_loss)
        if not reply:
            raise DeviceError(f"{what}: the host port dropped the command (it was cut short)")
        if reply[-1] != cmd.STATUS_OK:
            raise DeviceStatusError(what, reply[-1], attempts)
        data = reply[:-1]
        if reply_bytes is not None and len(data) != reply_bytes:
            raise DeviceError(f"{what}: expected {reply_bytes} reply bytes, {self.url} sent "
                              f"{len(data)}")
        return data

    # -- host-port commands --------------------------------------------------------------------

    def info(self):
        """Query the device (INFO) and return its :class:`DeviceInfo`.

        Raises
        ------
        ProtocolVersionError
            If the device's host port has another version than this driver.
        """
        raw = self._command(cmd.info(), "INFO", None)
        if raw[:4] != cmd.INFO_MAGIC:
            raise DeviceError(f"INFO: {self.url} is not a squeezefpga accelerator (it answered "
                              f"{raw[:8].hex()})")
        if len(raw) > 4 and raw[4] != cmd.PORT_VERSION:
            raise ProtocolVersionError(f"INFO: {self.url} has host port version {raw[4]}, this "
                                       f"driver speaks {cmd.PORT_VERSION}")
        if len(raw) != cmd.INFO.size:
            raise DeviceError(f"INFO: expected {cmd.INFO.size} reply bytes, {self.url} sent "
                              f"{len(raw)}")
        self._info = DeviceInfo(*cmd.INFO.unpack(raw)[1:])
        return self._info

    def _chunks(self, addr, length):
        if not 0 < self.chunk <= DATA_CHUNK:
            raise ValueError(f"chunk must be in 1..{DATA_CHUNK}, not {self.chunk}")
        for at in range(0, length, self.chunk):
            yield addr + at, at, min(self.chunk, length - at)

    def _write(self, encode, name, addr, data):
        for where, at, n in self._chunks(addr, len(data)):
            self._command(encode(where, data[at: at + n]), f"{name} at 0x{where:x}")

    def _read_memory(self, encode, name, addr, length):
        return b"".join(self._command(encode(where, n), f"{name} at 0x{where:x}", n)
                        for where, _, n in self._chunks(addr, length))

    def write_weights(self, addr, data):
        """Write ``data`` into the weight buffer at byte address ``addr``."""
        self._write(cmd.write_weights, "WRITE_WEIGHTS", addr, data)

    def read_weights(self, addr, length):
        """Read ``length`` bytes of the weight buffer from byte address ``addr``."""
        return self._read_memory(cmd.read_weights, "READ_WEIGHTS", addr, length)

    def write_act(self, addr, data):
        """Write ``data`` into the activation memory at byte address ``addr``."""
        self._write(cmd.write_act, "WRITE_ACT", addr, data)

    def read_act(self, addr, length):
        """Read ``length`` bytes of the activation memory from byte address ``addr``."""
        return self._read_memory(cmd.read_act, "READ_ACT", addr, length)

    def _sdram(self, addr, length):
        """Refuse an SDRAM access the device cannot make, before any byte is sent."""
        size = (self._info or self.info()).sdram_bytes
        if not size:
            raise DeviceError(f"{self.url} has no SDRAM")
        if addr < 0 or addr + length > size:
            raise DeviceError(f"SDRAM bytes 0x{addr:x}..0x{addr + length:x} are outside the "
                              f"{size:,} bytes of {self.url}")

    def write_sdram(self, addr, data):
        """Write ``data`` into the board's SDRAM at byte address ``addr``."""
        self._sdram(addr, len(data))
        self._write(cmd.write_sdram, "WRITE_SDRAM", addr, data)

    def read_sdram(self, addr, length):
        """Read ``length`` bytes of the board's SDRAM from byte address ``addr``."""
        self._sdram(addr, length)
        return self._read_memory(cmd.read_sdram, "READ_SDRAM", addr, length)

    def sdram_result(self):
        """The SDRAM pattern test's state (SDRAM_RESULT): (running, progress of the phase,
        :class:`~squeezefpga.sdram.PatternResult`, refreshes since reset)."""
        flags, phase, progress, address, expected, read, words, refreshes = \
            cmd.SDRAM_RESULT.unpack(self._command(cmd.sdram_result(), "SDRAM_RESULT",
                                                  cmd.SDRAM_RESULT.size))
        result = PatternResult(bool(flags & cmd.SDRAM_FLAG_PASSED), phase, address, expected,
                               read, words)
        return bool(flags & cmd.SDRAM_FLAG_RUNNING), progress, result, refreshes

    def sdram_test(self, words=WORDS, timeout=RUN_TIMEOUT, progress=None):
        """Run the SDRAM pattern test of ``squeezefpga.sdram.reference_pattern_test`` over the
        first ``words`` 16-bit words (default: all 32 MB) in the device's gateware, polling
        its progress; returns the :class:`~squeezefpga.sdram.PatternResult`.

        Raises
        ------
        DeviceTimeout
            If the test has not ended within ``timeout`` seconds.
        """
        if not 1 <= words <= WORDS:
            raise ValueError(f"words must be 1..{WORDS}, not {words}")
        self._sdram(0, 2 * words)
        self._command(cmd.sdram_test(words), "SDRAM_TEST")
        deadline = time.monotonic() + timeout
        while True:
            running, done, result, _ = self.sdram_result()
            total = len(pattern_items(result.phase, 1)) if result.phase < 2 else words
            emit(progress, Stage.SDRAM, PATTERN_PHASES[result.phase], min(done, total), total,
                 "words")
            if not running:
                return result
            if time.monotonic() > deadline:
                raise DeviceTimeout(f"SDRAM_TEST: {self.url} still testing after {timeout:g} s "
                                    f"({PATTERN_PHASES[result.phase]} phase, {done:,} words)")
            time.sleep(min(0.2, self.timeout / 10))

    def status(self):
        """The device's :class:`RunStatus` (STATUS)."""
        flags, step, last, cycles = cmd.STATUS_REPLY.unpack(
            self._command(cmd.status(), "STATUS", cmd.STATUS_REPLY.size))
        return RunStatus(bool(flags & cmd.STATUS_FLAG_RUNNING),
                         bool(flags & cmd.STATUS_FLAG_ERROR), bool(flags & cmd.STATUS_FLAG_MODEL),
                         step, last, cycles)

    def read_counters(self, steps=None):
        """The performance counters of the last run (COUNTERS, page by page) as
        :class:`Counters`, for the first ``steps`` steps (default: every counter)."""
        steps = (self._info or self.info()).max_layers if steps is None else steps
        entries = []
        header = None
        for first in range(0, max(steps, 1), cmd.COUNTER_PAGE):
            count = min(cmd.COUNTER_PAGE, steps - first)
            raw = self._command(cmd.counters(first, count), "COUNTERS",
                                cmd.counters_reply_bytes(count))
            header = header or cmd.COUNTER_HEADER.unpack_from(raw)
            entries += cmd.COUNTER_ENTRY.iter_unpack(raw[cmd.COUNTER_HEADER.size:])
        total, lanes, issues = header
        cycles, stalls, moved = (tuple(column) for column in zip(*entries)) if entries else \
            ((), (), ())
        return Counters(total, lanes, issues, cycles, stalls, moved)

    def start_run(self, first, last):
        """RUN program steps ``first`` .. ``last - 1`` without waiting for the end.

        A RUN is never re-sent after its reply was lost: the device is asked (STATUS) whether
        it runs instead. A re-sent RUN (after the device reported the first one corrupted)
        answered BUSY means the first one started.

        Raises
        ------
        RunUncertainError
            If the reply was lost and the accelerator is not running.
        """
        what = f"RUN steps {first}..{last - 1}"
        try:
            self._command(cmd.run(first, last), what, resend_after_loss=False)
        except DeviceStatusError as exc:
            if exc.status == cmd.STATUS_BUSY and exc.attempts > 1:
                return
            raise
        except _ReplyLost as exc:
            if self.status().running:
                return
            raise RunUncertainError(f"{what}: {exc}, and the accelerator is not running: the run "
                                    "never started or already ended") from None

    def _until_idle(self, timeout, what, progress=None, message=""):
        """Poll STATUS until the sequencer stops running, reporting its step to ``progress``
        (stage RUN) with ``message``."""
        deadline = time.monotonic() + timeout
        pause = 0.005
        while (status := self.status()).running:
            emit(progress, Stage.RUN, message or f"{status.cycles:,} cycles", status.step,
                 status.last, "steps")
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeviceTimeout(f"{what}: the run on {self.url} did not end within "
                                    f"{timeout:g} s (at step {status.step} of {status.last})")
            time.sleep(min(pause, left))
            pause = min(2 * pause, self.poll_interval)
        return status

    def _finish_others_run(self, timeout, what, progress):
        """Wait for a run another client left going, telling ``progress`` how far it is."""
        status = self.status()
        if status.running:
            emit(progress, Stage.RUN, f"{self.url} is finishing a run another client started "
                 f"(step {status.step} of {status.last}); waiting for it")
            self._until_idle(timeout, what, progress, "another client's run")

    def wait(self, timeout=RUN_TIMEOUT, progress=None):
        """Wait until the run ends (polling STATUS, so that a lost frame costs one short
        timeout, not the whole run), then WAIT for its status.

        Raises
        ------
        DeviceTimeout
            If the run has not ended within ``timeout`` seconds.
        DeviceStatusError
            If the run failed (``protocol.STATUS_RUN_ERROR``).
        """
        self._until_idle(timeout, "WAIT", progress)
        self._command(cmd.wait(), "WAIT")

    def run(self, first, last, timeout=RUN_TIMEOUT, progress=None):
        """Run program steps ``first`` .. ``last - 1`` and wait for the end (``timeout``
        seconds at most); ``progress`` gets the step the run is on (stage RUN)."""
        self.start_run(first, last)
        self.wait(RUN_TIMEOUT if timeout is None else timeout, progress)

    # -- model and inference -------------------------------------------------------------------

    def load_model(self, model, progress=None, force=False):
        """Make ``model`` the device's model and keep it for :meth:`infer`.

        Loading is skipped if the device reports a model with the blob's CRC-32 loaded (and
        ``force`` is false). Otherwise the blob is written in :attr:`chunk`-byte pieces that
        never straddle two layers' weight sections, then SET_MODEL has the device check the
        whole blob against its CRC-32 before it will run it.

        Parameters
        ----------
        model : Model or bytes
            A decoded model (bytes are decoded here, once).
        progress : callable or None
            Receives :class:`squeezefpga.progress.Event` objects of stage ``LOAD`` (bytes
            written, the layer being written) after every piece.
        force : bool
            Write even if the device already holds this model.

        Returns
        -------
        bool : whether the blob was written.

        Raises
        ------
        BlobFormatError
            If bytes were given that are not a valid compiled model.
        ModelFitError
            If the model is too large for the device (weight buffer, activation memory, layer
            counters, ...).
        """
        if not isinstance(model, Model):
            model = Model.decode(model)
        info = self.info()
        if info.sdram_bytes:
            return self._load_tiled(model, info, progress, force)
        self.tiled = None
        try:
            model.check(info.config)
        except ModelFitError as exc:
            raise ModelFitError(f"{self.url}: {exc}") from None
        blob, crc = model.blob, model.crc
        self.model = model
        if info.model_loaded and info.model_crc == crc and not force:
            return False
        self._finish_others_run(RUN_TIMEOUT, "load_model", progress)
        done = 0
        for name, start, end in weight_sections(model):
            for where, _, n in self._chunks(start, end - start):
                self._command(cmd.write_weights(where, blob[where: where + n]),
                              f"WRITE_WEIGHTS at 0x{where:x} ({name})")
                done += n
                emit(progress, Stage.LOAD, name, done, len(blob), "bytes")
        self._set_model(crc)
        return True

    def _load_tiled(self, model, info, progress, force):
        """A device with SDRAM runs the model's tiled program (golden/tiled_program.py): its
        weight sections go into the SDRAM, the program into the weight buffer, whose CRC-32
        SET_MODEL checks and INFO reports afterwards."""
        try:
            tiled = tiled_for(model.program, info.config, info.sdram_bytes)
        except ModelFitError as exc:
            raise ModelFitError(f"{self.url}: {exc}") from None
        program = encode_tiled(tiled)
        crc = blob_crc(program)
        self.model, self.tiled = model, tiled
        if info.model_loaded and info.model_crc == crc and not force:
            return False
        self._finish_others_run(RUN_TIMEOUT, "load_model", progress)
        image = tiled.sdram_image()
        total, done = 2 * len(image) + len(program), 0
        for where, at, n in self._chunks(0, len(image)):
            self._command(cmd.write_sdram(where, image[at: at + n]),
                          f"WRITE_SDRAM at 0x{where:x} (weights)")
            done += n
            emit(progress, Stage.LOAD, "weights into SDRAM", done, total, "bytes")
        # Read back: weights a faulty SDRAM changed would make the engines compute garbage
        # (or never end); the program part has SET_MODEL's CRC, the SDRAM part this.
        for where, at, n in self._chunks(0, len(image)):
            back = self._command(cmd.read_sdram(where, n), f"READ_SDRAM at 0x{where:x}", n)
            if back != image[at: at + n]:
                bad = next(i for i in range(n) if back[i] != image[at + i])
                raise DeviceError(f"{self.url}: the SDRAM does not hold the weights written: "
                                  f"byte 0x{where + bad:x} reads {back[bad]:#04x}, not "
                                  f"{image[at + bad]:#04x} (run `squeezefpga selftest`)")
            done += n
            emit(progress, Stage.LOAD, "weights checked", done, total, "bytes")
        for where, at, n in self._chunks(0, len(program)):
            self._command(cmd.write_weights(where, program[at: at + n]),
                          f"WRITE_WEIGHTS at 0x{where:x} (program)")
            done += n
            emit(progress, Stage.LOAD, "program", done, total, "bytes")
        self._set_model(crc)
        return True

    def _set_model(self, crc):
        try:
            self._command(cmd.set_model(crc), "SET_MODEL")
        except DeviceStatusError as exc:
            if exc.status != cmd.STATUS_BAD_MODEL:
                raise
            raise DeviceError(f"{self.url}: the device found the blob it received corrupt "
                              f"(its CRC-32 is not {crc:08x}); nothing will run until a model "
                              "is loaded again") from None

    def verify_model(self, crc):
        """Have the device check the blob in its weight buffer against ``crc`` again
        (SET_MODEL); :class:`DeviceStatusError` (status ``STATUS_BAD_MODEL``) if it does not
        match, and then no model is loaded."""
        self._command(cmd.set_model(crc), "SET_MODEL")

    def read_tensor(self, d):
        """Read descriptor ``d``'s output tensor from activation memory."""
        raw = self.read_act(d.dst, d.out_bytes)
        if d.op == OP_GLOBAL_SUM:
            return np.frombuffer(raw, "<i4").astype(np.int32)
        return np.frombuffer(raw, np.uint8).reshape(d.out_shape)

    def _infer_tiled(self, image, check_all, timeout, progress):
        """The tiled program: the input into SDRAM, the operations (one by one with
        ``check_all``, every computation's output read back from the activation buffer), the
        class sums from SDRAM; the counters summed per layer."""
        tiled, program = self.tiled, self.model.program
        self.write_sdram(tiled.input_sdram, input_bytes(program, image))
        ops, tensors = tiled.ops, {}
        if check_all:
            totals, entries = np.zeros(3, np.int64), []
            for i, op in enumerate(ops):
                emit(progress, Stage.RUN, program.descriptors[op.layer].name, i, len(ops),
                     "operations")
                self.run(i, i + 1, timeout)
                counters = self.read_counters(i + 1)
                totals += (counters.cycles, counters.busy_lane_cycles, counters.mac_issues)
                entries.append((counters.layer_cycles[i], counters.layer_stalls[i],
                                counters.layer_bytes[i]))
                if isinstance(op, Compute):
                    d = op.step
                    raw = self.read_act(d.dst, d.out_bytes)
                    tensors[f"{i}:{d.name}"] = (
                        np.frombuffer(raw, "<i4").astype(np.int32) if d.op == OP_GLOBAL_SUM
                        else np.frombuffer(raw, np.uint8).reshape(d.out_shape))
            cycles, lanes, issues = (int(t) for t in totals)
        else:
            self.run(0, len(ops), timeout, progress)
            counters = self.read_counters(len(ops))
            cycles, lanes, issues = (counters.cycles, counters.busy_lane_cycles,
                                     counters.mac_issues)
            entries = list(zip(counters.layer_cycles, counters.layer_stalls,
                               counters.layer_bytes))[:len(ops)]
        emit(progress, Stage.RUN, f"{cycles:,} cycles", len(ops), len(ops), "operations")
        per_layer = np.zeros((len(program.descriptors), 3), np.int64)
        for op, entry in zip(ops, entries):
            per_layer[op.layer] += entry
        raw = self.read_sdram(tiled.output_sdram, 4 * program.classes)
        names = [d.name for d in program.descriptors]
        return InferenceResult(np.frombuffer(raw, "<i4").astype(np.int32), cycles,
                               [(n, int(c)) for n, c in zip(names, per_layer[:, 0])],
                               lanes, issues, tensors,
                               [(n, int(c)) for n, c in zip(names, per_layer[:, 1])],
                               [(n, int(c)) for n, c in zip(names, per_layer[:, 2])])

    def _infer_once(self, image, check_all, timeout, progress):
        if self.tiled is not None:
            return self._infer_tiled(image, check_all, timeout, progress)
        program = self.model.program
        self.write_act(program.input_addr, input_bytes(program, image))
        steps = program.descriptors
        tensors = {}
        if check_all:
            totals = np.zeros(3, np.int64)
            per_step = []
            for i, d in enumerate(steps):
                emit(progress, Stage.RUN, d.name, i, len(steps), "steps")
                self.run(i, i + 1, timeout)
                counters = self.read_counters(i + 1)
                totals += (counters.cycles, counters.busy_lane_cycles, counters.mac_issues)
                per_step.append(counters.layer_cycles[i])
                tensors[d.name] = self.read_tensor(d)
            cycles, lanes, issues = (int(t) for t in totals)
            emit(progress, Stage.RUN, "", len(steps), len(steps), "steps")
        else:
            self.run(0, len(steps), timeout, progress)
            counters = self.read_counters(len(steps))
            emit(progress, Stage.RUN, f"{counters.cycles:,} cycles", len(steps), len(steps),
                 "steps")
            cycles, lanes, issues = (counters.cycles, counters.busy_lane_cycles,
                                     counters.mac_issues)
            per_step = counters.layer_cycles[:len(steps)]
        raw = self.read_act(program.output_addr, 4 * program.classes)
        logits = np.frombuffer(raw, "<i4").astype(np.int32)
        return InferenceResult(logits, cycles,
                               [(d.name, int(c)) for d, c in zip(steps, per_step)],
                               lanes, issues, tensors)

    def infer(self, image, timeout=RUN_TIMEOUT, check_all=False, progress=None):
        """Run the loaded model on ``image`` (uint8 BGR, the program's input shape).

        A run another client left going is awaited first. The input is written at the
        program's ``input_addr``, the run started and awaited (``timeout`` seconds at most),
        then the counters and the logits read. A run whose RUN reply was lost while the
        accelerator was not running is redone from the input write. With ``check_all`` the
        program runs one step at a time and every step's output is read back. ``progress``
        receives :class:`squeezefpga.progress.Event` objects of stage ``RUN``.

        Returns
        -------
        InferenceResult
        """
        if self.model is None:
            raise DeviceError(f"infer: no model on {self.url}: call load_model first")
        self._finish_others_run(timeout, "infer", progress)
        for attempt in range(self.retries):
            try:
                return self._infer_once(image, check_all, timeout, progress)
            except RunUncertainError as exc:
                error = exc
        raise error
