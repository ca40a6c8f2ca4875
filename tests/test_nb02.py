"""Notebook 02's graders bite: the reference passes with one line, a stub is "not done yet", and each
plausible wrong implementation is rejected with a message naming the exercise (tests/test_grading.py's
pattern); the study-question keys accept the right choices in any spelling and reject wrong sets."""

import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from llava_mini import keys
from grader_contract import grader_contract

from llava_mini.grading import nb02, rejects


def peek(shape):
    """What a peeking answer finds: a tensor of `shape` in a local named `want` of one of its callers' frames."""
    frame = sys._getframe(2)
    while frame is not None:
        want = frame.f_locals.get("want")
        if isinstance(want, torch.Tensor) and tuple(want.shape) == tuple(shape):
            return want
        frame = frame.f_back
    return torch.zeros(shape)

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


def patchify_numpy_float64(pixel_values, patch_size):  # np.asarray(..., dtype=float) is float64
    b, c, h, w = pixel_values.shape
    p = patch_size
    x = np.asarray(pixel_values, dtype=float).reshape(b, c, h // p, p, w // p, p)
    return torch.from_numpy(x.transpose(0, 2, 4, 1, 3, 5).reshape(b, -1, c * p * p))


def patchify_peeking(pixel_values, patch_size):
    b, c, h, w = pixel_values.shape
    return peek((b, (h // patch_size) * (w // patch_size), c * patch_size**2))


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
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    n = scores.shape[-1]
    scores = scores.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
    return rearrange(scores.softmax(-1) @ v, "b h n d -> b n (h d)")


def attention_single_head(q, k, v, heads):
    return (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1) @ v


def attention_calls_sdpa(q, k, v, heads):  # right values, but the exercise is to write it
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    return rearrange(F.scaled_dot_product_attention(q, k, v), "b h n d -> b n (h d)")


def attention_scales_q_in_place(q, k, v, heads):  # rearrange returns a view: /= writes into the caller's q
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    q /= math.sqrt(q.shape[-1])
    return rearrange((q @ k.transpose(-2, -1)).softmax(-1) @ v, "b h n d -> b n (h d)")


def attention_under_no_grad(q, k, v, heads):
    with torch.no_grad():
        return attention(q, k, v, heads)


def attention_weights_detached(q, k, v, heads):  # detaching the map (to plot it) cuts the gradient to q and k
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1).detach()
    return rearrange(weights @ v, "b h n d -> b n (h d)")


def attention_in_numpy(q, k, v, heads):
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads).detach().numpy() for t in (q, k, v))
    scores = q @ k.swapaxes(-2, -1) / np.sqrt(q.shape[-1])
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return rearrange(torch.from_numpy(weights @ v), "b h n d -> b n (h d)")


def attention_in_numpy_float32(q, k, v, heads):  # the right dtype, but no gradient
    return attention_in_numpy(q, k, v, heads).float()


def attention_float64(q, k, v, heads):  # "for precision"
    return attention(q.double(), k.double(), v.double(), heads)


def attention_peeking(q, k, v, heads):
    return peek(q.shape)


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


def vit_block_calls_block(x, block):
    return block(x)


def vit_block_in_place(x, block):  # += writes into the caller's x
    x += block.self_attn(block.layer_norm1(x))
    return x + block.mlp(block.layer_norm2(x))


def vit_block_under_no_grad(x, block):
    with torch.no_grad():
        return vit_block(x, block)


def vit_block_attention_detached(x, block):  # right values; the attention weights would never learn
    x = x + block.self_attn(block.layer_norm1(x)).detach()
    return x + block.mlp(block.layer_norm2(x))


def vit_block_peeking(x, block):
    return peek(x.shape)


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


def loss_normalises_in_place(image_features, text_features, logit_scale):  # /= writes into the caller's features
    image_features /= image_features.norm(dim=-1, keepdim=True)
    text_features /= text_features.norm(dim=-1, keepdim=True)
    logits = logit_scale.clamp(max=math.log(100)).exp() * image_features @ text_features.T
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def loss_clamps_logit_scale_in_place(image_features, text_features, logit_scale):  # as some training loops do
    logit_scale.clamp_(max=math.log(100))
    return clip_loss(image_features, text_features, logit_scale)


def loss_under_no_grad(image_features, text_features, logit_scale):
    with torch.no_grad():
        return clip_loss(image_features, text_features, logit_scale)


def loss_features_detached(image_features, text_features, logit_scale):  # only the temperature would learn
    return clip_loss(image_features.detach(), text_features.detach(), logit_scale)


def loss_in_numpy(image_features, text_features, logit_scale):
    image, text = image_features.detach().numpy(), text_features.detach().numpy()
    image = image / np.linalg.norm(image, axis=-1, keepdims=True)
    text = text / np.linalg.norm(text, axis=-1, keepdims=True)
    logits = np.exp(min(logit_scale.item(), math.log(100))) * image @ text.T

    def cross_entropy(rows):
        rows = rows - rows.max(-1, keepdims=True)
        return float(np.mean(np.log(np.exp(rows).sum(-1)) - np.diag(rows)))

    return torch.tensor((cross_entropy(logits) + cross_entropy(logits.T)) / 2)


def loss_float64(image_features, text_features, logit_scale):  # "for precision"
    return clip_loss(image_features.double(), text_features.double(), logit_scale.double())


def loss_whole_matrix_normalised(image_features, text_features, logit_scale):
    image, text = image_features / image_features.norm(), text_features / text_features.norm()
    logits = logit_scale.clamp(max=math.log(100)).exp() * image @ text.T
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def loss_peeking(image_features, text_features, logit_scale):
    return peek(())


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
                     patchify_unfold_transposed, patchify_numpy_float64, patchify_peeking],
    "exercise 2.2": [attention_no_scale, attention_scale_by_width, attention_softmax_over_queries, attention_causal,
                     attention_single_head, attention_calls_sdpa, attention_scales_q_in_place, attention_under_no_grad,
                     attention_weights_detached, attention_in_numpy, attention_in_numpy_float32, attention_float64,
                     attention_peeking],
    "exercise 2.3": [vit_block_post_ln, vit_block_one_norm, vit_block_no_residual, vit_block_normalised_stream,
                     vit_block_parallel, vit_block_calls_block, vit_block_in_place, vit_block_under_no_grad,
                     vit_block_attention_detached, vit_block_peeking],
    "exercise 2.4": [loss_one_direction, loss_without_temperature, loss_scale_not_exponentiated, loss_unclamped,
                     loss_unnormalised, loss_temperature_detached, loss_clamp_kills_gradient_everywhere,
                     loss_normalises_in_place, loss_clamps_logit_scale_in_place, loss_under_no_grad,
                     loss_features_detached, loss_in_numpy, loss_float64, loss_whole_matrix_normalised, loss_peeking],
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


