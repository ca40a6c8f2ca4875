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
# # 06 — Stage 1: feature alignment, or training $W$ alone
#
# LLaVA trains in two stages (§4.2). Stage 1, *pre-training for feature alignment*, freezes the vision encoder $g$ and
# the language model $f_\phi$ and trains only the projection $W$, on image–caption pairs: 595K CC3M captions, one
# epoch, in the released code's `plain` format (the image, then the caption; no question, no system prompt; the paper's
# first version put a brief-description instruction before each image instead). The paper calls it
# "training a compatible visual tokenizer for the frozen LLM": $W$ learns to write $H_v = W \cdot Z_v$ in a form the
# LLM already knows how to read. Stage 2 (notebook 07) then unfreezes the LLM and teaches it to follow instructions.
#
# This notebook freezes and trains. You write the freezing (which flags each stage sets), the count of what trains,
# the optimizer's parameter groups, and stage 1's forward pass with the vision tower under `torch.no_grad()` and the
# gradient flowing *through* the frozen LLM to $W$. Then you run the first 600 steps of the very run that made the
# zoo's `llava-mini-stage1`, watch the captions appear, load the finished model and find what stage 1 does not give:
# instruction following. Last, the contrast: the same stage 1 on an LLM that never learned to read a context fails —
# which is the answer to "why may the LLM stay frozen in stage 1?"
#
# ### Goals
# After this notebook you can
#
# 1. say what each stage trains, in LLaVA and here, and set it with `requires_grad_` (exercise 6.1);
# 2. count trainable and frozen parameters per module (exercise 6.2) and put ours beside LLaVA-13B's;
# 3. build the optimizer's parameter groups from the trainable tensors, with a learning rate of $W$'s own
#    (exercise 6.3, LLaVA's `--mm_projector_lr`);
# 4. write stage 1's loss with the vision tower under `no_grad` and the LLM merely frozen (exercise 6.4), and say why
#    the two are treated differently;
# 5. run stage 1, read its loss and caption curves, and show that a stage-1 model captions but does not follow
#    instructions;
# 6. explain, with a measurement, why stage 1 only works on an LLM that already reads its context — study question 3.
#
# ### Time
# About **60 minutes**: 30 of reading, four exercises of 5–10 minutes each, one study question. Running every cell
# (strict `pytest --nbval`) took 41 s, twice in a row, on 2 CPU cores shared with other jobs; about half of it is the
# 600-step training run of section 5, which prints a line every 50 steps while it trains (on one thread: 24 s on an
# idle core).
#
# ### Numbers to expect
# Stage 1 trains 4,160 of our model's 429,888 parameters (LLaVA-13B: 5,248,000 of 13.3 billion). In 600 steps the
# caption loss falls from about 2.7 (its first 10 steps) to about 0.3, and the object F1 of the captions rises from 0
# to about 0.45; the zoo's `llava-mini-stage1`, the same run continued to 3000 steps, captions at F1 0.71. Asked for a
# detailed description or for reasoning, it answers one short sentence. On `plain-lm` the same stage 1 ends at F1 0.11.
# The training run prints the same losses on every run on one machine kind; on another CPU the last digits may differ.

# %% [markdown]
# ## 0. Set-up

# %%
import dataclasses
import re
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import torch
import transformers

from llava_mini import corpora, data, evaluate, jobs, recipe, stages, train, world, zoo
from llava_mini.course import setup_notebook
from llava_mini.grading import nb06
from llava_mini.tokenizer import load_tokenizer

setup_notebook(seed=0)
tokenizer = load_tokenizer()
manifest = zoo.read_manifest()
STAGE1 = manifest["llava-mini-stage1"]["recipe"]["train"]  # how the zoo's stage 1 was trained (recipe.STAGE1_TRAIN)
rows = [("data", "CC-595K captions, plain", f"{recipe.STAGE1_SCENES:,} ShapesWorld captions, plain"),
        ("epochs", "1", f"{STAGE1['steps'] * STAGE1['batch_size'] / recipe.STAGE1_SCENES:g}"),
        ("batch size", "128", f"{STAGE1['batch_size']}"),
        ("steps", "about 4,650", f"{STAGE1['steps']:,}"),
        ("learning rate", "2e-3", f"{STAGE1['lr']:g}"),
        ("schedule", "3% warm-up, cosine, no weight decay", f"{STAGE1['warmup']:.0%} warm-up, cosine, weight decay "
                                                           f"{STAGE1['weight_decay']:g}")]
