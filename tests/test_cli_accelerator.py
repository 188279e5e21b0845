"""The accelerator commands: verilog, sim (the full real SqueezeNet in Verilator), demo.

These share the build cache ($SQUEEZEFPGA_CACHE, set by .ci/run), so the 64-lane Verilator
model is built once per run.
"""

import json

import numpy as np
import pytest
from PIL import Image

from squeezefpga.app.cli import main
from squeezefpga.golden import blob as blob_module
from squeezefpga.golden import integer_model
from squeezefpga.golden.compiler import compile_model
from squeezefpga.golden.network import tiny_squeezenet
from squeezefpga.models import CAT_PHOTO

from .test_network import random_model


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_verilog_lints_clean(capsys, tmp_path):
    out = tmp_path / "accel.v"
    report = run_json(capsys, "verilog", "--lanes", "8", "-o", str(out), "--lint", "--json")
    assert report["lint"] == "clean" and report["lanes"] == 8
    text = out.read_text()
    assert "module top(" in text and "module sqz_ram" in text


@pytest.mark.parametrize("argv,message", [
    (["verilog", "--lanes", "12", "-o", "x.v"], "lanes must be a power of two"),
    (["sim", str(CAT_PHOTO), "--lanes", "8"], "border row of 15 pixels exceeds the 8 lanes"),
])
def test_bad_configuration_is_a_clear_error(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("squeezefpga: error: ") and message in err


def test_one_sim_run_decodes_the_blob_once(capsys, tmp_path, monkeypatch):
    rng = np.random.default_rng(11)
    network = tiny_squeezenet(size=35)
    image = rng.integers(0, 256, network.input_shape, dtype=np.uint8)
    compiled = compile_model(random_model(network, rng), [image])
    (tmp_path / "tiny.sqzf").write_bytes(compiled.blob)
    Image.fromarray(np.ascontiguousarray(image[::-1].transpose(1, 2, 0))).save(
        tmp_path / "noise.png")
    calls = []
    real = blob_module.decode_program

    def counting(*args, **kwargs):
        calls.append(args[1:2])
        return real(*args, **kwargs)
    for module in (blob_module, integer_model):
        monkeypatch.setattr(module, "decode_program", counting)
    result = run_json(capsys, "sim", str(tmp_path / "noise.png"), "--lanes", "8", "--blob",
                      str(tmp_path / "tiny.sqzf"), "--json")
    assert result["bitexact"]
    assert calls == [(str(tmp_path / "tiny.sqzf"),)]


@pytest.mark.slow
def test_sim_full_network_is_bitexact(capsys):
    """The real SqueezeNet v1.0 on the cat photo, every intermediate tensor compared."""
    golden = run_json(capsys, "golden", str(CAT_PHOTO), "--json")
    result = run_json(capsys, "sim", str(CAT_PHOTO), "--check-all", "--json")
    assert result["first_difference"] is None
    assert result["bitexact"] and result["logits"] == golden["logits"]
    assert result["top5"][0]["class"] == golden["top5"][0]["class"]
    assert len(result["layers"]) == 30
    assert sum(layer["cycles"] for layer in result["layers"]) == result["cycles"]
    # The budget for 64 lanes: cycles are deterministic, so this is a regression
    # guard, not a timing test.
    assert result["ideal_cycles"] < result["cycles"] <= 10_000_000


@pytest.mark.slow
@pytest.mark.parametrize("network", ["v1.1", "v1.0-bypass", "v1.0-complex-bypass"])
def test_sim_full_size_variants_are_bitexact(capsys, network):
    """The other SqueezeNets at full ImageNet size with synthetic pruned weights (a fixed
    seed), in the larger simulation configuration: the whole logits equal the golden
    model's."""
    golden = run_json(capsys, "golden", str(CAT_PHOTO), "--network", network, "--json")
    result = run_json(capsys, "sim", str(CAT_PHOTO), "--network", network, "--json")
    assert result["bitexact"] and result["first_difference"] is None
    assert result["logits"] == golden["logits"] and len(result["logits"]) == 1000
    steps = {"v1.1": 30, "v1.0-bypass": 34, "v1.0-complex-bypass": 42}[network]
    assert len(result["layers"]) == steps
    assert sum(layer["cycles"] for layer in result["layers"]) == result["cycles"]


@pytest.mark.slow
def test_demo_runs_the_accelerator(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "Egyptian cat" in out and "lane utilization" in out
    assert "bit-exact with the golden integer model: yes" in out
