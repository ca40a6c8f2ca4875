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
# # 05 — The answer-token loss: what LLaVA maximises, and how the gradient reaches $W$
#
# Everything LLaVA learns, it learns from one number per batch: the cross-entropy of the answer tokens. Stage 1
# (feature alignment) and stage 2 (instruction tuning) differ only in *which* parameters that number is allowed to
# move (LLaVA §4.2). This notebook writes the objective down — the likelihood of the paper's eq. 3 — and builds every
# piece that turns it into a training signal: the labels that say which tokens count, the batch, the shifted and
# masked cross-entropy, and its normalisation when a step is split into micro-batches. Along the way it reproduces the
# bug that LLaVA's users met most often (the "tokenization mismatch" that silently removes whole samples from the
# loss) and follows the gradient from the loss, through a language model that is frozen, back to $W$.
#
# ### Goals
# After this notebook you can
#
# 1. write the likelihood of eq. 3 for a multi-turn conversation, and the loss it implies;
# 2. build the input ids and labels of a Vicuna-v1 chat, with −100 on everything that is not an answer (exercise 5.1),
#    and say why LLaVA's way of building them breaks and the segment-by-segment way does not;
# 3. pad a batch without putting padding into the loss (exercise 5.2);
# 4. write the shifted, masked cross-entropy normalised by the number of supervised tokens (exercise 5.3), and check it
#    against PyTorch and against transformers;
# 5. show with autograd that the gradient reaches $W$ *through* a frozen language model, and what `torch.no_grad()`
#    would break;
# 6. accumulate gradients over micro-batches so that a step's gradient is the gradient of its whole batch (exercise
#    5.4), and measure what the older per-micro-batch average gets wrong;
# 7. answer study question 13: the learning objective of $W$.
#
# ### Time
# About **60 minutes**: 30 of reading, four exercises of 5–10 minutes each, one study question. Running every cell
# (strict `pytest --nbval`) took 7 to 29 s over nine runs on 2 CPU cores shared with other jobs (another notebook's
# execution, a model training and a zoo build). Nothing here trains: the models are
# the zoo's, and the only backward passes are single batches.
#
# ### Numbers to expect
# The zoo's `llava-mini` ends stage 2 at a training loss near 0.04 per answer token and `llava-mini-stage1` ends stage 1
# near 0.21 per caption token (first code cell); a uniform guess over the tokenizer's 538 tokens would score
# $\ln 538 \approx 6.29$. Section 5 finds `llava-mini` at 0.16 on a batch of training chats, with four implementations
# of the loss agreeing to five decimals; section 7 finds the older way of accumulating gradients off by a quarter of
# the gradient's norm.

# %% [markdown]
# ## 0. Set-up

# %%
import math
import textwrap

import torch
import torch.nn.functional as F
import transformers
from transformers.loss.loss_utils import ForCausalLMLoss

from llava_mini import conversation, corpora, data, hf, lm, stages, train, world, zoo
from llava_mini.conversation import IGNORE_INDEX
from llava_mini.course import setup_notebook
from llava_mini.grading import nb05
from llava_mini.tokenizer import SYSTEM_PROMPT, load_tokenizer

setup_notebook(seed=0)
tokenizer = load_tokenizer()
manifest = zoo.read_manifest()
for name in ("llava-mini-stage1", "llava-mini"):
    recipe = manifest[name]["recipe"]
    print(f"{name:>17}: stage {recipe['stage']}, {manifest[name]['metrics']['trainable']:,} trainable parameters, "
          f"final training loss {manifest[name]['metrics']['loss']:.2f} per supervised token")
print(f"a uniform guess over the vocabulary of {len(tokenizer)} tokens: ln {len(tokenizer)} = "
      f"{math.log(len(tokenizer)):.2f}")


# %% [markdown]
# ## 1. The likelihood of eq. 3
#
# A training example is an image $X_v$ and a conversation of $T$ turns,
# $(X^1_q, X^1_a, \dots, X^T_q, X^T_a)$: questions from the user, answers from the assistant. LLaVA writes it as one
# sequence (eq. 2): the system message, then for each turn `USER:` $X^t_{\text{instruct}}$ `ASSISTANT:` $X^t_a$
# `</s>`, where the first instruction also holds the image, $X^1_{\text{instruct}} = [X^1_q, X_v]$ (in either order)
# and later ones are just $X^t_q$. Call the answer tokens, with each answer's `</s>`, $x_1, \dots, x_L$ — all answers
# of all turns, in order. Eq. 3 is the probability of exactly these tokens, one at a time:
#
# $$p(X_a \mid X_v, X_{\text{instruct}}) = \prod_{i=1}^{L} p_\theta\left(x_i \mid X_v, X_{\text{instruct}, <i},
# X_{a, <i}\right),$$
#
# where $X_{\text{instruct}, <i}$ and $X_{a,<i}$ are the instructions and answer tokens that come *before* $x_i$ in
# the sequence. Two things follow from the indices. Each answer token is predicted from everything before it — the
# image, the system prompt, every earlier question *and every earlier answer* — so one forward pass over the whole
# conversation scores all turns at once: a causal language model's output at position $t$ is already
# $p_\theta(\cdot \mid \text{tokens}_{\le t})$. And only the $x_i$ are predicted: the product has no factor for a
# system, question, tag or image token. They are conditioned on, never generated.
#
# Maximum likelihood turns the product into a sum. Over a batch with $N$ supervised tokens in all,
#
# $$\mathcal{L}(\theta) = -\frac{1}{N} \sum_{\text{examples}} \sum_{i=1}^{L} \log p_\theta\left(x_i \mid
# \ldots\right),$$
#
# the mean negative log-likelihood per answer token: the token-level cross-entropy restricted to answers. $\theta$ is
# $W$ in stage 1 and $\{W, \phi\}$ in stage 2; the vision encoder $g$ is frozen in both. Nothing else is in the loss:
# no contrastive term, no reconstruction of the image features.
#
# In code, "restricted to answers" is a **label** per position: the token's id where it is some $x_i$, and −100
# (PyTorch's `ignore_index`, LLaVA's `IGNORE_INDEX`) everywhere else. "Predicted from everything before it" is the
# **shift**: the logits at position $t$ are scored against the label at $t+1$.

