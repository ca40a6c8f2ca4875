"""Graders of notebook 09 (ablations):

- exercise 9.1 `design_lm_ablation()`: the design of study question 4's ablation as a dict over the menus
  `FACTORS`, `HELD` and `MEASURES`, checked against the rules of a controlled comparison (`DESIGN_RULES`).
- exercise 9.2 `paired_difference(a, b, n_boot, seed)`: mean of b − a over questions (seeds averaged first) and
  its 95% bootstrap interval, resampling questions with both arms kept together.
- exercise 9.3 `cross_attend(queries, z, wq, wk, wv)`: one head of a resampler's cross-attention, k learned queries
  reading N feature tokens (study questions 8 and 11).
- exercise 9.4 `select_features(hidden_states, layer, select)`: LLaVA's `feature_select` (study question 16).
- study questions 8, 10, 11 and 16: the letters of the true statements (keys `nb09.study_q8`, …).

The learner's code runs through `grading.call`; references are computed after that call.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from llava_mini import ablate
from llava_mini.grading import call, expect, expect_close, expect_same_gradient, expect_shape, expect_type, forbidden
from llava_mini.grading import grader, rng
from llava_mini.keys import require_answer

# --- exercise 9.1 ----------------------------------------------------------------------------------

FACTORS = ("train_lm", "projector", "feature_layer", "image_position", "stage1", "lr", "steps")
HELD = ("stage1_checkpoint", "data", "steps", "lr", "projector", "eval_questions", "train_lm")
MEASURES = ("exact_match", "format_control", "forgetting", "relative_score", "training_loss")
DESIGN_RULES = (
    "vary exactly one factor, train_lm, over the values [False, True]",
    "hold fixed at least the stage-1 checkpoint, the data, the steps, the projector and the evaluation questions, and "
    "never the factor you vary",
    "measure answer accuracy (exact_match), what an unfrozen LM might gain (format_control: descriptions and "
    "reasoning) and what it might lose (forgetting: its text-only skill); the training loss is not an outcome",
    "run at least 3 seeds per arm",
    "compare the arms paired, on the same questions",
)


@grader("exercise 9.1", "design_lm_ablation")
def check_design(design_lm_ablation) -> None:
    design = call(design_lm_ablation, what="design_lm_ablation()")
    expect_type(design, dict, "design_lm_ablation()")
    keys = {"vary", "values", "hold_fixed", "measure", "seeds", "comparison"}
    expect(set(design) == keys, f"the design should have exactly the keys {sorted(keys)}, got {sorted(design)}")
    vary, held, measured = design["vary"], set(design["hold_fixed"]), set(design["measure"])
    expect(isinstance(vary, str), f"'vary' names one factor, a string from {FACTORS}; got {vary!r} (one change at a "
                                  "time: two factors varied together cannot be told apart)")
    expect(vary in FACTORS, f"'vary' should be one of {FACTORS}, got {vary!r}")
    expect(vary == "train_lm", f"this ablation asks whether the LLM must be trained in stage 2: vary 'train_lm', not "
                               f"{vary!r}")
    expect(sorted(design["values"], key=str) == [False, True], "'values' should be [False, True]: frozen and trained "
                                                               f"f_φ; got {design['values']!r}")
    expect(held <= set(HELD), f"'hold_fixed' should list names from {HELD}, got {sorted(held - set(HELD))}")
    expect(vary not in held, "'hold_fixed' lists the factor you vary: it cannot be held fixed and varied")
    missing = {"stage1_checkpoint", "data", "steps", "projector", "eval_questions"} - held
    expect(not missing, f"hold fixed {sorted(missing)} too: if they differ between the arms, a difference in the "
                        "results may come from them")
    expect(measured <= set(MEASURES), f"'measure' should list names from {MEASURES}, got {sorted(measured - set(MEASURES))}")
    lacking = {"exact_match", "format_control", "forgetting"} - measured
    expect(not lacking, f"measure {sorted(lacking)} too: an unfrozen LLM can gain accuracy and format control and lose "
                        "its text-only skill; a design that looks at one of them can only find what it looks for")
    seeds = design["seeds"]
    expect(isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 3,
           f"'seeds' should be a whole number of at least 3: one seed cannot tell an effect from seed-to-seed spread; "
           f"got {seeds!r}")
    expect(design["comparison"] == "paired", "'comparison' should be 'paired': both arms answer the same questions, so "
                                             f"compare them question by question; got {design['comparison']!r}")


# --- exercise 9.2 ----------------------------------------------------------------------------------


def _arms(generator: np.random.Generator, seeds: int = 3, questions: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """Two arms' 0/1 scores on the same questions: hard questions are hard for both (a shared difficulty)."""
    easy = generator.random(questions) < 0.6  # (questions,)
    a = (generator.random((seeds, questions)) < 0.1 + 0.8 * easy).astype(float)  # (seeds, questions)
    b = (generator.random((seeds, questions)) < 0.16 + 0.8 * easy).astype(float)
    return a, b


