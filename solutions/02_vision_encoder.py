# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 — The vision encoder: patches, attention, CLIP, and why LLaVA reads layer −2
#
# LLaVA does not train its eyes. Its vision encoder $g$ is **CLIP ViT-L/14** (Radford et al., 2021), taken off the
# shelf and kept frozen in both training stages (LLaVA §4.1–4.2). What LLaVA hands the projection $W$ is
# $Z_v = g(X_v)$: the grid of patch features of the ViT's **second-to-last** layer, one vector per 14×14 patch, the CLS
# token dropped. This notebook builds $g$ from its parts, looks at how CLIP trained it, and asks what its layers
# know — and why the last one is the wrong one to read.
#
# Our $g$ is `clip-mini`, a ViT with exactly the architecture of Hugging Face's `CLIPVisionModel` (same modules, same
# order, same weight shapes; `llava_mini/vision.py`), trained CLIP-style on ShapesWorld images and captions
# (`llava_mini/clip.py`). It is small enough to pre-train on a CPU in minutes; the zoo ships it trained.
#
# ### Goals
# After this notebook you can
#
# 1. cut an image into patch tokens with `einops`, and say why that *is* CLIP's `Conv2d` patch embedding
#    (exercise 2.1);
# 2. write multi-head scaled dot-product attention and the pre-LN ViT block (exercises 2.2 and 2.3);
# 3. write CLIP's symmetric contrastive loss with its learnable temperature (exercise 2.4), and use `clip-mini` to
#    match images with captions zero-shot;
# 4. probe every layer of the encoder for *local* attributes of an object (its shape, its colour) and for the cell a
#    patch token belongs to, and read the figure;
# 5. answer study question 16 with an autograd experiment: under CLIP's loss the last block's patch outputs get
#    **exactly zero** gradient;
# 6. answer study question 14: is a "visual token" just a word?
#
# ### Time
# About **75 minutes**: 40 of reading, four exercises of 5–10 minutes each, and two study questions. Running every
# cell (strict `pytest --nbval`) took 26 to 48 s over several runs on 2 CPU cores shared with other jobs (model
# training). Nothing here trains.
#
# ### Numbers to expect
# The first code cell prints the real CLIP ViT-L/14 next to `clip-mini`, and what the zoo measured when it trained
# `clip-mini` (how often it picks the right caption for an image among 200; how well a linear probe reads an object's
# shape from its patch features). Everything else you will compute yourself.

# %% [markdown]
# ## 0. Set-up

# %%
import math
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from llava_mini import cells, clip, corpora, probe, world, zoo
from llava_mini.course import setup_notebook
from llava_mini.grading import nb02
from llava_mini.tokenizer import load_tokenizer

setup_notebook(seed=0)
tokenizer = load_tokenizer()
manifest = zoo.read_manifest()
clip_model = zoo.load("clip-mini")  # ClipMini: .vision (g), .text, the two projections, .logit_scale
tower = clip_model.vision
cfg = tower.config
grid = cfg.image_size // cfg.patch_size

rows = [
    ("image size (px)", "224", cfg.image_size),
    ("patch size (px)", "14", cfg.patch_size),
    ("patch grid", "16 x 16", f"{grid} x {grid}"),
    ("patch tokens N", "256", cfg.num_patches),
    ("width D", "1024", cfg.width),
    ("blocks", "24", cfg.layers),
    ("attention heads", "16", cfg.heads),
    ("hidden_states", "25", cfg.layers + 1),
    ("LLaVA reads", "hidden_states[-2]", f"hidden_states[{cfg.feature_layer}]"),
    ("parameters", "about 0.3 B", f"{sum(p.numel() for p in tower.parameters()):,}"),
]
print(f"{'':>18} | {'CLIP ViT-L/14':>18} | {'clip-mini':>18}")
for name, real, ours in rows:
    print(f"{name:>18} | {real:>18} | {ours!s:>18}")
metrics = manifest["clip-mini"]["metrics"]
print()
print(f"zero-shot: the right caption among 200 validation images: {metrics['zero_shot']:.2f}")
print(f"linear probe of an object's shape at hidden_states[-2]: {metrics['probe_shape']['all']:.2f} "
      f"(the same ViT untrained: {metrics['probe_shape_random_init']['all']:.2f})")

# %% [markdown]
# ## 1. From pixels to patches
#
# A Vision Transformer ("An image is worth 16×16 words", Dosovitskiy et al., 2021) does not look at pixels one by one.
# It cuts the image into a grid of non-overlapping $p \times p$ patches and turns each patch into one vector — a
# **patch token**. CLIP ViT-L/14 cuts a 224-pixel image into 14-pixel patches: a 16×16 grid, **256 tokens**, each the
# $3 \cdot 14 \cdot 14 = 588$ numbers of its patch mapped linearly to width 1024. `clip-mini` does the same at toy size.
# Here is one ShapesWorld scene with its patch grid, numbered in the order the tokens come, row by row (raster order):

# %%
seed = next(s for s in world.SPLITS["val"] if len(world.sample_scene(s).objects) == 3)
scene = world.sample_scene(seed)  # a validation scene with three objects: clip-mini never trained on it
image = world.render(scene, cfg.image_size)  # (H, W, 3) uint8
pixels = world.pixel_values(image)  # X_v: (1, 3, H, W), normalised per channel

fig, ax = plt.subplots(figsize=(3.6, 3.6))
ax.imshow(image, interpolation="nearest")
for edge in range(0, cfg.image_size + 1, cfg.patch_size):
    ax.axhline(edge - 0.5, color="white", lw=1)
    ax.axvline(edge - 0.5, color="white", lw=1)
for n in range(cfg.num_patches):
    row, col = divmod(n, grid)
    ax.text(col * cfg.patch_size + 1.5, row * cfg.patch_size + 4, str(n), color="white", fontsize=9)
ax.set_xticks([])
ax.set_yticks([])
ax.set_title(f"{cfg.image_size} px, patches of {cfg.patch_size} px: {cfg.num_patches} tokens", fontsize=10)
plt.show()
print("the scene:", "; ".join(f"{o.size} {o.colour} {o.shape} ({o.position})" for o in scene.objects))