# %% [markdown]
# ## 2. Labels, segment by segment
#
# The Vicuna-v1 layout of notebook 03 (exercise 3.4), with what each piece contributes to the loss:
#
# | piece | text | labels |
# |---|---|---|
# | start | `<s>` | −100 |
# | system | `A chat between a curious user and …` | −100 |
# | first question | ` USER: <image>\nWhat colour is the circle?` (later questions: `USER: …`, no space) | −100, the image tokens too |
# | tag | ` ASSISTANT:` | −100 |
# | answer | ` The circle is red.` | its own ids |
# | end | `</s>` | its own id |
#
# Each `<image>` stands for the $N$ visual tokens $H_v$: the ids hold $N$ copies of the placeholder id
# `tokenizer.image_token_id` (here $N = 9$, one per cell of the 3×3 grid), which the model overwrites with
# $H_v = W \cdot Z_v$.
#
# ### Exercise 5.1: ids and labels of a chat
#
# Write `chat_ids_and_labels(turns, tokenizer, num_image_tokens, system)`. `turns` is a conversation in LLaVA's JSON
# format (`{"from": "human" | "gpt", "value": text}` dicts, alternating, starting with `"human"`, ending with `"gpt"`);
# `system` may be empty (then there is no system piece, and the first question starts `USER: ` with no space). Return
# two lists of Python ints of the same length, `(input_ids, labels)`:
#
# - `input_ids`: `tokenizer.bos_token_id`, then the ids of each piece of the table in order, each tokenized **on its
#   own** with `tokenizer.encode(text, add_special_tokens=False)`, every `tokenizer.image_token_id` repeated
#   `num_image_tokens` times;
# - `labels`: the same ids where the piece is an answer or its `</s>`, `IGNORE_INDEX` (−100) everywhere else. Do not
#   shift them: `labels[t]` goes with `input_ids[t]`, and the loss does the shift.
#
# Tokenize the pieces exactly as the table splits them: the tag ` ASSISTANT:` is a piece of its own, and the answer
# piece is `" " + value` (with its leading space), followed by the `</s>` piece.
#
# Do not change `turns`. The grader compares with the package's `conversation.build_chat` on the teacher's multi-turn
# chats, with other system prompts and image sizes, and refuses an answer that calls `build_chat` or `build_prompt`.
# *(About 15 lines.)*

# %% tags=["exercise"]
def chat_ids_and_labels(turns: list[dict], tokenizer, num_image_tokens: int, system: str) -> tuple[list, list]:
    '''(input_ids, labels) of a Vicuna-v1 chat: labels are the ids on answers and their </s>, -100 elsewhere.'''
    ### BEGIN SOLUTION
    input_ids, labels = [tokenizer.bos_token_id], [IGNORE_INDEX]

    def add(text: str, supervised: bool) -> None:
        ids = []
        for i in tokenizer.encode(text, add_special_tokens=False):
            ids += [i] * num_image_tokens if i == tokenizer.image_token_id else [i]
        input_ids.extend(ids)
        labels.extend(ids if supervised else [IGNORE_INDEX] * len(ids))

    if system:
        add(system, False)
    for i, turn in enumerate(turns):
        if turn["from"] == "human":
            add(("USER: " if i or not system else " USER: ") + turn["value"], False)
            add(" ASSISTANT:", False)
        else:
            add(" " + turn["value"], True)
            add("</s>", True)
    return input_ids, labels
    ### END SOLUTION


# %% tags=["grader"]
nb05.check_chat_ids_and_labels(chat_ids_and_labels)


# %% [markdown]
# The package's `conversation.build_chat` is the same construction. Here is a three-turn chat about a training scene as
# the model reads it, the supervised tokens in `[brackets]` (`<image>` is one of the 9 placeholders):

# %%
def show(input_ids, labels, width=110):
    '''A sequence's tokens, the supervised ones in [brackets].'''
    pieces = []
    for token_id, label in zip(input_ids, labels):
        piece = tokenizer.decode([token_id]).replace("\n", "\\n").strip() or "\u2581"  # the lone-space token
        pieces.append(f"[{piece}]" if label != IGNORE_INDEX else piece)
    print(textwrap.fill(" ".join(pieces), width=width))


seed = world.SPLITS["train"][11]
turns = data.scene_records(seed)[0]["conversation"][0]["conversations"][:6]  # three questions and answers
sample = conversation.build_chat(turns, tokenizer, num_image_tokens=world.N_CELLS)
show(sample.input_ids, sample.labels)
supervised = sum(label != IGNORE_INDEX for label in sample.labels)
print(f"\n{len(sample.input_ids)} tokens, {supervised} supervised "
      f"({sample.input_ids.count(tokenizer.eos_token_id)} of them '</s>'), "
      f"{sample.input_ids.count(tokenizer.image_token_id)} image placeholders")


