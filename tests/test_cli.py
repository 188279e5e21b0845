import io
import json
import subprocess
import sys

import pytest
from PIL import Image

from squeezefpga.golden.blob import HEADER
from squeezefpga.app.cli import main
from squeezefpga.app.progress import TerminalProgress
from squeezefpga.progress import Stage, emit
from squeezefpga.models import CAT_PHOTO, COFFEE_PHOTO, DEFAULT_MODEL


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SQUEEZEFPGA_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_compile_json(capsys, tmp_path):
    out = tmp_path / "model.sqzf"
    result = run_json(capsys, "compile", "-o", str(out), "--json")
    assert result["total_bytes"] == out.stat().st_size < 500_000
    convs = [layer for layer in result["layers"] if layer["op"] == "conv"]
    assert len(convs) == 26
    assert sum(layer["nnz"] for layer in convs) == 415_921
    assert all(isinstance(layer["bytes"], int) and layer["name"] for layer in result["layers"])
    assert 0 <= result["padding_bytes"] < 4
    assert (sum(layer["bytes"] for layer in result["layers"]) + HEADER.size
            + result["padding_bytes"] == result["total_bytes"])


def test_compile_table(capsys, tmp_path):
    assert main(["compile", "-o", str(tmp_path / "m.sqzf")]) == 0
    out = capsys.readouterr().out
    assert "fire9/expand3x3" in out and "total:" in out and "sparse" in out


@pytest.mark.parametrize("photo,expected", [(CAT_PHOTO, 285), (COFFEE_PHOTO, 967)])
def test_golden_integer_and_float_agree_on_top1(capsys, photo, expected):
    integer = run_json(capsys, "golden", str(photo), "--json")
    floating = run_json(capsys, "golden", str(photo), "--json", "--float")
    for result in (integer, floating):
        assert len(result["logits"]) == 1000 and len(result["top5"]) == 5
        assert result["top5"][0]["class"] == expected
    assert all(isinstance(v, int) for v in integer["logits"])
    assert all(isinstance(v, float) for v in floating["logits"])
    assert integer["top5"][0]["name"] == floating["top5"][0]["name"]


def test_golden_with_compiled_blob(capsys, tmp_path):
    blob = tmp_path / "m.sqzf"
    run_json(capsys, "compile", "-o", str(blob), "--json")
    direct = run_json(capsys, "golden", str(CAT_PHOTO), "--json", "--blob", str(blob))
    cached = run_json(capsys, "golden", str(CAT_PHOTO), "--json")
    assert direct["logits"] == cached["logits"]


def bad_inputs(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    truncated = tmp_path / "truncated.net"
    truncated.write_bytes(DEFAULT_MODEL.read_bytes()[:300_000])
    garbage_blob = tmp_path / "garbage.sqzf"
    garbage_blob.write_bytes(b"garbage")
    return [
        (["golden", str(tmp_path / "missing.png")], "no such image file"),
        (["golden", str(text)], "not an image"),
        (["golden", str(empty)], "empty"),
        (["golden", str(tiny)], "1x1 pixels"),
        (["golden", str(CAT_PHOTO), "--float", "--model", str(truncated)], "truncated in layer"),
        (["golden", str(CAT_PHOTO), "--model", str(tmp_path / "none.net")], "no such model"),
        (["compile", "--model", str(empty)], "empty"),
        (["golden", str(CAT_PHOTO), "--blob", str(garbage_blob)], "shorter than"),
    ]


def test_bad_input_gives_one_clear_line(capsys, tmp_path):
    for argv, message in bad_inputs(tmp_path):
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith("squeezefpga: error: ") and message in captured.err, argv
        assert "Traceback" not in captured.err


def test_console_script_runs_as_a_program(tmp_path):
    result = subprocess.run([sys.executable, "-m", "squeezefpga", "golden",
                             str(tmp_path / "missing.png")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "no such image file" in result.stderr and "Traceback" not in result.stderr


def test_progress_without_a_terminal_prints_each_message_once():
    """A tool's heartbeat (the same message every second) is one line in a log, not one per
    second; a new message is a new line."""
    stream = io.StringIO()
    show = TerminalProgress(bars=False, stream=stream)
    for message in ["synth_ecp5"] * 5 + ["75 MHz"] * 3:
        stage = Stage.SYNTH if message == "synth_ecp5" else Stage.PLACE_ROUTE
        emit(show, stage, message)
    assert stream.getvalue().splitlines() == ["  synthesis (yosys): synth_ecp5 ...",
                                              "  place and route (nextpnr): 75 MHz ..."]
