"""The shape of the code: short functions, modules of one role, no reaching
into other modules' private names.

``python tests/test_code_shape.py`` prints the measures.
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_unet"
MAX_FUNCTION = 80  # lines of code, docstring, blank and comment lines excluded
MAX_MODULE = 900  # lines
MAX_TILING_EXPORT = 1000  # tiling.py + export.py


def modules():
    return sorted(PACKAGE.glob("*.py"))


def code_lines(node, source_lines):
    """Lines of code of a function: no docstring, blank or comment lines."""
    skip = set()
    body = node.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        skip = set(range(body[0].lineno, body[0].end_lineno + 1))
    count = 0
    for n in range(node.lineno, node.end_lineno + 1):
        text = source_lines[n - 1].strip()
        if n not in skip and text and not text.startswith("#"):
            count += 1
    return count


def function_lengths():
    """[(lines of code, 'module:function')] of every function."""
    found = []
    for path in modules():
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                where = f"{path.name}:{node.name}"
                found.append((code_lines(node, lines), where))
    return sorted(found, reverse=True)


def module_aliases(tree):
    """Local names bound to keras_unet modules in a module."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "keras_unet":
            for alias in node.names:
                names[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("keras_unet.") and alias.asname:
                    names[alias.asname] = alias.name
    return names


def private_crossings():
    """Private names imported from, or read off, other keras_unet modules."""
    found = []
    for path in modules():
        tree = ast.parse(path.read_text())
        aliases = module_aliases(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (
                node.module or ""
            ).startswith("keras_unet"):
                for alias in node.names:
                    if alias.name.startswith("_"):
                        found.append(f"{path.name}: from {node.module} import "
                                     f"{alias.name}")  # fmt: skip
                if (node.module or "").split(".")[-1].startswith("_"):
                    found.append(f"{path.name}: imports {node.module}")
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found.append(f"{path.name}: {node.value.id}.{node.attr}")
    return found


def module_lengths():
    return sorted(
        ((len(p.read_text().splitlines()), p.name) for p in modules()),
        reverse=True,
    )


def test_no_function_longer_than_80_lines_of_code():
    long = [(n, f) for n, f in function_lengths() if n > MAX_FUNCTION]
    assert not long, long


def test_no_module_longer_than_900_lines():
    long = [(n, m) for n, m in module_lengths() if n > MAX_MODULE]
    assert not long, long


def test_tiling_and_export_together_at_most_1000_lines():
    lengths = dict((m, n) for n, m in module_lengths())
    assert lengths["tiling.py"] + lengths["export.py"] <= MAX_TILING_EXPORT


def test_no_private_name_crosses_modules():
    assert private_crossings() == []


def test_the_checks_see_what_they_claim():
    """The measures themselves, on a known snippet."""
    source = 'def f():\n    """Doc.\n\n    More."""\n    # c\n\n    x = 1\n'
    node = ast.parse(source).body[0]
    assert code_lines(node, source.splitlines()) == 2  # def + x = 1
    tree = ast.parse("from keras_unet import tiling as t\nt._plan\n")
    assert module_aliases(tree) == {"t": "tiling"}


if __name__ == "__main__":
    print("longest functions (lines of code):")
    for n, where in function_lengths()[:10]:
        print(f"  {n:4d}  {where}")
    print("longest modules (lines):")
    for n, name in module_lengths()[:10]:
        print(f"  {n:4d}  {name}")
    lengths = dict((m, n) for n, m in module_lengths())
    print(
        f"tiling.py + export.py: {lengths['tiling.py'] + lengths['export.py']}"
    )
    print(f"private names crossing modules: {private_crossings() or 'none'}")