print(f"{'stage 1':>13} | {'LLaVA (paper, App. C)':<36} | llava-mini (the zoo's recipe)")
for name, theirs, ours in rows:
    print(f"{name:>13} | {theirs:<36} | {ours}")

# %% [markdown]
# Our stage 1 runs 24 epochs where LLaVA's runs one: our captions come from a closed world of 8,000 scenes, and $W$ has
# 4,160 parameters to fit where LLaVA's has five million and 595K different captions to see. The learning rate is of
# the same order.
#
# ## 1. What each stage trains
#
# | | vision encoder $g$ | projection $W$ | LLM $f_\phi$ | data |
# |---|---|---|---|---|
# | stage 1: feature alignment | frozen | **trained** | frozen | image–caption pairs, `plain` |
# | stage 2: instruction tuning | frozen | **trained** | **trained** | conversation, detailed description, complex reasoning |
#
# In LLaVA's code (`train.py`) stage 1 is the flag `--tune_mm_mlp_adapter True`: `model.requires_grad_(False)`, then
# the projector's parameters alone are set trainable again, and only they are saved (`mm_projector.bin`). Stage 2 has no
# flag: the LLM and the projector train, and the CLIP tower, loaded with `requires_grad_(False)`, stays frozen; its
# `forward` also runs under `torch.no_grad()`. So "frozen" is said two ways, and they are not the same:
#
# - `p.requires_grad_(False)` says *this tensor gets no gradient*: autograd still differentiates *through* the module
#   that holds it, so what lies before it — $W$, for the LLM — still gets its gradient;
# - `torch.no_grad()` says *record nothing*: no graph at all, so nothing before it gets a gradient either. Right for
#   the vision tower, which comes first and never trains; wrong for the LLM, which sits between $W$ and the loss
#   (notebook 05, section 6).
#
# ### Exercise 6.1 — freezing per stage
#
# Write `freeze(model, stage)`: set `requires_grad` on every parameter of a `LlavaMini` (`model.vision` is $g$,
# `model.projector` is $W$, `model.lm` is $f_\phi$) for stage 1 or 2. The model may arrive in any state — fresh (all
# trainable), all frozen, or as the other stage left it — so set every flag, not only those that change. Use
# `requires_grad_`; nothing else of the model may change. The grader checks the flags on the zoo's model from six
# starting states, then runs one backward pass on caption pairs: $W$ (and in stage 2 $f_\phi$) must get a gradient,
# nothing else may. `stages.freeze` is the package's answer and is switched off while yours runs. About 5 lines.

# %% tags=["exercise"]
def freeze(model, stage: int) -> None:
    '''Stage 1: only model.projector (W) trainable. Stage 2: model.projector and model.lm. model.vision: never.'''
    ### BEGIN SOLUTION
    model.requires_grad_(False)
    model.projector.requires_grad_(True)
    if stage == 2:
        model.lm.requires_grad_(True)
    ### END SOLUTION


# %% tags=["grader"]
nb06.check_freeze(freeze)

# %% [markdown]
# ## 2. What trains, counted
#
# A parameter count is the quickest check that a stage freezes what it should, and the one LLaVA's users asked about
# most often ("is the LLM frozen in stage 1?", haotian-liu/LLaVA#1059). It must count *elements* of the tensors that
# require gradients, module by module.
#
# ### Exercise 6.2 — the trainable-parameter table
#
# Write `trainable_counts(model)`: a dict with one entry per top-level child of the model (`model.named_children()`:
# `vision`, `projector`, `lm` for a `LlavaMini`), each `(trainable, total)` as two ints, and a `"total"` entry summing
# them. Count each tensor on its own flag: a child can hold frozen and trainable tensors side by side. The grader
# compares with `train.count_parameters` (switched off while yours runs) on three `LlavaMini` states and a small module
# whose trainable child holds a frozen bias. About 6 lines.

