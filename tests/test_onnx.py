"""ONNX import: graphs built with onnx.helper (tests/onnx_graphs.py) read into the float
reference, checked against onnx's own reference evaluator, compiled, and run bit-exact on the
simulated accelerator; malformed and unsupported graphs named by node and reason."""

import json

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator
from PIL import Image

from squeezefpga.app.cli import main
from squeezefpga.errors import ModelFormatError
from squeezefpga.golden.float_model import float_forward
from squeezefpga.golden.network import squeezenet_torchvision, tiny_squeezenet
from squeezefpga.golden.onnx_import import load_onnx
from squeezefpga.models import CAT_PHOTO

from .onnx_graphs import export, random_weights, torchvision_input

#: Reduced members of the family: v1.0's 7x7 conv1, v1.1's 3x3, simple and complex bypass.
VARIANTS = {
    "v1.0": dict(conv1_kernel=7),
    "v1.1": dict(conv1_kernel=3, size=31),
    "v1.0-bypass": dict(conv1_kernel=7, bypass=(3,)),
    "v1.0-complex-bypass": dict(conv1_kernel=7, bypass=(3,), complex_bypass=(2, 4)),
}


def variant(name, rng, **options):
    network = tiny_squeezenet(**{"size": 35, **VARIANTS[name]})
    weights, biases = random_weights(network, rng)
    return network, export(network, weights, biases, **options)


def picture(rng, shape):
    return rng.integers(0, 256, shape, dtype=np.uint8)


