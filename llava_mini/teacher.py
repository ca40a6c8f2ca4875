"""The teacher: a rule-based, text-only stand-in for the GPT-4 that wrote LLaVA's instruction data (§3).

Like GPT-4 in LLaVA, the teacher never sees pixels, nor the Scene: every function takes a
`SymbolicContext` (captions + boxes) and reads the objects back from the box strings (`read`). It writes

    brief    stage-1 pairs: a brief-description instruction (Table 11's list) + one caption
    conversation         multi-turn questions with definite answers, short or in sentences (LLaVA: 58K)
    detail               a long description of every object and some relations (LLaVA: 23K)
    complex_reasoning    step-by-step reasoning that ends "so the answer is X." (LLaVA: 77K)

and, for evaluation, `questions(context, category, rng)`: single-turn questions of one category.
Every fact it states is true of the scene, unless a noise knob of `Teacher` says otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from llava_mini import world
from llava_mini.world import SymbolicContext

BRIEF_INSTRUCTIONS = (  # LLaVA Table 11
    "Describe the image concisely.", "Provide a brief description of the given image.",
    "Offer a succinct explanation of the picture presented.", "Summarize the visual content of the image.",
    "Give a short and clear explanation of the subsequent image.",
    "Share a concise interpretation of the image provided.",
    "Present a compact description of the photo's key features.", "Relay a brief, clear account of the picture shown.",
    "Render a clear and concise summary of the photo.", "Write a terse but informative summary of the picture.",
)
DETAIL_INSTRUCTIONS = (  # LLaVA's detailed-description list
    "Describe the following image in detail.", "Provide a detailed description of the given image.",
    "Give an elaborate explanation of the image you see.", "Share a comprehensive rundown of the presented image.",
    "Offer a thorough analysis of the image.", "Explain the various aspects of the image before you.",
    "Walk through the important details of the image.", "Examine the image closely and share its details.",
)
T = {  # every other phrasing the teacher writes; {slots} are filled with world words
    "colour": "What colour is the {ref}?", "shape": "What shape is the {ref}?", "position": "Where is the {ref}?",
    "count": "How many objects are there?", "count_attr": "How many {value} objects are there?",
    "count_shape": "How many {value} are there?", "existence": "Is there a {colour} {shape}?",
    "relation": "Is the {a} {rel} the {b}?", "what": "What is {rel} the {b}?", "a": "a {colour} {shape}",
    "ref_colour": "{colour} object", "ref_position": "object in the {position}",
    "one": "There is 1 object in the image.", "many": "There are {n} objects in the image.",
    "there": "There is a {obj} in the {position}.", "in": "In the {position}, there is a {obj}.",
    "is_in": "A {obj} is in the {position}.", "rel_fact": "The {a} is {rel} the {b}.",
    "full": "{size} {colour} {shape} in the {position}", "is_the": "The {ref} is the {full}.",
    "answer": "{reason}, so the answer is {answer}.",
    "same": "Both are in the {name} {unit}", "order": "The {a} {unit} is {rel} the {b} {unit}",
    "larger": "Which is larger, the {a} or the {b}?", "because": "A large object is larger than a small one",
    "count_rel": "How many objects are {rel} the {b}?", "rel_yes": "The {full} is {rel} it.",
    "rel_no": "The {full} is not {rel} it.", "none_other": "There are no other objects",
    "total_one": "In total, 1 object is {rel} it", "total": "In total, {k} objects are {rel} it",
    "neither": "The {full} is neither {colour} nor a {shape}.",
    "shape_only": "The {full} is a {shape} but not {colour}.",
    "colour_only": "The {full} is {colour} but not a {shape}.", "both": "The {full} is a {colour} {shape}.",
    "found": "There is a {colour} {shape}", "not_found": "No object is a {colour} {shape}",
    # sentence answers (`Teacher(answers="sentence")`): the referent restated before the answer, as
    # LLaVA-Instruct's conversations do ("The bus in the image is white and red."). "yes" stays lower-case:
    # the closed vocabulary has no "Yes", and adding a word would change every shipped model's embedding table.
    "say_colour": "The {ref} is {value}.", "say_shape": "The {ref} is a {value}.",
    "say_position": "The {ref} is in the {value}.", "say_one": "There is 1 {noun}.",
    "say_many": "There are {n} {nouns}.", "say_yes": "yes, there is a {colour} {shape}.",
    "say_no": "No, there is no {colour} {shape}.", "say_rel_yes": "yes, the {a} is {rel} the {b}.",
    "say_rel_no": "No, the {a} is not {rel} the {b}.", "say_what": "{what} is {rel} the {b}.",
}
# The complex-reasoning type's format cue, which `data` appends to its question: without it "Is there a green
# square?" reads exactly like a conversation question, and a model trained on the mix cannot know whether to
# answer in a word or to reason first. (LLaVA-1.5 marks the other side: it appends "Answer the question using
# a single word or phrase." to short-answer questions.)
REASONING_CUE = "Explain before you answer."
TEMPLATES = BRIEF_INSTRUCTIONS + DETAIL_INSTRUCTIONS + (REASONING_CUE,) + tuple(T.values())
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses", "diamond": "diamonds"}
RELATIONS = {  # phrase -> does object a stand in that relation to object b?
    "to the left of": lambda a, b: a.col < b.col, "to the right of": lambda a, b: a.col > b.col,
    "above": lambda a, b: a.row < b.row, "below": lambda a, b: a.row > b.row,
}
WORDS = (*PLURALS.values(), *RELATIONS, "yes", "no", "row", "column")
CATEGORIES = ("colour", "shape", "count", "position", "existence", "relation")
NO_KINDS = ("absent_colour", "absent_shape", "conjunction_foil")
# A foil needs a present colour and a present shape that never occur together: possible in about 52% of
# default scenes (never with 1 object). Choosing it with this weight there makes the three "no" kinds
# about equally frequent overall (0.52 * 0.64 = 1/3); elsewhere the two absent kinds split 50/50.
FOIL_WEIGHT = 0.64
_BOX = re.compile(r"([a-z]+) ([a-z]+): \[(\d\.\d\d), (\d\.\d\d), (\d\.\d\d), (\d\.\d\d)\]")


Thing = world.Object  # an object as the teacher reads it back from one box string


def _full(t: Thing) -> str:  # "large red circle in the top left"
    return T["full"].format(size=t.size, colour=t.colour, shape=t.shape, position=t.position)


ANSWER_STYLES = ("short", "sentence")
REASONING_ORDERS = ("steps_first", "answer_first")
STEP_FORMS = ("checks", "listing")


@dataclass(frozen=True)
class QA:
    question: str
    answer: str  # the short answer: "red", "3", "yes", "a purple circle"
    category: str
    kind: str  # "yes" or one of NO_KINDS for existence questions, else the category
    sentence: str  # the same answer restating the referent: "The square is red."

    def reply(self, style: str) -> str:
        """The answer in one of `ANSWER_STYLES`."""
        if style not in ANSWER_STYLES:
            raise ValueError(f"unknown answer style {style!r}; expected one of {', '.join(ANSWER_STYLES)}")
        return self.answer if style == "short" else self.sentence


@dataclass(frozen=True)
class Sample:
    """One generated instruction-following sample: its (instruction X_q, answer X_a) turns."""

    type: str  # "brief", "conversation", "detail" or "complex"
    turns: tuple[tuple[str, str], ...]
    injected: str | None = None  # the hallucinated object, as stated, if the teacher made one up


def read(context: SymbolicContext) -> tuple[Thing, ...]:
    """Parse the objects back from the `colour shape: [x1, y1, x2, y2]` boxes of a symbolic context."""
    things = []
    for line in context.boxes:
        match = _BOX.fullmatch(line)
        if match is None:
            raise ValueError(f"cannot read box {line!r}; expected 'colour shape: [x1, y1, x2, y2]'")
        box = tuple(float(v) for v in match.groups()[2:])
        things.append(Thing(match[1], match[2], world.size_of(box), *world.cell_of(box), box))
    return tuple(things)


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _refs(things, t: Thing, avoid=()) -> list[str]:
    """The phrases that pick out `t` alone among `things`, leaving out those naming an attribute in `avoid`."""
    names = {  # phrase -> the attributes it names
        t.shape: ("shape",), T["ref_colour"].format(colour=t.colour): ("colour",),
        f"{t.colour} {t.shape}": ("colour", "shape"), f"{t.size} {t.colour} {t.shape}": ("size", "colour", "shape"),
        T["ref_position"].format(position=t.position): ("row", "col"),
    }
    return [ref for ref, attrs in names.items() if not set(attrs) & set(avoid)
            and sum(all(getattr(u, a) == getattr(t, a) for a in attrs) for u in things) == 1]


def _ask_attribute(category: str, things, rng):
    t = _pick(rng, things)
    refs = _refs(things, t, avoid={"colour": ("colour",), "shape": ("shape",), "position": ("row",)}[category])
    if not refs:
        return None
    ref, answer = _pick(rng, refs), {"colour": t.colour, "shape": t.shape, "position": t.position}[category]
    sentence = T[f"say_{category}"].format(ref=ref, value=answer)
    return QA(T[category].format(ref=ref), answer, category, category, sentence)


def _count_sentence(k: int, noun: str, nouns: str) -> str:
    return T["say_one"].format(noun=noun) if k == 1 else T["say_many"].format(n=k, nouns=nouns)


def _ask_count(things, rng):
    attr = _pick(rng, ("all", "colour", "shape", "size"))
    if attr == "all":
        k = len(things)
        return QA(T["count"], str(k), "count", "count", _count_sentence(k, "object", "objects"))
    values = {"colour": world.COLOURS, "shape": world.SHAPES, "size": world.SIZES}[attr]
    value = getattr(_pick(rng, things), attr) if rng.random() < 0.75 else _pick(rng, values)
    k = sum(getattr(t, attr) == value for t in things)
    if attr == "shape":
        return QA(T["count_shape"].format(value=PLURALS[value]), str(k), "count", "count",
                  _count_sentence(k, value, PLURALS[value]))
    return QA(T["count_attr"].format(value=value), str(k), "count", "count",
              _count_sentence(k, f"{value} object", f"{value} objects"))


def _say_existence(colour: str, shape: str, present: bool) -> str:  # "yes, there is a red cross."
    return T["say_yes" if present else "say_no"].format(colour=colour, shape=shape)


def _say_relation(a: str, rel: str, b: str, holds: bool) -> str:  # "No, the cross is not above the square."
    return T["say_rel_yes" if holds else "say_rel_no"].format(a=a, rel=rel, b=b)


def _existence(things, rng, yes_ratio: float) -> tuple[str, str, str]:
    """(colour, shape, kind) to ask about: present with probability yes_ratio, else absent in one of NO_KINDS."""
    if rng.random() < yes_ratio:
        t = _pick(rng, things)
        return t.colour, t.shape, "yes"
    combos = {(t.colour, t.shape) for t in things}
    colours, shapes = {t.colour for t in things}, {t.shape for t in things}
    grid = [(c, s) for c in world.COLOURS for s in world.SHAPES]
    options = {"absent_colour": [(c, s) for c, s in grid if c not in colours and s in shapes],
               "absent_shape": [(c, s) for c, s in grid if c in colours and s not in shapes],
               "conjunction_foil": [(c, s) for c, s in grid if c in colours and s in shapes and (c, s) not in combos]}
    # a kind the scene leaves no combination for (all five colours there: no absent colour) is not drawn
    weights = np.array([(1 - FOIL_WEIGHT) / 2] * 2 + [FOIL_WEIGHT]) * [bool(options[k]) for k in NO_KINDS]
    kind = NO_KINDS[rng.choice(3, p=weights / weights.sum())]
    return *_pick(rng, options[kind]), kind


def _relation(things, rng):
    """(a, name of a, relation, b, name of b) for two objects with unique non-positional names, or None."""
    if len(things) < 2:
        return None
    a, b = (things[i] for i in rng.choice(len(things), size=2, replace=False))
    refs_a, refs_b = _refs(things, a, ("row",)), _refs(things, b, ("row",))
    return (a, _pick(rng, refs_a), _pick(rng, list(RELATIONS)), b, _pick(rng, refs_b)) if refs_a and refs_b else None


def _ask_relation(things, rng):
    found = _relation(things, rng)
    if found is None:
        return None
    a, ra, rel, b, rb = found
    if rng.random() < 0.5:
        holds = RELATIONS[rel](a, b)
        return QA(T["relation"].format(a=ra, rel=rel, b=rb), "yes" if holds else "no", "relation", "relation",
                  _say_relation(ra, rel, rb, holds))
    hits = [t for t in things if RELATIONS[rel](t, b)]
    if len(hits) != 1:
        return None
    answer = T["a"].format(colour=hits[0].colour, shape=hits[0].shape)
    return QA(T["what"].format(rel=rel, b=rb), answer, "relation", "relation",
              T["say_what"].format(what=answer[0].upper() + answer[1:], rel=rel, b=rb))


def _ask(category: str, things, rng, yes_ratio: float):
    """One question of a category, or None when this draw found no question with a definite answer."""
    if category == "existence":
        colour, shape, kind = _existence(things, rng, yes_ratio)
        return QA(T["existence"].format(colour=colour, shape=shape), "yes" if kind == "yes" else "no", category, kind,
                  _say_existence(colour, shape, kind == "yes"))
    if category in ("count", "relation"):
        return (_ask_count if category == "count" else _ask_relation)(things, rng)
    return _ask_attribute(category, things, rng)


def questions(context: SymbolicContext, category: str, rng: np.random.Generator, n: int = 1,
              yes_ratio: float = 0.5) -> list[QA]:
    """Up to n distinct single-turn questions of one category with definite answers: fewer when the scene has
    no more (none for `relation` in a one-object scene)."""
    if category not in CATEGORIES:
        raise KeyError(f"unknown question category {category!r}; expected one of {', '.join(CATEGORIES)}")
    things, found = read(context), {}
    for _ in range(8 * n):
        qa = _ask(category, things, rng, yes_ratio)
        if qa is not None:
            found.setdefault(qa.question, qa)
        if len(found) == n:
            break
    return list(found.values())


def _fake(things, rng) -> Thing:
    """An absent object for a hallucination: a colour-shape combination not in the scene, in an empty cell,
    preferring shapes that co-occur (`world.COOCCURRING`) with a shape that is there (as POPE finds)."""
    combos, shapes = {(t.colour, t.shape) for t in things}, {t.shape for t in things}
    partners = [b for pair in world.COOCCURRING for a, b in (pair, pair[::-1]) if a in shapes]
    absent = [[(c, s) for s in pool for c in world.COLOURS if (c, s) not in combos]
              for pool in (partners, world.SHAPES)]
    colour, shape = _pick(rng, absent[0] or absent[1])
    taken = {(t.row, t.col) for t in things}
    cell = _pick(rng, [cell for cell in range(world.N_CELLS) if divmod(cell, 3) not in taken])
    return world.place((colour, shape, _pick(rng, world.SIZES)), cell, rng)


def _steps(facts: list[str], reason: str, answer) -> str:
    """Reasoning before the answer (LLaVA's complex-reasoning style): facts, then 'reason, so the answer is X.'."""
    return " ".join(facts + [T["answer"].format(reason=reason, answer=answer)])


# A reasoner's draw: (question, facts, reason, answer, the answer as a conversation turn gives it or None).
Reasoning = tuple[str, list[str], str, object, str | None]


def _reason_relation(things, rng) -> Reasoning | None:
    """Compare the two objects' columns (or rows)."""
    found = _relation(things, rng)
    if found is None:
        return None
    a, ra, rel, b, rb = found
    axis, unit, names, rels = (("col", "column", world.COLUMNS, ("to the left of", "to the right of"))
                               if rel.endswith(" of") else ("row", "row", world.ROWS, ("above", "below")))
    va, vb = getattr(a, axis), getattr(b, axis)
    reason = (T["same"].format(name=names[va], unit=unit) if va == vb else
              T["order"].format(a=names[va], unit=unit, rel=rels[va > vb], b=names[vb]))
    facts = [T["is_the"].format(ref=ra, full=_full(a)), T["is_the"].format(ref=rb, full=_full(b))]
    holds = RELATIONS[rel](a, b)
    return (T["relation"].format(a=ra, rel=rel, b=rb), facts, reason, "yes" if holds else "no",
            _say_relation(ra, rel, rb, holds))


def _reason_larger(things, rng) -> Reasoning | None:
    """Which of a large and a small object is larger, named without their sizes."""
    large, small = ([t for t in things if t.size == size] for size in ("large", "small"))
    pair = [_pick(rng, large), _pick(rng, small)] if large and small else []
    refs = [_refs(things, t, ("size",)) for t in pair]
    if not pair or not all(refs):
        return None
    names, order = [_pick(rng, r) for r in refs], rng.permutation(2)
    facts = [T["is_the"].format(ref=names[i], full=_full(pair[i])) for i in order]
    question = T["larger"].format(a=names[order[0]], b=names[order[1]])
    return question, facts, T["because"], f"the {names[0]}", None


def _reason_count(things, rng) -> Reasoning | None:
    """Count the objects in a relation to one object, checking each other object in turn."""
    b = _pick(rng, things)
    refs = _refs(things, b, ("row",))
    if not refs:
        return None
    ref, rel = _pick(rng, refs), _pick(rng, list(RELATIONS))
    others = [t for t in things if t != b]
    k = sum(RELATIONS[rel](t, b) for t in others)
    facts = [T["is_the"].format(ref=ref, full=_full(b))]
    facts += [T["rel_yes" if RELATIONS[rel](t, b) else "rel_no"].format(full=_full(t), rel=rel) for t in others]
    reason = T["total_one" if k == 1 else "total"].format(k=k, rel=rel) if others else T["none_other"]
    return T["count_rel"].format(rel=rel, b=ref), facts, reason, k, None


def _reason_existence(things, rng) -> Reasoning:
    """Check each object for both attributes: the binding that a conjunction foil tests."""
    colour, shape, _ = _existence(things, rng, 0.5)
    verdicts = ("neither", "shape_only", "colour_only", "both")
    facts = [T[verdicts[2 * (t.colour == colour) + (t.shape == shape)]].format(full=_full(t), colour=colour,
                                                                                shape=shape) for t in things]
    hit = any((t.colour, t.shape) == (colour, shape) for t in things)
    reason = T["found" if hit else "not_found"].format(colour=colour, shape=shape)
    return (T["existence"].format(colour=colour, shape=shape), facts, reason, "yes" if hit else "no",
            _say_existence(colour, shape, hit))


_REASONERS = (_reason_relation, _reason_larger, _reason_count, _reason_existence)


def _listing(things) -> list[str]:
    """Every object as a detailed description lists it ("There is a large yellow circle in the top left.")."""
    return [T["there"].format(obj=f"{t.size} {t.colour} {t.shape}", position=t.position) for t in things]


@dataclass(frozen=True)
class Teacher:
    """The teacher's knobs (study question 9: the risks of GPT-written training data).

    hallucination: probability that a conversation or detailed description makes up one absent object
                   (answering "yes" to its existence, or describing it); recorded in `Sample.injected`.
    verbosity:     "long" descriptions add one relation per pair of objects; "short" ones list the objects.
    yes_ratio:     the share of existence questions whose answer is "yes".
    max_turns:     a conversation has 2..max_turns question-answer turns. Many questions per scene are what a
                   small model learns to read a scene from: with up to 10 turns instead of 4, a language model
                   trained 1000 steps on textual scenes answered colour questions right 67% of the time
                   instead of 19% (`vicuna-mini`'s corpus, measured on 2 cores).
    answers:       "short" ("red") or "sentence" ("The square is red.", the referent restated as LLaVA-Instruct
                   does): on bound cell tokens, a 64x2 LM passed the no-lookup level on shape questions after
                   ~24k sequences with sentences and on none of colour, shape or existence by 56k with short
                   answers (../shared/reference/LOOKUP_MEASUREMENTS.md).
    reasoning:     the order of a complex-reasoning answer. "steps_first": the steps, then "so the answer is X."
                   (LLaVA's order, its best on ScienceQA). "answer_first": a question that conversations ask too
                   (existence, relation) opens with the conversation's answer ("yes, there is a red cross."), then
                   the same steps and conclusion; counting and comparing sizes have no conversational answer to
                   open with and stay as they are. LLaVA's Table 8 puts the answer first at 89.77 against 90.92
                   (ScienceQA, 13B); `llava-mini-answer-first` measures the order here (notebook 10).
    steps:         the steps of an existence, relation or which-is-larger record. "checks": the objects the
                   question needs, named and checked ("The large yellow circle in the top left is yellow but not a
                   cross.", "The cross is the small red cross in the center."). "listing": every object as a detailed
                   description lists it ("There is a large yellow circle in the top left."), steps a 2-block LLM
                   gets right about as often as its descriptions, then the same conclusion; counting keeps its
                   steps, which check every object already (`llava-mini-listing`, notebook 10;
                   docs/recipe_log.md, sessions 14 and 15).
    """

    hallucination: float = 0.0
    verbosity: str = "long"
    yes_ratio: float = 0.5
    max_turns: int = 10
    answers: str = "sentence"
    reasoning: str = "steps_first"
    steps: str = "checks"

    def __post_init__(self):
        for name, ok in (("hallucination", 0 <= self.hallucination <= 1), ("yes_ratio", 0 <= self.yes_ratio <= 1),
                         ("verbosity", self.verbosity in ("short", "long")), ("max_turns", self.max_turns >= 2),
                         ("answers", self.answers in ANSWER_STYLES), ("reasoning", self.reasoning in REASONING_ORDERS),
                         ("steps", self.steps in STEP_FORMS)):
            if not ok:
                raise ValueError(f"Teacher {name}={getattr(self, name)!r} is invalid: hallucination and yes_ratio "
                                 f"are probabilities, verbosity is 'short' or 'long', max_turns is at least 2, "
                                 f"answers is one of {', '.join(ANSWER_STYLES)}, reasoning one of "
                                 f"{', '.join(REASONING_ORDERS)}, steps one of {', '.join(STEP_FORMS)}")

    def brief(self, context: SymbolicContext, rng: np.random.Generator) -> Sample:
        """Stage-1 pair: 'Human: X_q <image> Assistant: X_c' with X_q from Table 11 and X_c one caption."""
        return Sample("brief", ((_pick(rng, BRIEF_INSTRUCTIONS), _pick(rng, context.captions)),))

    def conversation(self, context: SymbolicContext, rng: np.random.Generator) -> Sample:
        """2..max_turns distinct questions of random categories, each with a definite answer (LLaVA's
        conversation type asks only questions with definite answers), short or as a sentence (`answers`)."""
        things, found = read(context), {}
        n_turns = int(rng.integers(2, self.max_turns + 1))
        for _ in range(20 * n_turns):  # a scene has over a dozen distinct count questions alone
            qa = _ask(_pick(rng, CATEGORIES), things, rng, self.yes_ratio)
            if qa is not None:
                found.setdefault(qa.question, (qa.question, qa.reply(self.answers)))
            if len(found) == n_turns:
                break
        turns, injected = list(found.values()), None
        if rng.random() < self.hallucination:
            fake = _fake(things, rng)
            injected = f"{fake.colour} {fake.shape}"
            answer = "yes" if self.answers == "short" else _say_existence(fake.colour, fake.shape, True)
            turn = (T["existence"].format(colour=fake.colour, shape=fake.shape), answer)
            turns = [t for t in turns if t[0] != turn[0]]
            turns.insert(int(rng.integers(len(turns) + 1)), turn)
        return Sample("conversation", tuple(turns), injected)

    def detail(self, context: SymbolicContext, rng: np.random.Generator) -> Sample:
        """Every object with its size, colour, shape and position (plus relations if verbosity is 'long').
        A hallucinated object is described as if it were there."""
        things, injected = read(context), None
        if rng.random() < self.hallucination:
            fake = _fake(things, rng)
            injected = _full(fake)
            things = tuple(sorted(things + (fake,), key=lambda t: (t.row, t.col)))
        sentences = [T["one"] if len(things) == 1 else T["many"].format(n=len(things))]
        for t in things:
            obj = f"{t.size} {t.colour} {t.shape}"
            sentences.append(T[_pick(rng, ("there", "in", "is_in"))].format(obj=obj, position=t.position))
        for i, a in enumerate(things if self.verbosity == "long" else ()):
            for b in things[i + 1:]:
                rel = _pick(rng, [r for r, holds in RELATIONS.items() if holds(a, b)])
                ra, rb = (_pick(rng, _refs(things, t, ("row",)) or _refs(things, t)) for t in (a, b))
                sentences.append(T["rel_fact"].format(a=ra, rel=rel, b=rb))
        return Sample("detail", ((_pick(rng, DETAIL_INSTRUCTIONS), " ".join(sentences)),), injected)

    def complex_reasoning(self, context: SymbolicContext, rng: np.random.Generator) -> Sample:
        """One question whose answer needs steps: the reasoning, then 'so the answer is X.' (`reasoning`: with the
        conversation's answer before the steps, where there is one; `steps`: what the steps say)."""
        things = read(context)
        while True:  # ends: _reason_existence always succeeds
            reasoner = _pick(rng, _REASONERS)
            drawn = reasoner(things, rng)
            if drawn is not None:
                question, facts, reason, answer, said = drawn
                if self.steps == "listing" and reasoner is not _reason_count:
                    facts = _listing(things)
                if self.reasoning == "answer_first" and said is not None:
                    facts = [said, *facts]
                return Sample("complex", ((question, _steps(facts, reason, answer)),))
