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
# # 07 — Stage 2: instruction tuning, on a GPU too
#
# After stage 1 (notebook 06) the language model can read the image: $H_v = W \cdot Z_v$ lands where its word
# embeddings live, and it captions. It does not yet *follow instructions*: ours answers a short question in the
# right form (its language model was pre-trained on such chats) but without looking, and asked for a detailed
# description or for reasoning, it does neither. Stage 2 (LLaVA §4.2, "fine-tuning end-to-end") fixes that. It unfreezes
# the language model $f_\phi$, keeps $W$ training, leaves the vision encoder $g$ frozen, and trains on the
# instruction data: multi-turn conversations, detailed descriptions and complex reasoning (LLaVA-Instruct-158K:
# 58K + 23K + 77K records, 3 epochs, lr 2e-5, batch 32, on 8 A100s for about 10 hours).
#
# This notebook runs stage 2 on ShapesWorld: a short run that you watch move, then the zoo's finished models, asked
# the same questions before and after. On the way it meets a result of our own that LLaVA's recipe does not
# predict: at our scale, the three types mixed from the start never taught the model to check whether an object is
# there, and conversations first did. The second half is about training on a GPU: the device, bf16 autocast, the
# fused optimizer, `torch.compile`, gradient accumulation, throughput and model FLOPs utilisation, the memory
# arithmetic that forced LLaVA onto FSDP, and how one launches data-parallel training with `torchrun`.
#
# ### Goals
# After this notebook you can
#
# 1. set up stage 2's freezing (exercise 7.1) and say why each of $g$, $W$ and $f_\phi$ is frozen or trained;
# 2. run a short stage 2 on the three-type mix and read its loss per type;
# 3. compare the same questions before stage 2, after a short run and after the zoo's full stage 2, by type, and
#    explain why the zoo's `llava-mini` was trained as a curriculum (conversations first) rather than on LLaVA's
#    uniform mix;
# 4. write one optimizer step with gradient accumulation under autocast (exercise 7.2), and estimate the model FLOPs
#    utilisation of a run without counting a backward pass that never happens (exercise 7.3);
# 5. do the memory arithmetic of full fine-tuning at 7B and 13B, and say what FSDP/DeepSpeed and DDP each do.
#
# ### Time
# About **75 minutes**: 45 of reading, three exercises of 5–10 minutes, the questionnaire. Running every cell on 2
# CPU cores (strict `pytest --nbval`) took 23 s, twice in a row (23.0 and 23.5 s, 2 cores shared with other
# engineers' jobs); 10 to 18 s of it is the short stage-2 run of section 3, which prints a line every 25 steps while
# it trains (that cell's output is a log, not compared when the notebook is graded). The
# GPU cells of section 5 run only where `torch.cuda.is_available()`; on a CPU they print why they skipped.
#
# ### Numbers to expect
# The short run (150 steps of 32 chats from `llava-mini-stage1`, 10 to 18 s on one thread) takes the held-out loss per answer token
# of descriptions from 6.0 to 0.7 and of reasoning from 8.5 to 1.3 (conversations stay at 0.15); it writes in the
# teacher's forms, but cannot yet tell whether an object is there. The zoo's `llava-mini` (stage 1, then 4500 steps of conversations, then 3000 of the
# full mix) answers 300 test questions per category at colour .903, shape .980, count .893, position .810,
# existence .977, relation .667, with a description F1 of .908 and reasoning .583. Full fine-tuning of a 7B model
# with AdamW needs about 108 GB before activations; LLaVA's 13B about 209 GB.

# %% [markdown]
# ## 0. Set-up

# %%
import contextlib
import dataclasses
import textwrap
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from llava_mini import conversation, corpora, evaluate, stages, teacher, train, world, zoo
from llava_mini.course import setup_notebook
from llava_mini.grading import nb07
from llava_mini.tokenizer import load_tokenizer

setup_notebook(seed=0)
tokenizer = load_tokenizer()
manifest = zoo.read_manifest()
for name in ("llava-mini-stage1", "llava-mini-conv-only", "llava-mini"):
    recipe = manifest[name]["recipe"]
    run = recipe["train"]
    print(f"{name:>20}: stage {recipe['stage']} from {recipe.get('init', 'clip-mini + vicuna-mini'):<23} "
          f"{run['steps']:>5} steps x {run['batch_size']}, lr {run['lr']:g}, types: {recipe.get('types', 'captions')}")

# %% [markdown]
# ## 1. What stage 2 trains
#
# | | vision encoder $g$ (CLIP) | projection $W$ | language model $f_\phi$ |
# |---|---|---|---|
# | stage 1: feature alignment | frozen | **trains** | frozen (the gradient passes *through* it to $W$) |
# | stage 2: instruction tuning | frozen | **trains** | **trains** |
#
# Why this way round? Stage 1 only has to make $H_v$ readable, and a frozen LLM keeps noisy web captions from
# rewriting it. Stage 2 has to change *behaviour*: answer the question that was asked, in the requested form
# (a word, a paragraph, a chain of reasoning), over several turns. That lives in the language model's weights, so
# $f_\phi$ must move. The vision encoder stays frozen in both stages: CLIP is already aligned with language on 400M
# pairs, LLaVA's data is small by comparison, and a frozen tower needs no gradients, no optimizer states and no
# stored activations. LLaVA-NeXT's code has an option to unfreeze it (`unfreeze_mm_vision_tower`, with a learning rate
# of its own); in LLaVA v1's code the tower's forward runs under `torch.no_grad()`, so it stays frozen whatever the flags say.
#
# ### Exercise 7.1: stage 2's freezing
#
# Write `unfreeze_for_stage2(model)`: make the vision tower `model.vision` frozen and the projector
# `model.projector` and the language model `model.lm` trainable — through `requires_grad`, whatever state the model
# was in before (after stage 1, everything trainable, or a mixture) — and return the number of trainable parameters
# (an `int`). Do not change any weight. The grader refuses `stages.freeze`, the package's answer. *(About 5 lines.)*

