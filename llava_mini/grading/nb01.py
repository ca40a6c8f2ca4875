"""Graders of notebook 01, ShapesWorld and instruction data (`solutions/01_instruction_data.ipynb`).

- exercise 1.1 `box_line(category, bbox, width, height)`: a COCO box `[x, y, w, h]` in pixels as LLaVA's
  symbolic-context line `category: [x1, y1, x2, y2]`, normalised to 0-1 with two decimals; compared with
  `world.symbolic_context` on ShapesWorld scenes and with the reference on non-square COCO-like images.
- exercise 1.2 `definite_turns(context)`: the question-answer turns with definite answers (the object count,
  the colour of each shape that occurs once, the position of each colour-shape pair that occurs once), from
  the symbolic context only, answered in the teacher's sentences ("The circle is red."); compared as a
  multiset with the reference.
- exercise 1.3 `verified(record, context)`: whether every existence claim of a LLaVA conversation record
  agrees with the boxes, the answers being the teacher's sentences ("yes, there is a red square.", "No, there
  is no red square."); on hand-made records and on the teacher's clean and hallucinating ones.
- study question 9: the letters of the true statements (key `nb01.study_q9`).

The learner's code runs through `call`: an argument changed in place (the bbox list, the record) is
rejected. Where a wrong answer matches a known mistake, the hint names that mistake.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from llava_mini import data, teacher, world
from llava_mini.grading import call, expect, expect_type, grader, rng
from llava_mini.keys import require_answer

# --- exercise 1.1 ----------------------------------------------------------------------------------


def _line(category: str, coords) -> str:
    return f"{category}: [" + ", ".join(f"{v:.2f}" for v in coords) + "]"


def _reference_box_line(category: str, bbox, width: float, height: float) -> str:
    x, y, w, h = bbox
    return _line(category, (x / width, y / height, (x + w) / width, (y + h) / height))


def _box_mistakes(category: str, bbox, width: float, height: float) -> dict[str, str]:
    x, y, w, h = bbox
    corners = (x / width, y / height, (x + w) / width, (y + h) / height)
    return {
        "COCO's bbox is [x, y, width, height]: the right and bottom edges are x + width and y + height":
            _line(category, (x / width, y / height, w / width, h / height)),
        "normalise: divide x coordinates by the image width and y coordinates by its height (0-1, not pixels)":
            _line(category, (x, y, x + w, y + h)),
        "y coordinates are divided by the image height, not its width (COCO images are rarely square)":
            _line(category, (x / width, y / width, (x + w) / width, (y + h) / width)),
        "write every coordinate with exactly two decimals (f'{v:.2f}': 0.40, not 0.4)":
            f"{category}: [" + ", ".join(str(round(v, 2)) for v in corners) + "]",
        "the order is [x1, y1, x2, y2]: x (horizontal) first": _line(category, (corners[1], corners[0], corners[3],
                                                                              corners[2])),
    }


def _coco_boxes(g: torch.Generator, width: int, height: int, n: int) -> list[list[float]]:
    """Pixel boxes [x, y, w, h] whose normalised corners lie at least 0.002 from a rounding boundary."""
    boxes = []
    for _ in range(n):
        lo = torch.randint(1, 60, (2,), generator=g)  # hundredths
        hi = lo + torch.randint(5, 40, (2,), generator=g)
        jitter = (torch.rand(4, generator=g) - 0.5) * 0.6  # +-0.3 hundredths
        x1, y1, x2, y2 = ((torch.cat([lo, hi]).double() + jitter) / 100).tolist()
        if torch.rand((), generator=g) < 0.3:  # some corners on an exact tenth: 0.40, written with two decimals
            x1 = round(x1, 1)
        boxes.append([x1 * width, y1 * height, (x2 - x1) * width, (y2 - y1) * height])
    return boxes


def _check_box_line(box_line, category: str, bbox, width: int, height: int, want) -> None:
    """One call of the learner's box_line; `want()` gives the right line (computed after the call)."""
    what = f"box_line({category!r}, {[round(v, 2) for v in bbox]}, {width}, {height})"
    got = call(box_line, category, list(bbox), width, height, what=what)
    expect_type(got, str, what)
    want = want()
    if got != want:
        hint = next((h for h, wrong in _box_mistakes(category, bbox, width, height).items() if got == wrong),
                    "normalise COCO's [x, y, w, h] to [x / W, y / H, (x + w) / W, (y + h) / H], two decimals each")
        raise AssertionError(f"{what} should be {want!r}, got {got!r}; {hint}")


