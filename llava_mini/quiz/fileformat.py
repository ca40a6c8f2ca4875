"""The quiz file format, `llava-mini-quiz/1` (quizzes/README.md): loading a quiz and checking it against the format.

A plain source (`solutions/quizzes/qNN.json`, answers in the open) and a sealed quiz (`quizzes/qNN.json`, no answers,
the texts that would give them away sealed by `llava_mini.quiz.sealing`) share one format; `validate` says every way
a quiz departs from it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

FORMAT = "llava-mini-quiz/1"
ROOT = Path(__file__).resolve().parents[2]
QUIZ_DIR, SOURCE_DIR = ROOT / "quizzes", ROOT / "solutions" / "quizzes"
KINDS = {"single": "choice", "multiple": "choice", "number": "number"}  # item kind -> key kind
# Notebooks 04-10 are planned (COURSE.md section 4); an item whose notebook is not written yet points to the written
# answer in solutions/study_answers.md and names its notebook here, so the pointer can be switched when it lands.
PLANNED = {"04": "the projector", "05": "the answer-token loss", "06": "stage 1: feature alignment",
           "07": "stage 2: instruction tuning, on a GPU", "08": "evaluation", "09": "ablations",
           "10": "failure modes and beyond"}
_QUIZ_KEYS = ("format", "study_question", "title", "question", "sealed", "items")
_ITEM_KEYS = {"id", "kind", "prompt", "options", "answer", "precision", "unit", "misconceptions", "hint",
              "explanation", "evidence", "revisit", "planned"}


def _number(n) -> int:
    match = re.fullmatch(r"q?0*(\d{1,2})", str(n).strip().lower())
    if not match or not 1 <= int(match.group(1)) <= 17:
        raise ValueError(f"expected a study question number from 1 to 17, such as 2 or q02, got {str(n)!r}")
    return int(match.group(1))


def load(n, folder: Path | None = None) -> dict:
    """The quiz on study question `n` (1-17) from `quizzes/` (or `folder`), checked against the format."""
    n = _number(n)
    folder = Path(folder) if folder is not None else QUIZ_DIR
    path = folder / f"q{n:02d}.json"
    if not path.exists():
        raise FileNotFoundError(f"no quiz {path} (quizzes/ lives in the course's clone)")
    quiz = json.loads(path.read_text(encoding="utf-8"))
    problems = validate(quiz, sealed=quiz.get("sealed", True))
    if problems:
        raise ValueError(f"{path} is not a valid quiz: " + "; ".join(problems))
    return quiz


def validate(quiz: dict, sealed: bool = True) -> list[str]:
    """Every way `quiz` departs from the format in quizzes/README.md (empty when it is valid)."""
    p = []
    if not isinstance(quiz, dict) or list(quiz) != list(_QUIZ_KEYS):
        return [f"a quiz is an object with exactly the keys {', '.join(_QUIZ_KEYS)}, in that order"]
    n = quiz["study_question"]
    if quiz["format"] != FORMAT:
        p.append(f"format must be {FORMAT!r}")
    if not isinstance(n, int) or not 1 <= n <= 17:
        return p + ["study_question must be an int from 1 to 17"]
    q = quiz["question"]
    if not isinstance(q, dict) or set(q) != {"zh", "en"} or not all(isinstance(v, str) and v for v in q.values()):
        p.append("question must hold the study question in Chinese ('zh') and English ('en')")
    elif not re.search(r"[\u4e00-\u9fff]", q["zh"]):
        p.append("question.zh must be the seed's Chinese")
    if not isinstance(quiz["title"], str) or not quiz["title"]:
        p.append("title must be a non-empty string")
    if quiz["sealed"] is not sealed:
        p.append(f"sealed must be {sealed}")
    items = quiz["items"]
    if not isinstance(items, list) or len(items) < 4:
        return p + ["a quiz has at least 4 items"]
    if {i.get("kind") for i in items if isinstance(i, dict)} != set(KINDS):
        p.append("a quiz mixes single choice, multiple choice and number items (all three kinds)")
    for m, item in enumerate(items, 1):
        p += [f"item {m}: {x}" for x in _validate_item(item, f"q{n:02d}.{m}", sealed)]
    return p


def _text(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _validate_item(item, item_id: str, sealed: bool) -> list[str]:
    if not isinstance(item, dict):
        return ["an item is an object"]
    p = [f"unknown key {k!r}" for k in item if k not in _ITEM_KEYS]
    if item.get("id") != item_id:
        p.append(f"id must be {item_id!r} (items are numbered from 1 in order)")
    kind = item.get("kind")
    if kind not in KINDS:
        return p + [f"kind must be one of {', '.join(KINDS)}"]
    need = {"id", "kind", "prompt", "explanation", "evidence", "revisit"}
    need |= {"options"} if kind != "number" else {"misconceptions", "hint"}
    need |= {"answer"} if not sealed else set()
    need |= {"precision"} if kind == "number" and not sealed else set()
    p += [f"missing {k!r}" for k in sorted(need - set(item))]
    if sealed and "answer" in item:
        p.append("a sealed quiz must not hold the answer")
    if kind != "number" and ({"misconceptions", "hint", "unit", "precision"} & set(item)):
        p.append("misconceptions, hint, unit and precision belong to number items")
    if kind == "number" and "options" in item:
        p.append("a number item has no options")
    if p:
        return p
    is_text = (lambda v: _text(v) and v.startswith("sealed:")) if sealed else _text
    if not _text(item["prompt"]):
        p.append("prompt must be a non-empty string")
    if not is_text(item["explanation"]):
        p.append("explanation must be a " + ("sealed " if sealed else "") + "non-empty string")
    if not isinstance(item["evidence"], list) or not item["evidence"] or not all(map(_text, item["evidence"])):
        p.append("evidence must be a non-empty list of citations")
    r = item["revisit"]
    if not isinstance(r, dict) or set(r) != {"path", "section"} or not all(map(_text, r.values())):
        p.append("revisit must be {'path', 'section'}")
    if "planned" in item:
        pl = item["planned"]
        if not isinstance(pl, dict) or set(pl) != {"notebook", "topic"} or PLANNED.get(pl["notebook"]) != pl["topic"]:
            p.append(f"planned must be {{'notebook', 'topic'}} with one of {PLANNED}")
    if kind == "number":
        ms = item["misconceptions"]
        field = "digest" if sealed else "value"
        if not isinstance(ms, list) or not ms or not all(isinstance(x, dict) and set(x) == {field, "feedback"}
                                                         and is_text(x["feedback"]) for x in ms):
            p.append(f"misconceptions must be a non-empty list of {{{field!r}, 'feedback'}}")
        if not is_text(item["hint"]):
            p.append("hint must be a " + ("sealed " if sealed else "") + "non-empty string")
        if not sealed and not isinstance(item["precision"], int):
            p.append("precision must be an int (decimal places, as in keys.py)")
        return p
    opts = item["options"]
    if not isinstance(opts, list) or not 3 <= len(opts) <= 8:
        return p + ["options must be a list of 3 to 8 options"]
    for letter, o in zip("abcdefgh", opts):
        if not isinstance(o, dict) or set(o) != {"letter", "text", "feedback"} or o["letter"] != letter:
            p.append(f"option {letter} must be {{'letter': {letter!r}, 'text', 'feedback'}}, lettered in order")
        elif not _text(o["text"]) or not is_text(o["feedback"]):
            p.append(f"option {letter} needs a text and its own feedback")
    if len({o.get("feedback") for o in opts if isinstance(o, dict)}) != len(opts):
        p.append("every option needs its own feedback")
    if not sealed:
        letters = "".join(o["letter"] for o in opts if isinstance(o, dict) and "letter" in o)
        a = item["answer"]
        if not isinstance(a, str) or not a or set(a) - set(letters) or len(set(a)) != len(a) or sorted(a) != list(a):
            p.append(f"answer must be the sorted letters of the right options among {letters}")
        elif kind == "single" and len(a) != 1:
            p.append("a single-choice item has one right option")
        elif kind == "multiple" and not 2 <= len(a) < len(opts):
            p.append("a multiple-choice item has at least two right options and at least one wrong one")
    return p


def letters(item: dict) -> str:
    """The letters of a choice item's options, in order ("abcd")."""
    return "".join(o["letter"] for o in item["options"])
