"""Graders of the machinery's demo course (`tests/fixtures/course/solutions/00_demo.ipynb`).

Also the template for a notebook's grader module `nbNN.py`: one `@grader` check per exercise, inputs from
`rng`, the learner's code run through `call`, the reference answer computed after it (here or by the package's
reference code), hints that say what to fix without giving the code away.
"""

from __future__ import annotations

import torch

from llava_mini.grading import call, expect, expect_equal, expect_type, grader, rng
from llava_mini.keys import require_answer


@grader("exercise 0.1", "count_image_tokens")
def check_image_tokens(count_image_tokens) -> None:
    """`count_image_tokens(image_size, patch_size)`: patches of a square image (CLS not counted)."""
    for image_size, patch_size in [(32, 8), (224, 14), (336, 14), (64, 16), (48, 8)]:
        call = f"count_image_tokens({image_size}, {patch_size})"
        got = count_image_tokens(image_size, patch_size)
        expect_type(got, int, call)
        expect_equal(got, (image_size // patch_size) ** 2, call,
                     hint="count the patches along one side first; the CLS token is not an image token")
    try:
        count_image_tokens(30, 8)
    except ValueError:
        return
    expect(False, "count_image_tokens(30, 8) should raise ValueError: 30 is not a multiple of 8")


@grader("exercise 0.2", "mask_labels")
def check_mask_labels(mask_labels) -> None:
    """`mask_labels(input_ids, answer_mask)`: a copy of the ids with -100 wherever the mask is False."""
    g = rng(1)
    input_ids = torch.randint(0, 50, (3, 7), generator=g)  # (B, T)
    answer_mask = torch.rand(3, 7, generator=g) > 0.5  # (B, T)
    what = "mask_labels(input_ids, answer_mask)"
    got = call(mask_labels, input_ids, answer_mask, what=what)  # names an in-place change of input_ids
    want = torch.where(answer_mask, input_ids, torch.full_like(input_ids, -100))  # after the call: nothing to peek
    expect_equal(got, want, what, hint="answer tokens keep their id, every other position gets -100 (the ignore index)")


@grader("study question 1", "answer_study_q1")
def check_study_q1(answer_study_q1) -> None:
    """A multiple-choice study answer, checked against the hashed key `demo.q1`."""
    require_answer("demo.q1", answer_study_q1(), hint="exactly two statements are true")
