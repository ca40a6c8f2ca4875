"""Self-assessment quizzes: one per study question, as ipywidgets in JupyterLab or in a terminal.

`quizzes/qNN.json` holds the quiz on study question NN (format: quizzes/README.md). Its answers are not in it:
whether an answer is right is decided by the hashed keys `qNN.M` in `llava_mini/keys/quizzes.json`
(`keys.check_answer`, shared with the notebook graders), and the texts that would give the answer away at a
glance are sealed. The instructor's plain source, answers included, is `solutions/quizzes/qNN.json`;
`python -m llava_mini.quiz build` writes the sealed quizzes and the keys from it, `python -m llava_mini.quiz check`
fails on drift, and on a zoo number in the sources or the written answers that the manifest no longer says.

    from llava_mini.quiz import show
    show(2)                      # in JupyterLab: choose, submit, feedback, score, retry
    llava-mini quiz 2            # in a terminal
    llava-mini quiz 2 --answers 4198400 576 c abd a    # scored at once; exit 0 only when all are right

One idea per module: `fileformat` (the format, `load`, `validate`), `sealing` (sealing, `build`, `check`),
`answering` (reading and grading an answer), `terminal` and `widgets` (the two front ends), `zoo_numbers` (the
zoo's numbers cited in the sources and the written answers, checked against the manifest).
"""

from llava_mini.quiz.answering import explanation, grade
from llava_mini.quiz.fileformat import KINDS, PLANNED, load, validate
from llava_mini.quiz.sealing import check, unseal
from llava_mini.quiz.terminal import run_terminal, score_answers
from llava_mini.quiz.widgets import show

__all__ = ["KINDS", "PLANNED", "check", "explanation", "grade", "load", "run_terminal", "score_answers", "show",
           "unseal", "validate"]
