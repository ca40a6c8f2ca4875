"""The quizzes in a terminal: `llava-mini quiz N` asks each item, and `llava-mini quiz N --answers ...` scores at once.
"""

from __future__ import annotations

import sys

from llava_mini.quiz.answering import explanation, grade, how_to_answer, revisit
from llava_mini.quiz.fileformat import load


def _header(quiz: dict) -> str:
    n = quiz["study_question"]
    return (f"Quiz {n}: {quiz['title']}\n研究问题 {n}：{quiz['question']['zh']}\n"
            f"Study question {n}: {quiz['question']['en']}")


def _item_text(item: dict, m: int, n: int) -> str:
    lines = [f"Item {m} of {n} ({how_to_answer(item)}): {item['prompt']}"]
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