@grader("exercise 1.1", "box_line")
def check_box_line(box_line) -> None:
    """ShapesWorld scenes at three image sizes against `world.symbolic_context`, then COCO-like images."""
    g = rng(11)
    for size in (32, 48, 64):
        for seed in torch.randint(0, 100_000, (6,), generator=g).tolist():
            scene = world.sample_scene(seed)
            for i, obj in enumerate(scene.objects):
                x1, y1, x2, y2 = obj.box
                bbox = [x1 * size, y1 * size, (x2 - x1) * size, (y2 - y1) * size]  # COCO style, in pixels
                _check_box_line(box_line, f"{obj.colour} {obj.shape}", bbox, size, size,
                                lambda scene=scene, i=i: world.symbolic_context(scene).boxes[i])
    for width, height, category in [(640, 427, "dog"), (500, 375, "dining table"), (427, 640, "person")]:
        for bbox in _coco_boxes(g, width, height, 5):
            _check_box_line(box_line, category, bbox, width, height,
                            lambda: _reference_box_line(category, bbox, width, height))


# --- exercise 1.2 ----------------------------------------------------------------------------------


def _reference_turns(context: world.SymbolicContext) -> list[tuple[str, str, str]]:
    """(question, the teacher's sentence answer, the short answer) for every question with a definite answer."""
    things, T = teacher.read(context), teacher.T
    turns = [(T["count"], teacher._count_sentence(len(things), "object", "objects"), str(len(things)))]
    for t in things:
        if sum(u.shape == t.shape for u in things) == 1:
            turns.append((T["colour"].format(ref=t.shape), T["say_colour"].format(ref=t.shape, value=t.colour),
                          t.colour))
        if sum((u.colour, u.shape) == (t.colour, t.shape) for u in things) == 1:
            ref = f"{t.colour} {t.shape}"
            turns.append((T["position"].format(ref=ref), T["say_position"].format(ref=ref, value=t.position),
                          t.position))
    return turns


def _scene(seed: int, *objects) -> world.Scene:
    """A scene of (colour, shape, size, cell) objects, placed like the sampler places them."""
    g = np.random.default_rng(seed)
    placed = [world.place(spec, cell, g) for *spec, cell in objects]
    return world.Scene(seed, tuple(sorted(placed, key=lambda o: (o.row, o.col))))


def _turn_scenes(g: torch.Generator) -> list[world.Scene]:
    """Random scenes plus the cases that need care: a shared shape, a repeated colour-shape pair."""
    seeds = torch.randint(0, 100_000, (12,), generator=g).tolist()
    return [
        _scene(1, ("red", "circle", "large", 0), ("blue", "circle", "small", 4), ("green", "square", "small", 8)),
        _scene(2, ("red", "circle", "large", 2), ("red", "circle", "small", 6)),
        _scene(3, ("yellow", "cross", "small", 5)),
        _scene(4, ("purple", "diamond", "large", 1), ("purple", "diamond", "small", 3),
               ("blue", "triangle", "large", 7)),
        *(world.sample_scene(s) for s in seeds),
    ]


def _ambiguous(question: str, things) -> str | None:
    """What makes a colour or position question ambiguous in this scene, if it is."""
    for pattern, attrs in ((r"What colour is the (\w+)\?", ("shape",)),
                           (r"Where is the (\w+)\?", ("shape",)),
                           (r"Where is the (\w+) (\w+)\?", ("colour", "shape"))):
        match = re.fullmatch(pattern, question)
        if match:
            n = sum(tuple(getattr(t, a) for a in attrs) == match.groups() for t in things)
            if n > 1:
                return (f"{question!r} has no definite answer: the scene has {n} objects that are "
                        f"{' '.join(match.groups())}s; ask only about what one object alone is")
    return None


