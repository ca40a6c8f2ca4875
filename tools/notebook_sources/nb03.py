import sys

HERE = __import__("pathlib").Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from nbtools import code, md, script, write  # noqa: E402

md(r"""
# 03 — The language model: causal attention, RoPE, the Llama block, and the chat template

LLaVA's language model $f_\phi$ is **Vicuna** (LLaVA §4.1): LLaMA fine-tuned on 70K user-shared ChatGPT conversations.
The choice matters more than it looks. Vicuna is a *chat* model: it already reads a long prompt — a system message, a
question — and answers from it. LLaVA only has to put the image into that prompt, as visual tokens $H_v$ in front of
the instruction, and teach the model to read them.

Our $f_\phi$ is `vicuna-mini`, a decoder with exactly the architecture of Hugging Face's `LlamaForCausalLM`
(`llava_mini/lm.py`), pre-trained on ShapesWorld text. This notebook builds its parts — the causal mask, rotary
positions, the decoder block, the chat template — and then asks the question that shapes LLaVA's stage 1: *what must
the language model already know before it ever sees an image?*

### Goals
After this notebook you can

1. write the causal attention mask, including the KV-cache case (exercise 3.1);
2. write rotary position embeddings the way Llama lays them out (exercise 3.2);
3. write the Llama decoder block: RMSNorm, attention, SwiGLU, residuals (exercise 3.3);
4. lay out a Vicuna-v1 conversation and say which tokens take the loss (exercise 3.4);
5. generate with `vicuna-mini` from a textual description of a scene, and measure what it knows *without* one;
6. explain, with the zoo's measurements, why stage 1 needs a language model that already reads a context, and why the
   stage-1 loss alone does not show it — the set-up for stage 1 (notebook 06) and for study question 17.

### Time
About **70 minutes**: 35 of reading, four exercises of 5–10 minutes each. Running every cell takes well under two
minutes on 2 CPU cores; nothing here trains.

### Numbers to expect
The first code cell prints Vicuna next to `vicuna-mini`, and the zoo's measurement of the two stage-1 models that
section 7 is about.
""")

md(r"""
## 0. Set-up
""")

code(r"""
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from llava_mini import conversation, corpora, evaluate, lm, teacher, world, zoo
from llava_mini.course import setup_notebook
from llava_mini.grading import nb03
from llava_mini.tokenizer import SYSTEM_PROMPT, load_tokenizer

setup_notebook(seed=0)
tokenizer = load_tokenizer()
manifest = zoo.read_manifest()
vicuna = zoo.load("vicuna-mini")  # lm.LanguageModel, pre-trained on the "context" corpus
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
for name in ("plain-lm-stage1", "llava-mini-stage1"):
    m = manifest[name]["metrics"]
    print(f"{name:>17}: stage-1 caption loss {m['loss']:.2f}, question accuracy {m['accuracy']['overall']:.2f}")
""")

md(r"""
## 1. Tokens

A language model reads token ids. Vicuna uses LLaMA's SentencePiece tokenizer (32,000 pieces); ShapesWorld's language
is closed, so our tokenizer is word-level (`llava_mini/tokenizer.py`) — but it is a real Hugging Face tokenizer, and
it keeps SentencePiece's convention: a token carries the space *before* it, written `▁` (so `red` and `▁red` are two
tokens, as in LLaMA). That convention makes decoding exact, and it will matter for the chat template in section 5.
""")

code(r"""
text = "USER: What colour is the circle? ASSISTANT: red"
ids = tokenizer(text)["input_ids"]
print(ids)
print(tokenizer.convert_ids_to_tokens(ids))
print("decode(encode(text)) == text:", tokenizer.decode(ids, skip_special_tokens=True) == text)
print("vocabulary:", len(tokenizer), "tokens, of which", len(tokenizer.all_special_tokens), "special:",
      tokenizer.all_special_tokens)
""")

