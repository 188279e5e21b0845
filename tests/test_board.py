"""The host driver against the simulated board over TCP: the same Device code as for a real
board's serial port, the framed accelerator top in Verilator on the other end."""

import json
import socket
import time

import numpy as np
import pytest
from PIL import Image

from squeezefpga.errors import BlobFormatError
from squeezefpga.golden.compiler import compile_model
from squeezefpga.golden.blob import decode_program
from squeezefpga.golden.integer_model import input_bytes, run_integer
from squeezefpga.golden.network import tiny_squeezenet
from squeezefpga import protocol as cmd
from squeezefpga.app.cli import main
from squeezefpga.host.device import Device
from squeezefpga.host.link import ReplyParser, encode_request
from squeezefpga.protocol import LINK_BAD_CRC, LINK_BAD_VERSION, LINK_OK, LINK_TOO_LONG
from squeezefpga.config import AcceleratorConfig, ModelFitError
from squeezefpga.models import CAT_PHOTO
from squeezefpga.sim.board_server import BoardServer

from .test_network import random_model

CONFIG = AcceleratorConfig(lanes=8, activation_bytes=1 << 16, weight_bytes=1 << 15,
                           max_layers=32, max_taps=1024, max_channels=256,
                           timeout_cycles=200_000)


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(7)
    network = tiny_squeezenet(size=35, conv1_kernel=7)
    images = [rng.integers(0, 256, network.input_shape, dtype=np.uint8) for _ in range(2)]
    compiled = compile_model(random_model(network, rng), images)
    return compiled.blob, images


@pytest.fixture
def board():
    with BoardServer.start(CONFIG) as server:
        yield server


def golden_logits(blob, image):
    return run_integer(blob, image).logits


