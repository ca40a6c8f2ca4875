"""Accuracy's scoring rules: normalisation, the reasoning conclusion, description F1, the JSON keys."""

import numpy as np
import pytest

from llava_mini import evaluate, teacher, world

ISSUE_KEYS = ("colour", "shape", "count", "position", "existence", "relation", "overall", "existence_yes",
              "existence_no", "conjunction_foil", "description", "reasoning", "n")


def scene(*objects) -> world.Scene:
    """objects: (colour, shape, size, cell)."""
    rng = np.random.default_rng(0)
    placed = sorted((world.place((c, s, z), cell, rng) for c, s, z, cell in objects), key=lambda o: (o.row, o.col))
    return world.Scene(0, tuple(placed))


@pytest.mark.parametrize("raw, expected", [
    ("Two.", "2"), ("three", "3"), ("Yes!", "yes"), ("  a   Red circle. ", "a red circle"), ("0", "0"),
    ("bottom center", "bottom center"), ("There are two shapes: a red circle.", "there are 2 shapes a red circle"),
])
def test_normalise(raw, expected):
    assert evaluate.normalise(raw) == expected


def test_conclusion_is_what_follows_the_last_so_the_answer_is():
    assert evaluate.conclusion("The circle is red. Both are in the top row, so the answer is yes.") == "yes"
    assert evaluate.conclusion("In total, 2 objects are above it, so the answer is two.") == "2"
    assert evaluate.conclusion("so the answer is no. Again, So the answer is The red circle.") == "the red circle"
    assert evaluate.conclusion("yes") is None and evaluate.conclusion("") is None


def test_description_f1_counts_missing_and_false_objects():
    s = scene(("red", "circle", "large", 0), ("blue", "square", "small", 4))
    perfect = "There are 2 objects in the image. A large red circle is in the top left. There is a small blue " \
              "square in the center. The red circle is above the square."
    assert evaluate.description_f1(perfect, s) == 1.0
    missing = "There is a large red circle in the top left."
    assert evaluate.description_f1(missing, s) == pytest.approx(2 * 1 * 0.5 / 1.5)  # precision 1, recall 1/2
    false_object = perfect + " There is a small green cross in the bottom right."
    assert evaluate.description_f1(false_object, s) == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    wrong_place = "There is a large red circle in the top right. There is a small blue square in the center."
    assert evaluate.description_f1(wrong_place, s) == pytest.approx(0.5)  # the misplaced circle is an error
    assert evaluate.description_f1("There are 2 objects in the image.", s) == 0.0
    assert evaluate.description_f1("", s) == 0.0


def test_stated_facts_read_one_object_and_one_position_per_sentence():
    text = "In the middle left, there is a small purple diamond. The red circle is to the left of the blue square."
    assert evaluate.stated_facts(text) == [("purple", "diamond", "middle left")]


def test_json_keys_are_the_issues_and_the_reasoning_prompt_carries_the_cue():
    assert evaluate.JSON_KEYS == ISSUE_KEYS
    assert evaluate.SHORT_KEYS == teacher.CATEGORIES == ISSUE_KEYS[:6]
    assert teacher.REASONING_CUE == "Explain before you answer."


def test_accuracy_rejects_bad_arguments():
    with pytest.raises(KeyError, match="unknown split"):
        evaluate.accuracy(None, None, "dev", 5)
    with pytest.raises(ValueError, match="positive"):
        evaluate.accuracy(None, None, "test", 0)
