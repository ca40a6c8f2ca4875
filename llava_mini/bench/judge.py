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

Rubric of `RuleJudge` (each criterion 1-10, the score is their rounded mean). A *false claim* is a stated object,
size, cell, relation, count or reasoning step that the scene contradicts; each distinct sentence counts once, so
repeating or padding an answer never raises its score:

| type    | relevance                         | accuracy                            | helpfulness            | level of detail |
|---------|-----------------------------------|------------------------------------|------------------------|-----------------|
| conv    | 10 if it answers the kind of thing asked (a colour for a colour question...), 2 if not or if it is a caption | 10 - 3 per false claim if right; 1 if wrong | 10 right, 1 wrong | right: 10 a sentence, 7 a bare word; wrong: 1 |
| detail  | 10 if it places an object, else 2 (and 1 for the rest) | 10 - 3 per false claim (denying a present object, a wrong size or count included) | 1 + 9·F1 of the objects stated against the scene's | 1 + 9·share of the parts covered: each object, the count, one true relation (2+ objects) |
| complex | 10 with a conclusion "so the answer is", else 3 | 10 - 3 per false claim if the conclusion is right; 1 if it is wrong or missing | 10 right with every step true and every object it needs named; 5 right otherwise; 1 wrong | 1 + 9·share of the objects the reasoning needs (the two compared; all, when counting or checking each) named with their true size, colour, shape and cell |

