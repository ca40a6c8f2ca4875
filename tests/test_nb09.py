"""Notebook 09's graders bite: the reference passes with one line, a stub is "not done yet", and each plausible
wrong implementation is rejected with a message naming the exercise; the study-question keys accept the right
choices and reject wrong sets."""

import math

import numpy as np
import pytest
import torch

from grader_contract import grader_contract

from llava_mini import keys
from llava_mini.grading import nb09, rejects

# --- exercise 9.1: the design of the LM ablation -------------------------------------------------------

GOOD_DESIGN = {"vary": "train_lm", "values": [False, True],
               "hold_fixed": ["stage1_checkpoint", "data", "steps", "lr", "projector", "eval_questions"],
               "measure": ["exact_match", "format_control", "forgetting", "relative_score"], "seeds": 3,
               "comparison": "paired"}


def design_lm_ablation():
    return dict(GOOD_DESIGN)


def _design(name, **change):
    def design_lm_ablation():
        return {**GOOD_DESIGN, **change}
    design_lm_ablation.__name__ = name
    return design_lm_ablation


design_two_factors = _design("design_two_factors", vary=["train_lm", "lr"])
design_one_seed = _design("design_one_seed", seeds=1)
design_no_forgetting = _design("design_no_forgetting", measure=["exact_match", "format_control", "relative_score"])
design_loss_only = _design("design_loss_only", measure=["training_loss"])
design_unpaired = _design("design_unpaired", comparison="unpaired")
design_own_stage1 = _design("design_own_stage1", hold_fixed=["data", "steps", "lr", "projector", "eval_questions"])
design_holds_the_factor = _design("design_holds_the_factor", hold_fixed=[*GOOD_DESIGN["hold_fixed"], "train_lm"])
design_wrong_factor = _design("design_wrong_factor", vary="projector")

# --- exercise 9.2: the paired difference ---------------------------------------------------------------


