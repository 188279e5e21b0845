"""The device driver (host/device.py) against a Python model of the board served over TCP."""

import math
import socket
import struct
import threading
import time
import zlib

import numpy as np
import pytest

from squeezefpga.golden.blob import decode_program
from squeezefpga.golden.compiler import compile_model
from squeezefpga.golden.integer_model import run_integer
from squeezefpga.golden.network import tiny_squeezenet
from squeezefpga.golden.polyphase import phase_split
from squeezefpga.host import commands as cmd
from squeezefpga.host.device import (Device, DeviceConnectionError, DeviceError, DeviceInfo,
                                     DeviceStatusError, DeviceTimeout, LinkError,
                                     ProtocolVersionError, RunUncertainError, model_sections)
from squeezefpga.host.link import (LINK_BAD_CRC, LINK_BAD_VERSION, LINK_OK, LINK_REPLY_OVERFLOW,
                                   LINK_VERSION, MAX_PAYLOAD, RequestParser, encode_reply)
from squeezefpga.hw.config import ModelFitError

from .test_network import random_model

BUILD_ID = 0x5EED


class FakeBoard:
    """The device side in Python: link layer and host port over bytearray memories, served on
    a TCP port of 127.0.0.1 by a thread.

    ``faults[command byte]`` lists one-shot misbehaviours for the next requests carrying that
    command: ``"corrupt"`` (flip the reply's last CRC byte), ``"drop"`` (execute, no reply),
    ``"ignore"`` (neither execute nor reply), ``"bad_crc"`` (answer BAD_CRC, not executed),
    ``"exec_bad_crc"`` (execute, then answer BAD_CRC), ``"stale"`` (garbage and a reply with
    another sequence number first), ``"cut"`` (lose the reply's last 3 bytes), ``"hangup"``
    (close the connection). ``silent`` ignores every byte.
    """

    def __init__(self, weight_bytes=1 << 15, activation_bytes=1 << 16, lanes=8, max_layers=32,
                 max_channels=256, port_version=cmd.PORT_VERSION, link_version=LINK_VERSION,
                 run_seconds=0.0):
        self.weights = bytearray(weight_bytes)
        self.act = bytearray(activation_bytes)
        self.lanes, self.max_layers, self.max_channels = lanes, max_layers, max_channels
        self.port_version, self.link_version = port_version, link_version
        self.run_seconds = run_seconds
        self.model_loaded = self.model_crc = 0
        self.run_end = 0.0
        self.run_status = cmd.STATUS_OK
        self.runs = 0
        self.log = []               # command bytes executed
        self.writes = []            # (addr, length) of WRITE_WEIGHTS
        self.faults = {}
        self.silent = False
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.02)
        self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self):
        self._stop.set()
        self._thread.join()
        self._server.close()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            with conn:
                self._session(conn)

    def _session(self, conn):
        conn.settimeout(0.02)
        parser = RequestParser(report_errors=True)
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                data = conn.recv(1 << 16)
            except TimeoutError:
                if parser.pending and time.monotonic() - last > 0.1:
                    parser.flush()              # the watchdog abandons a half frame
                continue
            except OSError:
                return
            if not data:
                return
            last = time.monotonic()
            if self.silent:
                continue
            for request in parser.feed(data):
                reply = self._answer(request)
                if reply is None:
                    return
                conn.sendall(reply)

    def _answer(self, request):
        seq, version = request.seq, self.link_version
        if request.status != LINK_OK:
            return encode_reply(seq, request.status, b"", version)
        if request.version != version:
            return encode_reply(seq, LINK_BAD_VERSION, b"", version)
        actions = self.faults.get(request.payload[:1][0] if request.payload else None, [])
        action = actions.pop(0) if actions else None
        if action == "ignore":
            return b""
        if action == "bad_crc":
            return encode_reply(seq, LINK_BAD_CRC, b"", version)
        out = self._execute(request.payload)
        status = LINK_OK if len(out) <= MAX_PAYLOAD else LINK_REPLY_OVERFLOW
        frame = encode_reply(seq, status, out if status == LINK_OK else b"", version)
        if action == "hangup":
            return None
        if action == "drop":
            return b""
        if action == "exec_bad_crc":
            return encode_reply(seq, LINK_BAD_CRC, b"", version)
        if action == "corrupt":
            return frame[:-1] + bytes([frame[-1] ^ 0xFF])
        if action == "stale":
            return b"\x00\xa5junk" + encode_reply((seq - 1) & 0xFF, LINK_OK, b"\x00") + frame
        if action == "cut":
            return frame[:-3]
        return frame

    def running(self):
        return time.monotonic() < self.run_end

    def _execute(self, payload):
        c = payload[0]
        if c not in cmd.ARG_BYTES:
            return bytes([cmd.STATUS_UNKNOWN_COMMAND])
        args = payload[1: 1 + cmd.ARG_BYTES[c]]
        if len(args) < cmd.ARG_BYTES[c]:
            return b""
        self.log.append(c)
        ok, busy = bytes([cmd.STATUS_OK]), bytes([cmd.STATUS_BUSY])
        if c == cmd.CMD_INFO:
            return cmd.INFO.pack(cmd.INFO_MAGIC, self.port_version, self.lanes, len(self.act),
                                 len(self.weights), self.max_layers, 1024, self.max_channels,
                                 BUILD_ID, self.model_loaded, self.model_crc) + ok
        if c in (cmd.CMD_WRITE_WEIGHTS, cmd.CMD_WRITE_ACT, cmd.CMD_READ_ACT,
                 cmd.CMD_READ_WEIGHTS):
            addr, length = struct.unpack("<II", args)
            memory = self.weights if c in (cmd.CMD_WRITE_WEIGHTS, cmd.CMD_READ_WEIGHTS) \
                else self.act
            assert addr + length <= len(memory)
            if c in (cmd.CMD_READ_ACT, cmd.CMD_READ_WEIGHTS):
                return (bytes(length) + busy if self.running()
                        else memory[addr: addr + length] + ok)
            data = payload[9:]
            if len(data) < length:
                return b""
            if self.running():
                return busy
            memory[addr: addr + length] = data
            if c == cmd.CMD_WRITE_WEIGHTS:
                self.writes.append((addr, length))
                self.model_loaded = 0
            return ok
        if c == cmd.CMD_RUN:
            if self.running():
                return busy
            self.runs += 1
            self.run_status = self._run(*args)
            self.run_end = time.monotonic() + self.run_seconds
            return ok
        if c == cmd.CMD_WAIT:
            time.sleep(max(0.0, self.run_end - time.monotonic()))
            return bytes([self.run_status])
        if c == cmd.CMD_STATUS:
            return bytes([int(self.running())]) + ok
        if c == cmd.CMD_COUNTERS:
            steps = [100 * (i + 1) for i in range(self.max_layers)]
            return (cmd.COUNTER_HEADER.pack(sum(steps), 7, 9)
                    + struct.pack(f"<{self.max_layers}I", *steps) + ok)
        if c == cmd.CMD_SET_MODEL:
            self.model_crc, = struct.unpack("<I", args)
            self.model_loaded = 1
            return ok
        raise AssertionError(f"fake board has no command {c}")

    def _run(self, first, last):
        """Run the whole program with the golden model on the image in activation memory."""
        length, = struct.unpack_from("<I", self.weights, 32)
        program = decode_program(bytes(self.weights[:length]))
        if (first, last) != (0, len(program.descriptors)):
            return cmd.STATUS_RUN_ERROR
        shape = program.input_shape
        n = math.prod(shape)
        where = phase_split(np.arange(1, n + 1).reshape(shape), program.input_phase).ravel()
        stored = np.frombuffer(self.act, np.uint8)[program.input_addr:][:where.size]
        image = np.zeros(n, np.uint8)
        image[where[where > 0] - 1] = stored[where > 0]
        memory = run_integer(program, image.reshape(shape)).memory
        self.act[:memory.size] = memory.tobytes()
        return cmd.STATUS_OK


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(7)
    network = tiny_squeezenet(size=35)
    images = [rng.integers(0, 256, network.input_shape, dtype=np.uint8) for _ in range(2)]
    return compile_model(random_model(network, rng), images), images[0]