md(r"""
## 2. Causal attention

A language model is trained to predict every next token at once: position $t$'s output predicts token $t+1$. So
position $t$ must not see tokens after it — otherwise it would simply copy the answer. Causal self-attention forbids
it with a **mask**: query $i$ may attend to key $j$ only if $j \le i$ (itself included). The attention is otherwise
exactly notebook 02's.

During generation the model does not recompute the whole prefix at every step: it keeps the keys and values of the
tokens it has already read (the **KV cache**, `past_kv` in `lm.py`) and runs only the new tokens. Then $t$ new
queries sit at positions $\text{past}, \dots, \text{past} + t - 1$ and face $\text{past} + t$ keys: the mask is no
longer square.

### Exercise 3.1: the causal mask

Write `causal_mask(t, past=0)`: a `bool` tensor of shape $(t, \text{past} + t)$ whose entry $[i, j]$ is `True` when
query $i$ (at position $\text{past} + i$) may attend to key $j$. `True` means "may attend", the convention of
PyTorch's `F.scaled_dot_product_attention(attn_mask=...)`. The grader also checks that your mask in SDPA gives
exactly `is_causal=True`. *(About 3 lines.)*
""")

code(r"""
def causal_mask(t: int, past: int = 0) -> torch.Tensor:
    '''Bool (t, past + t): True where query i, at position past + i, may attend to key j.'''
    ### BEGIN SOLUTION
    query = torch.arange(past, past + t)[:, None]  # (t, 1) absolute positions
    key = torch.arange(past + t)[None, :]  # (1, past + t)
    return key <= query
    ### END SOLUTION
""", "exercise")

code(r"""
nb03.check_causal_mask(causal_mask)
""", "grader")

md(r"""
The package builds the same rule into `lm.attention_mask_4d`, combined with a padding mask (keys that are padding are
hidden too). Drawn, with a cache of 4 tokens on the right:
""")

code(r"""
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
""")

md(r"""
The point of the mask, tested on `vicuna-mini`: change the last token of a sentence, and the outputs at every earlier
position stay exactly the same.
""")

code(r"""
ids = torch.tensor([tokenizer("a large red circle in the top left.")["input_ids"]])  # (1, T)
changed = ids.clone()
changed[0, -1] = tokenizer.convert_tokens_to_ids("?")
with torch.no_grad():
    before, after = vicuna(ids).logits, vicuna(changed).logits  # (1, T, vocab)
print("earlier positions unchanged:", torch.equal(before[:, :-1], after[:, :-1]),
      "| last position changed:", not torch.equal(before[:, -1], after[:, -1]))
""")

md(r"""
## 3. Rotary position embeddings (RoPE)

Attention by itself is blind to order. The ViT of notebook 02 *adds* a learned vector per position; Llama *rotates*
the queries and keys instead (Su et al., 2021, "RoFormer"). The features of a head (size $d$) are taken in pairs, and
pair $i$ of the token at position $m$ is rotated by the angle $m\,\theta_i$, with frequencies
$\theta_i = \text{base}^{-2i/d}$, $i = 0, \dots, d/2 - 1$ (base 10,000): the first pairs spin fast, the last ones
slowly. Because a rotation by $m\theta$ followed by the transposed rotation by $n\theta$ is a rotation by
$(m - n)\theta$, the score $q_m \cdot k_n$ depends on the positions only through $m - n$: **relative** positions, for
free, with no parameters.

Which features form a pair is a layout choice, and two layouts exist:

- RoFormer and GPT-J pair **adjacent** features, $(x_0, x_1), (x_2, x_3), \dots$;
- Llama, as implemented in Hugging Face `transformers` (and Meta's checkpoints after conversion, whose query and key
  weights are permuted accordingly) pairs feature $i$ with feature $i + d/2$: split $x$ into halves $(x_1, x_2)$ and
  use `rotate_half(x)` $= (-x_2, x_1)$:

$$\mathrm{RoPE}(x)_m = x \odot \cos(m\,\theta) + \mathrm{rotate\_half}(x) \odot \sin(m\,\theta),$$

where the $d/2$ angles are repeated twice, $[\theta_0, \dots, \theta_{d/2-1}, \theta_0, \dots, \theta_{d/2-1}]$, so that
features $i$ and $i + d/2$ share an angle. Both layouts are RoPE; on the same weights they give different models.

### Exercise 3.2: RoPE, half-split

Write `apply_rope(x, position_ids, theta=10000.0)`: `x` is $(B, \text{heads}, T, d)$, `position_ids` is $(B, T)$ —
use them, not $0 \dots T-1$: a left-padded prompt starts later — and `theta` is the base. Return the rotated tensor,
same shape; do not modify `x`. The grader compares with the package's `lm.RotaryEmbedding`. *(About 6 lines.)*
""")

