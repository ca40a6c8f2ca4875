"""Answering a quiz item: reading a learner's answer, right or not (the hashed keys), and the feedback to give.

Shared by the terminal (`llava_mini.quiz.terminal`) and JupyterLab (`llava_mini.quiz.widgets`) front ends; an item
here is a sealed one, as `load` returns it.
"""

from __future__ import annotations

import re

from llava_mini import keys
from llava_mini.quiz.fileformat import letters
from llava_mini.quiz.sealing import unseal, value_digest


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
            if m["digest"] == value_digest(item["id"], given):
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


def how_to_answer(item: dict) -> str:
    return {"single": "one letter", "multiple": "every true statement, e.g. 'ac'",
            "number": "a number" + (f", in {item['unit']}" if item.get("unit") else "")}[item["kind"]]
