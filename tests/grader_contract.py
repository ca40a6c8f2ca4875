"""The four checks every notebook's graders must pass (docs/course_machinery.md, "Graders"), as test
functions a test module binds to its own right and wrong implementations:

    (test_every_grader_has_right_and_wrong_implementations, test_right_answer_prints_one_fixed_line,
     test_wrong_implementation_is_rejected, test_stub_is_not_done_yet) = grader_contract("llava_mini.grading.nb01",
                                                                                         RIGHT, WRONG)
"""

import pytest

from llava_mini.grading import graders, rejects


def grader_contract(module: str, right: dict, wrong: dict, min_wrong: int = 3):
    """right: {label: reference implementation}; wrong: {label: [plausible wrong implementations]}."""
    checks = graders(module)

    def test_every_grader_has_right_and_wrong_implementations():
        assert set(checks) == set(right) == set(wrong)
        assert all(len(fns) >= min_wrong for fns in wrong.values())

    @pytest.mark.parametrize("label", sorted(right))
    def test_right_answer_prints_one_fixed_line(label, capsys):
        checks[label](right[label])
        assert capsys.readouterr().out == f"{label} passed\n"

    @pytest.mark.parametrize("label, wrong_fn", [(k, f) for k, fns in wrong.items() for f in fns],
                             ids=lambda v: getattr(v, "__name__", v))
    def test_wrong_implementation_is_rejected(label, wrong_fn):
        assert rejects(checks[label], wrong_fn).startswith(f"{label} is not right yet: ")

    @pytest.mark.parametrize("label", sorted(right))
    def test_stub_is_not_done_yet(label):
        def stub(*args, **kwargs):
            raise NotImplementedError()

        with pytest.raises(AssertionError, match=f"^{label} is not done yet: implement \\w+ in the cell above$"):
            checks[label](stub)

    return (test_every_grader_has_right_and_wrong_implementations, test_right_answer_prints_one_fixed_line,
            test_wrong_implementation_is_rejected, test_stub_is_not_done_yet)
