"""ONNX import: a SqueezeNet of the family, as torchvision or a Caffe-to-ONNX converter exports
it, read into a :class:`~.network.Network` and a float :class:`~.importer.FloatModel`.

What is accepted is what the accelerator can run, checked node by node; anything else is a
:class:`~squeezefpga.errors.ModelFormatError` naming the node and the reason:

- ``Conv`` (square kernel, equal strides and symmetric pads, no dilation, no groups, weights
  and bias as initializers), each followed by its ``Relu``: the accelerator's tensors are
  uint8, so a conv output is only ever read through its ReLU;
- ``MaxPool`` without padding (``ceil_mode`` as exported; floor mode only where it gives the
  same size, since the hardware pools in Caffe's ceil mode), ``Concat`` on channels, ``Add``
  of two tensors of one shape;
- ``GlobalAveragePool``, or an ``AveragePool`` whose window is the whole plane, as the class
  scores; after it ``Flatten``, ``Reshape`` and ``Softmax`` (softmax keeps the order of the
  scores, the accelerator gives the scores before it);
- ``Dropout`` (identity at inference), a ``Relu`` of a tensor that cannot be negative
  (identity), ``Constant`` (the shape of a ``Reshape``).

The image enters as the graph's one non-initializer input, N x 3 x H x W with H = W. The
preprocessing the model was trained with is folded into the first conv, exactly (it must be
unpadded): ``"torchvision"`` means RGB scaled to 0..1 and normalised by ImageNet's mean and
standard deviation; ``"caffe"`` means BGR in 0..255 minus :data:`~.image.BGR_MEAN`, as the
bundled model.
"""

from pathlib import Path

import numpy as np

from squeezefpga.errors import ModelFormatError

from .image import BGR_MEAN
from .importer import FloatModel
from .network import Add, Concat, Conv, GlobalAvgPool, MaxPool, Network, out_size

__all__ = ["PREPROCESSING", "load_onnx"]

#: torchvision's ImageNet normalisation, RGB order, of an image scaled to 0..1.
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)
PREPROCESSING = ("torchvision", "caffe")

_IDENTITY = {"Dropout", "Identity"}
_AFTER_SCORES = {"Flatten", "Reshape", "Softmax", "Dropout", "Identity"}


class _Graph:
    """The walk over the ONNX nodes: our ops so far and what each ONNX tensor is to us."""

    def __init__(self, path, graph):
        from onnx import numpy_helper
        self.path = path
        self.constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.tensors = {}          # ONNX name -> our tensor name
        self.pending_relu = {}     # ONNX name -> Conv op waiting for its Relu
        self.scores = None         # our name of the class scores, once seen
        self.ops, self.weights, self.biases = [], {}, {}
        self.names = set()
        self.shapes = {}

    def fail(self, node, reason):
        label = node.name or (node.output[0] if node.output else "?")
        raise ModelFormatError(f"{self.path}: node {label!r} ({node.op_type}): {reason}")

    def unique(self, node):
        base = (node.name or node.output[0]).strip("/") or node.op_type
        name, n = base, 1
        while name in self.names or name == "data":
            n += 1
            name = f"{base}_{n}"
        self.names.add(name)
        return name

    def source(self, node, onnx_name):
        if onnx_name in self.pending_relu:
            self.fail(node, f"reads {onnx_name!r}, the output of a Conv before its Relu; "
                      "every conv must be followed by a Relu (the accelerator's tensors are "
                      "uint8)")
        if onnx_name not in self.tensors:
            self.fail(node, f"input {onnx_name!r} is neither the image nor a tensor computed "
                      "before (weights are only read by Conv)")
        return self.tensors[onnx_name]

    def add(self, node, op):
        self.ops.append(op)
        try:
            self.shapes = Network("onnx", self.shapes["data"], tuple(self.ops)).shapes()
        except ValueError as exc:
            self.fail(node, str(exc).removeprefix(f"{op.name}: "))
        return op.name


def _attributes(node):
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _square(graph, node, values, what):
    values = list(values)
    if len(values) != 2 or values[0] != values[1]:
        graph.fail(node, f"{what} {values} is not square (2-D, equal sides)")
    return int(values[0])


