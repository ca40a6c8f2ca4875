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
# # 04 — The projector: from $Z_v$ to $H_v$
#
# LLaVA's whole bridge from vision to language is one equation (LLaVA §4.1, eq. 1):
#
# $$H_v = W \cdot Z_v, \qquad Z_v = g(X_v).$$
#
# $g$ is the frozen CLIP encoder of notebook 02, the language model $f_\phi$ is the Vicuna of notebook 03, and $W$ — a
# single trainable matrix in LLaVA v1, a two-layer MLP in LLaVA-1.5 — is all that connects them. This notebook takes
# that equation apart: which tensor $Z_v$ is, exactly; what shape $W$ has and how many parameters that is, for the real
# models and for ours; where the $N$ rows of $H_v$ go in the language model's input; what $W$ *should* write, and
# whether the $W$ that stage 1 learned writes it; what a linear map cannot do that LLaVA-1.5's MLP can; what is lost
# when the patches are pooled into one vector; and whether a visual token is a word.
#
# ### Goals
# After this notebook you can
#
# 1. derive $H_v = W \cdot Z_v$ from the shapes up — layer −2, CLS dropped, $N$ tokens, nothing pooled — and write it
#    (exercise 4.1), and LLaVA-1.5's `mlp2x_gelu` (exercise 4.2);
# 2. count a projector's parameters, LLaVA's real ones included (exercise 4.3);
# 3. solve for the least-squares $W$ onto the inputs the language model was pre-trained on (exercise 4.4), and compare
#    it with the $W$ that stage 1 learned by maximum likelihood;
# 4. measure where a linear $W$ falls short and a two-layer MLP does not, and say why LLaVA-1.5 moved to `mlp2x_gelu`;
# 5. splice $N$ image features into the embedding sequence, with the count check (exercise 4.5);
# 6. measure the information bottleneck of one pooled vector against the full patch grid, and correct a common
#    description of LLaVA;
# 7. answer study questions 2, 8 and 14 (and the splice half of 10).
#
# ### Time
# About **80 minutes**: 40 of reading, five exercises of 5–10 minutes each, and three study questions. Running every
# cell (strict `pytest --nbval`) took 27 to 37 s over four runs on 2 CPU cores shared with other jobs (model
# training, another notebook). Nothing here trains longer than a few seconds: the only fit by gradient descent is a
# small MLP regression (section 5).
#
# ### Numbers to expect
# The first code cell prints the real projectors next to ours. The zoo's `llava-mini-stage1` (a linear $W$ trained in
# stage 1 with `clip-mini` and `vicuna-mini` frozen) writes captions at an object F1 of about 0.7; a least-squares $W$
# computed in a fraction of a second writes worse ones, and a small MLP fitted the same way writes better ones.

# %% [markdown]
# ## 0. Set-up

# %%
import copy

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from llava_mini import cells, evaluate, probe, projector, teacher, world, zoo
from llava_mini.conversation import build_prompt
from llava_mini.course import setup_notebook
from llava_mini.grading import nb04
from llava_mini.tokenizer import load_tokenizer

setup_notebook(seed=0)
tokenizer = load_tokenizer()
manifest = zoo.read_manifest()
stage1 = zoo.load("llava-mini-stage1")  # g = clip-mini, W after stage 1, f = vicuna-mini (both frozen in stage 1)
vcfg, lcfg = stage1.config.vision, stage1.config.lm
grid = vcfg.image_size // vcfg.patch_size

rows = [
    ("image (pixels)", "224 / 336", vcfg.image_size),
    ("patch (pixels)", "14", vcfg.patch_size),
    ("patch tokens N", "256 / 576", grid * grid),
    ("vision width d_v", "1024", vcfg.width),
    ("feature layer", "-2", vcfg.feature_layer),
    ("CLS token", "dropped", "dropped" if vcfg.select == "patch" else "kept"),
    ("LLM width d_llm", "4096 / 5120", lcfg.dim),
    ("projector", "linear / mlp2x_gelu", stage1.config.projector),
]
print(f"{'':>18} | {'LLaVA v1 / v1.5':>20} | {'llava-mini':>10}")
for name, real, ours in rows:
    print(f"{name:>18} | {real:>20} | {ours!s:>10}")

# %% [markdown]
# ## 1. $H_v = W \cdot Z_v$, from the shapes up
#
# Follow one image through LLaVA's code (`clip_encoder.py`, `llava_arch.py`):
#
# 1. $X_v$ is an image tensor, $(3, 336, 336)$ for LLaVA-1.5.
# 2. The CLIP ViT cuts it into $24 \times 24 = 576$ patches, prepends a CLS token and runs 24 blocks. With
#    `output_hidden_states=True` it returns 25 hidden states (the embedding output, then one per block), each
#    $(1 + N) \times d_v = 577 \times 1024$.
# 3. LLaVA takes `hidden_states[-2]`, the output of the second-to-last block (`mm_vision_select_layer = -2`; notebook 02
#    showed why not the last), and with `mm_vision_select_feature = 'patch'` drops index 0, the CLS token:
#    $Z_v \in \mathbb{R}^{N \times d_v}$, $576 \times 1024$.
# 4. $W$ maps **each row** of $Z_v$ to the language model's width: $H_v \in \mathbb{R}^{N \times d_{llm}}$,
#    $576 \times 4096$ for a 7B model. The paper writes $W \cdot Z_v$ with $Z_v$'s patches as columns; PyTorch keeps
#    tokens as rows and stores `nn.Linear`'s weight as (out, in) $= (d_{llm}, d_v)$, so in code
#    $H_v = Z_v W^\top + b$.
# 5. The $N$ rows of $H_v$ take $N$ positions of the language model's input, where the prompt says `<image>`
#    (section 6).
#
# Nothing is pooled: every patch becomes one visual token. A description of LLaVA that circulates — including the
# write-up this course follows — says LLaVA mean-pools CLIP's output or keeps only the CLS vector. The released code
# does neither; it keeps all 256 (v1) or 576 (v1.5) patch tokens and throws CLS away. Section 7 measures what pooling
# would cost.
#
# Our numbers: a 48-pixel image, 16-pixel patches, so $N = 9$ — one patch per cell of ShapesWorld's 3×3 grid —
# $d_v = 64$ and $d_{llm} = 64$. Here are the shapes along the way, on three test images:

# %%
scenes = [world.sample_scene(s) for s in world.split_seeds("test", 3)]
pixels = world.pixel_values(world.render_batch(scenes, vcfg.image_size))  # X_v (3, 3, 48, 48)
with torch.no_grad():
    hidden_states, _ = stage1.vision(pixels)  # layers + 1 tensors (B, 1 + N, d_v)
