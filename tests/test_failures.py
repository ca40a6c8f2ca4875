"""The failure-mode probes and tasks of notebook 10 (`llava_mini.failures`): what each item asks is true of its
images, the batches hold the images in placeholder order, forced choice and the intervals behave."""

import dataclasses
import re

import numpy as np
import pytest
import torch

from llava_mini import failures, teacher, vocab, world
from llava_mini.bench.judge import resolve
from llava_mini.conversation import IMAGE
from llava_mini.llava import LlavaConfig, LlavaMini
from llava_mini.lm import LMConfig
from llava_mini.tokenizer import load_tokenizer
from llava_mini.vision import VisionConfig


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def tiny(tokenizer):
    torch.manual_seed(0)
    cfg = LlavaConfig(lm=LMConfig(vocab_size=len(tokenizer), dim=32, layers=1, heads=2, kv_heads=2, hidden=64),
                      vision=VisionConfig(image_size=world.IMAGE_SIZE, patch_size=16, width=16, layers=1, heads=2,
                                          intermediate=32),
                      image_token_id=tokenizer.image_token_id, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id)
    return LlavaMini(cfg).eval()


def has(scene, colour, shape):
    return any((o.colour, o.shape) == (colour, shape) for o in scene.objects)


def test_conjunction_foils():
    scene = failures.scene_with([("red", "square", "large"), ("blue", "circle", "small")], 0)
    assert failures.conjunction_foils(scene.objects) == [("blue", "square"), ("red", "circle")]
    assert failures.conjunction_foils(failures.scene_with([("red", "square", "large")], 0).objects) == []


def test_binding_probe_kinds_are_what_they_say():
    items = failures.binding_probe(30, seed=4)
    assert [it.kind for it in items[:3]] == ["yes", "foil", "absent"] and len(items) == 90
    for it in items:
        colour, shape = it.question[len("Is there a "):-1].split()
        objects = it.scenes[0].objects
        assert has(it.scenes[0], colour, shape) == (it.kind == "yes") == it.answer.startswith("yes")
        if it.kind == "foil":
            assert (colour, shape) in failures.conjunction_foils(objects)
        if it.kind == "absent":
            assert colour not in {o.colour for o in objects} and shape not in {o.shape for o in objects}
        assert not vocab.unknown_words(it.question + " " + it.answer)


@pytest.mark.parametrize("foil_share, kinds", [(1.0, {"yes", "foil", "absent"}), (0.0, {"yes", "absent"})])
def test_existence_question_kinds(foil_share, kinds):
    seen = set()
    for s in range(200):
        scene = world.sample_scene(s)
        it = failures.existence_question(scene, np.random.default_rng(s), 0.5, foil_share)
        colour, shape = it.question[len("Is there a "):-1].split()
        assert has(scene, colour, shape) == (it.kind == "yes")
        if it.kind == "foil":
            assert (colour, shape) in failures.conjunction_foils(scene.objects)
        if it.kind == "absent" and foil_share == 1.0:  # foils go first where the scene has one
            assert not failures.conjunction_foils(scene.objects)
        seen.add(it.kind)
    assert seen == kinds


def test_shuffle_tokens_permutes_each_image_on_its_own():
    z = torch.randn(8, 9, 4)
    out = failures.shuffle_tokens(z, torch.Generator().manual_seed(0))
    orders = set()
    for image, shuffled in zip(z, out):
        order = [int((shuffled[i] == image).all(-1).nonzero()[0, 0]) for i in range(9)]
        assert sorted(order) == list(range(9))
        orders.add(tuple(order))
    assert len(orders) > 1
    assert torch.equal(out, failures.shuffle_tokens(z, torch.Generator().manual_seed(0)))


def test_shuffled_tokens_keeps_the_token_count(tiny):
    wrapped = failures.ShuffledTokens(tiny.projector)
    assert wrapped.num_tokens(9) == tiny.num_image_tokens
    z = torch.randn(2, 9, 16)
    assert sorted(wrapped(z).sum(-1).flatten().tolist()) == pytest.approx(sorted(tiny.projector(z).sum(-1).flatten()
                                                                                 .tolist()), abs=1e-5)