@grader("exercise 9.2", "paired_difference")
def check_paired_difference(paired_difference) -> None:
    a, b = _arms(np.random.default_rng(92))
    what = "paired_difference(a, b, n_boot=4000, seed=0)"
    with forbidden((ablate, "paired_difference"), reason="is the answer to this exercise"):
        got = call(paired_difference, a, b, 4000, 0, what=what)
        flat = call(paired_difference, np.ones((3, 10)), np.ones((3, 10)), 500, 1, what="paired_difference(ones, ones)")
    expect(isinstance(got, (tuple, list)) and len(got) == 3, f"{what} should be (mean, low, high), got {got!r}")
    mean, low, high = (float(v) for v in got)
    want_mean, want_low, want_high = ablate.paired_difference(a, b, 40_000, 1)
    if abs(mean + want_mean) < 1e-9 and want_mean:
        raise AssertionError(f"{what} gave the mean {mean:.4f}: the difference is b − a (the change minus the "
                             "baseline), not a − b")
    expect(abs(mean - want_mean) < 1e-9, f"{what} gave the mean {mean:.4f}; the mean over questions of b − a is "
                                         f"{want_mean:.4f}")
    expect(np.allclose([float(v) for v in flat], 0.0), "two arms that are equal on every question differ by exactly 0, "
                                                       f"with the interval (0, 0); got {flat!r}")
    expect(low < high, f"{what} gave the interval ({low:.4f}, {high:.4f}): resample the questions with replacement")
    width, want_width = high - low, want_high - want_low
    if width > 1.25 * want_width:
        raise AssertionError(f"{what} gave ({low:.3f}, {high:.3f}), wider than the paired interval (about "
                             f"{want_low:.3f} to {want_high:.3f}): resample questions once for both arms, so a hard "
                             "question stays hard for both")
    expect(width > 0.6 * want_width, f"{what} gave ({low:.3f}, {high:.3f}), narrower than the interval over questions "
                                     f"(about {want_low:.3f} to {want_high:.3f}): average the seeds of each question "
                                     "first, then resample the questions (not the seed-question cells)")
    expect(abs(low - want_low) < 0.02 and abs(high - want_high) < 0.02,
           f"{what} gave ({low:.3f}, {high:.3f}); the 2.5th and 97.5th percentiles of the resampled mean differences "
           f"are about {want_low:.3f} and {want_high:.3f}")


# --- exercise 9.3 ----------------------------------------------------------------------------------


def _cross_attention(queries, z, wq, wk, wv):
    q, k, v = queries @ wq, z @ wk, z @ wv  # (Q, d), (B, N, d), (B, N, d)
    weights = torch.softmax(torch.einsum("qd,bnd->bqn", q, k) / math.sqrt(q.shape[-1]), dim=-1)  # (B, Q, N)
    return weights @ v  # (B, Q, d)