code(r"""
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
""", "exercise")

code(r"""
nb03.check_apply_rope(apply_rope)
""", "grader")

md(r"""
The relative-position property, checked with the package's rotary embedding on random queries and keys: the score of
positions (7, 3) equals the score of positions (107, 103), and differs from (7, 5). The figure shows the cosine of
each pair's angle against the position: fast pairs on the left, slow ones on the right.
""")

code(r"""
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
""")

md(r"""
## 4. The Llama decoder block

`LlamaDecoderLayer` (our `lm.Block`) is a pre-norm block like the ViT's, with three changes of detail:

- **RMSNorm** instead of LayerNorm (Zhang & Sennrich, 2019): no mean is subtracted and there is no bias, only a
  learned scale: $\mathrm{RMSNorm}(x) = x / \sqrt{\mathrm{mean}(x^2) + \epsilon} \odot w$. Cheaper, and as good.
- **SwiGLU** instead of a GELU MLP (Shazeer, 2020): $\mathrm{down}(\mathrm{silu}(\mathrm{gate}(x)) \odot
  \mathrm{up}(x))$, with $\mathrm{silu}(x) = x\,\sigma(x)$ and a hidden size of about $\tfrac{8}{3}d$ so the three
  matrices cost what a $4d$ two-matrix MLP costs.
- Causal attention with RoPE on the queries and keys; no biases in any linear layer.

$$h = x + \mathrm{Attn}(\mathrm{RMSNorm}_1(x)), \qquad \mathrm{out} = h + \mathrm{SwiGLU}(\mathrm{RMSNorm}_2(h)).$$

### Exercise 3.3: the decoder block

Write `decoder_block(x, block, rope, position_ids)` for $x$ of shape $(B, T, D)$ and `block` an `lm.Block`. Write
RMSNorm and SwiGLU yourself, from `block.input_layernorm` / `block.post_attention_layernorm` (each has `.weight` and
`.eps`) and `block.mlp.gate_proj` / `up_proj` / `down_proj`. For the attention sub-layer call
`block.self_attn(h, rope, position_ids, None, None)[0]` (it projects, applies RoPE, attends causally, projects back;
the two `None` are the padding mask and the KV cache, and `[1]` would be the new cache). The grader gives the norms
random scales and the input a non-zero mean. *(About 6 lines.)*
""")

code(r"""
def decoder_block(x: torch.Tensor, block, rope, position_ids: torch.Tensor) -> torch.Tensor:
    '''One Llama block: x (B, T, D) -> (B, T, D), with your own RMSNorm and SwiGLU.'''
    ### BEGIN SOLUTION
    def rms_norm(h, norm):
        return norm.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.eps))

    h = x + block.self_attn(rms_norm(x, block.input_layernorm), rope, position_ids, None, None)[0]  # (B, T, D)
    z = rms_norm(h, block.post_attention_layernorm)
    return h + block.mlp.down_proj(F.silu(block.mlp.gate_proj(z)) * block.mlp.up_proj(z))
    ### END SOLUTION
""", "exercise")

code(r"""
nb03.check_decoder_block(decoder_block)
""", "grader")

md(r"""
The whole model is embeddings → blocks → a final RMSNorm → `lm_head`, a linear map to one logit per vocabulary
token. By hand, with the package's blocks:
""")

code(r"""
ids = torch.tensor([tokenizer("there are two shapes: a small blue cross in the center")["input_ids"]])  # (1, T)
positions = torch.arange(ids.shape[1])[None]  # (1, T)
with torch.no_grad():
    x = vicuna.embed_tokens(ids)  # (1, T, D)
    for block in vicuna.layers:
        x, _ = block(x, vicuna.rope, positions, None, None)
    logits = vicuna.lm_head(vicuna.norm(x))  # (1, T, vocab)
print("logits:", tuple(logits.shape), "| by hand == vicuna(ids):", torch.allclose(logits, vicuna(ids).logits, atol=1e-5))
print("next word after the sentence:", repr(tokenizer.decode(logits[0, -1].argmax())))
""")

