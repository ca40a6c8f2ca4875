"""Self-assessment quizzes: one per study question, as ipywidgets in JupyterLab or in a terminal.

`quizzes/qNN.json` holds the quiz on study question NN (format: quizzes/README.md). Its answers are not in it:
whether an answer is right is decided by the hashed keys `qNN.M` in `llava_mini/keys/quizzes.json`
(`keys.check_answer`, shared with the notebook graders), and the texts that would give the answer away at a
glance -- per-option feedback, the feedback on a numeric misconception, the hint, the explanation -- are
*sealed*: XOR-ed with a SHA-256 key stream and base64-encoded. Sealing hides them from a glance, not from a
determined learner (this module unseals them); the feedback on a numeric misconception is sealed with the
wrong value itself, so it can be read only by entering that value.

The instructor's plain source, answers included, is `solutions/quizzes/qNN.json`; `python -m llava_mini.quiz
build` writes the sealed quizzes and the keys from it, `python -m llava_mini.quiz check` fails on drift.

    from llava_mini.quiz import show
    show(2)                      # in JupyterLab: choose, submit, feedback, score, retry
    llava-mini quiz 2            # in a terminal
    llava-mini quiz 2 --answers 4198400 576 c abd a    # scored at once; exit 0 only when all are right
"""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import itertools
import json
import re
import sys
from pathlib import Path

import ipywidgets as widgets

from llava_mini import keys

FORMAT = "llava-mini-quiz/1"
ROOT = Path(__file__).resolve().parents[1]
QUIZ_DIR, SOURCE_DIR = ROOT / "quizzes", ROOT / "solutions" / "quizzes"
KEY_FILE = Path(__file__).resolve().parent / "keys" / "quizzes.json"
KINDS = {"single": "choice", "multiple": "choice", "number": "number"}  # item kind -> key kind
# Notebooks 04-10 are planned (COURSE.md section 4); an item whose notebook is not written yet points to the written
# answer in solutions/study_answers.md and names its notebook here, so the pointer can be switched when it lands.
PLANNED = {"04": "the projector", "05": "the answer-token loss", "06": "stage 1: feature alignment",
           "07": "stage 2: instruction tuning, on a GPU", "08": "evaluation", "09": "ablations",
           "10": "failure modes and beyond"}
_QUIZ_KEYS = ("format", "study_question", "title", "question", "sealed", "items")
_ITEM_KEYS = {"id", "kind", "prompt", "options", "answer", "precision", "unit", "misconceptions", "hint",
              "explanation", "evidence", "revisit", "planned"}


# -- sealing ----------------------------------------------------------------------------------------------------

