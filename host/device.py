"""The driver of an accelerator board, real (UART) or simulated (TCP), over the framed link.

:class:`Device` sends each host-port command (:mod:`squeezefpga.host.commands`) in one request
frame of :mod:`squeezefpga.host.link` and checks the reply; lost and corrupted frames are
retried without ever starting a run twice. docs/PROTOCOL.md describes the protocol and the
rules followed here.

Example::

    with Device.open("socket://127.0.0.1:5555") as device:
        device.load_model(blob)
        result = device.infer(image)
"""

import random
import time
import zlib

import serial

from squeezefpga.golden.blob import DESCRIPTOR, ENC_NONE, HEADER, decode_program, weights_end
from squeezefpga.hw.config import ModelFitError, check_program

from . import commands as cmd
from .inference import BoardRun, device_config, infer as _infer
from .link import (DATA_CHUNK, LINK_BAD_CRC, LINK_BAD_VERSION, LINK_OK, LINK_REPLY_OVERFLOW,
                   LINK_STATUS_NAMES, LINK_TOO_LONG, LINK_VERSION, MAX_PAYLOAD, RESYNC,
                   ReplyParser, encode_request)
from .device_info import Counters, DeviceError, DeviceInfo

__all__ = ["Device", "DeviceInfo", "Counters", "InferenceResult", "DeviceError",
           "DeviceStatusError", "LinkError", "DeviceConnectionError", "DeviceTimeout",
           "ProtocolVersionError", "RunUncertainError", "model_sections", "RUN_TIMEOUT"]

InferenceResult = BoardRun
"""What :meth:`Device.infer` returns: logits, cycles, per-layer cycles, busy lane-cycles, MAC
issues (and the step tensors with ``check_all``)."""

RUN_TIMEOUT = 600.0         # seconds a run may take by default (a minute in simulation)
_SLICE = 0.05               # seconds per blocking read: the granularity of every deadline
_RUNNING = 0x01             # STATUS bit: the sequencer runs


class DeviceStatusError(DeviceError):
    """The host port answered a command with an error status (``status``, one of
    ``commands.STATUS_*``)."""

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


class ProtocolVersionError(DeviceError):
    """The device speaks another link or host-port version than this driver."""


class RunUncertainError(LinkError):
    """The reply to RUN was lost and the accelerator is not running: the run either never
    started or has already ended, so the input must be written again before another RUN."""


class _ReplyLost(Exception):
    """Internal: a command that must not be re-sent blindly got no valid reply."""


