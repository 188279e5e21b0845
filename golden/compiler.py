"""Model compiler: quantized network -> layer program with activation-memory addresses -> blob."""

from dataclasses import dataclass

import numpy as np

from squeezefpga.blob_format import ALIGN, MAX_INPUT_PHASE, OP_CONV, OP_GLOBAL_SUM, OP_MAXPOOL
from squeezefpga.errors import QuantizationError

from .blob import ConvWeights, Descriptor, Model, Program, encode_program
from .image import load_image
from .importer import load_compressed
from .network import Concat, Conv, GlobalAvgPool, MaxPool, lower_adds
from .polyphase import phase_shape, phase_split_weights, split_conv_out, split_kernel
from .quantize import calibration_images, quantize

__all__ = ["input_phase", "build_program", "compile_model", "compile_file", "Compiled"]


def _align(n):
    return n + (-n % ALIGN)


class _Arena:
    """First-fit allocator over a linear activation memory."""

    def __init__(self):
        self.blocks = {}   # name -> (start, size)
        self.peak = 0

    def alloc(self, name, size):
        size = _align(size)
        start = 0
        for s, n in sorted(self.blocks.values()):
            if start + size <= s:
                break
            start = max(start, s + n)
        self.blocks[name] = (start, size)
        self.peak = max(self.peak, start + size)
        return start

    def free(self, name):
        del self.blocks[name]


def input_phase(network):
    """Polyphase factor s of ``network``'s input: the stride of an unpadded first conv on
    ``"data"`` (1 if there is none); checks that every other conv has stride 1.

    The conv engine only does stride 1, so a stride-s first layer runs as the stride-1 conv of
    the s*s phases of the image (:mod:`.polyphase`), which the host stores in their place.
    """
    shapes = network.shapes()
    first = network.ops[0]
    phase = 1
    if isinstance(first, Conv) and first.src == "data" and first.stride > 1:
        s, k = first.stride, first.kernel
        if first.pad:
            raise QuantizationError(f"{first.name}: a stride-{s} first layer must be unpadded "
                                    f"to run polyphase-split, it has pad {first.pad}")
        if s > MAX_INPUT_PHASE:
            raise QuantizationError(f"{first.name}: stride {s} exceeds the largest polyphase "
                                    f"input split, {MAX_INPUT_PHASE}")
        _, h, w = shapes["data"]
        for side in (h, w):
            split, direct = split_conv_out(side, k, s)
            if split != direct:
                raise QuantizationError(
                    f"{first.name}: a {k}x{k} stride-{s} conv of a {h}x{w} input gives "
                    f"{direct} outputs per side, but the stride-1 conv over its phases "
                    f"would give {split}; the polyphase rewrite does not crop")
        phase = s
    for op in network.ops:
        if isinstance(op, Conv) and op.stride != 1 and (op is not first or phase == 1):
            raise QuantizationError(f"{op.name}: stride {op.stride}; the accelerator's conv "
                                    "engine is stride 1 and runs a strided conv only as the "
                                    "first layer (stride 2..4 on the image, unpadded)")
        if phase > 1 and op is not first and "data" in op.inputs:
            raise QuantizationError(f"{op.name}: reads the input image, which is stored "
                                    f"phase-split for {first.name}")
    return phase


