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
# # 03 — The language model: causal attention, RoPE, the Llama block, and the chat template
#
# LLaVA's language model $f_\phi$ is **Vicuna** (LLaVA §4.1): LLaMA fine-tuned on 70K user-shared ChatGPT conversations.
# The choice matters more than it looks. Vicuna is a *chat* model: it already reads a long prompt — a system message, a
# question — and answers from it. LLaVA only has to put the image into that prompt, as visual tokens $H_v$ in front of
# the instruction, and teach the model to read them.
#
# Our $f_\phi$ is `vicuna-mini`, a decoder with exactly the architecture of Hugging Face's `LlamaForCausalLM`
# (`llava_mini/lm.py`), pre-trained on text only, as Vicuna was: Vicuna-v1 chats about ShapesWorld scenes, each scene
# given to it in the form LLaVA's visual tokens will take. This notebook builds its parts — the causal mask, rotary
# positions, the decoder block, the chat template — and then asks the question that shapes LLaVA's stage 1: *what must
# the language model already know before it ever sees an image?*
#
# ### Goals
# After this notebook you can
#
# 1. write the causal attention mask, including the KV-cache case (exercise 3.1);
# 2. write rotary position embeddings the way Llama lays them out (exercise 3.2);
# 3. write the Llama decoder block: RMSNorm, attention, SwiGLU, residuals (exercise 3.3);
# 4. lay out a Vicuna-v1 conversation and say which tokens take the loss (exercise 3.4);
# 5. give `vicuna-mini` a scene as 9 *bound cell tokens* — one vector per grid cell, the form $H_v = W \cdot Z_v$ can
#    take — generate answers from it, and measure what the model knows *without* the scene;
# 6. explain, with the zoo's measurements, why stage 1 needs a language model that already reads a scene in that form —
#    the set-up for stage 1 (notebook 06) and for study question 17.
#
# ### Time
# About **70 minutes**: 35 of reading, four exercises of 5–10 minutes each. Running every cell (strict `pytest --nbval`)
# took 6 to 24 s over several runs on 2 CPU cores shared with other jobs (model training). Nothing here trains.
#
# ### Numbers to expect
# The first code cell prints Vicuna next to `vicuna-mini`, what the zoo measured when it built `vicuna-mini` (its
# exact-match accuracy per question category, reading scenes as cell tokens; section 7), and its measurement of the
# two stage-1 models that section 8 is about.

# %% [markdown]
# ## 0. Set-up

# %%
import re
import textwrap
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from llava_mini import cells, conversation, corpora, data, evaluate, lm, teacher, world, zoo
from llava_mini.course import setup_notebook
from llava_mini.grading import nb03
from llava_mini.tokenizer import load_tokenizer

setup_notebook(seed=0)
tokenizer = load_tokenizer()
manifest = zoo.read_manifest()
vicuna = zoo.load("vicuna-mini")  # lm.LanguageModel, pre-trained on chats about bound cell tokens
cfg = vicuna.config

rows = [
    ("blocks", "32 / 40", cfg.layers),
    ("width", "4096 / 5120", cfg.dim),
    ("attention heads", "32 / 40", cfg.heads),
    ("head size", "128", cfg.head_dim),
    ("SwiGLU hidden size", "11008 / 13824", cfg.hidden),
    ("vocabulary", "32000", cfg.vocab_size),
    ("context (positions)", "2048", cfg.max_seq_len),
    ("RoPE base theta", "10000", f"{cfg.rope_theta:g}"),
    ("parameters", "6.7 B / 13 B", f"{sum(p.numel() for p in vicuna.parameters()):,}"),
]
print(f"{'':>20} | {'Vicuna-7B / 13B':>16} | {'vicuna-mini':>12}")
for name, real, ours in rows:
    print(f"{name:>20} | {real:>16} | {ours!s:>12}")
print()
measured = manifest["vicuna-mini"]["metrics"]["accuracy"]  # 300 test questions per category, scene as cell tokens
print("vicuna-mini reading cell tokens:", ", ".join(f"{c} {measured[c]:.2f}" for c in teacher.CATEGORIES))
for name in ("plain-lm-stage1", "llava-mini-stage1"):
    m = manifest[name]["metrics"]
    print(f"{name:>17}: stage-1 caption loss {m['loss']:.2f}, question accuracy {m['accuracy']['overall']:.2f}")

# %% [markdown]
# ## 1. Tokens
#
# A language model reads token ids. Vicuna uses LLaMA's SentencePiece tokenizer (32,000 pieces); ShapesWorld's language
# is closed, so our tokenizer is word-level (`llava_mini/tokenizer.py`) — but it is a real Hugging Face tokenizer, and
# it keeps SentencePiece's convention: a token carries the space *before* it, written `▁` (so `red` and `▁red` are two
# tokens, as in LLaMA). That convention makes decoding exact, and it will matter for the chat template in section 5.

# %%
text = "USER: What colour is the circle? ASSISTANT: The circle is red."
ids = tokenizer(text)["input_ids"]
print(ids)
print(tokenizer.convert_ids_to_tokens(ids))
print("decode(encode(text)) == text:", tokenizer.decode(ids, skip_special_tokens=True) == text)
print("vocabulary:", len(tokenizer), "tokens, of which", len(tokenizer.all_special_tokens), "special:",
      tokenizer.all_special_tokens)