W, b = stage1.projector.weight.detach(), stage1.projector.bias.detach()
print("X_v:", tuple(pixels.shape))
print("hidden_states:", len(hidden_states), "tensors of", tuple(hidden_states[0].shape), "(B, 1 + N, d_v)")
print("Z_v = hidden_states[-2][:, 1:]:", tuple(hidden_states[-2][:, 1:].shape), "(B, N, d_v)")
print("W:", tuple(W.shape), "(d_llm, d_v) | b:", tuple(b.shape))
print("H_v:", tuple(stage1.encode_images(pixels).shape), "(B, N, d_llm)")


# %% [markdown]
# ### Exercise 4.1: the visual tokens
#
# Write `visual_tokens(hidden_states, weight, bias, layer=-2)`: from the tuple of hidden states (each
# $(B, 1 + N, d_v)$, CLS at index 0), select layer `layer`, drop the CLS token, and apply LLaVA v1's projector with
# `weight` $(d_{llm}, d_v)$ and `bias` $(d_{llm},)$. Return $H_v$, $(B, N, d_{llm})$. Write the product yourself with
# `@`: the grader switches off `F.linear` and `nn.Linear.forward` while your code runs. Do not change the inputs.
# *(About 2 lines.)*

# %% tags=["exercise"]
def visual_tokens(hidden_states, weight: torch.Tensor, bias: torch.Tensor, layer: int = -2) -> torch.Tensor:
    '''H_v (B, N, d_llm) = W·Z_v + b, Z_v = hidden_states[layer] without its CLS token.'''
    ### BEGIN SOLUTION
    z_v = hidden_states[layer][:, 1:]  # (B, N, d_v): CLS dropped
    return z_v @ weight.T + bias  # (B, N, d_llm)
    ### END SOLUTION


# %% tags=["grader"]
nb04.check_visual_tokens(visual_tokens)

# %% [markdown]
# The package does the same in two steps: `VisionTower.features` selects the layer and drops CLS (both set in the
# vision config, `feature_layer=-2`, `select="patch"`), and `LlavaMini.encode_images` applies the `LinearProjector`
# (an `nn.Linear`) to the result:

# %%
with torch.no_grad():
    z_v = stage1.vision.features(pixels)  # (B, N, d_v)
    print("features(X_v) is hidden_states[-2] without CLS:", torch.equal(z_v, hidden_states[-2][:, 1:]))
    print("encode_images(X_v) is the projector applied to it:", torch.equal(stage1.encode_images(pixels),
                                                                          stage1.projector(z_v)))


# %% [markdown]
# ## 2. LLaVA-1.5's projector: `mlp2x_gelu`
#
# LLaVA-1.5 (Liu et al., 2023b, §3.3) replaced the single linear layer by a two-layer MLP, `mlp2x_gelu` in the code's
# naming (`multimodal_projector/builder.py`): `Linear(d_v, d_llm)`, GELU, `Linear(d_llm, d_llm)`,
#
# $$H_v = W_2\, \mathrm{GELU}(W_1 Z_v + b_1) + b_2,$$
#
# still applied to each patch token on its own. Hugging Face's `LlavaMultiModalProjector` has the same two layers
# (`linear_1`, `act`, `linear_2`). The GELU is PyTorch's default, the exact one, $x\,\Phi(x)$ with the normal CDF
# $\Phi$, not the tanh approximation.
#
# ### Exercise 4.2: `mlp2x_gelu`
#
# Write `mlp2x_gelu(z_v, w1, b1, w2, b2)` for $Z_v$ of shape $(B, N, d_v)$, `w1` $(d_{llm}, d_v)$, `w2`
# $(d_{llm}, d_{llm})$, biases $(d_{llm},)$; return $(B, N, d_{llm})$. Use `@` and `F.gelu`; `F.linear`,
# `nn.Linear.forward` and `nn.Sequential.forward` are switched off while the grader runs your code. *(1 line.)*

# %% tags=["exercise"]
def mlp2x_gelu(z_v: torch.Tensor, w1, b1, w2, b2) -> torch.Tensor:
    '''LLaVA-1.5's projector: Linear -> GELU -> Linear on each token, (B, N, d_v) -> (B, N, d_llm).'''
    ### BEGIN SOLUTION
    return F.gelu(z_v @ w1.T + b1) @ w2.T + b2
    ### END SOLUTION


# %% tags=["grader"]
nb04.check_mlp2x_gelu(mlp2x_gelu)

# %%
torch.manual_seed(0)
mlp = projector.build_projector("mlp2x_gelu", vcfg.width, lcfg.dim)  # the package's MLPProjector, random weights
print(mlp)
print("keys:", list(mlp.state_dict()), "| H_v:", tuple(mlp(z_v).shape))


# %% [markdown]
# The keys `0.*` and `2.*` are those of LLaVA's `mm_projector` (`nn.Sequential`; index 1 is the GELU, which has no
# parameters).
#
# ## 3. How many parameters?
#
# A linear layer from $d_v$ to $d_{llm}$ with a bias has $d_v d_{llm} + d_{llm}$ parameters: one weight per (input,
# output) pair, one bias per output. The MLP adds a square layer with its own bias.
#
# ### Exercise 4.3: parameter counts
#
# Write `projector_params(kind, d_v, d_llm)` for `kind` `"linear"` or `"mlp2x_gelu"`, returning an `int`, from the
# layer shapes (the grader switches off the package's `projector.projector_param_count` and `build_projector`).
# *(About 3 lines.)*

# %% tags=["exercise"]
def projector_params(kind: str, d_v: int, d_llm: int) -> int:
    '''Parameters of a "linear" or "mlp2x_gelu" projector from d_v to d_llm, biases included.'''
    ### BEGIN SOLUTION
    linear = d_v * d_llm + d_llm  # W and b
    if kind == "linear":
        return linear
    return linear + d_llm * d_llm + d_llm  # + the second layer, d_llm -> d_llm
    ### END SOLUTION


# %% tags=["grader"]
nb04.check_projector_params(projector_params)

# %% [markdown]
# With the package's `projector.projector_param_count` (the same formula), LLaVA's projectors (CLIP ViT-L/14, $d_v = 1024$; Vicuna-7B $d_{llm} = 4096$, 13B 5120) and ours,
# and what share of the model each is (for LLaVA, of its language model alone, 6.7 and 13.0 billion parameters; for
# ours, of all three parts):

# %%
table = [("LLaVA-7B", 1024, 4096, 6.7e9), ("LLaVA-13B", 1024, 5120, 13.0e9),
         ("llava-mini", vcfg.width, lcfg.dim, sum(p.numel() for p in stage1.parameters()))]