# %% tags=["exercise"]
def trainable_counts(model) -> dict[str, tuple[int, int]]:
    '''{child name: (trainable elements, all elements)} for each top-level child, plus "total".'''
    ### BEGIN SOLUTION
    counts = {}
    for name, child in model.named_children():
        params = list(child.parameters())
        counts[name] = (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
    counts["total"] = (sum(t for t, _ in counts.values()), sum(n for _, n in counts.values()))
    return counts
    ### END SOLUTION


# %% tags=["grader"]
nb06.check_trainable_counts(trainable_counts)

# %% [markdown]
# The table per stage, ours from the package (`stages.freeze` returns `train.count_parameters`) and LLaVA-13B's from
# its architecture: CLIP ViT-L/14 at 224 px and a 13B Llama (Vicuna-13B's shape) instantiated with transformers on the
# `meta` device (shapes only, no memory), and the linear $W$ of 1024 × 5120 + 5120.

# %%
ours = jobs.assemble(zoo.load("clip-mini").vision, zoo.load("vicuna-mini"), recipe.PROJECTOR)
with torch.device("meta"):  # parameters with shapes and no storage: counting LLaVA-13B costs nothing
    clip_l14 = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14,
        image_size=224))
    vicuna_13b = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=32000, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40))
llava_13b = {"vision": sum(p.numel() for p in clip_l14.parameters()), "projector": 1024 * 5120 + 5120,
             "lm": sum(p.numel() for p in vicuna_13b.parameters())}

print(f"{'':>10} | {'llava-mini: trainable of total':>32} | {'LLaVA-13B: trainable of total':>36}")
for stage in stages.STAGES:
    counts = stages.freeze(ours, stage)
    trains = {"vision": False, "projector": True, "lm": stage == 2}
    theirs = {part: (n if trains[part] else 0, n) for part, n in llava_13b.items()}
    theirs["total"] = tuple(sum(v[i] for v in theirs.values()) for i in (0, 1))
    print(f"stage {stage}")
    for part in ("vision", "projector", "lm", "total"):
        (t, n), (tt, tn) = counts[part], theirs[part]
        print(f"{part:>10} | {t:>12,} of {n:>9,} ({t / n:>6.1%}) | {tt:>15,} of {tn:>14,} ({tt / tn:>6.2%})")

# %% [markdown]
# Stage 1 trains one parameter in a hundred of ours and four in ten thousand of LLaVA-13B's; stage 2 trains all but
# the vision tower (42% of ours, whose tower is larger than its LLM; 97.7% of LLaVA-13B's, whose LLM dwarfs its
# tower). That is the cost argument for
# stage 1: only $W$ needs gradients and Adam's two moment tensors, so LLaVA's stage 1 took about 4 hours on 8 A100s
# and its stage 2 about 10 (App. C) — though the backward pass still runs *through* the frozen 13B LLM, to reach $W$.
#
# ## 3. The optimizer's parameter groups
#
# An optimizer should hold exactly what trains. transformers' `Trainer` (which LLaVA's `LLaVATrainer` subclasses) builds
# its groups from the parameters with `requires_grad`; LLaVA adds `--mm_projector_lr`, which puts the projector in a
# group of its own with its own learning rate — LLaVA-1.5's LoRA recipe trains its LoRA adapters at 2e-4 and the
# projector, already aligned in stage 1, at 2e-5. The flag chooses a learning rate, not whether $W$ trains: without it
# the projector trains at the common rate.
#
# ### Exercise 6.3 — parameter groups
#
# Write `optimizer_groups(model, lr, projector_lr=None)`: a list of dicts `{"params": [tensors], "lr": float}` for
# `torch.optim.AdamW`, holding every tensor that requires a gradient, and nothing else. Without `projector_lr`: one
# group at `lr`. With it: $W$'s tensors (`model.projector`) in a group at `projector_lr`, the other trainable tensors
# in a group at `lr`; leave out a group that would be empty (stage 1 has no other trainable tensors), and put no
# tensor in two groups. Change nothing of the model. About 8 lines.

# %% tags=["exercise"]
def optimizer_groups(model, lr: float, projector_lr: float | None = None) -> list[dict]:
    '''AdamW parameter groups over the trainable tensors; W in a group of its own when projector_lr is given.'''
    ### BEGIN SOLUTION
    trainable = [p for p in model.parameters() if p.requires_grad]
    if projector_lr is None:
        return [{"params": trainable, "lr": lr}]
    w = {id(p) for p in model.projector.parameters()}
    groups = [{"params": [p for p in trainable if id(p) in w], "lr": projector_lr},
              {"params": [p for p in trainable if id(p) not in w], "lr": lr}]
    return [group for group in groups if group["params"]]
    ### END SOLUTION