def save(model, tmp_path, name="model.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("options", [
    {},                                                                  # torchvision's layout
    {"tail": "reshape", "pool": "average", "dropout": False, "relu_after_concat": True},
    {"tail": None, "softmax": False, "ceil_mode": 0},
], ids=["torchvision", "reshape-averagepool-relu", "bare"])
def test_the_float_reference_is_the_onnx_graph(name, options, rng, tmp_path):
    """Every supported op, each variant: our float reference of the imported model gives what
    onnx's reference evaluator gives for the graph on the torchvision-normalised picture."""
    if name != "v1.1":     # floor-mode pools only where they equal ceil mode: v1.1's sizes
        options = {**options, "ceil_mode": 1}
    network, model = variant(name, rng, **options)
    imported = load_onnx(save(model, tmp_path))
    image = picture(rng, network.input_shape)
    ours = float_forward(imported, image)[imported.network.output].ravel()
    (theirs,) = ReferenceEvaluator(model).run(None, {"input": torchvision_input(image)})
    if options.get("softmax", True):
        ours = softmax(ours)
    np.testing.assert_allclose(ours, theirs.ravel(), rtol=2e-4, atol=1e-6)
    assert [type(op).__name__ for op in imported.network.ops] == [
        type(op).__name__ for op in network.ops]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_sim_of_each_variant_is_bitexact(name, rng, tmp_path, capsys):
    """`squeezefpga sim --onnx M.onnx IMAGE --check-all --json`: compiled (pruned to a
    density), run step by step on the simulated accelerator, every tensor and the whole
    logits equal to the golden model's."""
    network, model = variant(name, rng)
    path = save(model, tmp_path)
    image = picture(rng, network.input_shape)
    Image.fromarray(np.ascontiguousarray(image[::-1].transpose(1, 2, 0))).save(
        tmp_path / "picture.png")
    argv = ["--onnx", str(path), "--density", "0.5", "--no-cache"]
    assert main(["golden", str(tmp_path / "picture.png"), *argv, "--json"]) == 0
    golden = json.loads(capsys.readouterr().out)
    assert main(["sim", str(tmp_path / "picture.png"), "--lanes", "8", "--check-all", *argv,
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bitexact"] and result["first_difference"] is None
    assert result["logits"] == golden["logits"]


def test_compile_reports_what_the_compression_does(rng, tmp_path, capsys):
    network, model = variant("v1.0-complex-bypass", rng)
    path = save(model, tmp_path)
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for i in range(3):
        image = picture(rng, network.input_shape)
        Image.fromarray(np.ascontiguousarray(image[::-1].transpose(1, 2, 0))).save(
            calibration / f"p{i}.png")
    out = tmp_path / "m.sqzf"
    assert main(["compile", "--onnx", str(path), "--calibration", str(calibration),
                 "--density", "0.4", "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert out.stat().st_size == report["total_bytes"]
    fidelity = report["fidelity"]
    assert fidelity["images"] == 3
    assert 0 < fidelity["relative_error"] < 1
    assert 0 <= fidelity["top1_agreement"] <= 1 and 0 <= fidelity["top5_overlap"] <= 5
    conv_rows = [r for r in report["layers"] if r["op"] == "conv" and "bypass" not in r["name"]]
    assert all(r["density"] <= 0.41 for r in conv_rows)


def _replace(model, index, node):
    nodes = list(model.graph.node)
    nodes[index] = node
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _node(model, op_type, n=0):
    return [i for i, node in enumerate(model.graph.node) if node.op_type == op_type][n]


def _with_attribute(model, op_type, **attrs):
    i = _node(model, op_type)
    old = model.graph.node[i]
    kept = {a.name: helper.get_attribute_value(a) for a in old.attribute
            if a.name not in attrs}
    return _replace(model, i, helper.make_node(old.op_type, old.input, old.output,
                                               name=old.name, **kept, **attrs))


def _drop_relu(model, n=1):
    i = _node(model, "Relu", n)
    relu = model.graph.node[i]
    nodes = [n for j, n in enumerate(model.graph.node) if j != i]
    for n in nodes:
        n.input[:] = [relu.input[0] if x == relu.output[0] else x for x in n.input]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _op_type(model, op_type, new):
    i = _node(model, op_type)
    old = model.graph.node[i]
    return _replace(model, i, helper.make_node(new, old.input, old.output, name=old.name))


@pytest.mark.parametrize("mutate,message", [
    (lambda m: _op_type(m, "Relu", "Sigmoid"),
     "node '/conv1/Relu' (Sigmoid): operator not supported"),
    (_drop_relu, "node '/fire2/expand1x1/Conv' (Conv): reads 'fire2/squeeze1x1_conv', the "
                 "output of a Conv before its Relu"),
    (lambda m: _drop_relu(m, -1), "node '/pool10/GlobalAveragePool' (GlobalAveragePool): "
                                  "reads 'conv10_conv', the output of a Conv before its Relu"),
    (lambda m: _with_attribute(m, "Conv", group=3),
     "node '/conv1/Conv' (Conv): group 3: grouped convolution is not supported"),
    (lambda m: _with_attribute(m, "Conv", dilations=[2, 2]),
     "node '/conv1/Conv' (Conv): dilations [2, 2] are not supported"),
    (lambda m: _with_attribute(m, "Conv", strides=[2, 1]),
     "node '/conv1/Conv' (Conv): strides [2, 1] is not square"),
    (lambda m: _with_attribute(m, "MaxPool", pads=[1, 1, 1, 1]),
     "node '/pool1/MaxPool' (MaxPool): padded max pooling is not supported"),
    (lambda m: _with_attribute(m, "Concat", axis=2),
     "node '/fire2/concat/Concat' (Concat): concatenation on axis 2"),
    (lambda m: _op_type(m, "GlobalAveragePool", "GlobalMaxPool"),
     "(GlobalMaxPool): operator not supported"),
])
def test_unsupported_graphs_are_named_by_node(mutate, message, rng, tmp_path, capsys):
    _, model = variant("v1.0", rng)
    path = save(mutate(model), tmp_path)
    with pytest.raises(ModelFormatError) as error:
        load_onnx(path)
    assert message in str(error.value) and "\n" not in str(error.value)
    # The command line: one line, exit 2, no blob written.
    out = tmp_path / "never.sqzf"
    assert main(["compile", "--onnx", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("squeezefpga: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_floor_mode_pooling_is_refused_where_it_differs(rng, tmp_path):
    network = tiny_squeezenet(size=37, conv1_kernel=7)    # conv1 gives 16: floor 7, ceil 8
    model = export(network, *random_weights(network, rng), ceil_mode=0)
    with pytest.raises(ModelFormatError, match="node '/pool1/MaxPool' \\(MaxPool\\): "
                       "ceil_mode 0 gives a different size than ceil mode on a 16x16 input"):
        load_onnx(save(model, tmp_path))


def test_a_bypass_of_unequal_shapes_is_named(rng, tmp_path):
    _, model = variant("v1.0-bypass", rng)
    i = _node(model, "Add")
    add = model.graph.node[i]
    _replace(model, i, helper.make_node("Add", ["pool1", add.input[1]], add.output,
                                        name=add.name))
    with pytest.raises(ModelFormatError,
                       match="node '/fire3/bypass/Add' \\(Add\\): inputs differ in shape"):
        load_onnx(save(model, tmp_path))


@pytest.mark.parametrize("content,message", [
    (b"", "no graph nodes"),
    (b"\x08\x07garbage\xff\xfe not protobuf", "not an ONNX model"),
])
def test_a_file_that_is_not_onnx(content, message, tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelFormatError, match=message):
        load_onnx(path)


def test_missing_file_and_wrong_input(rng, tmp_path):
    with pytest.raises(ModelFormatError, match="no such ONNX file"):
        load_onnx(tmp_path / "absent.onnx")
    _, model = variant("v1.0", rng)
    model.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 36
    with pytest.raises(ModelFormatError, match="must be float N x 3 x H x W with H = W"):
        load_onnx(save(model, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("version", ["1_0", "1_1"])
def test_torchvision_shaped_exports_run_bitexact_at_full_size(version, tmp_path, capsys):
    """torchvision's squeezenet1_0 and squeezenet1_1 as its exporter lays them out (random
    weights): imported, compiled with the bundled photos, run on the 64-lane accelerator."""
    rng = np.random.default_rng(10)
    network = squeezenet_torchvision(version)
    model = export(network, *random_weights(network, rng, scale=1.0))
    path = save(model, tmp_path, f"squeezenet{version}.onnx")
    argv = ["--onnx", str(path), "--density", "0.35", "--json"]
    assert main(["golden", str(CAT_PHOTO), *argv]) == 0
    golden = json.loads(capsys.readouterr().out)
    assert main(["sim", str(CAT_PHOTO), *argv]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bitexact"] and result["logits"] == golden["logits"]
    assert len(result["logits"]) == 1000
