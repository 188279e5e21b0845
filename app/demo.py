"""``squeezefpga demo``: the bundled model and cat photo, from compilation to class scores on
the simulated accelerator, told step by step."""

import numpy as np

from squeezefpga import __version__
from squeezefpga.config import AcceleratorConfig
from squeezefpga.golden.image import load_image
from squeezefpga.models import CAT_PHOTO, DEFAULT_MODEL, class_names
from squeezefpga.progress import Stage

from . import report
from .model_cache import load_model
from .progress import TerminalProgress
from .simulate import simulate
from .tasks import golden_scores

__all__ = ["run_demo"]

#: The numbered steps of the demo and the progress stages that belong to them.
STEPS = (
    ((Stage.VERILOG, Stage.VERILATOR, Stage.START),
     "building the {lanes}-lane accelerator in Verilator (cached after the first time)"),
    ((Stage.LOAD,), "loading the model into the simulated board"),
    ((Stage.RUN,), "running the cat through all {steps} program steps"),
)


def run_demo():
    """Print the demo; 0 if the accelerator was bit-exact with the golden model."""
    print(f"squeezefpga {__version__} demo: the Deep Compression SqueezeNet v1.0 on "
          f"{CAT_PHOTO.name}, on the accelerator simulated cycle by cycle")
    total = len(STEPS) + 1
    print(f"[1/{total}] compiling the model to the accelerator's weight format ...", flush=True)
    progress = TerminalProgress(prefix="      ")
    model = load_model(DEFAULT_MODEL, progress=progress)
    program = model.program
    nnz = sum(int(np.count_nonzero(d.weights.codes)) for d in program.convs)
    print(f"      {len(model.blob):,} bytes for {nnz:,} non-zero weights in "
          f"{len(program.convs)} conv layers")
    config = AcceleratorConfig()
    announced = set()

    def on_stage(stage):
        for number, (stages, text) in enumerate(STEPS, 2):
            if stage in stages and number not in announced:
                announced.add(number)
                print(f"[{number}/{total}] " + text.format(lanes=config.lanes,
                                                          steps=len(program.descriptors))
                      + " ...", flush=True)
    progress.on_stage = on_stage
    image = load_image(CAT_PHOTO, program.input_shape[1])
    result = simulate(model, [image], config, progress=progress)[0]
    names = class_names()
    for line in report.top5_text([int(v) for v in result.run.logits], names,
                                 "accelerator (Verilator, bit for bit the hardware):"):
        print(line)
    print(f"cycles {result.run.cycles:,}; ideal {result.ideal_cycles:,.0f} for "
          f"{config.lanes} lanes skipping zero weights; lane utilization "
          f"{result.utilization:.1%}")
    print(f"bit-exact with the golden integer model: {'yes' if result.bitexact else 'NO'}")
    scores = golden_scores(CAT_PHOTO, DEFAULT_MODEL, use_float=True)
    for line in report.top5_text(scores, names, "float32 reference:"):
        print(line)
    return 0 if result.bitexact else 1
