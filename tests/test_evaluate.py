"""Accuracy's scoring rules: normalisation, the reasoning conclusion, description and caption F1, the JSON keys,
the answer styles, and a language model reading cell tokens."""

import numpy as np
import pytest
import torch

from llava_mini import cells, evaluate, teacher, world
from llava_mini.conversation import build_prompt
from llava_mini.lm import LanguageModel, LMConfig
from llava_mini.tokenizer import load_tokenizer

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


def test_accuracy_scores_the_answer_style_the_model_was_taught(monkeypatch):
    """A model that answers every question with the teacher's sentence scores 1 in the sentence style and 0 in
    the short one (and the other way round); description and reasoning are skipped without free_form."""
    tokenizer = load_tokenizer()
    truth = {(scene.seed, qa.question): qa for category in evaluate.SHORT_KEYS
             for scene, qa in evaluate._draw("test", 12, 0, category)}
    for taught in teacher.ANSWER_STYLES:
        monkeypatch.setattr(evaluate, "answer", lambda model, tok, scenes, questions, max_new_tokens=12, image="before":
                            [truth[(s.seed, q)].reply(taught) for s, q in zip(scenes, questions)])
        for scored in teacher.ANSWER_STYLES:
            result = evaluate.accuracy(None, tokenizer, "test", 12, answers=scored, free_form=False)
            assert all(result[c] == float(taught == scored) for c in evaluate.SHORT_KEYS), (taught, scored, result)
            assert result["description"] is None and result["reasoning"] is None
            assert result["caption_like"] == 0 or taught != scored
    with pytest.raises(ValueError, match="unknown answer style 'long'"):
        evaluate.accuracy(None, tokenizer, "test", 5, answers="long")


def test_a_language_model_answers_from_the_cell_tokens():
    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    lm = LanguageModel(LMConfig(len(tokenizer), dim=32, layers=1, heads=2)).eval()
    scenes = [world.sample_scene(s) for s in (1, 2, 3)]
    questions = ["What colour is the circle?", "How many objects are there?", "Is there a red square?"]
    replies = evaluate.answer(lm, tokenizer, scenes, questions, max_new_tokens=5)
    for scene, question, reply in zip(scenes, questions, replies):
        ids = torch.tensor([build_prompt([{"from": "human", "value": "<image>\n" + question}], tokenizer, 9)])
        table = torch.tensor([cells.cell_words(scene, tokenizer)])
        out = lm.generate(inputs_embeds=cells.fill(lm.embed_tokens, ids, table, tokenizer.image_token_id),
                          max_new_tokens=5, eos_token_id=tokenizer.eos_token_id)
        assert reply == tokenizer.decode(out[0], skip_special_tokens=True).strip()


def test_caption_f1_checks_colour_shape_and_any_stated_position():
    s = scene(("red", "circle", "large", 0), ("blue", "square", "small", 4))
    assert evaluate._caption_f1("a large red circle in the top left and a small blue square in the center.", s) == 1.0
    assert evaluate._caption_f1("in the top left there is a large red circle, in the center there is a small blue "
                                "square.", s) == 1.0
    assert evaluate._caption_f1("a red circle and a blue square on a dark background.", s) == 1.0  # no positions
    assert evaluate._caption_f1("a red circle in the bottom right and a blue square.", s) == pytest.approx(0.5)
    assert evaluate._caption_f1("a red circle, a red circle and a red circle.", s) == pytest.approx(2 / 5)
    assert evaluate._caption_f1("a green cross.", s) == 0.0 and evaluate._caption_f1("", s) == 0.0


def test_a_caption_is_told_from_a_sentence_answer():
    caption = "a large red circle in the top left and a small blue square in the center."
    sentences = ["The red object is a circle.", "yes, there is a blue square in the image.",
                 "No, the red circle is not to the left of the blue square."]
    assert evaluate.is_caption(caption, "sentence") and evaluate.is_caption(caption, "short")
    assert not any(evaluate.is_caption(s, "sentence") for s in sentences)
    assert not evaluate.is_caption("red", "short") and not evaluate.is_caption("a red circle", "short")
