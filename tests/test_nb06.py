"""Notebook 06's graders bite: the reference passes with one line, a stub is "not done yet", and each plausible
wrong implementation is rejected with a message naming the exercise (tests/test_grading.py's pattern); the
study-question key accepts the right choices in any spelling and rejects wrong sets."""

import torch

from grader_contract import grader_contract

from llava_mini import keys, stages, train
from llava_mini.grading import nb06, rejects

# --- exercise 6.1: requires_grad per stage -----------------------------------------------------------


def freeze(model, stage):
    model.requires_grad_(False)
    model.projector.requires_grad_(True)
    if stage == 2:
        model.lm.requires_grad_(True)


def freeze_lm_left_trainable(model, stage):  # only the vision tower frozen: LLaVA's stage 2, used in stage 1
    model.requires_grad_(True)
    model.vision.requires_grad_(False)


def freeze_vision_trainable(model, stage):  # "fine-tune everything in stage 2"
    model.requires_grad_(stage == 2)
    if stage == 1:
        model.projector.requires_grad_(True)


def freeze_projector_frozen(model, stage):  # freezes everything in stage 1, forgets W
    model.requires_grad_(False)
    if stage == 2:
        model.lm.requires_grad_(True)
        model.projector.requires_grad_(True)


def freeze_only_sets_true(model, stage):  # never freezes what an earlier call left trainable
    model.projector.requires_grad_(True)
    model.vision.requires_grad_(False)
    if stage == 2:
        model.lm.requires_grad_(True)


def freeze_by_no_grad(model, stage):  # the flags right, and the LLM wrapped in no_grad "to freeze it"
    freeze(model, stage)
    if stage == 1:
        model.lm.forward = torch.no_grad()(model.lm.forward)


def freeze_by_detach(model, stage):  # the projector's output detached "so nothing flows into the frozen LLM"
    freeze(model, stage)
    forward = model.projector.forward
    model.projector.forward = lambda z: forward(z).detach()


def freeze_reinitialises_w(model, stage):  # the flags right, and W reset "to start stage 1 fresh"
    freeze(model, stage)
    with torch.no_grad():
        model.projector.weight.normal_(0, 0.02)


def freeze_calls_reference(model, stage):
    stages.freeze(model, stage)


# --- exercise 6.2: trainable counts --------------------------------------------------------------------


def trainable_counts(model):
    counts = {}
    for name, child in model.named_children():
        params = list(child.parameters())
        counts[name] = (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
    counts["total"] = (sum(t for t, _ in counts.values()), sum(n for _, n in counts.values()))
    return counts


def counts_include_frozen(model):  # every parameter counted as trainable
    counts = {name: (sum(p.numel() for p in c.parameters()),) * 2 for name, c in model.named_children()}
    counts["total"] = (sum(t for t, _ in counts.values()),) * 2
    return counts


def counts_tensors(model):  # the number of tensors, not of elements
    counts = {name: (sum(1 for p in c.parameters() if p.requires_grad), sum(1 for _ in c.parameters()))
              for name, c in model.named_children()}
    counts["total"] = (sum(t for t, _ in counts.values()), sum(n for _, n in counts.values()))
    return counts


def counts_by_child_flag(model):  # a child counts as trainable when its first tensor is
    counts = {}
    for name, child in model.named_children():
        n = sum(p.numel() for p in child.parameters())
        counts[name] = (n if next(child.parameters()).requires_grad else 0, n)
    counts["total"] = (sum(t for t, _ in counts.values()), sum(n for _, n in counts.values()))
    return counts


def counts_without_total(model):
    counts = trainable_counts(model)
    del counts["total"]
    return counts


def counts_unfreeze_to_count(model):  # counts right, but leaves the model all trainable
    counts = trainable_counts(model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.0)
    model.projector.weight.data.add_(1.0)
    return counts


def counts_call_reference(model):
    return train.count_parameters(model)


# --- exercise 6.3: optimizer groups --------------------------------------------------------------------


def optimizer_groups(model, lr, projector_lr=None):
    projector = {id(p) for p in model.projector.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    if projector_lr is None:
        return [{"params": trainable, "lr": lr}]
    groups = [{"params": [p for p in trainable if id(p) in projector], "lr": projector_lr},
              {"params": [p for p in trainable if id(p) not in projector], "lr": lr}]
    return [g for g in groups if g["params"]]


def groups_all_parameters(model, lr, projector_lr=None):  # frozen tensors handed to the optimizer
    return [{"params": list(model.parameters()), "lr": lr}]


def groups_ignore_projector_lr(model, lr, projector_lr=None):
    return optimizer_groups(model, lr)


def groups_keep_empty(model, lr, projector_lr=None):
    if projector_lr is None:
        return optimizer_groups(model, lr)
    projector = {id(p) for p in model.projector.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in trainable if id(p) in projector], "lr": projector_lr},
            {"params": [p for p in trainable if id(p) not in projector], "lr": lr}]


