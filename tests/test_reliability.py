"""Bad input and faults as a hostile user makes them: a clear one-line error (exit 2) before
any long work, no process left behind, the simulated board shared safely."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from squeezefpga.app import cli, tasks
from squeezefpga.golden.compiler import compile_model
from squeezefpga.golden.integer_model import input_bytes, run_integer
from squeezefpga.golden.network import tiny_squeezenet
from squeezefpga.host.device import Device, DeviceConnectionError
from squeezefpga.models import CAT_PHOTO
from squeezefpga.sim.board_server import BoardServer

from .test_board import CONFIG
from .test_network import random_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The reduced network's blob and pictures of it, as files."""
    rng = np.random.default_rng(7)
    network = tiny_squeezenet(size=35, conv1_kernel=7)
    images = [rng.integers(0, 256, network.input_shape, dtype=np.uint8) for _ in range(3)]
    model = compile_model(random_model(network, rng), images[:2]).model
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "tiny.sqzf").write_bytes(model.blob)
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / f"noise{i}.png")
        Image.fromarray(np.ascontiguousarray(image[::-1].transpose(1, 2, 0))).save(paths[-1])
    return model, images, folder / "tiny.sqzf", paths


def fails_with(capsys, argv, message):
    assert cli.main(argv) == 2, argv
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("squeezefpga"), err
    assert message in lines[0], lines[0]
    assert "Traceback" not in err


def never(what):
    def called(*args, **kwargs):
        raise AssertionError(f"{what} started before the input was checked")
    return called


# -- checks before the long work ----------------------------------------------------------------

def test_compile_to_a_missing_folder_fails_before_compiling(capsys, monkeypatch):
    monkeypatch.setattr(cli, "load_model", never("compiling"))
    fails_with(capsys, ["compile", "-o", "/nonexistent/dir/x.sqzf"],
               "folder /nonexistent/dir does not exist")


def test_every_lane_count_is_checked_before_the_first_run(capsys, monkeypatch):
    monkeypatch.setattr(tasks, "simulate", never("a simulation"))
    monkeypatch.setattr(cli, "load_model", never("compiling"))
    fails_with(capsys, ["bench", "--lanes", "16,7"], "lanes must be a power of two")
    fails_with(capsys, ["bench", "--lanes", "16,x"], "wants comma-separated integers")


def test_a_private_board_the_model_does_not_fit_is_never_built(capsys, monkeypatch, tiny):
    monkeypatch.setattr(BoardServer, "start", never("building the simulated board"))
    fails_with(capsys, ["classify", str(CAT_PHOTO), "--device", "sim", "--lanes", "8"],
               "border row of 15 pixels exceeds the 8 lanes")


def test_every_picture_is_checked_before_the_model_is_loaded(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "load_model", never("loading the model"))
    monkeypatch.setattr(BoardServer, "start", never("building the simulated board"))
    missing = tmp_path / "missing.png"
    for device in ("sim", "socket://127.0.0.1:1"):
        fails_with(capsys, ["classify", str(CAT_PHOTO), str(missing), "--device", device],
                   f"{missing}: no such image file")


def test_report_and_verilog_outputs_are_checked_first(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "load_model", never("compiling"))
    monkeypatch.setattr(tasks, "emit_verilog_file", never("Verilog generation"))
    fails_with(capsys, ["report", "-o", str(tmp_path / "no" / "r.html")], "does not exist")
    fails_with(capsys, ["sim", str(CAT_PHOTO), "--report", str(tmp_path)], "is a folder")
    fails_with(capsys, ["verilog", "-o", "/nonexistent/x.v"], "does not exist")


# -- URLs and ports -----------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["sim-board", "--port", "70000"], "'70000' is not a TCP port"),
    (["sim-board", "--port", "-1"], "'-1' is not a TCP port"),
    (["classify", str(CAT_PHOTO), "--device", "socket://127.0.0.1"], "needs a host and a port"),
    (["classify", str(CAT_PHOTO), "--device", "socket://127.0.0.1:99999"],
     "port '99999' is not a number in 1..65535"),
    (["classify", str(CAT_PHOTO), "--device", "bogus://x"], "unknown scheme 'bogus'"),
    (["classify", str(CAT_PHOTO), "--device", "socket://127.0.0.1:5555", "--timeout", "0"],
     "'0' is not a positive number of seconds"),
])
def test_urls_and_ports_get_the_project_s_own_messages(capsys, monkeypatch, argv, message):
    monkeypatch.setattr(cli, "load_model", never("loading the model"))
    fails_with(capsys, argv, message)


def test_device_open_checks_the_url_itself():
    for url in ("socket://127.0.0.1", "socket://:5555", "socket://127.0.0.1:0", ""):
        with pytest.raises(DeviceConnectionError):
            Device.open(url)


# -- no orphans ---------------------------------------------------------------------------------

