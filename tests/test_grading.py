"""Graders and answer keys, without a kernel.

The pattern every notebook's grader tests follow (tests/test_grading_nbNN.py): RIGHT maps each exercise
label to the reference implementation, WRONG to two or three plausible wrong ones; the parametrised
tests below prove that the right one passes with exactly one line, a stub is "not done yet", and every
wrong one is rejected with a message naming the exercise.
"""

import json
import linecache
import random

import numpy as np
import pytest
import torch

from grader_contract import grader_contract

from llava_mini import keys
from llava_mini.cli import main
from llava_mini.grading import (call, demo, expect_close, expect_dtype, expect_same_gradient, expect_type, forbidden, grader,
                                 graders, rejects, rng)


def count_image_tokens(image_size, patch_size):
    if image_size % patch_size:
        raise ValueError("not a multiple")
    return (image_size // patch_size) ** 2


def mask_labels(input_ids, answer_mask):
    return torch.where(answer_mask, input_ids, -100)


def answer_study_q1():
    return "a, c"


def tokens_per_side(image_size, patch_size):
    return count_image_tokens(image_size, patch_size) and image_size // patch_size


def tokens_with_cls(image_size, patch_size):
    return count_image_tokens(image_size, patch_size) + 1


def tokens_as_float(image_size, patch_size):
    return (image_size / patch_size) ** 2


def tokens_without_size_check(image_size, patch_size):
    return (image_size // patch_size) ** 2


def labels_mask_inverted(input_ids, answer_mask):
    return torch.where(answer_mask, -100, input_ids)


def labels_zero_not_ignore(input_ids, answer_mask):
    return torch.where(answer_mask, input_ids, 0)


def labels_in_place(input_ids, answer_mask):
    input_ids[~answer_mask] = -100
    return input_ids


def answer_one_letter():
    return "a"


def answer_all_letters():
    return "abcd"


def answer_not_letters():
    return 13


RIGHT = {"exercise 0.1": count_image_tokens, "exercise 0.2": mask_labels, "study question 1": answer_study_q1}
WRONG = {
    "exercise 0.1": [tokens_per_side, tokens_with_cls, tokens_as_float, tokens_without_size_check],
    "exercise 0.2": [labels_mask_inverted, labels_zero_not_ignore, labels_in_place],
    "study question 1": [answer_one_letter, answer_all_letters, answer_not_letters],
}
(test_every_grader_has_right_and_wrong_implementations, test_right_answer_prints_one_fixed_line,
 test_wrong_implementation_is_rejected, test_stub_is_not_done_yet) = grader_contract("llava_mini.grading.demo",
                                                                                     RIGHT, WRONG, min_wrong=2)


def test_a_crash_or_a_library_gap_in_learner_code_names_the_exercise():
    def crash(input_ids, answer_mask):
        return input_ids @ answer_mask

    def gap(input_ids, answer_mask):
        raise NotImplementedError("aten::foo is not implemented for 'Meta'")

    with pytest.raises(AssertionError, match="^exercise 0.2: your code raised RuntimeError") as info:
        demo.check_mask_labels(crash)
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(AssertionError, match="^exercise 0.2: your code raised NotImplementedError: aten"):
        demo.check_mask_labels(gap)


def test_hints_say_what_to_fix():
    assert "CLS token" in rejects(demo.check_image_tokens, tokens_with_cls)
    assert "should be a int, got float" in rejects(demo.check_image_tokens, tokens_as_float)
    assert "should raise ValueError" in rejects(demo.check_image_tokens, tokens_without_size_check)
    assert ".clone()" in rejects(demo.check_mask_labels, labels_in_place)
    assert "exactly two statements" in rejects(demo.check_study_q1, answer_one_letter)
    assert "such as 'a, c'" in rejects(demo.check_study_q1, answer_not_letters)


def test_grader_neither_uses_nor_disturbs_the_notebooks_random_state():
    def noisy(input_ids, answer_mask):
        random.random(), np.random.rand(), torch.rand(5)
        return torch.where(answer_mask, input_ids, -100) + torch.randint(0, 2, input_ids.shape)

    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    first = rejects(demo.check_mask_labels, noisy)
    after = torch.rand(2).tolist(), random.random(), float(np.random.rand())
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    assert after == (torch.rand(2).tolist(), random.random(), float(np.random.rand()))
    assert rejects(demo.check_mask_labels, noisy) == first


def test_comparison_helpers_explain_the_difference():
    want = torch.zeros(2, 3)
    got = want.clone()
    got[1, 2] = 0.5
    with pytest.raises(AssertionError, match=r"1 of 6 entries \(first at index \(1, 2\), largest difference 0.5\); hint"):
        expect_close(got, want, "H_v", "hint")
    with pytest.raises(AssertionError, match=r"H_v should have shape \(2, 3\), got \(3, 2\)"):
        expect_close(got.T, want, "H_v")
    with pytest.raises(AssertionError, match="should be a int, got bool"):
        expect_type(True, int, "a count")


def test_two_graders_for_one_label_in_one_module_are_refused():
    def check_once(fn):
        pass

    def check_twice(fn):
        pass

    grader("exercise 9.9", "x")(check_once)
    with pytest.raises(ValueError, match=r"two graders for 'exercise 9\.9' in \S*test_grading: \S*check_once and"):
        grader("exercise 9.9", "x")(check_twice)


def test_one_label_in_two_modules_is_fine():
    from llava_mini.grading import nb00

    assert graders("llava_mini.grading.demo")["exercise 0.1"] is demo.check_image_tokens
    assert graders("llava_mini.grading.nb00")["exercise 0.1"] is nb00.check_image_tokens


# --- answer keys -----------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", ["ac", "CA", "a, c", " c a ", ["c", "a"], ("a", "c", "a"), {"a", "c"}, "a and c",
                                    "(a) (c)", "a; c", "a/c", "A & C"])
