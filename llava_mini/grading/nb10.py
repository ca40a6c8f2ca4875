"""Graders of notebook 10 (failure modes: binding, several images, knowledge):

- exercise 10.1 `conjunction_foils(objects)`: the sorted (colour, shape) pairs whose colour and shape are in the
  scene but never on one object; refuses pairs with an absent colour or shape, present pairs, repeats, no order.
- exercise 10.2 `shuffle_tokens(z, generator)`: each image's tokens in an order of its own; refuses shuffling the
  features, mixing tokens across images, one order for every image, no shuffle, changing `z` in place.
- exercise 10.3 `multi_image_prompt(question, k)`: LLaVA's `<image>\\n` + question for one image, labelled lines
  "image i: <image>" for several; refuses numbering from 0, the question first, one placeholder for k images.
- study questions 7, 12 and 17: the letters of the true statements (keys `nb10.study_q7`, `_q12`, `_q17`).

The learner's code runs through `grading.call`; the references (`llava_mini.failures`) are computed after that
call and switched off (`forbidden`) while the learner's code runs.
"""

from __future__ import annotations

import torch

from llava_mini import failures, world
from llava_mini.grading import call, expect, expect_shape, expect_type, forbidden, grader, rng
from llava_mini.keys import require_answer
from llava_mini.tokenizer import encode, load_tokenizer

# --- exercise 10.1 ----------------------------------------------------------------------------------


def _scenes() -> list[tuple[str, tuple]]:
    """(what it is, objects) cases: hand-made ones first, then seeded scenes of 1-3 objects."""
    def objects(*specs):
        return failures.scene_with([(c, s, "large") for c, s in specs], 0).objects

    cases = [("a red square and a blue circle", objects(("red", "square"), ("blue", "circle"))),
             ("one object", objects(("green", "cross"),)),
             ("two red objects", objects(("red", "circle"), ("red", "square"))),
             ("two circles", objects(("red", "circle"), ("blue", "circle"))),
             ("two red squares and a blue circle", objects(("red", "square"), ("red", "square"), ("blue", "circle"))),
             ("three objects, no colour or shape shared",
              objects(("red", "circle"), ("blue", "square"), ("green", "triangle")))]
    cases += [(f"scene {s}", world.sample_scene(s).objects) for s in range(1000, 1012)]
    return cases


@grader("exercise 10.1", "conjunction_foils")
def check_conjunction_foils(conjunction_foils) -> None:
    cases = _scenes()
    with forbidden((failures, "conjunction_foils"), reason="is the answer to this exercise"):
        got = [call(conjunction_foils, objs, what=f"conjunction_foils(<{label}>)") for label, objs in cases]
    for (label, objs), value in zip(cases, got):
        want = failures.conjunction_foils(objs)
        what = f"conjunction_foils(<{label}>)"
        expect_type(value, list, what)
        pairs = [tuple(p) for p in value]
        present = {(o.colour, o.shape) for o in objs}
        colours, shapes = {o.colour for o in objs}, {o.shape for o in objs}
        if any(p in present for p in pairs):
            raise AssertionError(f"{what} gave {value!r}, which lists a pair that *is* in the scene: a foil is a "
                                 "colour and a shape that are there but never together")
        if any(c not in colours or s not in shapes for c, s in pairs):
            raise AssertionError(f"{what} gave {value!r}: a foil's colour *and* its shape are both in the scene "
                                 "(a pair with an absent colour or shape is the teacher's other kind of 'no')")
        expect(len(set(pairs)) == len(pairs), f"{what} gave {value!r}, with repeats; list each pair once")
        expect(sorted(set(pairs)) == want, f"{what} should be {want!r}, got {value!r}")
        expect(pairs == want, f"{what} gave the right pairs in another order; return them sorted")


# --- exercise 10.2 ----------------------------------------------------------------------------------


def _orders(z: torch.Tensor, out: torch.Tensor) -> list[list[int]] | None:
    """For each image, where each output token came from in the same image (None: some token did not)."""
    orders = []
    for image, shuffled in zip(z, out):
        match = (shuffled[:, None, :] == image[None, :, :]).all(-1)  # (N out, N in)
        if not bool(match.any(1).all()):
            return None
        orders.append([int(row.nonzero()[0, 0]) for row in match])
    return orders