md(r"""
Side by side with notebook 02's vision encoder:

| | ViT block (CLIP) | decoder block (Llama) |
|---|---|---|
| norm | LayerNorm (mean and scale, with bias) | RMSNorm (scale only) |
| MLP | fc1 → quick_gelu → fc2, with biases | SwiGLU, three matrices, no biases |
| positions | learned vectors, added once at the input | RoPE, rotating $q$ and $k$ in every layer |
| attention | bidirectional | causal (+ KV cache for generation) |
| reads | patch tokens | word embeddings — and, in LLaVA, visual tokens $H_v$ through `inputs_embeds` |

The last row is LLaVA's whole trick: `LanguageModel.forward(inputs_embeds=...)` accepts any vectors of width $D$, not
only rows of its embedding table. Nothing in the block cares where a vector came from.

## 5. The Vicuna-v1 chat template

A chat model reads a conversation as one string with a fixed layout. LLaVA trains with Vicuna-v1's (`conv_vicuna_v1`
in the released code, "separator style TWO": `sep=" "`, `sep2="</s>"`):

```
SYSTEM USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT: A2</s>
```

The paper's Eq. 2 writes the same sequence as $X_{\text{system}}$, then per turn $t$: `USER:` $X^t_{\text{instruct}}$
`ASSISTANT:` $X^t_a$ `<STOP>`; Eq. 3 takes the loss on the answers $X_a$ and their `<STOP>` only — the model learns to
answer and to stop, never to write the user's side. (The paper's Table 2 shows the older Vicuna-v0 layout with `###`
separators; the released v1 models use the layout above. A model tuned on one separator and prompted with another
does not know where its turn ends.)

Our package builds the training sequence **segment by segment**, each segment with a flag saying whether it takes
the loss. LLaVA's `preprocess_v1` instead renders the whole string, tokenizes it, and re-derives where each answer
starts by splitting the string on `"</s>"` and `" ASSISTANT: "`; when that arithmetic disagrees with the tokenizer it
masks the whole sample ("WARNING: tokenization mismatch", haotian-liu/LLaVA#661 and #1166). Segments avoid it — if
each segment tokenizes exactly as it does inside the whole string. With a tokenizer that attaches a space to the
word after it, that means the space after `ASSISTANT:` belongs to the answer.

### Exercise 3.4: the conversation as segments

Write `chat_segments(turns, system)`. `turns` is a conversation in LLaVA's JSON format: a list of
`{"from": "human" | "gpt", "value": text}` dicts, alternating and starting with `"human"`. Return a list of
`(text, supervised)` tuples:

1. `(system, False)` first — unless `system` is empty, in which case there is no system segment;
2. for each human turn, `("USER: " + value, False)` then `(" ASSISTANT:", False)`; the **first** human turn starts
   with a space, `" USER: "`, when it follows a system prompt;
3. for each gpt turn, `(" " + value, True)` then `("</s>", True)` — the separator `sep2`, with no space before the
   next `USER: `.

Joined, the texts must be exactly the layout above (the grader compares with `conversation.render_chat`, on the
teacher's conversations and with other system prompts). *(About 8 lines.)*
""")

code(r"""
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
""", "exercise")

code(r"""
nb03.check_chat_segments(chat_segments)
""", "grader")

md(r"""
Why the space must go with the answer, in tokens: the joint tokenization of `" ASSISTANT: red"` ends with `▁red`.
Split as `" ASSISTANT:"` + `" red"` the pieces give the same tokens; split as `" ASSISTANT: "` + `"red"` they do not —
exactly the mismatch LLaVA's string arithmetic trips over.
""")

code(r"""
def tokens(text):
    return tokenizer.convert_ids_to_tokens(tokenizer.encode(text, add_special_tokens=False))


print("whole string:            ", tokens(" ASSISTANT: red"))
print("' ASSISTANT:' + ' red':  ", tokens(" ASSISTANT:") + tokens(" red"))
print("' ASSISTANT: ' + 'red':  ", tokens(" ASSISTANT: ") + tokens("red"))
""")