# %% [markdown]
# ## 3. The tokenization mismatch
#
# LLaVA builds its labels the other way round (`preprocess_v1` in `llava/train/train.py`). It renders the whole
# conversation as one string, tokenizes it once for the ids, copies the ids into the labels, and then *re-derives*
# where each answer starts by string arithmetic: split the text on `"</s>"` into rounds, split each round on
# `" ASSISTANT: "`, tokenize each part again, and mask the first `len(instruction) - 2` tokens of each round — the
# "−2" standing for the `<s>` that the tokenizer adds to each part and for the lone space at the end of
# `" ASSISTANT: "`. If the running count does not end exactly at the length of the ids, it gives up on the sample:
# every label becomes −100 and it prints `WARNING: tokenization mismatch: X vs. Y. (ignored)`.
#
# Here is that arithmetic, ported (`preprocess_v1` in `llava/train/train.py` of haotian-liu/LLaVA; the code is ours). `tokenize` is how it tokenizes a part:

# %%
def llava_style_labels(turns, tokenize, num_image_tokens=world.N_CELLS, system=SYSTEM_PROMPT):
    '''Ids of the whole rendered chat, labels re-derived by splitting the string (LLaVA's preprocess_v1).'''
    text = conversation.render_chat(turns, system)
    ids = conversation.build_chat(turns, tokenizer, num_image_tokens, system).input_ids  # <s> + the whole text

    def count(part: str) -> int:  # the part's tokens, each <image> counted as num_image_tokens
        ids = tokenize(part)
        return len(ids) + (num_image_tokens - 1) * ids.count(tokenizer.image_token_id)

    labels, cursor = list(ids), 1
    labels[0] = IGNORE_INDEX
    for rnd in text.split("</s>"):
        parts = rnd.split(" ASSISTANT: ")
        if rnd == "" or len(parts) != 2:
            break
        round_len = count(rnd)  # stands for the round's tokens + its </s> (the <s> counted instead)
        instruction_len = count(parts[0] + " ASSISTANT: ") - 2
        labels[cursor:cursor + instruction_len] = [IGNORE_INDEX] * instruction_len
        cursor += round_len
    labels[cursor:] = [IGNORE_INDEX] * (len(labels) - cursor)
    if cursor != len(ids):
        print(f"WARNING: tokenization mismatch: {cursor} vs. {len(ids)}. (ignored)")
        labels = [IGNORE_INDEX] * len(ids)
    return ids, labels


with_bos = lambda text: tokenizer(text)["input_ids"]  # adds <s> to every text, like LLaMA's tokenizer
without_bos = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # adds nothing
for name, tokenize in [("a tokenizer that adds <s>", with_bos), ("a tokenizer that adds no <s>", without_bos)]:
    ids, labels = llava_style_labels(turns, tokenize)
    print(f"{name}: labels equal build_chat's: {labels == sample.labels}; "
          f"supervised tokens: {sum(label != IGNORE_INDEX for label in labels)}")

# %% [markdown]
# With our tokenizer as it is — it adds `<s>` to every text and turns a trailing space into a token of its own, `▁`, as
# LLaMA's did — the arithmetic lands exactly. Change one convention of the tokenizer, one that the chat template
# does not depend on at all, and each round comes out one token short, the total misses by the number of rounds, and
# the sample vanishes from the loss. That is what happened to many LLaVA users when `tokenizers` changed LLaMA's
# `legacy` handling of spaces, or when they paired the `v1` template with a base model whose tokenizer follows other
# conventions (Llama-3, Yi, Qwen; Qwen's adds no `<s>` at all): haotian-liu/LLaVA#661, #1166, #1706.
#
# Why it is dangerous rather than merely annoying: nothing fails. A masked sample contributes nothing, and a batch in
# which some samples survive trains on those alone, with a loss that looks normal. Only when *every* sample of a batch
# mismatches does anything show: the batch has no supervised token, PyTorch's mean cross-entropy and transformers' loss
# are 0/0, and the package's loss, which divides by at least 1, is 0 (LLaVA's users reported training losses of
# exactly 0). Whichever you see, the gradient is zero:

# %%
chats = [data.scene_records(s)[0]["conversation"][0]["conversations"] for s in world.split_seeds("train", 4)]
masked = [conversation.Sample(*llava_style_labels(c, without_bos)) for c in chats]  # four WARNING lines
batch = conversation.collate(masked, tokenizer.pad_token_id)
logits = torch.randn(*batch["input_ids"].shape, len(tokenizer), requires_grad=True)  # any model's logits
mean_ce = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten())  # reduction="mean"
hf_loss = ForCausalLMLoss(logits, batch["labels"], vocab_size=len(tokenizer))
loss, n = lm.causal_lm_loss(logits, batch["labels"])
loss.backward()
print(f"supervised tokens in the batch: {int(n)}; F.cross_entropy's mean: {mean_ce.item()}; transformers: "
      f"{hf_loss.item()}; causal_lm_loss: {loss.item()}; largest gradient: {logits.grad.abs().max().item()}")

