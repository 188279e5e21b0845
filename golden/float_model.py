"""Float32 reference forward pass of any :class:`~.network.Network`."""

import numpy as np

from squeezefpga.errors import ModelFormatError

from .image import BGR_MEAN
from .network import Add, Concat, Conv, GlobalAvgPool, MaxPool
from .ops import conv2d, max_pool_ceil

__all__ = ["float_forward"]


def float_forward(model, image):
    """Run ``model`` (a :class:`~.importer.FloatModel`) on a uint8 BGR (3, H, W) image.

    Returns every tensor keyed by operation name (``"data"`` is the mean-subtracted input);
    the class scores are ``tensors[model.network.output].ravel()``.
    """
    network = model.network
    if image.shape != tuple(network.input_shape):
        raise ValueError(f"image shape {image.shape} != network input {network.input_shape}")
    mean = np.asarray(BGR_MEAN, np.float32)[:, None, None]
    tensors = {"data": image.astype(np.float32) - mean}
    for op in network.ops:
        try:
            with np.errstate(over="raise", invalid="raise", divide="raise"):
                _forward_op(model, op, tensors)
        except FloatingPointError as exc:
            raise ModelFormatError(f"{network.name}: {op.name}: the float reference overflows "
                                   f"({exc}); the model's values are too large") from None
    return tensors


def _forward_op(model, op, tensors):
    """Compute the tensor of ``op`` into ``tensors``."""
    if isinstance(op, Conv):
        y = conv2d(tensors[op.src], model.weights[op.name], op.stride, op.pad)
        y += model.biases[op.name][:, None, None]
        tensors[op.name] = np.maximum(y, 0, out=y)
    elif isinstance(op, MaxPool):
        tensors[op.name] = max_pool_ceil(tensors[op.src], op.kernel, op.stride)
    elif isinstance(op, Concat):
        tensors[op.name] = np.concatenate([tensors[s] for s in op.srcs])
    elif isinstance(op, Add):
        tensors[op.name] = sum(tensors[s] for s in op.srcs)
    elif isinstance(op, GlobalAvgPool):
        tensors[op.name] = tensors[op.src].mean(axis=(1, 2), keepdims=True)
    else:
        raise TypeError(f"unknown operation {op!r}")
