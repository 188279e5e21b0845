"""The device driver (host/device.py) against the real board top in Verilator, through a proxy
that injects the link faults a serial line can cause (tests/fault_proxy.py)."""

import math
import socket
import time

import numpy as np
import pytest

from squeezefpga import protocol as cmd
from squeezefpga.blob_format import OP_CONV
from squeezefpga.config import AcceleratorConfig, ModelFitError
from squeezefpga.golden.blob import ConvWeights, Descriptor, Model, Program, encode_program
from squeezefpga.golden.blob import weight_sections
from squeezefpga.golden.compiler import compile_model
from squeezefpga.golden.integer_model import run_integer
from squeezefpga.golden.network import tiny_squeezenet
from squeezefpga.host.device import (Device, DeviceConnectionError, DeviceError,
                                     DeviceStatusError, DeviceTimeout, LinkError,
                                     ProtocolVersionError, RunUncertainError)
from squeezefpga.protocol import MAX_PAYLOAD
from squeezefpga.sim.board_server import BoardServer

from .fault_proxy import FaultProxy
from .test_network import random_model

# The configuration of tests/test_board.py: one Verilator build serves both.
CONFIG = AcceleratorConfig(lanes=8, activation_bytes=1 << 16, weight_bytes=1 << 15,
                           max_layers=32, max_taps=1024, max_channels=256,
                           timeout_cycles=200_000)
#: Simulation speed of the slow board: a run of the heavy model (about 260,000 cycles) lasts
#: seconds, however loaded the machine (a loaded machine only makes it slower), while a
#: command takes at most some 9,000 cycles.
SLOW_CYCLES_PER_SECOND = 100_000


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(7)
    network = tiny_squeezenet(size=35)
    images = [rng.integers(0, 256, network.input_shape, dtype=np.uint8) for _ in range(2)]
    return compile_model(random_model(network, rng), images).model, images[0]


@pytest.fixture(scope="module")
def heavy():
    """One dense 3x3 conv, 24 -> 24 channels on 20x20: a long run for the slow board."""
    rng = np.random.default_rng(5)
    codes = rng.integers(1, 64, (24, 24, 3, 3)).astype(np.uint8)
    book = np.concatenate([[0], np.arange(1, 64) - 32]).astype(np.int8)
    weights = ConvWeights(book, codes,
                          rng.integers(-100, 100, 24).astype(np.int32))
    d = Descriptor("conv", OP_CONV, (24, 20, 20), (24, 20, 20), 0, 9600, 3, 1, 1, 1 << 14, 18,
                   weights)
    model = Model.decode(encode_program(Program((24, 20, 20), 24, 19200, 0, 9600, [d])))
    return model, rng.integers(0, 256, (24, 20, 20)).astype(np.uint8)


@pytest.fixture(scope="module")
def server():
    with BoardServer.start(CONFIG) as board:
        yield board


@pytest.fixture(scope="module")
def slow_server():
    with BoardServer.start(CONFIG, cycles_per_second=SLOW_CYCLES_PER_SECOND) as board:
        yield board


@pytest.fixture
def proxy(server):
    with FaultProxy((server.host, server.port)) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def slow_proxy(slow_server):
    with FaultProxy((slow_server.host, slow_server.port)) as fault_proxy:
        yield fault_proxy


def connect(proxy, timeout=2.0, retries=3):
    return Device.open(proxy.url, timeout=timeout, retries=retries)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def golden(model, image):
    return run_integer(model.program, image).logits


def test_info(proxy):
    with connect(proxy) as device:
        info = device.info()
    assert (info.port_version, info.lanes, info.activation_bytes, info.weight_bytes,
            info.max_layers, info.max_taps, info.max_channels) == (
        cmd.PORT_VERSION, 8, 1 << 16, 1 << 15, 32, 1024, 256)
    assert info.config.fit_key == CONFIG.fit_key
    assert device.resent == device.stale == 0


