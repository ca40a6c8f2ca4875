"""Graders of notebook 02, the vision encoder (`solutions/02_vision_encoder.ipynb`).

- exercise 2.1 `patchify(pixel_values, patch_size)`: X_v (B, C, H, W) -> (B, N, C·p·p), patches in raster
  order, each flattened in the (c, p1, p2) order of CLIP's `Conv2d(3, D, p, stride=p, bias=False)` weight,
  so that `patchify(x) @ w.reshape(D, -1).T` is the convolution.
- exercise 2.2 `attention(q, k, v, heads)`: bidirectional multi-head scaled dot-product attention on
  (B, N, D) projections, heads split as "(h d)"; compared with `F.scaled_dot_product_attention`, which (with
  `vision.Attention.forward`) is switched off while the learner's code runs.
- exercise 2.3 `vit_block(x, block)`: the pre-LN block of CLIP's ViT (`vision.Block`), from its modules
  (`Block.forward` switched off while the learner's code runs).
- exercise 2.4 `clip_loss(image_features, text_features, logit_scale)`: CLIP's symmetric InfoNCE with the
  learnable temperature exp(logit_scale) clamped at 100 (`clip.contrastive_loss` on normalised features).
- study question 16 and study question 14: the letters of the true statements (keys `nb02.study_q16`,
  `nb02.study_q14`).

Every check runs the learner's code through `grading.call` (an argument changed in place is named, with the
exercise's usual cause), computes the reference only after that call (nothing in a grader's frame to peek at: each
case runs in its own function), checks dtype and shape before values, and for 2.2-2.4, which train, the gradients
with respect to the inputs (and the block's parameters, and logit_scale) through `expect_same_gradient`. Inputs
are non-leaf tensors so that an in-place change is reported as such rather than refused by autograd. Where a
wrong answer matches a known mistake, the hint names that mistake.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from llava_mini.clip import contrastive_loss
from llava_mini.grading import (call, expect, expect_close, expect_dtype, expect_same_gradient, expect_shape, forbidden,
                                grader, rng)
from llava_mini.keys import require_answer
from llava_mini.vision import Attention, Block, VisionConfig


def _matches(got: torch.Tensor, candidate: torch.Tensor) -> bool:
    return got.shape == candidate.shape and torch.allclose(got.detach().double(), candidate.double(), atol=1e-5)


def _first_known(got: torch.Tensor, mistakes: dict[str, torch.Tensor]) -> str | None:
    """The hint of the first known mistake whose output `got` reproduces."""
    return next((hint for hint, out in mistakes.items() if _matches(got, out)), None)


def _call(fn, *args, what: str, in_place: str):
    """`grading.call`, with a hint on how this exercise's inputs get changed in place appended to that message."""
    try:
        return call(fn, *args, what=what)
    except AssertionError as err:
        if " in place; " not in str(err):
            raise
        raise AssertionError(f"{err}; {in_place}") from None


# --- exercise 2.1 ----------------------------------------------------------------------------------

def _patch_mistakes(x: torch.Tensor, p: int) -> dict[str, torch.Tensor]:
    b, c = x.shape[:2]
    return {
        "each patch must be flattened channel first, (c p1 p2), the order of the Conv2d weight "
        "w.reshape(D, -1); yours flattens the channels last": rearrange(
            x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=p, p2=p),
        "the pixels inside a patch are read column by column; flatten each patch as (c p1 p2)": rearrange(
            x, "b c (h p1) (w p2) -> b (h w) (c p2 p1)", p1=p, p2=p),
        "the patches come column by column; ViTs list them in raster order, row by row, (h w)": rearrange(
            x, "b c (h p1) (w p2) -> b (w h) (c p1 p2)", p1=p, p2=p),
        "a reshape alone does not cut the image into patches: it cuts the flat pixel array into "
        "runs that mix rows of different patches; rearrange the grid axes first": x.reshape(b, -1, c * p * p),
    }


@grader("exercise 2.1", "patchify")
def check_patchify(patchify) -> None:
    """Non-square images (so height and width cannot be confused), two channel counts, three patch sizes, batches of
    one and more, and the Conv2d identity."""
    g = rng(21)
    for (b, c, h, w, p) in [(2, 3, 12, 16, 4), (3, 3, 32, 32, 8), (1, 2, 6, 9, 3)]:
        _check_patchify_case(patchify, torch.randn(b, c, h, w, generator=g), p, g)