md(r"""
`conversation.build_chat` turns segments into ids and labels: the labels are the ids on supervised segments and −100
(PyTorch's `ignore_index`) everywhere else. Here is one of the teacher's conversations as the model reads it, the
supervised tokens in `[brackets]`, with `<image>` expanded to one placeholder for each visual token (notebook 05
builds the labels themselves):
""")

code(r"""
def show(sample, width=110):
    '''A sample's text with the supervised tokens in [brackets].'''
    pieces = []
    for token_id, label in zip(sample.input_ids, sample.labels):
        piece = tokenizer.decode([token_id]).replace("\n", "\\n")
        piece = piece.strip() or "\u2581"  # the lone-space token
        pieces.append(f"[{piece}]" if label != conversation.IGNORE_INDEX else piece)
    print(textwrap.fill(" ".join(pieces), width=width))


turns = [{"from": "human", "value": "<image>\nWhat colour is the circle?"}, {"from": "gpt", "value": "red"},
         {"from": "human", "value": "How many shapes are there?"}, {"from": "gpt", "value": "two"}]
sample = conversation.build_chat(turns, tokenizer, num_image_tokens=3)
show(sample)
print("supervised tokens:", sum(label != conversation.IGNORE_INDEX for label in sample.labels), "of", len(sample.labels))
""")

md(r"""
## 6. `vicuna-mini`: a chat model that reads a context

What should a language model have learned before LLaVA connects an image to it? Vicuna learned to read a prompt and
answer from it. `vicuna-mini` is pre-trained to do the same in ShapesWorld: its corpus (`corpora.lm_examples`, corpus
`"context"`) is built from the very records stage 1 and stage 2 use, with the `<image>` placeholder replaced by a
**textual description** of the scene — its most detailed caption. So it reads "description → caption" lines and
Vicuna-v1 chats whose first user turn starts with the description. The contrast model `plain-lm` (corpus `"plain"`)
reads the same captions and chats **without** the description: captions out of nowhere, answers about a scene it is
never told. Both corpora for one scene, the supervised tokens in brackets:
""")

code(r"""
seed = world.SPLITS["train"][5]
for corpus in corpora.LM_CORPORA:
    print(f"--- corpus {corpus!r}")
    for example in corpora.lm_examples(corpus, [seed], tokenizer):
        show(example.sample)
""")

md(r"""
Now let `vicuna-mini` answer questions about a validation scene it reads only as a description. The prompt is built
exactly like its training chats: the Vicuna-v1 prompt with the description where the image would go. Greedy decoding,
with the KV cache (and without it: same tokens, every step re-reading the whole sequence):
""")

code(r"""
def context_prompt(question: str, context: str) -> list[int]:
    '''<s> + the Vicuna-v1 prompt for one question, the context's tokens where <image> would be.'''
    ids = conversation.build_prompt([{"from": "human", "value": "<image>\n" + question}], tokenizer, 1)
    at = ids.index(tokenizer.image_token_id)
    return ids[:at] + (tokenizer.encode(context, add_special_tokens=False) if context else []) + ids[at + 1:]


def ask(model, question: str, context: str, use_cache: bool = True) -> str:
    out = model.generate(torch.tensor([context_prompt(question, context)]), max_new_tokens=40,
                         eos_token_id=tokenizer.eos_token_id, use_cache=use_cache)
    return tokenizer.decode(out[0], skip_special_tokens=True).strip()


scene = world.sample_scene(world.SPLITS["val"][7])
description = world.symbolic_context(scene).captions[0]
print("context:", description)
for question in ["What colour is the circle?", "How many shapes are there?", "Where is the small shape?",
                 "Is there a green square?"]:
    print(f"  USER: {question:<28} ASSISTANT: {ask(vicuna, question, description)}")
print("the same answer without the KV cache:",
      ask(vicuna, "How many shapes are there?", description, use_cache=False)
      == ask(vicuna, "How many shapes are there?", description))
""")

md(r"""
## 7. What does the language model know without the image?

Take the context away and `vicuna-mini` still answers — in the right format, from what its weights hold about
ShapesWorld in general. That is the **blind baseline**: how much of a question can be answered from language priors
alone. We ask 100 teacher questions of each category about validation scenes, and score exact-match answers
(`evaluate.normalise`) for `vicuna-mini` with and without the description, and for `plain-lm` (which was always
trained without one):
""")

