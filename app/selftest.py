"""``squeezefpga selftest``: the bring-up checks of a board (or of the simulated board), each
reported pass, fail or skipped with one line that says why.

1. link: frames of random bytes written into the activation memory and read back (the
   framing, the CRCs and the host port, both ways);
2. sdram: the pattern test in the device's gateware (:mod:`squeezefpga.sdram`): walking
   ones and zeros on the data bus, every address line, then every word written and read back
   twice; a fault is named as the data bit or the address line it is;
3. model: the loaded model's blob checked again against its CRC-32, on the device;
4. program: a small built-in network run on the device, its scores compared with the golden
   model's. It replaces the device's model, so it runs last.
"""

import time
from dataclasses import asdict, dataclass

import numpy as np

from squeezefpga.golden.compiler import compile_model
from squeezefpga.golden.image import load_image
from squeezefpga.golden.integer_model import run_integer
from squeezefpga.golden.network import tiny_squeezenet
from squeezefpga.golden.synthetic import synthetic_model
from squeezefpga.host.device import DeviceError, DeviceStatusError
from squeezefpga.models import CAT_PHOTO
from squeezefpga.progress import Stage, emit
from squeezefpga.sdram import WORDS

__all__ = ["Check", "run_selftest", "builtin_model", "LINK_BYTES"]

#: Random bytes the link check sends and reads back.
LINK_BYTES = 16 * 1024
#: The built-in program's seed (its weights, hence its known scores, never change).
SELFTEST_SEED = 7


@dataclass
class Check:
    """One check's outcome: ``status`` is "pass", "fail" or "skip"."""
    name: str
    status: str
    detail: str
    seconds: float

    def json(self):
        return asdict(self)


def builtin_model():
    """(Model, image) of the built-in program: the reduced SqueezeNet with synthetic weights,
    on the bundled cat at its input size."""
    network = tiny_squeezenet()
    image = load_image(CAT_PHOTO, network.input_shape[1])
    return compile_model(synthetic_model(network, seed=SELFTEST_SEED), [image]).model, image


def _link(device, rng):
    data = rng.integers(0, 256, LINK_BYTES, dtype=np.uint8).tobytes()
    size = device.info().activation_bytes
    data = data[:size]
    device.write_act(0, data)
    back = device.read_act(0, len(data))
    if back != data:
        at = next(i for i, (a, b) in enumerate(zip(data, back)) if a != b)
        return "fail", (f"byte {at} of {len(data)} came back {back[at]:#04x}, sent "
                        f"{data[at]:#04x}")
    return "pass", f"{len(data):,} random bytes written and read back through the link"


def _sdram(device, words, progress):
    if not device.info().sdram_bytes:
        return "skip", "the device has no SDRAM"
    result = device.sdram_test(words, progress=progress)
    return ("pass" if result.passed else "fail"), result.describe()


def _model(device):
    info = device.info()
    if not info.model_loaded:
        return "skip", "no model is loaded"
    try:
        device.verify_model(info.model_crc)
    except DeviceStatusError:
        return "fail", (f"the model in the weight buffer no longer has its CRC-32 "
                        f"{info.model_crc:08x}: load it again")
    return "pass", f"the loaded model's blob still has its CRC-32 {info.model_crc:08x}"


def _program(device, progress):
    model, image = builtin_model()
    try:
        device.load_model(model, progress, force=True)
    except DeviceError as exc:
        return "fail", f"the built-in program did not load: {exc}"
    got = device.infer(image, progress=progress).logits
    expected = run_integer(model.program, image).logits
    if not np.array_equal(got, expected):
        at = int(np.flatnonzero(got != expected)[0])
        return "fail", (f"the built-in program's score {at} is {got[at]}, the golden model's "
                        f"{expected[at]}")
    return "pass", (f"the built-in program ({len(model.program.descriptors)} steps) scored "
                    f"bit for bit like the golden model")


def run_selftest(device, words=WORDS, progress=None, seed=0):
    """Run every check on ``device``; returns a list of :class:`Check`. A check that cannot
    run (the link is gone, say) fails with the device's error; the others still run."""
    rng = np.random.default_rng(seed)
    checks = [("link", lambda: _link(device, rng)),
              ("sdram", lambda: _sdram(device, words, progress)),
              ("model", lambda: _model(device)),
              ("program", lambda: _program(device, progress))]
    results = []
    for name, check in checks:
        emit(progress, Stage.SELFTEST, name)
        start = time.monotonic()
        if name == "program" and any(c.name == "sdram" and c.status == "fail"
                                     for c in results):
            # On a board with SDRAM the program's weights live there.
            results.append(Check(name, "skip", "the SDRAM failed its test", 0.0))
            continue
        try:
            status, detail = check()
        except DeviceError as exc:
            status, detail = "fail", str(exc)
        results.append(Check(name, status, detail, round(time.monotonic() - start, 2)))
    return results