def test_load_model_reports_layers_and_is_skipped_when_loaded(proxy, tiny):
    model, _ = tiny
    blob = model.blob
    events = []
    with connect(proxy) as device:
        device.chunk = 512
        assert device.load_model(model, events.append, force=True)
        assert device.model is model
        assert device.read_weights(0, len(blob)) == blob
        info = device.info()
    assert (info.model_loaded, info.model_crc) == (1, model.crc)
    done = [e.done for e in events]
    assert done == sorted(set(done)) and done[-1] == len(blob)
    assert {e.total for e in events} == {len(blob)} and events[-1].finished
    names = list(dict.fromkeys(e.message for e in events))
    assert names == ["program", *(d.name for d in model.program.convs), "names"]
    sections = weight_sections(model)
    for addr, length in proxy.writes:           # no piece straddles two sections
        assert length <= 512
        assert any(s <= addr and addr + length <= e for _, s, e in sections)
    writes = len(proxy.writes)
    assert writes >= math.ceil(len(blob) / 512)
    with connect(proxy) as device:
        assert not device.load_model(model)     # same CRC loaded: nothing written
        assert device.model is model
        assert len(proxy.writes) == writes
        assert device.load_model(model, force=True)
        assert device.info().model_loaded
    assert len(proxy.writes) > writes


def test_load_model_decodes_bytes_once(proxy, tiny):
    model, image = tiny
    with connect(proxy) as device:
        assert isinstance(device.load_model(model.blob), bool)
        assert device.model.program == model.program
        np.testing.assert_array_equal(device.infer(image).logits, golden(model, image))


def test_infer_matches_the_golden_model(proxy, tiny):
    model, image = tiny
    with connect(proxy) as device:
        with pytest.raises(DeviceError, match="call load_model first"):
            device.infer(image)
        device.load_model(model)
        result = device.infer(image)
    np.testing.assert_array_equal(result.logits, golden(model, image))
    steps = model.program.descriptors
    assert [name for name, _ in result.layer_cycles] == [d.name for d in steps]
    assert all(cycles > 0 for _, cycles in result.layer_cycles)
    assert result.cycles >= sum(cycles for _, cycles in result.layer_cycles)
    assert result.busy_lane_cycles > 0 and result.mac_issues > 0
    assert proxy.sent[cmd.CMD_RUN] == 1


@pytest.mark.parametrize("fault", ["corrupt", "bad_crc", "cut", "drop", "ignore"])
def test_lost_or_corrupted_frames_are_retried(proxy, fault):
    proxy.faults[cmd.CMD_INFO] = [fault]
    with connect(proxy, timeout=0.3) as device:
        device.frame_gap = 0.1
        assert device.info().lanes == 8
        assert device.resent == 1


def test_stale_replies_and_garbage_are_skipped(proxy):
    proxy.faults[cmd.CMD_INFO] = ["stale"]
    with connect(proxy) as device:
        assert device.info().lanes == 8
        assert (device.resent, device.stale) == (0, 1)


def test_run_is_not_resent_while_it_runs(slow_proxy, heavy):
    model, image = heavy
    with connect(slow_proxy, timeout=1.0) as device:
        device.load_model(model)
        slow_proxy.faults[cmd.CMD_RUN] = ["drop"]
        result = device.infer(image)
    np.testing.assert_array_equal(result.logits, golden(model, image))
    assert slow_proxy.sent[cmd.CMD_RUN] == 1


@pytest.mark.parametrize("fault, runs", [("drop", 2), ("ignore", 1)])
def test_uncertain_run_is_redone_from_the_input(proxy, tiny, fault, runs):
    model, image = tiny
    with connect(proxy, timeout=0.3) as device:
        device.load_model(model)
        proxy.faults[cmd.CMD_RUN] = [fault]
        proxy.sent.clear()
        result = device.infer(image)
    np.testing.assert_array_equal(result.logits, golden(model, image))
    assert proxy.sent[cmd.CMD_RUN] == runs
    assert proxy.sent[cmd.CMD_WRITE_ACT] == 2      # the input (one chunk) written again


def test_busy_answer_to_a_resent_run_means_it_started(slow_proxy, heavy):
    model, _ = heavy
    with connect(slow_proxy) as device:
        device.load_model(model)
        slow_proxy.faults[cmd.CMD_RUN] = ["exec_bad_crc"]
        device.start_run(0, len(model.program.descriptors))
        assert slow_proxy.sent[cmd.CMD_RUN] == 2 and device.resent == 1
        with pytest.raises(DeviceStatusError, match="WRITE_ACT at 0x0: .* busy"):
            device.write_act(0, b"\x00")
        device.wait(timeout=600)
        device.write_act(0, b"\x00")


def test_silent_device_times_out(proxy):
    proxy.silent = True
    start = time.monotonic()
    with connect(proxy, timeout=0.2, retries=2) as device:
        with pytest.raises(DeviceTimeout, match=r"INFO: no reply from socket://127\.0\.0\.1:\d+ "
                                                r"within 0.2 s \(2 attempts\)"):
            device.info()
    assert time.monotonic() - start < 30