print(f"{'':>10} | {'linear':>10} | {'mlp2x_gelu':>11} | {'linear, share of the model':>27}")
for name, d_v, d_llm, total in table:
    linear = projector.projector_param_count("linear", d_v, d_llm)
    mlp_count = projector.projector_param_count("mlp2x_gelu", d_v, d_llm)
    print(f"{name:>10} | {linear:>10,} | {mlp_count:>11,} | {100 * linear / total:>26.3f}%")
print("the zoo's W:", sum(p.numel() for p in stage1.projector.parameters()), "parameters")


# %% [markdown]
# About 4 million parameters in front of 7 billion: stage 1 trains less than a thousandth of LLaVA, which is why it
# is cheap (LLaVA-13B's stage 1: 4 hours on 8 A100s for 595K pairs) and why it cannot teach the language model anything new — it can only
# choose which inputs to hand it. In `llava-mini` the language model is tiny, so $W$ is a larger share, but the
# arithmetic is the same.
#
# ## 4. The least-squares view
#
# What should $W$ write? Notebook 03 answered it for our language model: `vicuna-mini` was pre-trained, on text only,
# to read a scene as 9 **bound cell tokens**, one per grid cell, each the sum of its word embeddings
# (`llava_mini/cells.py`): size + colour + shape + row + column for a cell with an object, `.` + row + column for an
# empty one. If each patch token should become its cell's token, $W$ has a *target* for every patch, and fitting a
# linear map to targets is least squares:
#
# $$\min_{W, b} \sum_{\text{patches } i} \lVert W z_i + b - t_i \rVert^2 .$$
#
# Stack the patch tokens as rows of $Z$ $(n, d_v)$ with a column of ones appended, $\tilde Z = [Z, 1]$, and the
# targets as rows of $T$ $(n, d_{llm})$. The solution $X = [W^\top; b^\top]$ of $\tilde Z X \approx T$ satisfies the
# **normal equations** $\tilde Z^\top \tilde Z X = \tilde Z^\top T$: the residual is orthogonal to every column of
# $\tilde Z$. `torch.linalg.lstsq(Z1, T).solution` solves it stably (through a QR or SVD factorisation rather than
# forming $\tilde Z^\top \tilde Z$).
#
# ### Exercise 4.4: the least-squares projector
#
# Write `least_squares_projector(z, targets)`: `z` is $(n, d_{in})$, `targets` $(n, d_{out})$; return
# `(weight, bias)`, `weight` $(d_{out}, d_{in})$ as `nn.Linear` stores it and `bias` $(d_{out},)$, both in `z`'s dtype,
# minimising the squared error of `z @ weight.T + bias`. Use `torch.linalg.lstsq` or the normal equations (solve in
# float64 if you like, then convert back). The package's `projector.least_squares_linear` is switched off while the
# grader runs your code. *(About 4 lines.)*

# %% tags=["exercise"]
def least_squares_projector(z: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    '''(weight (d_out, d_in), bias (d_out,)) minimising the squared error of z @ weight.T + bias against targets.'''
    ### BEGIN SOLUTION
    design = torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], dim=1)  # (n, d_in + 1)
    solution = torch.linalg.lstsq(design.double(), targets.double()).solution  # (d_in + 1, d_out)
    return solution[:-1].T.to(z.dtype), solution[-1].to(z.dtype)
    ### END SOLUTION


# %% tags=["grader"]
nb04.check_least_squares_projector(least_squares_projector)


# %% [markdown]
# Now the real thing. For 3000 training scenes we take every patch token $Z_v$ of `clip-mini` and the cell token of
# the same cell, made with `vicuna-mini`'s embedding table: 27,000 (patch, target) pairs. We solve for $W$ with the
# package's `projector.least_squares_linear` (your function's twin; it returns a `LinearProjector`) and measure on 500 validation scenes how much of the targets' variance it leaves unexplained, and the
# cosine between each visual token and its cell token:

# %%
def patches_and_cells(split: str, n: int):
    '''Every patch token Z_v (n·N, d_v) of n scenes of a split, its cell's token (n·N, d_llm), and its cell's
    word ids (n·N, 5); also the scenes.'''
    scenes = [world.sample_scene(s) for s in world.split_seeds(split, n)]
    words = torch.tensor([cells.cell_words(s, tokenizer) for s in scenes])  # (n, N, 5)
    with torch.no_grad():
        z = stage1.vision.features(world.pixel_values(world.render_batch(scenes, vcfg.image_size)))  # (n, N, d_v)
        t = cells.embed_cells(stage1.lm.embed_tokens, words)  # (n, N, d_llm)
    return z.flatten(0, 1), t.flatten(0, 1), words.flatten(0, 1), scenes


def unexplained(pred: torch.Tensor, target: torch.Tensor) -> float:
    '''The share of the targets' variance (around their mean) that the prediction leaves unexplained.'''
    return float((pred - target).pow(2).sum() / (target - target.mean(0)).pow(2).sum())


z_train, t_train, _, _ = patches_and_cells("train", 3000)
z_val, t_val, words_val, scenes_val = patches_and_cells("val", 500)
ls_projector = projector.least_squares_linear(z_train, t_train)  # LinearProjector: W (d_llm, d_v), b (d_llm,)
w_ls, b_ls = ls_projector.weight.detach(), ls_projector.bias.detach()
with torch.no_grad():
    h_learned = stage1.projector(z_val)  # (n·N, d_llm): the W stage 1 learned
    h_ls = ls_projector(z_val)  # (n·N, d_llm)
print(f"patches: {len(z_train):,} train, {len(z_val):,} val")
print(f"{'':>16} | {'unexplained variance':>20} | {'cosine with the cell token':>26} | {'median length':>13}")
for name, h in [("least-squares W", h_ls), ("learned W", h_learned), ("cell tokens", t_val)]:
    print(f"{name:>16} | {unexplained(h, t_val):>20.3f} | {F.cosine_similarity(h, t_val, dim=-1).mean().item():>26.2f}"
          f" | {h.norm(dim=-1).median().item():>13.2f}")
print(f"cosine between the two matrices W: {F.cosine_similarity(w_ls.flatten(), W.flatten(), dim=0).item():.2f}")


# %% [markdown]
# The closed-form $W$ comes close to the targets (a cosine near 1 for a typical patch) but not all the way: a share of
# their variance is beyond any linear map of these features. The learned $W$ is somewhere else entirely. Its visual
# tokens are about three times as long as the cell tokens, point elsewhere (a mean cosine of about 0.6), and as a
# matrix it has a cosine of about 0.3 with the least-squares one; measured against the cell tokens, its squared
# error is about 14 times their variance.
#
# Stage 1 never saw the cell tokens. It maximised the likelihood of captions through the frozen language model (eq. 3,
# notebook 05), and that objective does not care where a visual token lies as long as the language model reads it
# right. Two things make "where" and "how the LLM reads it" differ. The language model's first operation on every input
# vector is RMSNorm, which divides it by its own root-mean-square: the length of a visual token is almost free. And the
# model's later layers read only some directions of a token; an error in a direction nothing reads costs the likelihood
# nothing, an error in one that matters costs a lot, while least squares weighs all directions alike. So which $W$ is
# better *for the language model*? Plug each into `llava-mini-stage1` and ask it to caption 300 test images (stage 1's
# task, in the `plain` format) and to answer 100 test questions per category:

# %%
def with_projector(proj) -> torch.nn.Module:
    '''llava-mini-stage1 with its W replaced by `proj` (g and f unchanged).'''
    model = copy.deepcopy(stage1)
    model.projector = proj
    return model


def measure(model) -> dict[str, float]:
    '''Caption F1 on 300 test images and sentence accuracy on 100 test questions per category.'''
    result = {"caption F1": evaluate.caption_f1(model, tokenizer, n=300)[0]}
    accuracy = evaluate.accuracy(model, tokenizer, n=100, answers="sentence", free_form=False)
    return result | {category: accuracy[category] for category in teacher.CATEGORIES}


scaled_projector = projector.LinearProjector(vcfg.width, lcfg.dim)
with torch.no_grad():
    scaled_projector.weight.copy_(3 * w_ls)  # the least-squares W, three times as long
    scaled_projector.bias.copy_(3 * b_ls)
torch.set_num_threads(1)  # generation is many tiny steps, which one thread runs faster than two (notebook 03)
results = {"learned W (stage 1)": measure(stage1), "least-squares W": measure(with_projector(ls_projector)),
           "least-squares W x 3": measure(with_projector(scaled_projector))}
torch.set_num_threads(2)


def show_results(results: dict) -> None:
    keys = list(next(iter(results.values())))
    print(f"{'':>22} " + " ".join(f"{k:>10}" for k in keys))
    for name, values in results.items():
        print(f"{name:>22} " + " ".join(f"{values[k]:>10.2f}" for k in keys))


show_results(results)

# %% [markdown]
# **What the table says.** The least-squares $W$, the one closest to what `vicuna-mini` was pre-trained on, is the
# worse captioner: caption F1 0.45 against 0.71 for the $W$ stage 1 learned. (The recipe log, `docs/recipe_log.md`,
# measured the same on other scenes and another number of them, so its figures differ in the last digit: 12.7%
# unexplained, F1 0.46 against 0.71, a cosine of 0.33 between the matrices.)
# It is not worse at everything: it answers shape (0.65 against 0.59) and position questions (0.47 against 0.32)
# better, and count far worse (0.28 against 0.60). Tripling it changes the captions little (F1 0.43 against 0.45):
# the first RMSNorm divides each token by its own scale, so a visual token's length is nearly free — nearly, because
# the residual stream carries the unnormalised vector on, and the questions do move (by up to 12 points, on shape,
# mostly down). The learned $W$'s tokens are three times
# as long, and that costs it nothing.
#
# Least squares and likelihood are different objectives. Least squares spends $W$'s 4,160 parameters evenly on every
# direction of the 64-dimensional target; the likelihood spends them on the directions through which the frozen
# language model's predictions change. Neither is a perfect writer, because no linear map of these features writes the
# cell tokens exactly: 12.6% of their variance is left over even for the best one. Section 5 asks why.
#
# ## 5. What a linear map cannot do
#
# Why can no linear $W$ write the cell tokens exactly? A linear map writes each output as a weighted sum of the
# patch token's features. That suffices when each word of the cell token — its colour, its shape, its position — is
# itself a linear function of the features. It fails when a word depends on the features only through an interaction:
# the word "red" should be written when the patch holds *this cell's* red object, not when red merely appears in the
# features because a neighbour is red. Notebook 02 showed that the patch tokens of layer −2 are contextual (an empty
# patch knows how many objects the scene holds): each carries its neighbours too, and keeping one's own object while
# ignoring the others is a gate, which a sum of features cannot compute. A two-layer MLP can: its hidden GELU units
# switch on for some inputs and off for others.
#
# The experiment: fit LLaVA-1.5's projector, `mlp2x_gelu` with the package's `MLPProjector` (64 → 64 → 64, 8,320
# parameters, twice the linear map's), to the *same* 27,000 (patch, cell token) pairs, by gradient descent on the
# squared error (Adam, 1500 steps of 512 pairs, a few seconds). No language model is involved, exactly as for the
# least-squares $W$.

# %%
torch.manual_seed(0)
mlp_projector = projector.build_projector("mlp2x_gelu", vcfg.width, lcfg.dim)
optimizer = torch.optim.Adam(mlp_projector.parameters(), lr=3e-3)
batches = torch.randint(len(z_train), (1500, 512), generator=torch.Generator().manual_seed(0))  # (steps, batch)
torch.set_num_threads(1)  # many small steps: one thread is faster (and the result is the same on every run)
for step, index in enumerate(batches):
    loss = F.mse_loss(mlp_projector(z_train[index]), t_train[index])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step in (0, 99, 499, 1499):
        print(f"step {step + 1:>4}: mean squared error {loss.item():.4f}")
with torch.no_grad():
    h_mlp = mlp_projector(z_val)  # (n·N, d_llm)
print(f"unexplained variance on validation patches: least-squares W {unexplained(h_ls, t_val):.3f}, "
      f"mlp2x_gelu {unexplained(h_mlp, t_val):.3f}")
results["mlp2x_gelu (fitted)"] = measure(with_projector(mlp_projector))
torch.set_num_threads(2)

fig, ax = plt.subplots(figsize=(9, 3.4))
metrics = list(results["mlp2x_gelu (fitted)"])
x = np.arange(len(metrics))
for i, (name, values) in enumerate(results.items()):
    ax.bar(x + (i - 1.5) * 0.2, [values[m] for m in metrics], width=0.2, label=name)
ax.set_xticks(x, metrics)
ax.set_ylim(0, 1)
ax.set_ylabel("caption F1 / accuracy")
ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
ax.set_title("the same frozen g and f, four projectors W", fontsize=10)
fig.tight_layout()
plt.show()
show_results(results)


# %% [markdown]
# Which words does each map get wrong? Decode every visual token as the *nearest cell token* (by cosine) among all 459
# that any cell could hold — 9 cells, each empty or one of 2 sizes × 5 colours × 5 shapes — and score each of its
# words against the patch's own cell, for the patches that hold an object:

# %%
def word(text: str) -> int:
    return tokenizer.convert_tokens_to_ids("\u2581" + text)  # a word as it reads after a space