# %% [markdown]
# The segment-by-segment construction of exercise 5.1 has no arithmetic to get wrong: each piece is tokenized on its
# own and carries its own flag, so a label can only be an answer's id or −100, whatever the tokenizer does with `<s>`.
# What it does rely on is that the pieces, tokenized apart, give the same ids as the whole text tokenized at once
# (otherwise the model would train on one tokenization and meet another at inference). That is a property of the
# tokenizer that can be tested once, before training, rather than discovered sample by sample during it:
# `hf_processor.check_tokenizer` does it, and refuses a tokenizer that fails it. Ours passes:

# %%
from llava_mini import hf_processor

hf_processor.check_tokenizer(tokenizer)  # raises ValueError naming the first differing token otherwise
joint = [tokenizer.bos_token_id] + tokenizer.encode(conversation.render_chat(turns), add_special_tokens=False)
apart = conversation.build_chat(turns, tokenizer, num_image_tokens=1).input_ids  # one id per <image>, as in the text
print("pieces tokenized apart == the whole chat tokenized at once:", joint == apart)


# %% [markdown]
# ## 4. A batch
#
# Sequences in a batch have different lengths, so they are padded to the longest. Padding must change nothing: the
# real tokens never attend to it (attention mask 0) and it takes no loss (label −100). LLaVA pads on the right for
# training; left padding is for batched generation, where every prompt must end at the last position (notebook 03).
#
# ### Exercise 5.2: pad a batch
#
# Write `pad_batch(samples, pad_id)`: `samples` is a list of `conversation.Sample` (each with `.input_ids` and
# `.labels`, lists of ints). Return a dict of three `torch.long` tensors of shape $(B, T_{\max})$, right-padded:
# `"input_ids"` (padded with `pad_id`), `"attention_mask"` (1 on real tokens, 0 on padding) and `"labels"` (padded
# with −100). Do not change the samples. The grader compares with `conversation.collate` and refuses an answer that
# calls it. *(About 8 lines.)*

# %% tags=["exercise"]
def pad_batch(samples: list, pad_id: int) -> dict:
    '''Right-pad samples to (B, T_max) long tensors: input_ids, attention_mask, labels (-100 on padding).'''
    ### BEGIN SOLUTION
    width = max(len(s.input_ids) for s in samples)
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for s in samples:
        n = width - len(s.input_ids)
        rows["input_ids"].append(s.input_ids + [pad_id] * n)
        rows["attention_mask"].append([1] * len(s.input_ids) + [0] * n)
        rows["labels"].append(s.labels + [IGNORE_INDEX] * n)
    return {key: torch.tensor(value, dtype=torch.long) for key, value in rows.items()}
    ### END SOLUTION


# %% tags=["grader"]
nb05.check_pad_batch(pad_batch)


# %% [markdown]
# ## 5. The shifted, masked cross-entropy
#
# For logits $z \in \mathbb{R}^{B \times T \times V}$ and labels $y \in \mathbb{Z}^{B \times T}$, position $t$
# predicts token $t+1$, so the pairs are $(z_{b,t}, y_{b,t+1})$ for $t = 0, \dots, T-2$. With
# $S = \{(b, t) : y_{b,t+1} \ne -100\}$ the supervised pairs,
#
# $$\mathcal{L} = \frac{1}{|S|} \sum_{(b,t) \in S} -\log \operatorname{softmax}(z_{b,t})_{y_{b,t+1}}
# = \frac{1}{|S|} \sum_{(b,t) \in S} \Big(\log \sum_{v} e^{z_{b,t,v}} - z_{b,t,y_{b,t+1}}\Big).$$
#
# The denominator is $|S|$, the number of supervised tokens of the batch, not $B \cdot (T-1)$ (that would let every
# padded or masked position dilute the loss) and not a per-sequence mean (that would make a one-word answer weigh as
# much as a paragraph). Section 7 will want a different denominator, the supervised tokens of a whole optimizer step,
# so the function takes it as an optional argument.
#
# ### Exercise 5.3: the answer-token loss
#
# Write `answer_loss(logits, labels, num_items=None)`: `logits` $(B, T, V)$ float, `labels` $(B, T)$ long with −100
# where no loss is taken. Return a 0-d tensor in the logits' dtype: the summed negative log-likelihood of the shifted,
# supervised tokens, divided by `num_items` when it is given and by the number of supervised tokens otherwise. Write it
# with `log_softmax` and `gather`: the grader refuses `F.cross_entropy`, `F.nll_loss` and the package's
# `lm.causal_lm_loss`, and checks the gradient with respect to the logits. Do not change `labels` (a label of −100 is
# not a valid index for `gather`: replace it in a copy, and mask those positions out). *(About 6 lines.)*

# %% tags=["exercise"]
def answer_loss(logits: torch.Tensor, labels: torch.Tensor, num_items=None) -> torch.Tensor:
    '''Shifted cross-entropy over labels != -100: sum / (num_items or the number of supervised tokens).'''
    ### BEGIN SOLUTION
    shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]  # (B, T-1, V), (B, T-1)
    keep = shift_labels != IGNORE_INDEX  # (B, T-1)
    log_p = shift_logits.log_softmax(dim=-1)  # (B, T-1, V)
    picked = log_p.gather(-1, shift_labels.clamp(min=0)[..., None])[..., 0]  # (B, T-1)
    total = -(picked * keep).sum()
    return total / (num_items if num_items is not None else keep.sum().clamp(min=1))
    ### END SOLUTION


# %% tags=["grader"]
nb05.check_answer_loss(answer_loss)