# %% [markdown]
# CLIP's code does the cutting and the linear map in one layer: `nn.Conv2d(3, D, kernel_size=p, stride=p, bias=False)`.
# A convolution whose stride equals its kernel size visits each patch exactly once, and at each patch it takes the dot
# product of its weight — a $(D, 3, p, p)$ tensor — with the patch's $3 \cdot p \cdot p$ pixels. That is a matrix
# multiplication in disguise: flatten each patch, flatten the weight to $(D, 3 p^2)$, multiply. The only thing to get
# right is the **order** in which a patch is flattened: it must be the order of the weight, channel first, then row,
# then column — $(c, p_1, p_2)$.
#
# `einops.rearrange` writes such reshapes as a picture of the axes. The image's height is a grid of $h$ patch rows of
# $p_1$ pixels each, `(h p1)`, its width `(w p2)`; the result is one row per patch, `(h w)`, holding that patch's
# pixels, `(c p1 p2)`. (Rogozhnikov, "Einops", ICLR 2022. Try `rearrange` on a small `torch.arange` tensor if the
# notation is new.)
#
# ### Exercise 2.1: patchify
#
# Write `patchify(pixel_values, patch_size)`: a batch $X_v$ of shape $(B, C, H, W)$ → $(B, N, C \cdot p \cdot p)$, with
# $N = (H/p)(W/p)$ patches in raster order, each flattened as $(c, p_1, p_2)$. Use `rearrange`. The grader uses
# non-square images (so height and width cannot be swapped unnoticed) and checks that
# `patchify(x, p) @ conv.weight.reshape(D, -1).T` equals `conv(x)` for a random `Conv2d`. *(About 1 line.)*

# %% tags=["exercise"]
def patchify(pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    '''X_v (B, C, H, W) -> patches (B, N, C*p*p): N = (H/p)*(W/p) in raster order, each flattened as (c, p1, p2).'''
    ### BEGIN SOLUTION
    return rearrange(pixel_values, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=patch_size, p2=patch_size)
    ### END SOLUTION


# %% tags=["grader"]
nb02.check_patchify(patchify)

# %% [markdown]
# Why is the order such a classic bug? Because a wrong order gives **the right shape**. Flatten each patch channel-last,
# `(p1 p2 c)` — the natural order of an `(H, W, 3)` image file — and every shape in the model still fits; only the
# values are scrambled. A weight trained on $(c, p_1, p_2)$ patches then reads colour where it expects position. Here is
# the patch of the largest object, unflattened the way the convolution's weight reads it, from both orders:

# %%
p = cfg.patch_size
right = rearrange(pixels, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=p, p2=p)  # (1, N, 3·p·p)
wrong = rearrange(pixels, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=p, p2=p)  # same shape, other order
big = max(scene.objects, key=lambda o: o.box[2] - o.box[0])
centre_x, centre_y = (big.box[0] + big.box[2]) / 2, (big.box[1] + big.box[3]) / 2
n = int(centre_y * grid) * grid + int(centre_x * grid)  # the patch under the object's centre
mean, std = torch.tensor(world.PIXEL_MEAN), torch.tensor(world.PIXEL_STD)

fig, axes = plt.subplots(1, 2, figsize=(5, 2.8))
for ax, tokens, title in [(axes[0], right, "flattened (c p1 p2)"), (axes[1], wrong, "flattened (p1 p2 c)")]:
    patch = rearrange(tokens[0, n], "(c p1 p2) -> p1 p2 c", c=3, p1=p)  # read as the conv weight reads it
    ax.imshow((patch * std + mean).clamp(0, 1), interpolation="nearest")
    ax.set_title(f"patch {n}, {title}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()
print("same shape:", right.shape == wrong.shape, "| same values:", torch.equal(right, wrong))

# %% [markdown]
# The package's `PatchEmbedding` is exactly this: `rearrange` + a bias-free `nn.Linear(3·p·p, D)`. Load its weight into a
# real `Conv2d` and both give the same tokens — which is also how a CLIP checkpoint's `patch_embedding.weight`
# $(D, 3, p, p)$ loads into our `Linear` (`llava_mini/hf.py` does exactly this reshape):

# %%
conv = torch.nn.Conv2d(3, cfg.width, kernel_size=p, stride=p, bias=False)
with torch.no_grad():
    conv.weight.copy_(tower.patch_embedding.proj.weight.reshape(cfg.width, 3, p, p))
    by_conv = rearrange(conv(pixels), "b d h w -> b (h w) d")  # (1, N, D)
    by_linear = tower.patch_embedding(pixels)  # (1, N, D)
print("patch tokens:", tuple(by_linear.shape), "| Conv2d == rearrange + Linear:",
      torch.allclose(by_conv, by_linear, atol=1e-5))

# %% [markdown]
# Each of the $D$ rows of that weight is a $3 \times p \times p$ filter: the patch pattern one feature responds to. Drawn
# as images (each scaled to its own range), the first 16 of `clip-mini`'s filters are what CLIP-style training made the
# first layer look for. To the eye they are mostly noise, with here and there a blob or a ring around the centre, where
# an object sits in its cell: single filters of a small model are hard to read, and section 5 measures what the layer
# knows instead.

# %%
filters = tower.patch_embedding.proj.weight.detach().reshape(cfg.width, 3, p, p)[:16]  # (16, 3, p, p)
fig, axes = plt.subplots(2, 8, figsize=(8, 2.3))
for ax, f in zip(axes.flat, filters):
    f = (f - f.min()) / (f.max() - f.min())
    ax.imshow(f.permute(1, 2, 0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("clip-mini: 16 patch-embedding filters", fontsize=10)
plt.show()

# %% [markdown]
# After the patch tokens, three small steps complete the ViT's input (CLIP's `CLIPVisionEmbeddings`):
#
# 1. a learned **CLS** vector is put in front: $N + 1$ tokens;
# 2. a learned **position embedding** (one vector per position, $N+1$ of them) is added — without it attention could
#    not tell patch 0 from patch 8;
# 3. CLIP applies a LayerNorm before the first block (`pre_layrnorm`, a misspelling the checkpoints keep forever).
#
# Then come the transformer blocks, each a **self-attention** sub-layer and an **MLP** sub-layer.
#
# ## 2. Attention
#
# Self-attention lets every token gather information from every other token. Each token emits a query $q$, a key $k$
# and a value $v$ (three linear maps of it); token $i$'s output is an average of all values, weighted by how well its
# query matches each key:
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}}\right) V
# \qquad \text{(Vaswani et al., 2017)}$$
#
# - The softmax runs over the **keys** (the last axis of $QK^\top$): each query's weights sum to 1.
# - $\sqrt{d}$, with $d$ the size of one head: the dot product of two random $d$-vectors has variance $d$, so unscaled
#   scores grow with $d$ and the softmax saturates into a one-hot choice with vanishing gradients (the figure below).
# - **Multi-head**: the width $D$ is split into $h$ heads of $d = D/h$ features; each head attends on its own, and the
#   outputs are concatenated back to $D$. In CLIP's (and Llama's) weight layout head $i$ owns the $i$-th block of $d$
#   features: `(h d)`, not `(d h)`.
# - A ViT's attention is **bidirectional**: there is no mask, every patch sees every patch (and the CLS token). The
#   language model's attention (notebook 03) is causal.

# %%
g = torch.Generator().manual_seed(0)
dims = [4, 16, 64, 256, 1024]
peak = {"scores / sqrt(d)": [], "unscaled scores": []}
for d in dims:
    q, k = torch.randn(500, 1, d, generator=g), torch.randn(500, 16, d, generator=g)  # 500 queries, 16 keys each
    scores = (q * k).sum(-1)  # (500, 16)
    peak["scores / sqrt(d)"].append((scores / math.sqrt(d)).softmax(-1).max(-1).values.mean().item())
    peak["unscaled scores"].append(scores.softmax(-1).max(-1).values.mean().item())
fig, ax = plt.subplots(figsize=(5, 3))
for label, values in peak.items():
    ax.plot(dims, values, marker="o", label=label)
ax.set_xscale("log", base=2)
ax.set_xlabel("head size d")
ax.set_ylabel("largest attention weight (mean)")
ax.set_ylim(0, 1.05)
ax.axhline(1 / 16, color="grey", lw=0.8, ls=":")
ax.legend(fontsize=9, loc="center right")
ax.set_title("softmax over 16 random keys", fontsize=10)
plt.show()


# %% [markdown]
# ### Exercise 2.2: multi-head attention
#
# Write `attention(q, k, v, heads)`. The queries, keys and values are already projected: each is $(B, N, D)$. Split $D$
# into `heads` heads as `(h d)`, compute $\mathrm{softmax}(QK^\top/\sqrt{d})\,V$ for each head, and merge the heads back
# to $(B, N, D)$. No mask. Do not call `F.scaled_dot_product_attention` (nor the package's `vision.Attention`): the
# grader compares your result with it, and refuses an answer that calls either.
# *(About 4 lines.)*

# %% tags=["exercise"]
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    '''Bidirectional multi-head attention. q, k, v: (B, N, D) with D = heads * d  ->  (B, N, D).'''
    ### BEGIN SOLUTION
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))  # (B, h, N, d)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, h, N, N)
    return rearrange(scores.softmax(dim=-1) @ v, "b h n d -> b n (h d)")  # (B, N, D)
    ### END SOLUTION