@pytest.fixture
def board():
    fake = FakeBoard()
    yield fake
    fake.close()


def connect(board, timeout=2.0, retries=3):
    return Device.open(board.url, timeout=timeout, retries=retries)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_info(board):
    with connect(board) as device:
        assert device.info() == DeviceInfo(cmd.PORT_VERSION, 8, 1 << 16, 1 << 15, 32, 1024, 256,
                                           BUILD_ID, 0, 0)
        assert device.resent == device.stale == 0


def test_load_model_reports_layers_and_is_skipped_when_loaded(board, tiny):
    compiled, _ = tiny
    blob = compiled.blob
    calls = []
    with connect(board) as device:
        device.chunk = 512
        assert device.load_model(blob, lambda *a: calls.append(a))
        assert device.program == compiled.program
    assert board.weights[:len(blob)] == blob
    assert (board.model_loaded, board.model_crc) == (1, zlib.crc32(blob))
    done = [c[0] for c in calls]
    assert done == sorted(set(done)) and done[-1] == len(blob)
    assert {c[1] for c in calls} == {len(blob)}
    names = list(dict.fromkeys(c[2] for c in calls))
    assert names == ["program", *(d.name for d in compiled.program.convs), "names"]
    sections = model_sections(blob)
    for addr, length in board.writes:           # no piece straddles two sections
        assert length <= 512
        assert any(s <= addr and addr + length <= e for _, s, e in sections)
    writes = len(board.writes)
    assert writes >= math.ceil(len(blob) / 512)
    with connect(board) as device:
        assert not device.load_model(blob)      # same CRC loaded: nothing written
        assert device.program == compiled.program
        assert len(board.writes) == writes
        assert device.load_model(blob, force=True)
    assert len(board.writes) > writes and board.model_loaded


