"""Notebook 07's graders bite: the reference passes with one line, a stub is "not done yet", and each plausible
wrong implementation is rejected with a message naming the exercise; the questionnaire's key accepts the right
choices in any spelling and rejects wrong sets; `train.training_flops` and `train.mfu`, the notebook's references."""

import pytest
import torch

from grader_contract import grader_contract

from llava_mini import keys, stages, train
from llava_mini.grading import nb07, rejects

IGNORE = -100

# --- exercise 7.1: stage 2's freezing --------------------------------------------------------------


def unfreeze_for_stage2(model):
    model.vision.requires_grad_(False)
    model.projector.requires_grad_(True)
    model.lm.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def unfreeze_everything(model):  # the vision tower unfrozen
    model.requires_grad_(True)
    return sum(p.numel() for p in model.parameters())


def lm_still_frozen(model):  # stage 1's freezing
    model.requires_grad_(False)
    model.projector.requires_grad_(True)
    return sum(p.numel() for p in model.projector.parameters())


def projector_frozen(model):  # "stage 2 trains the LLM"
    model.requires_grad_(False)
    model.lm.requires_grad_(True)
    return sum(p.numel() for p in model.lm.parameters())


def only_unfreezes_lm(model):  # relies on the stage-1 state: leaves a trainable vision tower trainable
    model.lm.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def counts_frozen_too(model):
    unfreeze_for_stage2(model)
    return sum(p.numel() for p in model.parameters())


def counts_lm_only(model):
    unfreeze_for_stage2(model)
    return sum(p.numel() for p in model.lm.parameters())


def returns_tensor_count(model):
    return torch.tensor(unfreeze_for_stage2(model))


def reinitialises_projector(model):  # changes a weight
    unfreeze_for_stage2(model)
    with torch.no_grad():
        for p in model.projector.parameters():
            p.zero_()
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def calls_stages_freeze(model):
    return stages.freeze(model, 2)["total"][0]


# --- exercise 7.2: one optimizer step --------------------------------------------------------------


def _count(batch):
    return int((batch["labels"][:, 1:] != IGNORE).sum())


def training_step(model, micro_batches, optimizer, autocast):
    n_items = sum(_count(b) for b in micro_batches)
    total = 0.0
    for batch in micro_batches:
        with autocast():
            loss = model(**batch, num_items_in_batch=n_items).loss
        loss.backward()
        total += loss.item()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def step_without_normalisation(model, micro_batches, optimizer, autocast):  # sum of each micro-batch's mean
    total = 0.0
    for batch in micro_batches:
        with autocast():
            loss = model(**batch).loss
        loss.backward()
        total += loss.item()
    optimizer.step()
    optimizer.zero_grad()
    return total


def step_mean_of_means(model, micro_batches, optimizer, autocast):
    total = 0.0
    for batch in micro_batches:
        with autocast():
            loss = model(**batch).loss / len(micro_batches)
        loss.backward()
        total += loss.item()
    optimizer.step()
    optimizer.zero_grad()
    return total


def step_count_unshifted(model, micro_batches, optimizer, autocast):
    n_items = sum(int((b["labels"] != IGNORE).sum()) for b in micro_batches)
    total = 0.0
    for batch in micro_batches:
        with autocast():
            loss = model(**batch, num_items_in_batch=n_items).loss
        loss.backward()
        total += loss.item()
    optimizer.step()
    optimizer.zero_grad()
    return total


def step_backward_inside_autocast(model, micro_batches, optimizer, autocast):
    n_items = sum(_count(b) for b in micro_batches)
    total = 0.0
    for batch in micro_batches:
        with autocast():
            loss = model(**batch, num_items_in_batch=n_items).loss
            loss.backward()
        total += loss.item()
    optimizer.step()
    optimizer.zero_grad()
    return total


def step_without_autocast(model, micro_batches, optimizer, autocast):
    return training_step(model, micro_batches, optimizer, lambda: torch.enable_grad())