# %% tags=["grader"]
nb06.check_optimizer_groups(optimizer_groups)

# %% [markdown]
# ## 4. Stage 1's forward pass: $g$ under `no_grad`, $f_\phi$ frozen but differentiated through
#
# `LlavaMini.forward` (notebooks 04 and 05) computes $Z_v = g(X_v)$, $H_v = W \cdot Z_v$, puts $H_v$ where the ids hold
# the image placeholder, and returns the LLM's answer-token loss. It needs no `no_grad`: a tower whose tensors are all
# frozen records no graph anyway. LLaVA's CLIP encoder runs under `torch.no_grad()` all the same, which makes "the
# tower never trains" hold whatever its flags say — a tower unfrozen by mistake still gets no gradient and stores no
# activations for a backward pass. The LLM is the opposite case: frozen, but in the middle of the gradient's path.
#
# ### Exercise 6.4 — the stage-1 loss, written out
#
# Write `stage1_loss(model, batch)` for a batch of `plain` caption pairs (`input_ids`, `attention_mask`, `labels`,
# `pixel_values`, as `corpora.Batches` makes them): $Z_v$ = `model.vision.features(pixel_values)` under
# `torch.no_grad()`; $H_v$ = `model.projector(Z_v)`, shape (B, N, D); the token embeddings
# `model.lm.embed_tokens(input_ids)` with the rows where `input_ids == model.config.image_token_id` replaced by $H_v$
# in order (`masked_scatter`, notebook 04); then `model.lm(inputs_embeds=..., attention_mask=..., labels=...).loss`.
# Return that loss, a 0-dim float32 tensor that carries $W$'s gradient. Leave the batch as it is. The grader compares
# value and $W$'s gradient with `LlavaMini.forward` (switched off, with `embed` and `encode_images`, while yours
# runs), and checks on a tower whose flags were left on that no gradient reaches it. About 7 lines.

# %% tags=["exercise"]
def stage1_loss(model, batch: dict) -> torch.Tensor:
    '''Stage 1's answer-token loss of a plain batch: g under no_grad, W, and the frozen f_φ on the gradient's path.'''
    ### BEGIN SOLUTION
    with torch.no_grad():
        z_v = model.vision.features(batch["pixel_values"])  # (B, N, d_v): never trains, no graph recorded
    h_v = model.projector(z_v)  # (B, N, D)
    embeds = model.lm.embed_tokens(batch["input_ids"])  # (B, T, D)
    is_image = (batch["input_ids"] == model.config.image_token_id)[..., None].expand_as(embeds)  # (B, T, D)
    embeds = embeds.masked_scatter(is_image, h_v)
    return model.lm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    ### END SOLUTION


# %% tags=["grader"]
nb06.check_stage1_loss(stage1_loss)

# %% [markdown]
# ## 5. Stage 1, run
#
# Now the run itself: `clip-mini` and `vicuna-mini` from the zoo, a fresh linear $W$ (`jobs.assemble`, seeded), frozen
# for stage 1, the 8,000 caption pairs stage 1 reads (`stages.examples`), batched as the recipe batches them, and the
# trainer with the zoo's own configuration — `recipe.STAGE1_TRAIN`, 3000 steps of 64 at lr 3e-3 with its cosine
# schedule over the 3000 steps. This is `stages.train`, the job that built `llava-mini-stage1`, spelled out so that an
# evaluation hook can measure the captions every 100 steps (in eval mode, without gradients: it changes nothing of the
# training) and stop the run after 600 steps. **The zoo's `llava-mini-stage1` is this run continued for 2400 more
# steps**, on one thread as here (`recipe.BUILD_THREADS`).
#
# Every 100 steps the hook writes captions of the same 100 test scenes (the `plain` prompt: `<s>`, the image, nothing
# else) and scores them with `evaluate.caption_f1`: the F1 of the (colour, shape, position) objects a caption names
# against the scene. The trainer prints its loss every 50 steps while it runs (that cell's output is a log and is not
# compared when the notebook is graded).

# %% tags=["nbval-ignore-output"]
STEPS, EVAL_EVERY, N_TEST = 600, 100, 100
torch.set_num_threads(1)  # hundreds of small steps: one thread is faster, and it is how the zoo was built
model = jobs.assemble(zoo.load("clip-mini").vision, zoo.load("vicuna-mini"), recipe.PROJECTOR)
stages.freeze(model, 1)
examples = stages.examples(1, world.split_seeds("train", recipe.STAGE1_SCENES), tokenizer, model.num_image_tokens,
                           teacher=recipe.TEACHER)