def test_multi_image_prompt():
    assert failures.multi_image_prompt("Q?", 1) == f"{IMAGE}\nQ?"
    assert failures.multi_image_prompt("Q?", 2) == f"image 1: {IMAGE}\nimage 2: {IMAGE}\nQ?"
    with pytest.raises(ValueError, match="at least one image"):
        failures.multi_image_prompt("Q?", 0)


def test_which_image_answer_names_the_image_that_has_it():
    for foil in (True, False):
        for it in failures.which_image(40, seed=2, foil=foil):
            colour, shape = it.question.split()[3:5]
            where = [has(scene, colour, shape) for scene in it.scenes]
            assert where.count(True) == 1
            assert it.answer.endswith(f"image {where.index(True) + 1}.") and len(it.others) == 1
            other = it.scenes[1 - where.index(True)]
            assert (colour, shape) in failures.conjunction_foils(other.objects) if foil else \
                colour not in {o.colour for o in other.objects}


def test_motion_frames_move_one_cell_a_frame():
    items = failures.motion(60, seed=3)
    assert {it.kind for it in items} == set(failures.DIRECTIONS)
    for it in items:
        colour, shape = it.question.split()[2:4]
        cells = [next((o.row, o.col) for o in scene.objects if (o.colour, o.shape) == (colour, shape))
                 for scene in it.scenes]
        steps = {(b[0] - a[0], b[1] - a[1]) for a, b in zip(cells, cells[1:])}
        assert len(steps) == 1
        step = {(0, -1): "to the left of", (0, 1): "to the right of", (-1, 0): "above", (1, 0): "below"}[steps.pop()]
        assert it.kind == step and f" is {step} " in it.answer and len(it.others) == 3
        assert not vocab.unknown_words(it.question + " " + it.answer)


def test_key_items(tokenizer):
    seeds = world.split_seeds("test", 50)
    plain = failures.key_items(seeds, failures.KEYS, retrieve=False)
    retrieved = failures.key_items(seeds, failures.KEYS, retrieve=True)
    assert [it.answer for it in plain] == [it.answer for it in retrieved]
    for it in plain:
        assert it.answer.endswith(f"is {failures.KEYS[it.kind]}.") and len(it.others) == 4
    for it in retrieved:
        assert failures.facts([it.kind], failures.KEYS) in it.question
    random_keys = failures.key_items(seeds, None, retrieve=True)
    assert {it.answer for it in random_keys} != {it.answer for it in retrieved}


def test_items_batches_hold_every_image_in_placeholder_order(tokenizer, tiny):
    items = failures.which_image(3, seed=0) + failures.motion(2, seed=0) + failures.binding_probe(1)
    batches = failures.Items(items, tokenizer, tiny.num_image_tokens, batch_size=4, seed=0)
    for _ in range(3):
        batch = next(batches)
        n_images = int((batch["input_ids"] == tokenizer.image_token_id).sum()) // tiny.num_image_tokens
        assert batch["pixel_values"].shape[0] == n_images
        assert tiny(**batch).loss.isfinite()


def test_choose_is_forced_choice(tokenizer, tiny):
    items = failures.which_image(6, seed=0)
    right = failures.choose(tiny, tokenizer, items)
    assert right.shape == (6,) and set(right.tolist()) <= {0, 1}
    swapped = [dataclasses.replace(it, answer=it.others[0], others=(it.answer,)) for it in items]
    assert (failures.choose(tiny, tokenizer, swapped) == 1 - right).all()
    assert len(failures.generate(tiny, tokenizer, items[:2], max_new_tokens=3)) == 2