def children(pid):
    """Process ids whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def command_line(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().decode(errors="replace")
    except OSError:
        return ""


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def board_of(process, deadline=600):
    """The simulator process a CLI started, once it is up (a build may come first)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert process.poll() is None, process.stderr.read()
        boards = [pid for pid in children(process.pid) if "board" in command_line(pid)]
        if boards:
            return boards[0]
        time.sleep(0.1)
    raise AssertionError("the command never started its simulator")


def wait_gone(pid, deadline=120):
    end = time.monotonic() + deadline
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.1)
    return not alive(pid)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_killed_command_leaves_no_simulator(tiny, how):
    _, _, blob, paths = tiny
    process = subprocess.Popen(
        [sys.executable, "-m", "squeezefpga", "classify", *map(str, paths * 50), "--device",
         "sim", "--lanes", "8", "--blob", str(blob)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"})
    try:
        board = board_of(process)
        process.send_signal(how)
        status = process.wait(120)
        if how != signal.SIGKILL:
            assert status == 130 and "interrupted" in process.stderr.read()
        # SIGKILL leaves the CLI no chance: the simulator notices its parent is gone.
        assert wait_gone(board), f"simulator {board} outlived the command"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


# -- the simulated board, shared ----------------------------------------------------------------

def test_an_idle_client_is_dropped(tiny):
    with BoardServer.start(CONFIG, idle_timeout=1) as server:
        with Device.open(server.url) as idle:
            idle.info()
            # The board drops it after 1 s of silence: then the next client is served.
            end = time.monotonic() + 120
            while time.monotonic() < end and "idle" not in server.log_text():
                time.sleep(0.1)
            assert "dropped 127.0.0.1" in server.log_text()
            with Device.open(server.url) as second:
                assert second.info().lanes == 8
            with pytest.raises(DeviceConnectionError, match="lost"):
                idle.info()


def test_the_next_client_is_told_of_a_run_left_going(tiny):
    model, images, _, _ = tiny
    events = []
    with BoardServer.start(CONFIG, cycles_per_second=20_000) as server:
        with Device.open(server.url) as first:
            first.load_model(model)
            first.write_act(model.program.input_addr, input_bytes(model.program, images[0]))
            first.start_run(0, len(model.program.descriptors))
        with Device.open(server.url) as second:        # the run is still going
            result = second.load_model(model, events.append)
            assert result is False
            second.infer(images[1], progress=events.append)
    told = [e for e in events if "another client" in e.message]
    assert told and "step" in told[0].message
    assert any(e.total == len(model.program.descriptors) for e in told)


@pytest.mark.slow
def test_soak_twenty_images_with_garbage_and_reconnects(tiny):
    """20 pictures through one simulated board, garbage bursts and reconnects between them:
    every result equals golden, and neither file descriptors nor memory grow."""
    model, images, _, _ = tiny
    rng = np.random.default_rng(99)

    def usage(pid):
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/status") as status:
            rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
        return fds, rss

    with BoardServer.start(CONFIG) as server:
        samples = []
        for n in range(20):
            with socket.create_connection((server.host, server.port), timeout=10) as raw:
                raw.sendall(rng.integers(0, 256, int(rng.integers(1, 8192)),
                                         dtype=np.uint8).tobytes())
            with Device.open(server.url) as device:
                device.load_model(model)
                image = rng.integers(0, 256, model.program.input_shape, dtype=np.uint8)
                result = device.infer(image)
                np.testing.assert_array_equal(result.logits,
                                              run_integer(model.program, image).logits)
            samples.append((usage(server.pid), usage(os.getpid())))
        (board_fds0, board_rss0), (own_fds0, _) = samples[4]
        (board_fds1, board_rss1), (own_fds1, _) = samples[-1]
        assert board_fds1 <= board_fds0 and own_fds1 <= own_fds0
        assert board_rss1 - board_rss0 < 1024, json.dumps(samples)   # kB


# -- BLAS threads -------------------------------------------------------------------------------

BLAS_PROBE = ("import squeezefpga.golden.compiler, threadpoolctl; "
              "print(sorted({p['num_threads'] for p in threadpoolctl.threadpool_info() "
              "if p['user_api'] == 'blas'}))")


def test_one_blas_thread_unless_the_user_sets_it():
    """OpenBLAS threads oversubscribe a loaded machine (compile: 14 s vs 165 s)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    probe = subprocess.run([sys.executable, "-c", BLAS_PROBE], env=env, capture_output=True,
                           text=True, check=True)
    assert probe.stdout.strip() == "[1]"
    env["OPENBLAS_NUM_THREADS"] = "2"
    probe = subprocess.run([sys.executable, "-c", BLAS_PROBE], env=env, capture_output=True,
                           text=True, check=True)
    assert probe.stdout.strip() == "[2]"
