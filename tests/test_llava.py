"""LlavaMini: placeholder splicing, answer-token loss and its normalisation, gradients, generation."""

import pytest
import torch
from torch import nn

from llava_mini.llava import LlavaConfig, LlavaMini
from llava_mini.lm import LMConfig
from llava_mini.vision import VisionConfig

V, IMG, PAD, EOS = 40, 39, 0, 1


def tiny_config(**kw) -> LlavaConfig:
    vision = VisionConfig(image_size=16, patch_size=8, width=16, layers=2, heads=2)  # N = 4 patches
    lm = LMConfig(vocab_size=V, dim=32, layers=2, heads=4, kv_heads=2, hidden=48, max_seq_len=64)
    return LlavaConfig(**{"vision": vision, "lm": lm, "image_token_id": IMG, "pad_token_id": PAD,
                          "eos_token_id": EOS, **kw})


def tiny_model(seed: int = 0, **kw) -> LlavaMini:
    torch.manual_seed(seed)
    model = LlavaMini(tiny_config(**kw)).eval()
    for name, p in model.lm.named_parameters():  # larger weights: decisive greedy choices
        if "norm" not in name:
            nn.init.normal_(p, std=0.3)
    return model


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def sample(*parts) -> list[int]:
    """parts: ints (text ids) and "img" (one image: N placeholders)."""
    return [i for p in parts for i in ([IMG] * 4 if p == "img" else [p])]


def right_pad(rows: list[list[int]], labels: list[list[int]] | None = None):
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), PAD)
    mask = torch.zeros_like(ids)
    lab = torch.full_like(ids, -100)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
        lab[i, : len(row)] = torch.tensor(labels[i] if labels else row)
    return ids, mask, lab


def test_images_fill_their_own_runs():
    model = tiny_model()
    pix = images(3)
    ids, _, _ = right_pad([sample(5, "img", 6, 7, "img", 8), sample("img", 9)])  # images 0, 1 | 2
    embeds = model.embed(ids, pix)
    h_v = model.encode_images(pix)  # (3, 4, 32)
    torch.testing.assert_close(embeds[0, 1:5], h_v[0])
    torch.testing.assert_close(embeds[0, 7:11], h_v[1])
    torch.testing.assert_close(embeds[1, 0:4], h_v[2])
    text = ids != IMG
    torch.testing.assert_close(embeds[text], model.lm.embed_tokens(ids[text]))
    assert not torch.allclose(h_v[0], h_v[1])  # the images really differ


def test_count_mismatch_says_both_counts():
    model = tiny_model()
    ids = torch.tensor([sample(5, "img", 6)])
    with pytest.raises(ValueError, match=r"4 image placeholder tokens.*2 images.*= 8 \(4 tokens per image\)"):
        model(ids, images(2))
    with pytest.raises(ValueError, match="4 image placeholder tokens.*0 images"):
        model(ids)
    with pytest.raises(ValueError, match="3 image placeholder tokens"):
        model(ids[:, :4], images(1))  # a truncated run


def test_mixed_batch_gives_each_sample_its_own_loss():
    """Right-padded batch of different lengths, with a text-only sample: logits and summed losses per
    sample equal those of the sample alone."""
    model = tiny_model()
    rows = [sample(2, 3, 4, 5, 6, 7, 8, 9), sample(2, "img", 10, 11, 12), sample("img", 13, "img", 14, 15, 16, 17)]
    labels = [[-100, -100, 4, 5, 6, 7, 8, 9], [-100] * 5 + [10, 11, 12], [-100] * 10 + [15, 16, 17]]
    pix = images(3)
    image_of_row = [pix[:0], pix[0:1], pix[1:3]]
    ids, mask, lab = right_pad(rows, labels)
    out = model(ids, pix, attention_mask=mask, labels=lab)
    assert int(out.n_supervised) == 6 + 3 + 3  # labels[:, 0] is never a target after the shift
    summed = 0.0
    for i, row in enumerate(rows):
        alone = model(torch.tensor([row]), image_of_row[i] if len(image_of_row[i]) else None,
                      labels=torch.tensor([labels[i]]))
        torch.testing.assert_close(out.logits[i, : len(row)], alone.logits[0], atol=1e-5, rtol=1e-5)
        summed = summed + alone.loss * alone.n_supervised
    torch.testing.assert_close(out.loss * out.n_supervised, summed, atol=1e-5, rtol=1e-5)


def test_gradient_accumulation_equals_one_big_batch():
    torch.manual_seed(0)
    model = LlavaMini(tiny_config()).train()
    rows = [sample("img", 3, 4, 5), sample("img", 6, 7, 8, 9, 10, 11)]  # micro-batch 1
    rows += [sample("img", 12), sample("img", 13, 14, 15, 16)]  # micro-batch 2
    labels = [[-100] * 4 + r[4:] for r in rows]
    pix = images(4)

    def grads(batches):
        model.zero_grad()
        total = sum(int((right_pad(r, l)[2][:, 1:] != -100).sum()) for r, l, _ in batches)
        for r, l, p in batches:
            ids, mask, lab = right_pad(r, l)
            model(ids, p, attention_mask=mask, labels=lab, num_items_in_batch=total).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    big = grads([(rows, labels, pix)])
    accumulated = grads([(rows[:2], labels[:2], pix[:2]), (rows[2:], labels[2:], pix[2:])])
    assert big.keys() == accumulated.keys() and "projector.weight" in big
    for name in big:
        torch.testing.assert_close(big[name], accumulated[name], atol=1e-6, rtol=1e-5)
    # Averaging each micro-batch's mean instead would differ (the micro-batches hold 8 and 4 answer tokens).
    model.zero_grad()
    for r, l, p in [(rows[:2], labels[:2], pix[:2]), (rows[2:], labels[2:], pix[2:])]:
        ids, mask, lab = right_pad(r, l)
        (model(ids, p, attention_mask=mask, labels=lab).loss / 2).backward()
    assert not torch.allclose(model.projector.weight.grad, big["projector.weight"], atol=1e-6)


