"""The quizzes in JupyterLab: `show(n)`, ipywidgets to choose, Submit, read the feedback, the score, and Retry.
"""

from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as widgets

from llava_mini.quiz.answering import explanation, grade, how_to_answer, revisit
from llava_mini.quiz.fileformat import letters, load


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
        prompt = widgets.HTML(f"<b>{m}/{n}.</b> {_html(item['prompt'])} <i>({_html(how_to_answer(item))})</i>{opts}")
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