def _conv(graph, node, attrs):
    x = graph.source(node, node.input[0])
    if len(node.input) < 2 or node.input[1] not in graph.constants:
        graph.fail(node, "weights are not an initializer")
    w = graph.constants[node.input[1]].astype(np.float32)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        graph.fail(node, f"weights of shape {w.shape} are not O x I x K x K")
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in graph.constants:
            graph.fail(node, "bias is not an initializer")
        b = graph.constants[node.input[2]].astype(np.float32)
    else:
        b = np.zeros(w.shape[0], np.float32)
    if b.shape != (w.shape[0],):
        graph.fail(node, f"bias of shape {b.shape} for {w.shape[0]} filters")
    if attrs.get("group", 1) != 1:
        graph.fail(node, f"group {attrs['group']}: grouped convolution is not supported")
    if any(d != 1 for d in attrs.get("dilations", [1, 1])):
        graph.fail(node, f"dilations {attrs['dilations']} are not supported")
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        graph.fail(node, f"auto_pad {attrs['auto_pad']!r} is not supported (explicit pads only)")
    stride = _square(graph, node, attrs.get("strides", [1, 1]), "strides")
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if len(set(pads)) != 1:
        graph.fail(node, f"pads {pads} are not the same on every side")
    kernel = w.shape[2]
    if "kernel_shape" in attrs and _square(graph, node, attrs["kernel_shape"],
                                           "kernel_shape") != kernel:
        graph.fail(node, f"kernel_shape {attrs['kernel_shape']} != weights {w.shape}")
    in_ch = graph.shapes[x][0]
    if w.shape[1] != in_ch:
        graph.fail(node, f"weights expect {w.shape[1]} input channels, {x} has {in_ch}")
    op = Conv(graph.unique(node), x, in_ch, w.shape[0], kernel, stride, int(pads[0]))
    graph.add(node, op)
    graph.weights[op.name], graph.biases[op.name] = w, b
    graph.pending_relu[node.output[0]] = op


def _relu(graph, node):
    name = node.input[0]
    if name in graph.pending_relu:
        graph.tensors[node.output[0]] = graph.pending_relu.pop(name).name
    else:   # the ReLU of a tensor of ReLU outputs (pool, concat, add): nothing to do
        graph.tensors[node.output[0]] = graph.source(node, name)


def _max_pool(graph, node, attrs):
    x = graph.source(node, node.input[0])
    kernel = _square(graph, node, attrs.get("kernel_shape", []), "kernel_shape")
    stride = _square(graph, node, attrs.get("strides", [1, 1]), "strides")
    if any(attrs.get("pads", [0])) or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET",
                                                                                 "NOTSET"):
        graph.fail(node, "padded max pooling is not supported")
    if any(d != 1 for d in attrs.get("dilations", [1, 1])):
        graph.fail(node, "dilated max pooling is not supported")
    if not attrs.get("ceil_mode", 0):
        side = graph.shapes[x][1]
        if out_size(side, kernel, stride, 0) != out_size(side, kernel, stride, 0, True):
            graph.fail(node, f"ceil_mode 0 gives a different size than ceil mode on a "
                       f"{side}x{side} input; the accelerator pools in ceil mode")
    graph.tensors[node.output[0]] = graph.add(node, MaxPool(graph.unique(node), x, kernel, stride))


def _global_pool(graph, node, attrs):
    x = graph.source(node, node.input[0])
    if node.op_type == "AveragePool":
        _, h, w = graph.shapes[x]
        kernel = list(attrs.get("kernel_shape", []))
        if kernel != [h, w] or any(attrs.get("pads", [0])):
            graph.fail(node, f"average pooling is supported only over the whole {h}x{w} "
                       f"plane (the class scores), not kernel {kernel}")
    graph.scores = graph.add(node, GlobalAvgPool(graph.unique(node), x))
    graph.tensors[node.output[0]] = graph.scores


def _after_scores(graph, node):
    x = graph.source(node, node.input[0])
    if x != graph.scores:
        graph.fail(node, f"is supported only after the global pooling (the class scores), "
                   f"not on {x!r}")
    graph.tensors[node.output[0]] = x


def _walk(graph, nodes):
    for node in nodes:
        kind = node.op_type
        attrs = _attributes(node)
        if kind == "Constant":
            from onnx import numpy_helper
            if "value" not in attrs:
                graph.fail(node, "only tensor constants (value) are supported")
            graph.constants[node.output[0]] = numpy_helper.to_array(attrs["value"])
        elif kind == "Conv":
            _conv(graph, node, attrs)
        elif kind == "Relu":
            _relu(graph, node)
        elif kind == "MaxPool":
            if len(node.output) > 1 and node.output[1]:
                graph.fail(node, "the Indices output is not supported")
            _max_pool(graph, node, attrs)
        elif kind == "Concat":
            if attrs.get("axis") not in (1, -3):
                graph.fail(node, f"concatenation on axis {attrs.get('axis')}, only channels "
                           "(axis 1) are supported")
            srcs = tuple(graph.source(node, n) for n in node.input)
            graph.tensors[node.output[0]] = graph.add(node, Concat(graph.unique(node), srcs))
        elif kind == "Add":
            if len(node.input) != 2 or any(n in graph.constants for n in node.input):
                graph.fail(node, "only the sum of two computed tensors is supported")
            srcs = tuple(graph.source(node, n) for n in node.input)
            graph.tensors[node.output[0]] = graph.add(node, Add(graph.unique(node), srcs))
        elif kind in ("GlobalAveragePool", "AveragePool"):
            _global_pool(graph, node, attrs)
        elif graph.scores is not None and kind in _AFTER_SCORES:
            _after_scores(graph, node)
        elif kind in _IDENTITY:
            graph.tensors[node.output[0]] = graph.source(node, node.input[0])
        else:
            graph.fail(node, "operator not supported (the SqueezeNet family uses Conv, Relu, "
                       "MaxPool, Concat, Add, Dropout, GlobalAveragePool/AveragePool, "
                       "Flatten, Reshape, Softmax)")


