"""The course machinery: student copies generated from `solutions/`, the cell-tag lint, and notebook set-up.

`solutions/NN_topic.ipynb` is the single source, committed executed with its outputs. `build` writes the
student copy `notebooks/NN_topic.ipynb`: every region between `### BEGIN SOLUTION` and `### END SOLUTION`
becomes `# YOUR CODE HERE` + `raise NotImplementedError()` at the marker's indent, cells tagged
`solution-only` are dropped, and outputs, execution counts and widget state are cleared. `check` reports
every way `notebooks/` differs from what `build` would write, plus the lint of the tags (see `lint`).
The conventions are described in docs/course_machinery.md.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from contextlib import contextmanager
from pathlib import Path

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
NOTEBOOK_NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")
STUDY_TAGS = frozenset(f"study-q{n}" for n in range(1, 18))
NBVAL_TAGS = frozenset({"nbval-ignore-output", "nbval-check-output", "nbval-skip", "raises-exception"})
TAGS = frozenset({"exercise", "grader", "solution-only"}) | STUDY_TAGS | NBVAL_TAGS
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
KEPT_CELL_METADATA = ("tags", "editable", "deletable")

# Fixed for every graded or reference run (set by the root conftest.py and by `execute`) so that stored
# outputs reproduce: the thread count changes float results, the hash seed changes set order.
COURSE_ENV = {
    "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "PYTHONHASHSEED": "0",
    "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1",
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",  # lets cuBLAS run deterministically on a GPU
}
# MPLBACKEND must stay unset: ipykernel then selects the inline backend, so figures are outputs.
COURSE_UNSET = ("MPLBACKEND",)


def apply_env(environ) -> None:
    """Fix the course's environment variables in `environ` (a dict, or `os.environ` before kernels start)."""
    environ.update(COURSE_ENV)
    for name in COURSE_UNSET:
        environ.pop(name, None)


def setup_notebook(seed: int = 0) -> None:
    """First call of every notebook: 2 threads, seeds, deterministic algorithms, matplotlib defaults.

    Prints nothing. The thread count is part of the result: stored outputs are made with 2 threads.
    Strict determinism also on a GPU: measured on an H100, embedding, linear, causal SDPA (fp32 and bf16),
    cross-entropy, AdamW, index_add_, scatter_add_ and cumsum all ran, repeatably; with warn_only SDPA
    would fall back to a non-deterministic kernel instead.
    """
    import random

    import matplotlib
    import numpy as np
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", COURSE_ENV["CUBLAS_WORKSPACE_CONFIG"])
    torch.set_num_threads(2)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.set_printoptions(precision=4, sci_mode=False)
    matplotlib.rcParams.update({"figure.figsize": (6.0, 4.0), "figure.dpi": 80, "font.size": 10})


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _inside_def(above: list[str], indent: int) -> bool:
    """Whether a line indented by `indent` lies in a `def` body, judged from the lines above it."""
    level = indent
    for line in reversed(above):
        stripped = line.lstrip()
        width = len(line) - len(stripped)
        if not stripped or stripped.startswith("#") or width >= level:
            continue
        if re.match(r"(async\s+)?def\s", stripped):
            return True
        level = width
    return False


def stub_source(source: str, where: str = "cell") -> str:
    """Replace every solution region of a code cell by the stub, at the BEGIN marker's indent.

    Raises ValueError for a malformed, nested or unbalanced marker, and for a region not inside a def.
    """
    lines, out, indent = source.split("\n"), [], None
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if ("BEGIN SOLUTION" in text or "END SOLUTION" in text) and text not in (BEGIN, END):
            raise ValueError(f"{where}, line {number}: malformed marker {text!r}; write exactly {BEGIN!r} / {END!r}")
        if text == BEGIN:
            if indent is not None:
                raise ValueError(f"{where}, line {number}: {BEGIN!r} inside another solution region")
            indent = line[: len(line) - len(line.lstrip())]
            if not _inside_def(lines[: number - 1], len(indent)):
                raise ValueError(
                    f"{where}, line {number}: a solution region must lie inside a function body "
                    "(indent the marker inside a def), so the stub raises only when a grader calls it"
                )
            out += [indent + STUB[0], indent + STUB[1]]
        elif text == END:
            if indent is None:
                raise ValueError(f"{where}, line {number}: {END!r} without {BEGIN!r}")
            indent = None
        elif indent is None:
            out.append(line)
    if indent is not None:
        raise ValueError(f"{where}: {BEGIN!r} without {END!r}")
    return "\n".join(out)


