"""LLaVA's two stages (§4.2): what each stage trains, what it reads, and the stage job."""

import pytest
import torch

from llava_mini import stages, world
from llava_mini.stages import freeze
from llava_mini.tokenizer import load_tokenizer
from llava_mini.train import TrainConfig, count_parameters, fit
from test_train import batch, tiny_model


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def one_step(model, stage: int) -> dict[str, torch.Tensor]:
    freeze(model, stage)
    before = snapshot(model)
    fit(model, iter([batch()]), TrainConfig(steps=1, lr=1e-2, device="cpu", log_every=0, progress=False))
    return before


def test_stage1_trains_only_the_projector_and_w_gets_a_gradient():
    model = tiny_model()
    freeze(model, 1)
    model(**batch()).loss.backward()
    assert model.projector.weight.grad.abs().sum() > 0  # the gradient reached W through the frozen LM
    assert all(p.grad is None for p in model.lm.parameters()) and all(p.grad is None for p in model.vision.parameters())
    model.zero_grad(set_to_none=True)
    before = one_step(model, 1)
    after = model.state_dict()
    for name, value in before.items():
        if name.startswith("projector."):
            assert not torch.equal(value, after[name]), f"{name} did not change in stage 1"
        else:
            assert torch.equal(value, after[name]), f"{name} changed in stage 1"


def test_stage2_trains_projector_and_lm_but_never_the_vision_tower():
    model = tiny_model()
    before = one_step(model, 2)
    after = model.state_dict()
    for name in ("projector.weight", "projector.bias", "lm.embed_tokens.weight", "lm.lm_head.weight",
                 "lm.layers.0.self_attn.q_proj.weight"):
        assert not torch.equal(before[name], after[name]), f"{name} did not change in stage 2"
    for name, value in before.items():
        if name.startswith("vision."):
            assert torch.equal(value, after[name]), f"{name} changed in stage 2"


def test_trainable_counts_per_stage():
    model = tiny_model()
    sizes = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    stage1, stage2 = freeze(model, 1), freeze(model, 2)
    assert stage1["projector"] == (sizes["projector"], sizes["projector"]) == (16 * 32 + 32,) * 2
    assert stage1["lm"] == (0, sizes["lm"]) and stage1["vision"] == (0, sizes["vision"])
    assert stage1["total"] == (sizes["projector"], sum(sizes.values()))
    assert stage2["lm"] == (sizes["lm"],) * 2 and stage2["vision"] == (0, sizes["vision"])
    assert stage2["total"][0] == sizes["projector"] + sizes["lm"] == sum(
        p.numel() for p in model.parameters() if p.requires_grad)
    assert count_parameters(model) == stage2
    with pytest.raises(ValueError, match="stage must be 1"):
        freeze(model, 3)


def test_train_lm_overrides_the_stage_for_the_lm_only():
    model = tiny_model()
    frozen_lm, lm_in_stage1 = freeze(model, 2, train_lm=False), freeze(model, 1, train_lm=True)
    assert frozen_lm == freeze(model, 1) and lm_in_stage1 == freeze(model, 2)


def test_stage2_examples_can_put_the_image_after_the_question():
    tokenizer, seeds = load_tokenizer(), world.split_seeds("train", 2)
    before = stages.examples(2, seeds, tokenizer, 4, types=("conversation",))
    after = stages.examples(2, seeds, tokenizer, 4, types=("conversation",), image="after")
    image = tokenizer.image_token_id
    for b, a in zip(before, after):
        supervised = [[t for t in x.sample.labels if t != -100] for x in (b, a)]
        assert supervised[0] == supervised[1]  # the same answers to learn
        first_b, first_a = b.sample.input_ids.index(image), a.sample.input_ids.index(image)
        assert first_a > first_b and a.sample.input_ids.count(image) == 4


class _Stop(Exception):
    pass


def test_train_reads_each_type_from_its_own_number_of_scenes(monkeypatch):
    calls = []
    monkeypatch.setattr(stages, "examples", lambda stage, seeds, *a, types, **k: calls.append((seeds, types)) or [])
    monkeypatch.setattr(stages, "Batches", lambda *a, **k: (_ for _ in ()).throw(_Stop()))
    with pytest.raises(_Stop):
        stages.train(tiny_model(), 2, TrainConfig(steps=1), {"conversation": 6, "detail": 3, "complex_reasoning": 3},
                         log=None)
    assert calls == [(world.split_seeds("train", 3), ("detail", "complex_reasoning")),
                     (world.split_seeds("train", 6), ("conversation",))]
    with pytest.raises(ValueError, match=r"no number of scenes for \['detail'\]"):
        stages.train(tiny_model(), 2, TrainConfig(steps=1), {"conversation": 6}, types=("conversation", "detail"),
                         log=None)


def test_stage1_reads_captions_and_stage2_the_instruction_types():
    tokenizer, seeds = load_tokenizer(), world.split_seeds("train", 2)
    captions = stages.examples(1, seeds, tokenizer, 9)
    assert len(captions) == 2 and all("USER" not in tokenizer.decode(e.sample.input_ids) for e in captions)
    chats = stages.examples(2, seeds, tokenizer, 9, types=("conversation", "detail"))
    assert len(chats) == 4 and all("USER:" in tokenizer.decode(e.sample.input_ids) for e in chats)
    with pytest.raises(ValueError, match="unknown instruction types"):
        stages.examples(2, seeds, tokenizer, 9, types=("captions",))
    with pytest.raises(ValueError, match="stage must be 1"):
        stages.examples(3, seeds, tokenizer, 9)