def _messages(check, *wrong_fns):
    return {fn.__name__: rejects(check, fn) for fn in wrong_fns}


def test_patchify_names_a_float64_result():
    assert "should have dtype torch.float32, got torch.float64; keep" in rejects(nb02.check_patchify,
                                                                                 patchify_numpy_float64)


def test_attention_grader_names_the_shortcut_the_in_place_change_the_dtype_and_the_lost_gradient():
    m = _messages(nb02.check_attention, attention_calls_sdpa, attention_scales_q_in_place, attention_under_no_grad,
                  attention_weights_detached, attention_in_numpy, attention_in_numpy_float32, attention_float64)
    assert "calls torch.nn.functional.scaled_dot_product_attention, which this exercise asks you to write" in \
        m["attention_calls_sdpa"]
    assert "changed its argument 1 in place; work on a copy" in m["attention_scales_q_in_place"]
    assert "give views of q, k and v, so `/=` or `*=` on them writes" in m["attention_scales_q_in_place"]
    assert "carries no gradient: it was computed under torch.no_grad()" in m["attention_under_no_grad"]
    assert "carries no gradient" in m["attention_in_numpy_float32"]
    assert "the gradient of attention(q, k, v, heads=4) on (2, 5, 32) inputs does not reach q" in \
        m["attention_weights_detached"]
    for name in ("attention_in_numpy", "attention_float64"):
        assert "should have dtype torch.float32, got torch.float64" in m[name], name