# %% [markdown]
# ## 2. Causal attention
#
# A language model is trained to predict every next token at once: position $t$'s output predicts token $t+1$. So
# position $t$ must not see tokens after it — otherwise it would simply copy the answer. Causal self-attention forbids
# it with a **mask**: query $i$ may attend to key $j$ only if $j \le i$ (itself included). The attention is otherwise
# exactly notebook 02's.
#
# During generation the model does not recompute the whole prefix at every step: it keeps the keys and values of the
# tokens it has already read (the **KV cache**, `past_kv` in `lm.py`) and runs only the new tokens. Then $t$ new
# queries sit at positions $\text{past}, \dots, \text{past} + t - 1$ and face $\text{past} + t$ keys: the mask is no
# longer square.
#
# ### Exercise 3.1: the causal mask
#
# Write `causal_mask(t, past=0)`: a `bool` tensor of shape $(t, \text{past} + t)$ whose entry $[i, j]$ is `True` when
# query $i$ (at position $\text{past} + i$) may attend to key $j$. `True` means "may attend", the convention of
# PyTorch's `F.scaled_dot_product_attention(attn_mask=...)`. The grader also checks that your mask in SDPA gives
# exactly `is_causal=True`. *(About 3 lines.)*

# %% tags=["exercise"]
def causal_mask(t: int, past: int = 0) -> torch.Tensor:
    '''Bool (t, past + t): True where query i, at position past + i, may attend to key j.'''
    ### BEGIN SOLUTION
    query = torch.arange(past, past + t)[:, None]  # (t, 1) absolute positions
    key = torch.arange(past + t)[None, :]  # (1, past + t)
    return key <= query
    ### END SOLUTION


# %% tags=["grader"]
nb03.check_causal_mask(causal_mask)

# %% [markdown]
# The package builds the same rule into `lm.attention_mask_4d`, combined with a padding mask (keys that are padding are
# hidden too). Drawn, with a cache of 4 tokens on the right:

# %%
fig, axes = plt.subplots(1, 2, figsize=(7, 3), gridspec_kw={"width_ratios": [6, 7]})
for ax, (t, past) in zip(axes, [(6, 0), (3, 4)]):
    mask = lm.attention_mask_4d(torch.ones(1, past + t), past, t)[0, 0]  # (t, past + t)
    ax.imshow(mask, cmap="Greens", vmin=0, vmax=1.3)
    ax.set_xticks(range(past + t))
    ax.set_yticks(range(t), [str(past + i) for i in range(t)])
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
    ax.set_title(f"t = {t} new tokens, past = {past}", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# The point of the mask, tested on `vicuna-mini`: change the last token of a sentence, and the outputs at every earlier
# position stay exactly the same.

# %%
ids = torch.tensor([tokenizer("a large red circle in the top left.")["input_ids"]])  # (1, T)
changed = ids.clone()
changed[0, -1] = tokenizer.convert_tokens_to_ids("?")
with torch.no_grad():
    before, after = vicuna(ids).logits, vicuna(changed).logits  # (1, T, vocab)
print("earlier positions unchanged:", torch.equal(before[:, :-1], after[:, :-1]),
      "| last position changed:", not torch.equal(before[:, -1], after[:, -1]))


# %% [markdown]
# ## 3. Rotary position embeddings (RoPE)
#
# Attention by itself is blind to order. The ViT of notebook 02 *adds* a learned vector per position; Llama *rotates*
# the queries and keys instead (Su et al., 2021, "RoFormer"). The features of a head (size $d$) are taken in pairs, and
# pair $i$ of the token at position $m$ is rotated by the angle $m\,\theta_i$, with frequencies
# $\theta_i = \text{base}^{-2i/d}$, $i = 0, \dots, d/2 - 1$ (base 10,000): the first pairs spin fast, the last ones
# slowly. Because a rotation by $m\theta$ followed by the transposed rotation by $n\theta$ is a rotation by
# $(m - n)\theta$, the score $q_m \cdot k_n$ depends on the positions only through $m - n$: **relative** positions, for
# free, with no parameters.
#
# Which features form a pair is a layout choice, and two layouts exist:
#
# - RoFormer and GPT-J pair **adjacent** features, $(x_0, x_1), (x_2, x_3), \dots$;
# - Llama, as implemented in Hugging Face `transformers` (and Meta's checkpoints after conversion, whose query and key
#   weights are permuted accordingly) pairs feature $i$ with feature $i + d/2$: split $x$ into halves $(x_1, x_2)$ and
#   use `rotate_half(x)` $= (-x_2, x_1)$:
#
# $$\mathrm{RoPE}(x)_m = x \odot \cos(m\,\theta) + \mathrm{rotate\_half}(x) \odot \sin(m\,\theta),$$
#
# where the $d/2$ angles are repeated twice, $[\theta_0, \dots, \theta_{d/2-1}, \theta_0, \dots, \theta_{d/2-1}]$, so that
# features $i$ and $i + d/2$ share an angle. Both layouts are RoPE; on the same weights they give different models.
#
# ### Exercise 3.2: RoPE, half-split
#
# Write `apply_rope(x, position_ids, theta=10000.0)`: `x` is $(B, \text{heads}, T, d)$, `position_ids` is $(B, T)$ —
# use them, not $0 \dots T-1$: a left-padded prompt starts later — and `theta` is the base. Return the rotated tensor,
# same shape and dtype; do not modify `x`. The grader compares with the package's `lm.RotaryEmbedding` (and refuses
# an answer that calls it). *(About 6 lines.)*

# %% tags=["exercise"]
def apply_rope(x: torch.Tensor, position_ids: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    '''x (B, heads, T, d) rotated by position_ids (B, T), feature i paired with feature i + d/2 (rotate_half).'''
    ### BEGIN SOLUTION
    d = x.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float) / d)  # (d/2,)
    angles = position_ids[..., None].float() * inv_freq  # (B, T, d/2)
    angles = torch.cat([angles, angles], dim=-1)[:, None]  # (B, 1, T, d)
    x1, x2 = x.chunk(2, dim=-1)
    return x * angles.cos() + torch.cat([-x2, x1], dim=-1) * angles.sin()
    ### END SOLUTION