code(r"""
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


def accuracy(model, pairs, with_context: bool) -> float:
    prompts = [context_prompt(qa.question, world.symbolic_context(scene).captions[0] if with_context else "")
               for scene, qa in pairs]
    batch = conversation.collate(prompts, tokenizer.pad_token_id, padding_side="left")
    out = model.generate(batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=12,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    replies = tokenizer.batch_decode(out, skip_special_tokens=True)
    return float(np.mean([evaluate.normalise(r) == evaluate.normalise(qa.answer) for r, (_, qa) in zip(replies, pairs)]))


settings = [("vicuna-mini, with the description", vicuna, True), ("vicuna-mini, no description", vicuna, False),
            ("plain-lm, no description", plain_lm, False)]
results = {name: [] for name, _, _ in settings}
for category in teacher.CATEGORIES:
    pairs = questions(category)
    for name, model, with_context in settings:
        results[name].append(accuracy(model, pairs, with_context))

fig, ax = plt.subplots(figsize=(8, 3.2))
x = np.arange(len(teacher.CATEGORIES))
for i, (name, values) in enumerate(results.items()):
    ax.bar(x + (i - 1) * 0.27, values, width=0.27, label=name)
ax.set_xticks(x, teacher.CATEGORIES)
ax.set_ylim(0, 1.05)
ax.set_ylabel("exact-match accuracy")
ax.legend(fontsize=8, loc="upper right")
ax.set_title("100 validation questions per category, answered from text alone", fontsize=10)
plt.show()
print(f"{'':>34} " + " ".join(f"{c:>9}" for c in teacher.CATEGORIES))
for name, values in results.items():
    print(f"{name:>34} " + " ".join(f"{v:>9.2f}" for v in values))
""")

md(r"""
**What the bars say.** Compare the first bar of each group with the second: with the description, `vicuna-mini`
answers colour, shape and position questions far more often than without it — it does read the context, which is
the skill LLaVA borrows from Vicuna. The blind bars are its priors: they sit near chance for colour, shape and
position, and higher for count, existence and relation, where a few answers ("yes", "no", "1", "2") cover most
questions. The plain-text LM, which never saw a description, has nothing but priors.

Look also at what the context does *not* buy. On existence, the first bar is no higher than the blind ones: this
small model has not learned to check a colour–shape pair against the description, and even where it reads, it is
right only part of the time. That is a ceiling for everything built on it. Stage 1 can only teach $W$ to write what
the frozen model already knows how to read, so whatever `vicuna-mini` cannot do from text, `llava-mini` has to learn
in stage 2 — and the zoo's `llava-mini` carries these weak spots (the table in notebook 00). A larger pre-trained
language model is exactly what real LLaVA gets for free from Vicuna.
""")

md(r"""
## 8. Why read a context first? The set-up for stage 1

LLaVA's stage 1 trains **only** $W$ (notebook 06). The vision encoder and the language model are frozen; the loss is
the language model's likelihood of the caption after the visual tokens $H_v$. The gradient reaches $W$ *through* the
frozen LM, and it can only ask $W$ to produce inputs that the LM already knows how to use. If the LM never learned
that a prefix can determine what comes next — that the words after "a large red circle in the top left" are *about*
that circle — no choice of $H_v$ can make it describe the image: $W$ would have to teach a frozen model a new skill,
which it cannot.

Vicuna has this skill from chat tuning; `vicuna-mini` has it from its context corpus; `plain-lm` does not. The zoo
trained stage 1 on both, with the same recipe (same $g$, same data, same steps): `llava-mini-stage1` on `vicuna-mini`,
`plain-lm-stage1` on `plain-lm`. What it measured:
""")

code(r"""
keys = ["loss", "overall", "description", "caption_like"]
labels = ["stage-1 caption loss", "question accuracy", "description F1", "answers that are captions"]
print(f"{'':>28} " + " ".join(f"{name:>18}" for name in ("plain-lm-stage1", "llava-mini-stage1")))
for key, label in zip(keys, labels):
    values = [manifest[name]["metrics"]["loss"] if key == "loss" else manifest[name]["metrics"]["accuracy"][key]
              for name in ("plain-lm-stage1", "llava-mini-stage1")]
    print(f"{label:>28} " + " ".join(f"{v:>18.2f}" for v in values))
""")