batches = corpora.Batches(examples, tokenizer, recipe.STAGE1_TRAIN.batch_size, recipe.STAGE1_TRAIN.seed,
                          model.config.vision.image_size, group_by_length=True)
before = evaluate.caption_f1(model, tokenizer, n=N_TEST)
curve = {0: before[0]}


def every_100_steps(step: int, losses: list[float]) -> bool:
    '''The fit hook: caption F1 on the test scenes; True (stop) after STEPS steps.'''
    curve[step] = evaluate.caption_f1(model, tokenizer, n=N_TEST)[0]
    print(f"step {step:>4}: caption F1 on {N_TEST} test scenes {curve[step]:.3f}")
    return step >= STEPS


run = dataclasses.replace(recipe.STAGE1_TRAIN, eval_every=EVAL_EVERY, log_every=50, progress=False)
losses = train.fit(model, batches, run, evaluate=every_100_steps)
after = evaluate.caption_f1(model, tokenizer, n=N_TEST)
torch.set_num_threads(2)  # back to the notebook's setting (setup_notebook)

# %%
stage1 = zoo.load("llava-mini-stage1")
torch.set_num_threads(1)  # generation: many tiny steps
finished = evaluate.caption_f1(stage1, tokenizer, n=N_TEST)
torch.set_num_threads(2)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2), layout="constrained")
ax1.plot(np.arange(1, len(losses) + 1), losses, lw=0.8)
ax1.set(xlabel="step", ylabel="caption loss per token", yscale="log", title="the loss of stage 1's first 600 steps")
ax2.plot(list(curve), list(curve.values()), "o-", label="this run")
ax2.axhline(finished[0], color="grey", ls="--", label="zoo: the same run at step 3000")
ax2.set(xlabel="step", ylabel="caption F1", ylim=(0, 1), title=f"captions of {N_TEST} test scenes")
ax2.legend(fontsize=8)
plt.show()
print(f"loss: first 10 steps {np.mean(losses[:10]):.1f}, last 10 steps {np.mean(losses[-10:]):.2f} "
      f"(the zoo's run ended at {manifest['llava-mini-stage1']['metrics']['loss']:.2f})")
print(f"caption F1 on {N_TEST} test scenes: step 0 {before[0]:.2f}, step {STEPS} {after[0]:.2f}, "
      f"step {STAGE1['steps']} (zoo) {finished[0]:.2f}")
for i in range(3):
    scene = world.sample_scene(world.SPLITS["test"][i])
    print(f"\ntest scene {scene.seed}: " + ", ".join(f"{o.size} {o.colour} {o.shape} in the {o.position}"
                                                    for o in scene.objects))
    for when, captions in ((f"step {0:>4}", before[1]), (f"step {STEPS:>4}", after[1]),
                           (f"step {STAGE1['steps']}", finished[1])):
        print("  " + textwrap.shorten(f"{when}: {captions[i]}", 116))

# %% [markdown]
# **What the run shows.** Before training, $W$ is random and the frozen LLM reads noise: its "captions" are word salad
# or captions of some other scene (F1 0.01). The loss falls fastest in the first 150 steps, while the warm-up ends,
# and the captions follow: by step 600 they have the right number of objects and about half the colours right, with shapes
# and positions still often wrong (F1 0.45; the F1 wobbles from one measurement to the next, 0.53 at step 400, while
# the learning rate is still at its peak). The zoo's model, 2400 steps further on, names most objects right (0.75 on
# these 100 scenes, 0.71 on the manifest's 300). Nothing in the LLM changed: the same frozen weights
# that wrote word salad now write captions, because $W$ learned to hand them inputs they can read. The plot's left panel
# is noisy from step to step because each batch holds captions of one length group (`group_by_length`): long captions of
# three objects and short ones of one have different per-token losses.
#
# ## 6. What stage 1 does not give: instruction following
#
# The zoo's `llava-mini-stage1` captions. Does it do what it is asked? Below, three test scenes with LLaVA's two
# free-form instruction types, written by the teacher (notebook 01): a detailed-description request and a
# complex-reasoning question ("... Explain before you answer."). Each has a definite answer, the teacher's, printed
# beside the model's reply.

