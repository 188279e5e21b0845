"""The layering of the code (docs/ARCHITECTURE.md): a ground floor of shared contracts that
imports nothing above it, then golden, hw, boards, sim and host, and the application on top.
The graph is read from the sources, so an import added anywhere (inside a function too)
counts."""

import tomllib
from pathlib import Path

from squeezefpga.imports import PACKAGE, SUBPACKAGES, closure, import_graph

#: What each layer may import (besides itself). The ground floor is the modules directly in
#: squeezefpga/ (errors, blob_format, protocol, config, progress, imports).
ALLOWED = {
    "ground": set(),
    "models": {"ground"},
    "golden": {"ground"},
    "hw": {"ground"},
    "boards": {"ground", "hw"},
    "sim": {"ground", "golden", "hw", "boards"},
    "host": {"ground", "golden"},
    "app": {"ground", "models", "golden", "hw", "boards", "sim", "host"},
}


def layer(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in SUBPACKAGES else "ground"


def violations(graph):
    """``"a imports b (layer x may not import layer y)"`` for every forbidden edge."""
    found = []
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            source_layer, target_layer = layer(module), layer(target)
            if target_layer != source_layer and target_layer not in ALLOWED[source_layer]:
                found.append(f"{module} imports {target} (layer {source_layer} may not import "
                             f"layer {target_layer})")
    return found


def test_every_layer_imports_only_downwards():
    graph = import_graph()
    assert {layer(m) for m in graph} == set(ALLOWED)
    assert violations(graph) == []


def test_the_check_catches_upward_imports():
    graph = import_graph()
    planted = {**graph,
               "squeezefpga.hw.accelerator": graph["squeezefpga.hw.accelerator"]
               | {"squeezefpga.host.device"},
               "squeezefpga.sim.build": graph["squeezefpga.sim.build"]
               | {"squeezefpga.host.link"},
               "squeezefpga.config": graph["squeezefpga.config"] | {"squeezefpga.golden.blob"}}
    assert violations(planted) == [
        "squeezefpga.config imports squeezefpga.golden.blob (layer ground may not import "
        "layer golden)",
        "squeezefpga.hw.accelerator imports squeezefpga.host.device (layer hw may not import "
        "layer host)",
        "squeezefpga.sim.build imports squeezefpga.host.link (layer sim may not import layer "
        "host)"]


def test_lazy_imports_inside_functions_are_seen():
    # app.tasks imports the synthesis module only inside a function.
    assert "squeezefpga.boards.synthesis" in import_graph()["squeezefpga.app.tasks"]


def test_the_gateware_cache_key_covers_the_protocol():
    # hw/link_layer.py reads the framing constants: a protocol change must rebuild top.v.
    sources = closure(["squeezefpga.hw.verilog"])
    assert "squeezefpga.protocol" in sources and "squeezefpga.hw.link_layer" in sources
    assert not any(layer(m) in ("host", "sim", "app", "golden") for m in sources)


def test_sub_packages_match_the_packaging():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    packages = set(pyproject["tool"]["setuptools"]["packages"])
    assert packages == {PACKAGE} | {f"{PACKAGE}.{sub}" for sub in SUBPACKAGES}
