"""The zoo's numbers cited in the quiz sources and the written answers, checked against the zoo's manifest.

The texts keep their numbers in plain sight; the table `solutions/zoo_numbers.json` says where each comes from, one
entry per quoted phrase (format: quizzes/README.md, "Numbers from the zoo"):

    {"in": "solutions/study_answers.md", "quote": "<a phrase of that text holding the numbers>",
     "zoo": {"<number as written>": "<checkpoint>.<key>.<key>..."}, "not_zoo": {"<number>": "<its other source>"}}

A cited number must be the manifest's value written to the number's own decimals ("0.60" stands for 0.595 up to
0.605; "179,840" must be exact). `problems` fails on a quote that is no longer in its text, on a number the manifest
no longer says, and on any decimal or thousands-grouped number in a sentence that names the zoo or one of its
checkpoints which no entry accounts for. Other numbers (a count such as "48 of 56") are checked only when the table
lists them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from llava_mini.quiz.fileformat import ROOT

TABLE = "solutions/zoo_numbers.json"
ANSWERS = "solutions/study_answers.md"
MANIFEST = "llava_mini/zoo/manifest.json"
_NUMBER = re.compile(r"(?<![\w.,§-])(\d{1,3}(?:,\d{3})+|\d*\.\d+|\d+)(?!\w|[.,]\d)")  # not LLaVA-1.5, §5.1
_SCANNED = re.compile(r"\d{1,3}(?:,\d{3})+|\d*\.\d+")  # decimals and thousands-grouped: what the scan asks about
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\"“(*])")


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def texts(root: Path = ROOT) -> dict[str, list[str]]:
    """Every text that may cite the zoo, by file: the written answers' paragraphs, every string of each quiz source;
    whitespace runs folded to one space (a quote may cross a line break)."""
    out = {ANSWERS: (root / ANSWERS).read_text(encoding="utf-8").split("\n\n")}
    for path in sorted((root / "solutions" / "quizzes").glob("q[0-9][0-9].json")):
        out[path.relative_to(root).as_posix()] = _strings(json.loads(path.read_text(encoding="utf-8")))
    return {name: [" ".join(t.split()) for t in found] for name, found in out.items()}


def _manifest_value(manifest: dict, path: str):
    name, *keys = path.split(".")
    value = manifest.get(name)
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _written(value, number: str) -> str | None:
    """`value` written the way `number` is (its decimals, or grouped thousands); None when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if "." in number:
        return f"{value:.{len(number.split('.')[1])}f}"
    return f"{round(value):,}" if "," in number else str(round(value))


def _names(manifest: dict) -> re.Pattern:
    words = sorted({*manifest, "conv-only", "zoo", "manifest"}, key=len, reverse=True)
    return re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, words)) + r")(?![\w-])")


def _entry_problems(entry: dict, found: dict[str, list[str]], manifest: dict) -> list[str]:
    where, quote = entry.get("in"), " ".join(str(entry.get("quote", "")).split())
    if (where not in found or not quote or not set(entry) <= {"in", "quote", "zoo", "not_zoo"}
            or not ({"zoo", "not_zoo"} & set(entry))):
        return [f"{TABLE}: {entry} must be {{'in': one of {sorted(found)}, 'quote', 'zoo' and/or 'not_zoo'}}"]
    if not any(quote in text for text in found[where]):
        return [f"{where}: the quote “{quote}” is not there any more ({TABLE})"]
    problems, in_quote = [], [m.group(1) for m in _NUMBER.finditer(quote)]
    for number, path in entry.get("zoo", {}).items():
        now = _manifest_value(manifest, path)
        if number not in in_quote:
            problems.append(f"{TABLE}: {number} is not a number of the quote “{quote}”")
        elif _written(now, number) is None:
            problems.append(f"{TABLE}: {path} (for {number} in “{quote}”) is not a number in {MANIFEST}")
        elif _written(now, number) != number:
            problems.append(f"{where}: “{quote}” cites {number} for {path}, which {MANIFEST} now says is {now} "
                            f"({_written(now, number)}): bring the sentence up to date, and what it claims")
    problems += [f"{TABLE}: {n} is not a number of the quote “{quote}”" for n in entry.get("not_zoo", {})
                 if n not in in_quote]
    return problems


def _uncited(where: str, text: str, entries: list[dict], names: re.Pattern) -> list[str]:
    """Numbers in `text`'s sentences that name the zoo and that no entry for `where` accounts for."""
    covered = set()  # character offsets of the numbers the table accounts for
    for entry in entries:
        quote = " ".join(str(entry.get("quote", "")).split())
        numbers = {*entry.get("zoo", {}), *entry.get("not_zoo", {})}
        for at in (m.start() for m in re.finditer(re.escape(quote), text)) if quote else ():
            covered |= {at + m.start(1) for m in _NUMBER.finditer(quote) if m.group(1) in numbers}
    problems, start = [], 0
    for sentence in _SENTENCE_END.split(text):
        start = text.index(sentence, start)
        if names.search(sentence):
            problems += [f"{where}: {m.group(1)} in “…{sentence[max(0, m.start(1) - 60):m.end(1) + 40]}…”, a sentence "
                         f"that names the zoo: {TABLE} does not say where it comes from"
                         for m in _NUMBER.finditer(sentence)
                         if _SCANNED.fullmatch(m.group(1)) and start + m.start(1) not in covered]
        start += len(sentence)
    return problems


def problems(root: Path = ROOT, manifest: Path | None = None) -> list[str]:
    """Every zoo number in the quiz sources and the written answers that the manifest does not say, or that the table
    does not account for (empty when all agree)."""
    manifest = json.loads(Path(manifest or root / MANIFEST).read_text(encoding="utf-8"))
    table = json.loads((root / TABLE).read_text(encoding="utf-8"))
    found = texts(root)
    out = [p for entry in table for p in _entry_problems(entry, found, manifest)]
    names = _names(manifest)
    for where, pieces in found.items():
        entries = [e for e in table if e.get("in") == where]
        out += [p for text in pieces for p in _uncited(where, text, entries, names)]
    return out