# %%
torch.set_num_threads(1)
for seed in world.split_seeds("test", 3):
    by_type, _ = data.scene_records(seed, recipe.TEACHER)
    scene = world.sample_scene(seed)
    print(f"test scene {seed}")
    for kind in ("detail", "complex_reasoning"):
        question, reference = (turn["value"] for turn in by_type[kind][0]["conversations"][:2])
        question = question.replace("<image>", "").strip()
        reply = evaluate.answer(stage1, tokenizer, [scene], [question], max_new_tokens=160)[0]
        print("  " + textwrap.shorten(f"asked:   {question}", 116))
        print(textwrap.fill(f"  teacher: {reference}", 118, subsequent_indent="           "))
        print(textwrap.fill(f"  stage 1: {reply}", 118, subsequent_indent="           "))
torch.set_num_threads(2)

# %% [markdown]
# The stage-1 model answers each request with **one short sentence** — no enumeration of the objects, no steps, no
# "so the answer is" — and the sentence is often wrong. It neither describes in detail nor reasons. Its reply is not a
# caption either, unlike the real LLaVA's stage-1 model, which tends to answer any question with a caption: our
# `vicuna-mini` was pre-trained on chats about a scene given as cell tokens, each answer one sentence, and it answers
# in that register whatever it is asked. Over 100 test scenes, and beside the zoo's `llava-mini` after stage 2 (notebook 07):

# %%
def follows(model, n: int = 100) -> dict[str, float]:
    '''Over n test scenes: the share of detail requests answered with 3+ sentences, and the share of reasoning
    questions answered with a conclusion ("so the answer is").'''
    scenes = [world.sample_scene(s) for s in world.split_seeds("test", n)]
    asked = {kind: [] for kind in ("detail", "complex_reasoning")}
    for scene in scenes:
        by_type, _ = data.scene_records(scene.seed, recipe.TEACHER)
        for kind in asked:
            asked[kind].append(by_type[kind][0]["conversations"][0]["value"].replace("<image>", "").strip())
    details = evaluate.answer(model, tokenizer, scenes, asked["detail"], max_new_tokens=160)
    reasons = evaluate.answer(model, tokenizer, scenes, asked["complex_reasoning"], max_new_tokens=160)
    return {"detail: 3+ sentences": np.mean([len(re.findall(r"\.(?:\s|$)", d)) >= 3 for d in details]),
            "reasoning: a conclusion": np.mean([evaluate.conclusion(r) is not None for r in reasons])}


torch.set_num_threads(1)
stage2 = zoo.load("llava-mini")
shares = {"llava-mini-stage1": follows(stage1), "llava-mini (stage 2)": follows(stage2)}
torch.set_num_threads(2)
print(f"{'':>22} | " + " | ".join(f"{k:>23}" for k in shares["llava-mini-stage1"]) +
      " | manifest: caption F1, description F1, reasoning, short-answer accuracy")
for name, row in shares.items():
    metrics = manifest[name.split(" ")[0]]["metrics"]
    acc = metrics["accuracy"]
    caption = f"{metrics['caption_f1']:.2f}" if "caption_f1" in metrics else "—"
    print(f"{name:>22} | " + " | ".join(f"{v:>23.2f}" for v in row.values()) +
          f" | {caption}, {acc['description']:.2f}, {acc['reasoning']:.2f}, {acc['overall']:.2f}")

# %% [markdown]
# The manifest says the same on 300 test scenes: `llava-mini-stage1` captions at F1 0.71 but scores 0.14 on detailed
# descriptions and 0 on reasoning, and answers 0.53 of the short questions right (colour, count, position ...). Stage 2
# takes the descriptions to 0.91, reasoning to 0.58 and the short answers to 0.87 — and its captions drop (F1 0.37 in the
# table above): stage 2 never asks for the bare `plain` caption again, so the format fades. LLaVA's Table 4 makes the same point
# at scale: without instruction tuning, 21.5 on LLaVA-Bench (COCO) against 85.1 with it. Stage 1 makes the image
# *readable*; following instructions about it is learned in stage 2, in the LLM's weights.
#
# ## 7. The contrast: stage 1 on an LLM that never learned to read a context
#
# Why may the LLM stay frozen in stage 1? Because a frozen LLM that already reads its context is all $W$ needs: $W$ only
# has to write, in the LLM's input space, something the LLM knows how to use. The zoo's `vicuna-mini` was pre-trained to
# chat about a scene given as *bound cell tokens* (notebook 04: each cell of the grid as a sum of word embeddings), so it
# reads its context, and stage 1 has a target to align to. `plain-lm` has the same shape and was trained on the same chats
# with **no scene at all**: it learned the text of the answers, never to look anything up. (It also trained shorter:
# 1000 steps against vicuna-mini's 5500, a second difference between the two that the next cell's test does not depend
# on, since it hands each LLM the scene directly.) The zoo ran the identical stage
# 1 on it (`plain-lm-stage1`: same tower, same data, same 3000 steps).
#
# The cleanest test of "can this LLM read a context" skips $W$ altogether: hand each LLM the scene as perfect cell tokens,
# the best input any $W$ could write, and ask for a caption.