def test_right_choice_answers_pass(answer):
    assert keys.check_answer("demo.q1", answer)
    keys.require_answer("demo.q1", answer)


@pytest.mark.parametrize("answer", ["a", "abc", "acd", "", "a1", 13, None, ["ac", 1], "a and d", "and", "a or c",
                                    "all of them"])
def test_wrong_choice_answers_fail(answer):
    assert not keys.check_answer("demo.q1", answer)
    with pytest.raises(AssertionError):
        keys.require_answer("demo.q1", answer, hint="two are true")


def test_require_answer_messages():
    with pytest.raises(AssertionError, match="^z is not among the options a, b, c, d$"):
        keys.require_answer("demo.q1", "a, c, z", options="abcd")
    with pytest.raises(AssertionError, match="name every true statement by its letter"):
        keys.require_answer("demo.q1", "a or c")
    keys.require_answer("demo.q1", "a and c", options="abcd")
    with pytest.raises(AssertionError, match="^'ab' is not the answer; two are true$"):
        keys.require_answer("demo.q1", "ab", hint="two are true")
    with pytest.raises(AssertionError, match="no answer given yet"):
        keys.require_answer("demo.q1", ...)
    with pytest.raises(KeyError, match="no answer key 'demo.nope'"):
        keys.check_answer("demo.nope", "a")


@pytest.fixture
def fake_keys(monkeypatch):
    entries = {
        "t.score": keys.make_entry("t.score", 85.1, "number", precision=1),
        "t.params": keys.make_entry("t.params", 4198400, "number", precision=0),
        "t.loss": keys.make_entry("t.loss", "cross entropy", "text", also=["negative log-likelihood"]),
    }
    monkeypatch.setattr(keys, "load_keys", lambda: entries)
    return entries


@pytest.mark.parametrize("question_id, answer, right", [
    ("t.score", 85.1, True), ("t.score", "85.14", True), ("t.score", 85.05, True), ("t.score", np.float32(85.1), True),
    ("t.score", 85.15, False), ("t.score", 85.0, False), ("t.score", "85,1", False), ("t.score", True, False),
    ("t.params", 4198400, True), ("t.params", "4_198_400", True), ("t.params", torch.tensor(4198400.0), True),
    ("t.params", 4198401, False), ("t.params", float("nan"), False),
    ("t.loss", "  Cross   ENTROPY ", True), ("t.loss", "negative log-likelihood", True), ("t.loss", "mse", False),
])
def test_number_and_text_keys(fake_keys, question_id, answer, right):
    assert keys.check_answer(question_id, answer) is right


def test_keys_hide_the_answer_and_use_fresh_salts():
    a, b = keys.make_entry("x.y", "cross entropy", "text"), keys.make_entry("x.y", "cross entropy", "text")
    assert a["salt"] != b["salt"] and a["digests"] != b["digests"]
    assert "cross" not in json.dumps(a)
    with pytest.raises(ValueError, match="non-empty word"):
        keys.make_entry("two words", "a", "choice")


def test_add_key_from_the_command_line(tmp_path):
    path = tmp_path / "nb04.json"
    assert main(["course", "add-key", "--file", str(path), "--kind", "number", "nb04.w_params", "4198400"]) == 0
    assert main(["course", "add-key", "--file", str(path), "--kind", "choice", "nb04.why", "b, d"]) == 0
    assert main(["course", "add-key", "--file", str(path), "--kind", "choice", "nb04.why", "a"]) == 2
    data = json.loads(path.read_text())
    assert sorted(data) == ["nb04.w_params", "nb04.why"] and data["nb04.w_params"]["precision"] == 0
    assert path.read_text().endswith("}\n") and "4198400" not in path.read_text()


