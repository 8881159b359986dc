"""The examples, the Colab notebook and the docs never rot: CI runs them."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("[0-9][0-9]_*.py"))


def _run(args, cwd, env=None, timeout=900):
    out = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out


def test_examples_have_headers():
    assert [p.name for p in EXAMPLES] == [
        "01_data.py",
        "02_training.py",
        "03_prediction.py",
    ]
    for path in EXAMPLES:
        doc = path.read_text().split('"""')[1]
        assert doc.startswith("# ") and "What it shows" in doc, path
        assert "CPU" in doc and "GPU" in doc and "--quick" in doc, path


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_quick(path, tmp_path):
    out = _run([str(path), "--quick", "--out", str(tmp_path / "out")], tmp_path)
    assert "Traceback" not in out.stderr
    assert any((tmp_path / "out").iterdir())


def test_notebook_is_committed_clean():
    nb = json.loads((REPO / "examples" / "colab_tutorial.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c.get("outputs") for c in code)
    assert all(c.get("execution_count") is None for c in code)
    assert "pip install" in "".join(code[0]["source"])


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    nb = nbformat.read(REPO / "examples" / "colab_tutorial.ipynb", as_version=4)
    os.environ["KERAS_UNET_QUICK"] = "1"
    try:
        NotebookClient(
            nb,
            timeout=900,
            kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute()
    finally:
        del os.environ["KERAS_UNET_QUICK"]
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert not errors, errors
    assert (tmp_path / "tutorial_output" / "run" / "best.keras").is_file()
    assert (tmp_path / "tutorial_output" / "serving" / "unet" / "1").is_dir()


@pytest.mark.slow
def test_docs_build_strict(tmp_path):
    _run(
        [
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--site-dir",
            str(tmp_path / "site"),
        ],
        REPO,
        timeout=600,
    )
    assert (tmp_path / "site" / "api" / "index.html").is_file()


def test_every_docs_figure_has_a_script_and_is_used():
    figures = sorted((REPO / "docs" / "figures").glob("*.png"))
    scripts = "".join(
        p.read_text() for p in (REPO / "docs" / "scripts").glob("*.py")
    )
    pages = "".join(p.read_text() for p in (REPO / "docs").glob("*.md"))
    assert figures
    for fig in figures:
        assert f'"{fig.name}"' in scripts, f"no script makes {fig.name}"
        assert f"figures/{fig.name}" in pages, f"{fig.name} is not used"


@pytest.mark.slow
@pytest.mark.parametrize(
    "script",
    sorted((REPO / "docs" / "scripts").glob("*.py")),
    ids=lambda p: p.name,
)
def test_docs_figure_scripts_run(script, tmp_path):
    _run([str(script)], REPO, env={"KERAS_UNET_FIGURE_DIR": str(tmp_path)})
    assert len(list(tmp_path.glob("*.png"))) == 1


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path):
    """The README's Python example, with fewer images and steps."""
    readme = (REPO / "README.md").read_text()
    code = readme.split("## Use it from Python")[1].split("```python")[1]
    code = code.split("```")[0]
    small = {
        "synthetic_cells(8, size=512": "synthetic_cells(2, size=512",
        "steps_per_epoch=100, epochs=4": "steps_per_epoch=2, epochs=1",
    }
    for old, new in small.items():
        assert old in code, old  # the README still says what is tested
        code = code.replace(old, new)
    code += "\nassert probs.shape == (512, 512, 2)\nprint('README-OK')\n"
    out = _run(["-c", code], tmp_path)
    assert "README-OK" in out.stdout
    assert (tmp_path / "serving" / "unet" / "1" / "saved_model.pb").is_file()