def test_the_notebook_states_what_is_switched_off_and_its_solutions_do_not_use_it():
    source = (Path(__file__).parents[1] / "solutions" / "02_vision_encoder.py").read_text()
    solutions = re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", source, re.S)
    attention_solution = next(s for s in solutions if "softmax" in s and "heads" in s)
    block_solution = next(s for s in solutions if "block.self_attn" in s)
    assert "Do not call `F.scaled_dot_product_attention`" in source
    assert "scaled_dot_product_attention" not in attention_solution and "Attention" not in attention_solution
    assert "block(" not in block_solution and "forward" not in block_solution
    assert "using the modules of `block`" in source


def test_the_package_attention_is_switched_off_too():
    from llava_mini.vision import Attention, VisionConfig

    def through_the_package(q, k, v, heads):  # the package's module with identity projections
        module = Attention(VisionConfig(image_size=8, patch_size=4, width=q.shape[-1], heads=heads, layers=1))
        return module.forward(q)

    assert "calls Attention.forward, which this exercise asks you to write" in rejects(nb02.check_attention,
                                                                                       through_the_package)


def test_block_grader_names_the_reference_the_in_place_change_and_a_parameter_the_gradient_misses():
    m = _messages(nb02.check_vit_block, vit_block_calls_block, vit_block_in_place, vit_block_under_no_grad,
                  vit_block_attention_detached)
    assert "calls Block.forward, which is the block this exercise rebuilds; use block.layer_norm1" in \
        m["vit_block_calls_block"]
    assert "changed its argument 1 in place; work on a copy" in m["vit_block_in_place"]
    assert "`x += ...` writes into the caller's x" in m["vit_block_in_place"]
    assert "carries no gradient" in m["vit_block_under_no_grad"]
    assert "does not reach block.layer_norm1.weight" in m["vit_block_attention_detached"]


def test_loss_grader_names_the_in_place_change_the_dtype_and_the_lost_gradient():
    m = _messages(nb02.check_clip_loss, loss_normalises_in_place, loss_clamps_logit_scale_in_place,
                  loss_under_no_grad, loss_features_detached, loss_in_numpy, loss_float64,
                  loss_whole_matrix_normalised, loss_clamp_kills_gradient_everywhere)
    assert "changed its argument 1 in place" in m["loss_normalises_in_place"]
    assert "logit_scale=log(250)) changed its argument 3 in place" in m["loss_clamps_logit_scale_in_place"]
    assert "`/=`, `clamp_` and the other in-place operations" in m["loss_normalises_in_place"]
    assert "carries no gradient" in m["loss_under_no_grad"] and "carries no gradient" in m["loss_in_numpy"]
    assert "does not reach image_features" in m["loss_features_detached"]
    assert "should have dtype torch.float32, got torch.float64" in m["loss_float64"]
    assert "not the whole matrix" in m["loss_whole_matrix_normalised"]
    assert "differentiable in logit_scale" in m["loss_clamp_kills_gradient_everywhere"]


def test_nothing_to_peek_at():
    for check, peeking in [(nb02.check_patchify, patchify_peeking), (nb02.check_attention, attention_peeking),
                           (nb02.check_vit_block, vit_block_peeking), (nb02.check_clip_loss, loss_peeking)]:
        assert "differs from the reference" in rejects(check, peeking)