# %% [markdown]
# Now the real thing: a batch of 12 stage-2 examples (conversations, detailed descriptions and reasoning answers about
# 4 training scenes) through the zoo's final `llava-mini`. The same loss three more ways: PyTorch's `F.cross_entropy`
# with `ignore_index` on the shifted, flattened tensors; transformers' own causal-LM loss function on the same logits
# (`ForCausalLMLoss`, what `LlamaForCausalLM` and `LlavaForConditionalGeneration` call); and a `LlamaForCausalLM`
# built locally from `llava-mini`'s language-model weights (`hf.lm_to_hf` maps the names; nothing is downloaded), given
# the same spliced embeddings — $H_v$ in the image slots — and the labels. transformers takes the labels unshifted, as
# exercise 5.1 built them, and shifts inside.

# %%
model = zoo.load("llava-mini")  # LlavaMini after stage 2
examples = stages.examples(2, world.split_seeds("train", 4), tokenizer, model.num_image_tokens)
batch = next(corpora.Batches(examples, tokenizer, batch_size=len(examples)))  # right-padded, with pixel_values
with torch.no_grad():  # values only here; section 6 is about gradients
    embeds = model.embed(batch["input_ids"], batch["pixel_values"])  # (B, T, D), H_v in the image slots
    logits = model.lm(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits  # (B, T, V)
labels = batch["labels"]
print(f"batch: {tuple(labels.shape)}, {int((labels[:, 1:] != IGNORE_INDEX).sum())} supervised tokens of "
      f"{int(batch['attention_mask'].sum())} real ones")

cfg = model.config.lm
llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
    **{theirs: getattr(cfg, ours) for ours, theirs in hf.LM_FIELDS}, head_dim=cfg.head_dim,
    rope_theta=cfg.rope_theta, tie_word_embeddings=False, attention_bias=False, mlp_bias=False)).eval()
llama.load_state_dict(hf.lm_to_hf(model.lm.state_dict()))
with torch.no_grad():
    hf_out = llama(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=labels)

losses = {
    "lm.causal_lm_loss (the package)": lm.causal_lm_loss(logits, labels)[0],
    "F.cross_entropy(ignore_index=-100)": F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(),
                                                          ignore_index=IGNORE_INDEX),
    "transformers ForCausalLMLoss": ForCausalLMLoss(logits, labels, vocab_size=logits.shape[-1]),
    "transformers LlamaForCausalLM": hf_out.loss,
}
for name, value in losses.items():
    print(f"{name:>36}: {value.item():.5f}")
real = batch["attention_mask"].bool()
print("LlamaForCausalLM's logits equal ours on every real position:", torch.allclose(hf_out.logits[real], logits[real],
                                                                                   atol=1e-5))

# %% [markdown]
# All four agree to the printed digits: the loss is nothing more than this. (On padded positions the two models' logits
# differ: the package's language model gives each padding token the position of the last real one, transformers counts
# on. Nothing may depend on those logits, which is one more reason why padding takes no loss.)
#
# What the loss looks like per token, on the first example of the batch: each supervised token with its
# $-\log p$, rounded to one decimal. Most answer tokens cost almost nothing; the few that carry information about the
# image (a position word, a colour, or the "is"/"are" that gives a count away) are where the loss is:

# %%
row = 0
shift_labels = labels[row, 1:]
nll = -logits[row, :-1].log_softmax(-1).gather(-1, shift_labels.clamp(min=0)[:, None])[:, 0]  # (T-1,)
pieces = [f"{tokenizer.decode([int(y)]).strip() or '_'}:{v:.1f}" for y, v in zip(shift_labels, nll.tolist())
          if y != IGNORE_INDEX]
print(textwrap.fill("  ".join(pieces[:60]), width=110))
top = nll.masked_fill(shift_labels == IGNORE_INDEX, -1).topk(5)
print("\nthe five most expensive tokens:",
      ", ".join(f"{tokenizer.decode([int(shift_labels[i])]).strip()!r} ({v:.2f})" for v, i in zip(*top)))

# %% [markdown]
# ## 6. The gradient reaches $W$ through a frozen language model
#
# In stage 1 only $W$ trains. The language model is frozen — but it is not *switched off*: the loss is computed by the
# language model from $H_v = W \cdot Z_v$, so its gradient with respect to $W$ has to pass backwards through every
# layer of the language model. Write $h_j = W z_j + b$ for visual token $j$ (patch feature $z_j$). By the chain rule,
#
# $$\frac{\partial \mathcal{L}}{\partial W} = \sum_{\text{images}} \sum_{j=1}^{N} \frac{\partial \mathcal{L}}{\partial
# h_j}\, z_j^{\top}, \qquad \frac{\partial \mathcal{L}}{\partial b} = \sum_{\text{images}} \sum_{j}
# \frac{\partial \mathcal{L}}{\partial h_j},$$
#
# and $\partial \mathcal{L} / \partial h_j$ is the gradient that the language model sends back to its *input* at the
# image positions — computed with its frozen weights. Freezing means `requires_grad=False` on those weights: autograd
# computes no gradient *for* them, but still propagates gradients *through* the operations that use them.
#
# `stages.freeze(model, 1)` freezes `llava-mini-stage1` as LLaVA does. One batch of 8 stage-1 captions, one backward
# pass; a forward hook keeps $Z_v$ and $H_v$ so we can check the formula by hand:

# %%
stage1 = zoo.load("llava-mini-stage1")
print(train.format_counts(stages.freeze(stage1, 1)))
captions = stages.examples(1, world.split_seeds("train", 8), tokenizer, stage1.num_image_tokens)
caption_batch = next(corpora.Batches(captions, tokenizer, batch_size=8))
kept = {}


def keep_z_and_h(module, inputs, output):
    '''Forward hook on W: remember Z_v (its input) and H_v (its output), and keep H_v's gradient.'''
    kept["Z_v"], kept["H_v"] = inputs[0], output
    output.retain_grad()


hook = stage1.projector.register_forward_hook(keep_z_and_h)
loss = stage1(**caption_batch).loss  # eq. 3 on the captions, through the frozen LM
loss.backward()
hook.remove()
print(f"\nloss {loss.item():.4f}")
for name, module in stage1.named_children():
    grads = [p.grad for p in module.parameters()]
    print(f"{name:>10}: requires_grad {any(p.requires_grad for p in module.parameters())!s:>5}, "
          f".grad set on {sum(g is not None for g in grads)} of {len(grads)} tensors")
Z_v, H_v = kept["Z_v"], kept["H_v"]  # (8, 9, d_v), (8, 9, d_lm)
by_hand = torch.einsum("bjd,bje->de", H_v.grad, Z_v)  # sum over images and tokens of dL/dh_j z_j^T
print(f"dL/dH_v reaches all {H_v.grad.shape[0] * H_v.grad.shape[1]} visual tokens: "
      f"{bool((H_v.grad.abs().sum(-1) > 0).all())}")
print("W.grad == sum_j dL/dh_j z_j^T:", torch.allclose(by_hand, stage1.projector.weight.grad, atol=1e-7),
      "| b.grad == sum_j dL/dh_j:", torch.allclose(H_v.grad.sum((0, 1)), stage1.projector.bias.grad, atol=1e-7))

# %% [markdown]
# Only $W$ (`projector`) receives a `.grad`; the language model's weights receive none — and yet the gradient that
# reaches $W$ came through them, as $\partial\mathcal{L}/\partial H_v$.
#
# Now the mistake of freezing with `torch.no_grad()` instead. Running the *vision encoder* under `no_grad` is harmless:
# $Z_v$ is an input to $W$, and nothing upstream of it trains (LLaVA's code does exactly that). Running the *language
# model* under `no_grad` cuts the graph between the loss and $W$:

# %%
ids, pixels, mask, labels1 = (caption_batch[k] for k in ("input_ids", "pixel_values", "attention_mask", "labels"))
is_image = (ids == stage1.config.image_token_id)[..., None]  # (B, T, 1)


def stage1_loss(vision_no_grad: bool, lm_no_grad: bool) -> torch.Tensor:
    '''The same loss as above, with the vision tower and/or the language model run under torch.no_grad().'''
    stage1.zero_grad(set_to_none=True)
    with torch.no_grad() if vision_no_grad else torch.enable_grad():
        z = stage1.vision.features(pixels)  # (B, 9, d_v)
    embeds = stage1.lm.embed_tokens(ids).masked_scatter(is_image.expand(-1, -1, stage1.config.lm.dim),
                                                        stage1.projector(z))  # (B, T, D)
    with torch.no_grad() if lm_no_grad else torch.enable_grad():
        logits = stage1.lm(inputs_embeds=embeds, attention_mask=mask).logits  # (B, T, V)
    return lm.causal_lm_loss(logits, labels1.masked_fill(ids == stage1.config.image_token_id, IGNORE_INDEX))[0]


reference = stage1.projector.weight.grad.clone()
for vision_no_grad, lm_no_grad in [(True, False), (False, True)]:
    loss = stage1_loss(vision_no_grad, lm_no_grad)
    where = "the vision tower" if vision_no_grad else "the language model"
    try:
        loss.backward()
        same = torch.allclose(stage1.projector.weight.grad, reference, atol=1e-7)
        print(f"no_grad around {where}: loss {loss.item():.4f}, W.grad the same as above: {same}")
    except RuntimeError as err:
        print(f"no_grad around {where}: loss {loss.item():.4f}, requires_grad {loss.requires_grad}; "
              f"backward() raises RuntimeError: {err}")


# %% [markdown]
# The loss has the same value both times — `no_grad` changes nothing in the forward pass — but with the language model
# under `no_grad` it is a constant: no graph connects it to $W$, and `backward()` refuses. In a training loop that wraps
# the call in a `try`, or that adds the loss to something else that does require gradients, the failure would be
# silent: $W$ would simply never move.