candidates = []  # every cell token's words: (459, 5), padded with cells.PAD like cells.cell_words
for row in range(3):
    for col in range(3):
        where = [word(world.ROWS[row]), word(world.COLUMNS[col])]
        candidates.append([tokenizer.convert_tokens_to_ids("."), *where, cells.PAD, cells.PAD])
        candidates += [[word(size), word(colour), word(shape), *where]
                       for size in world.SIZES for colour in world.COLOURS for shape in world.SHAPES]
candidates = torch.tensor(candidates)
with torch.no_grad():
    candidate_tokens = cells.embed_cells(stage1.lm.embed_tokens, candidates[None])[0]  # (459, d_llm)


def decode(h: torch.Tensor) -> torch.Tensor:
    '''The words (n, 5) of the cell token nearest (cosine) to each visual token.'''
    return candidates[(F.normalize(h, dim=-1) @ F.normalize(candidate_tokens, dim=-1).T).argmax(-1)]


occupied = words_val[:, 3] != cells.PAD  # patches whose cell holds an object
maps = {"learned W": h_learned, "least-squares W": h_ls, "mlp2x_gelu (fitted)": h_mlp}
decoded = {name: decode(h) for name, h in maps.items()}
parts = {"size": [0], "colour": [1], "shape": [2], "row + column": [3, 4], "all five": [0, 1, 2, 3, 4]}
print(f"{'object patches: right':>22} " + " ".join(f"{p:>12}" for p in parts))
for name, words in decoded.items():
    right = words[occupied] == words_val[occupied]  # (n_objects, 5)
    print(f"{name:>22} " + " ".join(f"{right[:, idx].all(-1).float().mean().item():>12.2f}" for idx in parts.values()))
empty_right = {name: (words[~occupied] == words_val[~occupied]).all(-1).float().mean().item()
               for name, words in decoded.items()}
print("empty patches decoded exactly: " + ", ".join(f"{n} {v:.2f}" for n, v in empty_right.items()))


# %% [markdown]
# **What the MLP shows.** Fitted to the same pairs in the same way (no language model involved), `mlp2x_gelu`
# leaves 3.3% of the cell tokens' variance unexplained, against 12.6% for the best linear map. Plugged into the same
# frozen language model, it writes captions at F1 0.90 — better than the learned linear $W$ (0.71), which had the
# language model's likelihood to guide it — and answers shape 0.91, count 0.74 and position 0.71. The decoding table
# says where the linear maps fail. The least-squares $W$ gets most objects' size, shape and place right and their
# colour wrong almost a quarter of the time (0.77) — perhaps because colour is what leaks most between neighbouring
# patch tokens (a guess, not measured). The
# learned $W$ gets colour and size right but places only 0.60 of the objects in the right cell, and position is its
# weakest question category (0.32). The MLP gets all five words right for 0.96 of the object patches.
#
# The recipe log measured the same gap with real stage-1 training: `mlp2x_gelu` trained by maximum likelihood in place
# of the linear $W$ reached caption F1 0.93 after 1500 steps (on an earlier `vicuna-mini`) and 0.97 after 3000 (100
# test scenes), against 0.71 for the shipped linear $W$ after the same 3000 steps; shape questions after stage 1, 0.87
# against 0.65. LLaVA-1.5 made the same change: more expressive, still one token per patch, still cheap (20,979,712
# parameters for the 7B model), and it gained on every benchmark of its Table 2 (GQA 46.8 → 47.3, MME
# 1323.8 → 1355.2, MM-Vet 26.3 → 27.8). Those gains are modest; ours are large. A guess, not measured: CLIP's features
# of real images are closer to linearly alignable with Vicuna's 4096-wide input space than `clip-mini`'s are with
# `vicuna-mini`'s 64-wide one, and our cell tokens demand exact bindings.
#
# ## 6. The splice: where the $N$ rows go
#
# The language model reads one sequence of vectors. LLaVA puts $H_v$ where the prompt says `<image>`:
#
# ```
# USER: <image>\nWhat colour is the circle? ASSISTANT:
# ```
#
# The original code tokenizes `<image>` as one placeholder id (−200), cuts the id sequence there, embeds the text
# pieces and concatenates text, $N$ rows of $H_v$, text (`prepare_inputs_labels_for_multimodal`). Hugging Face's
# `LlavaForConditionalGeneration`, and `llava_mini`, let the processor expand `<image>` into $N$ copies of an image
# token id first, so that the ids already have the final length; the model then embeds all ids and overwrites the
# image positions with the rows of $H_v$ (`masked_scatter`), image after image in order of appearance, each image's
# patches in raster order. Either way **the count must match**: $N$ placeholders per image. Transformers checks it and
# raises "Image features and image tokens do not match"; a classic cause is a tokenizer `max_length` that truncated
# the expanded prompt in the middle of an image's 576 placeholders (transformers issue #36002). Without the check, a
# truncated image would silently lose its last rows — or a model would silently read the wrong image's patches.
#
# Position matters too (study question 10): the language model is causal, so text *before* the image cannot see it,
# and text after it can. LLaVA puts the image at the start of the first user turn (the training code moves `<image>`
# there), so the question and every answer are read with the image in view, and its key–value cache is computed once
# for a whole conversation.
#
# ### Exercise 4.5: the splice
#
# Write `splice(embeds, input_ids, image_features, image_token_id)`: `embeds` $(B, T, D)$ are the token embeddings of
# `input_ids` $(B, T)$, in which every image appears as a run of $N$ placeholders `image_token_id`; `image_features`
# $(n_{img}, N, D)$ holds the images of the whole batch in order of appearance (row by row of the batch, left to
# right). Return a new $(B, T, D)$ tensor with image $i$'s $N$ rows at the $i$-th run of placeholders and everything
# else unchanged. First compare the counts: when the number of placeholders differs from the number of feature
# vectors $n_{img} \cdot N$, raise `ValueError` with a message that states both numbers. Do not change `embeds`; the
# result must carry gradients to `embeds` and `image_features`. (`LlavaMini.embed` is switched off while the grader runs
# your code.) *(About 5 lines.)*

# %% tags=["exercise"]
def splice(embeds: torch.Tensor, input_ids: torch.Tensor, image_features: torch.Tensor,
           image_token_id: int) -> torch.Tensor:
    '''embeds (B, T, D) with the placeholders' rows replaced by image_features (n_img, N, D), in order.'''
    ### BEGIN SOLUTION
    is_image = input_ids == image_token_id  # (B, T)
    n_slots, n_rows = int(is_image.sum()), image_features.shape[0] * image_features.shape[1]
    if n_slots != n_rows:
        raise ValueError(f"input_ids hold {n_slots} image placeholders but image_features has {n_rows} vectors")
    return embeds.masked_scatter(is_image[..., None].expand_as(embeds), image_features)  # (B, T, D)
    ### END SOLUTION


# %% tags=["grader"]
nb04.check_splice(splice)