# %% tags=["grader"]
nb03.check_apply_rope(apply_rope)

# %% [markdown]
# The relative-position property, checked with the package's rotary embedding on random queries and keys: the score of
# positions (7, 3) equals the score of positions (107, 103), and differs from (7, 5). The figure shows the cosine of
# each pair's angle against the position: fast pairs at the top, slow ones at the bottom. With a head size of 16,
# `vicuna-mini` has only 8 pairs, and the slowest turn so little over 64 positions that they look constant.

# %%
rope = lm.RotaryEmbedding(cfg)
g = torch.Generator().manual_seed(0)
q, k = torch.randn(1, 1, 1, cfg.head_dim, generator=g), torch.randn(1, 1, 1, cfg.head_dim, generator=g)


def score(m, n):
    return (rope(q, torch.tensor([[m]])) * rope(k, torch.tensor([[n]]))).sum()


print("score(7, 3) == score(107, 103):", torch.allclose(score(7, 3), score(107, 103), atol=1e-4),
      "| score(7, 3) == score(7, 5):", torch.allclose(score(7, 3), score(7, 5), atol=1e-4))
fig, ax = plt.subplots(figsize=(6, 3))
shown = ax.imshow(rope.cos[:64, : cfg.head_dim // 2].T, aspect="auto", cmap="coolwarm")
ax.set_xlabel("position m")
ax.set_ylabel("feature pair i")
ax.set_title(r"cos(m $\theta_i$), $\theta_i$ = 10000$^{-2i/d}$", fontsize=10)
fig.colorbar(shown)
plt.show()


# %% [markdown]
# ## 4. The Llama decoder block
#
# `LlamaDecoderLayer` (our `lm.Block`) is a pre-norm block like the ViT's, with three changes of detail:
#
# - **RMSNorm** instead of LayerNorm (Zhang & Sennrich, 2019): no mean is subtracted and there is no bias, only a
#   learned scale: $\mathrm{RMSNorm}(x) = x / \sqrt{\mathrm{mean}(x^2) + \epsilon} \odot w$. Cheaper, and as good.
# - **SwiGLU** instead of a GELU MLP (Shazeer, 2020): $\mathrm{down}(\mathrm{silu}(\mathrm{gate}(x)) \odot
#   \mathrm{up}(x))$, with $\mathrm{silu}(x) = x\,\sigma(x)$ and a hidden size of about $\tfrac{8}{3}d$ so the three
#   matrices cost what a $4d$ two-matrix MLP costs.
# - Causal attention with RoPE on the queries and keys; no biases in any linear layer.
#
# $$h = x + \mathrm{Attn}(\mathrm{RMSNorm}_1(x)), \qquad \mathrm{out} = h + \mathrm{SwiGLU}(\mathrm{RMSNorm}_2(h)).$$
#
# ### Exercise 3.3: the decoder block
#
# Write `decoder_block(x, block, rope, position_ids)` for $x$ of shape $(B, T, D)$ and `block` an `lm.Block`. Write
# RMSNorm and SwiGLU yourself, from `block.input_layernorm` / `block.post_attention_layernorm` (each has `.weight` and
# `.eps`) and `block.mlp.gate_proj` / `up_proj` / `down_proj` (the grader refuses calls to the norm modules, the MLP
# module or the block itself). For the attention sub-layer call
# `block.self_attn(h, rope, position_ids, None, None)[0]` (it projects, applies RoPE, attends causally, projects back;
# the two `None` are the padding mask and the KV cache, and `[1]` would be the new cache). The grader gives the norms
# random scales and the input a non-zero mean. *(About 6 lines.)*

# %% tags=["exercise"]
def decoder_block(x: torch.Tensor, block, rope, position_ids: torch.Tensor) -> torch.Tensor:
    '''One Llama block: x (B, T, D) -> (B, T, D), with your own RMSNorm and SwiGLU.'''
    ### BEGIN SOLUTION
    def rms_norm(h, norm):
        return norm.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.eps))

    h = x + block.self_attn(rms_norm(x, block.input_layernorm), rope, position_ids, None, None)[0]  # (B, T, D)
    z = rms_norm(h, block.post_attention_layernorm)
    return h + block.mlp.down_proj(F.silu(block.mlp.gate_proj(z)) * block.mlp.up_proj(z))
    ### END SOLUTION


# %% tags=["grader"]
nb03.check_decoder_block(decoder_block)

# %% [markdown]
# The whole model is embeddings → blocks → a final RMSNorm → `lm_head`, a linear map to one logit per vocabulary
# token. By hand, with the package's blocks:

# %%
ids = torch.tensor([tokenizer("there are two shapes: a small blue cross in the center")["input_ids"]])  # (1, T)
positions = torch.arange(ids.shape[1])[None]  # (1, T)
with torch.no_grad():
    x = vicuna.embed_tokens(ids)  # (1, T, D)
    for block in vicuna.layers:
        x, _ = block(x, vicuna.rope, positions, None, None)
    logits = vicuna.lm_head(vicuna.norm(x))  # (1, T, vocab)
print("logits:", tuple(logits.shape), "| by hand == vicuna(ids):", torch.allclose(logits, vicuna(ids).logits, atol=1e-5))
print("next word after the sentence:", repr(tokenizer.decode(logits[0, -1].argmax())))


# %% [markdown]
# Side by side with notebook 02's vision encoder:
#
# | | ViT block (CLIP) | decoder block (Llama) |
# |---|---|---|
# | norm | LayerNorm (mean and scale, with bias) | RMSNorm (scale only) |
# | MLP | fc1 → quick_gelu → fc2, with biases | SwiGLU, three matrices, no biases |
# | positions | learned vectors, added once at the input | RoPE, rotating $q$ and $k$ in every layer |
# | attention | bidirectional | causal (+ KV cache for generation) |
# | reads | patch tokens | word embeddings — and, in LLaVA, visual tokens $H_v$ through `inputs_embeds` |
#
# The last row is LLaVA's whole trick: `LanguageModel.forward(inputs_embeds=...)` accepts any vectors of width $D$, not
# only rows of its embedding table. Nothing in the block cares where a vector came from.
#
# ## 5. The Vicuna-v1 chat template
#
# A chat model reads a conversation as one string with a fixed layout. LLaVA trains with Vicuna-v1's (`conv_vicuna_v1`
# in the released code, "separator style TWO": `sep=" "`, `sep2="</s>"`):
#
# ```
# SYSTEM USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT: A2</s>
# ```
#
# The paper's Eq. 2 writes the same sequence as $X_{\text{system}}$, then per turn $t$: `USER:` $X^t_{\text{instruct}}$
# `ASSISTANT:` $X^t_a$ `<STOP>`; Eq. 3 takes the loss on the answers $X_a$ and their `<STOP>` only — the model learns to
# answer and to stop, never to write the user's side. (The paper's Table 2 shows the older Vicuna-v0 layout with `###`
# separators; the released v1 models use the layout above. A model tuned on one separator and prompted with another
# does not know where its turn ends.)
#
# Our package builds the training sequence **segment by segment**, each segment with a flag saying whether it takes
# the loss. LLaVA's `preprocess_v1` instead renders the whole string, tokenizes it, and re-derives where each answer
# starts by splitting the string on `"</s>"` and `" ASSISTANT: "`; when that arithmetic disagrees with the tokenizer it
# masks the whole sample ("WARNING: tokenization mismatch", haotian-liu/LLaVA#661 and #1166). Segments avoid it — if
# each segment tokenizes exactly as it does inside the whole string. With a tokenizer that attaches a space to the
# word after it, that means the space after `ASSISTANT:` belongs to the answer.
#
# ### Exercise 3.4: the conversation as segments
#
# Write `chat_segments(turns, system)`. `turns` is a conversation in LLaVA's JSON format: a list of
# `{"from": "human" | "gpt", "value": text}` dicts, alternating and starting with `"human"`. Return a list of
# `(text, supervised)` tuples:
#
# 1. `(system, False)` first — unless `system` is empty, in which case there is no system segment;
# 2. for each human turn, `("USER: " + value, False)` then `(" ASSISTANT:", False)`; the **first** human turn starts
#    with a space, `" USER: "`, when it follows a system prompt;
# 3. for each gpt turn, `(" " + value, True)` then `("</s>", True)` — the separator `sep2`, with no space before the
#    next `USER: `.
#
# Joined, the texts must be exactly the layout above (the grader compares with `conversation.render_chat`, on the
# teacher's conversations and with other system prompts). *(About 8 lines.)*

# %% tags=["exercise"]
def chat_segments(turns: list[dict], system: str) -> list[tuple[str, bool]]:
    '''The Vicuna-v1 layout of a conversation as (text, supervised) segments.'''
    ### BEGIN SOLUTION
    segments = [(system, False)] if system else []
    for i, turn in enumerate(turns):
        if turn["from"] == "human":
            segments.append((("USER: " if i or not system else " USER: ") + turn["value"], False))
            segments.append((" ASSISTANT:", False))
        else:
            segments += [(" " + turn["value"], True), ("</s>", True)]
    return segments
    ### END SOLUTION


# %% tags=["grader"]
nb03.check_chat_segments(chat_segments)


# %% [markdown]
# Why the space must go with the answer, in tokens: the joint tokenization of `" ASSISTANT: The circle is red."`
# starts the answer with `▁The`. Split as `" ASSISTANT:"` + `" The circle is red."` the pieces give the same tokens;
# split as `" ASSISTANT: "` + `"The circle is red."` they do not — exactly the mismatch LLaVA's string arithmetic trips
# over.

# %%
def tokens(text):
    return tokenizer.convert_ids_to_tokens(tokenizer.encode(text, add_special_tokens=False))


answer = "The circle is red."
print("whole string:             ", tokens(" ASSISTANT: " + answer))
print("' ASSISTANT:' + ' The…':  ", tokens(" ASSISTANT:") + tokens(" " + answer))
print("' ASSISTANT: ' + 'The…':  ", tokens(" ASSISTANT: ") + tokens(answer))