def test_infer_matches_the_golden_model(board, tiny):
    compiled, image = tiny
    with connect(board) as device:
        with pytest.raises(DeviceError, match="call load_model first"):
            device.infer(image)
        device.load_model(compiled.blob)
        result = device.infer(image)
    np.testing.assert_array_equal(result.logits, run_integer(compiled.blob, image).logits)
    steps = compiled.program.descriptors
    assert result.layer_cycles == [(d.name, 100 * (i + 1)) for i, d in enumerate(steps)]
    assert (result.cycles, result.busy_lane_cycles, result.mac_issues) == (
        sum(100 * (i + 1) for i in range(32)), 7, 9)
    assert board.runs == 1


@pytest.mark.parametrize("fault", ["corrupt", "bad_crc", "cut", "drop", "ignore"])
def test_lost_or_corrupted_frames_are_retried(board, fault):
    board.faults[cmd.CMD_INFO] = [fault]
    with connect(board, timeout=0.3) as device:
        device.frame_gap = 0.1
        assert device.info().build_id == BUILD_ID
        assert device.resent == 1


def test_stale_replies_and_garbage_are_skipped(board):
    board.faults[cmd.CMD_INFO] = ["stale"]
    with connect(board) as device:
        assert device.info().build_id == BUILD_ID
        assert (device.resent, device.stale) == (0, 1)


def test_run_is_not_resent_while_it_runs(board, tiny):
    compiled, image = tiny
    board.run_seconds = 1.0
    with connect(board, timeout=0.3) as device:
        device.load_model(compiled.blob)
        board.faults[cmd.CMD_RUN] = ["drop"]
        result = device.infer(image)
    np.testing.assert_array_equal(result.logits, run_integer(compiled.blob, image).logits)
    assert board.runs == 1 and board.log.count(cmd.CMD_RUN) == 1


@pytest.mark.parametrize("fault, runs", [("drop", 2), ("ignore", 1)])
def test_uncertain_run_is_redone_from_the_input(board, tiny, fault, runs):
    compiled, image = tiny
    with connect(board, timeout=0.3) as device:
        device.load_model(compiled.blob)
        board.faults[cmd.CMD_RUN] = [fault]
        board.log.clear()
        result = device.infer(image)
    np.testing.assert_array_equal(result.logits, run_integer(compiled.blob, image).logits)
    assert board.runs == runs
    assert board.log.count(cmd.CMD_WRITE_ACT) == 2      # the input (one chunk) written again


def test_busy_answer_to_a_resent_run_means_it_started(board, tiny):
    compiled, _ = tiny
    board.run_seconds = 0.5
    with connect(board) as device:
        device.load_model(compiled.blob)
        board.faults[cmd.CMD_RUN] = ["exec_bad_crc"]
        device.start_run(0, len(compiled.program.descriptors))
        assert board.runs == 1 and device.resent == 1
        with pytest.raises(DeviceStatusError, match="WRITE_ACT at 0x0: .* busy"):
            device.write_act(0, b"\x00")
        device.wait(timeout=5)
        device.write_act(0, b"\x00")