def own_grader(nb, index: int) -> int | None:
    """Index of the grader cell that checks exercise cell `index`: the first grader before the next exercise."""
    for later in range(index + 1, len(nb.cells)):
        tags = _tags(nb.cells[later])
        if "exercise" in tags:
            return None
        if "grader" in tags:
            return later
    return None


def exercise_cells(nb) -> list[int]:
    """Indices of the cells tagged `exercise`."""
    return [i for i, cell in enumerate(nb.cells) if "exercise" in _tags(cell)]


def lint(nb, name: str) -> list[str]:
    """Problems with a solution notebook's tags and markers (an empty list when it is fine)."""
    problems = []
    for i, cell in enumerate(nb.cells):
        where, tags = f"{name} cell {i}", _tags(cell)
        problems += [f"{where}: unknown tag {tag!r}" for tag in tags if tag not in TAGS]
        roles = {"exercise", "grader"} & set(tags)
        if roles and cell.cell_type != "code":
            problems.append(f"{where}: only code cells can be tagged {sorted(roles)}")
        if "solution-only" in tags and (roles or STUDY_TAGS & set(tags)):
            problems.append(f"{where}: a solution-only cell is dropped from the student copy, so it cannot be {tags}")
        if STUDY_TAGS & set(tags) and "grader" not in tags:
            problems.append(f"{where}: a study-qN cell must also be tagged 'grader'")
        has_marker = "BEGIN SOLUTION" in cell.source or "END SOLUTION" in cell.source
        if has_marker and "exercise" not in tags:
            problems.append(f"{where}: solution markers outside an exercise cell")
        if "exercise" in tags and cell.cell_type == "code":
            if BEGIN not in cell.source:
                problems.append(f"{where}: an exercise cell needs a {BEGIN!r} region")
            if own_grader(nb, i) is None:
                problems.append(f"{where}: no grader cell follows this exercise before the next one")
            try:
                stub_source(cell.source, where)
            except ValueError as err:
                problems.append(str(err))
    return problems


BINARY_OUTPUTS = ("image/png", "image/jpeg")  # base64 payloads: nbval skips them, and the sanitiser's
# `[^\s'"]*...` patterns are quadratic on a long run without whitespace (minutes for notebook 02's figures)


def _texts(output):
    """The strings of one output that nbval compares (sanitised one by one, as nbval does)."""
    for key, value in output.items():
        values = [v for k, v in value.items() if k not in BINARY_OUTPUTS] if key == "data" else [value]
        for item in values:
            if isinstance(item, list):
                item = "".join(item) if key != "traceback" else "\n".join(item)
            if isinstance(item, str):
                yield item


def lint_outputs(nb, name: str, clone: Path, sanitize: list[tuple[str, str]] = ()) -> list[str]:
    """Problems with a solution's stored outputs: unexecuted cells, errors, the clone's absolute path."""
    problems, clone_path = [], str(clone.resolve())
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "nbval-skip" in _tags(cell):
            continue
        where = f"{name} cell {i}"
        if cell.execution_count is None and cell.source.strip():
            problems.append(f"{where}: not executed (run `llava-mini course execute`)")
        for output in cell.outputs:
            if output.output_type == "error" and "raises-exception" not in _tags(cell):
                problems.append(f"{where}: stored output is an error ({output.ename})")
            for text in _texts(output):
                for regex, replace in sanitize:
                    text = re.sub(regex, replace, text)
                if clone_path in text:
                    problems.append(f"{where}: stored output contains the absolute path {clone_path}")
                    break
    return problems


def student_copy(nb, name: str = "notebook"):
    """The student copy of a solution notebook (a new notebook; `nb` is left unchanged)."""
    out = copy.deepcopy(nb)
    out.cells = [cell for cell in out.cells if "solution-only" not in _tags(cell)]
    for i, cell in enumerate(out.cells):
        cell.metadata = {k: cell.metadata[k] for k in KEPT_CELL_METADATA if k in cell.metadata}
        if cell.cell_type == "code":
            cell.source = stub_source(cell.source, f"{name} cell {i}")
            cell.outputs, cell.execution_count = [], None
    language = {k: v for k, v in nb.metadata.get("language_info", {"name": "python"}).items() if k != "version"}
    out.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": language}
    if "BEGIN SOLUTION" in dumps(out) or "END SOLUTION" in dumps(out):
        raise ValueError(f"{name}: the student copy still contains a solution marker")
    return out