md(r"""
And the two stage-1 models, shown the same test images in the `plain` format of stage 1 (`<s>` followed by the image
tokens), write:
""")

code(r"""
stage1_models = {name: zoo.load(name) for name in ("plain-lm-stage1", "llava-mini-stage1")}
for s in world.split_seeds("test", 3):
    test_scene = world.sample_scene(s)
    print("truth:", world.symbolic_context(test_scene).captions[0])
    for name, model in stage1_models.items():
        pixels = world.pixel_values(world.render(test_scene, model.config.vision.image_size))  # (1, 3, H, W)
        prompt = torch.tensor([[tokenizer.bos_token_id] + [tokenizer.image_token_id] * model.num_image_tokens])
        out = model.generate(prompt, pixels, max_new_tokens=40, eos_token_id=tokenizer.eos_token_id)
        print(textwrap.fill(f"  {name:>17}: {tokenizer.decode(out[0], skip_special_tokens=True).strip()}",
                            width=110, subsequent_indent=" " * 21))
""")

md(r"""
**What the zoo shows — and what its loss hides.** By the stage-1 loss alone, `plain-lm-stage1` looks *better*. Read
the captions: it writes the same caption for every image. `plain-lm` learned what captions look like, with nothing
before them, so its frozen weights give a low loss to one typical caption whatever $W$ does — the image tokens are
noise to it, and $W$ cannot make them matter. `llava-mini-stage1` writes captions that change with the image and
now and then name an object of the scene, with repetitions and wrong positions: its frozen LM treats the visual
tokens as a context to describe, the skill `vicuna-mini` was pre-trained for. Its loss is higher because
`vicuna-mini` never learned to write a caption *without* a readable context; it had to be given one.

That is the effect stage 1 relies on, in a weak form: this zoo's $W$ carries some of the image into the caption, not
all of it (the course's target for this contrast is not reached yet; `llava-mini zoo gates`). The lesson for study
question 3 stands: the frozen LLM of stage 1 must already read a prefix, and a caption loss is not a measure of
whether it does — look at what the model writes.
""")

md(r"""
**The set-up for study question 17** (long-term memory and knowledge injection; notebook 10). Section 6 showed a
language model answering questions about facts that are not in its weights at all — this particular scene — because
the facts were in its context. Section 7 showed what its weights alone hold: general priors, the answer formats, no
scene. LLaVA inherits both halves: what Vicuna and CLIP absorbed in pre-training (parametric knowledge, fixed after
training), and whatever is put into the prompt (here the image, as $H_v$; in a retrieval-augmented system, retrieved
text). Keep the distinction in mind: putting a fact into the context works the moment it is there; putting it into the
weights takes training, and can overwrite what was there before.

## Questionnaire

Not graded: questions to think about before notebook 04. Write your answers down.

1. With a KV cache of `past` tokens, why must the new queries see *all* cached keys? What goes wrong in generation if
   the mask is aligned to the top-left corner instead?
2. RoPE makes $q_m \cdot k_n$ depend on $m - n$ only. Where, then, does a left-padded prompt need `position_ids`
   (rather than $0 \dots T-1$) at all?
3. Converting Meta's LLaMA weights to Hugging Face's layout permutes the rows of $W_q$ and $W_k$ but not of $W_v$. Why
   only those two?
4. RMSNorm drops LayerNorm's mean subtraction and bias. What can a LayerNorm represent that an RMSNorm cannot?
5. In exercise 3.4, why is the `</s>` after each answer supervised, and the ` ASSISTANT:` tag not? What would a model
   trained with the tag supervised do differently at inference?
6. LLaVA's stage 1 uses the `plain` format — no system prompt, no `USER:`/`ASSISTANT:` — even though stage 2 uses
   Vicuna-v1. What does that say about what stage 1 is for?
7. The blind baseline is above chance in some categories. Which, and why? What does that imply for a benchmark that
   claims to measure *vision*? (Study question 15.)
8. Suppose the plain-text LM were unfrozen in stage 1. Would stage 1 then work? What would it cost? (Study questions 3
   and 4.)
""")

write(str(HERE / "out" / "03_language_model.ipynb"))
script(str(HERE / "out" / "nb03_script.py"))
