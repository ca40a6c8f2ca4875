"""Graders and answer keys, without a kernel.

The pattern every notebook's grader tests follow (tests/test_grading_nbNN.py): RIGHT maps each exercise
label to the reference implementation, WRONG to two or three plausible wrong ones; the parametrised
tests below prove that the right one passes with exactly one line, a stub is "not done yet", and every
wrong one is rejected with a message naming the exercise.
"""

import json
import random

import numpy as np
import pytest
import torch

from grader_contract import grader_contract

from llava_mini import keys
from llava_mini.cli import main
from llava_mini.grading import demo, expect_close, expect_type, grader, graders, rejects


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
    assert "such as 'ac'" in rejects(demo.check_study_q1, answer_not_letters)


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

@pytest.mark.parametrize("answer", ["ac", "CA", "a, c", " c a ", ["c", "a"], ("a", "c", "a")])
def test_right_choice_answers_pass(answer):
    assert keys.check_answer("demo.q1", answer)
    keys.require_answer("demo.q1", answer)


@pytest.mark.parametrize("answer", ["a", "abc", "acd", "", "a1", 13, None, ["ac", 1]])
def test_wrong_choice_answers_fail(answer):
    assert not keys.check_answer("demo.q1", answer)
    with pytest.raises(AssertionError):
        keys.require_answer("demo.q1", answer, hint="two are true")


def test_require_answer_messages():
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
