"""Graders of notebook 01, ShapesWorld and instruction data (`solutions/01_instruction_data.ipynb`).

- exercise 1.1 `box_line(category, bbox, width, height)`: a COCO box `[x, y, w, h]` in pixels as LLaVA's
  symbolic-context line `category: [x1, y1, x2, y2]`, normalised to 0-1 with two decimals; compared with
  `world.symbolic_context` on ShapesWorld scenes and with the reference on non-square COCO-like images.
- exercise 1.2 `definite_turns(context)`: the question-answer turns with definite answers (the object count,
  the colour of each shape that occurs once, the position of each colour-shape pair that occurs once), from
  the symbolic context only; compared as a multiset with the reference.
- exercise 1.3 `verified(record, context)`: whether every existence claim of a LLaVA conversation record
  agrees with the boxes; on the teacher's clean and hallucinating records and on hand-made ones.
- study question 9: the letters of the true statements (key `nb01.study_q9`).

Where a wrong answer matches a known mistake, the hint names that mistake.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from llava_mini import data, teacher, world
from llava_mini.grading import expect, expect_type, grader, rng
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


def _check_box_line(box_line, category: str, bbox, width: int, height: int, want: str) -> None:
    call = f"box_line({category!r}, {[round(v, 2) for v in bbox]}, {width}, {height})"
    got = box_line(category, list(bbox), width, height)
    expect_type(got, str, call)
    if got != want:
        hint = next((h for h, wrong in _box_mistakes(category, bbox, width, height).items() if got == wrong),
                    "normalise COCO's [x, y, w, h] to [x / W, y / H, (x + w) / W, (y + h) / H], two decimals each")
        raise AssertionError(f"{call} should be {want!r}, got {got!r}; {hint}")


@grader("exercise 1.1", "box_line")
def check_box_line(box_line) -> None:
    """ShapesWorld scenes at three image sizes against `world.symbolic_context`, then COCO-like images."""
    g = rng(11)
    for size in (32, 48, 64):
        for seed in torch.randint(0, 100_000, (6,), generator=g).tolist():
            scene = world.sample_scene(seed)
            for obj, want in zip(scene.objects, world.symbolic_context(scene).boxes):
                x1, y1, x2, y2 = obj.box
                bbox = [x1 * size, y1 * size, (x2 - x1) * size, (y2 - y1) * size]  # COCO style, in pixels
                _check_box_line(box_line, f"{obj.colour} {obj.shape}", bbox, size, size, want)
    for width, height, category in [(640, 427, "dog"), (500, 375, "dining table"), (427, 640, "person")]:
        for bbox in _coco_boxes(g, width, height, 5):
            _check_box_line(box_line, category, bbox, width, height,
                            _reference_box_line(category, bbox, width, height))


# --- exercise 1.2 ----------------------------------------------------------------------------------


def _reference_turns(context: world.SymbolicContext) -> list[tuple[str, str]]:
    things = teacher.read(context)
    turns = [("How many objects are there?", str(len(things)))]
    for t in things:
        if sum(u.shape == t.shape for u in things) == 1:
            turns.append((f"What colour is the {t.shape}?", t.colour))
        if sum((u.colour, u.shape) == (t.colour, t.shape) for u in things) == 1:
            turns.append((f"Where is the {t.colour} {t.shape}?", t.position))
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


def _count_hint(answer: str, context: world.SymbolicContext) -> str:
    if answer == str(len(context.captions)):
        return "count the boxes, one per object: there are always five captions"
    if answer in ("one", "two", "three"):
        return "write the count in digits, as the teacher does"
    return "count the boxes, one per object"


@grader("exercise 1.2", "definite_turns")
def check_definite_turns(definite_turns) -> None:
    """Turns as a multiset against the reference, on scenes with shared shapes and repeated pairs."""
    for scene in _turn_scenes(rng(12)):
        context = world.symbolic_context(scene)
        things = teacher.read(context)
        call = f"definite_turns(<the context of a scene with {len(things)} object(s): {'; '.join(context.boxes)}>)"
        got = definite_turns(context)
        expect_type(got, list, call)
        got = [tuple(t) if isinstance(t, list) else t for t in got]  # [question, answer] pairs are fine too
        expect(all(isinstance(t, tuple) and len(t) == 2 and all(isinstance(s, str) for s in t) for t in got),
               f"{call} should be a list of (question, answer) string pairs, got {got!r}")
        want = _reference_turns(context)
        answers = dict(want)
        for question, answer in got:
            if got.count((question, answer)) > 1:
                raise AssertionError(f"{call} asks {question!r} twice; each question once")
            if question in answers and answer != answers[question]:
                hint = _count_hint(answer, context) if question.startswith("How many") else \
                    "read it from the object's box line"
                raise AssertionError(f"{call}: the answer to {question!r} is {answers[question]!r}, got {answer!r}; "
                                     f"{hint}")
            if question not in answers:
                raise AssertionError(f"{call} asks {question!r}, which it should not; "
                                     + (_ambiguous(question, things) or "use exactly the question forms given"))
        missing = [turn for turn in want if turn not in got]
        expect(not missing, f"{call} misses {missing[0]!r}; ask every question that has a definite answer"
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


def _call_verified(verified, record: dict, context) -> bool:
    call = f"verified(<{_show(record)}>, <context: {'; '.join(context.boxes)}>)"
    got = verified(record, context)
    expect_type(got, bool, call)
    return got


@grader("exercise 1.3", "verified")
def check_verified(verified) -> None:
    """Hand-made records (binding, the first turn, false 'no's), then the teacher's: every clean record kept,
    every record with a made-up object dropped."""
    scene = _scene(5, ("red", "circle", "large", 0), ("blue", "square", "small", 4))
    context = world.symbolic_context(scene)
    cases = [
        (_record(("What colour is the square?", "blue"), ("Is there a red square?", "yes")), False,
         "a red square is claimed, but the red object is a circle and the square is blue: colour and shape must "
         "belong to the same object"),
        (_record(("Is there a red square?", "no"), ("Is there a blue square?", "yes")), True,
         "both claims agree with the boxes (the red object is a circle)"),
        (_record(("Is there a green diamond?", "yes"), ("How many objects are there?", "2")), False,
         "the first question is a claim too, after the '<image>\\n' placeholder"),
        (_record(("How many objects are there?", "2"), ("Is there a red circle?", "no")), False,
         "a 'no' contradicts the boxes too when the object is there (a red circle is)"),
    ]
    for record, want, hint in cases:
        got = _call_verified(verified, record, context)
        expect(got == want, f"verified(<{_show(record)}>, <context: {'; '.join(context.boxes)}>) should be {want}; "
                            f"{hint}")
    start = int(torch.randint(0, 100_000, (), generator=rng(13)))
    for record, context, _ in _teacher_records(start, 40, 0.0):
        if not _call_verified(verified, record, context):
            raise AssertionError(f"it dropped a record whose every claim agrees with the boxes: <{_show(record)}>, "
                                 f"boxes {'; '.join(context.boxes)}; drop a record only when a claim contradicts "
                                 "the boxes")
    for record, context, fake in _teacher_records(start + 40, 40, 1.0):
        if _call_verified(verified, record, context):
            raise AssertionError(f"it kept a record that claims a {fake}, which is not in the boxes: "
                                 f"<{_show(record)}>, boxes {'; '.join(context.boxes)}")


# --- study question 9 ------------------------------------------------------------------------------


@grader("study question 9", "answer_study_q9")
def check_study_q9(answer_study_q9) -> None:
    require_answer("nb01.study_q9", answer_study_q9(),
                   hint="for each statement ask: what did the student learn from the made-up claims in section 5, "
                        "and what does the statement's mitigation check, or fail to check?")