def dumps(nb) -> str:
    """Deterministic notebook JSON: nbformat's sorted keys and indent, one trailing newline."""
    import nbformat  # lazily, like every tool here: notebooks import setup_notebook from this module

    return nbformat.writes(nb, version=nbformat.NO_CONVERT).rstrip("\n") + "\n"


def read(path: Path):
    """A notebook as stored (no nbformat version conversion)."""
    import nbformat

    return nbformat.read(str(path), as_version=nbformat.NO_CONVERT)


def sanitize_rules(clone: Path) -> list[tuple[str, str]]:
    """The regex/replace pairs of `nbval_sanitize.cfg` at the clone's root, parsed as nbval parses them."""
    path = clone / "nbval_sanitize.cfg"
    return re.findall(r"^regex: (.*)$\n^replace: (.*)$", path.read_text() if path.exists() else "", flags=re.M)


def _solutions(solutions: Path) -> tuple[list[Path], list[str]]:
    if not solutions.is_dir():
        raise FileNotFoundError(f"no solutions folder {solutions}")
    paths = sorted(solutions.glob("*.ipynb"))
    bad = [f"{p}: name must look like NN_topic.ipynb" for p in paths if not NOTEBOOK_NAME.match(p.name)]
    return [p for p in paths if NOTEBOOK_NAME.match(p.name)], bad


def expected_copies(solutions: Path) -> tuple[dict[str, str], list[str]]:
    """{file name: student-copy JSON} for every solution notebook, and the problems found on the way."""
    paths, problems = _solutions(solutions)
    copies = {}
    for path in paths:
        nb = read(path)
        found = lint(nb, str(path))
        if not found:
            try:
                copies[path.name] = dumps(student_copy(nb, str(path)))
            except ValueError as err:
                found.append(str(err))
        problems += found
    return copies, problems


def build(solutions: Path, notebooks: Path) -> list[str]:
    """Write `notebooks/` from `solutions/` (removing stale NN_*.ipynb); returns what it did."""
    copies, problems = expected_copies(solutions)
    if problems:
        raise ValueError("cannot build the student copies:\n" + "\n".join(problems))
    notebooks.mkdir(parents=True, exist_ok=True)
    done = []
    for name, text in copies.items():
        (notebooks / name).write_text(text, encoding="utf-8", newline="\n")
        done.append(f"wrote {notebooks / name}")
    for path in sorted(notebooks.glob("*.ipynb")):
        if NOTEBOOK_NAME.match(path.name) and path.name not in copies:
            path.unlink()
            done.append(f"removed {path}")
    return done


def check(solutions: Path, notebooks: Path) -> list[str]:
    """Every problem `llava-mini course check` reports: lint, stored outputs, missing/drifted/extra copies."""
    copies, problems = expected_copies(solutions)
    paths, clone = _solutions(solutions)[0], solutions.resolve().parent
    for path in paths:
        problems += lint_outputs(read(path), str(path), clone, sanitize_rules(clone))
    for name, text in copies.items():
        target = notebooks / name
        if not target.exists():
            problems.append(f"missing: {target} (run `llava-mini course build`)")
            continue
        found = target.read_text(encoding="utf-8")
        if "BEGIN SOLUTION" in found:
            problems.append(f"{target}: the student copy contains a solution (BEGIN SOLUTION)")
        if found != text:
            problems.append(f"drifted: {target} differs from what `llava-mini course build` writes")
    for path in sorted(notebooks.glob("*.ipynb")) if notebooks.is_dir() else []:
        if path.name not in {p.name for p in paths}:
            problems.append(f"extra: {path} has no solution notebook")
    return problems


