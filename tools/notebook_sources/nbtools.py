"""Write a notebook from a list of cells, and its code cells as one script (for run_script.py)."""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = []


def md(text, *tags):
    cell = new_markdown_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    CELLS.append(cell)


def code(text, *tags):
    cell = new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    CELLS.append(cell)


def write(path):
    nb = new_notebook(cells=CELLS)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i:03d}"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(nbformat.writes(nb).rstrip("\n") + "\n")


def script(path):
    """The code cells as one script (grader cells kept), for a quick run outside a kernel."""
    out = []
    for cell in CELLS:
        if cell.cell_type == "code":
            out.append(cell.source)
    Path(path).write_text("".join(f"\n# %%CELL {i}\n" + c + "\n" for i, c in enumerate(out)))
