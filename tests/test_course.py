"""The course machinery: stubs, lint, build/check, and the grading contract proved on real kernels.

The kernel tests use the demo course in tests/fixtures/course (one notebook, three exercises) and, when
`solutions/` has notebooks, every exercise of every solution notebook.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from llava_mini import course
from llava_mini.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tests" / "fixtures" / "course" / "solutions" / "00_demo.ipynb"
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))

EXERCISE = '''def f(x):
    """Docstring."""
    y = x + 1
    ### BEGIN SOLUTION
    if y:
        return y * 2
    ### END SOLUTION
    return 0'''


def _cell(source, *tags):
    cell = new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


# --- environment -----------------------------------------------------------------------------------

def test_course_env_unsets_mplbackend_so_kernels_draw_inline():
    env = {"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "8"}
    course.apply_env(env)
    assert "MPLBACKEND" not in env and env["OMP_NUM_THREADS"] == "2" and env["PYTHONHASHSEED"] == "0"


def test_setup_notebook_fixes_threads_seeds_determinism_and_prints_nothing(capsys):
    import matplotlib
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        with matplotlib.rc_context():
            course.setup_notebook(seed=3)
            first = torch.rand(3)
            course.setup_notebook(seed=3)
            assert torch.equal(first, torch.rand(3)) and matplotlib.rcParams["figure.dpi"] == 80
        assert torch.get_num_threads() == 2 and torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        torch.set_printoptions(profile="default")
    assert capsys.readouterr().out == ""


# --- stubs -----------------------------------------------------------------------------------------

def test_stub_keeps_indent_and_removes_the_solution():
    stub = course.stub_source(EXERCISE)
    assert stub.splitlines() == [
        "def f(x):", '    """Docstring."""', "    y = x + 1",
        "    # YOUR CODE HERE", "    raise NotImplementedError()", "    return 0",
    ]


def test_stub_in_a_nested_block_and_a_method():
    source = "class A:\n    def g(self):\n        for i in range(2):\n            ### BEGIN SOLUTION\n            pass\n            ### END SOLUTION\n"
    assert course.stub_source(source).splitlines()[3:5] == [
        "            # YOUR CODE HERE", "            raise NotImplementedError()"]


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "inside a function body"),
    ("class A:\n    ### BEGIN SOLUTION\n    x = 1\n    ### END SOLUTION", "inside a function body"),
    ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    ### END SOLUTION", "inside another"),
    ("def f():\n    x = 1\n    ### END SOLUTION", "without"),
    ("def f():\n    ### BEGIN SOLUTION\n    x = 1", "without"),
    ("def f():\n    ## BEGIN SOLUTION\n    x = 1\n    ### END SOLUTION", "malformed"),
])
def test_bad_markers_are_refused(source, message):
    with pytest.raises(ValueError, match=message):
        course.stub_source(source)


# --- lint ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cells, message", [
    ([_cell(EXERCISE, "exercise"), _cell("f(1)")], "no grader cell follows"),
    ([_cell(EXERCISE, "exercise"), _cell(EXERCISE.replace("f(", "g("), "exercise"), _cell("check(f)", "grader")],
     "no grader cell follows"),
    ([_cell("check(answer)", "study-q3")], "also be tagged 'grader'"),
    ([_cell(EXERCISE)], "outside an exercise cell"),
    ([_cell("def f():\n    pass", "exercise"), _cell("check(f)", "grader")], "needs a"),
    ([_cell("x = 1", "grader", "homework")], "unknown tag 'homework'"),
    ([_cell("check(f)", "grader", "solution-only")], "solution-only"),
    ([new_markdown_cell("see ### BEGIN SOLUTION")], "outside an exercise cell"),
])
def test_lint_finds_each_problem(cells, message):
    problems = course.lint(new_notebook(cells=cells), "nb")
    assert any(message in p for p in problems), problems


def test_demo_course_is_lint_clean():
    nb = course.read(DEMO)
    assert course.lint(nb, "demo") == []
    assert course.lint_outputs(nb, "demo", DEMO.parents[1], course.sanitize_rules(ROOT)) == []


def test_lint_outputs_finds_unexecuted_cells_errors_and_absolute_paths(tmp_path):
    nb = course.read(DEMO)
    nb.cells[1].execution_count = None
    nb.cells[4].outputs[0].text = f"loaded {tmp_path / 'zoo'}\n"
    nb.cells[8].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="", traceback=[])]
    problems = "\n".join(course.lint_outputs(nb, "demo", tmp_path))
    assert "cell 1: not executed" in problems and "absolute path" in problems and "(ValueError)" in problems


# --- build / check ---------------------------------------------------------------------------------

@pytest.fixture
def demo_course(tmp_path):
    """A copy of the demo course with its student copy built: (solutions, notebooks)."""
    solutions, notebooks = tmp_path / "solutions", tmp_path / "notebooks"
    solutions.mkdir()
    shutil.copy(DEMO, solutions)
    course.build(solutions, notebooks)
    return solutions, notebooks


def test_student_copy(demo_course):
    solutions, notebooks = demo_course
    solution, student = course.read(solutions / DEMO.name), course.read(notebooks / DEMO.name)
    text = (notebooks / DEMO.name).read_text()
    assert len(student.cells) == len(solution.cells) - 1  # the solution-only cell is dropped
    assert "BEGIN SOLUTION" not in text and "image_size // patch_size" not in text and "576" not in text
    mask_cell = next(c for c in student.cells if "def mask_labels" in c.source)
    assert "        # YOUR CODE HERE\n        raise NotImplementedError()\n    return labels" in mask_cell.source
    code = [c for c in student.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert student.metadata.kernelspec == course.KERNELSPEC and "widgets" not in student.metadata
    assert "version" not in student.metadata.language_info
    assert [c.metadata.get("tags") for c in code][-1] == ["grader", "study-q1"]


def test_build_is_byte_stable_and_check_passes(demo_course):
    solutions, notebooks = demo_course
    first = (notebooks / DEMO.name).read_bytes()
    course.build(solutions, notebooks)
    assert (notebooks / DEMO.name).read_bytes() == first and first.endswith(b"}\n")
    assert course.check(solutions, notebooks) == []


def test_check_reports_drift_missing_extra_and_leaked_solutions(demo_course):
    solutions, notebooks = demo_course
    student = notebooks / DEMO.name
    student.write_text(student.read_text().replace("# YOUR CODE HERE", "### BEGIN SOLUTION", 1))
    shutil.copy(student, notebooks / "01_extra.ipynb")
    problems = "\n".join(course.check(solutions, notebooks))
    assert "drifted" in problems and "contains a solution" in problems and "extra" in problems
    student.unlink()
    assert any(p.startswith("missing") for p in course.check(solutions, notebooks))


def test_build_refuses_a_broken_solution_and_removes_stale_copies(demo_course):
    solutions, notebooks = demo_course
    (notebooks / "07_renamed.ipynb").write_text("{}")
    assert f"removed {notebooks / '07_renamed.ipynb'}" in course.build(solutions, notebooks)
    nb = course.read(solutions / DEMO.name)
    nb.cells[3].source = nb.cells[3].source.replace("    ### END SOLUTION", "")
    (solutions / DEMO.name).write_text(course.dumps(nb))
    with pytest.raises(ValueError, match="without"):
        course.build(solutions, notebooks)


def test_cli_build_and_check(demo_course, capsys):
    solutions, notebooks = demo_course
    args = ["--solutions", str(solutions), "--notebooks", str(notebooks)]
    assert main(["course", "check", *args]) == 0
    (notebooks / DEMO.name).unlink()
    assert main(["course", "check", *args]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["course", "build", *args]) == 0 and main(["course", "check", *args]) == 0


def test_the_repository_student_copies_are_up_to_date():
    assert course.check(ROOT / "solutions", ROOT / "notebooks") == []


# --- the grading contract on real kernels -----------------------------------------------------------

def _graded_notebook(tmp_path, between: str = "", grader: str = "check(double)", tags=("grader",)):
    """A one-exercise notebook in the course's layout: a solution-only cell, the exercise, `between`, its grader,
    and a last cell that calls the exercise (the solution must be back after the stubbed try)."""
    import nbformat

    def cell(source, *tags):
        return nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)} if tags else {})

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("What the grader looks for.", metadata={"tags": ["solution-only"]}),
        cell("def check(f):\n    try:\n        f(2)\n    except NotImplementedError:\n"
             "        raise AssertionError('exercise 1 is not done yet') from None"),
        cell(f"def double(x):\n    {course.BEGIN}\n    return 2 * x\n    {course.END}", "exercise"),
        *([cell(between)] if between else []),
        cell(grader, *tags),
        cell("print(double(21))"),
    ])
    path = tmp_path / "00_tiny.ipynb"
    path.write_text(course.dumps(nb))
    return path


def test_stubbing_problems_holds_for_a_grader_that_catches_the_stub(tmp_path):
    assert course.stubbing_problems(_graded_notebook(tmp_path)) == []


@pytest.mark.parametrize("between, grader, problem", [
    ("", "print('checked')", "stubbing cell 2 first fails no cell, not its grader 3"),
    ("double(1)", "check(double)", "stubbing cell 2 first fails cell 3, not its grader 4"),
    ("", "double(1)", "fails its grader 3 with NotImplementedError"),
    ("", "try:\n    double(2)\nexcept NotImplementedError:\n    raise AssertionError('exercise 1 is unfinished')",
     "fails its grader 3 with AssertionError: exercise 1 is unfinished"),
    ("", "check(double); assert False, 'wrong'", "cell 3 fails with every exercise solved: AssertionError: wrong"),
])
def test_stubbing_problems_reports_a_grader_that_breaks_the_contract(tmp_path, between, grader, problem):
    """A grader that never calls the exercise, a cell before the grader that calls it, a grader that fails without
    saying "not done yet" (another error, or another message), and a grader that fails the solution too: each is
    reported, with the cells numbered as in the solution notebook."""
    problems = course.stubbing_problems(_graded_notebook(tmp_path, between, grader))
    assert len(problems) == 1 and problem in problems[0], problems


def test_stubbing_problems_reports_an_exercise_without_a_grader(tmp_path):
    problems = course.stubbing_problems(_graded_notebook(tmp_path, tags=()))
    assert problems == ["00_tiny.ipynb: exercise cell 2 has no grader before the next exercise"]


def test_execute_and_stubbing_shut_their_kernels_down(tmp_path):
    """Every call starts a kernel of its own: one left alive per call (nbclient does not shut down the kernel of a
    manager it was given) once held 64 kernels at once and ran the test machine out of memory."""
    import nbformat
    import psutil

    def kernels():
        return {p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}

    before = kernels()
    nb = course.execute(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")]), tmp_path)
    assert nb.cells[0].outputs[0]["text"] == "42\n"
    assert kernels() <= before
    problems = course.stubbing_problems(_graded_notebook(tmp_path, grader="assert False"))
    assert "cell 3 fails with every exercise solved" in problems[-1]  # it stopped there, inside the kernel
    assert kernels() <= before


def test_demo_stubbing_any_one_exercise_fails_its_own_grader_first():
    assert course.stubbing_problems(DEMO) == []


@pytest.mark.slow
@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solutions_stubbing_any_one_exercise_fails_its_own_grader_first(path):
    assert course.stubbing_problems(path) == []


@pytest.fixture
def clone(tmp_path):
    """The demo course in a clone-like folder elsewhere: root conftest, sanitize file, built student copy."""
    for name in ("conftest.py", "nbval_sanitize.cfg"):
        shutil.copy(ROOT / name, tmp_path)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    (tmp_path / "solutions").mkdir()
    shutil.copy(DEMO, tmp_path / "solutions")
    course.build(tmp_path / "solutions", tmp_path / "notebooks")
    return tmp_path


def _pytest(cwd, *args):
    return subprocess.run([sys.executable, "-m", "pytest", *args], cwd=cwd, capture_output=True, text=True)


def test_strict_nbval_reproduces_the_demo_solution_elsewhere(clone):
    run = _pytest(clone, "--nbval", "solutions/")
    assert run.returncode == 0, run.stdout[-3000:]


def test_nbval_on_the_fresh_student_copy_fails_at_every_exercise(clone):
    run = _pytest(clone, "--nbval", "notebooks/")
    assert run.returncode == 1 and "3 failed, 6 passed" in run.stdout, run.stdout[-3000:]
    summary = run.stdout.split("notebook cells that failed")[1]
    for label, name in [("exercise 0.1", "count_image_tokens"), ("exercise 0.2", "mask_labels"),
                        ("study question 1", "answer_study_q1")]:
        assert f"{label} is not done yet: implement {name} in the cell above" in summary
