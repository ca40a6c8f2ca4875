"""Notebook 08's graders bite: the reference passes with one line, a stub is "not done yet", and each plausible
wrong implementation is rejected with a message naming the exercise; the study-question keys accept the right
choices and reject wrong sets."""

import re

import numpy as np
import pytest

from grader_contract import grader_contract

from llava_mini import keys
from llava_mini.grading import nb08, rejects

# --- exercise 8.1: the score line --------------------------------------------------------------------------


def parse_score(review):
    if not isinstance(review, str) or not review.strip():
        return None
    parts = review.strip().splitlines()[0].replace(",", " ").split()
    if len(parts) != 2:
        return None
    try:
        a, b = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    return (a, b) if 1 <= a <= 10 and 1 <= b <= 10 else None


def parse_any_numbers(review):  # the first two numbers anywhere: "8/10 7/10" reads as (8, 10)
    found = re.findall(r"\d+(?:\.\d+)?", review)
    return (float(found[0]), float(found[1])) if len(found) >= 2 else None


def parse_across_lines(review):  # joins the lines: "8\n7" reads as (8, 7)
    parts = review.replace(",", " ").split()[:2]
    try:
        return (float(parts[0]), float(parts[1])) if len(parts) == 2 else None
    except ValueError:
        return None


def parse_reversed(review):  # (Assistant 2, Assistant 1)
    got = parse_score(review)
    return None if got is None else (got[1], got[0])


def parse_sorted(review):  # the higher score first
    got = parse_score(review)
    return None if got is None else tuple(sorted(got, reverse=True))


def parse_no_range_check(review):
    parts = review.strip().splitlines()[0].replace(",", " ").split() if review.strip() else []
    try:
        return (float(parts[0]), float(parts[1])) if len(parts) == 2 else None
    except ValueError:
        return None


def parse_first_two_of_many(review):  # "8 7 6" reads as (8, 7)
    parts = review.strip().splitlines()[0].replace(",", " ").split() if review.strip() else []
    try:
        return (float(parts[0]), float(parts[1])) if len(parts) >= 2 else None
    except ValueError:
        return None


def parse_llava_minus_one(review):  # LLaVA's script: a failure is (-1, -1)
    return parse_score(review) or (-1.0, -1.0)


def parse_slash(review):  # strips "/10": accepts "8/10 7/10"
    return parse_score(re.sub(r"/10\b", "", review))


# --- exercise 8.2: the relative score ----------------------------------------------------------------------


def relative_score(pairs):
    kept = [p for p in pairs if p is not None]
    return 100 * sum(c for _, c in kept) / sum(r for r, _ in kept)


def relative_mean_of_ratios(pairs):
    kept = [p for p in pairs if p is not None]
    return 100 * float(np.mean([c / r for r, c in kept]))


def relative_fraction(pairs):
    return relative_score(pairs) / 100


def relative_minus_one(pairs):  # LLaVA's summary: a failure counts as (-1, -1)
    return relative_score([p if p is not None else (-1, -1) for p in pairs])


def relative_inverted(pairs):
    kept = [p for p in pairs if p is not None]
    return 100 * sum(r for r, _ in kept) / sum(c for _, c in kept)


def relative_mean_of_candidate(pairs):  # mean candidate score × 10, as if the reference were always 10
    kept = [p for p in pairs if p is not None]
    return 10 * float(np.mean([c for _, c in kept]))


# --- exercise 8.3: the bootstrap interval ------------------------------------------------------------------


def bootstrap_ci(pairs, n_boot=2000, seed=0):
    kept = np.array([p for p in pairs if p is not None], dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(kept), size=(n_boot, len(kept)))
    sums = kept[idx].sum(axis=1)
    low, high = np.percentile(100 * sums[:, 1] / sums[:, 0], [2.5, 97.5])
    return float(low), float(high)