# %% [markdown]
# `conversation.build_chat` turns segments into ids and labels: the labels are the ids on supervised segments and −100
# (PyTorch's `ignore_index`) everywhere else. Here are the first two turns of one of the teacher's conversations (about
# a training scene) as the model reads it, the supervised tokens in `[brackets]`, with `<image>` expanded to one
# placeholder for each visual token — 9 of them, one per cell of the 3×3 grid (notebook 05 builds the labels
# themselves):

# %%
def show(sample, width=110):
    '''A sample's text with the supervised tokens in [brackets].'''
    pieces = []
    for token_id, label in zip(sample.input_ids, sample.labels):
        piece = tokenizer.decode([token_id]).replace("\n", "\\n")
        piece = piece.strip() or "\u2581"  # the lone-space token
        pieces.append(f"[{piece}]" if label != conversation.IGNORE_INDEX else piece)
    print(textwrap.fill(" ".join(pieces), width=width))


seed = world.SPLITS["train"][5]
records, _ = data.scene_records(seed)  # the teacher's records of one scene, in LLaVA's JSON format
turns = records["conversation"][0]["conversations"][:4]  # its first two questions and answers
sample = conversation.build_chat(turns, tokenizer, num_image_tokens=world.N_CELLS)
show(sample)
print("supervised tokens:", sum(label != conversation.IGNORE_INDEX for label in sample.labels), "of", len(sample.labels))

# %% [markdown]
# ## 6. `vicuna-mini`: a chat model that reads a scene
#
# What should a language model have learned before LLaVA connects an image to it? Vicuna learned to read a prompt and
# answer from it, from text alone: it never saw an image. `vicuna-mini` is pre-trained the same way, on text only, but
# on prompts shaped like those it will get in LLaVA. Notebook 02 showed that `clip-mini` turns a 48-pixel image into 9
# patch tokens $Z_v$, one per cell of the 3×3 grid, and $W$ maps each of them linearly: $H_v = W \cdot Z_v$ is **9
# vectors** in the language model's embedding space, one per cell. Whatever the language model learns to read, $W$ must
# be able to write it. A textual description of the scene ("a small blue square in the top left, ...") is out of reach:
# $W$ writes one vector per patch, not a sentence of twenty words.
#
# So `vicuna-mini` reads a scene as 9 **bound cell tokens** (`llava_mini/cells.py`), each the sum of the model's own
# word embeddings of what its cell holds:
#
# - a cell with an object: size + colour + shape + row + column, e.g. `large` + `red` + `circle` + `top` + `left`;
# - an empty cell: `.` + row + column.
#
# One vector binds an object's attributes to each other and to its place, which is what a question such as "What
# colour is the square?" has to look up, and it is a vector that a linear map of one patch token can aim at. The
# pre-training corpus (`corpora.cell_examples`) is made from the same teacher records as stage 1 and stage 2, the nine
# `<image>` placeholders filled with the scene's cell tokens: Vicuna-v1 chats about the scene and, for a quarter of the
# scenes, a "cells → caption" line. No pixel is involved: the cell tokens are made of words. The contrast model
# `plain-lm` (`corpora.lm_examples("plain", ...)`) reads the same chats and captions with no scene at all.
#
# This is a shortcut that real LLaVA does not take. Vicuna read so much text that it can make something of new vectors
# placed among its word embeddings; a 64-wide model trained on chats about 16,000 scenes has to have seen the form of
# its input before. Here is the training scene of section 5, cell by cell, and the two corpora for it (the supervised
# tokens in brackets; in the `cells` corpus each `<image>` is filled with one cell token):

# %%
scene = world.sample_scene(seed)  # the training scene of section 5
words = cells.cell_words(scene, tokenizer)  # 9 cells, row by row: 5 word ids each, padded with cells.PAD
print("the scene:", world.symbolic_context(scene).captions[0])
for row in range(3):
    print("   " + " | ".join(f"{'+'.join(tokenizer.decode([i]).strip() for i in cell if i != cells.PAD):<31}"
                             for cell in words[3 * row: 3 * row + 3]))
with torch.no_grad():
    cell_tokens = cells.embed_cells(vicuna.embed_tokens, torch.tensor([words]))[0]  # (9, D)
    first = vicuna.embed_tokens(torch.tensor([i for i in words[0] if i != cells.PAD])).sum(0)  # (D,)
print("cell tokens:", tuple(cell_tokens.shape), "| the first is the sum of its words' embeddings:",
      torch.allclose(cell_tokens[0], first, atol=1e-6))
for name, examples in [("cells", corpora.cell_examples([seed], tokenizer)),
                       ("plain", corpora.lm_examples("plain", [seed], tokenizer))]:
    print(f"\n--- corpus {name!r}")
    for example in examples:
        show(example.sample)


# %% [markdown]
# Now let `vicuna-mini` answer questions about a validation scene that it reads only as cell tokens. The prompt is
# built like its training chats, the Vicuna-v1 prompt with 9 placeholders; `cells.fill` replaces the placeholders'
# embeddings by the cell tokens (as `LlavaMini` will replace them by $H_v$), and the model generates from those
# `inputs_embeds`. The questions are the teacher's, one per category, so each has a definite answer for this scene; a
# reply is right when it equals the teacher's sentence (`evaluate.normalise`: case and punctuation aside). Greedy
# decoding, with the KV cache (and without it: the same tokens, every step re-reading the whole sequence):