"Right" means one answer about the object asked: a reply that hedges ("yes or no", "in the center or the bottom
center"), denies what it names ("The triangle is not red."), says the opposite in its own sentence ("No, the A is
below the B." when it is), concludes twice differently, or restates another object ("The object in the center is
blue." to a question about the middle right) is wrong. Replies are read up to `MAX_REPLY_CHARS`. A reasoning step is checked when it
has one of the teacher's forms (`_STEPS`: "The red object is the small red square in the top left.", "... is not to
the left of it.", "... is neither red nor a cross.", "The left column is to the left of the right column.", "In
total, 2 objects are above it."), otherwise by the object facts it states; a sentence that states nothing checkable
is no step. The judge reads the teacher's phrasings (and British "centre"): an answer in other words ("is located
in", "It is not.") is not understood and scores low, which is what the OpenAI-compatible judge is for.

A question the judge cannot answer from the objects it knows (its context lost them) scores 5 on the three
criteria other than relevance: it can neither confirm nor refute.
"""

from __future__ import annotations

import math
import re

from llava_mini import teacher, world
from llava_mini.evaluate import CONCLUSION, conclusion, is_caption, normalise

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


_C, _S, _SZ = "|".join(world.COLOURS), "|".join(world.SHAPES), "|".join(world.SIZES)
_P = "|".join(sorted((p for row in world.POSITIONS for p in row), key=len, reverse=True))
_PLACED = [re.compile(rf"\bin the ({_P}),? there is an? (?:({_SZ}) )?({_C}) ({_S})\b"),
           re.compile(rf"\b(?:({_SZ}) )?({_C}) ({_S}) (?:is )?in the ({_P})\b")]
_FACT = re.compile(rf"\b({_C}) ({_S})\b")
_REL = "|".join(teacher.RELATIONS)
_RELATION = re.compile(rf"^the (.+?) is (not )?({_REL}) the (.+?)$")
_NEGATED = re.compile(r"\b(no|not|neither|nor)\b")
_ABSENT = re.compile(r"\b(there (is|are) no|there (isn't|aren't|is not|are not)|no object)\b")  # a sentence that denies an object is there
_COUNT = re.compile(r"\b(?:there (?:is|are)|the image (?:has|contains)) (\d{1,3}) objects?\b")


MAX_REPLY_CHARS = 4000  # the judge reads this much of a reply (LLaVA's answers stop at 1024 tokens)


def _text(text: str) -> str:
    """Lower case, British "centre" read as "center", cut at `MAX_REPLY_CHARS`."""
    return text[:MAX_REPLY_CHARS].lower().replace("centre", "center")


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", _text(text).strip()) if s]


def claims(text: str) -> tuple[list[tuple], list[tuple[str, str]], list[tuple]]:
    """What a text states about objects: (colour, shape, position, size or None) facts it places, the
    (colour, shape) objects it says exist outside those, and the facts it *denies* ("there is no small red square
    in the top left", "there is no red circle": position None). Other negated sentences ("is neither red nor a
    cross") state no bare object."""
    placed, bare, denied = [], [], []
    for sentence in _sentences(text):
        sentence = re.sub(r"^(yes|no),\s*", "", sentence)  # "No, there is a red circle." states a red circle
        rest, found = sentence, []
        for k, pattern in enumerate(_PLACED):
            for m in pattern.finditer(rest):
                found.append((m[3], m[4], m[1], m[2]) if k == 0 else (m[2], m[3], m[4], m[1]))
            rest = pattern.sub(" ", rest)
        if _ABSENT.search(sentence):  # "there is no red circle (in the top left)": denied, anywhere or there
            denied += found + [(m[1], m[2], None, None) for m in _FACT.finditer(rest)]
        else:
            placed += found
            if not _NEGATED.search(sentence):
                bare += [(m[1], m[2]) for m in _FACT.finditer(rest)]
    return placed, bare, denied


def _holds(fact: tuple, things) -> bool:
    """Is a (colour, shape, position or None, size or None) fact true of one of these objects?"""
    colour, shape, position, size = fact
    return any((t.colour, t.shape) == (colour, shape) and position in (None, t.position) and size in (None, t.size)
               for t in things)


def _object_claims(text: str, things) -> tuple[int, int]:
    """(true, false) among a text's placed, bare and denied object facts, each counted once."""
    placed, bare, denied = claims(text)
    present = {(t.colour, t.shape) for t in things}
    verdicts = ([_holds(f, things) for f in set(placed)] + [f in present for f in set(bare)]
                + [not _holds(f, things) for f in set(denied)])
    return sum(verdicts), len(verdicts) - sum(verdicts)


def resolve(ref: str, things) -> world.Object | None:
    """The one object a teacher-style phrase names ("square", "red object", "small red square", "object in
    the top left", "small red square in the top left"), or None when no object or several fit."""
    ref = _text(ref).strip().removeprefix("the ").strip()
    fits = [t for t in things if ref in (t.shape, f"{t.colour} object", f"{t.colour} {t.shape}",
                                         f"{t.size} {t.colour} {t.shape}", f"object in the {t.position}",
                                         f"{t.colour} {t.shape} in the {t.position}",
                                         f"{t.size} {t.colour} {t.shape} in the {t.position}")]
    return fits[0] if len(fits) == 1 else None


def _relation_claims(text: str, things) -> tuple[int, int]:
    """(true, false) among the "The A is [not] REL the B." sentences whose two objects resolve (a leading
    "yes, " or "no, " read past), each sentence counted once."""
    true = false = 0
    for sentence in dict.fromkeys(_sentences(text)):
        m = _RELATION.match(re.sub(r"^(yes|no), ", "", sentence).rstrip("."))
        a, b = (resolve(m[1], things), resolve(m[4], things)) if m else (None, None)
        if a is not None and b is not None:
            holds = teacher.RELATIONS[m[3]](a, b) != bool(m[2])
            true, false = true + holds, false + (not holds)
    return true, false


_ATTRIBUTE = re.compile(rf"^(?:(?:yes|no), )?the (.+?) is (not )?(?:({_C})|an? ({_S})|in the ({_P}))$")


def _attribute_claims(text: str, things) -> tuple[int, int]:
    """(true, false) among the "The X is [not] red / a circle / in the top left." sentences whose object
    resolves, each sentence counted once."""
    true = false = 0
    for sentence in dict.fromkeys(_sentences(text)):
        m = _ATTRIBUTE.match(sentence.rstrip("."))
        t = resolve(m[1], things) if m else None
        if t is not None:
            holds = (t.colour == m[3] if m[3] else t.shape == m[4] if m[4] else t.position == m[5]) != bool(m[2])
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


def _question(question: str):
    """(kind, match) of a teacher-style question (the reasoning cue dropped), or None."""
    q = question.lower().replace(teacher.REASONING_CUE.lower(), "").strip()
    return next(((kind, m) for kind, pattern in _QUESTIONS if (m := pattern.match(q))), None)


def solve(question: str, things) -> tuple[str, str] | None:
    """(kind, right answer, normalised) of a teacher-style question about these objects; None when the
    question's objects cannot be found in them (a judge whose context lost them cannot know)."""
    plural = {v: k for k, v in teacher.PLURALS.items()}
    found = _question(question)
    if found is None:
        return None
    kind, m = found
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


def _slot(kind: str, reply: str, question: str) -> set[str]:
    """What a reply gives as its answer: the words of the asked kind it adds to the question's own. A hedge
    ("yes or no", "red or blue") gives several, and is no answer."""
    r, q = _text(reply), _text(question)
    if kind == "yesno":  # the first word, and any other yes or no said as an answer ("yes or no", "no, well, yes")
        words = normalise(r).split()
        if words[:1] not in (["yes"], ["no"]):
            return set()
        return {words[0]} | (set(words[1:]) & ({"yes", "no"} - {words[0]}))
    if _NEGATED.search(r):  # "The triangle is not red." names a colour it denies: no answer
        return set()
    if kind == "count":
        return set(re.findall(r"\b\d+\b", normalise(reply)))
    if kind == "what":  # the object named before the question's relation ("A red cross is below the ...")
        rel = next((rel for rel in teacher.RELATIONS if rel in q), None)
        subject = r.split(rel)[0] if rel and rel in r else r
        return {" ".join(f) for f in _FACT.findall(subject)}
    words = {"colour": world.COLOURS, "shape": world.SHAPES,
             "position": sorted((p for row in world.POSITIONS for p in row), key=len, reverse=True)}[kind]
    found = set()
    for w in words:  # longest first, each match blanked out: "top left" is not also "left"
        pattern = rf"\b{w}\b"
        if re.search(pattern, r) and not re.search(pattern, q):
            found.add(w)
        r, q = re.sub(pattern, " ", r), re.sub(pattern, " ", q)
    return found


_FULL = rf"(?:the )?({_SZ}) ({_C}) ({_S}) in the ({_P})"
_STEPS = [  # (kind, pattern) over the teacher's reasoning sentences (teacher.T), lower case, no final full stop
    ("is_the", re.compile(rf"^the (.+?) is {_FULL}$")),
    ("rel_it", re.compile(rf"^the ({_SZ}) ({_C}) ({_S}) in the ({_P}) is (not )?({_REL}) it$")),
    ("verdict", re.compile(rf"^the ({_SZ}) ({_C}) ({_S}) in the ({_P}) is (?:neither ({_C}) nor an? ({_S})|an? ({_S}) "
                           rf"but not ({_C})|({_C}) but not an? ({_S})|an? ({_C}) ({_S}))$")),
    ("same", re.compile(r"^both are in the (\w+) (row|column)$")),
    ("order", re.compile(rf"^the (\w+) (row|column) is ({_REL}) the (\w+) (row|column)$")),
    ("total", re.compile(rf"^in total, (\d+) objects? (?:is|are) ({_REL}) it$")),
    ("none_other", re.compile(r"^there are no other objects$")),
    ("found", re.compile(rf"^there is an? ({_C}) ({_S})$")), ("not_found", re.compile(rf"^no object is an? ({_C}) ({_S})$")),
    ("because", re.compile(r"^a large object is larger than a small one$")),
]
_UNITS = {"row": (world.ROWS, "row"), "column": (world.COLUMNS, "col")}


def _step_true(kind: str, m: re.Match, question, things) -> bool | None:
    """Is one reasoning sentence true of the scene? None: it states nothing checkable."""
    q = _question(question)
    refs = ([resolve(r, things) for r in (q[1][1], q[1][3])] if q and q[0] == "relation" else
            [resolve(q[1][2], things)] if q and q[0] == "count_rel" else [])
    if kind in ("is_the", "rel_it", "verdict"):
        size, colour, shape, position = m.groups()[1:5] if kind == "is_the" else m.groups()[:4]
        stated = (colour, shape, position, size)
        if not _holds(stated, things):
            return False
        if kind == "is_the":
            named = resolve(m[1], things)
            return named is None or (named.colour, named.shape, named.position, named.size) == stated
        if kind == "rel_it":
            it = refs[0] if refs else None
            obj = next(t for t in things if (t.colour, t.shape, t.position, t.size) == stated)
            return it is None or teacher.RELATIONS[m[6]](obj, it) != bool(m[5])
        asked = q[1].groups() if q and q[0] == "existence" else None
        said = [((m[5], m[6]), (False, False)), ((m[8], m[7]), (False, True)), ((m[9], m[10]), (True, False)),
                ((m[11], m[12]), (True, True))]  # neither / shape only / colour only / both
        (c, s), (says_colour, says_shape) = next(pair for pair in said if pair[0][0] is not None)
        return asked in (None, (c, s)) and (says_colour, says_shape) == (colour == c, shape == s)
    if kind == "same":
        names, axis = _UNITS[m[2]]
        return bool(refs) and all(t is not None and names[getattr(t, axis)] == m[1] for t in refs)
    if kind == "order":
        names, axis = _UNITS[m[2]]
        if m[2] != m[5] or m[1] not in names or m[4] not in names or (m[2] == "row") != (m[3] in ("above", "below")):
            return False
        first, second = names.index(m[1]), names.index(m[4])
        ordered = first < second if m[3] in ("to the left of", "above") else first > second
        return ordered and bool(refs) and all(t is not None for t in refs) and [
            names[getattr(t, axis)] for t in refs] == [m[1], m[4]]
    if kind == "total":
        solved = solve(question, things)
        return solved is not None and solved[1] == m[1]
    if kind == "none_other":
        return len(things) == 1
    if kind in ("found", "not_found"):
        return any((t.colour, t.shape) == (m[1], m[2]) for t in things) == (kind == "found")
    return None


def conclusions(text: str) -> list[str]:
    """Every answer a reply concludes ("so the answer is X"), normalised: more than one that differ is no answer."""
    return [normalise(m) for m in re.findall(rf"{CONCLUSION}(.*?)(?:[.!?](?:\s|$)|$)", _text(text))]


def reasoning_claims(reply: str, question: str, things) -> tuple[int, int, set]:
    """(true, false, named) over the checkable sentences of a reasoning answer before its conclusion (the reason
    in the conclusion's own sentence included), each distinct sentence counted once: the teacher's step templates
    checked against the scene, any other sentence by the object facts it states; `named`, the objects a true step
    names with their size, colour, shape and cell. A sentence that states nothing checkable ("Done.") is no step."""
    body = _text(reply)
    at = body.rfind(CONCLUSION)
    if at >= 0:
        body = body[:at]
    true = false = 0
    named = set()
    for sentence in dict.fromkeys(s.rstrip(".,! ") for s in _sentences(body)):
        step = next(((kind, m) for kind, pattern in _STEPS if (m := pattern.match(sentence))), None)
        if step is not None:
            verdict = _step_true(*step, question, things)
            t, f = verdict is True, verdict is False
        else:
            t, f = (sum(x) for x in zip(*(check(sentence + ".", things) for check in
                                          (_object_claims, _relation_claims, _attribute_claims))))
        true, false = true + t, false + f
        if not f:
            named |= {o for o in things if re.search(rf"\b{o.size} {o.colour} {o.shape} in the {o.position}\b", sentence)}
    return true, false, named


def _needed(question: str, things) -> set:
    """The objects a reasoning answer has to name: the two it compares, or every object when it counts or checks
    each for a colour and a shape."""
    q = _question(question)
    if q is None:
        return set()
    kind, m = q
    if kind not in ("relation", "larger"):
        return set(things)
    refs = (m[1], m[3]) if kind == "relation" else (m[1], m[2])
    return {t for t in (resolve(r, things) for r in refs) if t is not None}


def _other_referent(reply: str, question: str, things) -> bool:
    """Does a reply to "What colour/shape is the X?" or "Where is the X?" restate another object than X?"""
    q, sentences = _question(question), _sentences(reply)
    m = _ATTRIBUTE.match(sentences[0].rstrip(".")) if q and q[0] in ("colour", "shape", "position") and sentences \
        else None
    said = resolve(m[1], things) if m else None
    return said is not None and said is not resolve(q[1][1], things)


def _mean(*criteria: float) -> int:
    return int(math.floor(sum(criteria) / len(criteria) + 0.5))


def rule_score(category: str, question: str, reply: str, things) -> int:
    """One answer's overall 1-10 score under the rubric of the module docstring, against these objects."""
    if category == "detail":
        placed, bare, _ = claims(reply)
        truth = {(t.colour, t.shape, t.position) for t in things}
        if not placed:  # describes no object: right only when the judge knows of none
            return 10 if not truth else _mean(2, 1, 1, 1)
        hits = len({f[:3] for f in placed if _holds(f, things)})
        present = {(t.colour, t.shape) for t in things}
        stated = len(set(placed)) + len({f for f in bare if f not in present})
        f1 = 2 * hits / (stated + len(truth))
        counts = {int(c) for c in _COUNT.findall(normalise(reply))}
        true_relations, false_relations = _relation_claims(reply, things)
        _, false_objects = _object_claims(reply, things)
        false = false_objects + sum(c != len(things) for c in counts) + false_relations
        parts = len(things) + 1 + (len(things) > 1)  # every object, the count, a relation between them
        covered = hits + (len(things) in counts) + (len(things) > 1 and true_relations > 0)
        return _mean(10, max(1, 10 - 3 * false), 1 + 9 * f1, 1 + 9 * covered / parts)
    solved = solve(question, things)
    if category == "complex":
        said = conclusion(reply)
        if said is not None and solved is None:  # a question this judge cannot answer from what it knows
            return _mean(10, 5, 5, 5)
        needed = _needed(question, things)
        larger = resolve(said, things) if said is not None else None
        right = said is not None and solved is not None and len(set(conclusions(reply))) == 1 and (
            said == solved[1] or (solved[0] == "count" and re.fullmatch(rf"{solved[1]} objects?", said) is not None)
            or (solved[0] == "larger" and larger in needed and larger.size == "large"))
        true, false, named = reasoning_claims(reply, question, things)
        covered = len(named & needed) / len(needed) if needed else float(true > 0)
        helpful = 1 if not right else 10 if false == 0 and covered == 1 else 5
        accuracy = max(1, 10 - 3 * false) if right else 1  # a wrong answer is not accurate, whatever its steps
        return _mean(10 if said is not None else 3, accuracy, helpful, 1 + 9 * covered)
    if solved is None:  # a question this judge cannot answer from what it knows: relevance alone
        return _mean(10 if reply.strip() else 1, 5, 5, 5)
    kind, gold = solved
    slot = _slot(kind, reply, question)
    relevant = bool(slot) and not is_caption(reply, "sentence")
    false = sum(check(reply, things)[1] for check in (_object_claims, _relation_claims, _attribute_claims))
    # a yes/no answer whose own sentence says the opposite ("No, the A is below the B." when it is), or an answer
    # about another object than the one asked about ("The object in the center is blue."), is not right
    right = slot == {gold} and not (kind == "yesno" and false) and not _other_referent(reply, question, things)
    accuracy = max(1, 10 - 3 * false) if right else 1
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
