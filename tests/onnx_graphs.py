"""ONNX graphs of the SqueezeNet family built with ``onnx.helper`` (no torch, no download), as
torchvision's exporter lays them out, with the variations other converters produce."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from squeezefpga.golden.network import Add, Concat, Conv, GlobalAvgPool, MaxPool

__all__ = ["export", "random_weights", "torchvision_input"]

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def random_weights(network, rng, scale=0.3):
    """Float weights and biases (torchvision's conventions: conv1 reads normalised RGB)."""
    weights, biases = {}, {}
    for conv in network.convs:
        fan_in = conv.in_ch * conv.kernel ** 2
        weights[conv.name] = (rng.normal(0, scale * np.sqrt(2 / fan_in), conv.weight_shape)
                              .astype(np.float32))
        biases[conv.name] = rng.normal(0.05, 0.05, conv.out_ch).astype(np.float32)
    return weights, biases


def torchvision_input(image_bgr):
    """The tensor torchvision feeds its model for a uint8 BGR (3, H, W) picture."""
    rgb = image_bgr[::-1].astype(np.float32) / 255.0
    return ((rgb - MEAN[:, None, None]) / STD[:, None, None])[None]


def export(network, weights, biases, *, ceil_mode=1, dropout=True, tail="flatten",
           softmax=True, pool="global", relu_after_concat=False, opset=13):
    """The ONNX model of ``network``: Conv+Relu per conv, MaxPool, Concat, Add, a Dropout
    before conv10 (``dropout``), the class scores by GlobalAveragePool or a whole-plane
    AveragePool (``pool``), then ``tail`` ("flatten", "reshape" with a Constant shape, or
    None) and a Softmax (``softmax``)."""
    shapes = network.shapes()
    nodes, inits = [], []
    out = {"data": "input"}
    for op in network.ops:
        src = [out[s] for s in op.inputs]
        name = f"/{op.name}"
        if isinstance(op, Conv):
            if op.name == "conv10" and dropout:
                nodes.append(helper.make_node("Dropout", src, ["dropped"], name="/dropout"))
                src = ["dropped"]
            inits += [numpy_helper.from_array(weights[op.name], f"{op.name}.weight"),
                      numpy_helper.from_array(biases[op.name], f"{op.name}.bias")]
            nodes.append(helper.make_node(
                "Conv", src + [f"{op.name}.weight", f"{op.name}.bias"], [f"{op.name}_conv"],
                name=f"{name}/Conv", kernel_shape=[op.kernel] * 2, strides=[op.stride] * 2,
                pads=[op.pad] * 4, dilations=[1, 1], group=1))
            nodes.append(helper.make_node("Relu", [f"{op.name}_conv"], [op.name],
                                          name=f"{name}/Relu"))
        elif isinstance(op, MaxPool):
            nodes.append(helper.make_node("MaxPool", src, [op.name], name=f"{name}/MaxPool",
                                          kernel_shape=[op.kernel] * 2,
                                          strides=[op.stride] * 2, pads=[0] * 4,
                                          ceil_mode=ceil_mode))
        elif isinstance(op, Concat):
            nodes.append(helper.make_node("Concat", src, [op.name], name=f"{name}/Concat",
                                          axis=1))
            if relu_after_concat:
                nodes.append(helper.make_node("Relu", [op.name], [f"{op.name}_relu"],
                                              name=f"{name}/Relu"))
                out[op.name] = f"{op.name}_relu"
                continue
        elif isinstance(op, Add):
            nodes.append(helper.make_node("Add", src, [op.name], name=f"{name}/Add"))
        elif isinstance(op, GlobalAvgPool):
            if pool == "global":
                nodes.append(helper.make_node("GlobalAveragePool", src, [op.name],
                                              name=f"{name}/GlobalAveragePool"))
            else:
                _, h, w = shapes[op.src]
                nodes.append(helper.make_node("AveragePool", src, [op.name],
                                              name=f"{name}/AveragePool",
                                              kernel_shape=[h, w], strides=[1, 1]))
        out[op.name] = op.name
    last = out[network.output]
    classes = shapes[network.output][0]
    if tail == "flatten":
        nodes.append(helper.make_node("Flatten", [last], ["flat"], name="/Flatten", axis=1))
        last = "flat"
    elif tail == "reshape":
        nodes.append(helper.make_node("Constant", [], ["shape"], name="/Constant",
                                      value=numpy_helper.from_array(
                                          np.array([1, classes], np.int64))))
        nodes.append(helper.make_node("Reshape", [last, "shape"], ["flat"], name="/Reshape"))
        last = "flat"
    if softmax:
        nodes.append(helper.make_node("Softmax", [last], ["probs"], name="/Softmax", axis=-1))
        last = "probs"
    c, h, w = network.input_shape
    out_shape = [1, classes] if tail else [1, classes, 1, 1]
    graph = helper.make_graph(
        nodes, network.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, c, h, w])],
        [helper.make_tensor_value_info(last, TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model