# %%
def cell_prompt(question: str) -> list[int]:
    '''<s> + the Vicuna-v1 prompt for one question, with one <image> placeholder per grid cell.'''
    return conversation.build_prompt([{"from": "human", "value": "<image>\n" + question}], tokenizer, world.N_CELLS)


def ask(model, question: str, scene, use_cache: bool = True) -> str:
    '''The greedy answer of a language model that reads the scene as 9 cell tokens.'''
    ids = torch.tensor([cell_prompt(question)])  # (1, T)
    words = torch.tensor([cells.cell_words(scene, tokenizer)])  # (1, 9, 5)
    embeds = cells.fill(model.embed_tokens, ids, words, tokenizer.image_token_id)  # (1, T, D)
    out = model.generate(inputs_embeds=embeds, max_new_tokens=32, eos_token_id=tokenizer.eos_token_id,
                         use_cache=use_cache)
    return tokenizer.decode(out[0], skip_special_tokens=True).strip()


scene = world.sample_scene(world.SPLITS["val"][7])
context = world.symbolic_context(scene)
print("the scene:", context.captions[0])
rng = np.random.default_rng(0)
for category in teacher.CATEGORIES:
    qa = teacher.questions(context, category, rng)[0]  # a question with a definite answer for this scene
    reply = ask(vicuna, qa.question, scene)
    right = evaluate.normalise(reply) == evaluate.normalise(qa.sentence)
    verdict = "right" if right else f"wrong; the teacher: {qa.sentence}"
    print(f"  USER: {qa.question}\n      ASSISTANT: {reply}  ({verdict})")
print("the same answer without the KV cache:", ask(vicuna, qa.question, scene, use_cache=False) == reply)

# %% [markdown]
# Four of the six answers are right, and every reply is a sentence that restates the question's referent, as the chats
# taught. The position and the relation question go wrong: the cross is in the top left, and `vicuna-mini` puts it in
# the top right (its row right, its column wrong); and it answers "No" to a relation that holds. Section 7 measures how
# often such things happen.

# %% [markdown]
# ## 7. What does the language model know without the scene?
#
# Take the scene away — drop the 9 placeholders from the prompt — and `vicuna-mini` still answers, in the right format,
# from what its weights hold about ShapesWorld in general. That is the **blind baseline**: how much of a question can be
# answered from language priors alone. We ask 100 teacher questions of each category about validation scenes, and score
# exact-match sentence answers for `vicuna-mini` with and without the cell tokens, and for `plain-lm`, which was always
# trained without a scene (on prompts exactly like the blind ones):

# %%
plain_lm = zoo.load("plain-lm")


def questions(category: str, n: int = 100):
    '''n (scene, question) pairs of one category from consecutive validation scenes.'''
    pairs = []
    for s in world.SPLITS["val"]:
        scene = world.sample_scene(s)
        found = teacher.questions(world.symbolic_context(scene), category, np.random.default_rng([s, 3]))
        if found:
            pairs.append((scene, found[0]))
        if len(pairs) == n:
            return pairs


def replies(model, pairs, with_scene: bool) -> list[str]:
    '''Greedy answers to each pair's question, the scene given as cell tokens or not at all.'''
    prompts = [cell_prompt(qa.question) for _, qa in pairs]
    if with_scene:  # evaluate.generate fills each prompt's placeholders with its scene's cell tokens, as ask() does
        return evaluate.generate(model, tokenizer, [scene for scene, _ in pairs], prompts, max_new_tokens=32)
    prompts = [[i for i in p if i != tokenizer.image_token_id] for p in prompts]  # no scene: placeholders dropped
    batch = conversation.collate(prompts, tokenizer.pad_token_id, padding_side="left")
    out = model.generate(batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=32,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return [r.strip() for r in tokenizer.batch_decode(out, skip_special_tokens=True)]


settings = [("vicuna-mini, cell tokens", vicuna, True), ("vicuna-mini, no scene", vicuna, False),
            ("plain-lm, no scene", plain_lm, False)]
asked = {category: questions(category) for category in teacher.CATEGORIES}
torch.set_num_threads(1)  # generating from a 64-wide model is many tiny steps, which one thread runs faster than two
said = {(name, category): replies(model, asked[category], with_scene)  # every reply, kept for a closer look
        for name, model, with_scene in settings for category in teacher.CATEGORIES}
torch.set_num_threads(2)  # back to the notebook's setting (setup_notebook)
results = {name: [float(np.mean([evaluate.normalise(r) == evaluate.normalise(qa.sentence)
                                 for r, (_, qa) in zip(said[name, category], asked[category])]))
                  for category in teacher.CATEGORIES] for name, _, _ in settings}

fig, ax = plt.subplots(figsize=(8, 3.6))
x = np.arange(len(teacher.CATEGORIES))
for i, (name, values) in enumerate(results.items()):
    bars = ax.bar(x + (i - 1) * 0.27, values, width=0.27, label=name)
    ax.bar_label(bars, [f"{v:.2f}" for v in values], fontsize=6.5, padding=1)  # a 0.00 bar still shows its label
ax.set_xticks(x, teacher.CATEGORIES)
ax.set_ylim(0, 1.12)
ax.set_ylabel("exact-match accuracy")
ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)  # below the axes
ax.set_title("100 validation questions per category, answered by a language model alone", fontsize=10)
fig.tight_layout()
plt.show()
print(f"{'':>25} " + " ".join(f"{c:>9}" for c in teacher.CATEGORIES))
for name, values in results.items():
    print(f"{name:>25} " + " ".join(f"{v:>9.2f}" for v in values))