# %% tags=["grader"]
nb02.check_attention(attention)


# %% [markdown]
# ## 3. The ViT block
#
# CLIP's block (`CLIPEncoderLayer`; our `vision.Block`) is a **pre-LN** transformer block: each sub-layer reads a
# LayerNorm of the residual stream and *adds* its output back to the stream,
#
# $$x \leftarrow x + \mathrm{Attn}(\mathrm{LN}_1(x)), \qquad x \leftarrow x + \mathrm{MLP}(\mathrm{LN}_2(x)),$$
#
# where the MLP is `fc1` ($D \to 4D$), CLIP's `quick_gelu` ($x\,\sigma(1.702x)$), `fc2` ($4D \to D$). The original
# Transformer was **post-LN**, $x \leftarrow \mathrm{LN}(x + \mathrm{Attn}(x))$; moving the norm inside the branch
# keeps an un-normalised residual path from the input to the output, which trains deep stacks stably (Xiong et al.,
# 2020, "On Layer Normalization in the Transformer Architecture"). GPT-2, ViT, CLIP and Llama are all pre-LN.
#
# ### Exercise 2.3: the pre-LN block
#
# Write `vit_block(x, block)` for $x$ of shape $(B, N+1, D)$, using the modules of `block` (a `vision.Block`):
# `block.layer_norm1`, `block.self_attn` (the whole attention sub-layer: projections, attention, output projection),
# `block.layer_norm2` and `block.mlp` — but not `block` itself (the grader refuses a call to `Block.forward`). The
# grader gives the two LayerNorms different random weights, so each must be used in its place. *(About 2 lines.)*

# %% tags=["exercise"]
def vit_block(x: torch.Tensor, block) -> torch.Tensor:
    '''One pre-LN CLIP block: x (B, N+1, D) -> (B, N+1, D), from block.layer_norm1/self_attn/layer_norm2/mlp.'''
    ### BEGIN SOLUTION
    x = x + block.self_attn(block.layer_norm1(x))  # (B, N+1, D)
    return x + block.mlp(block.layer_norm2(x))
    ### END SOLUTION


# %% tags=["grader"]
nb02.check_vit_block(vit_block)

# %% [markdown]
# Now the whole encoder, by hand, with the package's modules: patches, CLS, positions, `pre_layrnorm`, then the blocks.
# The tower keeps every intermediate result: `hidden_states[0]` is the embedding output, `hidden_states[i]` the output
# of block $i$. So there are (blocks + 1) of them — 25 for ViT-L/14 — and LLaVA's `mm_vision_select_layer = -2` is the
# output of the **second-to-last block**, not the second layer. `post_layernorm` is applied to the CLS token only, for
# CLIP's loss; LLaVA never uses it.

# %%
with torch.no_grad():
    x = tower.patch_embedding(pixels)  # (1, N, D)
    cls = tower.class_embedding.expand(1, 1, -1)  # (1, 1, D)
    x = tower.pre_layrnorm(torch.cat([cls, x], dim=1) + tower.position_embedding)  # (1, N+1, D)
    by_hand = [x]
    for block in tower.layers:
        x = block(x)
        by_hand.append(x)
    hidden, pooled = tower(pixels)
    z_v = tower.features(pixels)  # Z_v: what LLaVA hands W
print(len(hidden), "hidden states, each", tuple(hidden[0].shape), "| by hand == tower:",
      all(torch.allclose(a, b, atol=1e-6) for a, b in zip(by_hand, hidden)))
print("pooled (post_layernorm of the last CLS):", tuple(pooled.shape))
print("Z_v:", tuple(z_v.shape), "== hidden_states[-2] without CLS:", torch.equal(z_v, hidden[-2][:, 1:]))


# %% [markdown]
# ## 4. CLIP: learning to see from captions
#
# CLIP trains an image encoder and a text encoder together on image–caption pairs (400 million of them, from the web).
# For a batch of $B$ pairs it embeds the $B$ images and the $B$ captions into one space, normalises every embedding to
# unit length, and computes the $B \times B$ matrix of cosine similarities. The $B$ true pairs are on the diagonal.
# The loss is a **symmetric** cross-entropy (InfoNCE): each image must pick its own caption among the $B$ captions (a
# softmax over its row) *and* each caption must pick its own image among the $B$ images (a softmax over its column);
# the two losses are averaged. In CLIP's pseudo-code:
#
# ```
# logits = exp(t) * image_embeddings @ text_embeddings.T      # (B, B), t = logit_scale, learned
# loss = (cross_entropy(logits, arange(B)) + cross_entropy(logits.T, arange(B))) / 2
# ```
#
# The **temperature** $\tau = 1/\exp(t)$ is learned. Cosines live in $[-1, 1]$, far too flat for a softmax over
# hundreds of candidates; multiplying by $\exp(t)$ sharpens it. CLIP initialises $\exp(t) = 1/0.07 \approx 14.3$ and
# **clamps** it at 100 so that training cannot make the softmax arbitrarily sharp.
#
# Only one vector per image enters the loss: the **CLS token of the last block**, through `post_layernorm` and a
# linear projection (`ClipMini.embed`). Keep that in mind for section 6.
#
# `clip-mini` was trained exactly this way on ShapesWorld (`clip.caption_batches`): captions from the scenes' symbolic
# context, plus *hard negatives*, each image's twin in its batch, captioned accordingly: "shape twins", copies of a
# scene with one object's shape changed, and "cell twins", copies with one object moved to an empty cell. Random
# captions almost always differ in colour, so without twins the encoder learns little about shape or about where an
# object is — and LLaVA's $W$ needs both to say "the circle in the top left".
#
# ### Exercise 2.4: the contrastive loss
#
# Write `clip_loss(image_features, text_features, logit_scale)`: both feature matrices are $(B, E)$, **not yet
# normalised**, with row $i$ of each a true pair; `logit_scale` is a 0-d tensor holding $t = \log(1/\tau)$, which
# requires a gradient. Return the scalar loss: normalise, scale the cosine matrix by $\exp(t)$ clamped at 100
# (clamp $t$ at $\log 100$, so the gradient still flows below the clamp), and average the two cross-entropies. Keep the
# loss differentiable in `logit_scale` (no `.item()`). *(About 5 lines.)*