def paired_difference(a, b, n_boot=2000, seed=0):
    diff = (np.asarray(b, float) - np.asarray(a, float)).mean(axis=0)
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(n_boot, len(diff)))
    low, high = np.percentile(diff[idx].mean(axis=1), [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def paired_reversed(a, b, n_boot=2000, seed=0):  # a − b
    return paired_difference(b, a, n_boot, seed)


def unpaired(a, b, n_boot=2000, seed=0):  # each arm's questions resampled on their own
    a, b = np.asarray(a, float).mean(axis=0), np.asarray(b, float).mean(axis=0)
    g = np.random.default_rng(seed)
    ia, ib = (g.integers(0, len(a), size=(n_boot, len(a))) for _ in range(2))
    low, high = np.percentile(b[ib].mean(axis=1) - a[ia].mean(axis=1), [2.5, 97.5])
    return float(b.mean() - a.mean()), float(low), float(high)


def seeds_resampled(a, b, n_boot=2000, seed=0):  # resamples the 3 seeds, not the questions
    per_seed = (np.asarray(b, float) - np.asarray(a, float)).mean(axis=1)
    idx = np.random.default_rng(seed).integers(0, len(per_seed), size=(n_boot, len(per_seed)))
    low, high = np.percentile(per_seed[idx].mean(axis=1), [2.5, 97.5])
    return float(per_seed.mean()), float(low), float(high)


def no_resampling(a, b, n_boot=2000, seed=0):  # a point estimate dressed as an interval
    mean = float((np.asarray(b, float) - np.asarray(a, float)).mean())
    return mean, mean, mean


def normal_without_sqrt_n(a, b, n_boot=2000, seed=0):  # ± 1.96 sd of the per-question differences
    diff = (np.asarray(b, float) - np.asarray(a, float)).mean(axis=0)
    return float(diff.mean()), float(diff.mean() - 1.96 * diff.std()), float(diff.mean() + 1.96 * diff.std())


# --- exercise 9.3: cross-attention --------------------------------------------------------------------


def cross_attend(queries, z, wq, wk, wv):
    q, k, v = queries @ wq, z @ wk, z @ wv
    return torch.softmax(torch.einsum("qd,bnd->bqn", q, k) / math.sqrt(q.shape[-1]), dim=-1) @ v


def attend_softmax_over_queries(queries, z, wq, wk, wv):
    q, k, v = queries @ wq, z @ wk, z @ wv
    return torch.softmax(torch.einsum("qd,bnd->bqn", q, k) / math.sqrt(q.shape[-1]), dim=1) @ v


def attend_unscaled(queries, z, wq, wk, wv):
    q, k, v = queries @ wq, z @ wk, z @ wv
    return torch.softmax(torch.einsum("qd,bnd->bqn", q, k), dim=-1) @ v


def attend_mean_pool(queries, z, wq, wk, wv):  # ignores the queries: every output is the mean value
    v = z @ wv
    return v.mean(dim=1, keepdim=True).expand(-1, queries.shape[0], -1)


def attend_detached(queries, z, wq, wk, wv):
    with torch.no_grad():
        return cross_attend(queries, z, wq, wk, wv)


def attend_with_positions(queries, z, wq, wk, wv):  # adds a position ramp: the order of the tokens now matters
    ramp = torch.linspace(0, 1, z.shape[1]).view(1, -1, 1)
    return cross_attend(queries, z + ramp, wq, wk, wv)


# --- exercise 9.4: feature selection ------------------------------------------------------------------


def select_features(hidden_states, layer=-2, select="patch"):
    h = hidden_states[layer]
    return h if select == "cls_patch" else h[:, 1:]


def select_from_start(hidden_states, layer=-2, select="patch"):  # "-2 means the second layer"
    h = hidden_states[abs(layer)]
    return h if select == "cls_patch" else h[:, 1:]


def select_keeps_cls(hidden_states, layer=-2, select="patch"):
    return hidden_states[layer]


def select_always_last(hidden_states, layer=-2, select="patch"):
    h = hidden_states[-1]
    return h if select == "cls_patch" else h[:, 1:]


def select_drops_last_token(hidden_states, layer=-2, select="patch"):
    h = hidden_states[layer]
    return h if select == "cls_patch" else h[:, :-1]


RIGHT = {"exercise 9.1": design_lm_ablation, "exercise 9.2": paired_difference, "exercise 9.3": cross_attend,
         "exercise 9.4": select_features,
         "study question 8": lambda: "abg", "study question 10": lambda: "bcf", "study question 11": lambda: "abeg",
         "study question 16": lambda: "bcf"}
WRONG = {
    "exercise 9.1": [design_two_factors, design_one_seed, design_no_forgetting, design_loss_only, design_unpaired,
                     design_own_stage1, design_holds_the_factor, design_wrong_factor],
    "exercise 9.2": [paired_reversed, unpaired, seeds_resampled, no_resampling, normal_without_sqrt_n],
    "exercise 9.3": [attend_softmax_over_queries, attend_unscaled, attend_mean_pool, attend_detached,
                     attend_with_positions],
    "exercise 9.4": [select_from_start, select_keeps_cls, select_always_last, select_drops_last_token],
    "study question 8": [lambda: "ab", lambda: "abdg", lambda: "abcg"],
    "study question 10": [lambda: "bc", lambda: "bcef", lambda: "bcfg"],
    "study question 11": [lambda: "abg", lambda: "abdeg", lambda: "abcdefg"],
    "study question 16": [lambda: "bf", lambda: "bcdf", lambda: "abcf"],
}
(test_every_grader_has_right_and_wrong_implementations, test_right_answer_prints_one_fixed_line,
 test_wrong_implementation_is_rejected, test_stub_is_not_done_yet) = grader_contract("llava_mini.grading.nb09", RIGHT,
                                                                                     WRONG)


def test_hints_name_the_mistake():
    assert "one change at a time" in rejects(nb09.check_design, design_two_factors)
    assert "at least 3" in rejects(nb09.check_design, design_one_seed)
    assert "'paired'" in rejects(nb09.check_design, design_unpaired)
    assert "stage1_checkpoint" in rejects(nb09.check_design, design_own_stage1)
    assert "b − a" in rejects(nb09.check_paired_difference, paired_reversed)
    assert "resample questions once for both arms" in rejects(nb09.check_paired_difference, unpaired)
    assert "carries no gradient" in rejects(nb09.check_cross_attend, attend_detached)
    assert "counts from the end" in rejects(nb09.check_select_features, select_from_start)
    assert "kept the CLS token" in rejects(nb09.check_select_features, select_keeps_cls)


def test_the_grader_arms_separate_paired_from_unpaired_intervals():
    """The grader's data has a shared difficulty, so the paired interval is much narrower than the unpaired one."""
    a, b = nb09._arms(np.random.default_rng(92))
    _, low, high = paired_difference(a, b, 4000)
    _, ulow, uhigh = unpaired(a, b, 4000)
    assert (uhigh - ulow) > 1.5 * (high - low)


@pytest.mark.parametrize("question, right, wrong", [
    ("nb09.study_q8", ("abg", "A, B and G", ["g", "b", "a"]), ("ab", "abdg", "abcdefg")),
    ("nb09.study_q10", ("bcf", "(b) (c) (f)"), ("bc", "bcef", "bcfg")),
    ("nb09.study_q11", ("abeg", "A B E G"), ("abg", "abdeg", "")),
    ("nb09.study_q16", ("bcf", "b, c, f"), ("bf", "bcdf", "abcf"))])
def test_study_keys(question, right, wrong):
    assert all(keys.check_answer(question, a) for a in right)
    assert not any(keys.check_answer(question, a) for a in wrong)
