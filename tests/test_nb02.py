"""Notebook 02's graders bite: the reference passes with one line, a stub is "not done yet", and each
plausible wrong implementation is rejected with a message naming the exercise (tests/test_grading.py's
pattern); the study-question keys accept the right choices in any spelling and reject wrong sets."""

import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from llava_mini import keys
from grader_contract import grader_contract

from llava_mini.grading import nb02, rejects

# --- exercise 2.1: patchify ------------------------------------------------------------------------


def patchify(pixel_values, patch_size):
    return rearrange(pixel_values, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=patch_size, p2=patch_size)


def patchify_channels_last(pixel_values, patch_size):  # right shapes, scrambled values
    return rearrange(pixel_values, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size)


def patchify_column_major_grid(pixel_values, patch_size):
    return rearrange(pixel_values, "b c (h p1) (w p2) -> b (w h) (c p1 p2)", p1=patch_size, p2=patch_size)


def patchify_plain_reshape(pixel_values, patch_size):
    b, c = pixel_values.shape[:2]
    return pixel_values.reshape(b, -1, c * patch_size**2)


def patchify_unfold_transposed(pixel_values, patch_size):  # F.unfold gives (B, C·p·p, N): forgot to transpose
    b = pixel_values.shape[0]
    return F.unfold(pixel_values, patch_size, stride=patch_size).reshape(b, -1, pixel_values.shape[1] * patch_size**2)


# --- exercise 2.2: attention -----------------------------------------------------------------------


def attention(q, k, v, heads):
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)  # (B, h, N, N)
    return rearrange(weights @ v, "b h n d -> b n (h d)")


def attention_no_scale(q, k, v, heads):
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    return rearrange((q @ k.transpose(-2, -1)).softmax(-1) @ v, "b h n d -> b n (h d)")


def attention_scale_by_width(q, k, v, heads):
    d_model = q.shape[-1]
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    return rearrange((q @ k.transpose(-2, -1) / math.sqrt(d_model)).softmax(-1) @ v, "b h n d -> b n (h d)")


def attention_softmax_over_queries(q, k, v, heads):
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-2)
    return rearrange(weights @ v, "b h n d -> b n (h d)")


def attention_causal(q, k, v, heads):
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    return rearrange(F.scaled_dot_product_attention(q, k, v, is_causal=True), "b h n d -> b n (h d)")


def attention_single_head(q, k, v, heads):
    return F.scaled_dot_product_attention(q, k, v)


# --- exercise 2.3: the ViT block -------------------------------------------------------------------


def vit_block(x, block):
    x = x + block.self_attn(block.layer_norm1(x))
    return x + block.mlp(block.layer_norm2(x))


def vit_block_post_ln(x, block):
    x = block.layer_norm1(x + block.self_attn(x))
    return block.layer_norm2(x + block.mlp(x))


def vit_block_one_norm(x, block):
    x = x + block.self_attn(block.layer_norm1(x))
    return x + block.mlp(block.layer_norm1(x))


def vit_block_no_residual(x, block):
    return block.mlp(block.layer_norm2(block.self_attn(block.layer_norm1(x))))


def vit_block_normalised_stream(x, block):
    x = block.layer_norm1(x)
    x = x + block.self_attn(x)
    return x + block.mlp(block.layer_norm2(x))


def vit_block_parallel(x, block):  # GPT-J-style parallel sub-layers: not CLIP's
    return x + block.self_attn(block.layer_norm1(x)) + block.mlp(block.layer_norm2(x))


# --- exercise 2.4: CLIP's loss ---------------------------------------------------------------------


def clip_loss(image_features, text_features, logit_scale):
    image = F.normalize(image_features, dim=-1)
    text = F.normalize(text_features, dim=-1)
    logits = logit_scale.clamp(max=math.log(100)).exp() * image @ text.T  # (B, B)
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def loss_one_direction(image_features, text_features, logit_scale):
    image, text = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
    logits = logit_scale.clamp(max=math.log(100)).exp() * image @ text.T
    return F.cross_entropy(logits, torch.arange(len(logits)))


def loss_without_temperature(image_features, text_features, logit_scale):
    image, text = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
    logits = image @ text.T
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def loss_scale_not_exponentiated(image_features, text_features, logit_scale):
    image, text = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
    logits = logit_scale * image @ text.T
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def loss_unclamped(image_features, text_features, logit_scale):
    image, text = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
    logits = logit_scale.exp() * image @ text.T
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def loss_unnormalised(image_features, text_features, logit_scale):
    logits = logit_scale.clamp(max=math.log(100)).exp() * image_features @ text_features.T
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def loss_temperature_detached(image_features, text_features, logit_scale):
    scale = math.exp(min(logit_scale.item(), math.log(100)))
    image, text = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
    logits = scale * image @ text.T
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def loss_clamp_kills_gradient_everywhere(image_features, text_features, logit_scale):
    scale = torch.clamp(logit_scale.exp(), max=100.0).detach()
    image, text = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
    logits = scale * image @ text.T
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


# --- study questions -------------------------------------------------------------------------------


def answer_study_q16():
    return "a, b, d, h"


def q16_last_block_untrained():  # (c): the last block's weights still learn through the CLS path
    return "abcdh"


def q16_minus_two_is_second_block():
    return "bdeh"


def q16_without_mean_pool():
    return "abd"


