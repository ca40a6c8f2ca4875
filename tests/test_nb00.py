"""Notebook 00's graders bite: the reference passes with one line, a stub is "not done yet", and each
plausible wrong implementation is rejected with a message naming the exercise (tests/test_grading.py's
pattern); the study-question key accepts the right choices in any spelling and rejects wrong sets."""

import linecache
import sys

import pytest

from llava_mini import keys
from grader_contract import grader_contract

from llava_mini.grading import nb00, rejects
from llava_mini.tokenizer import SYSTEM_PROMPT

# --- exercise 0.1 ----------------------------------------------------------------------------------


def count_image_tokens(image_size, patch_size, keep_cls=False):
    if image_size % patch_size:
        raise ValueError(f"image size {image_size} is not a multiple of patch size {patch_size}")
    return (image_size // patch_size) ** 2 + (1 if keep_cls else 0)


def tokens_always_cls(image_size, patch_size, keep_cls=False):
    return count_image_tokens(image_size, patch_size) + 1


def tokens_one_side(image_size, patch_size, keep_cls=False):
    count_image_tokens(image_size, patch_size)
    return image_size // patch_size + (1 if keep_cls else 0)


def tokens_ignore_keep_cls(image_size, patch_size, keep_cls=False):
    return count_image_tokens(image_size, patch_size)


def tokens_as_float(image_size, patch_size, keep_cls=False):
    count_image_tokens(image_size, patch_size)
    return (image_size / patch_size) ** 2 + keep_cls


def tokens_no_size_check(image_size, patch_size, keep_cls=False):
    return (image_size // patch_size) ** 2 + (1 if keep_cls else 0)


# --- exercise 0.2 ----------------------------------------------------------------------------------


def projector_params(d_vision, d_lm, bias=True):
    return d_vision * d_lm + (d_lm if bias else 0)


def params_no_bias(d_vision, d_lm, bias=True):
    return d_vision * d_lm


def params_bias_on_input_side(d_vision, d_lm, bias=True):
    return d_vision * d_lm + (d_vision if bias else 0)


def params_bias_flag_ignored(d_vision, d_lm, bias=True):
    return d_vision * d_lm + d_lm


def params_as_float(d_vision, d_lm, bias=True):
    return float(projector_params(d_vision, d_lm, bias))


# --- exercise 0.3 ----------------------------------------------------------------------------------


def chat_prompt(history, question, system=SYSTEM_PROMPT):
    prompt = system
    for i, (q, a) in enumerate([*history, (question, None)]):
        prompt += (" USER: <image>\n" if i == 0 else "USER: ") + q + " ASSISTANT:"
        if a is not None:
            prompt += " " + a + "</s>"
    return prompt


def prompt_space_after_stop(history, question, system=SYSTEM_PROMPT):  # "</s> USER:" (sep2 + sep)
    return chat_prompt(history, question, system).replace("</s>USER:", "</s> USER:")


def prompt_without_assistant_tag(history, question, system=SYSTEM_PROMPT):
    return chat_prompt(history, question, system).removesuffix(" ASSISTANT:")


def prompt_without_system(history, question, system=SYSTEM_PROMPT):
    return chat_prompt(history, question, system).removeprefix(system + " ")


def prompt_image_every_turn(history, question, system=SYSTEM_PROMPT):
    return chat_prompt(history, question, system).replace("</s>USER: ", "</s>USER: <image>\n")


def prompt_without_stop(history, question, system=SYSTEM_PROMPT):
    return chat_prompt(history, question, system).replace("</s>", " ")


def prompt_appends_to_history(history, question, system=SYSTEM_PROMPT):  # right text, but the caller's list grows
    history.append((question, None))
    prompt = system
    for i, (q, a) in enumerate(history):
        prompt += (" USER: <image>\n" if i == 0 else "USER: ") + q + " ASSISTANT:"
        if a is not None:
            prompt += " " + a + "</s>"
    return prompt


def prompt_peeking(history, question, system=SYSTEM_PROMPT):  # reads the grader's expected answer, if there is one
    frame = sys._getframe(1)
    while frame is not None:
        if isinstance(frame.f_locals.get("want"), str):
            return frame.f_locals["want"]
        frame = frame.f_back
    return ""


def prompt_vicuna_v0(history, question, system=SYSTEM_PROMPT):  # the paper's Table 2 format: ### separators
    prompt = system + "###"
    for i, (q, a) in enumerate([*history, (question, None)]):
        prompt += "Human: " + ("<image>\n" if i == 0 else "") + q + "###Assistant:"
        if a is not None:
            prompt += " " + a + "###"
    return prompt


# --- study question 1 ------------------------------------------------------------------------------


def answer_study_q1():
    return "b, d, g, h"


def answer_architecture_myth():
    return "abdgh"


def answer_gpt4_saw_images():
    return "bcdgh"


def answer_too_few():
    return "bd"


RIGHT = {
    "exercise 0.1": count_image_tokens,
    "exercise 0.2": projector_params,
    "exercise 0.3": chat_prompt,
    "study question 1": answer_study_q1,
}
WRONG = {
    "exercise 0.1": [tokens_always_cls, tokens_one_side, tokens_ignore_keep_cls, tokens_as_float, tokens_no_size_check],
    "exercise 0.2": [params_no_bias, params_bias_on_input_side, params_bias_flag_ignored, params_as_float],
    "exercise 0.3": [prompt_space_after_stop, prompt_without_assistant_tag, prompt_without_system,
                     prompt_image_every_turn, prompt_without_stop, prompt_vicuna_v0, prompt_appends_to_history,
                     prompt_peeking],
    "study question 1": [answer_architecture_myth, answer_gpt4_saw_images, answer_too_few],
}
(test_every_grader_has_right_and_wrong_implementations, test_right_answer_prints_one_fixed_line,
 test_wrong_implementation_is_rejected, test_stub_is_not_done_yet) = grader_contract("llava_mini.grading.nb00",
                                                                                     RIGHT, WRONG, min_wrong=2)


def test_hints_say_what_to_fix():
    assert "drops the CLS token" in rejects(nb00.check_image_tokens, tokens_always_cls)
    assert "along one side" in rejects(nb00.check_image_tokens, tokens_one_side)
    assert "comes on top of the patch tokens" in rejects(nb00.check_image_tokens, tokens_ignore_keep_cls)
    assert "should be a int, got float" in rejects(nb00.check_image_tokens, tokens_as_float)
    assert "should raise ValueError" in rejects(nb00.check_image_tokens, tokens_no_size_check)
    assert "forgot the bias" in rejects(nb00.check_projector_params, params_no_bias)
    assert "one entry per output" in rejects(nb00.check_projector_params, params_bias_on_input_side)
    assert "without a bias" in rejects(nb00.check_projector_params, params_bias_flag_ignored)
    message = rejects(nb00.check_chat_prompt, prompt_space_after_stop)
    assert "first difference at character" in message and "</s>USER: How" in message
    assert "ASSISTANT:" in rejects(nb00.check_chat_prompt, prompt_without_assistant_tag)


def test_study_q1_names_a_letter_that_is_not_an_option():
    message = rejects(nb00.check_study_q1, lambda: "b, d, g, h, k")
    assert message == "study question 1 is not right yet: k is not among the options a, b, c, d, e, f, g, h"


def test_the_chat_prompt_grader_names_a_changed_history_and_leaves_nothing_to_peek_at():
    assert "changed its argument 1 in place" in rejects(nb00.check_chat_prompt, prompt_appends_to_history)
    assert "is not the Vicuna-v1 layout" in rejects(nb00.check_chat_prompt, prompt_peeking)


def test_a_learners_own_assert_is_reported_as_theirs():
    source = "def count_with_a_bare_assert(image_size, patch_size, keep_cls=False):\n    assert image_size < 100\n"
    linecache.cache["<cell 20>"] = (len(source), None, source.splitlines(True), "<cell 20>")  # as IPython does
    namespace = {}
    exec(compile(source, "<cell 20>", "exec"), namespace)  # a notebook cell: no pytest assert rewriting
    count_with_a_bare_assert = namespace["count_with_a_bare_assert"]

    with pytest.raises(AssertionError, match="^exercise 0.1: an assert in your code failed: `assert image_size < 100`"):
        nb00.check_image_tokens(count_with_a_bare_assert)


def test_graders_agree_with_the_real_llava_numbers(capsys):
    assert count_image_tokens(224, 14) == 256 and count_image_tokens(336, 14) == 576
    assert count_image_tokens(336, 14, keep_cls=True) == 577
    assert projector_params(1024, 4096) == 4_198_400 and projector_params(1024, 5120) == 5_248_000


@pytest.mark.parametrize("answer", ["bdgh", "HGDB", "b, d, g, h", ["h", "g", "d", "b"], " b d g h ", "b, d, g and h",
                                    {"b", "d", "g", "h"}])
def test_study_q1_key_accepts_the_right_choices(answer):
    assert keys.check_answer("nb00.study_q1", answer)


@pytest.mark.parametrize("answer", ["bdg", "abdgh", "bcdgh", "bdefgh", "abcdefgh", "", 4, None])
def test_study_q1_key_rejects_wrong_sets(answer):
    assert not keys.check_answer("nb00.study_q1", answer)