# %%
torch.set_num_threads(1)
readers = {name: evaluate.caption_f1(zoo.load(name), tokenizer, n=N_TEST)[0] for name in ("vicuna-mini", "plain-lm")}
plain_stage1 = zoo.load("plain-lm-stage1")
plain_captions = evaluate.caption_f1(plain_stage1, tokenizer, n=N_TEST)
torch.set_num_threads(2)
print(f"{'LLM':>12} | caption F1, reading the scene as cell tokens | caption F1 after stage 1 (manifest, 300 scenes)")
for name, f1 in readers.items():
    after_stage1 = manifest["llava-mini-stage1" if name == "vicuna-mini" else "plain-lm-stage1"]["metrics"]
    print(f"{name:>12} | {f1:>44.2f} | {after_stage1['caption_f1']:>47.2f}")
print(f"\nplain-lm-stage1 on {N_TEST} test scenes: caption F1 {plain_captions[0]:.2f}; "
      f"{len(set(plain_captions[1]))} different captions")
for i in range(3):
    scene = world.sample_scene(world.SPLITS["test"][i])
    print("  " + textwrap.shorten(f"scene {scene.seed} ({', '.join(f'{o.colour} {o.shape}' for o in scene.objects)}): "
                                 f"{plain_captions[1][i]!r}", 116))
print(f"final training loss of stage 1: vicuna-mini {manifest['llava-mini-stage1']['metrics']['loss']:.2f}, "
      f"plain-lm {manifest['plain-lm-stage1']['metrics']['loss']:.2f} per caption token")

# %% [markdown]
# `vicuna-mini` captions perfectly from cell tokens (F1 1.00), and stage 1 gets a linear $W$ to 0.71 of that. `plain-lm`
# cannot caption even from perfect cell tokens (0.02): whatever sits at the image positions, it writes fluent,
# plausible captions of *some* scene — varied, grammatical, and unrelated to the image. Stage 1 on it ends at 0.11
# with a training loss three times higher: the gradient that reaches $W$ through a frozen LLM can only ask "which input
# makes the LLM write this caption?", and for an LLM whose writing does not depend on its input, no input does.
#
# That is the answer to "why freeze the LLM in stage 1", in two parts. Freezing is *safe* because the LLM already does
# the hard part — reading a context and turning it into language — so aligning the input is enough; and it is *wise*
# because training the LLM on short, noisy web captions would wear away what it knows (its language and its chat
# behaviour) to fit a caption style, while costing gradients and optimizer state for 13 billion parameters. Where the
# LLM cannot read a context, freezing it dooms stage 1; LLaVA relies on Vicuna reading its context as well as any LLM
# reads its prompt. And stage 2 unfreezes it because following instructions about an image — the detail, the reasoning
# — has to be learned by the LLM itself (section 6).