def answer_study_q14():
    return "b, d, f"


def q14_one_word_per_token():
    return "abdf"


def q14_lm_predicts_visual_tokens():
    return "bcdf"


def q14_no_context_mixing():
    return "bd"


RIGHT = {
    "exercise 2.1": patchify,
    "exercise 2.2": attention,
    "exercise 2.3": vit_block,
    "exercise 2.4": clip_loss,
    "study question 16": answer_study_q16,
    "study question 14": answer_study_q14,
}
WRONG = {
    "exercise 2.1": [patchify_channels_last, patchify_column_major_grid, patchify_plain_reshape,
                     patchify_unfold_transposed],
    "exercise 2.2": [attention_no_scale, attention_scale_by_width, attention_softmax_over_queries, attention_causal,
                     attention_single_head],
    "exercise 2.3": [vit_block_post_ln, vit_block_one_norm, vit_block_no_residual, vit_block_normalised_stream,
                     vit_block_parallel],
    "exercise 2.4": [loss_one_direction, loss_without_temperature, loss_scale_not_exponentiated, loss_unclamped,
                     loss_unnormalised, loss_temperature_detached, loss_clamp_kills_gradient_everywhere],
    "study question 16": [q16_last_block_untrained, q16_minus_two_is_second_block, q16_without_mean_pool],
    "study question 14": [q14_one_word_per_token, q14_lm_predicts_visual_tokens, q14_no_context_mixing],
}
(test_every_grader_has_right_and_wrong_implementations, test_right_answer_prints_one_fixed_line,
 test_wrong_implementation_is_rejected, test_stub_is_not_done_yet) = grader_contract("llava_mini.grading.nb02",
                                                                                     RIGHT, WRONG)


def test_hints_name_the_mistake():
    assert "channel first, (c p1 p2)" in rejects(nb02.check_patchify, patchify_channels_last)
    assert "raster order" in rejects(nb02.check_patchify, patchify_column_major_grid)
    assert "a reshape alone" in rejects(nb02.check_patchify, patchify_plain_reshape)
    assert "divided by sqrt(d)" in rejects(nb02.check_attention, attention_no_scale)
    assert "not 1/sqrt(D)" in rejects(nb02.check_attention, attention_scale_by_width)
    assert "over the keys" in rejects(nb02.check_attention, attention_softmax_over_queries)
    assert "bidirectional" in rejects(nb02.check_attention, attention_causal)
    assert "split D into heads" in rejects(nb02.check_attention, attention_single_head)
    assert "post-LN" in rejects(nb02.check_vit_block, vit_block_post_ln)
    assert "its own norm" in rejects(nb02.check_vit_block, vit_block_one_norm)
    assert "residual" in rejects(nb02.check_vit_block, vit_block_no_residual)
    assert "not to the normalised x" in rejects(nb02.check_vit_block, vit_block_normalised_stream)
    assert "only image->text" in rejects(nb02.check_clip_loss, loss_one_direction)
    assert "exp(logit_scale) (1/temperature)" in rejects(nb02.check_clip_loss, loss_without_temperature)
    assert "*log* of the scale" in rejects(nb02.check_clip_loss, loss_scale_not_exponentiated)
    assert "clamps the scale at 100" in rejects(nb02.check_clip_loss, loss_unclamped)
    assert "normalise both" in rejects(nb02.check_clip_loss, loss_unnormalised)
    assert "differentiable in logit_scale" in rejects(nb02.check_clip_loss, loss_temperature_detached)


def test_the_reference_patchify_is_the_conv_patch_embedding_of_the_vision_tower():
    from llava_mini.vision import VisionConfig, VisionTower

    tower = VisionTower(VisionConfig(image_size=32, patch_size=8, width=16, heads=2, layers=1))
    x = torch.randn(2, 3, 32, 32)
    conv = torch.nn.Conv2d(3, 16, 8, stride=8, bias=False)
    with torch.no_grad():
        conv.weight.copy_(tower.patch_embedding.proj.weight.reshape(16, 3, 8, 8))
        assert torch.allclose(tower.patch_embedding(x), patchify(x, 8) @ conv.weight.reshape(16, -1).T, atol=1e-6)
        assert torch.allclose(tower.patch_embedding(x), rearrange(conv(x), "b d h w -> b (h w) d"), atol=1e-5)


@pytest.mark.parametrize("answer", ["abdh", "HDBA", "a, b, d, h", ["h", "d", "b", "a"]])
def test_study_q16_key_accepts_the_right_choices(answer):
    assert keys.check_answer("nb02.study_q16", answer)


@pytest.mark.parametrize("answer", ["abd", "abcdh", "abdeh", "abdgh", "bdh", "abcdefgh", "", None])
def test_study_q16_key_rejects_wrong_sets(answer):
    assert not keys.check_answer("nb02.study_q16", answer)


@pytest.mark.parametrize("answer", ["bdf", "FDB", "b, d, f", ["f", "d", "b"]])
def test_study_q14_key_accepts_the_right_choices(answer):
    assert keys.check_answer("nb02.study_q14", answer)


@pytest.mark.parametrize("answer", ["bd", "bdf g", "abdf", "bcdf", "bdef", "bdfh", "abcdefgh", "", None])
def test_study_q14_key_rejects_wrong_sets(answer):
    assert not keys.check_answer("nb02.study_q14", answer)