def test_image_positions_never_take_loss_and_w_learns_through_frozen_lm():
    model = tiny_model()
    ids = torch.tensor([sample(2, "img", 5, 6, 7)])
    labels = torch.tensor([[-100] * 5 + [5, 6, 7]])
    junk = labels.clone()
    junk[0, 1:5] = torch.tensor([3, 4, 5, 6])  # labels on the image slots: ignored anyway
    pix = images(1)
    base = model(ids, pix, labels=labels)
    torch.testing.assert_close(model(ids, pix, labels=junk).loss, base.loss)
    # Stage 1: only W trainable; the answer loss reaches W through the frozen LLM.
    model.requires_grad_(False)
    model.projector.requires_grad_(True)
    model(ids, pix, labels=labels).loss.backward()
    assert model.projector.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.lm.parameters())
    assert all(p.grad is None for p in model.vision.parameters())


def test_generation_cached_uncached_and_left_padded():
    model = tiny_model(seed=1)
    pix = images(3, seed=1)
    prompts = [sample("img", 5, 6), sample(7, "img", 8, 9, 10, 11), sample(12, "img", "img", 13)]
    image_of_row = [pix[0:1], pix[1:1], pix[1:3]]
    prompts[1] = [7, 8, 9, 10, 11]  # a text-only prompt in the batch
    width = max(map(len, prompts))
    ids = torch.full((3, width), PAD)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :], mask[i, width - len(p) :] = torch.tensor(p), 1
    batch = model.generate(ids, pix[[0, 1, 2]], attention_mask=mask, max_new_tokens=8, eos_token_id=-1)
    assert batch.shape == (3, 8)
    for i, p in enumerate(prompts):
        one = torch.tensor([p])
        px = image_of_row[i] if len(image_of_row[i]) else None
        alone = model.generate(one, px, max_new_tokens=8, eos_token_id=-1)
        slow = model.generate(one, px, max_new_tokens=8, eos_token_id=-1, use_cache=False)
        assert torch.equal(batch[i], alone[0]) and torch.equal(alone, slow)


def test_second_turn_on_the_first_turns_cache():
    model = tiny_model(seed=2)
    pix = images(2, seed=2)
    turn1 = torch.tensor([sample(3, "img", 4, 5)])
    turn2 = torch.tensor([sample(6, "img", 7)])  # the second turn brings its own image
    with torch.no_grad():
        first = model(turn1, pix[:1], use_cache=True)
        second = model(turn2, pix[1:], past_kv=first.past_kv, attention_mask=torch.ones(1, 13), use_cache=True)
        full = model(torch.cat([turn1, turn2], 1), pix)
    torch.testing.assert_close(second.logits, full.logits[:, 7:], atol=1e-5, rtol=1e-5)
    answer = model.generate(turn2, pix[1:], past_kv=first.past_kv, max_new_tokens=5,
                            attention_mask=torch.ones(1, 13))
    assert torch.equal(answer, model.generate(torch.cat([turn1, turn2], 1), pix, max_new_tokens=5))


def test_eos_ends_a_row():
    model = tiny_model(seed=4)
    ids = torch.tensor([sample("img", 5, 6), sample("img", 9, 2)])
    free = model.generate(ids, images(2), max_new_tokens=6, eos_token_id=-1)
    eos = int(free[0, 1])
    out = model.generate(ids, images(2), max_new_tokens=6, eos_token_id=eos)
    assert out[0, 1] == eos and (out[0, 2:] == PAD).all()


@pytest.mark.parametrize(
    ("projector", "kw", "tokens"),
    [("mlp2x_gelu", {}, 4), ("resampler", {"projector_args": {"num_queries": 2, "heads": 2}}, 2), ("mean", {}, 1)],
)
def test_projectors_set_the_number_of_image_tokens(projector, kw, tokens):
    model = tiny_model(projector=projector, **kw)
    assert model.num_image_tokens == tokens
    ids = torch.tensor([[2] + [IMG] * tokens + [5, 6]])
    assert model(ids, images(1), labels=ids).loss.isfinite()


def test_cls_projector_needs_the_cls_token():
    with pytest.raises(ValueError, match="select='cls_patch'"):
        tiny_config(projector="cls")
    vision = VisionConfig(image_size=16, patch_size=8, width=16, layers=2, heads=2, select="cls_patch")
    model = LlavaMini(tiny_config(projector="cls", vision=vision))
    assert model.vision.num_image_tokens == 5 and model.num_image_tokens == 1


def test_config_round_trip_and_validation():
    cfg = tiny_config(projector="resampler", projector_args={"num_queries": 3})
    assert LlavaConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="image_token_id"):
        tiny_config(image_token_id=V)


def test_default_sizes():
    """The course's default model: 64-wide 4-layer ViT, 128-wide 4-layer LM, vocabulary ~300."""
    model = LlavaMini(LlavaConfig(lm=LMConfig(vocab_size=300), image_token_id=299, pad_token_id=0))
    counts = {name: sum(p.numel() for p in part.parameters()) for name, part in model.named_children()}
    assert counts == {"vision": 213_632, "projector": 8_320, "lm": 880_768}
    assert model.num_image_tokens == 16