# %% tags=["exercise"]
def unfreeze_for_stage2(model) -> int:
    '''Freeze model.vision, unfreeze model.projector and model.lm; return the trainable parameter count.'''
    ### BEGIN SOLUTION
    model.vision.requires_grad_(False)
    model.projector.requires_grad_(True)
    model.lm.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
    ### END SOLUTION


# %% tags=["grader"]
nb07.check_unfreeze_for_stage2(unfreeze_for_stage2)

# %% [markdown]
# The package's version is `stages.freeze(model, 2)`. Here are the counts of our model beside LLaVA's (Vicuna-13B
# with CLIP ViT-L/14 and a linear $W$ of 1024 → 5120):

# %%
student = zoo.load("llava-mini-stage1")
counts = stages.freeze(student, 2)
print(train.format_counts(counts))
llava_13b = {"vision": (0, 303_179_776), "projector": (5_248_000, 5_248_000), "lm": (13_015_864_320, 13_015_864_320)}
print(f"\nshare of the parameters that train in stage 2: ours {counts['total'][0] / counts['total'][1]:.1%}, "
      f"LLaVA-13B {sum(t for t, _ in llava_13b.values()) / sum(n for _, n in llava_13b.values()):.1%}")

# %% [markdown]
# Two differences of scale matter later. In LLaVA the language model is 97.7% of the parameters and the vision tower
# 2.3%; in ours the vision tower is the larger part (58%), because our language model is tiny. And LLaVA's $W$ is
# 0.04% of what trains in stage 2: stage 2 is, in compute and memory, the fine-tuning of a 13B language model.

# %% [markdown]
# ## 2. The three-type mix
#
# LLaVA's stage-2 data is one list of 158K records, shuffled: each batch mixes conversations, descriptions and
# reasoning in proportion to their counts (58 : 23 : 77). Our teacher writes the same three types about each
# ShapesWorld scene (notebook 01): `stages.examples(2, seeds, ...)` turns each (scene, type) into one Vicuna-v1 chat
# with its labels (notebook 05). What each type asks of the model is different, and so is what it supervises:

# %%
N_TRAIN, N_HELD_OUT = 500, 64  # training scenes per type; held-out (val) scenes per type
by_type = {t: stages.examples(2, world.split_seeds("train", N_TRAIN), tokenizer, student.num_image_tokens, types=(t,))
           for t in stages.STAGE2_TYPES}
held_out = {t: stages.examples(2, world.split_seeds("val", N_HELD_OUT), tokenizer, student.num_image_tokens,
                               types=(t,)) for t in stages.STAGE2_TYPES}
print(f"{'type':>18} | records | tokens per chat | answer tokens per chat | turns per chat")
for t, rows in by_type.items():
    tokens = np.mean([len(e.sample.input_ids) for e in rows])
    answers = np.mean([sum(label != -100 for label in e.sample.labels) for e in rows])
    turns = np.mean([e.sample.labels.count(tokenizer.eos_token_id) for e in rows])
    print(f"{t:>18} | {len(rows):>7} | {tokens:>15.1f} | {answers:>22.1f} | {turns:>14.1f}")
example = by_type["complex_reasoning"][0].sample
print("\none complex-reasoning chat, as the model reads it (the 9 image placeholders shown once):")
text = tokenizer.decode(example.input_ids).replace("<image>" * student.num_image_tokens, "<image>")
print(textwrap.fill(text, 116))

# %% [markdown]
# A conversation supervises many short answers ("The square is red."), a description one long paragraph, and a
# reasoning record a walk through the objects ending in "so the answer is ...". Because the loss is a mean over
# answer *tokens* (notebook 05), a batch's gradient is dominated by the types with the most answer tokens, whatever
# the number of records.

# %% [markdown]
# ## 3. A short stage 2 that moves
#
# We start from the zoo's `llava-mini-stage1`, make it a stage-2 model with `stages.freeze`, mix the three types
# uniformly (the same 500 scenes for each, shuffled together, batches grouped by length, as LLaVA-1.5's
# length grouping does) and train for 150 steps of 32 chats with the zoo's stage-2 settings (AdamW, lr
# 1e-3 after a 3% warm-up, cosine to 0, gradient norm clipped to 1). First the held-out loss per type, on 64
# validation scenes the run never sees:

# %%
def held_out_loss(model, examples, batch_size: int = 64) -> float:
    '''Mean loss per answer token over `examples`: summed token losses / their number (not a mean of batch means).'''
    model.eval()
    size, total, count = model.config.vision.image_size, 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            chunk = examples[i:i + batch_size]
            batch = conversation.collate([e.sample for e in chunk], tokenizer.pad_token_id)
            batch["pixel_values"] = world.pixel_values(world.render_batch([world.sample_scene(e.seed) for e in chunk],
                                                                          size))
            total += model(**batch, num_items_in_batch=1).loss.item()  # divided by 1: the sum over answer tokens
            count += train.supervised_tokens(batch)
    return total / count


before = {t: held_out_loss(student, rows) for t, rows in held_out.items()}
print("held-out loss per answer token before stage 2: " +
      ", ".join(f"{t} {loss:.2f}" for t, loss in before.items()))

# %% [markdown]
# Now the run. The trainer prints a line every 25 steps, and at the end the seconds it took and its throughput
# (this cell's output is a log and is not compared when the notebook is graded; the numbers after it are):

# %% tags=["nbval-ignore-output"]
STEPS, BATCH = 150, 32
ZOO_STAGE2 = train.TrainConfig(**manifest["llava-mini"]["recipe"]["train"])
run = dataclasses.replace(ZOO_STAGE2, steps=STEPS, batch_size=BATCH, log_every=25, progress=False, device="cpu")
mix = [e for rows in by_type.values() for e in rows]
batches = corpora.Batches(mix, tokenizer, BATCH, seed=0, image_size=student.config.vision.image_size,
                          group_by_length=True)
seen = {"lm": 0, "vision": 0}