def _answer_hint(question: str, got: str, want: str, short: str, context: world.SymbolicContext) -> str:
    """What is wrong with the answer `got` to a question whose right answer is `want` (`short` in one word)."""
    if got.strip().lower().rstrip(".") == short.lower():
        return (f"answer with the teacher's sentence, which restates what the question is about before the "
                f"answer: {want!r}, not {got!r}")
    if question.startswith("How many"):
        n = len(context.boxes)
        if got == teacher._count_sentence(len(context.captions), "object", "objects"):
            return "count the boxes, one per object: there are always five captions"
        if any(word in got.split() for word in ("one", "two", "three")):
            return "write the count in digits, as the teacher does"
        if n == 1 and got == teacher.T["say_many"].format(n=1, nouns="objects"):
            return "one object takes the singular: 'There is 1 object.'"
        return "count the boxes, one per object, and use the sentence the exercise gives"
    return "read the answer from the object's box line, and use the sentence the exercise gives"


@grader("exercise 1.2", "definite_turns")
def check_definite_turns(definite_turns) -> None:
    """Turns as a multiset against the reference, on scenes with shared shapes and repeated pairs."""
    for scene in _turn_scenes(rng(12)):
        context = world.symbolic_context(scene)
        things = teacher.read(context)
        what = f"definite_turns(<the context of a scene with {len(things)} object(s): {'; '.join(context.boxes)}>)"
        got = call(definite_turns, context, what=what)
        expect_type(got, list, what)
        got = [tuple(t) if isinstance(t, list) else t for t in got]  # [question, answer] pairs are fine too
        expect(all(isinstance(t, tuple) and len(t) == 2 and all(isinstance(s, str) for s in t) for t in got),
               f"{what} should be a list of (question, answer) string pairs, got {got!r}")
        reference = _reference_turns(context)
        answers = {question: (sentence, short) for question, sentence, short in reference}
        for question, answer in got:
            if got.count((question, answer)) > 1:
                raise AssertionError(f"{what} asks {question!r} twice; each question once")
            if question in answers and answer != answers[question][0]:
                want, short = answers[question]
                raise AssertionError(f"{what}: the answer to {question!r} is {want!r}, got {answer!r}; "
                                     + _answer_hint(question, answer, want, short, context))
            if question not in answers:
                raise AssertionError(f"{what} asks {question!r}, which it should not; "
                                     + (_ambiguous(question, things) or "use exactly the question forms given"))
        missing = [(q, a) for q, a, _ in reference if (q, a) not in got]
        expect(not missing, f"{what} misses {missing[0]!r}; ask every question that has a definite answer"
               if missing else "")


# --- exercise 1.3 ----------------------------------------------------------------------------------


def _record(*turns) -> dict:
    """A LLaVA conversation record of (question, answer) turns, the image placeholder in the first question."""
    return data._record("test", "images/test.png", turns)


def _teacher_records(start: int, n: int, hallucination: float) -> list[tuple[dict, world.SymbolicContext, str]]:
    """(record, context, made-up object or '') for the teacher's conversations about n scenes."""
    out = []
    for seed in range(start, start + n):
        records, meta = data.scene_records(seed, teacher.Teacher(hallucination=hallucination))
        context = world.SymbolicContext(tuple(meta["captions"]), tuple(meta["boxes"]))
        out.append((records["conversation"][0], context, meta["injected"].get("conversation", "")))
    return out


def _show(record: dict) -> str:
    turns = record["conversations"]
    return " | ".join(f"{q['value'].replace(chr(10), ' ')} -> {a['value']}" for q, a in zip(turns[::2], turns[1::2]))


def _yes(colour: str, shape: str) -> str:
    return teacher.T["say_yes"].format(colour=colour, shape=shape)  # "yes, there is a red square."


def _no(colour: str, shape: str) -> str:
    return teacher.T["say_no"].format(colour=colour, shape=shape)  # "No, there is no red square."


def _in_words(record: dict) -> dict:
    """The same record with each existence answer cut to its first word, "yes" or "no" (the short style)."""
    turns = [dict(turn) for turn in record["conversations"]]
    for question, answer in zip(turns[::2], turns[1::2]):
        if _EXISTENCE.fullmatch(question["value"].removeprefix(data.IMAGE_TOKEN + "\n")):
            answer["value"] = "yes" if answer["value"].startswith("yes") else "no"
    return {**record, "conversations": turns}