@grader("exercise 9.3", "cross_attend")
def check_cross_attend(cross_attend) -> None:
    g = rng(93)
    queries = torch.randn(3, 8, generator=g, requires_grad=True)  # (Q, D)
    z = torch.randn(2, 9, 6, generator=g, requires_grad=True)  # (B, N, D_in)
    wq = torch.randn(8, 4, generator=g, requires_grad=True)
    wk, wv = (torch.randn(6, 4, generator=g, requires_grad=True) for _ in range(2))
    got = call(cross_attend, queries, z, wq, wk, wv, what="cross_attend(queries, z, wq, wk, wv)")
    want = _cross_attention(queries, z, wq, wk, wv)
    expect_shape(got, (2, 3, 4), "cross_attend(queries (3, 8), z (2, 9, 6), …)")
    expect_close(got, want, "cross_attend(…)", "softmax(q·kᵀ / √d) over the N feature tokens, times v")
    expect_same_gradient(got, want, {"queries": queries, "z": z, "wq": wq, "wk": wk, "wv": wv}, "cross_attend(…)")
    order = torch.randperm(9, generator=g)
    shuffled = call(cross_attend, queries, z[:, order], wq, wk, wv, what="cross_attend on shuffled tokens")
    expect_close(shuffled, got, "cross_attend on the feature tokens in another order",
                 "attention over the tokens must not depend on their order")


# --- exercise 9.4 ----------------------------------------------------------------------------------


@grader("exercise 9.4", "select_features")
def check_select_features(select_features) -> None:
    g = rng(94)
    hidden = tuple(torch.randn(2, 1 + 9, 5, generator=g) for _ in range(5))  # embeddings + 4 blocks, CLS first
    for layer, select in ((-2, "patch"), (-1, "patch"), (-2, "cls_patch"), (1, "patch")):
        what = f"select_features(hidden_states, layer={layer}, select={select!r})"
        got = call(select_features, hidden, layer, select, what=what)
        want = hidden[layer] if select == "cls_patch" else hidden[layer][:, 1:]
        expect_type(got, torch.Tensor, what)
        if layer < 0 and got.shape == want.shape and torch.equal(got, (hidden[-layer] if select == "cls_patch" else
                                                                        hidden[-layer][:, 1:])):
            raise AssertionError(f"{what} read hidden_states[{-layer}]: layer {layer} counts from the end "
                                 "(hidden_states[-2] is the input of the last block), not from the start")
        if select == "patch" and got.shape[1] == want.shape[1] + 1:
            raise AssertionError(f"{what} kept the CLS token: 'patch' drops position 0 (N tokens, not N + 1)")
        expect_shape(got, tuple(want.shape), what)
        expect(torch.equal(got, want), f"{what} should be hidden_states[{layer}]"
                                       f"{'[:, 1:]' if select == 'patch' else ''}: the tokens of that layer, as they are")


# --- study questions -------------------------------------------------------------------------------

@grader("study question 8", "answer_study_q8")
def check_study_q8(answer_study_q8) -> None:
    require_answer("nb09.study_q8", answer_study_q8(), options="abcdefg",
                   hint="check each statement against section 4's table and figure")


@grader("study question 10", "answer_study_q10")
def check_study_q10(answer_study_q10) -> None:
    require_answer("nb09.study_q10", answer_study_q10(), options="abcdefg",
                   hint="check each statement against section 6's 2 × 2 table")


@grader("study question 11", "answer_study_q11")
def check_study_q11(answer_study_q11) -> None:
    require_answer("nb09.study_q11", answer_study_q11(), options="abcdefg",
                   hint="check each statement against exercise 9.3 and section 4")


@grader("study question 16", "answer_study_q16")
def check_study_q16(answer_study_q16) -> None:
    require_answer("nb09.study_q16", answer_study_q16(), options="abcdefg",
                   hint="check each statement against section 5 and exercise 9.4")
