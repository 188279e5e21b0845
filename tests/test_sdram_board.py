"""The SDRAM-backed board in Verilator: its top with the simulated chip runs a model's tiled
program (golden/tiled_program.py), checked tile by tile, and the whole real network."""

import json

import numpy as np
import pytest

from squeezefpga.app import cli
from squeezefpga.app.simulate import simulate
from squeezefpga.boards.ulx3s import ULX3S_85F
from squeezefpga.config import AcceleratorConfig
from squeezefpga.golden.compiler import compile_model
from squeezefpga.golden.network import tiny_squeezenet
from squeezefpga.golden.tiled_program import tiled_for

from .test_network import random_model


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    """The reduced network with bypasses, and a picture."""
    rng = np.random.default_rng(77)
    network = tiny_squeezenet(size=67, conv1_kernel=7, fires=((8, 16), (8, 16), (8, 16)),
                              bypass=(3,), complex_bypass=(2, 4))
    images = [rng.integers(0, 256, network.input_shape, dtype=np.uint8) for _ in range(2)]
    compiled = compile_model(random_model(network, rng), images)
    blob = tmp_path_factory.mktemp("reduced") / "reduced.sqzf"
    blob.write_bytes(compiled.blob)
    return compiled.model, images, blob


def test_small_buffers_tile_by_tile_on_the_board(reduced):
    """Buffers small enough that the convs run in bands with halo rows and the pools carry a
    row from band to band: every computation's output equals the tiled program's, read back
    after each operation, and the class sums the integer model's."""
    model, images, _ = reduced
    config = AcceleratorConfig(lanes=16, activation_bytes=6 * 1024, weight_bytes=48 * 1024,
                               max_layers=512, max_taps=1024, max_channels=256, sdram_mhz=75)
    tiled = tiled_for(model.program, config)
    assert any(op.row0 for op in tiled.computes)
    result = simulate(model, images[:1], config, check_all=True)[0]
    assert result.first_difference is None and result.bitexact
    assert result.run.sdram_bytes == sum(t.bytes for t in tiled.transfers)


def test_sim_on_the_board_reports_the_sdram(capsys, reduced):
    """Acceptance (default run): `sim --board ulx3s-85f` on the reduced network, step by
    step, bit-exact, with the SDRAM's stall cycles and bytes per layer and in all."""
    _, images, blob = reduced
    from PIL import Image
    picture = blob.parent / "picture.png"
    Image.fromarray(np.ascontiguousarray(images[0][::-1].transpose(1, 2, 0))).save(picture)
    code = cli.main(["sim", str(picture), "--board", "ulx3s-85f", "--lanes", "16", "--blob",
                     str(blob), "--check-all", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert result["bitexact"] and result["first_difference"] is None
    assert result["sdram_bytes"] == sum(row["sdram_bytes"] for row in result["layers"]) > 0
    assert result["sdram_stall_cycles"] == sum(row["sdram_stall_cycles"]
                                               for row in result["layers"])


@pytest.mark.slow
def test_the_real_network_on_the_board(compiled, photos):
    """Acceptance: the real SqueezeNet through the SDRAM on the board's 64-lane top is
    bit-exact and takes at most 1.15 times the cycles of the resident configuration."""
    model = compiled.model
    board = simulate(model, [photos["cat"]], ULX3S_85F.config(64))[0]
    resident = simulate(model, [photos["cat"]], AcceleratorConfig(lanes=64))[0]
    assert board.bitexact and resident.bitexact
    assert board.run.cycles <= 1.15 * resident.run.cycles, (board.run.cycles,
                                                            resident.run.cycles)