def groups_projector_twice(model, lr, projector_lr=None):
    if projector_lr is None:
        return optimizer_groups(model, lr)
    return [{"params": list(model.projector.parameters()), "lr": projector_lr},
            {"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]


def groups_unfreeze_model(model, lr, projector_lr=None):  # "make sure W trains": unfreezes, and changes W
    with torch.no_grad():
        model.projector.bias.zero_()
    return optimizer_groups(model, lr, projector_lr)


# --- exercise 6.4: the stage-1 loss written out ----------------------------------------------------------


def _splice(model, input_ids, h_v):
    embeds = model.lm.embed_tokens(input_ids)  # (B, T, D)
    mask = (input_ids == model.config.image_token_id)[..., None].expand_as(embeds)
    return embeds.masked_scatter(mask, h_v)


def stage1_loss(model, batch):
    with torch.no_grad():
        z_v = model.vision.features(batch["pixel_values"])  # (B, N, d_v)
    h_v = model.projector(z_v)  # (B, N, D)
    embeds = _splice(model, batch["input_ids"], h_v)
    return model.lm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"]).loss


def loss_lm_under_no_grad(model, batch):  # "the LLM is frozen, so no_grad saves memory": W gets no gradient
    with torch.no_grad():
        z_v = model.vision.features(batch["pixel_values"])
    h_v = model.projector(z_v)
    embeds = _splice(model, batch["input_ids"], h_v)
    with torch.no_grad():
        return model.lm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"]).loss


def loss_everything_under_no_grad(model, batch):
    with torch.no_grad():
        return stage1_loss(model, batch)


def loss_tower_in_graph(model, batch):  # no no_grad around g: the tower trains when its flags are left on
    h_v = model.projector(model.vision.features(batch["pixel_values"]))
    embeds = _splice(model, batch["input_ids"], h_v)
    return model.lm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"]).loss


def loss_w_detached(model, batch):  # H_v detached "because only the LLM's inputs matter"
    with torch.no_grad():
        z_v = model.vision.features(batch["pixel_values"])
    embeds = _splice(model, batch["input_ids"], model.projector(z_v).detach())
    return model.lm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"]).loss


def loss_last_layer(model, batch):  # the tower's last layer instead of its feature layer (-2)
    with torch.no_grad():
        z_v = model.vision(batch["pixel_values"])[0][-1][:, 1:]
    embeds = _splice(model, batch["input_ids"], model.projector(z_v))
    return model.lm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"]).loss


def loss_pops_labels(model, batch):  # takes the labels out of the caller's dict
    labels = batch.pop("labels")
    return stage1_loss(model, {**batch, "labels": labels})


def loss_blanks_placeholders_in_place(model, batch):  # the placeholder ids overwritten before the embedding
    is_image = batch["input_ids"] == model.config.image_token_id
    batch["input_ids"][is_image] = 0
    embeds = model.lm.embed_tokens(batch["input_ids"])
    with torch.no_grad():
        z_v = model.vision.features(batch["pixel_values"])
    embeds = embeds.masked_scatter(is_image[..., None].expand_as(embeds), model.projector(z_v))
    return model.lm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"]).loss


def loss_calls_forward(model, batch):
    return model(**batch).loss


# --- study question 3 ------------------------------------------------------------------------------------


def answer_study_q3():
    return "acefi"


def study_q3_missing_cost():
    return "acei"


def study_q3_no_grad_too():
    return "acefgi"


def study_q3_stage1_follows():
    return "acefhi"


RIGHT = {"exercise 6.1": freeze, "exercise 6.2": trainable_counts, "exercise 6.3": optimizer_groups,
         "exercise 6.4": stage1_loss, "study question 3": answer_study_q3}
WRONG = {
    "exercise 6.1": [freeze_lm_left_trainable, freeze_vision_trainable, freeze_projector_frozen, freeze_only_sets_true,
                     freeze_by_no_grad, freeze_by_detach, freeze_reinitialises_w, freeze_calls_reference],
    "exercise 6.2": [counts_include_frozen, counts_tensors, counts_by_child_flag, counts_without_total,
                     counts_unfreeze_to_count, counts_call_reference],
    "exercise 6.3": [groups_all_parameters, groups_ignore_projector_lr, groups_keep_empty, groups_projector_twice,
                     groups_unfreeze_model],
    "exercise 6.4": [loss_lm_under_no_grad, loss_everything_under_no_grad, loss_tower_in_graph, loss_w_detached,
                     loss_last_layer, loss_pops_labels, loss_blanks_placeholders_in_place, loss_calls_forward],
    "study question 3": [study_q3_missing_cost, study_q3_no_grad_too, study_q3_stage1_follows],
}

(test_every_grader_has_right_and_wrong_implementations, test_right_answer_prints_one_fixed_line,
 test_wrong_implementation_is_rejected, test_stub_is_not_done_yet) = grader_contract("llava_mini.grading.nb06",
                                                                                     RIGHT, WRONG)


def test_hints_name_the_mistake():
    check = nb06.check_freeze
    assert "stage 1 freezes the LLM" in rejects(check, freeze_lm_left_trainable)
    assert "the vision encoder g stays frozen" in rejects(check, freeze_vision_trainable)
    assert "W is what stage 1 trains" in rejects(check, freeze_projector_frozen)
    assert "on a model that was all trainable" in rejects(check, freeze_only_sets_true)
    assert "freezing by torch.no_grad()" in rejects(check, freeze_by_no_grad)
    assert "cuts the graph" in rejects(check, freeze_by_detach)
    assert "changed its argument 1 in place" in rejects(check, freeze_reinitialises_w)
    assert "calls llava_mini.stages.freeze" in rejects(check, freeze_calls_reference)
    check = nb06.check_trainable_counts
    assert "frozen ones included" in rejects(check, counts_include_frozen)
    assert "count elements (p.numel()), not tensors" in rejects(check, counts_tensors)
    assert "a frozen bias inside a trainable child" in rejects(check, counts_by_child_flag)
    assert "'total'" in rejects(check, counts_without_total)
    assert "changed its argument 1 in place" in rejects(check, counts_unfreeze_to_count)
    assert "calls llava_mini.train.count_parameters" in rejects(check, counts_call_reference)
    check = nb06.check_optimizer_groups
    assert "frozen tensors" in rejects(check, groups_all_parameters)
    assert "LLaVA's --mm_projector_lr" in rejects(check, groups_ignore_projector_lr)
    assert "empty group" in rejects(check, groups_keep_empty)
    assert "more than one group" in rejects(check, groups_projector_twice)
    assert "changed its argument 1 in place" in rejects(check, groups_unfreeze_model)
    check = nb06.check_stage1_loss
    assert "cannot run under torch.no_grad()" in rejects(check, loss_lm_under_no_grad)
    assert "cannot run under torch.no_grad()" in rejects(check, loss_everything_under_no_grad)
    assert "records a graph through the vision tower" in rejects(check, loss_tower_in_graph)
    assert "the path from W to the loss is cut" in rejects(check, loss_w_detached)
    assert "differs from the reference" in rejects(check, loss_last_layer)
    assert "changed its argument 2 in place" in rejects(check, loss_pops_labels)
    assert "changed its argument 2 in place" in rejects(check, loss_blanks_placeholders_in_place)
    assert "calls LlavaMini.forward" in rejects(check, loss_calls_forward)


def test_study_q3_key():
    for answer in ("acefi", "a, c, e, f and i", ["i", "f", "e", "c", "a"], "(A) (C) (E) (F) (I)"):
        assert keys.check_answer("nb06.study_q3", answer)
    for answer in ("acef", "acefgi", "abcdefghi", "acefhi"):
        assert not keys.check_answer("nb06.study_q3", answer)
