"""Sealed quizzes and their keys, made from the plain sources: sealing, `build` and `check`.

Sealing XORs a text with a SHA-256 key stream drawn from (item id, tag) and base64-encodes it ("sealed:..."): it
hides per-option feedback, hints, explanations and the feedback on a numeric misconception from a glance, not from a
determined learner (`unseal` reads it; quizzes/README.md says how far this goes). A misconception's feedback is
sealed with the wrong value itself and found by `value_digest`, so it can be read only by entering that value.

`build` writes `quizzes/qNN.json` from `solutions/quizzes/qNN.json` and makes a new key (`keys.make_entry`) for every
item whose key no longer fits its source; `check` lists every drift.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
from pathlib import Path

from llava_mini import keys
from llava_mini.quiz.fileformat import KINDS, QUIZ_DIR, SOURCE_DIR, letters, validate

KEY_FILE = Path(__file__).resolve().parents[1] / "keys" / "quizzes.json"


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


def value_digest(item_id: str, normalised: str) -> str:
    """How a sealed number item finds the feedback on a wrong value (normalised as `keys.normalise` does)."""
    return hashlib.sha256(f"{item_id}\nvalue\n{normalised}".encode()).hexdigest()


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
                {"digest": value_digest(iid, v), "feedback": seal(m["feedback"], iid, "value=" + v)}
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