def test_package_keys_are_well_formed():
    for question_id, entry in keys.load_keys().items():
        assert entry["kind"] in keys.KINDS and entry["salt"], question_id
        assert entry["digests"] and all(len(d) == 64 for d in entry["digests"]), question_id
        assert ("precision" in entry) == (entry["kind"] == "number"), question_id


# --- the machinery for the grader classes of issue #13: mutation, the learner's own errors, forbidden calls,
# --- dtypes and gradients (a throwaway grader per class, registered under this test module)

@grader("exercise 9.1", "normalise")
def check_normalise(normalise) -> None:
    features = torch.randn(3, 4, generator=rng(0), requires_grad=True)  # (N, D)
    got = call(normalise, features, what="normalise(features)")
    want = features / features.norm(dim=-1, keepdim=True)
    expect_dtype(got, torch.float32, "normalise(features)")
    expect_close(got, want, "normalise(features)")
    expect_same_gradient(got, want, {"features": features}, "normalise(features)")


def normalise(features):
    return features / features.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("wrong, message", [
    (lambda f: f.detach().div_(f.norm(dim=-1, keepdim=True).detach()), "normalise(features) changed its argument 1 in "
                                                                       "place"),
    (lambda f: (f / f.norm(dim=-1, keepdim=True)).double(), "should have dtype torch.float32, got torch.float64; keep"),
    (lambda f: torch.from_numpy(f.detach().numpy() / np.linalg.norm(f.detach().numpy(), axis=-1, keepdims=True)).float(),
     "normalise(features) carries no gradient"),
    (lambda f: f / f.norm(dim=-1, keepdim=True).detach(), "the gradient of normalise(features) with respect to features "
                                                          "differs from the reference"),
])
def test_graders_see_mutation_dtype_and_gradients(wrong, message):
    assert message in rejects(check_normalise, wrong)


def test_a_value_computed_without_grad_is_named_as_such():
    def under_no_grad(f):
        with torch.no_grad():
            return normalise(f)

    assert "carries no gradient: it was computed under torch.no_grad()" in rejects(check_normalise, under_no_grad)
    check_normalise(normalise)


def test_the_learners_own_assert_is_reported_as_theirs():
    source = "def bare(features):\n    assert features.shape[0] == 99\n"  # a notebook cell: no pytest rewriting
    linecache.cache["<cell 7>"] = (len(source), None, source.splitlines(True), "<cell 7>")  # as IPython registers cells
    namespace = {}
    exec(compile(source, "<cell 7>", "exec"), namespace)
    bare = namespace["bare"]

    def with_message(features):
        raise AssertionError("my own check")

    with pytest.raises(AssertionError, match=r"^exercise 9.1: an assert in your code failed: "
                                             r"`assert features.shape\[0\] == 99` \(line \d+\)$"):
        check_normalise(bare)
    with pytest.raises(AssertionError, match="^exercise 9.1: your code raised AssertionError: my own check$"):
        check_normalise(with_message)


@grader("exercise 9.2", "attention")
def check_attention(attention) -> None:
    q, k, v = torch.randn(3, 2, 5, 8, generator=rng(1))
    with forbidden((torch.nn.functional, "scaled_dot_product_attention"), reason="this exercise asks you to write"):
        got = call(attention, q, k, v, what="attention(q, k, v)")
    expect_close(got, torch.nn.functional.scaled_dot_product_attention(q, k, v), "attention(q, k, v)")


def test_a_forbidden_call_is_named_and_the_function_comes_back():
    def by_hand(q, k, v):
        return torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, dim=-1) @ v

    def shortcut(q, k, v):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    check_attention(by_hand)
    message = rejects(check_attention, shortcut)
    assert message == ("exercise 9.2 is not right yet: attention(q, k, v) calls torch.nn.functional."
                       "scaled_dot_product_attention, which this exercise asks you to write")
    q = torch.ones(1, 1, 2, 4)
    assert torch.equal(torch.nn.functional.scaled_dot_product_attention(q, q, q), q)  # restored


@pytest.mark.parametrize("container", [[1, 2], {"a": [1]}, np.arange(3.0), (torch.zeros(2), "x")])
def test_call_notices_a_change_inside_any_container(container):
    def mutate(x):
        if isinstance(x, list):
            x.append(3)
        elif isinstance(x, dict):
            x["a"].append(2)
        elif isinstance(x, np.ndarray):
            x /= 2
        else:
            x[0].add_(1)

    with pytest.raises(AssertionError, match=r"^f\(x\) changed its argument 1 in place"):
        call(mutate, container, what="f(x)")
    assert call(lambda x: 7, container, what="f(x)") == 7