def starts(texts, word: str) -> float:
    return float(np.mean([t.lower().startswith(word) for t in texts]))


print()
yes_no = np.mean([qa.answer in ("yes", "no") for _, qa in asked["relation"]])
print(f"relation questions that ask yes or no: {yes_no:.2f}")
holds = [qa.answer == "yes" for _, qa in asked["relation"]]  # the relation questions whose answer is "yes"
print(f"{'answers that start with':>25} {'No (relation)':>14} {'No, where yes':>14} {'yes (existence)':>16}")
rows = [("the teacher", [qa.sentence for _, qa in asked["relation"]], [qa.sentence for _, qa in asked["existence"]])]
rows += [(name, said[name, "relation"], said[name, "existence"]) for name in results]
for name, relation, existence in rows:
    where_yes = [r for r, h in zip(relation, holds) if h]
    shares = (starts(relation, "no"), starts(where_yes, "no"), starts(existence, "yes"))
    print(f"{name:>25} {shares[0]:>14.2f} {shares[1]:>14.2f} {shares[2]:>16.2f}")

# %% [markdown]
# **What the bars say.** Compare the first bar of each group with the second. Reading the cell tokens, `vicuna-mini`
# answers every shape question (1.00) and most count, position and colour questions (0.88, 0.67, 0.65); without them it
# gets 0.06, 0.09, 0.04 and 0.11. It reads the scene, the skill LLaVA borrows from Vicuna. Without a scene,
# `vicuna-mini` meets a prompt it never saw in training; `plain-lm`, trained on exactly such prompts, answers from its
# priors alone: 0.09 to 0.14 on colour, shape and position, and 0.53 on count.
#
# Look also at what the cell tokens do *not* buy. On relation, all three models start 0.76 of their replies with "No"
# — exactly the share of relation questions that ask yes or no — and they say "No" to every question whose answer is
# "yes" (1.00 in the second column). Each model answers "no" to every yes/no relation question, and `vicuna-mini`
# gets the 0.58 whose answer is "no" for free, with or without the scene. What the cell tokens add
# (0.75 against 0.59 blind) comes from the questions "What is above the ...?". On existence they add nothing (0.46,
# against 0.51 blind): `vicuna-mini` says "yes" to 0.67 of the questions, where the teacher says it to 0.53; it has not
# learned to check a colour–shape pair against the cells. The zoo's own measurement on 300 test questions per category
# (first code cell) shows the same weak spots, colour 0.73 and existence 0.50, where the course's target for
# `vicuna-mini` is 0.95 in each category (`llava-mini zoo gates`). Stage 1 can only teach $W$ to write what the frozen
# model already knows how to read, so whatever `vicuna-mini` cannot do from cell tokens, `llava-mini` has to learn in
# stage 2. A larger pre-trained language model is exactly what real LLaVA gets for free from Vicuna.

# %% [markdown]
# ## 8. Why read a scene first? The set-up for stage 1
#
# LLaVA's stage 1 trains **only** $W$ (notebook 06). The vision encoder and the language model are frozen; the loss is
# the language model's likelihood of the caption after the visual tokens $H_v$. The gradient reaches $W$ *through* the
# frozen LM, and it can only ask $W$ to produce inputs that the LM already knows how to use. If the LM never learned
# that a prefix can determine what comes next — that the words after the cell token of a large red circle in the top
# left are *about* that circle — no choice of $H_v$ can make it describe the image: $W$ would have to teach a frozen
# model a new skill, which it cannot.
#
# Vicuna has this skill from chat tuning; `vicuna-mini` has it from its chats about cell tokens; `plain-lm` does not.
# The zoo trained stage 1 on both, with the same recipe (same $g$, same data, same steps): `llava-mini-stage1` on
# `vicuna-mini`, `plain-lm-stage1` on `plain-lm`. What it measured: the caption loss at the end of stage 1; the caption
# F1 (how well the objects a model's captions name, with their colour, shape and any position stated, match the objects
# of 300 test scenes); and the exact-match accuracy of its sentence answers to 300 test questions per category:

# %%
rows = [("stage-1 caption loss", lambda m: m["loss"]), ("caption F1", lambda m: m["caption_f1"]),
        ("question accuracy", lambda m: m["accuracy"]["overall"])]
print(f"{'':>22} " + " ".join(f"{name:>18}" for name in ("plain-lm-stage1", "llava-mini-stage1")))
for label, read in rows:
    print(f"{label:>22} " + " ".join(f"{read(manifest[name]['metrics']):>18.2f}"
                                     for name in ("plain-lm-stage1", "llava-mini-stage1")))

# %% [markdown]
# And the two stage-1 models, shown the same five test images in the `plain` format of stage 1 (`<s>` followed by the
# image tokens), write the captions below. The last lines count, over 100 test images, the captions that name one
# colour–shape pair twice:

# %%
NAMED = re.compile(rf"\b({'|'.join(world.COLOURS)}) ({'|'.join(world.SHAPES)})\b")  # "red circle"