def step_without_zero_grad(model, micro_batches, optimizer, autocast):
    n_items = sum(_count(b) for b in micro_batches)
    total = 0.0
    for batch in micro_batches:
        with autocast():
            loss = model(**batch, num_items_in_batch=n_items).loss
        loss.backward()
        total += loss.item()
    optimizer.step()
    return total


def step_without_optimizer_step(model, micro_batches, optimizer, autocast):
    n_items = sum(_count(b) for b in micro_batches)
    total = 0.0
    for batch in micro_batches:
        with autocast():
            loss = model(**batch, num_items_in_batch=n_items).loss
        loss.backward()
        total += loss.item()
    optimizer.zero_grad()
    return total


def step_per_micro_batch(model, micro_batches, optimizer, autocast):  # no accumulation: a step per micro-batch
    n_items = sum(_count(b) for b in micro_batches)
    total = 0.0
    for batch in micro_batches:
        with autocast():
            loss = model(**batch, num_items_in_batch=n_items).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        total += loss.item()
    return total


def step_zero_grad_each_micro_batch(model, micro_batches, optimizer, autocast):
    n_items = sum(_count(b) for b in micro_batches)
    total = 0.0
    for batch in micro_batches:
        optimizer.zero_grad()
        with autocast():
            loss = model(**batch, num_items_in_batch=n_items).loss
        loss.backward()
        total += loss.item()
    optimizer.step()
    optimizer.zero_grad()
    return total


def step_returns_tensor(model, micro_batches, optimizer, autocast):
    n_items = sum(_count(b) for b in micro_batches)
    total = 0.0
    for batch in micro_batches:
        with autocast():
            loss = model(**batch, num_items_in_batch=n_items).loss
        loss.backward()
        total = total + loss.detach()
    optimizer.step()
    optimizer.zero_grad()
    return total


def step_masks_batches_in_place(model, micro_batches, optimizer, autocast):
    for batch in micro_batches:
        batch["labels"][:, 0] = IGNORE
    return training_step(model, micro_batches, optimizer, autocast)


def step_calls_supervised_tokens(model, micro_batches, optimizer, autocast):
    n_items = sum(train.supervised_tokens(b) for b in micro_batches)
    total = 0.0
    for batch in micro_batches:
        with autocast():
            loss = model(**batch, num_items_in_batch=n_items).loss
        loss.backward()
        total += loss.item()
    optimizer.step()
    optimizer.zero_grad()
    return total


# --- exercise 7.3: MFU -----------------------------------------------------------------------------


def mfu(n_trainable, lm_tokens, n_vision, vision_tokens, seconds, peak_flops):
    return (6 * n_trainable * lm_tokens + 2 * n_vision * vision_tokens) / seconds / peak_flops


def mfu_counts_vision_backward(n_trainable, lm_tokens, n_vision, vision_tokens, seconds, peak_flops):
    return (6 * n_trainable * lm_tokens + 6 * n_vision * vision_tokens) / seconds / peak_flops


def mfu_vision_as_trainable(n_trainable, lm_tokens, n_vision, vision_tokens, seconds, peak_flops):
    return 6 * (n_trainable + n_vision) * lm_tokens / seconds / peak_flops


def mfu_without_vision(n_trainable, lm_tokens, n_vision, vision_tokens, seconds, peak_flops):
    return 6 * n_trainable * lm_tokens / seconds / peak_flops


def mfu_forward_only(n_trainable, lm_tokens, n_vision, vision_tokens, seconds, peak_flops):
    return (2 * n_trainable * lm_tokens + 2 * n_vision * vision_tokens) / seconds / peak_flops


def mfu_percent(n_trainable, lm_tokens, n_vision, vision_tokens, seconds, peak_flops):
    return 100 * mfu(n_trainable, lm_tokens, n_vision, vision_tokens, seconds, peak_flops)


def mfu_flops_per_second(n_trainable, lm_tokens, n_vision, vision_tokens, seconds, peak_flops):
    return (6 * n_trainable * lm_tokens + 2 * n_vision * vision_tokens) / seconds