def _input(path, graph):
    from onnx import TensorProto
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelFormatError(f"{path}: the graph has {len(inputs)} inputs besides its "
                               "weights; it must have one, the image")
    tensor = inputs[0].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if tensor.elem_type != TensorProto.FLOAT or len(dims) != 4 or dims[1] != 3 or \
            dims[2] is None or dims[2] != dims[3] or dims[0] not in (None, 1):
        raise ModelFormatError(f"{path}: input {inputs[0].name!r} must be float "
                               f"N x 3 x H x W with H = W, not {dims}")
    return inputs[0].name, (3, dims[2], dims[3])


def _fold_preprocessing(path, graph, first, preprocess):
    """Weights and bias of the first conv that take what :func:`~.float_model.float_forward`
    feeds it (BGR minus :data:`BGR_MEAN`) instead of the model's own preprocessing."""
    w, b = graph.weights[first.name].astype(np.float64), graph.biases[first.name]
    if preprocess == "caffe":
        return
    if first.pad:
        raise ModelFormatError(f"{path}: {first.name}: the first conv is padded, so the "
                               f"{preprocess} normalisation cannot be folded into it exactly")
    # The model computes conv(w, (rgb/255 - m)/s) + b; we feed bgr - BGR_MEAN.
    mean, std = np.array(TORCHVISION_MEAN), np.array(TORCHVISION_STD)
    w_bgr = (w / (255.0 * std)[None, :, None, None])[:, ::-1]
    shift = (w * (mean / std)[None, :, None, None]).sum(axis=(1, 2, 3))
    back = (w_bgr * np.asarray(BGR_MEAN, np.float64)[None, :, None, None]).sum(axis=(1, 2, 3))
    graph.weights[first.name] = np.ascontiguousarray(w_bgr, np.float32)
    graph.biases[first.name] = (b - shift + back).astype(np.float32)


def load_onnx(path, preprocess="torchvision"):
    """Read the ONNX file at ``path`` into a :class:`~.importer.FloatModel`.

    Parameters
    ----------
    path : path
    preprocess : {"torchvision", "caffe"}
        The input normalisation the model expects (folded into the first conv).
    """
    import onnx
    from google.protobuf.message import DecodeError
    if preprocess not in PREPROCESSING:
        raise ValueError(f"preprocess must be one of {PREPROCESSING}, not {preprocess!r}")
    path = Path(path)
    try:
        proto = onnx.load(str(path))
    except FileNotFoundError:
        raise ModelFormatError(f"{path}: no such ONNX file") from None
    except IsADirectoryError:
        raise ModelFormatError(f"{path}: is a directory, not an ONNX file") from None
    except (DecodeError, RuntimeWarning, ValueError, OSError) as exc:
        raise ModelFormatError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
    if not proto.graph.node:
        raise ModelFormatError(f"{path}: not an ONNX model (no graph nodes)")
    graph = _Graph(path, proto.graph)
    image, shape = _input(path, proto.graph)
    graph.tensors[image] = "data"
    graph.shapes = {"data": shape}
    _walk(graph, proto.graph.node)
    if graph.pending_relu:
        conv = next(iter(graph.pending_relu.values()))
        raise ModelFormatError(f"{path}: node {conv.name!r} (Conv): not followed by a Relu")
    outputs = [o.name for o in proto.graph.output]
    if len(outputs) != 1 or graph.tensors.get(outputs[0]) != graph.scores or \
            graph.scores is None:
        raise ModelFormatError(f"{path}: the graph's output must be the global average "
                               f"pooling of the last conv (the class scores), not {outputs}")
    convs = [op for op in graph.ops if isinstance(op, Conv)]
    if not convs or convs[0].src != "data":
        raise ModelFormatError(f"{path}: the first operation must be a Conv of the image")
    network = Network(path.stem, shape, tuple(graph.ops), graph.scores)
    _fold_preprocessing(path, graph, convs[0], preprocess)
    return FloatModel(network, graph.weights, graph.biases, {})