def test_intervals():
    low, high = failures.bootstrap_ci([0, 1] * 50)
    assert low < 0.5 < high
    assert failures.bootstrap_ci([1] * 10) == (1.0, 1.0)
    assert failures.diff_ci([1] * 20, [0] * 20) == (1.0, 1.0)
    with pytest.raises(ValueError, match="one value per item"):
        failures.diff_ci([1, 0], [1])
    low, high = failures.diff_ci([1, 0] * 20, [0] * 10, paired=False)
    assert low < 0.5 < high


def test_reasoning_items_answer_what_the_scene_shows():
    items = failures.reasoning_items(40, start=100)
    assert {it.kind for it in items} == {"existence", "relation"}
    for it in items:
        assert teacher.REASONING_CUE not in it.question and it.others == ({"yes": "no", "no": "yes"}[it.answer],)
        (scene,) = it.scenes
        if it.kind == "existence":
            colour, shape = it.question.removeprefix("Is there a ").rstrip("?").split()
            assert (it.answer == "yes") == has(scene, colour, shape)
        else:
            a, rel, b = re.fullmatch(r"Is the (.+) (to the left of|to the right of|above|below) the (.+)\?",
                                     it.question).groups()
            assert (it.answer == "yes") == teacher.RELATIONS[rel](*(resolve(ref, scene.objects) for ref in (a, b)))
    assert failures.reasoning_items(5, start=100) == items[:5] and failures.reasoning_items(5, start=101) != items[:5]
    with pytest.raises(ValueError, match="ran out of scenes"):
        failures.reasoning_items(5, start=len(world.SPLITS["test"]) - 3)


def test_reasoned_and_direct_score_the_conclusion_and_the_first_word(monkeypatch, tokenizer, tiny):
    items = failures.reasoning_items(4)
    flip = {"yes": "no", "no": "yes"}
    asked = []

    def replies(model, tok, chunk, max_new_tokens):  # right, wrong, no conclusion, right after a wrong one
        asked.append([it.question for it in chunk])
        if chunk[0].question.endswith(teacher.REASONING_CUE):
            return [f"Steps, so the answer is {chunk[0].answer}.", f"So the answer is {flip[chunk[1].answer]}.",
                    "The steps.", f"so the answer is {flip[chunk[3].answer]}, so the answer is {chunk[3].answer}."]
        return [f"{chunk[0].answer.capitalize()}, there is.", "Maybe.", f"{chunk[2].answer}",
                f"{flip[chunk[3].answer]} {chunk[3].answer}"]

    monkeypatch.setattr(failures, "generate", replies)
    reasoned, direct, texts = failures.reasoned_and_direct(tiny, tokenizer, items)
    assert reasoned.tolist() == [1, 0, 0, 1] and direct.tolist() == [1, 0, 1, 0] and texts[2] == "The steps."
    assert asked[0] == [f"{it.question} {teacher.REASONING_CUE}" for it in items]
    assert asked[1] == [it.question for it in items]


def test_false_steps_checks_the_steps_and_leaves_the_opening_answer_out():
    items = failures.reasoning_items(30, start=100)
    existence = next(it for it in items
                     if it.kind == "existence" and it.answer == "no" and len(it.scenes[0].objects) > 1)
    (scene,) = existence.scenes
    said, steps = (teacher.Teacher(reasoning=order).complex_reasoning(world.symbolic_context(scene),
                                                                     np.random.default_rng([scene.seed, 7])).turns[0][1]
                   for order in ("answer_first", "steps_first"))
    assert failures.opening(said) == existence.answer and failures.opening(steps) is None
    first = scene.objects[0]
    wrong_colour = next(c for c in world.COLOURS if c != first.colour)
    lie = steps.replace(f"{first.size} {first.colour} {first.shape}", f"{first.size} {wrong_colour} {first.shape}", 1)
    colour, shape = existence.question.removeprefix("Is there a ").rstrip("?").split()
    wrong_opening = f"yes, there is a {colour} {shape}. {steps}"  # a false claim, but an answer, not a step
    assert failures.false_steps([steps, said, lie, wrong_opening], [existence] * 4).tolist() == [0, 0, 1, 0]