# %% [markdown]
# ## 8. Study question 3
#
# > **3) 说明 Stage 1 和 Stage 2 的具体训练流程，以及各自为什么冻结或解冻哪些模块。**
# >
# > *What exactly are the Stage 1 and Stage 2 training procedures, and why does each freeze or unfreeze which modules?*
#
# ### Which statements are true?
#
# - **(a)** Stage 1 trains only $W$, on image–caption pairs (CC-595K) in the `plain` format; the vision encoder and the
#   LLM are frozen.
# - **(b)** Stage 1 trains on GPT-4-generated instruction data, so that $W$ is aligned to the conversations of stage 2.
# - **(c)** Freezing the LLM in stage 1 works because the LLM already reads its context: $W$ only has to write inputs
#   it can use. An LLM that never learned to read a context gives $W$ nothing to align to (`plain-lm-stage1`: caption
#   F1 0.11 against 0.71).
# - **(d)** Stage 2 keeps the LLM frozen and trains only $W$, on the instruction data.
# - **(e)** The vision encoder stays frozen in both stages.
# - **(f)** Freezing the LLM in stage 1 protects its language and chat ability from being overwritten by short, noisy
#   captions, and makes the stage cheap: only $W$'s parameters need gradients and optimizer states.
# - **(g)** In stage 1 the LLM can run under `torch.no_grad()`: it is frozen either way, and memory is saved.
# - **(h)** After stage 1 the model already follows instructions such as "describe in detail" or "explain before you
#   answer", because its LLM was instruction-tuned.
# - **(i)** Stage 2 unfreezes the LLM because following instructions about an image — the format, the length, the
#   reasoning — has to be learned in the LLM's own weights; $W$ keeps training with it.
#
# Return the letters of **all** true statements, e.g. `"ace"`.

# %% tags=["exercise"]
def answer_study_q3() -> str:
    '''The letters of every true statement, e.g. "ace".'''
    ### BEGIN SOLUTION
    return "acefi"
    ### END SOLUTION


# %% tags=["grader", "study-q3"]
nb06.check_study_q3(answer_study_q3)

# %% [markdown] tags=["solution-only"]
# **A model answer.** (a), (c), (e), (f) and (i) are true. Stage 1 reads raw captions (CC3M filtered to 595K), not
# GPT-4 data (b is false), and trains $W$ alone at lr 2e-3 for one epoch: a "compatible visual tokenizer for the frozen
# LLM". Section 7 measured why that is enough: `vicuna-mini` already reads a context, so aligning the input suffices
# (c); `plain-lm` does not, and the same stage 1 fails on it. Freezing also keeps the captions' style from overwriting
# the LLM and spares gradients and Adam states for it (f) — though not the backward pass through it, which $W$'s
# gradient needs; so (g) is false: `no_grad` around the LLM leaves $W$ without a gradient (exercise 6.4's grader,
# notebook 05 section 6). Stage 2 trains $W$ and the LLM on LLaVA-Instruct-158K (three epochs, lr 2e-5) because the
# instruction following lives in the LLM (i), unlike MiniGPT-4, which keeps Vicuna frozen (d is false); section 6 showed
# the stage-1 model does not follow instructions (h is false). CLIP stays frozen throughout (e): it is already aligned to
# language at web scale, the data are small, and memory is short; later LLaVA variants (LLaVA-NeXT) unfreeze it with
# a learning rate of its own, much smaller than the LLM's.

# %% [markdown]
# ## Questionnaire
#
# Not graded: questions to think about before notebook 07. Write your answers down.
#
# 1. LLaVA's stage 1 saves only `mm_projector.bin`. What does a stage-2 run need to load besides it, and what would go
#    wrong if it loaded a different Vicuna checkpoint than the one stage 1 aligned to?
# 2. Exercise 6.4 put the vision tower under `no_grad` and the LLM not. Which of the two choices saves memory, and how
#    much of the saving would you lose if the tower were merely frozen?
# 3. Our stage 1 ran 24 epochs over 8,000 captions; LLaVA's ran one over 595K. What does each regime risk, and which
#    of this notebook's measurements would show over-fitting of $W$?
# 4. The stage-1 model answered "Describe the image in detail" with one sentence, the real LLaVA's stage-1 model
#    with a caption. What does each habit tell you about the LLM that was frozen?
# 5. Section 7 handed `plain-lm` perfect cell tokens. Design the analogous test for a real LLM: how would you check,
#    before running stage 1, that it reads a context well enough for a frozen-LLM alignment to work?
# 6. With `--mm_projector_lr` and a projector learning rate ten times the LLM's, which of the two moves more in the
#    first steps of stage 2, and why might that be what you want right after stage 1?
# 7. Stage 1 trained 1% of our model's parameters and 0.04% of LLaVA-13B's. Why is the backward pass of stage 1 still
#    far from 1% of stage 2's, in time and in activation memory?
# 8. Suppose stage 1 were skipped and stage 2 started from a random $W$ (LLaVA's Table 8: 85.81 against 90.92 on
#    ScienceQA). What would the LLM's first updates of stage 2 be spent on?