def test_silent_device_times_out(board):
    board.silent = True
    start = time.monotonic()
    with connect(board, timeout=0.2, retries=2) as device:
        with pytest.raises(DeviceTimeout, match=r"INFO: no reply from socket://127\.0\.0\.1:\d+ "
                                                r"within 0.2 s \(2 attempts\)"):
            device.info()
    assert time.monotonic() - start < 2


def test_run_that_does_not_end_times_out(board, tiny):
    compiled, _ = tiny
    board.run_seconds = 3
    with connect(board) as device:
        device.load_model(compiled.blob)
        device.start_run(0, len(compiled.program.descriptors))
        with pytest.raises(DeviceTimeout, match="WAIT: the run on .* did not end within 0.3 s"):
            device.wait(timeout=0.3)


def test_nothing_listening_fails_fast():
    url = f"socket://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(DeviceConnectionError, match=f"cannot open {url}"):
        Device.open(url)
    assert time.monotonic() - start < 2


def test_missing_serial_port():
    with pytest.raises(DeviceConnectionError, match="cannot open /dev/ttyNOSUCHPORT"):
        Device.open("/dev/ttyNOSUCHPORT")


def test_connection_lost(board):
    board.faults[cmd.CMD_STATUS] = ["hangup"]
    with connect(board) as device:
        with pytest.raises(DeviceConnectionError, match="STATUS: connection to .* lost"):
            device.status()


@pytest.mark.parametrize("kwargs, message", [
    ({"link_version": 2}, "INFO: socket://.* speaks link version 2, this driver speaks 1"),
    ({"port_version": 2}, "INFO: socket://.* has host port version 2, this driver speaks 1")])
def test_version_mismatch(kwargs, message):
    board = FakeBoard(**kwargs)
    try:
        with connect(board) as device:
            with pytest.raises(ProtocolVersionError, match=message):
                device.info()
    finally:
        board.close()


def test_model_too_large(tiny):
    board = FakeBoard(weight_bytes=1024)
    try:
        with connect(board) as device:
            with pytest.raises(ModelFitError, match=r"socket://.*: model does not fit the "
                                                    r"accelerator .* weight buffer holds 1,024 "
                                                    r"bytes, the blob has"):
                device.load_model(tiny[0].blob)
        assert board.writes == []
    finally:
        board.close()


def test_error_status_names_the_command(board):
    with connect(board) as device:
        with pytest.raises(DeviceStatusError, match="BOGUS: the accelerator answered unknown "
                                                    "command") as info:
            device._command(b"\x7f", "BOGUS")
        assert info.value.status == cmd.STATUS_UNKNOWN_COMMAND
        with pytest.raises(DeviceError, match="READ_ACT: the host port dropped the command"):
            device._command(cmd.read_act(0, 4)[:5], "READ_ACT")


def test_reply_overflow_is_reported(board):
    with connect(board) as device:
        with pytest.raises(LinkError, match="READ_ACT: the reply exceeded the 4608-byte"):
            device._command(cmd.read_act(0, MAX_PAYLOAD), "READ_ACT", MAX_PAYLOAD)


def test_run_that_keeps_getting_lost_gives_up(board, tiny):
    compiled, image = tiny
    with connect(board, timeout=0.2, retries=2) as device:
        device.load_model(compiled.blob)
        board.faults[cmd.CMD_RUN] = ["ignore", "ignore"]
        with pytest.raises(RunUncertainError, match="RUN steps 0..13: no reply from .* within "
                                                    "0.2 s, and the accelerator is not running"):
            device.infer(image)
    assert board.runs == 0


def test_infer_waits_for_a_run_another_client_left_going(board, tiny):
    compiled, image = tiny
    board.run_seconds = 0.5
    with connect(board) as device:
        device.load_model(compiled.blob)
        device.start_run(0, len(compiled.program.descriptors))
    with connect(board) as device:              # the run is still going
        assert not device.load_model(compiled.blob)
        result = device.infer(image)
    np.testing.assert_array_equal(result.logits, run_integer(compiled.blob, image).logits)
    assert board.runs == 2
