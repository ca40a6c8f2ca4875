"""Graders of notebook 00, orientation (`solutions/00_orientation.ipynb`).

- exercise 0.1 `count_image_tokens(image_size, patch_size, keep_cls=False)`: LLaVA §4.1, the grid features
  Z_v of a ViT; 224/14 -> 256 (LLaVA v1), 336/14 -> 576 (LLaVA-1.5), CLS dropped unless asked for.
- exercise 0.2 `projector_params(d_vision, d_lm, bias=True)`: the size of W (1024 -> 4096: 4,198,400).
- exercise 0.3 `chat_prompt(history, question, system)`: the Vicuna-v1 generation prompt, compared with
  `conversation.render_chat` on teacher conversations of the grader's own scenes.
- study question 1: the letters of the true statements about LLaVA's contribution (key `nb00.study_q1`).
"""

from __future__ import annotations

import torch

from llava_mini import data
from llava_mini.conversation import render_chat
from llava_mini.grading import call, expect, expect_equal, expect_type, grader, rng
from llava_mini.keys import require_answer
from llava_mini.tokenizer import IMAGE, SYSTEM_PROMPT


def _tokens(image_size: int, patch_size: int, keep_cls: bool) -> int:
    return (image_size // patch_size) ** 2 + int(keep_cls)


@grader("exercise 0.1", "count_image_tokens")
def check_image_tokens(count_image_tokens) -> None:
    """Square images; the real LLaVA cases, llava-mini's 48/16, and cases drawn from the grader's generator."""
    g = rng(1)
    cases = [(224, 14), (336, 14), (48, 16), (32, 8)]
    for _ in range(4):
        patch = int(torch.randint(2, 33, (), generator=g))
        cases.append((patch * int(torch.randint(1, 30, (), generator=g)), patch))
    for image_size, patch_size in cases:
        for keep_cls in (False, True):
            what = f"count_image_tokens({image_size}, {patch_size}, keep_cls={keep_cls})"
            got = call(count_image_tokens, image_size, patch_size, keep_cls=keep_cls, what=what)
            expect_type(got, int, what)
            want = _tokens(image_size, patch_size, keep_cls)
            side = image_size // patch_size
            if got in (side, side + int(keep_cls)) and side > 1:
                hint = "that counts the patches along one side; the patches form a 2-D grid"
            elif got == want + 1:
                hint = "LLaVA drops the CLS token (select_feature='patch'); count it only when keep_cls=True"
            elif got == want - 1:
                hint = "with keep_cls=True the CLS token comes on top of the patch tokens"
            else:
                hint = "count the patches along one side first, then the whole grid"
            expect_equal(got, want, what, hint=hint)
    for image_size, patch_size in [(230, 14), (50, 16)]:
        try:
            count_image_tokens(image_size, patch_size)
        except ValueError:
            continue
        expect(False, f"count_image_tokens({image_size}, {patch_size}) should raise ValueError: "
                      f"{image_size} is not a multiple of {patch_size}, so the patches do not tile the image")


@grader("exercise 0.2", "projector_params")
def check_projector_params(projector_params) -> None:
    """Against the layer shapes and against a real `nn.Linear`, with and without bias."""
    g = rng(2)
    cases = [(1024, 4096), (1024, 5120), (64, 128)]
    cases += [tuple(int(v) for v in torch.randint(2, 300, (2,), generator=g)) for _ in range(3)]
    for d_vision, d_lm in cases:
        for bias in (True, False):
            what = f"projector_params({d_vision}, {d_lm}, bias={bias})"
            got = call(projector_params, d_vision, d_lm, bias=bias, what=what)
            expect_type(got, int, what)
            if d_vision * d_lm < 10**6:
                want = sum(p.numel() for p in torch.nn.Linear(d_vision, d_lm, bias=bias).parameters())
            else:
                want = d_vision * d_lm + (d_lm if bias else 0)
            if not bias:
                hint = "without a bias, W is just a d_lm x d_vision matrix"
            elif got == d_vision * d_lm:
                hint = "you forgot the bias b (H_v = W·Z_v + b)"
            else:
                hint = "W maps every d_vision-vector to a d_lm-vector; the bias has one entry per output"
            expect_equal(got, want, what, hint=hint)
    what = "projector_params(1024, 4096)"
    expect_equal(call(projector_params, 1024, 4096, what=what), 4_198_400, what,
                 hint="bias=True is the default, as in LLaVA's nn.Linear")


def _first_difference(got: str, want: str) -> str:
    """Where two strings first differ, with a little context on both sides."""
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    lo = max(0, at - 25)
    return (f"first difference at character {at}: expected ...{want[lo:at + 15]!r}..., "
            f"got ...{got[lo:at + 15]!r}...")


def _conversations(seed: int, n: int) -> list[list[tuple[str, str]]]:
    """(question, answer) pairs of the teacher's conversations about `n` scenes from `seed` on."""
    out = []
    for scene in range(seed, seed + n):
        turns = data.scene_records(scene)[0]["conversation"][0]["conversations"]
        pairs = [(turns[i]["value"], turns[i + 1]["value"]) for i in range(0, len(turns), 2)]
        out.append([(q.removeprefix(IMAGE + "\n"), a) for q, a in pairs])
    return out


@grader("exercise 0.3", "chat_prompt")
def check_chat_prompt(chat_prompt) -> None:
    """Compare with `render_chat` (LLaVA's `conv_vicuna_v1.get_prompt()`), turn by turn, on teacher chats."""
    seed = int(torch.randint(1000, 100_000, (), generator=rng(3)))
    systems = [SYSTEM_PROMPT, SYSTEM_PROMPT, "You are a careful assistant who looks at shapes."]
    for pairs, system in zip(_conversations(seed, 3), systems):
        for k in range(len(pairs)):
            history, question = pairs[:k], pairs[k][0]
            what = f"chat_prompt(<{len(history)} earlier turns>, {question!r}, system=...)"
            got = call(chat_prompt, history, question, system=system, what=what)
            expect_type(got, str, what)
            turns = []  # the reference, built only after the learner's call: nothing to find in this frame before
            for i, (q, a) in enumerate([*history, (question, None)]):
                turns.append({"from": "human", "value": (IMAGE + "\n" + q) if i == 0 else q})
                if a is not None:
                    turns.append({"from": "gpt", "value": a})
            want = render_chat(turns, system=system)
            if got != want:
                raise AssertionError(f"{what} is not the Vicuna-v1 layout; {_first_difference(got, want)}")


@grader("study question 1", "answer_study_q1")
def check_study_q1(answer_study_q1) -> None:
    """Multiple choice: the letters of every true statement, checked against the hashed key."""
    require_answer("nb00.study_q1", answer_study_q1(),
                   hint="ask of each statement: what did GPT-4 see, what was frozen, what is 85.1% a ratio to, "
                        "and what happens without the instruction data", options="abcdefgh")
