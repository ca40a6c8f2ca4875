"""LLaVA's relative score, its bootstrap interval, and a whole bench run (the `bench` command).

relative score = mean(model's scores) / mean(reference's scores) × 100, per type and over all questions
(LLaVA's summary script; a ratio of means). Unlike that script, a review whose first line does not parse
(`judge.parse_score` → None) or a judge call that failed is left out and counted, never averaged in as
[-1, -1] (which pushes an all-failure category to 100).
"""

from __future__ import annotations

import sys

import numpy as np

from llava_mini import bench, evaluate
from llava_mini.bench.judge import RuleJudge, parse_score
from llava_mini.bench.remote import JudgeError

JSON_KEYS = ("relative_score", "ci95", "exact_match", "parse_failures", "n")


def relative_score(pairs) -> float:
    """100 · mean(candidate) / mean(reference) over the (reference, candidate) pairs that are not None."""
    kept = [p for p in pairs if p is not None]
    if not kept:
        raise ValueError("no scored pair: every review failed to parse")
    ref, cand = np.array(kept, dtype=float).T
    return float(100 * cand.mean() / ref.mean())


def bootstrap_ci(pairs, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the relative score, resampling questions (each a (ref, cand) pair kept
    together) with replacement, n_boot times."""
    kept = np.array([p for p in pairs if p is not None], dtype=float)  # (n, 2)
    if len(kept) == 0:
        raise ValueError("no scored pair: every review failed to parse")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(kept), size=(n_boot, len(kept)))  # (n_boot, n)
    sums = kept[idx].sum(axis=1)  # (n_boot, 2)
    ratios = 100 * sums[:, 1] / sums[:, 0]
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def judge_all(items, replies, judge, progress=None, references=None) -> tuple[list, dict]:
    """One review per item: the (reference, candidate) scores (None where the review failed to parse or the
    judge call failed) and the counts {"parse_failures", "errors"}. `references` default: the bench's."""
    pairs, failures = [], {"parse_failures": 0, "errors": 0}
    for k, (it, reply) in enumerate(zip(items, replies)):
        reference = it.reference if references is None else references[k]
        try:
            review = judge.review(it.context, it.question, reference, reply, it.category)
        except JudgeError:  # a remote judge's timeout, HTTP error or garbage: counted, never a score
            failures["errors"] += 1
            pairs.append(None)
        else:
            pair = parse_score(review)
            failures["parse_failures"] += pair is None
            pairs.append(pair)
        if progress:
            progress(1)
    return pairs, failures


def exact_match(items, replies) -> dict:
    """Exact-match accuracy beside the judged score: conversation questions by their category
    (`evaluate.normalise` against the teacher's sentence), reasoning by its conclusion, descriptions by F1."""
    by: dict[str, list[float]] = {}
    for it, reply in zip(items, replies):
        if it.category == "conv":
            kind = _conv_category(it.question)
            by.setdefault(kind, []).append(float(evaluate.normalise(reply) == evaluate.normalise(it.reference)))
        elif it.category == "complex":
            by.setdefault("reasoning", []).append(float(evaluate.conclusion(reply) == evaluate.conclusion(it.reference)))
        else:
            by.setdefault("description", []).append(evaluate.description_f1(reply, it.scene))
    return {k: round(float(np.mean(v)), 4) for k, v in sorted(by.items())}


def _conv_category(question: str) -> str:
    q = question.lower()
    for start, kind in (("what colour", "colour"), ("what shape", "shape"), ("where", "position"),
                        ("how many", "count"), ("is there", "existence")):
        if q.startswith(start):
            return kind
    return "relation"


def summarise(items, pairs, failures, replies, n_boot: int = 2000, seed: int = 0) -> dict:
    """The `bench --json` object: relative_score and ci95 (overall and per type; None where nothing was scored),
    exact_match per category, parse_failures ({unparseable, judge_errors}), n ({questions, scored})."""
    result = {"relative_score": {}, "ci95": {}}
    groups = {"overall": list(range(len(items)))}
    groups.update({t: [i for i, it in enumerate(items) if it.category == t] for t in bench.TYPES})
    for name, idx in groups.items():
        chosen = [pairs[i] for i in idx]
        if any(p is not None for p in chosen):
            result["relative_score"][name] = round(relative_score(chosen), 1)
            result["ci95"][name] = [round(v, 1) for v in bootstrap_ci(chosen, n_boot, seed)]
        else:
            result["relative_score"][name] = result["ci95"][name] = None
    result["exact_match"] = exact_match(items, replies)
    result["parse_failures"] = {"unparseable": failures["parse_failures"], "judge_errors": failures["errors"]}
    result["n"] = {"questions": len(items), "scored": sum(p is not None for p in pairs)}
    return result


class _Bar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int, label: str):
        self.total, self.done, self.label = total, 0, label
        self.on = sys.stderr.isatty()

    def __call__(self, k: int) -> None:
        self.done += k
        if self.on:
            filled = int(30 * self.done / self.total)
            sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def run(model_name: str, bench_name: str = "in", judge: str = "rules", n_boot: int = 2000, seed: int = 0) -> dict:
    """Answer a bench with a zoo model, judge every answer against the teacher's, summarise."""
    from llava_mini import zoo

    items = bench.load(bench_name)
    if judge == "rules":
        reviewer = RuleJudge()
    elif judge == "openai":
        from llava_mini.bench.remote import OpenAIJudge

        reviewer = OpenAIJudge()  # reads LLAVA_MINI_JUDGE_URL / _MODEL / _KEY
    else:
        raise KeyError(f"unknown judge {judge!r}; expected rules or openai")
    return score(zoo.load(model_name, kind="llava"), items, reviewer, n_boot, seed)


def score(model, items, reviewer, n_boot: int = 2000, seed: int = 0) -> dict:
    """`summarise` of `model`'s greedy answers to `items`, each reviewed by `reviewer` against the teacher's."""
    from llava_mini.tokenizer import load_tokenizer

    replies = bench.answer(model, load_tokenizer(), items, progress=_Bar(len(items), "answering"))
    pairs, failures = judge_all(items, replies, reviewer, progress=_Bar(len(items), "judging"))
    return summarise(items, pairs, failures, replies, n_boot, seed)