def model_sections(blob, program=None):
    """Split a blob into the pieces :meth:`Device.load_model` reports progress by.

    Parameters
    ----------
    blob : bytes
    program : Program or None
        ``decode_program(blob)``, if already at hand.

    Returns
    -------
    list of (name, start, end): ``"program"`` (header and descriptors), each conv layer's
    weight section under the layer's name, then ``"names"`` (the name table).
    """
    program = decode_program(blob) if program is None else program
    cuts = []
    for i, d in enumerate(program.descriptors):
        raw = DESCRIPTOR.unpack_from(blob, HEADER.size + i * DESCRIPTOR.size)
        offset, count, n_codes, encoding = raw[12], raw[13], raw[16], raw[17]
        if encoding != ENC_NONE:
            end = weights_end(offset, encoding, count, n_codes, d.out_shape[0])
            cuts.append((offset, d.name, end + (-end % 4)))
    sections, at = [], 0
    for offset, name, end in sorted(cuts):
        if offset > at:
            sections.append(("program" if not sections else "padding", at, offset))
        sections.append((name, offset, end))
        at = end
    if at < len(blob):
        sections.append(("names", at, len(blob)))
    return sections


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
    program : Program or None
        The model given to the last :meth:`load_model`.
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
        self.program = None
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
        self._port.close()

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
        if outcome == "timeout" and self.url.startswith("socket://"):
            message += ("; a simulated board serves one client at a time: is another one "
                        "connected?")
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

    def status(self):
        """The STATUS byte: bit 0 running, bit 1 error."""
        return self._command(cmd.status(), "STATUS", 1)[0]

    def read_counters(self):
        """The performance counters of the last run (COUNTERS) as :class:`Counters`."""
        layers = (self._info or self.info()).max_layers
        raw = self._command(cmd.counters(), "COUNTERS", cmd.counters_reply_bytes(layers))
        total, lanes, issues = cmd.COUNTER_HEADER.unpack_from(raw)
        steps = raw[cmd.COUNTER_HEADER.size:]
        return Counters(total, lanes, issues,
                        tuple(int.from_bytes(steps[i: i + 4], "little")
                              for i in range(0, len(steps), 4)))

    counters = read_counters        # the name host/inference.py calls

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
            if self.status() & _RUNNING:
                return
            raise RunUncertainError(f"{what}: {exc}, and the accelerator is not running: the run "
                                    "never started or already ended") from None

    def _until_idle(self, timeout, what):
        """Poll STATUS until the sequencer stops running."""
        deadline = time.monotonic() + timeout
        pause = 0.005
        while self.status() & _RUNNING:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeviceTimeout(f"{what}: the run on {self.url} did not end within "
                                    f"{timeout:g} s")
            time.sleep(min(pause, left))
            pause = min(2 * pause, self.poll_interval)

    def wait(self, timeout=RUN_TIMEOUT):
        """Wait until the run ends (polling STATUS, so that a lost frame costs one short
        timeout, not the whole run), then WAIT for its status.

        Raises
        ------
        DeviceTimeout
            If the run has not ended within ``timeout`` seconds.
        DeviceStatusError
            If the run failed (``commands.STATUS_RUN_ERROR``).
        """
        self._until_idle(timeout, "WAIT")
        self._command(cmd.wait(), "WAIT")

    def run(self, first, last, timeout=RUN_TIMEOUT):
        """Run program steps ``first`` .. ``last - 1`` and wait for the end (``timeout``
        seconds at most)."""
        self.start_run(first, last)
        self.wait(RUN_TIMEOUT if timeout is None else timeout)

    # -- model and inference -------------------------------------------------------------------

    def load_model(self, blob, progress=None, force=False):
        """Make ``blob`` (a compiled model) the device's model and keep its program.

        Loading is skipped if the device reports a model with the blob's CRC-32 loaded (and
        ``force`` is false). Otherwise the blob is written in :attr:`chunk`-byte pieces that
        never straddle two layers' weight sections, read back and compared (CRC-32), and
        recorded with SET_MODEL.

        Parameters
        ----------
        blob : bytes
        progress : callable or None
            ``progress(done_bytes, total_bytes, layer_name)`` after every piece written.
        force : bool
            Write even if the device already holds this model.

        Returns
        -------
        bool : whether the blob was written.

        Raises
        ------
        BlobFormatError
            If ``blob`` is not a valid compiled model.
        ModelFitError
            If the model is too large for the device (weight buffer, activation memory, layer
            counters, ...).
        """
        blob = bytes(blob)
        program = decode_program(blob)
        info = self.info()
        try:
            check_program(device_config(info), program, len(blob))
        except ModelFitError as exc:
            raise ModelFitError(f"{self.url}: {exc}") from None
        crc = zlib.crc32(blob)
        self.program = program
        if info.model_loaded and info.model_crc == crc and not force:
            return False
        self._until_idle(RUN_TIMEOUT, "load_model")   # a run another client left going
        done = 0
        for name, start, end in model_sections(blob, program):
            for where, _, n in self._chunks(start, end - start):
                self._command(cmd.write_weights(where, blob[where: where + n]),
                              f"WRITE_WEIGHTS at 0x{where:x} ({name})")
                done += n
                if progress:
                    progress(done, len(blob), name)
        back = zlib.crc32(self.read_weights(0, len(blob)))
        if back != crc:
            raise DeviceError(f"{self.url}: the weight buffer does not hold the blob that was "
                              f"written (CRC-32 {back:08x}, expected {crc:08x})")
        self._command(cmd.set_model(crc), "SET_MODEL")
        return True

    def infer(self, image, timeout=RUN_TIMEOUT, check_all=False):
        """Run the loaded model on ``image`` (uint8 BGR, the program's input shape).

        A run another client left going is awaited first. The input is written at the
        program's ``input_addr``, the run started and awaited
        (``timeout`` seconds at most), then the counters and the logits read. A run whose RUN
        reply was lost while the accelerator was not running is redone from the input write.
        With ``check_all`` the program runs one step at a time and every step's output is read
        back (:func:`squeezefpga.host.inference.infer`).

        Returns
        -------
        InferenceResult
        """
        if self.program is None:
            raise DeviceError(f"infer: no model on {self.url}: call load_model first")
        self._until_idle(timeout, "infer")          # a run another client left going
        for attempt in range(self.retries):
            try:
                return _infer(self, self.program, image, check_all, timeout)
            except RunUncertainError as exc:
                error = exc
        raise error
