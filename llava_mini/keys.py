"""Answer keys for study-question cells and quizzes, kept out of plain sight.

A key is stored in `llava_mini/keys/*.json` (package data, one file per notebook or quiz) as
`{question_id: {"kind", "salt", "digests", ["precision"]}}`: the SHA-256 of salt, kind and the *normalised*
answer, never the answer itself. Question ids are unique across all files (suggested: `nbNN.name` for a
notebook's check, `qNN.M` for item M of the quiz on study question NN).

Normalisation, per kind:
- `text`: lower case, stripped, runs of whitespace collapsed to one space.
- `choice`: the chosen letters, lower case, sorted, without duplicates or separators ("B, d" -> "bd").
- `number`: rounded half-up at the key's `precision` (decimal places; negative rounds to tens, hundreds...)
  and written canonically. So an answer is accepted when it rounds to the key's value at that precision,
  e.g. precision 1 and key 85.1 accept 85.05 <= x < 85.15. Give the key at the precision you declare.

This hides answers from a glance, not from a determined learner: a choice among a few letters can be
found by trying them all. Graders call `require_answer`, quizzes `check_answer`; `add_key` (or
`llava-mini course add-key`) writes a new key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import secrets
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from importlib import resources
from pathlib import Path

KINDS = ("text", "choice", "number")


def _text(answer) -> str:
    if not isinstance(answer, str):
        raise ValueError(f"expected a text answer (a str), got {type(answer).__name__}")
    return " ".join(answer.lower().split())


_JOINERS = {"and", "&"}  # "b, d and h" names three letters; "and" is not a, n and d


def _choice(answer) -> str:
    """The chosen letters, sorted, from "b, d and h", "(b) (d)", "bdh", ["b", "d"] or {"b", "d"}."""
    if isinstance(answer, (list, tuple, set, frozenset)) and all(isinstance(a, str) for a in answer):
        answer = " ".join(answer)
    words = re.split(r"[\s,;/()]+", answer.lower()) if isinstance(answer, str) else None
    words = [w for w in words or () if w and w not in _JOINERS]
    if not words or not all(w.isascii() and w.isalpha() for w in words):
        raise ValueError(f"expected the letters of your choices, such as 'a, c' or ['a', 'c'], got {answer!r}")
    if any(w in ("or", "not", "none", "all") for w in words):
        raise ValueError(f"name every true statement by its letter, such as 'a, c', got {answer!r}")
    return "".join(sorted(set("".join(words))))


def _number(answer, precision: int) -> str:
    try:
        if isinstance(answer, bool):
            raise TypeError
        if isinstance(answer, str):
            value = Decimal(answer.strip().replace("_", ""))
        else:  # int exactly; float, NumPy and 0-d torch scalars through their shortest float repr
            value = Decimal(answer if isinstance(answer, int) else repr(float(answer)))
    except (TypeError, ValueError, InvalidOperation):
        raise ValueError(f"expected a number, got {answer!r}") from None
    if not value.is_finite():
        raise ValueError(f"expected a finite number, got {answer!r}")
    value = value.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_HALF_UP)
    return str(abs(value) if value == 0 else value)  # no "-0.0"


def normalise(answer, kind: str, precision: int = 0) -> str:
    """The canonical form of `answer` for `kind`; ValueError saying what was expected when it has none."""
    if kind == "text":
        return _text(answer)
    if kind == "choice":
        return _choice(answer)
    if kind == "number":
        return _number(answer, precision)
    raise ValueError(f"unknown answer kind {kind!r}; expected one of {KINDS}")


def _digest(salt: str, kind: str, normalised: str) -> str:
    return hashlib.sha256(f"{salt}\n{kind}\n{normalised}".encode()).hexdigest()


def make_entry(question_id: str, answer, kind: str, *, precision: int = 0, also=(), salt: str | None = None) -> dict:
    """A key entry for `answer` (and the equally right answers in `also`), with a fresh random salt."""
    if not question_id or any(c.isspace() for c in question_id):
        raise ValueError(f"a question id is a non-empty word such as 'nb04.w_params', got {question_id!r}")
    salt = salt or secrets.token_hex(8)
    digests = sorted({_digest(salt, kind, normalise(a, kind, precision)) for a in (answer, *also)})
    entry = {"kind": kind, "salt": salt, "digests": digests}
    if kind == "number":
        entry["precision"] = precision
    return entry


def add_key(path: Path, question_id: str, answer, kind: str, *, precision: int = 0, also=()) -> None:
    """Add a key to the JSON file `path` (created if missing); an existing id is never overwritten."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {}
    if question_id in data:
        raise ValueError(f"{path} already has a key {question_id!r}; delete it by hand to replace it")
    data[question_id] = make_entry(question_id, answer, kind, precision=precision, also=also)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    load_keys.cache_clear()


@functools.cache
def load_keys() -> dict[str, dict]:
    """All keys of the package's `keys/*.json`, by question id."""
    keys, origin = {}, {}
    folder = resources.files("llava_mini").joinpath("keys")
    for item in sorted((f for f in folder.iterdir() if f.name.endswith(".json")), key=lambda f: f.name):
        for question_id, entry in json.loads(item.read_text()).items():
            if question_id in keys:
                raise ValueError(f"answer key {question_id!r} is in both {origin[question_id]} and {item.name}")
            keys[question_id], origin[question_id] = entry, item.name
    return keys


def _entry(question_id: str) -> dict:
    try:
        return load_keys()[question_id]
    except KeyError:
        raise KeyError(f"no answer key {question_id!r} in llava_mini/keys/*.json") from None


def _is_right(entry: dict, answer) -> bool:
    normalised = normalise(answer, entry["kind"], entry.get("precision", 0))
    return _digest(entry["salt"], entry["kind"], normalised) in entry["digests"]


def check_answer(question_id: str, answer) -> bool:
    """Whether `answer` is right; a malformed answer is simply wrong. KeyError for an unknown id."""
    entry = _entry(question_id)
    try:
        return _is_right(entry, answer)
    except ValueError:
        return False


def require_answer(question_id: str, answer, hint: str = "", options: str = "") -> None:
    """Raise AssertionError unless `answer` is right, saying what format is expected or giving `hint`. For a
    choice key, `options` ("abcdefgh") names the letters on offer: any other letter is named as a mistake."""
    entry = _entry(question_id)
    if answer is None or answer is Ellipsis:
        raise AssertionError("no answer given yet")
    try:
        right = _is_right(entry, answer)
        if options and entry["kind"] == "choice":
            stray = sorted(set(_choice(answer)) - set(options))
            if stray:
                raise ValueError(f"{', '.join(stray)} {'is' if len(stray) == 1 else 'are'} not among the options "
                                 f"{', '.join(options)}")
    except ValueError as err:
        raise AssertionError(str(err)) from None
    if not right:
        raise AssertionError(f"{answer!r} is not the answer" + (f"; {hint}" if hint else ""))