class RawClient:
    """Bytes straight to the board's socket, for the faults the Device never makes."""

    def __init__(self, server):
        self.sock = socket.create_connection((server.host, server.port), timeout=10)
        self.parser = ReplyParser()

    def send(self, data):
        self.sock.sendall(data)

    def reply(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frames = self.parser.feed(self.sock.recv(65536))
            if frames:
                return frames[0]
        raise AssertionError("no reply frame")

    def close(self):
        self.sock.close()


def test_end_to_end_reduced_network(board, tiny):
    blob, images = tiny
    with Device.open(board.url) as device:
        assert device.info().lanes == 8
        assert device.load_model(blob) is True
        for image in images:
            result = device.infer(image)
            np.testing.assert_array_equal(result.logits, golden_logits(blob, image))
            assert result.cycles > 0 and len(result.layer_cycles) == len(device.model.program.descriptors)
    with Device.open(board.url) as device:        # a second client finds the model loaded
        assert device.load_model(blob) is False
        assert device.info().model_loaded
        np.testing.assert_array_equal(device.infer(images[0]).logits,
                                      golden_logits(blob, images[0]))


def test_garbage_on_the_link_then_the_next_request_succeeds(board, tiny):
    blob, images = tiny
    raw = RawClient(board)
    raw.send(np.random.default_rng(1).integers(0, 256, 10_240, dtype=np.uint8).tobytes())
    raw.close()
    with Device.open(board.url) as device:
        device.load_model(blob)
        np.testing.assert_array_equal(device.infer(images[0]).logits,
                                      golden_logits(blob, images[0]))


def test_bad_frames_get_error_replies_and_the_link_recovers(board):
    raw = RawClient(board)
    good = encode_request(1, cmd.info())
    bad_crc = bytearray(encode_request(2, cmd.info()))
    bad_crc[-1] ^= 0xFF
    raw.send(bytes(bad_crc))
    assert raw.reply().status == LINK_BAD_CRC
    raw.send(encode_request(3, cmd.info(), version=2))
    assert raw.reply().status == LINK_BAD_VERSION
    raw.send(bytes([0xA5, 1, 4, 0xFF, 0xFF]))       # length 65535 > the maximum
    assert raw.reply().status == LINK_TOO_LONG
    raw.send(encode_request(5, cmd.write_act(0, bytes(100)))[:40])   # truncated frame
    # Past the watchdog: 200,000 cycles are ~0.15 s on this board, allow for a loaded machine.
    time.sleep(3)
    raw.send(good)
    reply = raw.reply()
    assert reply.status == LINK_OK and reply.seq == 1 and reply.payload[:4] == cmd.INFO_MAGIC
    raw.send(encode_request(6, bytes([0x77])))      # an unknown command inside a good frame
    reply = raw.reply()
    assert reply.status == LINK_OK and reply.payload == bytes([cmd.STATUS_UNKNOWN_COMMAND])
    raw.close()


def test_client_vanishing_mid_load_and_mid_run(board, tiny):
    blob, images = tiny

    class Vanish(Exception):
        pass

    def vanish(event):
        if event.done > 4096:
            raise Vanish
    device = Device.open(board.url)
    with pytest.raises(Vanish):
        device.load_model(blob, vanish)
    device.close()                                  # mid-load: the model is incomplete
    with Device.open(board.url) as device:
        assert not device.info().model_loaded
        assert device.load_model(blob) is True
        device.write_act(device.model.program.input_addr, input_bytes(device.model.program, images[0]))
        device.start_run(0, len(device.model.program.descriptors))
    # closed mid-run; the next client waits for the run and classifies
    with Device.open(board.url) as device:
        assert device.load_model(blob) is False
        np.testing.assert_array_equal(device.infer(images[1]).logits,
                                      golden_logits(blob, images[1]))


def test_corrupt_or_oversized_model(board, tiny, compiled):
    blob, _ = tiny
    with Device.open(board.url) as device:
        with pytest.raises(BlobFormatError, match="CRC-32"):
            device.load_model(blob[:100] + bytes([blob[100] ^ 1]) + blob[101:])
        with pytest.raises(ModelFitError, match="weight buffer holds 32,768 bytes"):
            device.load_model(compiled.blob)


def test_classify_cli_nothing_listening_fails_fast(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                   # closed again: nothing listens there
    start = time.monotonic()
    assert main(["classify", str(CAT_PHOTO), "--device", f"socket://127.0.0.1:{port}"]) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert err.startswith("squeezefpga: error: ") and f"127.0.0.1:{port}" in err
    assert "nothing is listening" in err


def test_classify_cli_on_a_served_board(capsys, board, tiny, tmp_path):
    blob, images = tiny
    (tmp_path / "tiny.sqzf").write_bytes(blob)
    picture = tmp_path / "noise.png"
    Image.fromarray(np.ascontiguousarray(images[0][::-1].transpose(1, 2, 0))).save(picture)
    assert main(["classify", str(picture), str(picture), "--device", board.url, "--blob",
                 str(tmp_path / "tiny.sqzf"), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["device"] == board.url
    assert len(first["layers"]) == len(decode_program(blob).descriptors)
    np.testing.assert_array_equal(first["logits"], golden_logits(blob, images[0]))


@pytest.mark.slow
def test_real_network_on_the_simulated_board(capsys):
    """Acceptance: `sim-board` + `classify --device socket://...` gives the golden logits."""
    golden = json.loads(_run(capsys, "golden", str(CAT_PHOTO), "--json"))
    with BoardServer.start(AcceleratorConfig()) as server:
        result = json.loads(_run(capsys, "classify", str(CAT_PHOTO), "--device", server.url,
                                 "--json"))
    assert result["logits"] == golden["logits"]
    assert result["cycles"] <= 10_000_000


def _run(capsys, *argv):
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_sim_board_command_serves_and_stops_on_ctrl_c(tmp_path):
    """`squeezefpga sim-board` as a user runs it: serves, survives a client, ends on Ctrl-C
    without leaving the board process behind."""
    import os
    import re
    import signal
    import subprocess
    import sys
    process = subprocess.Popen([sys.executable, "-m", "squeezefpga", "sim-board", "--port", "0",
                                "--lanes", "8"], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONWARNINGS": "error"})
    try:
        url = None
        for line in process.stderr:
            found = re.search(r"listening on (socket://\S+);", line)
            if found:
                url = found.group(1)
                break
        assert url, "sim-board never said where it listens"
        for _ in range(2):                          # a client, then another after it left
            with Device.open(url) as device:
                assert device.info().lanes == 8
        process.send_signal(signal.SIGINT)
        assert process.wait(120) == 0                   # generous: a loaded machine
        assert "stopped" in process.stderr.read()
        with socket.socket() as probe:               # the board process is gone too
            assert probe.connect_ex(("127.0.0.1", int(url.rsplit(":", 1)[1]))) != 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


def test_a_second_concurrent_client_is_told_the_board_is_busy(board):
    from squeezefpga.host.device import DeviceBusyError
    with Device.open(board.url) as first:
        first.info()
        start = time.monotonic()
        with Device.open(board.url, timeout=5, retries=1) as second:
            with pytest.raises(DeviceBusyError, match=r"INFO: socket://\S+ is busy serving "
                                                      r"127\.0\.0\.1:\d+: it serves one client"):
                second.info()
        assert time.monotonic() - start < 5             # an answer, not a timeout
        assert first.info().lanes == 8                  # the first client is still served
    with Device.open(board.url) as third:               # served once the first has left
        assert third.info().lanes == 8
