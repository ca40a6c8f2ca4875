"""Judges with LLaVA's protocol (§5.1; the rule prompts and score parsing of its evaluation scripts).

The judge reads the symbolic context, the question and two answers, Assistant 1 (the text-only reference)
then Assistant 2 (the model), rates each 1-10 overall for helpfulness, relevance, accuracy and level of
detail, and writes the two scores alone on its first line, then an explanation. `parse_score` reads that
line back; a review it cannot read is a parse failure, counted and reported, never averaged in.

Two judges return such reviews:

- `RuleJudge`, offline: it knows the scene (it reads the objects from the context's boxes, as the teacher
  does), works out the right answer to each question, and scores an answer on the four criteria (the
  rubric below); the overall score is their mean, rounded.
- `OpenAIJudge` (`llava_mini.bench.remote`): sends `prompt(...)` to any OpenAI-compatible chat endpoint.

Rubric of `RuleJudge` (each criterion 1-10, the score is their rounded mean):

| type    | relevance                         | accuracy (false claims)            | helpfulness            | level of detail |
|---------|-----------------------------------|------------------------------------|------------------------|-----------------|
| conv    | 10 if it answers the kind of thing asked (a colour for a colour question...), 2 if not or if it is a caption | 10 if right and nothing false; -3 per false object; 1 if the answer is wrong | 10 right, 1 wrong | right: 10 a sentence, 7 a bare word; wrong: 1 |
| detail  | 10 if it states an object's place, else 2 (and 1 for the rest) | 1 + 9·precision of the stated (colour, shape, position) facts; -2 wrong count; -1 per false relation | 1 + 9·recall of the objects (omissions) | 1 + 9·share of the parts covered: each object, the count, one true relation (2+ objects) |
| complex | 10 with a conclusion "so the answer is", else 3 | 1 + 9·share of true claims among the facts and the conclusion (a missing one is false) | 10 right conclusion, 1 wrong or missing | steps before the conclusion: 1 + 9·(the same share); none: 1 |

A question the judge cannot answer from the objects it knows (its context lost them) scores 5 on the three
criteria other than relevance: it can neither confirm nor refute.
"""

from __future__ import annotations

import math
import re

from llava_mini import teacher, world
from llava_mini.evaluate import conclusion, is_caption, normalise

SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
CRITERIA = ("helpfulness", "relevance", "accuracy", "level of detail")
RULE = {  # the instruction after [System], one per type (our wording of LLaVA's rule)
    "conv": "a question about an image",
    "detail": "a request to describe an image in detail",
    "complex": "a question about an image that needs reasoning",
}
RULE_TEXT = ("We would like your feedback on two AI assistants' answers to {what}. The image is given to you as a "
             "few sentences and object boxes (coordinates normalised to 0-1) in [Context]; the assistants may have "
             "seen the image itself. Rate each answer's helpfulness, relevance, accuracy and level of detail, and "
             "give each assistant one overall score from 1 to 10, higher being better.\n"
             "Write, on the first line, only the two scores, for Assistant 1 and Assistant 2, separated by a space. "
             "From the second line on, explain your scores thoroughly, without letting the order in which the "
             "answers were given affect your judgement.")


def prompt(context: world.SymbolicContext, question: str, answer1: str, answer2: str, category: str) -> str:
    """The judge's user message: context, question, the two answers, then the rule (LLaVA's layout)."""
    if category not in RULE:
        raise KeyError(f"unknown bench category {category!r}; expected one of {', '.join(RULE)}")
    lines = "\n".join(context.captions) + "\n\n" + "\n".join(context.boxes)
    return (f"[Context]\n{lines}\n\n[Question]\n{question}\n\n"
            f"[Assistant 1]\n{answer1}\n\n[End of Assistant 1]\n\n"
            f"[Assistant 2]\n{answer2}\n\n[End of Assistant 2]\n\n"
            f"[System]\n{RULE_TEXT.format(what=RULE[category])}\n\n")


def parse_score(review: str) -> tuple[float, float] | None:
    """The two scores on the review's first line, (Assistant 1, Assistant 2), or None when that line is not
    exactly two numbers from 1 to 10 separated by a space or a comma (LLaVA's reading, plus the range check).
    "8/10 7/10", "Assistant 1: 8", a lone "8" with the other score on line two: all None."""
    if not isinstance(review, str) or not review.strip():
        return None
    parts = review.strip().splitlines()[0].replace(",", " ").split()
    if len(parts) != 2:
        return None
    try:
        scores = tuple(float(p) for p in parts)
    except ValueError:
        return None
    if not all(math.isfinite(s) and 1 <= s <= 10 for s in scores):
        return None
    return scores


