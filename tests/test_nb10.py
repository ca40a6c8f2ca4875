"""Notebook 10's graders bite: the reference passes with one line, a stub is "not done yet", and each plausible
wrong implementation is rejected with a message naming the exercise; the study-question keys accept the right
choices and reject wrong sets."""

import pytest
import torch

from grader_contract import grader_contract

from llava_mini import keys, world
from llava_mini.grading import nb10, rejects

# --- exercise 10.1: the conjunction foils ------------------------------------------------------------------


def conjunction_foils(objects):
    combos = {(o.colour, o.shape) for o in objects}
    colours, shapes = {o.colour for o in objects}, {o.shape for o in objects}
    return sorted((c, s) for c in colours for s in shapes if (c, s) not in combos)


def foils_with_present(objects):  # every colour-shape pair of the scene's words, present ones included
    return sorted({(c, s) for c in {o.colour for o in objects} for s in {o.shape for o in objects}})


def foils_absent_attribute(objects):  # the teacher's other "no" kinds: a colour or a shape the scene lacks
    combos = {(o.colour, o.shape) for o in objects}
    colours, shapes = {o.colour for o in objects}, {o.shape for o in objects}
    return sorted((c, s) for c in world.COLOURS for s in world.SHAPES
                  if (c, s) not in combos and (c in colours) != (s in shapes))


def foils_unsorted(objects):  # the right pairs, in the order the objects give them
    combos = [(o.colour, o.shape) for o in objects]
    out = []
    for a in objects:
        for b in objects:
            pair = (a.colour, b.shape)
            if pair not in combos and pair not in out:
                out.append(pair)
    return out


def foils_with_repeats(objects):  # one entry per pair of objects, so a pair can appear twice
    combos = {(o.colour, o.shape) for o in objects}
    return sorted((a.colour, b.shape) for a in objects for b in objects if (a.colour, b.shape) not in combos)


# --- exercise 10.2: the shuffled-patch control -------------------------------------------------------------


def shuffle_tokens(z, generator):
    order = torch.stack([torch.randperm(z.shape[1], generator=generator) for _ in range(z.shape[0])])
    return torch.gather(z, 1, order[..., None].expand_as(z))


def shuffle_features(z, generator):  # permutes the D features of every token
    return z[:, :, torch.randperm(z.shape[2], generator=generator)]


def shuffle_across_images(z, generator):  # tokens move between images
    flat = z.reshape(-1, z.shape[2])
    return flat[torch.randperm(flat.shape[0], generator=generator)].reshape(z.shape)


def shuffle_one_order(z, generator):  # the same permutation for every image
    return z[:, torch.randperm(z.shape[1], generator=generator)]


def shuffle_nothing(z, generator):
    return z.clone()


def shuffle_unseeded(z, generator):  # ignores the generator: another order on every call
    order = torch.stack([torch.randperm(z.shape[1]) for _ in range(z.shape[0])])
    return torch.gather(z, 1, order[..., None].expand_as(z))


def shuffle_in_place(z, generator):
    z[:] = shuffle_tokens(z, generator)
    return z


def shuffle_with_replacement(z, generator):  # draws token indices with replacement
    order = torch.randint(0, z.shape[1], z.shape[:2], generator=generator)
    return torch.gather(z, 1, order[..., None].expand_as(z))


# --- exercise 10.3: the multi-image prompt -----------------------------------------------------------------


def multi_image_prompt(question, k):
    if k == 1:
        return "<image>\n" + question
    return "".join(f"image {i}: <image>\n" for i in range(1, k + 1)) + question


def prompt_from_zero(question, k):
    if k == 1:
        return "<image>\n" + question
    return "".join(f"image {i}: <image>\n" for i in range(k)) + question


def prompt_question_first(question, k):
    return question + "\n" + "".join(f"image {i}: <image>\n" for i in range(1, k + 1))


def prompt_one_placeholder(question, k):
    return "<image>\n" + question


def prompt_unlabelled(question, k):
    return "<image>\n" * k + question


def prompt_labels_single(question, k):  # labels even a single image
    return "".join(f"image {i}: <image>\n" for i in range(1, k + 1)) + question


def prompt_capitalised(question, k):  # "Image" is not in the closed vocabulary
    if k == 1:
        return "<image>\n" + question
    return "".join(f"Image {i}: <image>\n" for i in range(1, k + 1)) + question


RIGHT = {"exercise 10.1": conjunction_foils, "exercise 10.2": shuffle_tokens, "exercise 10.3": multi_image_prompt,
         "study question 7": lambda: "bcdfh", "study question 12": lambda: "abdf", "study question 17": lambda: "aceg"}
WRONG = {
    "exercise 10.1": [foils_with_present, foils_absent_attribute, foils_unsorted, foils_with_repeats],
    "exercise 10.2": [shuffle_features, shuffle_across_images, shuffle_one_order, shuffle_nothing, shuffle_unseeded,
                      shuffle_in_place, shuffle_with_replacement],
    "exercise 10.3": [prompt_from_zero, prompt_question_first, prompt_one_placeholder, prompt_unlabelled,
                      prompt_labels_single, prompt_capitalised],
    "study question 7": [lambda: "bcdf", lambda: "bcdfhi", lambda: "abcdfh"],
    "study question 12": [lambda: "abf", lambda: "abcdf", lambda: "abdfg"],
    "study question 17": [lambda: "ace", lambda: "abceg", lambda: "acdeg"],
}

(test_every_grader_has_right_and_wrong_implementations, test_right_answer_prints_one_fixed_line,
 test_wrong_implementation_is_rejected, test_stub_is_not_done_yet) = grader_contract("llava_mini.grading.nb10", RIGHT,
                                                                                     WRONG)


def test_hints_name_the_mistake():
    check = nb10.check_conjunction_foils
    assert "*is* in the scene" in rejects(check, foils_with_present)
    assert "absent colour or shape" in rejects(check, foils_absent_attribute)
    assert "return them sorted" in rejects(check, foils_unsorted)
    assert "with repeats" in rejects(check, foils_with_repeats)
    check = nb10.check_shuffle_tokens
    assert "shuffled the features" in rejects(check, shuffle_features)
    assert "the same order" in rejects(check, shuffle_one_order)
    assert "left every image's tokens in their order" in rejects(check, shuffle_nothing)
    assert "from `generator`" in rejects(check, shuffle_unseeded)
    assert "in place" in rejects(check, shuffle_in_place)
    check = nb10.check_multi_image_prompt
    assert "number the images from 1" in rejects(check, prompt_from_zero)
    assert "the question comes after the images" in rejects(check, prompt_question_first)
    assert "one per image" in rejects(check, prompt_one_placeholder)
    assert "closed vocabulary" in rejects(check, prompt_capitalised)


@pytest.mark.parametrize("question, right, wrong", [
    ("nb10.study_q7", ("bcdfh", "B, C, D, F and H"), ("bcdf", "bcdfhi", "abcdefghi", "")),
    ("nb10.study_q12", ("abdf", "(a) (b) (d) (f)"), ("abd", "abcdefg", "abcdf")),
    ("nb10.study_q17", ("aceg", "A C E G"), ("ace", "abcdefg", "acdeg"))])
def test_study_keys(question, right, wrong):
    assert all(keys.check_answer(question, a) for a in right)
    assert not any(keys.check_answer(question, a) for a in wrong)