# %% [markdown]
# ## 7. Normalising under gradient accumulation
#
# A step of 64 examples may not fit in memory; gradient accumulation runs it as $k$ micro-batches, calling
# `backward()` after each and stepping the optimizer once. The gradients add up, so each micro-batch's loss must be
# scaled so that the sum is the gradient of the whole step's loss:
#
# $$\mathcal{L}_{\text{step}} = \frac{1}{N_{\text{step}}} \sum_{m=1}^{k} \sum_{(b,t) \in S_m} \ell_{b,t}
# = \sum_{m=1}^{k} \frac{\text{sum}_m}{N_{\text{step}}}, \qquad N_{\text{step}} = \sum_m |S_m|.$$
#
# For years the usual code did something else: each micro-batch computed its own mean, $\text{sum}_m / |S_m|$, and
# divided by $k$. That is the same only when every micro-batch holds the same number of supervised tokens. When they
# differ — and with answers of different lengths they always do — a token in a micro-batch with few answer tokens
# counts for more than a token in one with many. transformers fixed its `Trainer` in October 2024
# (huggingface/transformers#34191, released in v4.46): its loss functions take `num_items_in_batch`, the supervised
# tokens of the whole step, and divide the summed loss by it. (The `Trainer` counts `labels != -100` before the shift;
# that is the same count whenever position 0 is never supervised, as in every LLaVA sample, which starts with `<s>`.)
# The package's trainer does the same: `train.fit` counts `train.supervised_tokens` over a step's micro-batches and passes
# that count to the model as `num_items_in_batch` (`model(**batch, num_items_in_batch=n).loss`), and the model's
# loss, `lm.causal_lm_loss`, divides its sum by it.
#
# ### Exercise 5.4: accumulate one step
#
# Write `accumulate(model, micro_batches, loss_fn)`: `micro_batches` is a list of batch dicts (with `"labels"`,
# `"attention_mask"`, …), and `loss_fn(model, batch, n_items)` returns that micro-batch's summed token loss divided by
# `n_items` (or, with `n_items=None`, by its own count: its mean). Count the supervised tokens of all micro-batches as
# the loss sees them (after the shift), call `loss_fn` and `.backward()` on each micro-batch, and return the step's
# loss as a Python float. Do not zero the gradients (the optimizer does that once per step) and do not change the
# batches. The grader checks every parameter's `.grad` against the gradient of the whole step, and refuses
# `train.supervised_tokens` and `train.fit`. *(About 7 lines.)*

# %% tags=["exercise"]
def accumulate(model, micro_batches: list[dict], loss_fn) -> float:
    '''Backward over each micro-batch, each loss divided by the whole step's supervised tokens; the step's loss.'''
    ### BEGIN SOLUTION
    n_items = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in micro_batches)
    total = 0.0
    for batch in micro_batches:
        loss = loss_fn(model, batch, n_items)
        loss.backward()
        total += loss.item()
    return total
    ### END SOLUTION


# %% tags=["grader"]
nb05.check_accumulate(accumulate)

# %% [markdown]
# How much does it matter? A measured example on the stage-1 model of section 6, $W$ trainable: the 12 stage-2
# examples of section 5, sorted by their number of answer tokens (as length grouping tends to do) and cut into 4
# micro-batches of 3. We compare the gradient of $W$ from one backward pass over all 12 (the truth) with the two ways of
# accumulating, through the model's own loss (`stage1(**batch, num_items_in_batch=n).loss`, which is what `train.fit`
# calls):

# %%
order = sorted(examples, key=lambda e: sum(label != IGNORE_INDEX for label in e.sample.labels))
micro = [next(corpora.Batches(order[i:i + 3], tokenizer, batch_size=3)) for i in range(0, 12, 3)]
whole = next(corpora.Batches(order, tokenizer, batch_size=12))
counts = [train.supervised_tokens(b) for b in micro]
n_step = sum(counts)


def w_gradient(batches, n_items_of) -> tuple[torch.Tensor, float]:
    '''W's accumulated gradient and the step's loss, each micro-batch's loss divided by n_items_of(batch).'''
    stage1.zero_grad(set_to_none=True)
    step_loss = 0.0
    for b in batches:
        n_items = n_items_of(b)
        loss = stage1(**b, num_items_in_batch=None if n_items == "mean" else n_items).loss
        loss = loss / len(batches) if n_items == "mean" else loss
        loss.backward()
        step_loss += loss.item()
    return stage1.projector.weight.grad.clone(), step_loss


truth, truth_loss = w_gradient([whole], lambda b: None)
ways = {"per-micro-batch mean / k": w_gradient(micro, lambda b: "mean"),
        "sum / the step's count": w_gradient(micro, lambda b: n_step)}
print("supervised tokens per micro-batch:", counts, "| in the step:", n_step)
print("weight of one token in the loss, per micro-batch:  mean / k:",
      " ".join(f"{1 / (len(micro) * c):.5f}" for c in counts), "| sum / count:", f"{1 / n_step:.5f}")
print(f"\n{'':>26} {'step loss':>10} {'|grad - truth| / |truth|':>26} {'cosine with truth':>18}")
print(f"{'one batch of 12 (truth)':>26} {truth_loss:>10.4f} {0:>26.4f} {1:>18.4f}")
for name, (grad, step_loss) in ways.items():
    error = ((grad - truth).norm() / truth.norm()).item()
    cosine = F.cosine_similarity(grad.flatten(), truth.flatten(), dim=0).item()
    print(f"{name:>26} {step_loss:>10.4f} {error:>26.4f} {cosine:>18.4f}")


# %% [markdown]
# **What the numbers say.** The four micro-batches hold 129 to 238 supervised tokens. Under the per-micro-batch
# mean a token of the shortest micro-batch weighs 0.00194 in the step's loss and a token of the longest 0.00105 — a
# factor of 1.8 — where the one big batch gives every token 0.00139. The accumulated gradient of $W$ is then off by a
# quarter of its norm (relative error 0.25, cosine 0.978 with the truth), and the step loss one would log is 4.87
# instead of 4.78. Dividing each micro-batch's sum by the step's 722 tokens reproduces the big batch's gradient to
# float rounding. The error is not noise that averages out over steps: it always favours the tokens that sit in
# micro-batches with few answer tokens — with length grouping, the short answers.
#
# (This stage-1 model was never instruction-tuned, hence a loss near 4.8 on stage-2 chats; the comparison is about the
# gradient, which is the same calculation for any model. The zoo itself was trained with `grad_accum = 1`, where the
# two normalisations coincide.)

