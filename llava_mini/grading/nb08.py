"""Graders of notebook 08 (evaluation: LLaVA-Bench-mini, the judge, the relative score):

- exercise 8.1 `parse_score(review)`: the two scores on a review's first line, (Assistant 1, Assistant 2), or
  None; refuses "8/10 7/10", scores split over two lines, labels, three numbers, out-of-range numbers.
- exercise 8.2 `relative_score(pairs)`: 100 · mean(candidate) / mean(reference), failures (None) left out.
- exercise 8.3 `bootstrap_ci(pairs, n_boot, seed)`: the 95% percentile interval of the relative score,
  resampling questions (pairs kept together) with replacement.
- study questions 5, 6 and 15: the letters of the true statements (keys `nb08.study_q5`, `_q6`, `_q15`).

The learner's code runs through `grading.call`; the reference (`llava_mini.bench`) is computed after that call
and switched off (`forbidden`) while the learner's code runs.
"""

from __future__ import annotations

import numpy as np

from llava_mini.bench import judge, scores
from llava_mini.grading import call, expect, expect_type, forbidden, grader
from llava_mini.keys import require_answer

# --- exercise 8.1 ----------------------------------------------------------------------------------

_REVIEWS = [  # (review, what it is), each with the right reading decided by judge.parse_score
    ("8 7\nAssistant 1 is more precise.", "two scores, then an explanation"),
    ("6 9", "two scores alone"),
    ("7.5,8\nBoth are right.", "scores separated by a comma"),
    ("  9 4  \n", "spaces around the scores"),
    ("3 10\nAssistant 2 names the colour.", "the second score higher"),
    ("10 10", "two tens"),
    ("8/10 7/10\nGood.", "'8/10'-style scores"),
    ("8\n7\nExplanation.", "the two scores on two lines"),
    ("Assistant 1: 8 Assistant 2: 7", "labels on the score line"),
    ("Scores below.\n8 7", "an explanation before the scores"),
    ("8 7 6\n", "three numbers"),
    ("11 4\n", "a score above 10"),
    ("0 5\n", "a score below 1"),
    ("eight seven", "words"),
    ("", "an empty review"),
    ("8 seven", "one number and a word"),
]


@grader("exercise 8.1", "parse_score")
def check_parse_score(parse_score) -> None:
    with forbidden((judge, "parse_score"), reason="is the answer to this exercise"):
        got = [call(parse_score, review, what=f"parse_score({review!r})") for review, _ in _REVIEWS]
    for (review, label), value in zip(_REVIEWS, got):
        want = judge.parse_score(review)
        what = f"parse_score({review!r}) ({label})"
        if want is None:
            expect(value is None, f"{what} should be None (a parse failure, counted and never averaged in), "
                                  f"got {value!r}")
            continue
        expect_type(value, tuple, what)
        expect(len(value) == 2 and all(isinstance(v, (int, float)) for v in value),
               f"{what} should be a pair of numbers, got {value!r}")
        if want[0] != want[1] and tuple(value) == want[::-1]:
            raise AssertionError(f"{what} gave {value!r}: the first score is Assistant 1's (the reference), "
                                 "keep the order of the line")
        expect(tuple(float(v) for v in value) == want, f"{what} should be {want!r}, got {value!r}")


# --- exercise 8.2 ----------------------------------------------------------------------------------

_PAIRS = [(10, 8), (9, 9), None, (10, 4), (8, 8), None, (10, 10), (9, 6), (7, 7), (10, 9)]


