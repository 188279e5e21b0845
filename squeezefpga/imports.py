"""The project's own import graph, read from the sources (``ast``), not from a hand-kept list.

Build caches key on the sources a generated artefact depends on (:func:`source_digest`), and
the layering test checks the graph (:func:`import_graph`). Imports inside functions count as
much as those at the top of a module.
"""

import ast
import functools
import hashlib
import importlib.util
import pkgutil
from pathlib import Path

__all__ = ["PACKAGE", "SUBPACKAGES", "module_path", "imports_of", "import_graph", "closure", "source_digest"]

PACKAGE = "squeezefpga"
#: Sub-packages kept in the repository's top-level folders (pyproject.toml maps them).
SUBPACKAGES = ("golden", "hw", "sim", "host", "boards", "models", "app")


@functools.cache
def module_path(name):
    """The source file of module ``name`` (a package's ``__init__.py``), or None if it is not
    a module of this project."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _is_package(name):
    path = module_path(name)
    return path is not None and path.name == "__init__.py"


def _resolve(module, node):
    """Absolute names an ``import`` / ``from ... import`` node of ``module`` refers to."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module if _is_package(module) else module.rpartition(".")[0]
        parts = package.split(".")
        parts = parts[:len(parts) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
    # `from package import module` imports the submodule too.
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


@functools.cache
def imports_of(name):
    """Project modules that module ``name`` imports (directly, anywhere in its source)."""
    path = module_path(name)
    if path is None:
        return frozenset()
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target in _resolve(name, node):
                # Importing a.b.c runs a/__init__ and a/b/__init__ as well.
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    prefix = ".".join(parts[:i])
                    if prefix != name and module_path(prefix) is not None:
                        found.add(prefix)
    return frozenset(found)


def _modules_under(package):
    spec = importlib.util.find_spec(package)
    for info in pkgutil.iter_modules(spec.submodule_search_locations, package + "."):
        if info.name.endswith(".__main__"):
            continue
        yield info.name
        if info.ispkg:
            yield from _modules_under(info.name)


def import_graph():
    """``{module: imported project modules}`` for every module of the project, including the
    sub-packages laid over other folders (``squeezefpga.hw`` is ``hw/``)."""
    names = {PACKAGE, *_modules_under(PACKAGE)}
    for sub in SUBPACKAGES:
        names.add(f"{PACKAGE}.{sub}")
        names.update(_modules_under(f"{PACKAGE}.{sub}"))
    return {name: imports_of(name) for name in sorted(names)}


def closure(roots):
    """Every project module reachable from the modules ``roots`` (included), sorted."""
    seen, queue = set(), list(roots)
    while queue:
        name = queue.pop()
        if name in seen or module_path(name) is None:
            continue
        seen.add(name)
        queue.extend(imports_of(name))
    return sorted(seen)


def source_digest(roots, extra=""):
    """SHA-256 (hex) of the sources of :func:`closure` of ``roots`` and of ``extra``."""
    digest = hashlib.sha256(extra.encode())
    for name in closure(roots):
        data = module_path(name).read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()