@contextmanager
def _kernel(nb, cwd: Path, *, allow_errors: bool, timeout: int):
    """A notebook client for `nb` on a fresh kernel of this interpreter with the course environment, shut down on
    exit (nbclient shuts down only kernels of managers it made itself: one left per call filled the memory)."""
    from jupyter_client import KernelManager
    from nbclient import NotebookClient
    from nbval.kernel import CURRENT_ENV_KERNEL_NAME, NbvalKernelspecManager

    env = dict(os.environ)
    apply_env(env)
    km = KernelManager(kernel_name=CURRENT_ENV_KERNEL_NAME, kernel_spec_manager=NbvalKernelspecManager())
    client = NotebookClient(nb, km=km, timeout=timeout, allow_errors=allow_errors, record_timing=False,
                            store_widget_state=False, resources={"metadata": {"path": str(cwd)}})
    try:
        with client.setup_kernel(env=env, stderr=subprocess.DEVNULL):  # the kernel's own log ("running over TCP")
            yield client
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)


def execute(nb, cwd: Path, *, allow_errors: bool = False, timeout: int = 900):
    """Run `nb` in place top to bottom in a fresh kernel of this interpreter, with the course environment.

    Without `allow_errors` the first failing cell raises (nbclient's CellExecutionError).
    """
    with _kernel(nb, cwd, allow_errors=allow_errors, timeout=timeout) as client:
        client.execute()
    return nb


def _error(cell):
    """The error output of an executed cell, or None (also for a cell tagged to raise, as nbval allows)."""
    if "raises-exception" in _tags(cell):
        return None
    return next((o for o in cell.get("outputs", []) if o.output_type == "error"), None)


def stubbing_problems(path: Path, timeout: int = 900) -> list[str]:
    """The grading contract of a solution notebook as a student sees it (its solution-only cells dropped): stubbing
    any one exercise makes its own grader the first cell to fail, with "not done yet". An empty list: it holds.

    One kernel runs the cells in order. At each exercise it first runs the stubbed cell and the cells up to its
    grader, then the solution and the same cells again: each exercise is checked with every earlier one solved, as
    a run of its own would, for the price of one run of the notebook instead of one per exercise. That is exact
    when those cells can run twice, as exercise cells that only define and graders that isolate their random state
    can. Cells are numbered as in the solution notebook.
    """
    nb = read(path)
    kept = [i for i, cell in enumerate(nb.cells) if "solution-only" not in _tags(cell)]
    nb.cells = [nb.cells[i] for i in kept]
    graders = {index: own_grader(nb, index) for index in exercise_cells(nb)}
    problems = [f"{path.name}: exercise cell {kept[index]} has no grader before the next exercise"
                for index, grader in graders.items() if grader is None]
    cells = list(nb.cells)  # nbclient writes each cell it runs back into nb.cells: run from a copy
    with _kernel(nb, path.parent, allow_errors=True, timeout=timeout) as client:
        for index, cell in enumerate(cells):
            if graders.get(index) is not None:
                trial = copy.deepcopy(cells[index: graders[index] + 1])
                trial[0].source = stub_source(trial[0].source, where=f"{path.name} cell {kept[index]}")
                for offset, tried in enumerate(trial):
                    client.execute_cell(tried, index + offset)
                failing = next((offset for offset, tried in enumerate(trial) if _error(tried)), None)
                error = _error(trial[-1])
                if failing != len(trial) - 1:
                    where = "no cell" if failing is None else f"cell {kept[index + failing]}"
                    problems.append(f"{path.name}: stubbing cell {kept[index]} first fails {where}, "
                                    f"not its grader {kept[graders[index]]}")
                elif error.ename != "AssertionError" or "is not done yet" not in error.evalue:
                    problems.append(f"{path.name}: stubbing cell {kept[index]} fails its grader "
                                    f"{kept[graders[index]]} with {error.ename}: {error.evalue}, not "
                                    "\"... is not done yet\"")
            client.execute_cell(cell, index)
            if (error := _error(cell)) is not None:
                return problems + [f"{path.name}: cell {kept[index]} fails with every exercise solved: "
                                   f"{error.ename}: {error.evalue}"]
    return problems


def execute_solution(path: Path) -> None:
    """Re-run one solution notebook and store its outputs: the only way outputs get into `solutions/`."""
    from nbclient.exceptions import CellExecutionError

    try:
        nb = execute(read(path), path.parent)
    except CellExecutionError as err:
        raise ValueError(f"{path} fails; its outputs were not stored:\n{err}") from None
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata.get("language_info", {}).pop("version", None)
    path.write_text(dumps(nb), encoding="utf-8", newline="\n")
