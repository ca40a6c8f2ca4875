"""Notebook 01's graders bite: the reference passes with one line, a stub is "not done yet", and each
plausible wrong implementation is rejected with a message naming the exercise (tests/test_grading.py's
pattern); the study-question key accepts the right choices in any spelling and rejects wrong sets."""

import re

from llava_mini import keys, teacher
from grader_contract import grader_contract

from llava_mini.grading import nb01, rejects

# --- exercise 1.1: a COCO box as a symbolic-context line --------------------------------------------


def box_line(category, bbox, width, height):
    x, y, w, h = bbox
    corners = (x / width, y / height, (x + w) / width, (y + h) / height)
    return f"{category}: [{', '.join(f'{v:.2f}' for v in corners)}]"


def box_line_width_height(category, bbox, width, height):  # COCO's [x, y, w, h] copied as if it were corners
    x, y, w, h = bbox
    return f"{category}: [{', '.join(f'{v:.2f}' for v in (x / width, y / height, w / width, h / height))}]"


def box_line_pixels(category, bbox, width, height):  # the corners, but never normalised
    x, y, w, h = bbox
    return f"{category}: [{', '.join(f'{v:.2f}' for v in (x, y, x + w, y + h))}]"


def box_line_square_image(category, bbox, width, height):  # fine for ShapesWorld, wrong for COCO
    x, y, w, h = bbox
    return f"{category}: [{', '.join(f'{v:.2f}' for v in (x / width, y / width, (x + w) / width, (y + h) / width))}]"


def box_line_rounded_not_formatted(category, bbox, width, height):  # 0.4, not 0.40
    x, y, w, h = bbox
    corners = (x / width, y / height, (x + w) / width, (y + h) / height)
    return f"{category}: [{', '.join(str(round(v, 2)) for v in corners)}]"


def box_line_rows_first(category, bbox, width, height):  # [y1, x1, y2, x2], a row-major habit
    x, y, w, h = bbox
    corners = (y / height, x / width, (y + h) / height, (x + w) / width)
    return f"{category}: [{', '.join(f'{v:.2f}' for v in corners)}]"


def box_line_in_place(category, bbox, width, height):  # the right line, but the caller's bbox becomes corners
    bbox[2] += bbox[0]
    bbox[3] += bbox[1]
    corners = (bbox[0] / width, bbox[1] / height, bbox[2] / width, bbox[3] / height)
    return f"{category}: [{', '.join(f'{v:.2f}' for v in corners)}]"


# --- exercise 1.2: a conversation generator with definite answers -----------------------------------


def count_sentence(n):
    return "There is 1 object." if n == 1 else f"There are {n} objects."


def definite_turns(context):
    things = teacher.read(context)
    turns = [("How many objects are there?", count_sentence(len(things)))]
    for t in things:
        if [u.shape for u in things].count(t.shape) == 1:
            turns.append((f"What colour is the {t.shape}?", f"The {t.shape} is {t.colour}."))
    for t in things:
        if [(u.colour, u.shape) for u in things].count((t.colour, t.shape)) == 1:
            turns.append((f"Where is the {t.colour} {t.shape}?", f"The {t.colour} {t.shape} is in the {t.position}."))
    return turns


def turns_every_object(context):  # "What colour is the circle?" with two circles in the scene
    colour = [(f"What colour is the {t.shape}?", f"The {t.shape} is {t.colour}.") for t in teacher.read(context)]
    return [t for t in definite_turns(context) if not t[0].startswith("What colour")] + colour


def turns_count_captions(context):  # five captions, whatever the scene
    return [("How many objects are there?", count_sentence(len(context.captions)))] + definite_turns(context)[1:]


def turns_position_by_shape(context):  # a shorter question that is no longer unique
    return [(f"Where is the {q.split()[-1]}", a) if q.startswith("Where") else (q, a)
            for q, a in definite_turns(context)]