def counting(batches):
    '''Pass batches through, counting the language model's tokens and the vision tower's (CLS + patches).'''
    per_image = (student.config.vision.image_size // student.config.vision.patch_size) ** 2 + 1
    for batch in batches:
        seen["lm"] += int(batch["attention_mask"].sum())
        seen["vision"] += batch["pixel_values"].shape[0] * per_image
        yield batch


start = time.perf_counter()
losses = train.fit(student, counting(batches), run)
seconds = time.perf_counter() - start
n_vision = counts["vision"][1]
flops = train.training_flops(counts["total"][0], seen["lm"], n_vision, seen["vision"])
print(f"{seconds:.1f} s, {seen['lm'] / seconds:,.0f} language-model tokens/s, "
      f"{flops / seconds / 1e9:.2f} GFLOP/s of model FLOPs on this CPU")

# %%
after = {t: held_out_loss(student, rows) for t, rows in held_out.items()}
print(f"{'held-out loss per answer token':>32} | " + " | ".join(f"{t:>17}" for t in stages.STAGE2_TYPES))
for name, values in (("before (llava-mini-stage1)", before), (f"after {STEPS} steps", after)):
    print(f"{name:>32} | " + " | ".join(f"{values[t]:>17.2f}" for t in stages.STAGE2_TYPES))

fig, ax = plt.subplots(figsize=(7, 3.2))
ax.plot(np.arange(1, STEPS + 1), losses, lw=0.6, alpha=0.5, label="each step's batch")
window = 10
ax.plot(np.arange(window, STEPS + 1), np.convolve(losses, np.ones(window) / window, mode="valid"), lw=1.6,
        label=f"mean of {window} steps")
ax.set_xlabel("optimizer step")
ax.set_ylabel("training loss per answer token")
ax.set_title(f"stage 2 from llava-mini-stage1: {STEPS} steps x {BATCH} chats of the three-type mix", fontsize=10)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# **What the run shows.** The loss falls fast and unevenly. The per-step curve jumps because batches are grouped by
# length: a batch of long descriptions and one of short conversations have different losses, so read the running
# mean. Held out, the conversations did not move (0.15 before and after): our stage-1 model's language model,
# `vicuna-mini`, was pre-trained on chats of this form, so it already predicts their wording, and most of an answer's
# tokens restate the question ("The square is ..."). Descriptions and reasoning, new forms to it, fall from 6–8 to
# about 1: long, formulaic texts whose wording a language model learns in a few thousand examples ("There are 2
# objects in the image. A small ..."). A falling loss says the *form* was learnt; whether the model *looks* is
# another question, which the next section asks.

# %% [markdown]
# ## 4. Before and after, by type
#
# The same questions go to four models: `llava-mini-stage1` (before stage 2), the short run of section 3, and the
# zoo's two stage-2 models. The zoo's recipe (`llava_mini/recipe.py`) trains stage 2 as a **curriculum**:
#
# - `llava-mini-conv-only` = stage 1, then 4500 steps × 64 of conversations alone (12 epochs of 24000 scenes, lr
#   1e-3);
# - `llava-mini` = `llava-mini-conv-only`, then 3000 steps × 64 of the full mix (6 epochs of 24000 conversations,
#   4000 descriptions and 4000 reasoning records).
#
# The scores are `evaluate.accuracy`'s: exact match of the sentence answer for the six short categories (100 test
# scenes each), the F1 of the facts a detailed description states, and exact match of the conclusion of a reasoning
# answer.

# %%
models = {"before: stage 1": zoo.load("llava-mini-stage1"), f"short run ({STEPS} steps)": student,
          "zoo: conv-only": zoo.load("llava-mini-conv-only"), "zoo: llava-mini": zoo.load("llava-mini")}
scores = {name: evaluate.accuracy(model, tokenizer, n=100, answers="sentence") for name, model in models.items()}
rows = (*evaluate.SHORT_KEYS, "description", "reasoning")
print(f"{'100 test questions each':>24} | " + " | ".join(f"{name:>22}" for name in models))
for key in rows:
    label = "description (F1)" if key == "description" else key
    print(f"{label:>24} | " + " | ".join(f"{scores[name][key]:>22.2f}" for name in models))

# %% [markdown]
# One test scene, the same three requests (one per type) to each model:

# %%
scene_seed = world.split_seeds("test", 1)[0]
scene = world.sample_scene(scene_seed)
context = world.symbolic_context(scene)
short = teacher.questions(context, "colour", np.random.default_rng([scene_seed, 1]))[0]
reasoning_q, reasoning_a = teacher.Teacher().complex_reasoning(context, np.random.default_rng([scene_seed, 7])).turns[0]
requests = {"conversation": short.question, "detail": teacher.DETAIL_INSTRUCTIONS[0],
            "complex_reasoning": f"{reasoning_q} {teacher.REASONING_CUE}"}
print("the scene:", "; ".join(context.captions))
for kind, request in requests.items():
    print(f"\n[{kind}] {request}")
    for name, model in models.items():
        reply = evaluate.answer(model, tokenizer, [scene], [request], max_new_tokens=120)[0]
        print(textwrap.fill(reply, 116, initial_indent=f"{name:>22}: ", subsequent_indent=" " * 24))

# %% [markdown]
# ### Does the model look? Existence, measured by the first answer word
#
# "Is there a red circle?" is the cleanest test of looking: the question names an object, and only the image says
# whether it is there. An answer starts with "yes" or "No", so the model's first answer token holds its decision. For
# 300 test questions (half about present objects) we take the margin $\log p(\text{yes}) - \log p(\text{No})$ at
# that token and ask how well it separates present from absent objects: the area under the ROC curve (AUC), 0.5 for
# a model that does not look, 1.0 for one whose every "yes" margin for a present object beats every absent one.

# %%
YES, NO = (tokenizer.convert_tokens_to_ids("▁" + word) for word in ("yes", "No"))


def existence_questions(n: int):
    '''n (scene, question, present?) triples, one per test scene, from the teacher's existence questions.'''
    out = []
    for seed in world.SPLITS["test"]:
        context = world.symbolic_context(world.sample_scene(seed))
        qa = teacher.questions(context, "existence", np.random.default_rng([seed, 5]))
        if qa:
            out.append((world.sample_scene(seed), qa[0].question, qa[0].kind == "yes"))
        if len(out) == n:
            return out


@torch.no_grad()
def yes_margin(model, triples) -> np.ndarray:
    '''log p(yes) - log p(No) for the first answer token of each question.'''
    prompts = [conversation.build_prompt([{"from": "human", "value": "<image>\n" + q}], tokenizer,
                                         model.num_image_tokens) for _, q, _ in triples]
    batch = conversation.collate(prompts, tokenizer.pad_token_id, padding_side="left")
    pixels = world.pixel_values(world.render_batch([s for s, _, _ in triples], model.config.vision.image_size))
    logp = model(batch["input_ids"], pixels, batch["attention_mask"]).logits[:, -1].log_softmax(-1)  # (n, vocab)
    return (logp[:, YES] - logp[:, NO]).numpy()


def auc(scores_present: np.ndarray, scores_absent: np.ndarray) -> float:
    '''P(a present object's margin > an absent one's), ties counted half: the area under the ROC curve.'''
    diff = scores_present[:, None] - scores_absent[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


triples = existence_questions(300)
present = np.array([p for _, _, p in triples])
print(f"{'':>22} | AUC of the yes-No margin | greedy answers right")
for name, model in models.items():
    margin = yes_margin(model, triples)
    right = np.mean((margin > 0) == present)
    print(f"{name:>22} | {auc(margin[present], margin[~present]):>24.2f} | {right:>20.2f}")

# %% [markdown]
# ### Why the zoo's stage 2 is a curriculum
#
# LLaVA samples its three types uniformly in one pass, and our first recipe did the same: from `llava-mini-stage1`,
# 6000 steps × 64 of the full mix (24000 conversations, 4000 descriptions, 4000 reasoning records, the same scenes as
# the zoo's). It learnt the descriptions (F1 .96) and most short questions, but **not existence**: .53 on 300 test
# questions, with its first-word margin separating present from absent objects at an AUC of .51 — the number a model
# that does not look would get. The same conversations *alone* (`llava-mini-conv-only`) reached existence .98 (AUC
# .997), and a mix of conversations and detail records without any reasoning broke it just the same (.50), so the
# detail records alone are enough to hold the lookup back (reasoning records alone were not tried) (`docs/recipe_log.md`, sessions 7 and 8; measured, one seed each). What
# the zoo ships is therefore conversations first, then the mix; once learnt, the lookup survives the mix:

# %%
log_full_mix = {"colour": .87, "shape": .97, "count": .83, "position": .79, "existence": .53, "relation": .67,
                "description": .96, "reasoning": .60}  # docs/recipe_log.md, session 7 (not in the manifest)
table = {"stage 1": manifest["llava-mini-stage1"]["metrics"]["accuracy"], "full mix from stage 1": log_full_mix,
         "conv-only": manifest["llava-mini-conv-only"]["metrics"]["accuracy"],
         "conv-only, then the mix": manifest["llava-mini"]["metrics"]["accuracy"]}
keys = (*evaluate.SHORT_KEYS, "description", "reasoning")
print(f"{'300 test questions each':>24} | " + " | ".join(f"{name:>23}" for name in table))
for key in keys:
    print(f"{key:>24} | " + " | ".join(f"{table[name][key]:>23.2f}" for name in table))

fig, ax = plt.subplots(figsize=(10, 3.4))
x, width = np.arange(len(keys)), 0.8 / len(table)
for i, (name, values) in enumerate(table.items()):
    bars = ax.bar(x + (i - (len(table) - 1) / 2) * width, [values[k] for k in keys], width=width, label=name)
    ax.bar_label(bars, labels=["0" if values[k] == 0 else "" for k in keys], fontsize=7)  # a zero is a measurement
ax.set_xticks(x, [k if k != "description" else "description F1" for k in keys], fontsize=8)
ax.set_ylim(0, 1.05)
ax.set_ylabel("accuracy")
ax.set_title("stage 2 as a curriculum: the zoo's models on 300 test questions per category", fontsize=10)
ax.legend(fontsize=8, ncols=len(table), loc="upper center", bbox_to_anchor=(0.5, -0.12))
plt.show()

# %% [markdown]
# **What the tables say.** Read the first table across. Before stage 2, `llava-mini-stage1` answers short questions
# in the teacher's sentence form but near guessing (colour .50, existence .56, its yes–No margin at an AUC of .51),
# and it cannot describe (F1 .15) or reason (0: asked to explain, it gives the short answer, as in the example). The
# short run learnt the forms — its description and reasoning follow the teacher's templates — but not their content:
# its descriptions name objects that are not there (F1 .26), its reasoning reaches no right conclusion, its existence
# margin still separates nothing (AUC .55), and relation fell (.53 → .14; we have not looked into why, one short
# run). `conv-only` looks (AUC 1.00, existence .98, colour .84, shape .97), but was never taught the other two types:
# asked for a description, it answers with one sentence (F1 .23), and it never reasons. `llava-mini` keeps the lookup
# and adds them (F1 .91, reasoning .52); the example shows its reasoning reaching the right conclusion through a
# false step (the yellow diamond "is a square").
#
# The curriculum has a price, in the second table: six epochs of the mix teach a little less description and
# reasoning (F1 .91, reasoning .58) than the twelve-epoch full mix did (.96, .60), while colour (.87 → .90) and count
# (.83 → .89) gain. The length of the mix phase is what buys them back: three epochs gave F1 .79 and reasoning .54
# (`docs/recipe_log.md`, sessions 8 and 10; one seed each). And the lesson is
# about *our* scale, not LLaVA's: a 2-layer, 64-wide language model that first has to discover that it can look
# things up in nine visual tokens. LLaVA's Vicuna already follows instructions, and CLIP's features are rich, so a
# uniform mix works there; LLaVA's own ablation (Table 4: conversation only 73.8, full data 85.1) found the mix
# helps. Curricula of this kind — simple, grounded tasks before free-form ones — are common in later recipes; ours is
# one measured instance, with one seed per arm.

# %% [markdown]
# ## 5. Training on a GPU
#
# On a CPU our stage 2 is a few hundred tokens per step and the short run above took well under a minute. LLaVA's is
# a 13B model on sequences of up to 2048 tokens. What changes on a GPU is not the loop — `train.fit` is the same
# loop for both — but five settings, each one line:
#
# 1. **Device placement.** The model and each batch go to the same device (`model.to(device)`,
#    `train.to_device(batch, device)`); mixing devices is an error, not a slowdown. Move data once per step, not per
#    tensor per layer.
# 2. **bf16 autocast.** `torch.autocast("cuda", dtype=torch.bfloat16)` runs matrix multiplications in bfloat16 on the
#    tensor cores (H100: about 989 TFLOP/s dense bf16 against about 67 in fp32), while the parameters, their gradients
#    and Adam's states stay fp32. bfloat16 keeps fp32's exponent range, so unlike fp16 it needs no loss scaling.
#    Autocast covers the *forward* pass; `loss.backward()` runs outside it and uses the dtypes the forward chose.
# 3. **Fused AdamW.** `torch.optim.AdamW(..., fused=True)` updates every parameter in a few kernels instead of several
#    per tensor: for a model of many small tensors the optimizer step is otherwise launch-bound.
# 4. **`torch.compile`.** It traces the forward (and the backward) into fused kernels; the first steps pay the
#    compilation (tens of seconds), later ones run faster, and the model computes the same function.
# 5. **Gradient accumulation.** When a batch does not fit, split it into micro-batches and step once. Notebook 05
#    (exercise 5.4) showed that the losses must be normalised by the supervised tokens of the *whole* step, or a token
#    in a short micro-batch weighs more.
#
# `train.TrainConfig` has these switches (`device`, `bf16`, `compile`, `grad_accum`), and `train.fit` uses fused
# AdamW whenever it runs on CUDA.
#
# ### Exercise 7.2: one optimizer step with accumulation and autocast
#
# Write `training_step(model, micro_batches, optimizer, autocast)`. `micro_batches` is a list of batches (dicts with
# `input_ids`, `attention_mask`, `labels`, maybe `pixel_values`); `autocast` is a function that returns a context
# manager (on a GPU `lambda: torch.autocast("cuda", dtype=torch.bfloat16)`). Take one optimizer step on the gradient
# of the whole step's loss:
#
# - count the supervised tokens of *all* the micro-batches (`labels[:, 1:] != -100`, after the shift) — write the
#   count yourself;
# - for each micro-batch, compute `model(**batch, num_items_in_batch=n).loss` inside `with autocast():`, then call
#   `.backward()` on it *outside* that block;
# - then `optimizer.step()` and `optimizer.zero_grad()` (no gradient clipping here);
# - return the step's loss as a Python float (the sum of the micro-batches' losses).
#
# Do not change the batches. The grader refuses `train.fit` and `train.supervised_tokens`. *(About 10 lines; it is
# exercise 5.4's loop with autocast and the optimizer added.)*

# %% tags=["exercise"]
def training_step(model, micro_batches, optimizer, autocast) -> float:
    '''One optimizer step over micro_batches: losses normalised by the step's supervised tokens.'''
    ### BEGIN SOLUTION
    n_items = sum(int((batch["labels"][:, 1:] != -100).sum()) for batch in micro_batches)
    total = 0.0
    for batch in micro_batches:
        with autocast():
            loss = model(**batch, num_items_in_batch=n_items).loss
        loss.backward()
        total += loss.item()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total
    ### END SOLUTION


# %% tags=["grader"]
nb07.check_training_step(training_step)

# %% [markdown]
# ### Throughput and model FLOPs utilisation
#
# Tokens per second compares runs of one model. To compare with the hardware, count the FLOPs the model *needs* and
# divide by what the device could do: the **model FLOPs utilisation** (MFU, PaLM's name). For a transformer, the
# forward pass costs about $2N$ FLOPs per token for $N$ parameters (one multiply and one add per weight), and the
# backward about $4N$ (the gradient of the activations, $2N$, and of the weights, $2N$): $6N$ per token trained.
# That holds for parameters that train. Stage 2 has a part that does not:
#
# - the language model and $W$ train: $6 \cdot N_{\text{trainable}}$ per language-model token;
# - the vision tower is frozen *and* sits before everything that trains, so no gradient is asked of it: its backward
#   pass never runs (in `LlavaMini` its parameters have `requires_grad=False` and its input, the pixels, needs no
#   gradient, so autograd records nothing there). It costs its forward only, $2 \cdot N_{\text{vision}}$ per vision
#   token (per patch, with CLS).
#
# (A frozen part *between* the loss and something that trains is different: stage 1's frozen LLM still runs its
# backward to pass the gradient to $W$ — about $2N$ per token for the activations' gradients, without the weights'
# $2N$: $4N$ per token with its forward.)
#
# $$\text{MFU} = \frac{6 N_{\text{trainable}} T_{\text{LM}} + 2 N_{\text{vision}} T_{\text{vision}}}
#   {\text{seconds} \times \text{peak FLOP/s}}.$$
#
# The formula leaves out attention's scores ($\propto T^2$) and counts padding tokens as work, as the usual estimate
# does; say so when you report it. Good large-model training reaches 35–55% MFU on A100/H100s.
#
# ### Exercise 7.3: MFU
#
# Write `mfu(n_trainable, lm_tokens, n_vision, vision_tokens, seconds, peak_flops)`, returning the fraction (0.4,
# not 40) of the peak. The grader refuses `train.training_flops` and `train.mfu`, the package's answer. *(1 line.)*

# %% tags=["exercise"]
def mfu(n_trainable, lm_tokens, n_vision, vision_tokens, seconds, peak_flops) -> float:
    '''(6·N_trainable per LM token + 2·N_vision per vision token) / seconds / peak FLOP/s.'''
    ### BEGIN SOLUTION
    return (6 * n_trainable * lm_tokens + 2 * n_vision * vision_tokens) / seconds / peak_flops
    ### END SOLUTION


# %% tags=["grader"]
nb07.check_mfu(mfu)

# %% [markdown]
# What would LLaVA's stage 2 cost by this count? 158K records × 3 epochs, at roughly 256 image tokens plus 300 text
# tokens per record (a guess at the mean; records vary a lot), on Vicuna-13B and CLIP ViT-L/14 (257 vision tokens
# per image):

# %%
records, epochs, text_tokens, image_tokens, vision_tokens = 158_000, 3, 300, 256, 257
lm_tokens = records * epochs * (text_tokens + image_tokens)
need = train.training_flops(13_015_864_320 + 5_248_000, lm_tokens, 303_179_776, records * epochs * vision_tokens)
for device_name, peak in (("8 A100s (312 TFLOP/s bf16 each)", 8 * 312e12), ("8 H100s (989 TFLOP/s bf16 each)",
                                                                         8 * 989e12)):
    for utilisation in (0.3, 0.5):
        print(f"{device_name}, at {utilisation:.0%} MFU: {need / (peak * utilisation) / 3600:.1f} hours")

# %% [markdown]
# LLaVA reports about 10 hours on 8 A100s for stage 2: by this count, about a quarter of the peak (7.7 hours at 30%
# would be 23% over 10 hours). That is plausible for FSDP with gradient checkpointing, whose recomputed forward
# (another $2N$ per token, section 6) is work the formula does not count as model FLOPs — and the mean length is a
# guess.
#
# The cell below measures our model on a GPU, where there is one: the zoo's `llava-mini` (180K trainable
# parameters, far too small to keep a GPU busy: expect a tiny MFU, bound by kernel launches) and a scaled-up
# configuration of the same architecture (language model 1024 wide, 8 layers; vision tower 512 wide, 6 layers; 96
# px images of 36 patches), each with the settings of this section switched on one at a time. **This session had no
# GPU: the numbers are not measured here.** On a CPU the cell prints why it skipped; on a CUDA machine it prints
# the device, tokens/s, MFU and the speed-up of each setting (numbers of that machine, so the cell's output is not
# compared when the notebook is graded).

# %% tags=["nbval-ignore-output"]
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}


def benchmark(model, batches, steps: int, device: torch.device, *, bf16: bool, fused: bool, compile: bool,
              warmup: int = 3) -> dict:
    '''Time `steps` optimizer steps of stage 2 after `warmup` untimed ones; tokens/s and model FLOPs/s.'''
    model = model.to(device).train()
    stages.freeze(model, 2)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=fused)
    step_model = torch.compile(model, dynamic=True) if compile else model  # lengths vary from batch to batch
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    data = [train.to_device(next(batches), device) for _ in range(warmup + steps)]
    per_image = (model.config.vision.image_size // model.config.vision.patch_size) ** 2 + 1
    lm_tokens = sum(int(b["attention_mask"].sum()) for b in data[warmup:])
    vision_tokens = sum(b["pixel_values"].shape[0] * per_image for b in data[warmup:])
    for i, batch in enumerate(data):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with autocast():
            loss = step_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    flops = train.training_flops(sum(p.numel() for p in params), lm_tokens,
                                 sum(p.numel() for p in model.vision.parameters()), vision_tokens)
    return {"tokens/s": lm_tokens / seconds, "flop/s": flops / seconds}


def scaled_up(image_size: int = 96):
    '''The same architecture, wider and deeper, with random weights (throughput does not depend on them).'''
    config = dataclasses.replace(
        models["zoo: llava-mini"].config,
        lm=dataclasses.replace(models["zoo: llava-mini"].config.lm, dim=1024, layers=8, heads=16, kv_heads=16,
                               hidden=2816, max_seq_len=512),
        vision=dataclasses.replace(models["zoo: llava-mini"].config.vision, image_size=image_size, width=512,
                                   layers=6, heads=8, intermediate=2048))
    return type(models["zoo: llava-mini"])(config)


if not torch.cuda.is_available():
    print("no CUDA GPU in this kernel: the GPU benchmark is skipped (its numbers are not measured here)")
else:
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    peak = next((value for key, value in PEAK_BF16.items() if key in name), None)
    print(f"device: {name}; bf16 peak {'unknown' if peak is None else f'{peak / 1e12:.0f} TFLOP/s'}")
    settings = {"fp32": dict(bf16=False, fused=False, compile=False),
                "+ bf16 autocast": dict(bf16=True, fused=False, compile=False),
                "+ fused AdamW": dict(bf16=True, fused=True, compile=False),
                "+ torch.compile": dict(bf16=True, fused=True, compile=True)}
    torch.use_deterministic_algorithms(False)  # speed, not bit-for-bit repeatability, is measured here
    for label, make, image_size, batch_size in (("zoo: llava-mini", lambda: zoo.load("llava-mini"), 48, 64),
                                                ("scaled up", scaled_up, 96, 32)):
        rows_ = stages.examples(2, world.split_seeds("train", 200), tokenizer,
                                (image_size // 16) ** 2) if image_size != 48 else mix
        base = None
        for setting, switches in settings.items():
            data = corpora.Batches(rows_, tokenizer, batch_size, seed=0, image_size=image_size, group_by_length=True)
            result = benchmark(make(), data, 20, device, **switches)
            base = base or result["tokens/s"]
            utilisation = "" if peak is None else f", MFU {result['flop/s'] / peak:.3%}"
            print(f"{label:>16} {setting:>16}: {result['tokens/s']:>12,.0f} tokens/s "
                  f"(x{result['tokens/s'] / base:.2f}){utilisation}")
    torch.use_deterministic_algorithms(True)  # as setup_notebook left it

# %% [markdown]
# What to look for on a GPU: bf16 speeds the scaled-up model much more than the tiny one (the tiny one's matrices
# are too small for the tensor cores to matter; it is bound by launching kernels, which is what fused AdamW and
# `torch.compile` reduce). The first compiled steps are slow (compilation), which is why the benchmark discards
# warm-up steps. MFU is the honest number to report next to tokens/s: 180K parameters cannot fill an H100 whatever
# the settings.

# %% [markdown]
# ## 6. The memory arithmetic of full fine-tuning
#
# Why did LLaVA need FSDP (the paper) and DeepSpeed ZeRO (the later scripts) for stage 2, when stage 1 ran without?
# Count the bytes. With mixed precision and AdamW, each *trained* parameter costs 16 bytes before any activation:
#
# | what | bytes per trained parameter |
# |---|---|
# | bf16 copy of the weight (what the matmuls read) | 2 |
# | bf16 gradient | 2 |
# | fp32 master weight (what the optimizer updates) | 4 |
# | Adam's first moment $m$ (fp32) | 4 |
# | Adam's second moment $v$ (fp32) | 4 |
#
# (With fp32 weights under autocast, as `train.fit` keeps them, it is 4 + 4 + 4 + 4: the same 16.) A frozen
# parameter costs only its weight: 2 bytes in bf16, no gradient, no optimizer state. That is why stage 1, with only
# $W$ training, fits on one GPU, and stage 2 does not.
#
# Activations come on top: what the backward pass needs from the forward. For a transformer layer, about
# $s \cdot b \cdot h \cdot 34$ bytes in 16-bit for sequence length $s$, micro-batch $b$ and width $h$, plus
# $5 \cdot a \cdot s^2 \cdot b$ for the attention matrices of $a$ heads (Korthikanti et al. 2022; a fused attention
# kernel such as FlashAttention does not store those). **Gradient checkpointing** (which LLaVA used) keeps only each
# layer's input, $2 s b h$ bytes, and recomputes the rest during the backward, at the price of one more forward pass.

# %%
@dataclasses.dataclass
class Llm:
    name: str
    params: int
    layers: int
    width: int
    heads: int


GB = 1e9
vision, seq, micro = 303_179_776, 2048, 4  # CLIP ViT-L/14; LLaVA's max length; 4 sequences per GPU (its script)
for llm, projector in ((Llm("LLaVA-7B", 6_738_415_616, 32, 4096, 32), 4_198_400),
                       (Llm("LLaVA-13B", 13_015_864_320, 40, 5120, 40), 5_248_000)):
    trained = llm.params + projector
    states = {"weights (bf16, trained + frozen vision)": 2 * (trained + vision),
              "gradients (bf16)": 2 * trained,
              "fp32 master weights": 4 * trained,
              "Adam m and v (fp32)": 8 * trained}
    per_layer = seq * micro * llm.width * 34 + 5 * llm.heads * seq ** 2 * micro
    activations = {"activations, stored": llm.layers * per_layer,
                   "activations, with checkpointing": llm.layers * 2 * seq * micro * llm.width + per_layer}
    print(f"{llm.name}: {trained:,} trained parameters, {vision:,} frozen")
    for what, size in {**states, **activations}.items():
        print(f"  {what:>42}: {size / GB:>7.1f} GB")
    fixed = sum(states.values())
    print(f"  {'total without activations':>42}: {fixed / GB:>7.1f} GB; one 80 GB GPU holds it: {fixed < 80 * GB}")
    print(f"  {'sharded over 8 GPUs (FSDP / ZeRO-3)':>42}: {fixed / 8 / GB:>7.1f} GB per GPU, "
          f"+ {activations['activations, with checkpointing'] / GB:.1f} GB of checkpointed activations")

# %% [markdown]
# A 7B model needs about 108 GB for weights, gradients and Adam's states, a 13B model about 209 GB: neither fits on
# one 80 GB A100, before a single activation. Stored activations at LLaVA's maximum length would add more than the
# model itself (the attention matrices alone: 86 GB at 7B); checkpointing brings them to a few GB.
#
# **Data parallelism** (DDP) copies the whole model to every GPU, so it does not help here: each GPU would still need
# 209 GB. **Sharding** does: FSDP's `full_shard` (LLaVA's paper-era script) and DeepSpeed's ZeRO-3 (LLaVA-1.5's
# stage 2) give each of $G$ GPUs a $1/G$ slice of the weights, gradients and optimizer states, gathering a layer's
# full weights just before it runs and freeing them after; ZeRO-2 (LLaVA-1.5's stage 1, and v1's later scripts)
# shards only gradients and optimizer states. On 8 GPUs the 13B model's 209 GB become 26 GB per GPU, which leaves
# room for activations. The price is communication: every layer's weights cross the network twice per step.

# %% [markdown]
# ## 7. Several GPUs: DDP and `torchrun`
#
# For a model that fits on one GPU — ours, at any size in this course — the way to use several is **distributed
# data parallel** (DDP):
#
# - `torchrun --standalone --nproc_per_node=8 train.py` starts 8 copies of the script, one per GPU, and gives each its
#   `RANK`, `LOCAL_RANK` and `WORLD_SIZE` in the environment (`--nnodes` and a rendezvous address for several
#   machines);
# - each process calls `torch.distributed.init_process_group("nccl")`, moves the model to `cuda:LOCAL_RANK` and wraps
#   it in `DistributedDataParallel`: every rank holds the same full model;
# - each rank reads a different slice of the data (a `DistributedSampler`, or batches `rank::world_size`), so a step
#   sees `world_size` times the per-GPU batch;
# - during `backward()`, DDP all-reduces (averages) the gradients across ranks bucket by bucket, overlapping the
#   communication with the rest of the backward; after it every rank holds the same gradient and takes the same
#   optimizer step, so the replicas stay identical without ever exchanging weights;
# - with gradient accumulation, the micro-batches before the last run under `model.no_sync()`, so the all-reduce
#   happens once per step;
# - one rank (rank 0) logs and saves checkpoints; all call `destroy_process_group()` at the end.
#
# One trap connects to exercise 7.2: DDP *averages* gradients over ranks. If each rank normalises its loss by its own
# supervised tokens, a token on a rank with few answer tokens weighs more — the accumulation bug again, across GPUs.
# The exact normalisation all-reduces the step's token count first (`torch.distributed.all_reduce` on the count) and
# divides each rank's summed loss by (global count / world size), so that the average of the ranks' gradients is the
# gradient of the whole global batch.
#
# A sketch of the script (not run here). The package's trainer does the same: `train.fit` wraps the model in
# DistributedDataParallel when a process group is initialised and normalises by the all-reduced token count;
# `tests/test_train_ddp.py` checks two CPU processes (gloo) against one process with the same global batch:
#
# ```python
# import contextlib, os, torch, torch.distributed as dist
# from torch.nn.parallel import DistributedDataParallel as DDP
# from llava_mini import corpora, stages, train, zoo
#
# dist.init_process_group("nccl")
# rank, local_rank, world = dist.get_rank(), int(os.environ["LOCAL_RANK"]), dist.get_world_size()
# torch.cuda.set_device(local_rank)
# model = zoo.load("llava-mini-stage1").cuda()
# stages.freeze(model, 2)
# ddp = DDP(model, device_ids=[local_rank])
# optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, fused=True)
# batches = corpora.Batches(my_examples[rank::world], tokenizer, 32, seed=rank)  # this rank's slice
# for step in range(steps):
#     micro = [train.to_device(next(batches), "cuda") for _ in range(accum)]
#     n = torch.tensor(sum(train.supervised_tokens(b) for b in micro), device="cuda")
#     dist.all_reduce(n)  # the whole step's supervised tokens, over every rank
#     for i, b in enumerate(micro):
#         sync = contextlib.nullcontext() if i == accum - 1 else ddp.no_sync()
#         with sync:
#             with torch.autocast("cuda", dtype=torch.bfloat16):
#                 loss = ddp(**b, num_items_in_batch=n / world).loss  # DDP's average then gives the global gradient
#             loss.backward()
#     optimizer.step()
#     optimizer.zero_grad(set_to_none=True)
# if rank == 0:
#     zoo.save("my-llava", model)
# dist.destroy_process_group()
# ```
#
# For the 7B and 13B models of section 6 the wrapper changes (`FullyShardedDataParallel`, or DeepSpeed's engine with a
# ZeRO config), the launch does not.

# %% [markdown]
# ## 8. Questionnaire (graded)
#
# Which statements are true?
#
# - **(a)** In stage 2 LLaVA updates $W$ and every weight of the language model; the CLIP vision encoder stays frozen.
# - **(b)** The language model is unfrozen in stage 2 because following an instruction — the content, form and
#   length of the answer — is the language model's behaviour, which stage 1's caption data never taught.
# - **(c)** The zoo's `llava-mini` was trained, like LLaVA, on the three instruction types sampled uniformly in one
#   pass from the stage-1 model.
# - **(d)** Trained on the full mix straight from stage 1, our model's first answer word to "Is there a ...?" did not
#   separate present from absent objects (AUC .51); conversations first taught it (existence .98).
# - **(e)** With gradient accumulation over $k$ micro-batches, dividing each micro-batch's mean loss by $k$ gives the
#   gradient of the whole batch, whatever the micro-batches' numbers of answer tokens.
# - **(f)** The MFU of stage 2 counts $6N$ per token for the language model and $W$, and $2N$ per vision token for the
#   vision tower, because the frozen tower's backward pass never runs.
# - **(g)** Full fine-tuning of a 7B model with mixed-precision AdamW needs about 16 bytes per parameter before
#   activations, about 108 GB: more than one 80 GB GPU holds.
# - **(h)** FSDP's full sharding and ZeRO-3 split the weights, gradients and optimizer states across the GPUs, while
#   DDP keeps a full copy of all three on every GPU.
# - **(i)** bf16 autocast halves the memory of Adam's states.
# - **(j)** `torch.compile` changes the function the model computes, so a compiled run needs its own learning rate.
#
# Return the letters of **all** true statements, e.g. `"ace"`.

# %% tags=["exercise"]
def answer_questionnaire() -> str:
    '''The letters of every true statement, e.g. "ace".'''
    ### BEGIN SOLUTION
    return "abdfgh"
    ### END SOLUTION


# %% tags=["grader"]
nb07.check_questionnaire(answer_questionnaire)

# %% [markdown] tags=["solution-only"]
# **A model answer.** (a), (b), (d), (f), (g) and (h) are true. (c) is false: the zoo's stage 2 is a curriculum,
# conversations first (section 4). (e) is false: dividing by $k$ averages the micro-batches' *means*, so a token in a
# micro-batch with few answer tokens weighs more (notebook 05, exercise 5.4; exercise 7.2). (i) is false: autocast
# changes the dtype of the operations, not of the stored parameters or optimizer states, which stay fp32. (j) is
# false: `torch.compile` computes the same function (up to floating-point rounding), faster.

# %% [markdown]
# ## To think about
#
# Not graded: questions to think about before notebook 08.
#
# 1. Our curriculum runs conversations first, then the mix. What would you expect from the opposite order, and from
#    mixing conversations with a *small* share of descriptions from the start? Design the run that would tell.
# 2. The held-out loss of the short run fell most for descriptions and reasoning. Why is a low loss on long,
#    templated answers weak evidence that a model looks at the image? Which measurement in this notebook is
#    stronger, and why?
# 3. LLaVA trains stage 2 at lr 2e-5; our zoo at 1e-3. Which differences between the two models justify a learning
#    rate 50 times larger?
# 4. In stage 1 the LLM is frozen but sits between $W$ and the loss. Write the FLOPs per token of stage 1 and compare
#    them with stage 2's. Is stage 1 three times cheaper per token than stage 2?
# 5. With 8 GPUs and DDP, each rank normalises its loss by its own supervised tokens. By how much can a rank's tokens
#    be over- or under-weighted in a batch of one long description and seven short conversations per rank?
# 6. LoRA (which LLaVA's later scripts offer) trains small low-rank matrices beside frozen weights. Redo section 6's
#    table for a 13B model with LoRA of rank 128 on every linear layer: which rows shrink, and which do not?
#
# ### What this notebook did not measure
# No GPU was available when this notebook was written and executed: the benchmark of section 5 (device name,
# tokens/s, MFU, the speed-ups of bf16, fused AdamW and `torch.compile`) has not been run, and its expectations are
# expectations. The DDP script of section 7 is a sketch; the package's DDP path is tested elsewhere. The memory
# table is arithmetic, not a measurement of a real run.