# %% tags=["exercise"]
def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    '''CLIP's symmetric InfoNCE. image_features, text_features: (B, E), row i a true pair; logit_scale: 0-d tensor.'''
    ### BEGIN SOLUTION
    image = F.normalize(image_features, dim=-1)  # (B, E), unit rows
    text = F.normalize(text_features, dim=-1)
    logits = logit_scale.clamp(max=math.log(100)).exp() * image @ text.T  # (B, B)
    targets = torch.arange(len(logits))  # the diagonal
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    ### END SOLUTION


# %% tags=["grader"]
nb02.check_clip_loss(clip_loss)


# %% [markdown]
# ### Zero-shot matching with `clip-mini`
#
# Eight validation scenes and their most detailed captions. `ClipMini.embed` returns unit-length image and caption
# embeddings; the matrix of their cosines should light up on the diagonal. A caption is encoded as CLIP encodes text:
# its tokens plus an end token `</s>`, read at that last token.

# %%
def caption_batch(captions):
    '''Right-padded caption ids, each ending with </s>, and their attention mask: both (B, T).'''
    ids = [tokenizer.encode(c, add_special_tokens=False) + [tokenizer.eos_token_id] for c in captions]
    longest = max(len(row) for row in ids)
    input_ids = torch.tensor([row + [tokenizer.pad_token_id] * (longest - len(row)) for row in ids])
    attention_mask = torch.tensor([[1] * len(row) + [0] * (longest - len(row)) for row in ids])
    return input_ids, attention_mask


input_ids, attention_mask = caption_batch(["a blue cross.", "there is one shape: a small red circle in the center."])
print(tokenizer.batch_decode(input_ids))
print(attention_mask.tolist())

# %%
val_scenes = [world.sample_scene(s) for s in world.split_seeds("val", 8)]
val_captions = [world.symbolic_context(s).captions[0] for s in val_scenes]
with torch.no_grad():
    image_emb, text_emb = clip_model.embed(world.pixel_values(world.render_batch(val_scenes, cfg.image_size)),
                                           *caption_batch(val_captions))
    similarity = image_emb @ text_emb.T  # (8, 8) cosines

fig = plt.figure(figsize=(7.5, 5.6))
for i, s in enumerate(val_scenes):
    ax = fig.add_axes([0.17 + i * 0.0955, 0.83, 0.09, 0.12])
    ax.imshow(world.render(s, cfg.image_size), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
ax = fig.add_axes([0.17, 0.05, 0.764, 0.76])
ax.imshow(similarity.T, cmap="viridis")
ax.set_yticks(range(8), [c if len(c) < 34 else c[:31] + "..." for c in val_captions], fontsize=7)
ax.set_xticks(range(8), [f"image {i}" for i in range(8)], fontsize=7)
for i, j in enumerate(similarity.argmax(1).tolist()):
    ax.text(i, j, "x", ha="center", va="center", color="red", fontsize=10)
plt.show()
print("images whose best caption is their own (red x on the diagonal):", int((similarity.argmax(1) == torch.arange(8)).sum()), "of 8")
print(f"the learned scale exp(t): {clip_model.logit_scale.exp().item():.1f} (initialised at {1 / 0.07:.1f}, clamped at 100)")

# %% [markdown]
# Random captions are easy to tell apart: they usually differ in colour. The hard test is a **twin**: the same scene
# with one object's shape changed, or with one object moved to another cell. Does `clip-mini` prefer an image's own
# caption to its twin's?

# %%
rng = np.random.default_rng(0)
scenes = [world.sample_scene(s) for s in world.split_seeds("val", 200)]


def embed_text(captions):
    '''Unit-length caption embeddings (B, E), as in ClipMini.embed.'''
    return F.normalize(clip_model.text_projection(clip_model.text(*caption_batch(captions))), dim=-1)


with torch.no_grad():
    own_image = F.normalize(clip_model.visual_projection(
        tower(world.pixel_values(world.render_batch(scenes, cfg.image_size)))[1]), dim=-1)  # (200, E)
    own_text = embed_text([world.symbolic_context(s).captions[0] for s in scenes])
print("a caption:    ", world.symbolic_context(scenes[0]).captions[0])
for make_twin in (clip.shape_twin, clip.cell_twin):
    twins = [make_twin(s, rng) for s in scenes]
    with torch.no_grad():
        twin_text = embed_text([world.symbolic_context(s).captions[0] for s in twins])
    wins = int(((own_image * own_text).sum(-1) > (own_image * twin_text).sum(-1)).sum())
    name = make_twin.__name__.replace("_", " ")  # "shape twin", "cell twin"
    print(f"its {name}:", world.symbolic_context(twins[0]).captions[0])
    print(f"   the image's own caption beats its {name}'s for {wins} of {len(scenes)} images")


# %% [markdown]
# ## 5. What does each layer know? Linear probes
#
# LLaVA hands $W$ the patch tokens of one layer, and $W$ is linear. So a fair question about a layer is: *can a linear
# map read an object's attributes off its patch tokens?* `probe.probe` answers it. It averages a layer's patch tokens
# over each object's box (at 48 px with 16-px patches, exactly the token of the object's grid cell), fits a
# multinomial logistic regression from those vectors to the object's shape (or colour) on the objects of 1,000
# training scenes — CLIP's own linear-probe protocol, with a deterministic L-BFGS fit — and reports its accuracy on the
# objects of 500 validation scenes of 2–3 objects. We run it at every `hidden_states` index of `clip-mini`. For
# comparison, the zoo measured the same probe at `hidden_states[-2]` of an *untrained* ViT of the same architecture
# (a random linear map of the pixels already keeps a lot, large objects especially).
#
# Both attributes are **local**: they live in the object's own patch. A third probe asks where a patch is: it reads
# every patch token, empty or not, and predicts which of the 9 cells it belongs to, from the token alone (fitted on the
# patches of 300 training scenes, tested on those of 200 validation scenes). At the embedding layer the position
# embedding has just been added; does the cell survive to the layer LLaVA reads? Watch the last layer.

# %%
def cell_accuracy(layer: int, n_train: int = 300, n_test: int = 200) -> float:
    '''Linear probe of every patch token of hidden_states[layer], empty or not, for its own cell (9 classes).'''
    x, labels = probe.patch_labels(tower, [world.sample_scene(s) for s in world.split_seeds("train", n_train)], layer)
    predict = probe.fit_logistic(x, torch.from_numpy(labels["cell"]), cfg.num_patches)
    x, labels = probe.patch_labels(tower, [world.sample_scene(s) for s in world.split_seeds("val", n_test)], layer)
    return float((predict(x).numpy() == labels["cell"]).mean())


layers = list(range(cfg.layers + 1))
torch.set_num_threads(1)  # a probe's fit is hundreds of tiny steps, which one thread runs faster than two
accuracy = {attribute: [probe.probe(tower, attribute, layer, n_train=1000, n_test=500)["all"] for layer in layers]
            for attribute in ("shape", "colour")}
accuracy["cell"] = [cell_accuracy(layer) for layer in layers]
torch.set_num_threads(2)  # back to the notebook's setting (setup_notebook)
untrained = metrics["probe_shape_random_init"]["all"]  # the zoo's measurement, hidden_states[-2] of a random ViT
chance = {"shape": 1 / len(world.SHAPES), "colour": 1 / len(world.COLOURS), "cell": 1 / cfg.num_patches}
titles = {"shape": "an object's shape", "colour": "an object's colour", "cell": "a patch's cell"}

fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), sharey=True)
for ax, attribute in zip(axes, accuracy):
    ax.plot(layers, accuracy[attribute], "o-", label="clip-mini")
    if attribute == "shape":
        ax.plot([cfg.layers - 1], [untrained], "s", color="grey", label="untrained ViT (zoo)")
    ax.axvline(cfg.layers - 1, color="#f6b26b", lw=6, alpha=0.4, label="hidden_states[-2] (LLaVA)")
    ax.axhline(chance[attribute], color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xticks(layers, ["emb"] + [f"block {i}" for i in layers[1:]], fontsize=8)
    ax.set_title(f"linear probe: {titles[attribute]}", fontsize=10)
axes[0].set_ylabel("validation accuracy")
axes[0].set_ylim(0, 1.05)
fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=8, frameon=False)
fig.tight_layout(rect=(0, 0.08, 1, 1))  # room for the legend below the panels
plt.show()
print(f"{'hidden_states index':>20} " + " ".join(f"{i:>6}" for i in layers))
for attribute, values in accuracy.items():
    print(f"{attribute:>20} " + " ".join(f"{v:>6.2f}" for v in values))