def build_program(network, qmodel):
    """Lay out every tensor in activation memory and emit one descriptor per hardware step.

    Concatenations cost nothing: both expand branches write into one (C, H, W) region at their
    channel offset. An add runs as a 1x1 conv over its two operands, which are laid out side
    by side the same way (:func:`~.network.lower_adds`). Each region is freed after its last
    reader, and the output of a step never overlaps its input. A stride-s first conv is
    emitted as the equivalent stride-1 conv of the image's phases (:func:`input_phase`); the
    input region then holds the phases.
    """
    network = lower_adds(network)
    phase = input_phase(network)
    shapes = network.shapes()
    shapes["data"] = phase_shape(shapes["data"], phase)
    root, offset = {"data": "data"}, {"data": 0}
    for op in network.ops:
        root[op.name], offset[op.name] = op.name, 0
        if isinstance(op, Concat):
            at = 0
            for s in op.srcs:
                if s == "data":
                    raise QuantizationError(f"{op.name}: concatenates or adds the input "
                                            "image, which has a region of its own")
                if root[s] != s:
                    raise QuantizationError(
                        f"{s}: is an operand of both {root[s]} and {op.name}; a tensor can "
                        "sit beside only one other (concatenation, or the operands of an "
                        "add)")
                root[s], offset[s] = op.name, at
                c, h, w = shapes[s]
                at += c * h * w
    for name in list(root):     # concat of a concat: resolve to the outermost region
        while root[root[name]] != root[name]:
            offset[name] += offset[root[name]]
            root[name] = root[root[name]]
    steps = [op for op in network.ops if isinstance(op, (Conv, MaxPool, GlobalAvgPool))]
    last_read = {root[network.output]: len(steps)}
    for i, op in enumerate(steps):
        last_read[root[op.src]] = max(last_read.get(root[op.src], 0), i)

    sums = {op.name for op in steps if isinstance(op, GlobalAvgPool)}

    def size_of(name):
        c, h, w = shapes[name]
        return c * h * w * (4 if name in sums else 1)

    arena = _Arena()
    arena.alloc("data", size_of("data"))
    base = {"data": 0}
    descriptors = []
    for i, op in enumerate(steps):
        if root[op.name] not in base:
            base[root[op.name]] = arena.alloc(root[op.name], size_of(root[op.name]))
        src = base[root[op.src]] + offset[op.src]
        dst = base[root[op.name]] + offset[op.name]
        if isinstance(op, Conv):
            q = qmodel.layers[op.name]
            kernel, stride, codes = op.kernel, op.stride, q.codes
            if op.src == "data" and phase > 1:
                kernel, stride = split_kernel(kernel, phase), 1
                codes = phase_split_weights(codes, phase)
            descriptors.append(Descriptor(
                op.name, OP_CONV, shapes[op.src], shapes[op.name], src, dst, kernel, stride,
                op.pad, q.multiplier, q.shift, ConvWeights(q.codebook, codes, q.bias)))
        elif isinstance(op, MaxPool):
            descriptors.append(Descriptor(op.name, OP_MAXPOOL, shapes[op.src], shapes[op.name],
                                          src, dst, op.kernel, op.stride))
        else:
            descriptors.append(Descriptor(op.name, OP_GLOBAL_SUM, shapes[op.src],
                                          shapes[op.name], src, dst))
        for name in [n for n, last in last_read.items() if last == i and n in arena.blocks]:
            arena.free(name)
    classes = shapes[network.output][0]
    return Program(tuple(network.input_shape), classes, arena.peak, 0,
                   base[root[network.output]], descriptors, phase)


@dataclass
class Compiled:
    """Everything the compiler produced: the blob and what it was made from."""
    blob: bytes
    program: Program
    qmodel: object
    float_model: object

    def fidelity(self, images, reference=None):
        """How far the compression (pruning, codebooks, fixed point) moves the class scores
        from those of the float model ``reference`` (default: the one quantized), on uint8
        BGR ``images``.

        Returns a dict: ``images``; ``top1_agreement`` and mean ``top5_overlap`` (of 5);
        ``relative_error``, the largest ||q - f|| / ||f|| over the images, with q the integer
        logits in float units (the class sums times the scores' scale over the plane size).
        """
        from .float_model import float_forward
        from .integer_model import run_integer
        reference = reference if reference is not None else self.float_model
        network = reference.network
        last = next(d for d in reversed(self.program.descriptors) if d.op == OP_GLOBAL_SUM)
        _, h, w = last.in_shape
        unit = self.qmodel.scales[network.op(network.output).src] / (h * w)
        agree, overlap, error = 0, 0, 0.0
        for image in images:
            f = float_forward(reference, image)[network.output].ravel().astype(np.float64)
            q = run_integer(self.program, image).logits * unit
            agree += int(np.argmax(f) == np.argmax(q))
            overlap += len(set(np.argsort(-f)[:5]) & set(np.argsort(-q)[:5]))
            error = max(error, float(np.linalg.norm(q - f) / max(np.linalg.norm(f), 1e-30)))
        n = max(len(images), 1)
        return {"images": len(images), "top1_agreement": agree / n,
                "top5_overlap": overlap / n, "relative_error": round(error, 6)}

    @property
    def model(self):
        """The blob and its program as a :class:`~.blob.Model` (no decoding needed: the
        program is the one the blob was encoded from)."""
        return Model(self.blob, self.program, "compiled")


def compile_model(float_model, calibration, progress=None):
    """Quantize ``float_model`` with the calibration images and encode it.

    Parameters
    ----------
    float_model : FloatModel
    calibration : list of uint8 BGR images (augmented by :func:`calibration_images`)
    progress : callable, optional
        Receives :class:`squeezefpga.progress.Event` objects (stage ``COMPILE``).
    """
    try:
        # Overflow or NaN in the arithmetic means values the fixed-point format cannot hold:
        # a named error, never a warning and a silently wrong blob.
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            qmodel = quantize(float_model, calibration_images(calibration), progress)
    except FloatingPointError as exc:
        raise QuantizationError(f"{float_model.network.name}: the model's values overflow the "
                                f"quantizer's arithmetic ({exc})") from None
    program = build_program(float_model.network, qmodel)
    return Compiled(encode_program(program), program, qmodel, float_model)


def compile_file(model_path, calibration_paths, progress=None):
    """Compile the ``.net`` file at ``model_path``, calibrated on the pictures given."""
    float_model = load_compressed(model_path)
    size = float_model.network.input_shape[1]
    images = [load_image(p, size) for p in calibration_paths]
    return compile_model(float_model, images, progress)