def bootstrap_unpaired(pairs, n_boot=2000, seed=0):  # reference and candidate resampled independently
    kept = np.array([p for p in pairs if p is not None], dtype=float)
    rng = np.random.default_rng(seed)
    i, j = (rng.integers(0, len(kept), size=(n_boot, len(kept))) for _ in range(2))
    ratios = 100 * kept[j, 1].sum(axis=1) / kept[i, 0].sum(axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_without_replacement(pairs, n_boot=2000, seed=0):
    kept = np.array([p for p in pairs if p is not None], dtype=float)
    rng = np.random.default_rng(seed)
    ratios = [100 * kept[p, 1].sum() / kept[p, 0].sum() for p in (rng.permutation(len(kept)) for _ in range(n_boot))]
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_90(pairs, n_boot=2000, seed=0):
    kept = np.array([p for p in pairs if p is not None], dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(kept), size=(n_boot, len(kept)))
    sums = kept[idx].sum(axis=1)
    low, high = np.percentile(100 * sums[:, 1] / sums[:, 0], [5, 95])
    return float(low), float(high)


def bootstrap_mean_of_ratios(pairs, n_boot=2000, seed=0):  # resamples per-question ratios
    kept = np.array([p for p in pairs if p is not None], dtype=float)
    ratios = 100 * kept[:, 1] / kept[:, 0]
    idx = np.random.default_rng(seed).integers(0, len(kept), size=(n_boot, len(kept)))
    low, high = np.percentile(ratios[idx].mean(axis=1), [2.5, 97.5])
    return float(low), float(high)


def bootstrap_normal(pairs, n_boot=2000, seed=0):  # score ± 1.96 × the std of the candidate scores
    kept = np.array([p for p in pairs if p is not None], dtype=float)
    point = 100 * kept[:, 1].sum() / kept[:, 0].sum()
    half = 1.96 * 100 * kept[:, 1].std() / kept[:, 0].mean()
    return point - half, point + half


def bootstrap_drops_in_place(pairs, n_boot=2000, seed=0):
    while None in pairs:
        pairs.remove(None)
    return bootstrap_ci(pairs, n_boot, seed)


RIGHT = {"exercise 8.1": parse_score, "exercise 8.2": relative_score, "exercise 8.3": bootstrap_ci,
         "study question 5": lambda: "bceg", "study question 6": lambda: "acdg", "study question 15": lambda: "abeg"}
WRONG = {
    "exercise 8.1": [parse_any_numbers, parse_across_lines, parse_reversed, parse_sorted, parse_no_range_check,
                     parse_first_two_of_many, parse_llava_minus_one, parse_slash],
    "exercise 8.2": [relative_mean_of_ratios, relative_fraction, relative_minus_one, relative_inverted,
                     relative_mean_of_candidate],
    "exercise 8.3": [bootstrap_unpaired, bootstrap_without_replacement, bootstrap_90, bootstrap_normal,
                     bootstrap_drops_in_place],
    "study question 5": [lambda: "bce", lambda: "abceg", lambda: "bcegh"],
    "study question 6": [lambda: "acd", lambda: "abcdg", lambda: "acdfg"],
    "study question 15": [lambda: "abe", lambda: "abefg", lambda: "abcdeg"],
}

(test_every_grader_has_right_and_wrong_implementations, test_right_answer_prints_one_fixed_line,
 test_wrong_implementation_is_rejected, test_stub_is_not_done_yet) = grader_contract("llava_mini.grading.nb08", RIGHT,
                                                                                     WRONG)


def test_hints_name_the_mistake():
    check = nb08.check_parse_score
    assert "should be None" in rejects(check, parse_any_numbers)
    assert "keep the order of the line" in rejects(check, parse_reversed)
    check = nb08.check_relative_score
    assert "mean of per-question ratios" in rejects(check, relative_mean_of_ratios)
    assert "a percentage" in rejects(check, relative_fraction)
    assert "not scored -1, -1" in rejects(check, relative_minus_one)
    check = nb08.check_bootstrap_ci
    assert "resample whole questions" in rejects(check, bootstrap_unpaired)
    assert "*with* replacement" in rejects(check, bootstrap_without_replacement)
    assert "2.5th and 97.5th" in rejects(check, bootstrap_90)
    assert "changed its argument 1 in place" in rejects(check, bootstrap_drops_in_place)


def test_mean_of_ratios_is_not_the_mean_ratio():
    """The grader's pairs tell the two apart (otherwise the hint could not name the mistake)."""
    assert relative_score(nb08._PAIRS) != pytest.approx(relative_mean_of_ratios(nb08._PAIRS))


@pytest.mark.parametrize("question, right, wrong", [
    ("nb08.study_q5", ("bceg", "B, C, E and G", ["g", "e", "c", "b"]), ("bce", "abcdefgh", "")),
    ("nb08.study_q6", ("acdg", "(a) (c) (d) (g)"), ("acd", "abcdefg", "acdeg")),
    ("nb08.study_q15", ("abeg", "A B E G"), ("abe", "abcdefg", "abdeg"))])
def test_study_keys(question, right, wrong):
    assert all(keys.check_answer(question, a) for a in right)
    assert not any(keys.check_answer(question, a) for a in wrong)