# %% [markdown]
# **What the curves say.** Colour is read perfectly at every layer (1.00): it is the mean of a patch's pixels, and a
# linear map of the pixels has it from the start. The cell is read perfectly too (1.00 up to `hidden_states[-2]`, 0.99
# after the last block): the position embedding added at the input survives the blocks, so a linear $W$ can tell the
# language model *where* each patch is. Shape is the interesting one. Even the embedding layer (`emb`, a linear map of
# the raw patch plus a position) reads it as well as the blocks do (0.96), because at 48 px with 16-px patches one patch
# *is* one object; what training bought is the gap between `clip-mini` and the untrained ViT (0.96 against 0.80, the
# grey square), which CLIP's training, with its shape twins, put into the features (section 4). And the last block does
# **not** lose it here: 0.95 after it.
#
# So this toy does not reproduce the paper's *hypothesis* that the last layer is "more global and abstract" and worse
# for local detail — with four blocks and nine patches there is little room for that. The reason to skip the last
# block that *does* hold, here and in CLIP ViT-L/14, is the mechanical one of the next section: nothing in CLIP's loss
# ever asks the last block's patch outputs to be useful.

# %% [markdown]
# ## 6. Study question 16: before or after the last layer?
#
# > **16) 论文中提到在最后一层 Transformer 之前和之后的网格特征都被考虑过，为什么？**
# >
# > *The paper considered grid features before and after the last Transformer layer. Why?*
#
# LLaVA §4.1 says grid features "before and after the last Transformer layer" were considered; every released training
# script passes `--mm_vision_select_layer -2`. The ScienceQA ablation (Table 8) measured the difference: features from
# **before** the last layer, 90.92%; from the last layer, 89.96% (−0.96). The authors' hypothesis (§5.2): the last
# layer focuses on global, abstract properties of the image, the one before keeps more localised detail. BLIP-2 made the
# same choice independently ("remove the last layer of the ViT and use the second last layer's output features").
#
# There is also a mechanical reason, visible in CLIP's loss. The image enters the loss only through
# $\mathrm{post\_layernorm}(h_L^{\mathrm{CLS}})$, the CLS token of the last block $L$. The last block's **patch**
# outputs $h_L^{1..N}$ are computed — and then used by nothing. So
#
# $$\frac{\partial \mathcal{L}}{\partial h_L^{n}} = 0 \quad \text{exactly, for every patch } n,$$
#
# and nothing in training ever asked them to mean anything. One block earlier it is different: the last block's CLS
# token *attends* to the patch tokens $h_{L-1}^{1..N}$ (they are its keys and values), so the loss reaches them.
#
# Let autograd confirm it on a batch like those `clip-mini` was trained on: 8 training scenes and a twin of each
# (alternately a shape twin and a cell twin), with their captions. `retain_grad` keeps the gradient of each hidden state:

# %%
rng = np.random.default_rng(0)
scenes = [world.sample_scene(s) for s in world.split_seeds("train", 8)]
batch_scenes = [t for i, s in enumerate(scenes) for t in (s, clip.TWINS[i % 2](s, rng))]  # with twins, as in training
batch_pixels = world.pixel_values(world.render_batch(batch_scenes, cfg.image_size))  # (16, 3, H, W)
batch_ids, batch_mask = caption_batch([world.symbolic_context(s).captions[0] for s in batch_scenes])
hidden, pooled = tower(batch_pixels)  # hidden: blocks + 1 tensors (B, N+1, D)
for h in hidden:
    h.retain_grad()
image_emb = F.normalize(clip_model.visual_projection(pooled), dim=-1)  # pooled = post_layernorm(last CLS)
text_emb = F.normalize(clip_model.text_projection(clip_model.text(batch_ids, batch_mask)), dim=-1)
loss = clip.contrastive_loss(image_emb, text_emb, clip_model.logit_scale)
loss.backward()

print(f"{'hidden_states':>14} | {'non-zero entries of the gradient':>34}")
print(f"{'index':>14} | {'CLS':>10} {'patches':>23}")
for i, h in enumerate(hidden):
    cls_nonzero, patch_nonzero = int(h.grad[:, 0].count_nonzero()), int(h.grad[:, 1:].count_nonzero())
    print(f"{i:>14} | {cls_nonzero:>10} {patch_nonzero:>12} of {h.grad[:, 1:].numel():>7}")