def repeats(text: str) -> bool:
    '''Does the text name one colour-shape pair more than once?'''
    return max(Counter(NAMED.findall(text)).values(), default=0) > 1


stage1_models = {name: zoo.load(name) for name in ("plain-lm-stage1", "llava-mini-stage1")}
test_scenes = [world.sample_scene(s) for s in world.split_seeds("test", 100)]
captions = {}
torch.set_num_threads(1)  # faster for generation, as in section 7
for name, model in stage1_models.items():
    prompt = [tokenizer.bos_token_id] + [tokenizer.image_token_id] * model.num_image_tokens  # <s> + image tokens
    captions[name] = evaluate.generate(model, tokenizer, test_scenes, [prompt] * len(test_scenes), max_new_tokens=60)
torch.set_num_threads(2)
for i, test_scene in enumerate(test_scenes[:5]):
    print("truth:", world.symbolic_context(test_scene).captions[0])
    for name in stage1_models:
        print(textwrap.fill(f"  {name:>17}: {captions[name][i]}", width=110, subsequent_indent=" " * 21))
print()
truth = [world.symbolic_context(s).captions[0] for s in test_scenes]
print(f"captions naming one colour-shape pair twice, of {len(test_scenes)}: "
      + ", ".join(f"{name} {sum(map(repeats, c))}" for name, c in captions.items())
      + f" (scenes that hold such a pair twice: {sum(map(repeats, truth))})")

# %% [markdown]
# **What the zoo shows.** Everything points the same way. On `vicuna-mini`, stage 1 ends at a caption loss of 0.21,
# against 0.61 on `plain-lm`; its captions name the scene's objects (caption F1 0.71, against 0.11); and although it was
# never instruction-tuned, it answers 0.53 of the test questions, against 0.28. `vicuna-mini` already chats about cell
# tokens, and $W$ learned to write visual tokens that it reads like them. `plain-lm-stage1` writes a fluent caption for
# every image, but mostly of objects that are not there: `plain-lm` learned what captions look like with nothing before
# them, so its frozen weights produce a caption whatever $W$ does. The image tokens are noise to it, and $W$ cannot make
# them matter. It also names one colour–shape pair twice in 40 of the 100 captions ("a blue cross, a green cross and a
# green cross"), where 3 of the 100 scenes hold such a pair twice.
#
# `llava-mini-stage1` is not perfect either. Of the five examples it gets the first and the fourth right object for
# object; elsewhere it mistakes shapes and colours (the blue square becomes a blue circle, the small blue circle a blue
# diamond), and in the third caption it writes "a large blue diamond" twice, for the red cross in the middle left and
# for the purple diamond in the bottom right. It repeats a pair like this in 6 of its 100 captions. Its caption F1 of
# 0.71 is short of the course's target of 0.90 (`llava-mini zoo gates`): this $W$ carries much of the image into the
# caption, not all of it.
#
# The lesson for study question 3: the frozen LLM of stage 1 must already read a prefix of the form $W$ can write. Given
# that, the caption loss, the captions and even the answers to questions follow; without it, no $W$ helps.

# %% [markdown]
# **The set-up for study question 17** (long-term memory and knowledge injection; notebook 10). Section 6 showed a
# language model answering questions about facts that are not in its weights at all — this particular scene — because
# the facts were in its input, as cell tokens. Section 7 showed what its weights alone hold: general priors, the answer
# formats, no scene. LLaVA inherits both halves: what Vicuna and CLIP absorbed in pre-training (parametric knowledge,
# fixed after training), and whatever is put into the prompt (here the image, as $H_v$; in a retrieval-augmented system,
# retrieved text). Keep the distinction in mind: putting a fact into the context works the moment it is there; putting
# it into the weights takes training, and can overwrite what was there before.
#
# ## Questionnaire
#
# Not graded: questions to think about before notebook 04. Write your answers down.
#
# 1. With a KV cache of `past` tokens, why must the new queries see *all* cached keys? What goes wrong in generation if
#    the mask is aligned to the top-left corner instead?
# 2. RoPE makes $q_m \cdot k_n$ depend on $m - n$ only. Where, then, does a left-padded prompt need `position_ids`
#    (rather than $0 \dots T-1$) at all?
# 3. Converting Meta's LLaMA weights to Hugging Face's layout permutes the rows of $W_q$ and $W_k$ but not of $W_v$. Why
#    only those two?
# 4. RMSNorm drops LayerNorm's mean subtraction and bias. What can a LayerNorm represent that an RMSNorm cannot?
# 5. In exercise 3.4, why is the `</s>` after each answer supervised, and the ` ASSISTANT:` tag not? What would a model
#    trained with the tag supervised do differently at inference?
# 6. LLaVA's stage 1 uses the `plain` format — no system prompt, no `USER:`/`ASSISTANT:` — even though stage 2 uses
#    Vicuna-v1. What does that say about what stage 1 is for?
# 7. The blind baseline is above chance in some categories. Which, and why? What does that imply for a benchmark that
#    claims to measure *vision*? (Study question 15.)
# 8. Suppose the plain-text LM were unfrozen in stage 1. Would stage 1 then work? What would it cost? (Study questions 3
#    and 4.)
# 9. A cell token is an unordered sum of five word embeddings. Why does that bind a colour to its shape here, when the
#    sum of the words of a whole scene's description would not? What would go wrong if two objects could share a cell?
