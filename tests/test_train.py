"""The trainer and LLaVA's two stages (§4.2): what each stage trains, the schedule, gradient accumulation."""

import math

import pytest
import torch

from llava_mini.corpora import llava_loss
from llava_mini.llava import LlavaConfig, LlavaMini
from llava_mini.lm import LMConfig
from llava_mini.train import TrainConfig, cosine_lr, count_parameters, fit, set_stage
from llava_mini.vision import VisionConfig

V, IMG, PAD, EOS = 40, 39, 0, 1
N_IMG = 4  # 16-px images, 8-px patches


def tiny_model(seed: int = 0) -> LlavaMini:
    torch.manual_seed(seed)
    vision = VisionConfig(image_size=16, patch_size=8, width=16, layers=2, heads=2)
    lm = LMConfig(vocab_size=V, dim=32, layers=2, heads=4, hidden=48, max_seq_len=64)
    return LlavaMini(LlavaConfig(vision=vision, lm=lm, image_token_id=IMG, pad_token_id=PAD, eos_token_id=EOS))


def batch(lengths=(6, 9, 3), seed: int = 0) -> dict:
    """Right-padded `<s> image answer </s>` rows with answers of the given lengths, labels on the answers."""
    g = torch.Generator().manual_seed(seed)
    width = 1 + N_IMG + max(lengths) + 1
    ids = torch.full((len(lengths), width), PAD)
    labels = torch.full_like(ids, -100)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        answer = torch.randint(5, IMG, (n,), generator=g).tolist() + [EOS]
        row = [2] + [IMG] * N_IMG + answer
        ids[i, :len(row)], mask[i, :len(row)] = torch.tensor(row), 1
        labels[i, 1 + N_IMG:len(row)] = torch.tensor(answer)
    pixels = torch.randn(len(lengths), 3, 16, 16, generator=g)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "pixel_values": pixels}


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def one_step(model, stage: int) -> dict[str, torch.Tensor]:
    set_stage(model, stage)
    before = snapshot(model)
    fit(model, iter([batch()]), TrainConfig(steps=1, lr=1e-2, device="cpu", log_every=0, progress=False), llava_loss)
    return before


def test_stage1_trains_only_the_projector_and_w_gets_a_gradient():
    model = tiny_model()
    set_stage(model, 1)
    llava_loss(model, batch(), None).backward()
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
    stage1, stage2 = set_stage(model, 1), set_stage(model, 2)
    assert stage1["projector"] == (sizes["projector"], sizes["projector"]) == (16 * 32 + 32,) * 2
    assert stage1["lm"] == (0, sizes["lm"]) and stage1["vision"] == (0, sizes["vision"])
    assert stage1["total"] == (sizes["projector"], sum(sizes.values()))
    assert stage2["lm"] == (sizes["lm"],) * 2 and stage2["vision"] == (0, sizes["vision"])
    assert stage2["total"][0] == sizes["projector"] + sizes["lm"] == sum(
        p.numel() for p in model.parameters() if p.requires_grad)
    assert count_parameters(model) == stage2
    with pytest.raises(ValueError, match="stage must be 1"):
        set_stage(model, 3)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    peak, total, warmup = 1e-3, 100, 10
    lrs = [cosine_lr(s, total, warmup, peak) for s in range(total + 1)]
    assert lrs[0] == pytest.approx(peak / warmup) and lrs[warmup - 1] == pytest.approx(peak)
    assert all(a < b for a, b in zip(lrs[:warmup - 1], lrs[1:warmup]))  # linear warm-up
    assert lrs[warmup] == pytest.approx(peak)
    assert lrs[warmup + (total - warmup) // 2] == pytest.approx(peak / 2)  # half-way down the cosine
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:])) and lrs[total] == pytest.approx(0)
    assert math.isclose(cosine_lr(total + 5, total, warmup, peak), 0.0, abs_tol=1e-12)


def test_a_late_decay_holds_the_peak_then_decays_to_zero():
    peak, total, warmup, decay = 1e-3, 100, 10, 20
    lrs = [cosine_lr(s, total, warmup, peak, decay) for s in range(total + 1)]
    assert lrs[:warmup] == [cosine_lr(s, total, warmup, peak) for s in range(warmup)]  # the same warm-up
    assert all(lr == pytest.approx(peak) for lr in lrs[warmup:total - decay + 1])  # stable
    assert lrs[total - decay // 2] == pytest.approx(peak / 2) and lrs[total] == pytest.approx(0)
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))


def accumulated_grads(micro_batches: list[dict], grad_accum: int) -> dict[str, torch.Tensor]:
    """The gradient `fit` hands the optimizer in its first step (read by post-accumulate hooks)."""
    model = tiny_model()
    set_stage(model, 2)
    grads = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(lambda p, name=name: grads.__setitem__(name, p.grad.clone()))
    cfg = TrainConfig(steps=1, grad_accum=grad_accum, max_grad_norm=None, device="cpu", log_every=0, progress=False)
    fit(model, iter(micro_batches), cfg, llava_loss)
    return grads


def test_gradient_accumulation_equals_one_big_batch():
    """Micro-batches with different numbers of answer tokens: dividing each by the step's total token count
    (num_items_in_batch) gives the big batch's gradient; averaging per-micro-batch means would not."""
    lengths = (2, 9, 3, 12)
    whole = batch(lengths)
    halves = [{k: v[rows] for k, v in whole.items()} for rows in (slice(0, 1), slice(1, 4))]
    big, accumulated = accumulated_grads([whole], 1), accumulated_grads(halves, 2)
    assert big.keys() == accumulated.keys() and len(big) > 0
    for name in big:
        torch.testing.assert_close(accumulated[name], big[name], rtol=1e-4, atol=1e-6, msg=name)


class _Stop(Exception):
    pass


def test_train_stage_reads_each_type_from_its_own_number_of_scenes(monkeypatch):
    from llava_mini import corpora, jobs, world

    calls = []
    monkeypatch.setattr(corpora, "llava_examples", lambda stage, seeds, *a, types, **k: calls.append((seeds, types)) or [])
    monkeypatch.setattr(corpora, "Batches", lambda *a, **k: (_ for _ in ()).throw(_Stop()))
    with pytest.raises(_Stop):
        jobs.train_stage(tiny_model(), 2, TrainConfig(steps=1), {"conversation": 6, "detail": 3, "complex_reasoning": 3},
                         log=None)
    assert calls == [(world.split_seeds("train", 3), ("detail", "complex_reasoning")),
                     (world.split_seeds("train", 6), ("conversation",))]
    with pytest.raises(ValueError, match=r"no number of scenes for \['detail'\]"):
        jobs.train_stage(tiny_model(), 2, TrainConfig(steps=1), {"conversation": 6}, types=("conversation", "detail"),
                         log=None)