@grader("exercise 8.2", "relative_score")
def check_relative_score(relative_score) -> None:
    cases = [list(_PAIRS), [(10, 5), (2, 2)], [(10, 8)], [(8.0, 9.0), (6.0, 7.5)]]
    with forbidden((scores, "relative_score"), reason="is the answer to this exercise"):
        got = [call(relative_score, pairs, what=f"relative_score({pairs!r})") for pairs in cases]
    for pairs, value in zip(cases, got):
        what = f"relative_score({pairs!r})"
        expect(isinstance(value, (int, float, np.floating)), f"{what} should be a number, got {value!r}")
        want = scores.relative_score(pairs)
        kept = [p for p in pairs if p is not None]
        if abs(value - want / 100) < 1e-6:
            raise AssertionError(f"{what} gave {value:.4f}: a relative score is a percentage (× 100)")
        if abs(value - 100 * np.mean([c / r for r, c in kept])) < 1e-6 and abs(value - want) > 1e-6:
            raise AssertionError(f"{what} gave {value:.2f}, the mean of per-question ratios; LLaVA's score is the "
                                 "ratio of the means")
        failed = len(pairs) - len(kept)
        minus_one = 100 * (sum(c for _, c in kept) - failed) / (sum(r for r, _ in kept) - failed)
        if failed and abs(value - minus_one) < 1e-6:
            raise AssertionError(f"{what} gave {value:.2f}: a failed review (None) is left out, not scored -1, -1")
        expect(abs(value - want) < 1e-6, f"{what} should be {want:.4f} (mean of the second scores over mean of the "
                                          f"first, × 100, Nones left out), got {value!r}")


# --- exercise 8.3 ----------------------------------------------------------------------------------


def _bench_like(rng: np.random.Generator, n: int = 40) -> list:
    """Pairs whose candidate score goes with the reference's, as on the bench."""
    ref = rng.integers(4, 11, n)
    cand = np.clip(ref - rng.choice([0, 0, 1, 3, 6], n), 1, 10)
    return [(int(r), int(c)) for r, c in zip(ref, cand)] + [None]


@grader("exercise 8.3", "bootstrap_ci")
def check_bootstrap_ci(bootstrap_ci) -> None:
    pairs = _bench_like(np.random.default_rng(83))
    what = "bootstrap_ci(pairs, n_boot=4000, seed=0)"
    with forbidden((scores, "bootstrap_ci"), reason="is the answer to this exercise"):
        got = call(bootstrap_ci, pairs, 4000, 0, what=what)
        same = [call(bootstrap_ci, [(10, 8)] * 6, 500, s, what="bootstrap_ci([(10, 8)] * 6, 500, seed)")
                for s in (1, 2)]
    expect(isinstance(got, (tuple, list)) and len(got) == 2, f"{what} should be a pair (low, high), got {got!r}")
    low, high = (float(v) for v in got)
    point = scores.relative_score(pairs)
    want_low, want_high = scores.bootstrap_ci(pairs, 40_000, 1)
    expect(low < high, f"{what} gave ({low:.2f}, {high:.2f}): resample the questions *with* replacement (a "
                       "permutation of all of them always gives the same score)")
    expect(low <= point <= high, f"{what} gave ({low:.2f}, {high:.2f}), which misses the score itself ({point:.2f})")
    for s in same:
        expect(np.allclose([float(v) for v in s], 80.0),
               f"with every question scored (10, 8) every resample scores 80, so the interval is (80, 80); got {s!r}")
    width, want_width = high - low, want_high - want_low
    if width > 1.25 * want_width:
        raise AssertionError(f"{what} gave ({low:.2f}, {high:.2f}), wider than the interval of paired resampling "
                             f"(about {want_low:.1f} to {want_high:.1f}); resample whole questions: a question's two "
                             "scores go together")
    expect(abs(low - want_low) < 1.0 and abs(high - want_high) < 1.0,
           f"{what} gave ({low:.2f}, {high:.2f}); the 2.5th and 97.5th percentiles of the resampled relative "
           f"scores are about {want_low:.1f} and {want_high:.1f}")


# --- study questions -------------------------------------------------------------------------------

@grader("study question 5", "answer_study_q5")
def check_study_q5(answer_study_q5) -> None:
    require_answer("nb08.study_q5", answer_study_q5(), options="abcdefgh",
                   hint="check each statement against the protocol of section 1 and the biases measured in section 4")


@grader("study question 6", "answer_study_q6")
def check_study_q6(answer_study_q6) -> None:
    require_answer("nb08.study_q6", answer_study_q6(), options="abcdefg",
                   hint="check each statement against section 3's reference that cannot see")


@grader("study question 15", "answer_study_q15")
def check_study_q15(answer_study_q15) -> None:
    require_answer("nb08.study_q15", answer_study_q15(), options="abcdefg",
                   hint="check each statement against the intervals of sections 2 and 5")