# %% [markdown]
# With the zoo's model: the prompt of a question about one test image, spliced by `LlavaMini.embed` (the visual
# tokens land exactly at the placeholders); then the same prompt with one placeholder cut off, as a truncating
# tokenizer would leave it:

# %%
prompt = build_prompt([{"from": "human", "value": "<image>\nWhat colour is the circle?"}], tokenizer,
                      stage1.num_image_tokens)
ids = torch.tensor([prompt])  # (1, T)
is_image = ids[0] == tokenizer.image_token_id  # (T,)
with torch.no_grad():
    spliced = stage1.embed(ids, pixels[:1])  # (1, T, d_llm)
    print("prompt:", ids.shape[1], "tokens, of which", int(is_image.sum()), "placeholders, at positions",
          is_image.nonzero().flatten().tolist())
    print("the placeholders now hold H_v:", torch.equal(spliced[0, is_image], stage1.encode_images(pixels[:1])[0]),
          "| the text is unchanged:", torch.equal(spliced[0, ~is_image], stage1.lm.embed_tokens(ids)[0, ~is_image]))
    cut = ids[:, ids[0].tolist().index(tokenizer.image_token_id) + 1:]  # the first placeholder lost
    try:
        stage1.embed(cut, pixels[:1])
    except ValueError as err:
        print("with one placeholder cut off, LlavaMini.embed says:", err)


# %% [markdown]
# ## 7. The information bottleneck: one vector or the whole grid?
#
# Suppose LLaVA did what the common description says: one vector per image, the CLS token or the mean of the patch
# tokens, projected by $W$ into a single visual token. What would the language model lose? A linear probe answers it
# without training a language model (notebook 02 used the same tool): fit a logistic regression from each
# representation of `clip-mini`'s layer −2 to what a question needs, and test it on validation scenes.
#
# - **count**: how many objects the scene holds (1–3);
# - **which object is where**: for each of the 9 cells, its content — empty, or one of 5 colours × 5 shapes
#   (26 classes) — scored on the cells that hold an object; the grid version reads that cell's own patch token, which
#   is what the language model gets at that position;
# - **the whole layout**: all 9 cells right at once.
#
# The one-vector representations are the CLS token of layer −2 and the mean of its 9 patch tokens (64 numbers each);
# the grid is the 9 patch tokens (9 × 64). These are the `cls` and `mean` projectors of `llava_mini/projector.py` seen
# through a probe instead of a language model.

# %%
# float64 features and probes fitted to convergence (max_iter): the numbers then agree across CPU kinds, where
# 200 L-BFGS steps on float32 features moved the whole layout by a scene (0.80 or 0.81)
vision64 = copy.deepcopy(stage1.vision).double()


def representations(split: str, n: int):
    '''CLS, mean-pooled and grid features of layer -2 for n scenes, and their labels.'''
    scenes = [world.sample_scene(s) for s in world.split_seeds(split, n)]
    with torch.no_grad():
        pixels = world.pixel_values(world.render_batch(scenes, vcfg.image_size)).double()
        h = vision64(pixels)[0][-2]  # (n, 1 + N, d_v)
    content = torch.zeros(n, grid * grid, dtype=torch.long)  # 0 empty, else 1 + colour * 5 + shape
    for i, scene in enumerate(scenes):
        for o in scene.objects:
            content[i, o.row * grid + o.col] = 1 + world.COLOURS.index(o.colour) * len(world.SHAPES) + \
                world.SHAPES.index(o.shape)
    count = torch.tensor([len(s.objects) - 1 for s in scenes])  # classes 0, 1, 2
    return {"CLS": h[:, 0], "mean of patches": h[:, 1:].mean(1), "grid": h[:, 1:]}, count, content


train_x, train_count, train_content = representations("train", 2000)
val_x, val_count, val_content = representations("val", 500)
n_content = 1 + len(world.COLOURS) * len(world.SHAPES)
bottleneck = {}
torch.set_num_threads(1)  # probe fits: one thread is faster (notebook 02)
for name in train_x:
    flat_train, flat_val = train_x[name].flatten(1), val_x[name].flatten(1)  # the grid: 9 x 64 = 576 numbers
    count_probe = probe.fit_logistic(flat_train, train_count, 3, max_iter=1000)
    count_right = (count_probe(flat_val) == val_count).float().mean().item()
    predicted = torch.zeros_like(val_content)
    for cell in range(grid * grid):
        cell_train = train_x[name][:, cell] if name == "grid" else train_x[name]  # the cell's own patch token
        cell_val = val_x[name][:, cell] if name == "grid" else val_x[name]
        predicted[:, cell] = probe.fit_logistic(cell_train, train_content[:, cell], n_content, max_iter=1000)(cell_val)
    objects = val_content > 0
    bottleneck[name] = {"count": count_right,
                        "which object is where": (predicted == val_content)[objects].float().mean().item(),
                        "the whole layout": (predicted == val_content).all(1).float().mean().item()}
torch.set_num_threads(2)

fig, ax = plt.subplots(figsize=(7.5, 3.2))
tasks = list(next(iter(bottleneck.values())))
x = np.arange(len(tasks))
for i, (name, values) in enumerate(bottleneck.items()):
    bars = ax.bar(x + (i - 1) * 0.27, [values[t] for t in tasks], width=0.27, label=name)
    ax.bar_label(bars, [f"{values[t]:.2f}" for t in tasks], fontsize=7, padding=1)
ax.set_xticks(x, tasks)
ax.set_ylim(0, 1.15)
ax.set_ylabel("probe accuracy (500 val scenes)")
ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
ax.set_title("what one pooled vector keeps, against the full patch grid (clip-mini, layer -2)", fontsize=10)
fig.tight_layout()
plt.show()
for name, values in bottleneck.items():
    print(f"{name:>16}: " + ", ".join(f"{t} {v:.2f}" for t, v in values.items()))

# %% [markdown]
# **What the probes say.** Count survives pooling: the mean of the patches gives it perfectly (1.00), the CLS token
# nearly (0.89). How many objects there are is a property of the whole image, and a sum keeps it. Which object is where
# does not survive: from one vector, the probe names the content of an occupied cell right 0.23 (CLS) or 0.24 (mean)
# of the time, against 0.90 from the cell's own patch token, and the whole layout of 0.15 and 0.20 of the scenes,
# against 0.81. A mean of nine tokens knows that a red circle and a blue square are somewhere; which cell holds which is
# averaged away. That is the information bottleneck of "one vector per image", and the reason LLaVA keeps every patch
# token: "Where is the red circle?" and "What is left of the square?" need the grid. (The grid's numbers are a lower
# bound: each of its probes reads one 64-number token, and small objects' shapes are the hardest part, as notebook 02's
# probes showed.) The `cls` and `mean` projectors of `llava_mini/projector.py` make the same comparison through a whole
# language model, for the ablations of notebook 09.
#
# ## 8. Visual tokens and words (study question 14)
#
# Notebook 02 looked at the learned $W$'s visual tokens one word at a time: the nearest word embedding is less close to
# a visual token than words are to each other, visual tokens are several times longer than words, and for object
# patches the nearest word is the object's colour or shape only about half the time, though it is one of the cell's
# five words nearly always. Section 5's decoding adds the other side: measured against *cell tokens* — sums of five
# words — the visual tokens name whole objects. Put the two side by side, for the same 500 validation scenes: for each
# object patch, how many of its cell's five words does the nearest *single word* give (at most one), and how many does
# the nearest cell token give?