# %% [markdown]
# ## 8. Study question 13: the learning objective of $W$
#
# > **13) 给出线性投影 W 的学习目标（最大似然）并写出损失。**
# >
# > *Give the learning objective of the linear projection W (maximum likelihood) and write the loss.*
#
# The answer is sections 1, 5 and 6 together: for stage 1, with $g$ and $f_\phi$ frozen,
#
# $$\mathcal{L}(W) = -\frac{1}{N} \sum_{\text{examples}} \sum_{i \in \text{answer}} \log \operatorname{softmax}\Big(
# f_\phi\big([\,H_v(W);\ E(x_{<i})\,]\big)_{i-1}\Big)_{x_i}, \qquad H_v(W) = W \cdot g(X_v),$$
#
# where $E$ embeds the text tokens and "answer" is the caption and its `</s>` in llava-mini (LLaVA's `plain` format
# supervises the caption and a closing `\n` instead, with no end token; neither has a system prompt or a question); stage 2 uses the same loss over every answer of the conversation, with $\theta = \{W,
# \phi\}$.
#
# ### Which statements are true?
#
# - **(a)** For one conversation, the loss is $-\sum_i \log p_\theta(x_i \mid X_v, X_{\text{instruct},<i},
#   X_{a,<i})$ over the answer tokens and each answer's `</s>`: maximum likelihood of $X_a$, i.e. token-level
#   cross-entropy on the answers.
# - **(b)** Stage 1 adds a contrastive term that pulls each visual token towards CLIP's text embedding of the caption.
# - **(c)** In stage 1 the gradient reaches $W$ through the frozen language model:
#   $\partial\mathcal{L}/\partial W = \sum_j (\partial\mathcal{L}/\partial h_j)\, z_j^{\top}$ over the visual tokens,
#   with $\partial\mathcal{L}/\partial h_j$ computed by the frozen weights.
# - **(d)** The instruction tokens $X_{\text{instruct}}$ are in the loss too, because the model must understand the
#   questions it is asked.
# - **(e)** Running the frozen language model under `torch.no_grad()` in stage 1 would save memory and leave $W$'s
#   gradient unchanged.
# - **(f)** The image positions take no loss: nothing predicts "the next visual token", and the model is never asked to
#   reconstruct $Z_v$.
# - **(g)** Under gradient accumulation, averaging the micro-batches' mean losses gives the gradient of the whole batch
#   whatever the micro-batches' numbers of answer tokens.
# - **(h)** Stage 2 minimises the same loss, with $\theta = \{W, \phi\}$ instead of $\theta = W$.
#
# Return the letters of **all** true statements, e.g. `"ace"`.

# %% tags=["exercise"]
def answer_study_q13() -> str:
    '''The letters of every true statement, e.g. "ace".'''
    ### BEGIN SOLUTION
    return "acfh"
    ### END SOLUTION


# %% tags=["grader", "study-q13"]
nb05.check_study_q13(answer_study_q13)

# %% [markdown] tags=["solution-only"]
# **A model answer.** (a), (c), (f) and (h) are true. The objective is the likelihood of eq. 3, and its loss is plain
# cross-entropy on the answer tokens and their `</s>` (a) — nothing else: no contrastive term (b), no reconstruction
# of image features, and the instruction, system, tag and image positions are labelled −100 (d is false, f is true).
# $W$ learns only from what the frozen language model sends back to its inputs (c): the gradient of section 6, checked
# against $\sum_j (\partial\mathcal{L}/\partial h_j) z_j^{\top}$. `no_grad` around the language model leaves the loss's
# value unchanged and removes the gradient entirely (e is false). Section 7 measured (g) false: the mean of means
# weights tokens by the inverse size of their micro-batch. Stage 2 keeps the loss and unfreezes $\phi$ (h).

# %% [markdown]
# ## Questionnaire
#
# Not graded: questions to think about before notebook 06. Write your answers down.
#
# 1. Eq. 3 conditions each answer on the *earlier answers* of the conversation, which in training are the teacher's,
#    not the model's (teacher forcing). What does that mean for a long conversation at inference, when the earlier
#    answers are the model's own?
# 2. Stage 1's `plain` format supervises the caption but has no question at all. What would change if stage 1 used the
#    Vicuna-v1 template with a fixed question ("Describe the image.")? Would $W$ learn anything different?
# 3. The `</s>` after each answer is supervised. Suppose the padding id were also the `</s>` id and padding were
#    supervised too (exercise 5.2's mistake). What would the model learn to do, and when would you notice?
# 4. LLaVA's mismatch check compares a count with the length of the ids. Name a labelling error that this check would
#    *not* catch.
# 5. Section 5's per-token losses are near zero for most answer tokens. What does that say about how much of the loss
#    (and of the gradient that reaches $W$) is about the image? How would you measure it?
# 6. In section 6 the gradient reaches all 9 visual tokens, even though a caption names only the cells that hold
#    objects. Why would the empty cells get a gradient?
# 7. With the mean-of-means normalisation, which examples does a step over-weight: short answers or long ones? For
#    LLaVA's mix of one-word VQA answers and paragraph-long descriptions, which task would it favour?
# 8. A frozen language model gets no `.grad`, so the optimizer holds no state for it. What *does* the backward pass
#    through it still cost, in memory and in time, compared with a stage where it is not used at all?