def test_run_that_does_not_end_times_out(slow_proxy, heavy):
    model, _ = heavy
    with connect(slow_proxy) as device:
        device.load_model(model)
        device.start_run(0, len(model.program.descriptors))
        with pytest.raises(DeviceTimeout, match="WAIT: the run on .* did not end within 0.3 s"):
            device.wait(timeout=0.3)
        device.wait(timeout=600)


def test_nothing_listening_fails_fast():
    url = f"socket://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(DeviceConnectionError, match=f"cannot open {url}"):
        Device.open(url)
    assert time.monotonic() - start < 2


def test_missing_serial_port():
    with pytest.raises(DeviceConnectionError, match="cannot open /dev/ttyNOSUCHPORT"):
        Device.open("/dev/ttyNOSUCHPORT")


def test_connection_lost(proxy):
    proxy.faults[cmd.CMD_STATUS] = ["hangup"]
    with connect(proxy) as device:
        with pytest.raises(DeviceConnectionError, match="STATUS: connection to .* lost"):
            device.status()


@pytest.mark.parametrize("attribute, value, message", [
    ("reply_version", 2, "INFO: socket://.* speaks link version 2, this driver speaks 1"),
    ("port_version", 2, "INFO: socket://.* has host port version 2, this driver speaks 3")])
def test_version_mismatch(proxy, attribute, value, message):
    setattr(proxy, attribute, value)
    with connect(proxy) as device:
        with pytest.raises(ProtocolVersionError, match=message):
            device.info()


def big_model():
    """A valid one-layer model whose blob exceeds the 32 KiB weight buffer."""
    rng = np.random.default_rng(3)
    codes = rng.integers(1, 64, (256, 256, 1, 1)).astype(np.uint8)
    weights = ConvWeights(np.arange(64, dtype=np.int8), codes,
                          np.zeros(256, np.int32))
    d = Descriptor("big", OP_CONV, (256, 2, 2), (256, 2, 2), 0, 1024, 1, 1, 0, 1 << 14, 20,
                   weights)
    return Model.decode(encode_program(Program((256, 2, 2), 256, 2048, 0, 1024, [d])))


def test_model_too_large(proxy):
    model = big_model()
    assert len(model.blob) > 1 << 15
    with connect(proxy) as device:
        with pytest.raises(ModelFitError, match=r"socket://.*: model does not fit the "
                                                r"accelerator .* weight buffer holds 32,768 "
                                                r"bytes, the blob has"):
            device.load_model(model)
    assert proxy.writes == []


def test_error_status_names_the_command(proxy):
    with connect(proxy) as device:
        with pytest.raises(DeviceStatusError, match="BOGUS: the accelerator answered unknown "
                                                    "command") as info:
            device._command(b"\x7f", "BOGUS")
        assert info.value.status == cmd.STATUS_UNKNOWN_COMMAND
        with pytest.raises(DeviceError, match="READ_ACT: the host port dropped the command"):
            device._command(cmd.read_act(0, 4)[:5], "READ_ACT", timeout=5)


def test_reply_overflow_is_reported(proxy):
    with connect(proxy) as device:
        with pytest.raises(LinkError, match="READ_ACT: the reply exceeded the 4608-byte"):
            device._command(cmd.read_act(0, MAX_PAYLOAD), "READ_ACT", MAX_PAYLOAD)


def test_run_that_keeps_getting_lost_gives_up(proxy, tiny):
    model, image = tiny
    with connect(proxy, timeout=0.2, retries=2) as device:
        device.load_model(model)
        proxy.sent.clear()
        proxy.faults[cmd.CMD_RUN] = ["ignore", "ignore"]
        steps = len(model.program.descriptors)
        with pytest.raises(RunUncertainError, match=f"RUN steps 0..{steps - 1}: no reply from "
                                                    ".* within 0.2 s, and the accelerator is "
                                                    "not running"):
            device.infer(image)
    assert proxy.sent[cmd.CMD_RUN] == 0


def test_infer_waits_for_a_run_another_client_left_going(slow_proxy, heavy):
    model, image = heavy
    with connect(slow_proxy) as device:
        device.load_model(model)
        device.start_run(0, len(model.program.descriptors))
    with connect(slow_proxy) as device:              # the run is still going
        assert device.status().running
        assert not device.load_model(model)
        result = device.infer(image)
    np.testing.assert_array_equal(result.logits, golden(model, image))
    assert slow_proxy.sent[cmd.CMD_RUN] == 2