_EXISTENCE = re.compile(r"Is there a (\w+) (\w+)\?")
_SENTENCES = ("the answers are sentences, 'yes, there is a red square.' or 'No, there is no red square.': tell "
              "yes from no by how the answer starts (comparing the whole answer with \"yes\" never matches; "
              "mind the capital N of \"No\")")


def _call_verified(verified, record: dict, context: world.SymbolicContext) -> bool:
    what = f"verified(<{_show(record)}>, <context: {'; '.join(context.boxes)}>)"
    try:
        got = call(verified, record, context, what=what)
    except AssertionError as err:
        if " in place" not in str(err):
            raise
        which = "the record" if "argument 1" in str(err) else "the context"
        raise AssertionError(f"{what} changed {which} it was given; a filter must only read its inputs: section 5 "
                             "trains on the very records it checks (strip '<image>\\n' from a copy of the "
                             "question, not in the record)") from None
    expect_type(got, bool, what)
    return got


def _misread(verified, record: dict, context: world.SymbolicContext, want: bool) -> bool:
    """Does `verified` get this record right once its existence answers are cut to "yes" or "no"? Then what it
    got wrong was reading the sentences."""
    try:
        return _call_verified(verified, _in_words(record), context) == want
    except Exception:  # noqa: BLE001 - only a diagnosis: the learner's error on the original record is reported
        return False


@grader("exercise 1.3", "verified")
def check_verified(verified) -> None:
    """Hand-made records (binding, the first turn, false 'no's), then the teacher's: every clean record kept,
    every record with a made-up object dropped. Answers are the teacher's sentences."""
    scene = _scene(5, ("red", "circle", "large", 0), ("blue", "square", "small", 4))
    context = world.symbolic_context(scene)
    T = teacher.T
    cases = [
        (_record((T["colour"].format(ref="square"), T["say_colour"].format(ref="square", value="blue")),
                 (T["existence"].format(colour="red", shape="square"), _yes("red", "square"))), False,
         "a red square is claimed, but the red object is a circle and the square is blue: colour and shape must "
         "belong to the same object"),
        (_record((T["existence"].format(colour="red", shape="square"), _no("red", "square")),
                 (T["existence"].format(colour="blue", shape="square"), _yes("blue", "square"))), True,
         "both claims agree with the boxes (the red object is a circle, and there is a blue square)"),
        (_record((T["existence"].format(colour="green", shape="diamond"), _yes("green", "diamond")),
                 (T["count"], teacher._count_sentence(2, "object", "objects"))), False,
         "the first question is a claim too, after the '<image>\\n' placeholder"),
        (_record((T["count"], teacher._count_sentence(2, "object", "objects")),
                 (T["existence"].format(colour="red", shape="circle"), _no("red", "circle"))), False,
         "a 'no' contradicts the boxes too when the object is there (a red circle is)"),
    ]
    for record, want, hint in cases:
        if _call_verified(verified, record, context) != want:
            hint = _SENTENCES if _misread(verified, record, context, want) else hint
            raise AssertionError(f"verified(<{_show(record)}>, <context: {'; '.join(context.boxes)}>) should be "
                                 f"{want}; {hint}")
    start = int(torch.randint(0, 100_000, (), generator=rng(13)))
    for record, context, _ in _teacher_records(start, 40, 0.0):
        if not _call_verified(verified, record, context):
            hint = _SENTENCES if _misread(verified, record, context, True) else \
                "drop a record only when a claim contradicts the boxes"
            raise AssertionError(f"it dropped a record whose every claim agrees with the boxes: <{_show(record)}>, "
                                 f"boxes {'; '.join(context.boxes)}; {hint}")
    for record, context, fake in _teacher_records(start + 40, 40, 1.0):
        if _call_verified(verified, record, context):
            hint = f"; {_SENTENCES}" if _misread(verified, record, context, False) else ""
            raise AssertionError(f"it kept a record that claims a {fake}, which is not in the boxes: "
                                 f"<{_show(record)}>, boxes {'; '.join(context.boxes)}{hint}")


# --- study question 9 ------------------------------------------------------------------------------


@grader("study question 9", "answer_study_q9")
def check_study_q9(answer_study_q9) -> None:
    require_answer("nb01.study_q9", answer_study_q9(),
                   hint="for each statement ask: what did the student learn from the made-up claims in section 5, "
                        "and what does the statement's mitigation check, or fail to check?")