def turns_pair_unique_for_colour(context):  # the colour question guarded by the pair, not by the shape
    things = teacher.read(context)
    pairs = [(u.colour, u.shape) for u in things]
    colour = [(f"What colour is the {t.shape}?", f"The {t.shape} is {t.colour}.") for t in things
              if pairs.count((t.colour, t.shape)) == 1]
    return [t for t in definite_turns(context) if not t[0].startswith("What colour")] + colour


def turns_count_in_words(context):
    words = {"1": "one", "2": "two", "3": "three"}
    return [(q, re.sub(r"\d", lambda m: words[m[0]], a)) if q.startswith("How many") else (q, a)
            for q, a in definite_turns(context)]


def turns_short_answers(context):  # the first generation's one-word answers
    return [(q, re.sub(r"^(The .* is (in the )?|There (is|are) )|( objects?)?\.$", "", a)) for q, a in
            definite_turns(context)]


def turns_plural_always(context):  # "There are 1 objects."
    n = len(teacher.read(context))
    return [("How many objects are there?", f"There are {n} objects.")] + definite_turns(context)[1:]


# --- exercise 1.3: the verification filter -----------------------------------------------------------

EXISTENCE = re.compile(r"Is there a (\w+) (\w+)\?")


def _claims(record):
    """(colour, shape, answer) of every existence question of a record."""
    turns = record["conversations"]
    for question, answer in zip(turns[::2], turns[1::2]):
        match = EXISTENCE.fullmatch(question["value"].removeprefix("<image>\n"))
        if match:
            yield match[1], match[2], answer["value"]


def verified(record, context):
    present = {(t.colour, t.shape) for t in teacher.read(context)}
    return all(answer.startswith("yes") == ((colour, shape) in present) for colour, shape, answer in _claims(record))


def verified_colour_and_shape_apart(record, context):  # the binding error: a red something and a square somewhere
    things = teacher.read(context)
    colours, shapes = {t.colour for t in things}, {t.shape for t in things}
    return all(answer.startswith("yes") == (colour in colours and shape in shapes)
               for colour, shape, answer in _claims(record))


def verified_only_yes(record, context):  # hunts made-up objects only; a false "no" slips through
    present = {(t.colour, t.shape) for t in teacher.read(context)}
    return all((colour, shape) in present for colour, shape, answer in _claims(record) if answer.startswith("yes"))


def verified_skips_first_turn(record, context):  # startswith misses "<image>\nIs there a ...?"
    present = {(t.colour, t.shape) for t in teacher.read(context)}
    turns = record["conversations"]
    for question, answer in zip(turns[::2], turns[1::2]):
        if question["value"].startswith("Is there a "):
            colour, shape = question["value"][len("Is there a "):-1].split()
            if answer["value"].startswith("yes") != ((colour, shape) in present):
                return False
    return True


def verified_drops_every_yes(record, context):  # "yes" answers are where the teacher lies, so drop them all
    return not any(answer.startswith("yes") for _, _, answer in _claims(record))


def verified_whole_answer(record, context):  # the short style's test: the answer "yes, there is ..." is never "yes"
    present = {(t.colour, t.shape) for t in teacher.read(context)}
    return all((answer == "yes") == ((colour, shape) in present) for colour, shape, answer in _claims(record))


def verified_lower_case_no(record, context):  # "No, there is no ..." does not start with "no"
    present = {(t.colour, t.shape) for t in teacher.read(context)}
    return all((not answer.startswith("no")) == ((colour, shape) in present)
               for colour, shape, answer in _claims(record))


def verified_strips_in_place(record, context):  # right, but it writes the stripped question back into the record
    turns = record["conversations"]
    turns[0]["value"] = turns[0]["value"].removeprefix("<image>\n")
    present = {(t.colour, t.shape) for t in teacher.read(context)}
    for question, answer in zip(turns[::2], turns[1::2]):
        claim = EXISTENCE.fullmatch(question["value"])
        if claim and answer["value"].startswith("yes") != (claim.groups() in present):
            return False
    return True


def verified_captions_only(record, context):  # right: the captions name every object too
    text = " ".join(context.captions)
    return all(answer.startswith("yes") == (f"{colour} {shape}" in text) for colour, shape, answer in _claims(record))