@grader("exercise 10.2", "shuffle_tokens")
def check_shuffle_tokens(shuffle_tokens) -> None:
    z = torch.randn(16, 9, 8, generator=rng(102))  # (n_img, N, D): every token distinct
    what = "shuffle_tokens(z, generator) with z of shape (16, 9, 8)"
    with forbidden((failures, "shuffle_tokens"), reason="is the answer to this exercise"):
        # the generator's state advances as it should: pass it inside, so `call` checks only z for changes
        out, again = (call(lambda x: shuffle_tokens(x, torch.Generator().manual_seed(0)), z, what=what)
                      for _ in range(2))
    expect_type(out, torch.Tensor, what)
    expect_shape(out, tuple(z.shape), what)
    orders = _orders(z, out)
    if orders is None:
        same_values = torch.equal(out.flatten().sort().values, z.flatten().sort().values)
        raise AssertionError(
            f"{what}: some output token is not a token of its own image: "
            + ("you shuffled the features inside the tokens, or moved tokens between images; permute the token axis "
               "(dim 1) of each image" if same_values else "move whole tokens, do not change their values"))
    identity = list(range(z.shape[1]))
    expect(any(order != identity for order in orders), f"{what} left every image's tokens in their order: shuffle them")
    expect(len({tuple(order) for order in orders}) > 1,
           f"{what} gave every image the same order of tokens; draw one permutation per image")
    expect(all(sorted(order) == identity for order in orders),
           f"{what} repeated some tokens and dropped others; a permutation keeps each token once")
    expect(torch.equal(out, again), f"{what} gave another result for the same generator seed; draw every permutation "
                                    "from `generator` (torch.randperm(N, generator=generator))")


# --- exercise 10.3 ----------------------------------------------------------------------------------

_PROMPTS = [("Is there a red circle in image 1 or image 2?", 2), ("What colour is the square?", 1),
            ("Is the green cross in image 3 to the left of, to the right of, above or below the green cross in "
             "image 1?", 3), ("How many objects are there?", 4)]


@grader("exercise 10.3", "multi_image_prompt")
def check_multi_image_prompt(multi_image_prompt) -> None:
    with forbidden((failures, "multi_image_prompt"), reason="is the answer to this exercise"):
        got = [call(multi_image_prompt, q, k, what=f"multi_image_prompt({q!r}, {k})") for q, k in _PROMPTS]
    tokenizer = load_tokenizer()
    image_id = tokenizer.image_token_id
    for (question, k), value in zip(_PROMPTS, got):
        what = f"multi_image_prompt({question!r}, {k})"
        expect_type(value, str, what)
        want = failures.multi_image_prompt(question, k)
        try:
            ids = encode(value, tokenizer)
        except ValueError as err:
            raise AssertionError(f"{what} gave {value!r}: {err}; use only words of the closed vocabulary") from None
        expect(ids.count(image_id) == k, f"{what} gave {value!r} with {ids.count(image_id)} <image> placeholders; "
                                         f"one per image: {k}")
        expect(value.endswith(question), f"{what} gave {value!r}; the question comes after the images")
        if k > 1:
            expect("image 0" not in value, f"{what} gave {value!r}; number the images from 1, as the questions do")
        expect(value == want, f"{what} should be {want!r}, got {value!r}")


# --- study questions -------------------------------------------------------------------------------

@grader("study question 7", "answer_study_q7")
def check_study_q7(answer_study_q7) -> None:
    require_answer("nb10.study_q7", answer_study_q7(), options="abcdefghi",
                   hint="check each statement against sections 1 and 2 and what LLaVA's code keeps of the image")


@grader("study question 12", "answer_study_q12")
def check_study_q12(answer_study_q12) -> None:
    require_answer("nb10.study_q12", answer_study_q12(), options="abcdefg",
                   hint="check each statement against section 3's zero-shot scores and its two controls")


@grader("study question 17", "answer_study_q17")
def check_study_q17(answer_study_q17) -> None:
    require_answer("nb10.study_q17", answer_study_q17(), options="abcdefg",
                   hint="check each statement against section 4's table of keys before and after the change")