# %%
read_words = torch.unique(candidates[candidates != cells.PAD])  # the words cell tokens are made of
unit_words = F.normalize(stage1.lm.embed_tokens.weight.detach()[read_words], dim=-1)  # (V, d_llm)
print(f"{'object patches':>22} | {'words given by the nearest word':>31} | {'... by the nearest cell token':>29}")
for name, h in maps.items():
    nearest_word = read_words[(F.normalize(h[occupied], dim=-1) @ unit_words.T).argmax(-1)]  # (n_objects,)
    by_word = (nearest_word[:, None] == words_val[occupied]).any(-1).float().mean().item()  # 0 or 1 word each
    by_cell = (decoded[name][occupied] == words_val[occupied]).float().sum(-1).mean().item()  # 0..5 words each
    print(f"{name:>22} | {by_word:>31.2f} | {by_cell:>29.2f}")
lengths = {"words": stage1.lm.embed_tokens.weight.detach()[read_words], "cell tokens": t_val, **maps}
print("median length: " + ", ".join(f"{k} {v.norm(dim=-1).median().item():.2f}" for k, v in lengths.items()))


# %% [markdown]
# **What the two columns say.** The nearest single word is one of the cell's five words for nearly every object patch
# (0.92 to 1.00), but it is one word: a size, a colour or a position, never the binding of all of them. The nearest
# cell token gives 4.31 of the five words for the learned $W$, 4.49 for the least-squares $W$ and 4.96 for the fitted
# MLP. A visual token here is not a word; it is closer to a *phrase bound into one vector* — "large red circle, top
# left" — for which the vocabulary has no entry. The lengths say it from the other side: words have a median length of
# 1.48, cell tokens (sums of five words) 2.66, the least-squares and MLP tokens 2.63 and 2.66 (they were fitted to cell
# tokens), the learned $W$'s 8.14. And the learned $W$ decodes worse than the least-squares one (0.44 against 0.57 of
# the objects with all five words, section 5) yet captions better: nearest-neighbour decoding is our probe, not the
# way the language model reads. It reads directions, after its RMSNorm.
#
# ### Study question 14: which statements are true?
#
# > **14) "视觉 token" 是否只是把图像变成了 "一句话的 token"？这种理解是否过于简化？**
# >
# > *Is a "visual token" just turning an image into "a sentence of tokens"? Is that an oversimplification?*
#
# - **(a)** Decoded against every possible cell token, the fitted MLP's visual token of an object patch gives, on
#   average, more than four of its cell's five words; the nearest single word can give at most one.
# - **(b)** The nearest single word to a visual token tells you its object's colour, shape, size and position.
# - **(c)** The learned $W$'s visual tokens are about as long as the cell tokens `vicuna-mini` was pre-trained on.
# - **(d)** A visual token of a linear $W$ is a sum of word embeddings chosen from the vocabulary.
# - **(e)** The least-squares $W$'s visual tokens decode to the right cell token more often than the learned $W$'s, yet
#   the language model writes worse captions from them: it does not read visual tokens by their nearest neighbour.
# - **(f)** Because $H_v = W \cdot Z_v$ is linear in $Z_v$, a visual token cannot carry information about neighbouring
#   patches.
# - **(g)** One visual token per patch means that an image takes $N$ positions of the language model's context: 9 here,
#   576 in LLaVA-1.5.
# - **(h)** The language model learns to predict the visual tokens, as it predicts the next word.
#
# Return the letters of **all** true statements, e.g. `"ace"`.

# %% tags=["exercise"]
def answer_study_q14() -> str:
    '''The letters of every true statement, e.g. "ace".'''
    ### BEGIN SOLUTION
    return "aeg"
    ### END SOLUTION


# %% tags=["grader", "study-q14"]
nb04.check_study_q14(answer_study_q14)


# %% [markdown] tags=["solution-only"]
# **A model answer.** (a), (e) and (g) are true. A visual token is a continuous vector that, at its best, binds a whole
# object — size, colour, shape and place — into one position, which no word of the vocabulary does (a), so (b) is
# false; and it is not a word-sized vector either: the learned $W$ writes tokens about three times as long as the cell
# tokens (c is false). $W \cdot Z_v$ is whatever vector the map produces; nothing restricts it to sums of vocabulary
# rows (d is false), and since $Z_v$ comes from layer −2, where attention has already mixed the patches, it carries
# context from the neighbours even though $W$ itself is linear and per-token (f is false; notebook 02's empty-patch
# probe). The least-squares $W$ is closer to the language model's training inputs by nearest-token decoding, yet its
# captions are worse (e): closeness is not what the language model measures. Each image takes $N$ positions (g), and
# image positions carry label −100, so no loss is taken on them and they are never predicted (h is false; notebook 05).
# "A sentence of tokens" gets the interface right — positions, attention, the embedding space — and the content wrong:
# a visual token is a soft, dense, contextual input that the language model learned to read, not a word.

# %% [markdown]
# ## 9. Study questions 2 and 8
#
# > **2) 为什么使用一个简单的线性层 W 作为视觉到语言的桥梁？优缺点是什么？**
# >
# > *Why use a single linear layer W as the vision→language bridge? Pros and cons?*
#
# The paper's reason (§4.1) is pragmatic: a linear layer is light, so data-centric experiments iterate fast; gated
# cross-attention (Flamingo) and the Q-Former (BLIP-2) are named as more sophisticated alternatives left for future
# work. This notebook measured the rest.
#
# ### Study question 2: which statements are true?
#
# - **(a)** $W$ maps each patch token on its own: $H_v$ has as many tokens as $Z_v$ has patches, and nothing is pooled.
# - **(b)** A linear $W$ can pass on only what is linearly readable from each patch token; it has no means of mixing
#   information across patches, nor of gating (making one feature's effect depend on another's).
# - **(c)** LLaVA v1's $W$ for the 13B model has 5,248,000 parameters, a few ten-thousandths of the model, which keeps
#   stage 1 cheap.
# - **(d)** Because $W$ is linear, the least-squares $W$ onto the language model's ideal inputs is also the $W$ that
#   maximises stage 1's likelihood.
# - **(e)** A linear $W$ compresses each image into one visual token.
# - **(f)** In this notebook a two-layer MLP fitted to the same targets left less than half of the linear map's
#   unexplained variance, and the language model captioned better from it: the patch features are not exactly
#   linearly alignable with the cell tokens.
# - **(g)** Because of the language model's RMSNorm, the length of $W$'s output matters a great deal: tripling the
#   least-squares $W$ ruins the captions.
# - **(h)** The number of visual tokens is fixed by the patch grid, so a higher resolution costs more of the language
#   model's context and compute.

