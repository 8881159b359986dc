"""The layout: stages that import one way, and no private name between modules.

docs/architecture.md draws the package; these tests keep two of its rules
true. Every module belongs to a stage of the flow (its folder, or the top
level for the shared helpers), and imports only from its own stage and the
stages before it, so that data flows one way; and no module takes a
private (``_name``) name from another.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_unet"
# The stages in the order of the flow; a module may import from its own
# stage and the ones before it.
STAGES = (
    "checks",
    "optional",
    "io",
    "model",
    "data",
    "inference",
    "evaluation",
    "figures",
    "training",
    "export",
    "jobs",
    "cli",
)


def modules(package=PACKAGE):
    """Every module but the package faces (``__init__``) and the table of
    old paths, which reaches everything on purpose."""
    return sorted(
        p
        for p in package.rglob("*.py")
        if p.name not in ("__init__.py", "_moved.py")
    )


def dotted(path, package=PACKAGE):
    return ".".join(path.relative_to(package.parent).with_suffix("").parts)


def stage_of(name):
    """The stage of ``keras_unet.<stage>[.module]``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def imported(tree):
    """The keras_unet modules a module imports, anywhere in it."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module or ""
            if module == "keras_unet":
                found.update(f"keras_unet.{a.name}" for a in node.names)
            elif module.startswith("keras_unet."):
                found.add(module)
        elif isinstance(node, ast.Import):
            found.update(
                a.name for a in node.names if a.name.startswith("keras_unet.")
            )
    return found


def backward_imports(package=PACKAGE):
    """``(module, imported)`` pairs that reach up the flow."""
    rank = {stage: i for i, stage in enumerate(STAGES)}
    wrong = []
    for path in modules(package):
        me = dotted(path, package)
        for other in imported(ast.parse(path.read_text())):
            theirs = stage_of(other)
            if theirs in rank and rank[theirs] > rank[stage_of(me)]:
                wrong.append((me, other))
    return sorted(wrong)


def private_crossings():
    """Private names imported from other keras_unet modules."""
    found = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if not (node.module or "").startswith("keras_unet"):
                continue
            found += [
                f"{dotted(path)}: from {node.module} import {a.name}"
                for a in node.names
                if a.name.startswith("_")
            ]
    return found


def test_every_module_is_in_a_stage():
    stages = {stage_of(dotted(p)) for p in modules()}
    assert stages <= set(STAGES), stages - set(STAGES)


def test_data_flows_one_way():
    assert backward_imports() == []


def test_no_private_name_crosses_modules():
    assert private_crossings() == []


def test_nothing_is_packed_against_the_formatter():
    markers = ("fmt: " + "skip", "fmt: " + "off")
    marked = [
        str(p.relative_to(PACKAGE.parent))
        for folder in (PACKAGE, PACKAGE.parent / "tests")
        for p in folder.rglob("*.py")
        if any(m in p.read_text() for m in markers)
    ]
    assert marked == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from keras_unet.data import stream\n", {"keras_unet.data"}),
        ("def f():\n    from keras_unet import cli\n", {"keras_unet.cli"}),
        ("import keras_unet.jobs.demo\n", {"keras_unet.jobs.demo"}),
        ("from . import x\n", set()),
    ],
)
def test_the_import_reader_sees_every_import(source, expected):
    assert imported(ast.parse(source)) == expected


def test_a_backward_import_is_seen(tmp_path):
    """The rule can fail: a data module importing training is caught."""
    fake = tmp_path / "keras_unet"
    (fake / "data").mkdir(parents=True)
    (fake / "data" / "bad.py").write_text(
        "def f():\n    from keras_unet.training import run\n"
    )
    assert backward_imports(fake) == [
        ("keras_unet.data.bad", "keras_unet.training")
    ]