last_block = tower.layers[-1]
print("the last block's weights get a gradient all the same:",
      all(bool(p.grad.count_nonzero()) for p in last_block.parameters()))

# %% [markdown]
# Exactly zero — not small: **zero** — for every patch of the last block, and non-zero everywhere else. Note the last
# line: the last block's *weights* are trained, through the CLS path. The same weights are applied to every patch token
# (a transformer shares its weights across positions), so the last block's patch outputs are not random; they are just
# never *optimised* for anything. The gradient's size per token and layer, on a log scale (white = exactly zero):

# %%
norms = torch.stack([h.grad.norm(dim=-1).mean(0) for h in hidden]).detach()  # (blocks + 1, N+1)
layers = list(range(cfg.layers + 1))
fig, ax = plt.subplots(figsize=(7, 2.8))
shown = ax.imshow(norms.log10().masked_fill(norms == 0, float("nan")), cmap="magma", aspect="auto")
ax.set_xticks(range(cfg.num_patches + 1), ["CLS"] + [str(n) for n in range(cfg.num_patches)], fontsize=8)
ax.set_yticks(layers, ["emb"] + [f"block {i}" for i in layers[1:]], fontsize=8)
ax.set_xlabel("token (patches in raster order)")
fig.colorbar(shown, label="log10 |dL/dh| (batch mean)")
ax.set_title("gradient of CLIP's loss reaching each hidden state", fontsize=10)
plt.show()

# %% [markdown]
# The route by which the gradient reaches `hidden_states[-2]` is the last block's attention from CLS to the patches. For
# our scene, here is how each head of the last block spreads the CLS token's attention over the patch grid (the
# remaining weight goes to CLS itself; each head has its own colour scale, and the numbers are the weights):

# %%
block = tower.layers[-1]
with torch.no_grad():
    h = block.layer_norm1(tower(pixels)[0][-2])  # (1, N+1, D): the input of the last block's attention
    q = rearrange(block.self_attn.q_proj(h), "b n (h d) -> b h n d", h=cfg.heads)
    k = rearrange(block.self_attn.k_proj(h), "b n (h d) -> b h n d", h=cfg.heads)
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)  # (1, heads, N+1, N+1)
cls_to_patches = weights[0, :, 0, 1:].reshape(cfg.heads, grid, grid)  # (heads, grid, grid)
fig, axes = plt.subplots(1, cfg.heads + 1, figsize=(2.1 * (cfg.heads + 1), 2.3))
axes[0].imshow(image, interpolation="nearest")
axes[0].set_title("the scene", fontsize=9)
for i, ax in enumerate(axes[1:]):
    ax.imshow(cls_to_patches[i], cmap="Blues", vmin=0, vmax=float(cls_to_patches[i].max()))
    for (row, col), w in np.ndenumerate(cls_to_patches[i].numpy()):
        ax.text(col, row, f"{w:.2f}", ha="center", va="center", fontsize=8,
                color="white" if w > 0.6 * cls_to_patches[i].max() else "black")
    ax.set_title(f"head {i}: CLS -> patches", fontsize=9)
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()

# %% [markdown]
# What if CLIP pooled differently — say the mean of *all* the last block's tokens instead of CLS? Then every patch of
# the last block would feed the loss. One more backward pass settles it:

# %%
hidden, _ = tower(batch_pixels)
hidden[-1].retain_grad()
mean_pooled = tower.post_layernorm(hidden[-1].mean(dim=1))  # (B, D): all tokens, not just CLS
mean_emb = F.normalize(clip_model.visual_projection(mean_pooled), dim=-1)
clip.contrastive_loss(mean_emb, text_emb.detach(), clip_model.logit_scale).backward()
print("mean pooling: non-zero gradient entries on the last block's patches:", int(hidden[-1].grad[:, 1:].count_nonzero()),
      "of", hidden[-1].grad[:, 1:].numel())
clip_model.zero_grad(set_to_none=True)


# %% [markdown]
# Two caveats before you answer. The mechanical argument says the last layer's patch tokens were never *trained*; it
# does not say they are useless (section 5's probes tell you how much they still carry), and LLaVA's own evidence is a
# 0.96-point gap on one benchmark from one run (study question 15 asks how much that can mean). Also count carefully:
# `hidden_states` starts with the embedding output, so index −2 is the output of block $L-1$.
#
# ### Study question 16: which statements are true?
#
# - **(a)** LLaVA's `hidden_states[-2]` is the output of the second-to-last transformer block; for ViT-L/14 (24 blocks,
#   25 hidden states) that is block 23.
# - **(b)** Under CLIP's loss the last block's patch outputs get exactly zero gradient, because only the
#   post-layernormed CLS token of the last block reaches the loss.
# - **(c)** Therefore the last block's weights receive no gradient at all during CLIP's training.
# - **(d)** The penultimate block's patch outputs do receive gradient, because in the last block the CLS token attends
#   to them.
# - **(e)** `-2` selects the second block of the ViT.
# - **(f)** LLaVA feeds $W$ CLIP's final image embedding: the projected CLS vector that the contrastive loss uses.
# - **(g)** The ScienceQA gap (90.92 vs 89.96) is an average over several seeds, so the effect is well established.
# - **(h)** If CLIP pooled the mean of all the last block's tokens instead of the CLS token, the last block's patch
#   outputs would receive gradient too.
#
# Return the letters of **all** true statements, e.g. `"ace"`.

# %% tags=["exercise"]
def answer_study_q16() -> str:
    '''The letters of every true statement, e.g. "ace".'''
    ### BEGIN SOLUTION
    return "abdh"
    ### END SOLUTION


# %% tags=["grader", "study-q16"]
nb02.check_study_q16(answer_study_q16)

# %% [markdown] tags=["solution-only"]
# **A model answer.** (a), (b), (d) and (h) are true. LLaVA reads the patch tokens entering the last block
# (`hidden_states[-2]`, counted from the end of a tuple that starts with the embedding output, so (e) is false) and
# never the projected CLS embedding ((f) is false). There are two reasons to avoid the last block's output: the
# paper's hypothesis that the last layer is more global and abstract, measured as a 0.96-point gap on ScienceQA (one
# run, so (g) is false; see study question 15), and the mechanical one shown above: CLIP's loss sees only the last CLS
# token, so the last block's patch outputs receive exactly zero gradient (b), while the penultimate patches, which that
# CLS token attends to, do receive it (d). The last block's *weights* are still trained through the CLS path, so (c) is
# false: its patch outputs are computed by trained weights, they are just never optimised themselves. With mean
# pooling every last-block token would feed the loss (h), which is why the argument is specific to CLS-pooled encoders
# such as CLIP.