# --- study question 9 ---------------------------------------------------------------------------------


def answer_study_q9():
    return "a, c, e, g"


def q9_fluency_filter():
    return "acdeg"


def q9_gpt4_is_clean():
    return "abceg"


def q9_without_cooccurrence():
    return "aeg"


RIGHT = {
    "exercise 1.1": box_line,
    "exercise 1.2": definite_turns,
    "exercise 1.3": verified,
    "study question 9": answer_study_q9,
}
WRONG = {
    "exercise 1.1": [box_line_width_height, box_line_pixels, box_line_square_image, box_line_rounded_not_formatted,
                     box_line_rows_first, box_line_in_place],
    "exercise 1.2": [turns_every_object, turns_count_captions, turns_position_by_shape, turns_pair_unique_for_colour,
                     turns_count_in_words, turns_short_answers, turns_plural_always],
    "exercise 1.3": [verified_colour_and_shape_apart, verified_only_yes, verified_skips_first_turn,
                     verified_drops_every_yes, verified_whole_answer, verified_lower_case_no,
                     verified_strips_in_place],

    "study question 9": [q9_fluency_filter, q9_gpt4_is_clean, q9_without_cooccurrence],
}
(test_every_grader_has_right_and_wrong_implementations, test_right_answer_prints_one_fixed_line,
 test_wrong_implementation_is_rejected, test_stub_is_not_done_yet) = grader_contract("llava_mini.grading.nb01",
                                                                                     RIGHT, WRONG)


def test_hints_name_the_mistake():
    assert "[x, y, width, height]" in rejects(nb01.check_box_line, box_line_width_height)
    assert "not pixels" in rejects(nb01.check_box_line, box_line_pixels)
    assert "rarely square" in rejects(nb01.check_box_line, box_line_square_image)
    assert "exactly two decimals" in rejects(nb01.check_box_line, box_line_rounded_not_formatted)
    assert "x (horizontal) first" in rejects(nb01.check_box_line, box_line_rows_first)
    assert "changed its argument 2 in place" in rejects(nb01.check_box_line, box_line_in_place)
    assert "has no definite answer" in rejects(nb01.check_definite_turns, turns_every_object)
    assert "always five captions" in rejects(nb01.check_definite_turns, turns_count_captions)
    assert "has no definite answer" in rejects(nb01.check_definite_turns, turns_position_by_shape)
    assert "has no definite answer" in rejects(nb01.check_definite_turns, turns_pair_unique_for_colour)
    assert "in digits" in rejects(nb01.check_definite_turns, turns_count_in_words)
    assert "answer with the teacher's sentence" in rejects(nb01.check_definite_turns, turns_short_answers)
    assert "singular" in rejects(nb01.check_definite_turns, turns_plural_always)
    assert "same object" in rejects(nb01.check_verified, verified_colour_and_shape_apart)
    assert "'<image>\\n'" in rejects(nb01.check_verified, verified_skips_first_turn)
    assert "a 'no' contradicts" in rejects(nb01.check_verified, verified_only_yes)
    assert "both claims agree with the boxes" in rejects(nb01.check_verified, verified_drops_every_yes)
    assert "whole answer with \"yes\" never matches" in rejects(nb01.check_verified, verified_whole_answer)
    assert "capital N" in rejects(nb01.check_verified, verified_lower_case_no)
    assert "changed the record it was given" in rejects(nb01.check_verified, verified_strips_in_place)


def test_a_filter_that_reads_the_captions_is_right_too():
    nb01.check_verified(verified_captions_only)


def test_study_q9_key_accepts_any_spelling_and_rejects_near_misses():
    for spelling in ("aceg", "A, C, E, G", ["g", "e", "c", "a"], "gace"):
        assert keys.check_answer("nb01.study_q9", spelling)
    for wrong in ("ace", "aceg h", "acegh", "abcdefgh", ""):
        assert not keys.check_answer("nb01.study_q9", wrong)