_C, _S = "|".join(world.COLOURS), "|".join(world.SHAPES)
_P = "|".join(sorted((p for row in world.POSITIONS for p in row), key=len, reverse=True))
_PLACED = [re.compile(rf"\bin the ({_P}),? there is an? (?:(?:small|large) )?({_C}) ({_S})\b"),
           re.compile(rf"\b({_C}) ({_S}) (?:is )?in the ({_P})\b")]
_FACT = re.compile(rf"\b({_C}) ({_S})\b")
_REL = "|".join(teacher.RELATIONS)
_RELATION = re.compile(rf"^the (.+?) is (not )?({_REL}) the (.+?)$")
_NEGATED = re.compile(r"\b(no|not|neither|nor)\b")
_COUNT = re.compile(r"\bthere (?:is|are) (\d+) objects?\b")


def claims(text: str) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(colour, shape, position) facts a text states, and the (colour, shape) objects it says exist outside
    those (negated sentences, "there is no red circle", are left out)."""
    placed, bare = [], []
    for sentence in re.split(r"(?<=[.!?])\s+", text.lower()):
        rest = sentence
        for k, pattern in enumerate(_PLACED):
            for m in pattern.finditer(rest):
                placed.append((m[2], m[3], m[1]) if k == 0 else (m[1], m[2], m[3]))
            rest = pattern.sub(" ", rest)
        if not _NEGATED.search(sentence):
            bare += [(m[1], m[2]) for m in _FACT.finditer(rest)]
    return placed, bare


def resolve(ref: str, things) -> world.Object | None:
    """The one object a teacher-style phrase names ("square", "red object", "small red square", "object in
    the top left"), or None when no object or several fit."""
    ref = ref.strip().removeprefix("the ").strip()
    fits = [t for t in things if ref in (t.shape, f"{t.colour} object", f"{t.colour} {t.shape}",
                                         f"{t.size} {t.colour} {t.shape}", f"object in the {t.position}")]
    return fits[0] if len(fits) == 1 else None


def _relation_claims(text: str, things) -> tuple[int, int]:
    """(true, false) among the "The A is [not] REL the B." sentences whose two objects resolve."""
    true = false = 0
    for sentence in re.split(r"(?<=[.!?])\s+", text.lower().strip()):
        m = _RELATION.match(sentence.rstrip("."))
        a, b = (resolve(m[1], things), resolve(m[4], things)) if m else (None, None)
        if a is not None and b is not None:
            holds = teacher.RELATIONS[m[3]](a, b) != bool(m[2])
            true, false = true + holds, false + (not holds)
    return true, false


_QUESTIONS = [  # (kind, pattern) over the teacher's question templates (teacher.T), lower case, no cue
    ("colour", re.compile(r"^what colour is the (.+)\?$")), ("shape", re.compile(r"^what shape is the (.+)\?$")),
    ("position", re.compile(r"^where is the (.+)\?$")), ("count", re.compile(r"^how many objects are there\?$")),
    ("count_rel", re.compile(rf"^how many objects are ({_REL}) the (.+)\?$")),
    ("count_attr", re.compile(r"^how many (\w+) objects are there\?$")),
    ("count_shape", re.compile(r"^how many (\w+) are there\?$")),
    ("existence", re.compile(rf"^is there a ({_C}) ({_S})\?$")),
    ("relation", re.compile(rf"^is the (.+) ({_REL}) the (.+)\?$")),
    ("what", re.compile(rf"^what is ({_REL}) the (.+)\?$")),
    ("larger", re.compile(r"^which is larger, the (.+) or the (.+)\?$")),
]


def solve(question: str, things) -> tuple[str, str] | None:
    """(kind, right answer, normalised) of a teacher-style question about these objects; None when the
    question's objects cannot be found in them (a judge whose context lost them cannot know)."""
    q = question.lower().replace(teacher.REASONING_CUE.lower(), "").strip()
    plural = {v: k for k, v in teacher.PLURALS.items()}
    for kind, pattern in _QUESTIONS:
        m = pattern.match(q)
        if m is None:
            continue
        if kind in ("colour", "shape", "position"):
            t = resolve(m[1], things)
            return None if t is None else (kind, getattr(t, kind))
        if kind == "count":
            return kind, str(len(things))
        if kind == "count_rel":
            b = resolve(m[2], things)
            return None if b is None else ("count", str(sum(teacher.RELATIONS[m[1]](t, b) for t in things if t != b)))
        if kind == "count_attr":
            return "count", str(sum(m[1] in (t.colour, t.size) for t in things))
        if kind == "count_shape":
            return "count", str(sum(t.shape == plural.get(m[1]) for t in things))
        if kind == "existence":
            return "yesno", "yes" if any((t.colour, t.shape) == (m[1], m[2]) for t in things) else "no"
        if kind == "relation":
            a, b = resolve(m[1], things), resolve(m[3], things)
            return None if a is None or b is None else ("yesno", "yes" if teacher.RELATIONS[m[2]](a, b) else "no")
        if kind == "what":
            b = resolve(m[2], things)
            hits = [t for t in things if b is not None and teacher.RELATIONS[m[1]](t, b)]
            return ("what", f"{hits[0].colour} {hits[0].shape}") if len(hits) == 1 else None
        a, b = resolve(m[1], things), resolve(m[2], things)  # larger
        if a is None or b is None or a.size == b.size:
            return None
        return "larger", normalise(f"the {m[1] if a.size == 'large' else m[2]}")
    return None


def _slot(kind: str, reply: str, question: str) -> set[str]:
    """What a reply gives as its answer: the words of the asked kind it adds to the question's own."""
    r, q = reply.lower(), question.lower()
    if kind == "yesno":
        first = normalise(reply).split()[:1]
        return {first[0]} if first and first[0] in ("yes", "no") else set()
    if kind == "count":
        return set(re.findall(r"\b\d+\b", normalise(reply)))
    if kind == "what":
        return {" ".join(f) for f in _FACT.findall(r)} - {" ".join(f) for f in _FACT.findall(q)}
    words = {"colour": world.COLOURS, "shape": world.SHAPES,
             "position": [p for row in world.POSITIONS for p in row]}[kind]
    found = {w for w in words if re.search(rf"\b{w}\b", r) and not re.search(rf"\b{w}\b", q)}
    if kind == "position":  # "top left" also contains "left": keep the longest phrases only
        found = {p for p in found if not any(p != o and p in o for o in found)}
    return found


def _mean(*criteria: float) -> int:
    return int(math.floor(sum(criteria) / len(criteria) + 0.5))


def rule_score(category: str, question: str, reply: str, things) -> int:
    """One answer's overall 1-10 score under the rubric of the module docstring, against these objects."""
    truth = {(t.colour, t.shape, t.position) for t in things}
    present = {(t.colour, t.shape) for t in things}
    placed, bare = claims(reply)
    false_objects = sum(f not in truth for f in placed) + sum(f not in present for f in bare)
    if category == "detail":
        stated = set(placed)
        if not stated:  # describes no object: right only when the judge knows of none
            return 10 if not truth else _mean(2, 1, 1, 1)
        hits = len(stated & truth)
        counts = [int(c) for c in _COUNT.findall(normalise(reply))]
        true_relations, false_relations = _relation_claims(reply, things)
        accuracy = 1 + 9 * hits / len(stated) - 2 * any(c != len(things) for c in counts) - false_relations
        parts = len(things) + 1 + (len(things) > 1)  # every object, the count, a relation between them
        covered = hits + (len(things) in counts) + (len(things) > 1 and true_relations > 0)
        recall = hits / len(truth) if truth else 0.0  # the judge knows of no object: every stated one is false
        return _mean(10, max(1.0, accuracy), 1 + 9 * recall, 1 + 9 * covered / parts)
    solved = solve(question, things)
    if category == "complex":
        said = conclusion(reply)
        right = said is not None and solved is not None and (
            said == solved[1] or (solved[0] != "larger" and said.split()[:1] == [solved[1]]))
        if said is not None and solved is None:  # a question this judge cannot answer from what it knows
            return _mean(10, 5, 5, 5)
        n_claims = len(placed) + len(bare) + 1  # the facts, and the conclusion (a missing one counts as false)
        true_share = max(0.0, (n_claims - false_objects - (not right)) / n_claims)
        steps = said is not None and len(re.split(r"(?<=\.)\s+", reply.strip())) > 1
        return _mean(10 if said is not None else 3, 1 + 9 * true_share, 10 if right else 1,
                     1 + 9 * true_share if steps else 1)
    if solved is None:  # a question this judge cannot answer from what it knows: relevance alone
        return _mean(10 if reply.strip() else 1, 5, 5, 5)
    kind, gold = solved
    slot = _slot(kind, reply, question)
    relevant = bool(slot) and not is_caption(reply, "sentence")
    right = slot == {gold}
    accuracy = max(1, 10 - 3 * false_objects) if right else 1
    detail = (10 if len(reply.split()) >= 3 else 7) if right else 1
    return _mean(10 if relevant else 2, accuracy, 10 if right else 1, detail)


class RuleJudge:
    """The offline judge: knows the scene (`things`, default: read from the context's boxes, as the
    teacher reads them) and writes LLaVA-format reviews."""

    name = "rules"

    def review(self, context: world.SymbolicContext, question: str, answer1: str, answer2: str, category: str,
               things=None) -> str:
        things = teacher.read(context) if things is None else things
        s1, s2 = (rule_score(category, question, a, things) for a in (answer1, answer2))
        return (f"{s1} {s2}\nScored with the rule-based rubric on {', '.join(CRITERIA)} against the scene's "
                f"{len(things)} objects: Assistant 1 {s1}/10, Assistant 2 {s2}/10.")