# %% [markdown]
# ## 7. Study question 14: is a visual token a word?
#
# > **14) "视觉 token" 是否只是把图像变成了 "一句话的 token"？这种理解是否过于简化？**
# >
# > *Is a "visual token" just turning an image into "a sentence of tokens"? Is that an oversimplification?*
#
# LLaVA's paper calls stage 1 "training a compatible visual tokenizer for the frozen LLM" (§4.2), and the metaphor
# stuck: an image becomes a "sentence" of $N$ visual tokens $H_v = W \cdot Z_v$ that the LLM reads before the question.
# What is true in it, and what is not? The zoo's `llava-mini-stage1` is the place to look: its $W$ was trained in stage
# 1 with the language model `vicuna-mini` frozen, so its visual tokens live in exactly the input space of
# `vicuna-mini`'s word embeddings. (Notebook 04 builds $W$; here we only read its output.) One more fact about that
# language model, which notebook 03 shows in detail: `vicuna-mini` was pre-trained, on text only, to read a scene as 9
# *cell tokens*, one per grid cell, each the sum of the word embeddings of what the cell holds (`large` + `red` +
# `circle` + `top` + `left`; `.` + row + column for an empty cell). That is the form stage 1 pushed $W$ towards.
#
# First test: is each visual token close to some word? Only the words `vicuna-mini` read in pre-training count: the
# other rows of its embedding table (box coordinates, words of instruction types it never saw) were never trained and
# keep their small random initial values, so a cosine with them measures noise. For the patch tokens of 300 validation
# images we find the nearest of those words by cosine similarity, and compare with how close each word is to its
# nearest *other* word. We also compare lengths, with the cell tokens too.

# %%
stage1 = zoo.load("llava-mini-stage1")  # g = clip-mini, W after stage 1, f = vicuna-mini (frozen in stage 1)
table = stage1.lm.embed_tokens.weight.detach()  # (vocabulary, d_lm)
corpus = corpora.cell_examples(world.split_seeds("train", 300), tokenizer)  # vicuna-mini's pre-training data
read = {i for e in corpus for i in e.sample.input_ids} | {i for e in corpus for cell in e.cells for i in cell}
not_words = {*tokenizer.all_special_ids, tokenizer.convert_tokens_to_ids("\u2581"), cells.PAD}  # specials, lone space
word_ids = torch.tensor(sorted(read - not_words))  # the words vicuna-mini read
unread = torch.tensor(sorted(set(range(len(tokenizer))) - read - not_words))
words = table[word_ids]  # (V, d_lm)
print(f"vicuna-mini read {len(word_ids)} of the {len(tokenizer)} vocabulary entries; median length "
      f"{words.norm(dim=-1).median().item():.2f} (shortest {words.norm(dim=-1).min().item():.2f}); the "
      f"{len(unread)} it never read: median {table[unread].norm(dim=-1).median().item():.2f} "
      f"(longest {table[unread].norm(dim=-1).max().item():.2f})")

scenes = [world.sample_scene(s) for s in world.split_seeds("val", 300)]
with torch.no_grad():
    h_v = stage1.encode_images(world.pixel_values(world.render_batch(scenes, cfg.image_size)))  # (300, N, d_lm)
    scene_words = torch.tensor([cells.cell_words(s, tokenizer) for s in scenes])  # (300, N, 5)
    cell_tokens = cells.embed_cells(stage1.lm.embed_tokens, scene_words).flatten(0, 1)  # (300 N, d_lm)
visual = h_v.flatten(0, 1)  # (300 N, d_lm)

unit_words = F.normalize(words, dim=-1)
nearest_to_visual, nearest_word = (F.normalize(visual, dim=-1) @ unit_words.T).max(dim=-1)  # (300 N,)
word_to_word = unit_words @ unit_words.T
word_to_word.fill_diagonal_(-1.0)
nearest_to_word = word_to_word.max(dim=-1).values  # (V,)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
bins = np.linspace(0.2, 1.0, 41)
axes[0].hist(nearest_to_word.numpy(), bins=bins, density=True, alpha=0.6, label="word: nearest other word")
axes[0].hist(nearest_to_visual.numpy(), bins=bins, density=True, alpha=0.6, label="visual token: nearest word")
axes[0].set_xlabel("cosine similarity")
axes[0].set_title("how close to a word?", fontsize=10)
axes[0].legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)  # below the axes
lengths = {"words read": words, "cell tokens": cell_tokens, "visual tokens H_v": visual}
axes[1].boxplot([v.norm(dim=-1).numpy() for v in lengths.values()], orientation="horizontal",
                whis=(0, 100))  # whiskers from the shortest to the longest
axes[1].set_yticks([1, 2, 3], list(lengths))
axes[1].set_xscale("log")
axes[1].set_xlabel("length (L2 norm; box: quartiles, line: median)")
axes[1].set_title("how long?", fontsize=10)
fig.tight_layout()
plt.show()
print(f"median cosine to the nearest word: visual tokens {nearest_to_visual.median().item():.2f}, "
      f"words {nearest_to_word.median().item():.2f}")
print("median length: " + ", ".join(f"{label} {v.norm(dim=-1).median().item():.2f}" for label, v in lengths.items()))

# %% [markdown]
# Second test: for the patch that holds an object, is the nearest word at least the object's colour or its shape? The
# cell's five words (size, colour, shape, row, column) are in `scene_words`:

# %%
occupied = (scene_words[..., 3] != cells.PAD).flatten()  # (300 N,): the patches whose cell holds an object
own = scene_words.flatten(0, 1)  # (300 N, 5): each patch's cell words
nearest_ids = word_ids[nearest_word]  # (300 N,)
colour_or_shape = (nearest_ids[:, None] == own[:, 1:3]).any(-1)[occupied]
in_the_cell = (nearest_ids[:, None] == own).any(-1)[occupied]
to_cell_token = F.cosine_similarity(visual, cell_tokens, dim=-1)[occupied]
print(f"object patches: {int(occupied.sum())}; their nearest word is")
print(f"   the object's colour or shape: {colour_or_shape.float().mean().item():.2f}")
print(f"   one of the cell's five words: {in_the_cell.float().mean().item():.2f}")
nearest = Counter(tokenizer.convert_ids_to_tokens(int(i)).lstrip("\u2581") for i in nearest_ids[occupied])
print("   most often:", ", ".join(f"{w!r} ({c})" for w, c in nearest.most_common(6)))
print(f"median cosine of an object patch's visual token to its nearest word "
      f"{nearest_to_visual[occupied].median().item():.2f}, to its cell token {to_cell_token.median().item():.2f}")


# %% [markdown]
# Third test: what does a visual token know about *other* patches? Take, in each scene, a patch with **no** object in
# it — only background noise — and ask a linear probe how many objects the whole scene holds. At the embedding layer a
# patch token is a function of its own pixels and its position only, so the probe can do little better than guessing
# (only *which* patch is the first empty one hints at the count). After the blocks, attention has mixed information
# across patches:

