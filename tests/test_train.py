"""The trainer: the schedule, gradient accumulation, the evaluation hook; LLaVA's stages are tests/test_stages.py."""

import math

import pytest
import torch

from llava_mini.llava import LlavaConfig, LlavaMini
from llava_mini.lm import LMConfig
from llava_mini.stages import freeze
from llava_mini.train import TrainConfig, cosine_lr, fit
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
    freeze(model, 2)
    grads = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(lambda p, name=name: grads.__setitem__(name, p.grad.clone()))
    cfg = TrainConfig(steps=1, grad_accum=grad_accum, max_grad_norm=None, device="cpu", log_every=0, progress=False)
    fit(model, iter(micro_batches), cfg)
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


def test_decay_zero_is_a_constant_rate_after_the_warm_up():
    lrs = [cosine_lr(s, 100, 10, 1e-3, 0) for s in range(101)]
    assert lrs[:10] == [cosine_lr(s, 100, 10, 1e-3) for s in range(10)] and set(lrs[10:]) == {1e-3}


def test_fit_calls_the_model_for_its_loss_and_evaluates_on_schedule():
    """`fit` reads the loss the model returns; `evaluate` runs every `eval_every` steps and after the last, in
    eval mode without gradients, and stops training when it returns True."""
    model = tiny_model()
    freeze(model, 2)
    calls = []

    def evaluate(step, losses):
        calls.append((step, len(losses), model.training, torch.is_grad_enabled()))
        return step == 4

    cfg = TrainConfig(steps=6, eval_every=2, device="cpu", log_every=0, progress=False)
    losses = fit(model, iter([batch(seed=s) for s in range(6)]), cfg, evaluate=evaluate)
    assert calls == [(2, 2, False, False), (4, 4, False, False)] and len(losses) == 4
    first = model(**batch(seed=0), num_items_in_batch=None).loss.item()
    assert losses[0] == pytest.approx(tiny_model()(**batch(seed=0)).loss.item()) and first < losses[0]