# %% tags=["exercise"]
def answer_study_q2() -> str:
    '''The letters of every true statement, e.g. "ace".'''
    ### BEGIN SOLUTION
    return "abcfh"
    ### END SOLUTION


# %% tags=["grader", "study-q2"]
nb04.check_study_q2(answer_study_q2)


# %% [markdown] tags=["solution-only"]
# **A model answer.** Pros: a per-token linear map is tiny (c: 5,248,000 = 1024 · 5120 + 5120 parameters against
# 13 billion), cheap and stable to train, keeps every patch and so every spatial detail (a; e is false), and needs no
# new machinery in the language model. Cons: it can only re-express what each patch token already makes linearly
# available (b), and our measurement shows that this is not everything the language model was trained to read — a
# two-layer MLP, fitted the same way, leaves far less unexplained and captions better (f), which is the change
# LLaVA-1.5 made; the token count is tied to the patch grid (h), 576 tokens per image at 336 px. Two statements are
# false by measurement: the likelihood of stage 1 found a $W$ far from the least-squares one that the language model
# reads *better* (d), and tripling the least-squares $W$ left its captions where they were (g): RMSNorm makes a visual
# token's length nearly free.

# %% [markdown]
# > **8) 如何改进 LLaVA 的视觉-语言对齐模块？**
# >
# > *How could LLaVA's vision→language alignment module be improved?*
#
# Later work took several routes: a bigger connector (LLaVA-1.5's `mlp2x_gelu`: on the 7B model at 224 px, GQA
# 46.8 → 47.3, MME 1323.8 → 1355.2, MM-Vet 26.3 → 27.8, LLaVA-1.5 Table 2, with the stage-1 learning rate halved to
# 1e-3); fewer tokens through learned queries (the resamplers of Flamingo, BLIP-2 and Qwen-VL, `resampler` in
# `projector.py`), at the risk of losing locality, which locality-preserving abstractors (Honeybee's C-Abstractor)
# try to keep; higher resolution and several encoders (LLaVA-1.5's 336 px; Cambrian); better alignment data. Sections
# 5 and 7 measured the first two routes on `llava-mini`: the MLP (fitted here, and trained by stage 1 in the recipe
# log), and what pooling to fewer tokens costs.
#
# ### Study question 8: which statements are true?
#
# - **(a)** Replacing $W$ by a two-layer MLP is one of the improvements LLaVA-1.5 made; in this notebook the MLP wrote
#   the cell tokens far better from the same features.
# - **(b)** Mean-pooling the patch tokens into one visual token before $W$ shortens the sequence and loses nothing a
#   question can need.
# - **(c)** LLaVA feeds the language model only the CLS token; adding the patch tokens would be an improvement.
# - **(d)** A resampler with fewer learned queries than patches must compress; where each object is — locality — is
#   what a pooled summary loses first, so such designs need care (or locality-preserving pooling) to keep it.
# - **(e)** Feeding $W$ the last layer's output instead of the penultimate one makes its job easier, because those
#   patch tokens are the ones CLIP's loss trained.
# - **(f)** Better alignment data — captions that state positions and which attribute belongs to which object — can
#   improve alignment without changing $W$'s architecture.
# - **(g)** A higher input resolution, keeping every patch token, is one of LLaVA-1.5's improvements (336 px instead of
#   224).
# - **(h)** Adding parameters to the connector always helps: a four-layer MLP must beat a two-layer one.

# %% tags=["exercise"]
def answer_study_q8() -> str:
    '''The letters of every true statement, e.g. "ace".'''
    ### BEGIN SOLUTION
    return "adfg"
    ### END SOLUTION


# %% tags=["grader", "study-q8"]
nb04.check_study_q8(answer_study_q8)

# %% [markdown] tags=["solution-only"]
# **A model answer.** (a), (d), (f) and (g) are true. The MLP's advantage was measured here (section 5) and in the
# recipe log, and LLaVA-1.5 adopted it (a). Pooling is the opposite of an improvement for questions about places and
# bindings: the probes of section 7 read which object is where from the grid far better than from one pooled vector
# (b is false), and LLaVA never used only CLS — it drops CLS and keeps every patch (c is false). Resamplers cut tokens
# at a price in locality (d). Notebook 02 showed that CLIP's loss never trains the last block's patch outputs, which is
# one reason LLaVA reads layer −2 (e is false). Data and resolution are improvements that leave $W$ alone (f, g). No
# rule says more connector parameters always help (h is false): LLaVA-1.5's two-layer MLP gained modestly, and the data
# and format-prompt changes in the same table gained more.

# %% [markdown]
# ## Questionnaire
#
# Not graded: questions to think about before notebook 05. Write your answers down.
#
# 1. The paper writes $H_v = W \cdot Z_v$; PyTorch computes `z_v @ W.T + b`. Write out the shapes in both and show they
#    are the same map. Where would a transposed $W$ fail loudly, and where silently?
# 2. The least-squares $W$ needs targets. Real LLaVA has none: Vicuna was never trained on "ideal visual tokens". What
#    would you use instead, and what does stage 1's likelihood provide that targets would not?
# 3. RMSNorm makes a visual token's overall length nearly free. Is it *exactly* free? Follow a long visual token
#    through the residual stream of the first block and say where its length still matters.
# 4. The MLP wrote the cell tokens better. What would you expect if the vision encoder's patch tokens did not mix the
#    patches at all (layer 0)? Try it: the set-up is two lines.
# 5. In the splice, why must images be taken in order of appearance across the batch? What goes wrong in a batch in
#    which one sample has no image and another has two, if a splice assumes one image per row?
# 6. Count the visual tokens of a 2×2 grid of 336-pixel crops plus a downsized overview, as LLaVA-NeXT's AnyRes does.
#    What does that do to a 4096-token context, and what does study question 8's list offer against it?
# 7. The CLS and mean-pooled probes still count objects well. Why is count a global property that survives pooling,
#    and which of the teacher's question categories would you expect to suffer most from a pooled image?
# 8. A fitted MLP captioned better than the learned linear $W$ without any likelihood training. Would you still train
#    stage 1? What would it add on top of the regression?