# %%
def empty_patch_features(encoder, seeds, layer):
    '''For each scene: the hidden state of its first patch without an object, and its number of objects.'''
    scenes = [world.sample_scene(s) for s in seeds]
    with torch.no_grad():
        tokens = encoder(world.pixel_values(world.render_batch(scenes, cfg.image_size)))[0][layer][:, 1:]  # (B, N, D)
    feats, counts = [], []
    for scene, row in zip(scenes, tokens):
        occupied = torch.stack([probe.patch_mask(o.box, cfg.image_size, cfg.patch_size) for o in scene.objects]).any(0)
        feats.append(row[int((~occupied).nonzero()[0, 0])])
        counts.append(len(scene.objects) - 1)  # classes 0, 1, 2 for 1, 2, 3 objects
    return torch.stack(feats), torch.tensor(counts)


torch.set_num_threads(1)  # probe fits: one thread is faster, as in section 5
print(f"{'features of an empty patch':>34} | object count probe accuracy")
for layer, name in [(0, "hidden_states[0] (embeddings)"), (-2, "hidden_states[-2] (Z_v)")]:
    x_train, y_train = empty_patch_features(tower, world.split_seeds("train", 1500), layer)
    x_test, y_test = empty_patch_features(tower, world.split_seeds("val", 500), layer)
    predict = probe.fit_logistic(x_train, y_train, 3)
    print(f"{name:>34} | {(predict(x_test) == y_test).float().mean().item():.2f}")
print(f"{'guessing the most frequent count':>34} | {torch.bincount(y_test).max().item() / len(y_test):.2f}")
torch.set_num_threads(2)


# %% [markdown]
# **What the three tests say.** First, a visual token is not a word. Its nearest word is less close to it (median
# cosine 0.43) than words are to their nearest other word (0.58), and it is about six times as long: median 8.12,
# against 1.32 for the words `vicuna-mini` read and 2.66 for the cell tokens it was pre-trained on. The language model
# reads it anyway: its first RMSNorm divides every input vector by the vector's own root-mean-square before attention
# reads it. Second, the nearest word is the object's colour or shape for only half of the object patches (0.50); most
# often it is a size word, `large` or `small`. Yet it is one of the cell's five words for 0.92 of them, and an object
# patch's visual token is much closer to its cell token, the *sum* of those five words (median cosine 0.73), than to any
# single word (0.41). $W$ was trained to make a language model that reads cell tokens write the right caption, and it
# learned to write something like a cell token: several words bound into one vector, not a word. Third, a patch with
# nothing in it knows how many objects the scene holds once the blocks have mixed the patches (0.98 at
# `hidden_states[-2]`, against 0.39 at the embedding layer and 0.36 for guessing the most frequent count): a visual
# token is a summary of its patch *in context*, which no single word is.

# %% [markdown]
# ### Study question 14: which statements are true?
#
# - **(a)** Each visual token stands for one word of the vocabulary, such as "red" or "circle".
# - **(b)** A visual token is a continuous vector $W \cdot Z_v$: no tokenizer turns the image into ids of the vocabulary.
# - **(c)** The language model is trained to predict the visual tokens, as it predicts the next word.
# - **(d)** Visual tokens take sequence positions, get positions like words, and are read by the same self-attention
#   as word embeddings — which is why an unmodified LLM can consume them.
# - **(e)** For nearly every patch that holds an object, the word embedding nearest to its visual token is the name of
#   the object's colour or shape.
# - **(f)** A visual token can carry information about other patches of the image, because the ViT's attention mixed
#   the patches before $W$.
# - **(g)** Visual tokens have about the same length (norm) as word embeddings.
# - **(h)** Visual tokens are discrete codes from a learned codebook, like a VQ-VAE's.
#
# Return the letters of **all** true statements.

# %% tags=["exercise"]
def answer_study_q14() -> str:
    '''The letters of every true statement, e.g. "ace".'''
    ### BEGIN SOLUTION
    return "bdf"
    ### END SOLUTION


# %% tags=["grader", "study-q14"]
nb02.check_study_q14(answer_study_q14)

# %% [markdown] tags=["solution-only"]
# **A model answer.** The analogy holds for the *interface* and fails for the *content*. True: (b) visual tokens are
# continuous vectors $H_v = W \cdot Z_v$, produced by a linear map, never looked up in a vocabulary (LLaVA's code
# replaces the placeholder id −200 by the features; so (h), a discrete codebook, is false for LLaVA); (d) they sit at
# sequence positions and are read by the same attention as words, which is all an unmodified LLM needs; (f) each one is
# contextual: an empty patch's token at `hidden_states[-2]` predicts how many objects the whole scene holds, which the
# same patch at the embedding layer cannot. False: (a) and (e) — the nearest word is the object's colour or shape for
# only half of the object patches, and a visual token is closer to the sum of its cell's five words than to any one of
# them (the second test); being near a word does not make a vector a word; (g) visual tokens are about six times as
# long as the words `vicuna-mini` read (the first test); (c) image positions take no loss (their labels are −100,
# notebook 05), so the LLM never predicts or generates them. So "a sentence of tokens" is an oversimplification: it is
# a sequence of soft prompts in the word-embedding space — here each closer to a sum of its cell's words than to any
# one word — a dense, mixed summary of its patch and its context that the LLM learned to read (stage 1 aligns them,
# stage 2 teaches the LLM to use them), not a string of words.

# %% [markdown]
# ## Questionnaire
#
# Not graded: questions to think about before notebook 03. Write your answers down.
#
# 1. A `Conv2d` with `stride == kernel_size` is a matrix multiplication on patches. What changes if the stride is
#    smaller than the kernel (overlapping patches)? Could you still write it with `rearrange`?
# 2. Why does a wrong flattening order, `(p1 p2 c)` instead of `(c p1 p2)`, not raise any error? How would you catch it
#    in a test?
# 3. In exercise 2.2, what happens to the attention weights if you divide by $d$ instead of $\sqrt{d}$? By $D$? Look
#    at the saturation figure.
# 4. Pre-LN keeps an un-normalised residual stream. What does that mean for the *scale* of `hidden_states[-1]`
#    compared with `hidden_states[1]`? Check it on `clip-mini`.
# 5. CLIP's temperature is clamped at 100. What goes wrong for a contrastive loss if the scale grows without bound?
# 6. `clip-mini` trains with shape twins and cell twins as hard negatives. Predict the shape probe curve of an encoder
#    trained without shape twins, and say why. What could a linear $W$ no longer write without the cell twins?
# 7. The zero-gradient argument depends on CLS pooling. SigLIP, used by many newer VLMs, pools with an attention head
#    over all tokens. What would you expect for its last layer's patch tokens?
# 8. LLaVA-1.5 keeps every one of 576 visual tokens. If a visual token is *contextual* (section 7), why not feed the
#    LLM only a few of them? What would a question about one object's position need? (Study questions 8 and 14;
#    notebook 09.)