def mfu_calls_reference(n_trainable, lm_tokens, n_vision, vision_tokens, seconds, peak_flops):
    return train.mfu(train.training_flops(n_trainable, lm_tokens, n_vision, vision_tokens), seconds, peak_flops)


# --- the questionnaire -----------------------------------------------------------------------------


def answer_questionnaire():
    return "a, b, d, f, g, h"


def questionnaire_uniform_mix():
    return "abcdfgh"


def questionnaire_no_grad_vision_backward():
    return "abdgh"


def questionnaire_autocast_saves_adam():
    return "abdfghi"


RIGHT = {
    "exercise 7.1": unfreeze_for_stage2,
    "exercise 7.2": training_step,
    "exercise 7.3": mfu,
    "questionnaire 7": answer_questionnaire,
}
WRONG = {
    "exercise 7.1": [unfreeze_everything, lm_still_frozen, projector_frozen, only_unfreezes_lm, counts_frozen_too,
                     counts_lm_only, returns_tensor_count, reinitialises_projector, calls_stages_freeze],
    "exercise 7.2": [step_without_normalisation, step_mean_of_means, step_count_unshifted,
                     step_backward_inside_autocast, step_without_autocast, step_without_zero_grad,
                     step_without_optimizer_step, step_per_micro_batch, step_zero_grad_each_micro_batch,
                     step_returns_tensor, step_masks_batches_in_place, step_calls_supervised_tokens],
    "exercise 7.3": [mfu_counts_vision_backward, mfu_vision_as_trainable, mfu_without_vision, mfu_forward_only,
                     mfu_percent, mfu_flops_per_second, mfu_calls_reference],
    "questionnaire 7": [questionnaire_uniform_mix, questionnaire_no_grad_vision_backward,
                        questionnaire_autocast_saves_adam],
}
(test_every_grader_has_right_and_wrong_implementations, test_right_answer_prints_one_fixed_line,
 test_wrong_implementation_is_rejected, test_stub_is_not_done_yet) = grader_contract("llava_mini.grading.nb07",
                                                                                     RIGHT, WRONG)


@pytest.mark.parametrize("wrong, words", [
    (unfreeze_everything, "vision tower is trainable"), (lm_still_frozen, "language model is frozen"),
    (projector_frozen, "projector W is frozen"), (reinitialises_projector, "in place"),
    (calls_stages_freeze, "stages.freeze"), (step_without_normalisation, "not normalised"),
    (step_mean_of_means, "divided by the number of micro-batches"), (step_backward_inside_autocast, "inside autocast"),
    (step_masks_batches_in_place, "in place"), (mfu_counts_vision_backward, "no backward pass"),
])
def test_the_hint_names_the_mistake(wrong, words):
    checks = {"exercise 7.1": nb07.check_unfreeze_for_stage2, "exercise 7.2": nb07.check_training_step,
              "exercise 7.3": nb07.check_mfu}
    label = next(k for k, fns in WRONG.items() if wrong in fns)
    assert words in rejects(checks[label], wrong)


@pytest.mark.parametrize("answer", ["abdfgh", "h g f d b a", ["a", "b", "d", "f", "g", "h"], "(a) (b) (d) (f) (g) (h)"])
def test_questionnaire_key_accepts_the_right_set(answer):
    assert keys.check_answer("nb07.questionnaire", answer)


@pytest.mark.parametrize("answer", ["abdfg", "abcdfgh", "abdfghij", "a"])
def test_questionnaire_key_rejects_wrong_sets(answer):
    assert not keys.check_answer("nb07.questionnaire", answer)


def test_training_flops_counts_the_frozen_tower_forward_only():
    assert train.training_flops(10, 100) == 6000
    assert train.training_flops(10, 100, 7, 30) == 6000 + 2 * 7 * 30
    assert train.mfu(6000, 2.0, 1000.0) == 3.0
    with pytest.raises(ValueError, match="positive"):
        train.mfu(1.0, 0.0, 1.0)
