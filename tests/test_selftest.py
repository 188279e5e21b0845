"""The SDRAM board in simulation: the host port's SDRAM commands, the gateware pattern test
through the simulated chip (planted faults named), and ``squeezefpga selftest``."""

import json

import pytest

from squeezefpga import protocol as cmd
from squeezefpga.app import cli
from squeezefpga.boards.ulx3s import ULX3S_85F
from squeezefpga.host.device import Device, DeviceError, DeviceStatusError
from squeezefpga.sdram import WORDS, FaultyMemory, reference_pattern_test
from squeezefpga.sim.board_server import BoardServer

LANES = 8
CONFIG = ULX3S_85F.config(LANES)
QUICK_WORDS = 1 << 16


@pytest.fixture(scope="module")
def board():
    with BoardServer.start(CONFIG, timeout=60) as server:
        yield server


def test_sdram_bytes_round_trip(board):
    """Bytes at odd and even addresses, across a row of the chip (512 words), come back; a
    byte written next to others leaves them alone (byte masks)."""
    data = bytes((i * 37 + 11) & 0xFF for i in range(3000))
    with Device.open(board.url, timeout=60) as device:
        assert device.info().sdram_bytes == 2 * WORDS
        device.write_sdram(0x1FFF, data)
        device.write_sdram(0x2000, b"\xa5")
        expected = data[:1] + b"\xa5" + data[2:]
        assert device.read_sdram(0x1FFF, len(data)) == expected
        with pytest.raises(DeviceError, match="outside the 33,554,432 bytes"):
            device.read_sdram(2 * WORDS - 1, 2)


def test_pattern_test_through_the_chip_is_the_reference(board):
    """The gateware's verdict on the simulated chip equals the reference's on a good memory."""
    with Device.open(board.url, timeout=60) as device:
        result = device.sdram_test(QUICK_WORDS)
        running, progress, again, refreshes = device.sdram_result()
    assert result == reference_pattern_test(FaultyMemory(), QUICK_WORDS)
    assert not running and progress == QUICK_WORDS and again == result
    assert refreshes > 8                    # the power-up's eight, then the periodic ones


@pytest.mark.parametrize("fault, named", [
    ({"stuck_bit": 5, "stuck_value": 1}, "data bit 5 reads 1"),
    ({"stuck_bit": 12, "stuck_value": 0}, "data bit 12 reads 0"),
    ({"dead_line": 11}, "address line A11 (row) is stuck or shorted"),
    ({"dead_line": 2}, "address line A2 ("),
])
def test_planted_chip_faults_are_named(fault, named):
    """A fault planted in the simulated chip fails the gateware's test, which names it as the
    reference names the same fault on a Python memory."""
    with BoardServer.start(CONFIG, timeout=60, faults=fault) as server:
        with Device.open(server.url, timeout=60) as device:
            result = device.sdram_test(QUICK_WORDS)
    assert not result.passed and named in result.describe()
    assert result == reference_pattern_test(FaultyMemory(**fault), QUICK_WORDS)


def test_sdram_commands_without_sdram(proxy_free_board):
    """A device without SDRAM answers the SDRAM commands NO_SDRAM; the driver refuses them
    before sending."""
    with Device.open(proxy_free_board.url, timeout=60) as device:
        assert device.info().sdram_bytes == 0
        with pytest.raises(DeviceError, match="has no SDRAM"):
            device.write_sdram(0, b"x")
        with pytest.raises(DeviceStatusError) as error:
            device._command(cmd.sdram_test(16), "SDRAM_TEST")
        assert error.value.status == cmd.STATUS_NO_SDRAM


@pytest.fixture(scope="module")
def proxy_free_board():
    from squeezefpga.config import AcceleratorConfig
    config = AcceleratorConfig(lanes=LANES, activation_bytes=1 << 16, weight_bytes=1 << 15,
                               max_layers=32, max_taps=1024, max_channels=256)
    with BoardServer.start(config, timeout=60) as server:
        yield server


def run_cli(capsys, argv):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_selftest_passes_on_the_simulated_board(capsys):
    code, out, err = run_cli(capsys, ["selftest", "--device", "sim", "--board", "ulx3s-85f",
                                      "--lanes", str(LANES), "--words", str(QUICK_WORDS),
                                      "--json"])
    assert code == 0, err
    report = json.loads(out)
    assert report["passed"] is True
    status = {c["name"]: c["status"] for c in report["checks"]}
    # A fresh board has no model: the model check is skipped, the built-in program runs.
    assert status == {"link": "pass", "sdram": "pass", "model": "skip", "program": "pass"}


@pytest.mark.parametrize("fault, named", [("stuck-bit=3:1", "data bit 3 reads 1"),
                                          ("dead-line=9", "address line A9 (")])
def test_selftest_names_a_planted_fault(capsys, fault, named):
    code, out, _ = run_cli(capsys, ["selftest", "--device", "sim", "--board", "ulx3s-85f",
                                    "--lanes", str(LANES), "--words", str(QUICK_WORDS),
                                    "--sdram-fault", fault])
    assert code == 1
    line = next(line for line in out.splitlines() if line.strip().startswith("sdram"))
    assert "FAIL" in line and named in line, out
    assert out.strip().splitlines()[-1] == "FAILED: sdram"


@pytest.mark.parametrize("argv, message", [
    (["--sdram-fault", "stuck-bit=16:1"], "--sdram-fault 'stuck-bit=16:1': give stuck-bit"),
    (["--sdram-fault", "dead-line=x"], "--sdram-fault 'dead-line=x': give"),
    (["--words", "0"], "'0' is not a number of SDRAM words"),
])
def test_bad_selftest_options(capsys, argv, message):
    code, _, err = run_cli(capsys, ["selftest", "--device", "sim", "--board", "ulx3s-85f",
                                    *argv])
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_a_fault_needs_a_simulated_board_with_sdram(capsys):
    code, _, err = run_cli(capsys, ["selftest", "--device", "socket://127.0.0.1:1",
                                    "--sdram-fault", "dead-line=3"])
    assert code == 2 and "use it with --device sim" in err
    code, _, err = run_cli(capsys, ["selftest", "--device", "sim", "--sdram-fault",
                                    "dead-line=3"])
    assert code == 2 and "add --board ulx3s-85f" in err


@pytest.mark.slow
def test_selftest_over_the_whole_sdram(capsys):
    """Acceptance: the whole 32 MB, every word written and read back twice, on the simulated
    board of the ULX3S (its chip checks every command's timing and the refresh)."""
    code, out, err = run_cli(capsys, ["selftest", "--device", "sim", "--board", "ulx3s-85f",
                                      "--lanes", str(LANES), "--json"])
    assert code == 0, err
    sdram = next(c for c in json.loads(out)["checks"] if c["name"] == "sdram")
    assert sdram["status"] == "pass" and "16,777,216 words" in sdram["detail"]