def _stream(item_id: str, tag: str, n: int) -> bytes:
    blocks = (hashlib.sha256(f"llava-mini quiz\n{item_id}\n{tag}\n{i}".encode()).digest() for i in itertools.count())
    return b"".join(itertools.islice(blocks, n // 32 + 1))[:n]


def seal(text: str, item_id: str, tag: str) -> str:
    """`text` unreadable at a glance: XOR with a key stream from (item id, tag), base64. Not encryption."""
    data = text.encode()
    return "sealed:" + base64.b64encode(bytes(a ^ b for a, b in zip(data, _stream(item_id, tag, len(data))))).decode()


def unseal(sealed: str, item_id: str, tag: str) -> str:
    if not sealed.startswith("sealed:"):
        raise ValueError(f"{item_id}: expected a sealed text ('sealed:...'), got {sealed[:20]!r}")
    data = base64.b64decode(sealed[len("sealed:"):])
    return bytes(a ^ b for a, b in zip(data, _stream(item_id, tag, len(data)))).decode()


def _value_digest(item_id: str, normalised: str) -> str:
    return hashlib.sha256(f"{item_id}\nvalue\n{normalised}".encode()).hexdigest()


# -- loading and checking the format ------------------------------------------------------------------------------

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


# -- answering ------------------------------------------------------------------------------------------------

def letters(item: dict) -> str:
    return "".join(o["letter"] for o in item["options"])


def _precision(item: dict) -> int:
    return keys.load_keys()[item["id"]].get("precision", 0)


def parse_answer(item: dict, answer) -> str:
    """A learner's answer in canonical form ("b", "ad", "4198400"); ValueError saying what is expected."""
    if item["kind"] == "number":
        text = str(answer).strip().replace("_", "").replace(" ", "").rstrip("%")
        if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?", text):
            text = text.replace(",", "")  # 4,198,400 (a comma that separates thousands)
        if "," in text:
            raise ValueError(f"expected a number with a point for decimals, such as 85.1, got {answer!r}")
        return keys.normalise(text, "number", _precision(item))
    offered = letters(item)
    try:
        chosen = keys.normalise(answer, "choice")
    except ValueError:
        raise ValueError(f"expected {'one letter' if item['kind'] == 'single' else 'letters'} among "
                         f"{', '.join(offered)}, got {answer!r}") from None
    stray = sorted(set(chosen) - set(offered))
    if stray:
        raise ValueError(f"{', '.join(stray)} {'is' if len(stray) == 1 else 'are'} not among the options "
                         f"{', '.join(offered)}")
    if item["kind"] == "single" and len(chosen) != 1:
        raise ValueError(f"choose one letter among {', '.join(offered)}, got {answer!r}")
    return chosen


def grade(item: dict, answer) -> tuple[bool, list[str]]:
    """(right, feedback lines) for a learner's answer; ValueError when the answer is malformed."""
    given = parse_answer(item, answer)
    right = keys.check_answer(item["id"], given)
    if item["kind"] == "number":
        if right:
            return True, []
        for m in item["misconceptions"]:
            if m["digest"] == _value_digest(item["id"], given):
                return False, [unseal(m["feedback"], item["id"], "value=" + given)]
        return False, [unseal(item["hint"], item["id"], "hint")]
    notes = [f"({o['letter']}) " + unseal(o["feedback"], item["id"], o["letter"])
             for o in item["options"] if o["letter"] in given]
    if not right and item["kind"] == "multiple":
        notes.append("Select every true statement and none of the others: one of your choices is wrong, "
                     "or a true one is missing.")
    return right, notes


def explanation(item: dict) -> str:
    return unseal(item["explanation"], item["id"], "explanation")


def revisit(item: dict) -> str:
    r = item["revisit"]
    text = f"{r['path']}, section “{r['section']}”"
    if "planned" in item:
        text += f" (notebook {item['planned']['notebook']}, {item['planned']['topic']}, is planned)"
    return text


def _how(item: dict) -> str:
    return {"single": "one letter", "multiple": "every true statement, e.g. 'ac'",
            "number": "a number" + (f", in {item['unit']}" if item.get("unit") else "")}[item["kind"]]


# -- the terminal -----------------------------------------------------------------------------------------------

def _header(quiz: dict) -> str:
    n = quiz["study_question"]
    return (f"Quiz {n}: {quiz['title']}\n研究问题 {n}：{quiz['question']['zh']}\n"
            f"Study question {n}: {quiz['question']['en']}")


def _item_text(item: dict, m: int, n: int) -> str:
    lines = [f"Item {m} of {n} ({_how(item)}): {item['prompt']}"]
    lines += [f"  ({o['letter']}) {o['text']}" for o in item.get("options", ())]
    return "\n".join(lines)


def _verdict(item: dict, right: bool, notes: list[str]) -> str:
    lines = ["Right." if right else "Not right."] + [f"  {x}" for x in notes]
    if right:
        lines += [f"  Why: {explanation(item)}", f"  Evidence: {'; '.join(item['evidence'])}"]
    lines.append(f"  Revisit: {revisit(item)}")
    return "\n".join(lines)


def score_answers(n, answers: list[str], out=None) -> int:
    """`llava-mini quiz N --answers ...`: score one answer per item; 0 when all are right, else 1."""
    out = out or sys.stdout
    quiz = load(n)
    items = quiz["items"]
    if len(answers) != len(items):
        raise ValueError(f"quiz {quiz['study_question']} has {len(items)} items; give one answer per item, in "
                         f"order, got {len(answers)}")
    graded = []
    for item, answer in zip(items, answers):
        try:
            graded.append(grade(item, answer))
        except ValueError as err:
            raise ValueError(f"{item['id']}: {err}") from None
    for item, (right, notes) in zip(items, graded):
        print(f"{item['id']} {'right' if right else 'wrong'}" + ("" if right else ": " + " ".join(notes)), file=out)
    total = sum(right for right, _ in graded)
    print(f"score: {total}/{len(items)}", file=out)
    return 0 if total == len(items) else 1


def run_terminal(n, stdin=None, out=None) -> int:
    """`llava-mini quiz N`: ask every item on `stdin`, give feedback, the score, and a retry of what was missed."""
    stdin, out = stdin or sys.stdin, out or sys.stdout
    quiz = load(n)
    items = quiz["items"]
    print(_header(quiz), file=out)
    right = [False] * len(items)
    todo = list(range(len(items)))
    while todo:
        for i in todo:
            item = items[i]
            print("\n" + _item_text(item, i + 1, len(items)), file=out)
            while True:
                print("answer> ", end="", file=out, flush=True)
                line = stdin.readline()
                if not line:
                    print(f"\n(no more input) score: {sum(right)}/{len(items)}", file=out)
                    return 0 if all(right) else 1
                try:
                    right[i], notes = grade(item, line.strip())
                    break
                except ValueError as err:
                    print(f"  {err}", file=out)
            print(_verdict(item, right[i], notes), file=out)
        print(f"\nScore: {sum(right)}/{len(items)}", file=out)
        todo = [i for i in range(len(items)) if not right[i]]
        if todo:
            print(f"Retry the {len(todo)} item(s) you missed? [y/N] ", end="", file=out, flush=True)
            if stdin.readline().strip().lower() not in ("y", "yes"):
                break
    return 0 if all(right) else 1


# -- JupyterLab ---------------------------------------------------------------------------------------------------

def show(n, folder: Path | None = None):
    """The quiz on study question `n` as ipywidgets: choose, Submit, feedback, score, Retry."""
    return QuizView(load(n, folder))


def _html(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


class ItemView(widgets.VBox):
    """One item: its prompt and options, a choice control, Submit, the feedback and, once right (or asked for), the
    explanation."""

    def __init__(self, item: dict, m: int, n: int, on_submit):
        self.item, self.on_submit, self.right, self.attempts = item, on_submit, False, 0
        opts = "".join(f"<div><b>({o['letter']})</b> {_html(o['text'])}</div>" for o in item.get("options", ()))
        prompt = widgets.HTML(f"<b>{m}/{n}.</b> {_html(item['prompt'])} <i>({_html(_how(item))})</i>{opts}")
        if item["kind"] == "single":
            self.choice = widgets.ToggleButtons(options=list(letters(item)), value=None)
            self.choice.style.button_width = "3em"
        elif item["kind"] == "multiple":
            self.boxes = [widgets.Checkbox(description=x, value=False, indent=False, layout={"width": "4em"})
                          for x in letters(item)]
            self.choice = widgets.HBox(self.boxes)
        else:
            self.choice = widgets.Text(placeholder="a number", layout={"width": "16em"})
        self.choice.add_class("llava-quiz-choice")
        self.submit_button = widgets.Button(description="Submit", button_style="primary")
        self.submit_button.add_class("llava-quiz-submit")
        self.submit_button.on_click(lambda _: self.submit())
        self.explain_button = widgets.Button(description="Show explanation", layout={"display": "none"})
        self.explain_button.on_click(lambda _: self.explain())
        self.feedback, self.explanation = widgets.HTML(), widgets.HTML()
        self.feedback.add_class("llava-quiz-feedback")
        super().__init__([prompt, widgets.HBox([self.choice, self.submit_button, self.explain_button]),
                          self.feedback, self.explanation],
                         layout={"border": "1px solid #ddd", "padding": "6px", "margin": "4px 0"})
        self.add_class("llava-quiz-item")

    def answer(self):
        """What is chosen now: letters, or the number's text (None or "" when nothing is)."""
        if self.item["kind"] == "multiple":
            return "".join(b.description for b in self.boxes if b.value)
        return self.choice.value

    def select(self, answer) -> None:
        """Set the control as a learner would (letters, or a number), without submitting."""
        if self.item["kind"] == "multiple":
            for b in self.boxes:
                b.value = b.description in str(answer)
        else:
            self.choice.value = str(answer)

    def submit(self) -> None:
        given = self.answer()
        if not given:
            self.feedback.value = "<i>Choose an answer first.</i>"
            return
        try:
            self.right, notes = grade(self.item, given)
        except ValueError as err:
            self.feedback.value = f"<i>{_html(str(err))}</i>"
            return
        self.attempts += 1
        verdict = ("<b style='color:#1a7f37'>✔ Right.</b>" if self.right
                   else "<b style='color:#b42318'>✘ Not right yet.</b>")
        self.feedback.value = verdict + "".join(f"<div>{_html(x)}</div>" for x in notes)
        self.explain_button.layout.display = "none" if self.right else ""
        if self.right:
            self.explain()
        else:
            self.explanation.value = f"<div><i>Revisit:</i> {_html(revisit(self.item))}</div>"
        self.on_submit()

    def explain(self) -> None:
        self.explanation.value = (f"<div><b>Why:</b> {_html(explanation(self.item))}</div>"
                                  f"<div><i>Evidence:</i> {_html('; '.join(self.item['evidence']))}</div>"
                                  f"<div><i>Revisit:</i> {_html(revisit(self.item))}</div>")

    def reset(self) -> None:
        self.right, self.attempts = False, 0
        if self.item["kind"] == "multiple":
            for b in self.boxes:
                b.value = False
        else:
            self.choice.value = None if self.item["kind"] == "single" else ""
        self.feedback.value = self.explanation.value = ""
        self.explain_button.layout.display = "none"


class QuizView(widgets.VBox):
    """A whole quiz: the study question in Chinese and English, its items, the score and Retry."""

    def __init__(self, quiz: dict):
        self.quiz = quiz
        n, q = len(quiz["items"]), quiz["study_question"]
        head = widgets.HTML(f"<h3>Quiz {q}: {_html(quiz['title'])}</h3>"
                            f"<div>研究问题 {q}：{_html(quiz['question']['zh'])}</div>"
                            f"<div><i>Study question {q}: {_html(quiz['question']['en'])}</i></div>")
        self.items = [ItemView(item, m, n, self.update_score) for m, item in enumerate(quiz["items"], 1)]
        self.score = widgets.HTML()
        self.score.add_class("llava-quiz-score")
        self.retry_button = widgets.Button(description="Retry", icon="refresh")
        self.retry_button.on_click(lambda _: self.retry())
        super().__init__([head, *self.items, widgets.HBox([self.score, self.retry_button])])
        self.add_class("llava-quiz")
        self.update_score()

    def update_score(self) -> None:
        right = sum(v.right for v in self.items)
        self.score.value = f"<b>Score: {right} of {len(self.items)} right</b>&nbsp;"

    def retry(self) -> None:
        """Clear every answer and feedback, to take the quiz again."""
        for v in self.items:
            v.reset()
        self.update_score()


# -- building the sealed quizzes and their keys from the plain sources ----------------------------------------------

def seal_quiz(source: dict) -> dict:
    """The sealed quiz for a plain source: no answers; feedback, hint and explanation sealed."""
    quiz = copy.deepcopy(source)
    quiz["sealed"] = True
    for item in quiz["items"]:
        iid = item["id"]
        item.pop("answer")
        item["explanation"] = seal(item["explanation"], iid, "explanation")
        for o in item.get("options", ()):
            o["feedback"] = seal(o["feedback"], iid, o["letter"])
        if item["kind"] == "number":
            precision = item.pop("precision")
            item["hint"] = seal(item["hint"], iid, "hint")
            item["misconceptions"] = [
                {"digest": _value_digest(iid, v), "feedback": seal(m["feedback"], iid, "value=" + v)}
                for m in item["misconceptions"] for v in [keys.normalise(m["value"], "number", precision)]]
    return quiz


def dumps(quiz: dict) -> str:
    return json.dumps(quiz, indent=1, ensure_ascii=False) + "\n"


def _wrong_answers(item: dict) -> list:
    """Every answer the key must reject: the other letters (sets of letters), or the misconception values."""
    if item["kind"] == "number":
        return [m["value"] for m in item["misconceptions"]]
    offered = letters(item)
    if item["kind"] == "single":
        return [x for x in offered if x != item["answer"]]
    subsets = ("".join(c) for r in range(1, len(offered) + 1) for c in itertools.combinations(offered, r))
    return [s for s in subsets if s != item["answer"]]


def key_problems(item: dict, entry: dict | None) -> list[str]:
    """Why `entry` is not the right key for a plain `item` (empty when it accepts the answer, rejects the rest)."""
    kind = KINDS[item["kind"]]
    if entry is None:
        return [f"{item['id']}: no key"]
    if entry["kind"] != kind or entry.get("precision", 0) != item.get("precision", 0):
        return [f"{item['id']}: the key is of another kind or precision"]
    right = keys._is_right  # noqa: SLF001 - the shared check, on an entry not yet in the package's files
    problems = [] if right(entry, item["answer"]) else [f"{item['id']}: the key rejects the answer"]
    if item["kind"] == "number":
        given = keys.normalise(item["answer"], "number", item["precision"])
        if any(keys.normalise(v, "number", item["precision"]) == given for v in _wrong_answers(item)):
            problems.append(f"{item['id']}: a misconception value equals the answer at the key's precision")
    return problems + [f"{item['id']}: the key accepts the wrong answer {w!r}" for w in _wrong_answers(item)
                       if right(entry, w)]


def _sources(sources: Path) -> list[Path]:
    return sorted(Path(sources).glob("q[0-9][0-9].json"))


def check(sources: Path = SOURCE_DIR, quizzes: Path = QUIZ_DIR, key_file: Path = KEY_FILE) -> list[str]:
    """Every problem: a source that breaks the format, a sealed quiz missing or drifted, a key wrong or stale."""
    problems, found = [], json.loads(Path(key_file).read_text()) if Path(key_file).exists() else {}
    paths = _sources(sources)
    if [p.name for p in paths] != [f"q{n:02d}.json" for n in range(1, 18)]:
        problems.append(f"{sources} must hold q01.json ... q17.json, one quiz per study question")
    ids = set()
    for path in paths:
        source = json.loads(path.read_text(encoding="utf-8"))
        bad = validate(source, sealed=False)
        if bad:
            problems += [f"{path}: {x}" for x in bad]
            continue
        for item in source["items"]:
            ids.add(item["id"])
            problems += key_problems(item, found.get(item["id"]))
        target = Path(quizzes) / path.name
        if not target.exists() or target.read_text(encoding="utf-8") != dumps(seal_quiz(source)):
            problems.append(f"drifted: {target} differs from what `python -m llava_mini.quiz build` writes")
    problems += [f"{key_file}: stale key {k!r} (no such quiz item)" for k in sorted(set(found) - ids)]
    return problems


def build(sources: Path = SOURCE_DIR, quizzes: Path = QUIZ_DIR, key_file: Path = KEY_FILE) -> list[str]:
    """Write the sealed quizzes and (re)make every key that does not fit its source; returns what it did."""
    key_file = Path(key_file)
    found = json.loads(key_file.read_text()) if key_file.exists() else {}
    fresh, done = {}, []
    for path in _sources(sources):
        source = json.loads(path.read_text(encoding="utf-8"))
        bad = validate(source, sealed=False)
        if bad:
            raise ValueError(f"{path}: " + "; ".join(bad))
        for item in source["items"]:
            entry = found.get(item["id"])
            if key_problems(item, entry):
                entry = keys.make_entry(item["id"], item["answer"], KINDS[item["kind"]],
                                        precision=item.get("precision", 0))
                done.append(f"new key {item['id']}")
            fresh[item["id"]] = entry
        (Path(quizzes) / path.name).write_text(dumps(seal_quiz(source)), encoding="utf-8", newline="\n")
        done.append(f"wrote {Path(quizzes) / path.name}")
    key_file.write_text(json.dumps(fresh, indent=1, sort_keys=True) + "\n")
    keys.load_keys.cache_clear()
    return done


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["build"]:
        print("\n".join(build()))
        return 0
    if args == ["check"]:
        problems = check()
        print("\n".join(problems) or "quizzes/ and the quiz keys match solutions/quizzes/")
        return 1 if problems else 0
    print("usage: python -m llava_mini.quiz build|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
