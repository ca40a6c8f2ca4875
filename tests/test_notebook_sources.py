"""One source of truth for the notebooks: each solution notebook and its paired percent script hold the same
cells (jupytext, `solutions/jupytext.toml`), and the scripts are lintable as code."""

import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"
NOTEBOOKS = sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))


def test_every_solution_notebook_has_its_script():
    assert NOTEBOOKS, "no solution notebooks found"
    scripts = {p.stem for p in SOLUTIONS.glob("[0-9][0-9]_*.py")}
    assert scripts == {p.stem for p in NOTEBOOKS}, "pair each notebook: jupytext --sync solutions/NN_topic.ipynb"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_script_holds_the_notebook_s_cells(notebook):
    script = notebook.with_suffix(".py")
    expected = jupytext.writes(jupytext.read(notebook), fmt="py:percent")
    assert script.read_text(encoding="utf-8") == expected, (
        f"{script.name} and {notebook.name} differ: after editing one, run `jupytext --sync {script}`")


def test_the_scripts_and_the_package_are_lintable():
    """Pyflakes' checks (undefined or unused names, syntax errors) over every notebook's code and the package's."""
    root = SOLUTIONS.parent
    paths = [str(p.with_suffix(".py")) for p in NOTEBOOKS] + [str(root / d) for d in ("llava_mini", "tests", "tools")]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", "--select", "E9,F", *paths],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