def _check_patchify_case(patchify, x: torch.Tensor, p: int, g: torch.Generator) -> None:
    (b, c, h, w) = x.shape
    what = f"patchify(<a ({b}, {c}, {h}, {w}) batch>, {p})"
    got = call(patchify, x, p, what=what)
    expect_dtype(got, x.dtype, what)
    expect_shape(got, (b, (h // p) * (w // p), c * p * p), what)
    want = rearrange(x, "b c (hh p1) (ww p2) -> b (hh ww) (c p1 p2)", p1=p, p2=p)  # after the learner's call
    hint = _first_known(got, _patch_mistakes(x, p)) or "patch n is the n-th p x p square in raster order"
    expect_close(got, want, what, hint, atol=0, rtol=0)
    width = 5
    conv = nn.Conv2d(c, width, kernel_size=p, stride=p, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        by_conv = rearrange(conv(x), "b d hh ww -> b (hh ww) d")  # (B, N, D)
        by_linear = got @ conv.weight.reshape(width, -1).T  # (B, N, D)
    expect_close(by_linear, by_conv, f"patchify({b}, ...) @ conv.weight.reshape(D, -1).T", hint, atol=1e-4)


# --- exercise 2.2 ----------------------------------------------------------------------------------

def _split(t: torch.Tensor, heads: int) -> torch.Tensor:
    return rearrange(t, "b n (h d) -> b h n d", h=heads)


def _merge(t: torch.Tensor) -> torch.Tensor:
    return rearrange(t, "b h n d -> b n (h d)")


def _attention_mistakes(q, k, v, heads) -> dict[str, torch.Tensor]:
    qh, kh, vh = (_split(t, heads) for t in (q, k, v))
    d = qh.shape[-1]
    scores = qh @ kh.transpose(-2, -1)  # (B, h, N, N)
    n = q.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    return {
        "the scores must be divided by sqrt(d), d the size of one head, or the softmax saturates as d "
        "grows": _merge(scores.softmax(-1) @ vh),
        "scale by 1/sqrt(head size) = 1/sqrt(D/heads), not 1/sqrt(D)": _merge(
            (scores / math.sqrt(q.shape[-1])).softmax(-1) @ vh),
        "the softmax runs over the keys (the last axis): each query's weights sum to 1": _merge(
            (scores / math.sqrt(d)).softmax(-2) @ vh),
        "a ViT's attention is bidirectional: every patch sees every patch, no causal mask": _merge(
            F.scaled_dot_product_attention(qh, kh, vh, attn_mask=causal)),
        "split D into heads (one attention per head of size D/heads), attend, then merge them back":
            F.scaled_dot_product_attention(q, k, v),
        "split D as (h d): head i owns the i-th block of D/heads features, as CLIP's weights are laid "
        "out": rearrange(F.scaled_dot_product_attention(*(rearrange(t, "b n (d h) -> b h n d", h=heads)
                                                         for t in (q, k, v))), "b h n d -> b n (d h)"),
    }


_WRITE_ATTENTION = dict(reason="this exercise asks you to write: softmax(q·kᵀ / sqrt(d)) · v with matrix products")


def _attend(attention, q, k, v, heads: int, what: str) -> torch.Tensor:
    """The learner's attention, with the library's and the package's attention switched off."""
    with forbidden((F, "scaled_dot_product_attention"), (Attention, "forward"), **_WRITE_ATTENTION):
        return _call(attention, q, k, v, heads, what=what, in_place=(
            "rearrange, view and transpose give views of q, k and v, so `/=` or `*=` on them writes into the "
            "inputs: write q = q / ..."))


@grader("exercise 2.2", "attention")
def check_attention(attention) -> None:
    """Against `F.scaled_dot_product_attention` on heads split as (h d), values and gradients with respect to q, k
    and v; also a softmax-invariance property."""
    g = rng(22)
    for b, n, heads, d in [(2, 5, 4, 8), (1, 17, 2, 16), (3, 4, 1, 6)]:
        leaves = [torch.randn(b, n, heads * d, generator=g, requires_grad=True) for _ in range(3)]
        _check_attention_case(attention, *leaves, heads)
    # every output is a convex mix of values: adding a constant to all values adds it to the output
    q, k, v = (torch.randn(2, 6, 8, generator=g) for _ in range(3))
    shifted = _attend(attention, q, k, v + 3.0, 2, "attention(q, k, v + 3, 2)")
    expect_close(shifted, _attend(attention, q, k, v, 2, "attention(q, k, v, 2)") + 3.0, "attention(q, k, v + 3, 2)",
                 "the attention weights of each query must sum to 1 over the keys", atol=1e-5)


def _check_attention_case(attention, q_leaf, k_leaf, v_leaf, heads: int) -> None:
    q, k, v = (t * 2 for t in (q_leaf, k_leaf, v_leaf))  # not leaves, so an in-place change is named, not refused
    (b, n, width) = q.shape
    what = f"attention(q, k, v, heads={heads}) on ({b}, {n}, {width}) inputs"
    got = _attend(attention, q, k, v, heads, what)
    expect_dtype(got, q.dtype, what)
    expect_shape(got, (b, n, width), what)
    want = _merge(F.scaled_dot_product_attention(_split(q, heads), _split(k, heads), _split(v, heads)))
    with torch.no_grad():
        hint = _first_known(got, _attention_mistakes(q, k, v, heads)) or \
            "softmax(q·kᵀ / sqrt(d)) · v for each head separately"
    expect_close(got, want, what, hint, atol=1e-5)
    expect_same_gradient(got, want, {"q": q_leaf, "k": k_leaf, "v": v_leaf}, what, atol=1e-4)


# --- exercise 2.3 ----------------------------------------------------------------------------------

def _random_block(g: torch.Generator, width: int = 16, heads: int = 4) -> Block:
    block = Block(VisionConfig(image_size=32, patch_size=8, width=width, heads=heads, layers=1))
    with torch.no_grad():
        for name, param in block.named_parameters():  # layer norms too, so LN1 and LN2 differ
            base = 1.0 if name.endswith("layer_norm1.weight") or name.endswith("layer_norm2.weight") else 0.0
            param.copy_(base + torch.randn(param.shape, generator=g) * (0.5 if base else 0.3))
    return block.eval()


def _block_mistakes(x, block) -> dict[str, torch.Tensor]:
    ln1, attn, ln2, mlp = block.layer_norm1, block.self_attn, block.layer_norm2, block.mlp
    post = ln1(x + attn(x))
    pre_shared = x + attn(ln1(x))
    return {
        "that is the post-LN block of the original Transformer: CLIP normalises *before* each sub-layer, "
        "x + attn(LN1(x)), so the residual stream itself is never normalised": ln2(post + mlp(post)),
        "the second sub-layer has its own norm, layer_norm2": pre_shared + mlp(ln1(pre_shared)),
        "add each sub-layer's output to its input (the residual connection)": mlp(ln2(attn(ln1(x)))),
        "the residual adds the sub-layer to x itself, not to the normalised x":
            (lambda h: h + mlp(ln2(h)))(ln1(x) + attn(ln1(x))),
        "the MLP sub-layer needs its residual too: x + mlp(LN2(x))": mlp(ln2(pre_shared)),
    }


@grader("exercise 2.3", "vit_block")
def check_vit_block(vit_block) -> None:
    """Against `vision.Block.forward` with random weights (layer norms included): values, and gradients with respect
    to x and every parameter of the block; the block's own forward is switched off."""
    g = rng(23)
    for b, n, width, heads in [(2, 5, 16, 4), (1, 10, 24, 3)]:
        block = _random_block(g, width, heads)
        leaf = torch.randn(b, n, width, generator=g, requires_grad=True)
        _check_vit_block_case(vit_block, leaf, block)


def _check_vit_block_case(vit_block, leaf: torch.Tensor, block: Block) -> None:
    x = leaf + 1.5  # a non-zero mean, so LN1 and LN2 matter; not a leaf, so an in-place change is named, not refused
    what = f"vit_block(x, block) on a {tuple(x.shape)} input"
    with forbidden((Block, "forward"), reason="is the block this exercise rebuilds; use block.layer_norm1, "
                                              "block.self_attn, block.layer_norm2 and block.mlp"):
        got = _call(vit_block, x, block, what=what, in_place="`x += ...` writes into the caller's x: write x = x + ...")
    expect_dtype(got, x.dtype, what)
    expect_shape(got, tuple(x.shape), what)
    want = block(x)  # after the learner's call
    with torch.no_grad():
        hint = _first_known(got, _block_mistakes(x, block)) or "x = x + attn(LN1(x)); then x + mlp(LN2(x))"
    expect_close(got, want, what, hint, atol=1e-4)
    # the parameters first: a detached sub-layer is named by the first weight its gradient no longer reaches
    inputs = {f"block.{name}": param for name, param in block.named_parameters()} | {"x": leaf}
    expect_same_gradient(got, want, inputs, what, atol=1e-4)


# --- exercise 2.4 ----------------------------------------------------------------------------------

def _loss_mistakes(image, text, logit_scale) -> dict[str, torch.Tensor]:
    i, t = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    targets = torch.arange(len(i))
    scale = logit_scale.clamp(max=math.log(100)).exp()
    sims = i @ t.T
    return {
        "CLIP's loss is symmetric: average the image->text cross-entropy (over rows) and the text->image "
        "one (over columns); yours has only image->text": F.cross_entropy(scale * sims, targets),
        "CLIP's loss is symmetric: average the image->text and text->image cross-entropies; yours has "
        "only text->image": F.cross_entropy(scale * sims.T, targets),
        "the similarities must be multiplied by the learnable scale exp(logit_scale) (1/temperature); "
        "without it cosines in [-1, 1] give a nearly flat softmax": contrastive_loss(i, t, torch.tensor(0.0)),
        "logit_scale is the *log* of the scale: multiply by exp(logit_scale), not by logit_scale": (
            F.cross_entropy(logit_scale * sims, targets) + F.cross_entropy(logit_scale * sims.T, targets)) / 2,
        "CLIP clamps the scale at 100 (logit_scale at log 100) so the temperature cannot collapse": (
            F.cross_entropy(logit_scale.exp() * sims, targets)
            + F.cross_entropy(logit_scale.exp() * sims.T, targets)) / 2,
        "compare directions, not lengths: normalise both embeddings to unit length (cosine similarity)":
            contrastive_loss(image, text, logit_scale),
        "the two directions are averaged, not summed": 2 * contrastive_loss(i, t, logit_scale),
        "normalise each row (each embedding) to unit length, not the whole matrix by its one norm":
            contrastive_loss(image / image.norm(), text / text.norm(), logit_scale),
    }


@grader("exercise 2.4", "clip_loss")
def check_clip_loss(clip_loss) -> None:
    """Against `clip.contrastive_loss` on normalised features, with scales below and above the clamp: the value, and
    the gradients with respect to both feature matrices and the temperature."""
    g = rng(24)
    for b, e, scale in [(6, 8, math.log(1 / 0.07)), (5, 4, 1.3), (4, 8, math.log(250.0))]:
        image = torch.randn(b, e, generator=g) * 3
        text = torch.randn(b, e, generator=g) * 0.5
        text[0] = image[0] * 0.2 + text[0]  # one clear true pair, the rest noise
        leaves = [t.requires_grad_() for t in (image, text, torch.tensor(scale))]
        _check_clip_loss_case(clip_loss, *leaves)


def _check_clip_loss_case(clip_loss, image_leaf, text_leaf, scale_leaf) -> None:
    image, text, logit_scale = (t + 0.0 for t in (image_leaf, text_leaf, scale_leaf))  # not leaves: see `call`
    b = len(image)
    what = f"clip_loss(<{b} image features>, <{b} text features>, logit_scale=log({scale_leaf.exp().item():.4g}))"
    got = _call(clip_loss, image, text, logit_scale, what=what, in_place=(
        "`/=`, `clamp_` and the other in-place operations write into the caller's tensors: use F.normalize, "
        "x = x / ..., logit_scale.clamp(...)"))
    expect_dtype(got, torch.float32, what)
    expect_shape(got, (), what)
    want = contrastive_loss(F.normalize(image, dim=-1), F.normalize(text, dim=-1), logit_scale)  # after the call
    with torch.no_grad():
        hint = _first_known(got, _loss_mistakes(image, text, logit_scale)) or \
            "normalise, scale the B x B cosine matrix by exp(logit_scale) (at most 100), average the two " \
            "cross-entropies with the diagonal as targets"
    expect_close(got, want, what, hint, atol=1e-5)
    if got.requires_grad:  # (if not, expect_same_gradient says so)
        (mine,) = torch.autograd.grad(got, scale_leaf, retain_graph=True, allow_unused=True)
        expect(mine is not None, f"{what}: the loss must stay differentiable in logit_scale (the temperature is "
                                 "learned); do not call .item() or detach it")
        (theirs,) = torch.autograd.grad(want, scale_leaf, retain_graph=True)
        expect_close(mine, theirs, f"d {what} / d logit_scale",
                     "scale by logit_scale.clamp(max=log(100)).exp() so the gradient flows below the clamp", atol=1e-5)
    expect_same_gradient(got, want, {"image_features": image_leaf, "text_features": text_leaf,
                                     "logit_scale": scale_leaf}, what)


# --- study questions -------------------------------------------------------------------------------

@grader("study question 16", "answer_study_q16")
def check_study_q16(answer_study_q16) -> None:
    require_answer("nb02.study_q16", answer_study_q16(),
                   hint="for each statement, follow the gradient in the figure above: which tensors does the loss "
                        "reach, and through which weights? Count hidden_states from the embedding output")


@grader("study question 14", "answer_study_q14")
def check_study_q14(answer_study_q14) -> None:
    require_answer("nb02.study_q14", answer_study_q14(),
                   hint="check each statement against the measurements above (nearest words, norms, the empty "
                        "patch) and against how the training loss treats image positions")
