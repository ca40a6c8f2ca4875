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
# # 10 — Failure modes and beyond: binding, several images, knowledge
#
# LLaVA's paper ends its chatbot section with two failures (§5.1, Table 6). Shown a fridge and asked whether there
# is "strawberry-flavored yogurt", LLaVA says yes: the fridge holds yogurt and, separately, strawberries. The authors
# read it as the model perceiving the image as "a bag of patches", failing to grasp the relations between them. And
# asked which restaurant a bowl of ramen comes from, it would need "large knowledge coverage" and perhaps to "retrieve
# relevant multimodal information from Internet". A third limit is in the recipe itself: one image per conversation.
# LLaVA-1.5 (§5) lists the "lack of multiple-image understanding" among its open problems.
#
# This notebook puts the zoo's `llava-mini` through the three, measures each failure with an interval, and tries the
# smallest fix that the literature suggests, in a short training run each.
#
# ### Goals
# After this notebook you can
#
# 1. write the conjunction foils of a scene (exercise 10.1) and measure the false-"yes" rate on them, for the patch
#    grid and for the same tokens shuffled (exercise 10.2); say why a mean-pooled "bag of features" cannot bind;
# 2. measure how yes-heavy instruction data (the teacher's `yes_ratio`) raises false yeses, where, and what more foils
#    in the data do about it; measure the relation questions LLaVA is said to be weak at, and what a small model's
#    own chain of reasoning costs its answers, in LLaVA's order and with the answer first (the paper's Table 8);
# 3. write a multi-image prompt (exercise 10.3), show what the single-image model does with two images or three
#    frames zero-shot, and what a little interleaved data fixes — and what it only seems to fix;
# 4. teach a fact that no pixel shows by fine-tuning and by retrieval, change it, and say which one updates;
# 5. answer study questions 7, 12 and 17.
#
# ### Time
# About **60 minutes**: 35 of reading, three exercises of 5 minutes, three study questions. Running every cell
# (strict `pytest --nbval`) took 140 s on 2 CPU cores with nothing else running (2026-12-06, section 2's reasoning
# cells included: about 3 s of it); four earlier runs on cores shared with another engineer's notebook runs took
# 130 to 149 s. On a slower machine kind (the same AMD EPYC model with AVX2 kernels instead of AVX-512; 2026-12-07,
# nothing else running, section 2 with its third model) two runs took 162 and 183 s, the second 3 s over the
# 3-minute budget.
# Seven short training runs (100 to 200 steps of 32 questions each, from the zoo's `llava-mini`, on one thread) take
# most of it; each prints its loss every 40 steps while it trains (a log, not compared when the notebook is graded).
#
# ### Numbers to expect
# Every number comes with a 95% bootstrap interval over the test questions. `llava-mini` says yes to 5% of 150
# conjunction foils with its image tokens in order, 4% shuffled; shuffling costs position questions 35 points and
# relation questions 11, and leaves existence alone. Mean-pooled summed attribute embeddings make a scene and its foil
# twin identical. Yes-heavy data (`yes_ratio` 0.9) raises the false yeses on foils by 26 points and on absent objects
# not at all; making every "no" a foil takes 15 of the 26 back. Relations are the weakest category (0.63 against
# existence 0.98). Reasoning first, `llava-mini` concludes 0.58 of 99 existence questions right against 0.95 answered
# directly; its answer-first twin 0.94, `llava-mini-listing` 0.96. With two images or three frames the zoo's model is
# at chance; 200 steps of interleaved data lift the easy which-image task to 1.00 and the motion task to 0.57, but not
# the foil version of which-image (0.51, a gain within noise). A fact fine-tuned in is right 56% of the time (chance
# 20%) and stale after a change (4%); retrieved, it is right 50% before the change and 49% after it.

# %% [markdown]
# ## 0. Set-up

# %%
import copy
import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import torch

from llava_mini import cells, evaluate, failures, stages, train, world, zoo
from llava_mini.course import setup_notebook
from llava_mini.grading import nb10
from llava_mini.tokenizer import load_tokenizer

setup_notebook(seed=0)
tokenizer = load_tokenizer()
model = zoo.load("llava-mini", kind="llava")
print(f"llava-mini: {model.num_image_tokens} image tokens per image (one per cell of the 3x3 grid), "
      f"an LLM {model.config.lm.dim} wide and {model.config.lm.layers} layers deep")


def rate(values) -> str:
    """A share with its 95% bootstrap interval over the items, e.g. '0.12 [0.07, 0.18]'."""
    low, high = failures.bootstrap_ci(values)
    return f"{np.mean(values):.2f} [{low:.2f}, {high:.2f}]"


def difference(a, b, paired=True) -> str:
    """mean(a) - mean(b) with its 95% bootstrap interval."""
    low, high = failures.diff_ci(a, b, paired=paired)
    return f"{np.mean(a) - np.mean(b):+.2f} [{low:+.2f}, {high:+.2f}]"


def fine_tune(start, items, steps, lr=1e-3, seed=0):
    """A copy of `start` after a short stage 2 (W and the LLM train, g frozen) on `items`, batches of 32."""
    tuned = copy.deepcopy(start)
    stages.freeze(tuned, 2)
    run = train.TrainConfig(steps=steps, batch_size=32, lr=lr, seed=seed, log_every=40, progress=False)
    torch.set_num_threads(1)  # hundreds of small steps: one thread is faster (notebook 06)
    train.fit(tuned, failures.Items(items, tokenizer, tuned.num_image_tokens, 32, seed), run)
    torch.set_num_threads(2)  # back to the notebook's setting (setup_notebook)
    return tuned.eval()


# %% [markdown]
# ## 1. The strawberry yogurt: conjunction foils
#
# A question about a *conjunction* ("a red circle") can be answered by checking each attribute on its own ("is
# anything red?", "is anything a circle?") only when the scene has no **conjunction foil**: a red object that is not
# a circle *and* a circle that is not red. Strawberries beside yogurt are the foil of strawberry yogurt. The teacher
# already asks about foils (one "no" question in three, `teacher.NO_KINDS`); here we write them ourselves.
#
# ### Exercise 10.1 — the foils of a scene
#
# Write `conjunction_foils(objects)`: the `(colour, shape)` pairs whose colour is on some object of the scene and
# whose shape is on some object, but never on the same object, as a sorted list without repeats. Each object has
# `.colour` and `.shape`. A red square and a blue circle have two foils, `[("blue", "square"), ("red", "circle")]`;
# one object has none.

# %% tags=["exercise"]
def conjunction_foils(objects):
    ### BEGIN SOLUTION
    combos = {(o.colour, o.shape) for o in objects}
    colours, shapes = {o.colour for o in objects}, {o.shape for o in objects}
    return sorted((c, s) for c in colours for s in shapes if (c, s) not in combos)
    ### END SOLUTION


# %% tags=["grader"]
nb10.check_conjunction_foils(conjunction_foils)

# %% [markdown]
# The probe (`failures.binding_probe`) asks "Is there a C S?" about two-object scenes of three kinds, 150 of each:
# **yes** (a red circle and a blue square), **foil** (a red square and a blue circle) and **absent** (neither the
# colour nor the shape asked about is anywhere). A model that checks attributes one by one says yes to the foils.

# %%
probe = failures.binding_probe(150, seed=1)
KINDS = ("yes", "foil", "absent")
fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.6))
for ax, kind in zip(axes, KINDS):
    item = next(it for it in probe if it.kind == kind)
    ax.imshow(world.render(item.scenes[0]))
    ax.set_title(f"{kind}: {item.question}", fontsize=9)
    ax.axis("off")
plt.show()


# %%
def yes_rates(m, items=probe):
    """{kind: one 0/1 per question, 1 where the reply starts with "yes"} for the model's greedy replies."""
    torch.set_num_threads(1)  # generation is many tiny steps
    said_yes = np.array([r.startswith("yes") for r in failures.generate(m, tokenizer, items)], dtype=int)
    torch.set_num_threads(2)
    return {kind: said_yes[[it.kind == kind for it in items]] for kind in KINDS}


grid = yes_rates(model)
for kind in KINDS:
    print(f"llava-mini, the patch grid: says yes on {kind:>6}: {rate(grid[kind])}")

# %% [markdown]
# `llava-mini` is not fooled. Why not, when LLaVA is? Look at what one image token holds here: with 48-pixel images
# and 16-pixel patches, **one object lies in one patch**, so each of the 9 tokens of $Z_v$ carries its object's colour
# and shape *together*, bound by the vision tower before the LLM reads anything. A photo is different: a strawberry
# and a yogurt pot span hundreds of patches each, and "strawberry-flavoured" is a relation between patches that the
# tokens do not carry.
#
# Two controls make this concrete. **Shuffled patches**: if binding lives inside each token, the order of the tokens
# should not matter to it. **Mean pooling**: averaging the tokens into one vector keeps each attribute but can lose
# which goes with which.
#
# ### Exercise 10.2 — the shuffled-patch control
#
# Write `shuffle_tokens(z, generator)`: `z` is $Z_v$ of shape `(n_img, N, D)`; return a tensor of the same shape in
# which each image's N tokens appear in an order of their own, drawn with `torch.randperm(N, generator=generator)`,
# one permutation per image. A token moves whole (all D features together) and never leaves its image.

# %% tags=["exercise"]
def shuffle_tokens(z, generator):
    ### BEGIN SOLUTION
    order = torch.stack([torch.randperm(z.shape[1], generator=generator) for _ in range(z.shape[0])])  # (n_img, N)
    return torch.gather(z, 1, order[..., None].expand_as(z))  # (n_img, N, D)
    ### END SOLUTION


# %% tags=["grader"]
nb10.check_shuffle_tokens(shuffle_tokens)

# %% [markdown]
# `failures.ShuffledTokens` wraps $W$ so that it shuffles $Z_v$ (with the package's `shuffle_tokens`, the same as
# yours) before projecting. Same probe, and the teacher's questions about 200 held-out scenes, one per scene and
# short category where the scene has one (`failures.category_items`, scored by exact match of the sentence answer):
# position and relation questions need to know where each token came from.

# %%
shuffled_model = copy.deepcopy(model)
shuffled_model.projector = failures.ShuffledTokens(model.projector, seed=0)
shuffled = yes_rates(shuffled_model)
for kind in KINDS:
    print(f"shuffled patches: says yes on {kind:>6}: {rate(shuffled[kind])}  (grid {np.mean(grid[kind]):.2f})")

CATEGORIES = ("colour", "shape", "count", "existence", "position", "relation")
test_questions = {c: failures.category_items(world.split_seeds("test", 200), c) for c in CATEGORIES}


def by_category(m, n=200):
    """{category: one 0/1 per question} on the first n test questions of each category."""
    torch.set_num_threads(1)
    correct = {c: failures.exact(m, tokenizer, test_questions[c][:n]) for c in CATEGORIES}
    torch.set_num_threads(2)
    return correct


by_model = {"grid": by_category(model), "shuffled": by_category(shuffled_model)}
for category in CATEGORIES:
    g, s = by_model["grid"][category], by_model["shuffled"][category]
    print(f"{category:>9} ({len(g)} questions): grid {rate(g)}, shuffled {rate(s)}, difference {difference(s, g)}")

# %% [markdown] tags=["solution-only"]
# **What the controls show.** Shuffling the tokens leaves the foils alone: the false-yes rate on foils stays where
# the grid's is (0.04 against 0.05), so binding does not come from where a token sits but from what it holds.
# Shuffling costs the questions that need *where*: position answers lose the most (35 points), relation answers lose
# 11 (a relation compares the cells of two objects), and colour and shape questions lose too (many of them name the
# object by its position: "What colour is the object in the top left?"); count and existence, which need no position,
# do not move (their intervals contain 0). (The shuffled model still answers many position questions right: the
# vision tower added position embeddings to each token, and some of that survives to the layer W reads — notebook
# 02's cell probe.) So "bag of patches" is two claims in one: a model that reads its tokens as an unordered bag loses
# positions, and the relations built on them, as measured here; it loses *binding* only where one object's attributes
# are split across tokens — one token per object, as here, keeps them bound.

# %% [markdown]
# ### Mean pooling: a bag of features
#
# The projector zoo has a mean-pool baseline (`projector.MeanPoolProjector`: one token, $W \cdot \overline{Z_v}$).
# Training a model on it takes longer than this notebook has (while the notebook was written, a mean-pool model
# fine-tuned for four times as long as section 2's runs still said yes about as often whatever the scene held), so
# here is the argument instead, measured on the representations themselves.
# Take **twins**: a yes scene (red circle, blue square) and its foil (red square, blue circle), with the same cells,
# sizes and jitter, differing only in which shape carries which colour. A reader can tell a twin pair apart only if
# their representations differ. Compare how far apart the twins are, against two unrelated scenes, for
#
# - the **cell tokens** that `vicuna-mini` was pre-trained to read (`llava_mini.cells`): each cell is the *sum* of
#   its words' embeddings (size + colour + shape + row + column), and for the mean over cells;
# - the vision tower's $Z_v$, as a grid and mean-pooled.

# %%
def twins(n, seed=2):
    """n (yes scene, foil scene) pairs: the same two cells, sizes and jitter, the shapes swapped."""
    pairs = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        (c1, c2), (s1, s2) = (rng.choice(words, 2, replace=False) for words in (world.COLOURS, world.SHAPES))
        at, jitter = [int(c) for c in rng.choice(world.N_CELLS, 2, replace=False)], int(rng.integers(2**31))
        pairs.append(tuple(failures.scene_with([(c1, a, "large"), (c2, b, "large")], jitter, at)
                           for a, b in ((s1, s2), (s2, s1))))
    return pairs


pairs = twins(150)
strangers = twins(150, seed=3)


@torch.no_grad()
def representations(scenes):
    """{name: (n, features)} for the cell tokens and Z_v, as a grid (flattened) and mean-pooled."""
    table = torch.tensor([cells.cell_words(s, tokenizer) for s in scenes])  # (n, 9, words per cell)
    cell_tokens = cells.embed_cells(model.lm.embed_tokens, table)  # (n, 9, D): each cell the sum of its words
    z = model.vision.features(world.pixel_values(world.render_batch(scenes)))  # (n, 9, 64)
    return {"cell tokens, grid": cell_tokens.flatten(1), "cell tokens, mean": cell_tokens.mean(1),
            "Z_v, grid": z.flatten(1), "Z_v, mean": z.mean(1)}


def distances(pairs_):
    a, b = (representations([p[k] for p in pairs_]) for k in (0, 1))
    return {name: (a[name] - b[name]).norm(dim=1).numpy() for name in a}


twin_gap, stranger_gap = distances(pairs), distances([(p[0], q[0]) for p, q in zip(pairs, strangers)])
for name in twin_gap:
    ratio = twin_gap[name] / stranger_gap[name].mean()
    print(f"{name:>18}: twins are {rate(ratio)} as far apart as two unrelated scenes")

# %% [markdown] tags=["solution-only"]
# **What the twins show.** Summed word embeddings are a bag of attributes: a cell holding "red" + "circle" is bound
# only because it is *one cell*; pool the cells and red + circle + blue + square is red + square + blue + circle —
# the twins become the same vector (distance 0), and no reader, however trained, can answer the foil right and the
# yes right at once. The grid keeps them apart. The vision tower's tokens are not sums: its MLPs bind colour and
# shape non-linearly within a patch, so even mean-pooled the twins stay apart, though closer (relative to unrelated
# scenes) than on the grid. Binding therefore survives pooling exactly as far as the encoder bound the attributes
# inside a token before pooling — which a photo's objects, spread over many patches, do not get.

# %% [markdown]
# ## 2. Yes-heavy data and the false yes
#
# POPE found LLaVA answering "yes" to almost every "is there a …?" question, and LLaVA-1.5 (§3.1) traces it to the
# lack of "no" examples in the instruction data. The teacher has the knob: `yes_ratio`, the share of existence
# questions whose answer is yes. Three short fine-tunings of `llava-mini` on the same 3,000 training scenes, one
# question each (half existence, half the other categories), differ only in the existence questions:
#
# - **balanced**: `yes_ratio=0.5`, the "no" questions a third foils (the teacher's mix): the control;
# - **yes-heavy**: `yes_ratio=0.9`, the same kinds of "no";
# - **yes-heavy, more foils**: `yes_ratio=0.9`, every "no" question a foil where the scene has one (the fix we test).

# %%
YES_STEPS = 100
train_seeds = world.split_seeds("train", 3000, start=300_000)
arms = {"balanced": dict(yes_ratio=0.5), "yes-heavy": dict(yes_ratio=0.9),
        "yes-heavy, more foils": dict(yes_ratio=0.9, foil_share=1.0)}
tuned = {}
for name, knobs in arms.items():
    print(f"--- {name}")
    tuned[name] = fine_tune(model, failures.qa_items(train_seeds, **knobs), YES_STEPS)

# %%
yes_after = {name: yes_rates(m) for name, m in tuned.items()}
for name, rates in yes_after.items():
    print(f"{name:>22}: " + ", ".join(f"yes on {kind} {rate(rates[kind])}" for kind in KINDS))
print("yes-heavy minus balanced, false yes on foils:  ",
      difference(yes_after["yes-heavy"]["foil"], yes_after["balanced"]["foil"]))
print("yes-heavy minus balanced, false yes on absent: ",
      difference(yes_after["yes-heavy"]["absent"], yes_after["balanced"]["absent"]))
print("more foils minus yes-heavy, false yes on foils:",
      difference(yes_after["yes-heavy, more foils"]["foil"], yes_after["yes-heavy"]["foil"]))
print("more foils minus balanced, false yes on foils: ",
      difference(yes_after["yes-heavy, more foils"]["foil"], yes_after["balanced"]["foil"]))

# %%
fig, ax = plt.subplots(figsize=(8, 3))
width = 0.2
for k, (name, rates) in enumerate({"llava-mini (zoo)": grid, **yes_after}.items()):
    means = [np.mean(rates[kind]) for kind in KINDS]
    errors = np.array([[m - failures.bootstrap_ci(rates[kind])[0], failures.bootstrap_ci(rates[kind])[1] - m]
                       for m, kind in zip(means, KINDS)]).T  # (2, kinds)
    ax.bar(np.arange(3) + (k - 1.5) * width, means, width, yerr=errors, capsize=3, label=name)
ax.set_xticks(range(3), [f"{kind} (right answer: {'yes' if kind == 'yes' else 'no'})" for kind in KINDS])
ax.set_ylabel('share of "yes" replies')
ax.set_title("Is there a C S? 150 questions per kind, 95% bootstrap intervals", fontsize=10)
ax.legend(fontsize=8, loc="upper right")
plt.show()

# %% [markdown] tags=["solution-only"]
# **What the three runs show.** Yes-heavy data raises the false yeses, and only on the foils: a scene with neither
# the colour nor the shape gives the model nothing to be tempted by (+0.00, the interval [0, 0]: both runs said yes
# to the same one of the 150 absent questions), while a foil gives it half the evidence for "yes" (26 points, the
# interval far from 0). The bias sits where the evidence is partial, as POPE's adversarial split (objects that
# co-occur with those present) is its hardest. Making every "no" a foil, at the same yes-heavy ratio, takes more than
# half of the foils' false yeses back (15 of the 26 points, the interval of that difference well below 0) without
# changing how often the model says yes where yes is right — but not all: the balanced run stays lower (0.07 against
# 0.19, a difference of 11 points whose interval lies above 0). The *kind* of "no" matters, and so does how many there
# are; LLaVA-1.5's fix was balanced short-answer data, and LLaVA-RLHF adds factual rewards. Each arm is one seed and
# one data draw: the intervals cover the choice of test questions, not the spread between training runs.

# %% [markdown]
# ### The relation questions
#
# LLaVA's own limitation list and the seed write-up say spatial relations are weak. Section 1's accuracy by category
# measured it for `llava-mini`: the relation row, against the category the model answers best.

# %%
grid_correct = by_model["grid"]
best = max(("colour", "shape", "count", "existence"), key=lambda c: np.mean(grid_correct[c]))
print(f"relation {rate(grid_correct['relation'])}, {best} {rate(grid_correct[best])}: difference "
      f"{difference(grid_correct['relation'], grid_correct[best], paired=False)}")

# %% [markdown] tags=["solution-only"]
# Relations are the weakest short-answer category, by a margin whose interval is far from 0. A relation needs two
# objects found and their cells compared: two steps, where the other questions need one lookup. Section 1 found that
# they use the order of the tokens (shuffling it cost them 11 points), yet with the order intact they still trail
# every other category, position included: the positions are there and used, and the second step, comparing two
# cells, is the likelier weak point; notebook 09's ablations are the place to try more capacity.

# %% [markdown]
# ### Reasoning that hurts: the order of steps and answer (LLaVA's Table 8)
#
# LLaVA's ScienceQA model gives its reasons before its answer, and Table 8 ablates the order: predicting the answer
# first scores 89.77, reasoning first 90.92 (13B), a gap the paper reads as faster convergence. Reasons first only
# help when the reasons are right. Chain-of-thought *prompting* helped only models of about 100B parameters, smaller
# ones writing fluent but illogical chains (Wei et al., 2022); our models are *trained* on chains, a different
# setting, but the question is the same: are a small model's own steps good enough to lean on?
#
# The teacher's reasoning records ask some of the conversations' own questions ("Is there a red cross?", "Is the A
# above the B?"), so the same question can be put to `llava-mini` two ways: with `teacher.REASONING_CUE` it writes
# its steps, then "so the answer is X"; without it, it answers as in a conversation, the answer first.
# `failures.reasoning_items` draws 150 such questions from unseen test scenes (from index 2000 of the test split, away
# from the scenes section 1 used) and `failures.reasoned_and_direct` scores both replies. The zoo's
# `llava-mini-answer-first` is `llava-mini`'s twin, trained from the same conversation-only checkpoint on the same
# mix, except that its existence and relation records open with the conversation's answer
# (`Teacher(reasoning="answer_first")`: "yes, there is a red cross. The small red cross in the top left is a red
# cross. …, so the answer is yes."). Unlike Table 8's answer-first model, it states the answer twice, first and
# last; we score the last, the conclusion. A third model, `llava-mini-listing`, is the answer-first twin with other
# steps: for existence, relation and which-is-larger questions, every object listed as a detailed description lists
# it ("No, there is no red cross. There is a small red circle in the top left. …, so the answer is no.";
# `Teacher(steps="listing")`), steps the model gets right about as often as its descriptions.

# %%
reasoning_questions = failures.reasoning_items(150, start=2000)
orders = {"llava-mini": model, **{name: zoo.load(name, kind="llava") for name in ("llava-mini-answer-first",
                                                                                  "llava-mini-listing")}}
scored = {name: failures.reasoned_and_direct(m, tokenizer, reasoning_questions) for name, m in orders.items()}
kinds = {kind: np.array([it.kind == kind for it in reasoning_questions]) for kind in ("existence", "relation")}
for kind, rows in kinds.items():
    print(f"{kind} ({rows.sum()} questions)")
    for name, (reasoned, direct, _) in scored.items():
        print(f"  {name:>23}: conclusion after its steps {rate(reasoned[rows])}, direct answer {rate(direct[rows])}, "
              f"difference {difference(reasoned[rows], direct[rows])}")

# %% [markdown]
# Are the steps any better when the answer comes first? `failures.false_steps` checks every step of a reply against
# its scene with the rules judge's step check (notebook 08), the opening answer left out; and for the twins we count
# how often its conclusion repeats its opening.

# %%
for name, (_, _, replies) in scored.items():
    wrong_steps, opened = failures.false_steps(replies, reasoning_questions), [failures.opening(r) for r in replies]
    for kind, rows in kinds.items():
        line = f"{name:>23}, {kind:>9}: replies with a false step {rate(wrong_steps[rows])}"
        if any(opened):
            same = [o == evaluate.conclusion(r) for o, r, row in zip(opened, replies, rows) if row]
            line += f"; conclusion = opening {rate(same)}"
        print(line)

# %%
def first_wrong(name, kind):
    """The first question of `kind` whose conclusion `name` got wrong, and that model's reply to it."""
    reasoned, _, replies = scored[name]
    i = next(i for i, it in enumerate(reasoning_questions) if it.kind == kind and not reasoned[i])
    return reasoning_questions[i], replies[i]


question, reply = first_wrong("llava-mini", "existence")
print(f"{question.question} (right answer: {question.answer})\nllava-mini: {reply}")
twin = scored["llava-mini-answer-first"][2][reasoning_questions.index(question)]
print(f"llava-mini-answer-first: {twin}")
question, reply = first_wrong("llava-mini-answer-first", "relation")
print(f"\n{question.question} (right answer: {question.answer})\nllava-mini-answer-first: {reply}")

# %% [markdown] tags=["solution-only"]
# **What the orders show.** Asked directly, `llava-mini` answers 0.95 of the existence questions right; asked to
# reason first, 0.58, an interval that holds the 0.5 of a coin. Its steps check each object against the colour and
# the shape asked, two thirds of its replies hold a false step (above: "is a purple triangle" of a green triangle),
# and the conclusion follows the steps. Relations lose too (0.43 after the steps, 0.67 directly), nearly every reply
# with a false step. At this size the chain costs more than it gives: the small-model end of Wei et al.'s curve, not
# LLaVA's 13B, where reasoning first was worth 1.15 points. The answer-first twin concludes the existence questions
# as well as it answers them directly (0.94 and 0.96) and repeats its opening in almost every conclusion, while about
# half its replies still hold a false step: in the example it calls the green triangle purple and still concludes
# "no". Its conclusion copies its first sentence and no longer depends on its steps. On relations the opening does
# not carry through (0.49, against 0.69 directly): the conclusion repeats the opening in only three replies of four,
# and almost every reply holds a false step (in the example, the green object becomes a blue circle "in the center",
# then "both are in the bottom row"). On LLaVA-Bench-mini the twin scores 77.0 against 75.1 (complex 60.7 against
# 49.3; the README's bench table), inside both intervals. The recipe keeps LLaVA's order: a better copy of the
# answer is not better reasoning. Are true steps enough? A run without the opening (`docs/recipe_log.md`, session
# 14) listed each object as a description does ("There is a large yellow diamond in the bottom right.") before the
# conclusion. Its listings named the asked object exactly when it was there 0.96 of the time, yet its conclusions
# agreed with its own listing only 0.46 of the time ("... There is a yellow diamond, so the answer is yes." to "Is
# there a blue diamond?"): the 2-block LLM's conclusion restates the nearest sentence, not the question.
# `llava-mini-listing` puts the two together: its existence steps are the truest of the three (a false step in 0.25
# of its replies, against 0.48 and 0.66), its conclusion right 0.96 of the time, and it repeats the opening in 0.99
# of the existence replies. Its relation replies list the scene too, and their conclusion repeats the opening more
# often (0.90 against the twin's 0.75), rising to 0.57 (the twin 0.49, inside both intervals), below the direct
# answer's 0.69; almost all of them still hold a false step, the comparison of rows or columns after the listing.
# It is the zoo's best model on LLaVA-Bench-mini (84.6 against 75.1, complex 77.7 against 49.3), and still a model
# that copies its answer and then lists what it sees: the steps are mostly true, but the answer does not come from
# them.

# %% [markdown]
# ## 3. Several images and a short video
#
# LlavaMini already splices several images into one sequence: each `<image>` becomes its N placeholders, and
# `pixel_values` lists the images in the order their placeholders appear (`llava.LlavaMini.embed`). What is missing
# is a prompt format and the data. We use LLaVA-NeXT-Interleave's style: one labelled line per image, then the
# question.
#
# ### Exercise 10.3 — the multi-image prompt
#
# Write `multi_image_prompt(question, k)`, the first human turn for k images. For one image it is LLaVA's usual
# `"<image>\n" + question`. For k ≥ 2 it is one line per image, numbered from 1, `"image 1: <image>\n"`, …,
# `"image k: <image>\n"`, then the question. (Every word must be in the closed vocabulary: "image", digits, ":" are.)

# %% tags=["exercise"]
def multi_image_prompt(question, k):
    ### BEGIN SOLUTION
    if k == 1:
        return "<image>\n" + question
    return "".join(f"image {i}: <image>\n" for i in range(1, k + 1)) + question
    ### END SOLUTION


# %% tags=["grader"]
nb10.check_multi_image_prompt(multi_image_prompt)

# %% [markdown]
# Two tasks, scored by **forced choice**: the model's likelihood of the right answer against each wrong one
# (`failures.choose`), so that a model that never learnt the answer's wording still gets a fair chance-level score.
#
# - **Which image**: "Is there a red circle in image 1 or image 2?" One image has it; the other has either nothing
#   red and no circle (*easy*) or its conjunction foil, a red square and a blue circle (*foil*). Chance: 1/2.
# - **Motion**: three frames of one object crossing a row or a column, one cell a frame, beside a still object:
#   "Is the red circle in image 3 to the left of, to the right of, above or below the red circle in image 1?"
#   Chance: 1/4.

# %%
which_easy = failures.which_image(150, seed=1, foil=False)
which_foil = failures.which_image(150, seed=1)
clips = failures.motion(150, seed=1)
fig, axes = plt.subplots(1, 5, figsize=(10, 2.4))
for ax, scene, title in zip(axes, which_foil[0].scenes + clips[0].scenes,
                            ("image 1", "image 2", "frame 1", "frame 2", "frame 3")):
    ax.imshow(world.render(scene))
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.show()
print(f"{which_foil[0].question} -> {which_foil[0].answer}\n{clips[0].question} -> {clips[0].answer}")


# %%
def frames_replaced(items, keep):
    """The clips with every frame replaced by frame `keep` (0-based): a single-frame control."""
    return [dataclasses.replace(it, scenes=(it.scenes[keep],) * len(it.scenes)) for it in items]


TASKS = {"which image, easy (chance .50)": which_easy, "which image, foil (chance .50)": which_foil,
         "motion (chance .25)": clips}
CONTROLS = {"motion, middle frame only": frames_replaced(clips, 1),
            "motion, last frame only": frames_replaced(clips, 2)}


def task_scores(m, tasks=TASKS):
    torch.set_num_threads(1)
    scores = {name: failures.choose(m, tokenizer, items) for name, items in tasks.items()}
    torch.set_num_threads(2)
    return scores


zero_shot = task_scores(model)
for name, right in zero_shot.items():
    print(f"zero-shot, {name:>31}: {rate(right)}")
print("greedy reply, zero-shot:", failures.generate(model, tokenizer, which_easy[:1] + clips[:1]))

# %% [markdown]
# Zero-shot, the single-image model is at chance on every task, and its greedy replies do not even take the task's
# form. Now a little interleaved data: 2,000 easy which-image items and 2,000 clips (none of the foil kind), with as
# many single-image questions mixed in so that the old skills keep being rehearsed (LLaVA-NeXT-Interleave mixes
# single-image data too), 200 steps.

# %%
interleaved = (failures.which_image(2000, seed=100, foil=False) + failures.motion(2000, seed=100)
               + failures.qa_items(world.split_seeds("train", 4000, start=500_000)))
multi_model = fine_tune(model, interleaved, 200, lr=2e-3)

# %%
after = task_scores(multi_model)
for name, right in after.items():
    print(f"{name:>31}: zero-shot {np.mean(zero_shot[name]):.2f}, after {rate(right)}, "
          f"gain {difference(right, zero_shot[name])}")
for name, right in task_scores(multi_model, CONTROLS).items():
    print(f"{name:>31}: after {rate(right)}, against all three frames "
          f"{difference(right, after['motion (chance .25)'])}")
print("greedy reply, after:", failures.generate(multi_model, tokenizer, which_foil[:1] + clips[:1]))

# %% [markdown] tags=["solution-only"]
# **What 200 steps fix, and what they only seem to.** The easy which-image task and the motion task rise well above
# chance (intervals of the gains far from 0; the easy task is solved outright, 1.00): the recipe transfers to several
# images as soon as the data asks for it, with no change to the model — and 200 steps, half of them single-image
# rehearsal, are not the end of the motion task's curve. Two controls say what was learnt. The *foil* version of
# "which image" gains nothing measurable (0.51, a gain of 2 points within noise), while the easy version is perfect:
# every easy training item could be solved by finding the image with anything red in it, and that is the shortcut
# the data rewarded; the binding the model has inside one image (section 1) did not become a comparison between
# images. The motion task has a shortcut too: on a 3×3 grid an object that crosses a row in three frames ends at an
# edge, so the last frame alone gives the direction away. The model did not take it: with every frame replaced by
# the last one (0.26) or by the middle one (0.19) it falls back to about chance (.25 lies in both intervals), so it
# compares frames. A benchmark must run such controls to tell the two apart: LLaVA-1.5 scored SEED-Bench's video
# questions from one middle frame.

# %% [markdown]
# ## 4. Knowledge: fine-tuning it in, or retrieving it
#
# LLaVA knows what its LLM and CLIP learnt in pre-training and what its instruction data said; it has no other
# memory. We teach `llava-mini` a fact that no pixel shows: every colour has a **key**, a number from 1 to 5
# (`failures.KEYS`: red 3, green 1, blue 4, yellow 5, purple 2). "What is the key of the circle?" needs the
# circle's colour, from the image, and the key, from memory. Two ways in, 150 steps each from `llava-mini`, each
# with as many ordinary questions mixed in:
#
# - **fine-tuning** (parametric): the questions and answers under the mapping, nothing else in the prompt;
# - **retrieval**: the same questions with the facts about the scene's colours written before them ("The key of a
#   red object is 3."), and a new random mapping in every training item, so that the only way to be right is to read.
#
# Then the facts change (mapping B: red 1, green 2, blue 3, yellow 4, purple 5; no colour keeps its key) and we ask
# again.

# %%
KEYS_B = {"red": 1, "green": 2, "blue": 3, "yellow": 4, "purple": 5}
KEY_STEPS = 150
test_seeds, key_seeds = world.split_seeds("test", 160), world.split_seeds("train", 3000, start=400_000)
replay = failures.qa_items(world.split_seeds("train", 3000, start=600_000))
ask = {"A, no facts": failures.key_items(test_seeds, failures.KEYS, retrieve=False),
       "B, no facts": failures.key_items(test_seeds, KEYS_B, retrieve=False),
       "A, facts in prompt": failures.key_items(test_seeds, failures.KEYS, retrieve=True),
       "B, facts in prompt": failures.key_items(test_seeds, KEYS_B, retrieve=True)}
print(f"{len(ask['A, no facts'])} test questions (chance .20); one with retrieval:\n  "
      f"{ask['A, facts in prompt'][0].question} -> {ask['A, facts in prompt'][0].answer}")

print("--- fine-tuning on mapping A")
parametric = fine_tune(model, failures.key_items(key_seeds, failures.KEYS, retrieve=False) + replay, KEY_STEPS)
print("--- retrieval: facts in the prompt, a random mapping per item")
retrieval = fine_tune(model, failures.key_items(key_seeds, None, retrieve=True) + replay, KEY_STEPS)
print("--- fine-tuning again, on mapping B (the update)")
updated = fine_tune(parametric, failures.key_items(key_seeds, KEYS_B, retrieve=False) + replay, KEY_STEPS)


# %%
def key_scores(m):
    torch.set_num_threads(1)
    scores = {name: failures.choose(m, tokenizer, items) for name, items in ask.items()}
    torch.set_num_threads(2)
    return scores


def ordinary(correct):
    """The first 100 test questions of each short category of section 1, pooled: one 0/1 each."""
    return np.concatenate([right[:100] for right in correct.values()])


knowledge = {"llava-mini": model, "fine-tuned on A": parametric, "retrieval-trained": retrieval,
             "fine-tuned on A, then B": updated}
keys_right = {name: key_scores(m) for name, m in knowledge.items()}
everyday = {name: ordinary(by_model["grid"] if m is model else by_category(m, n=100)) for name, m in knowledge.items()}
print(f"{'':>24}" + "".join(f"{q:>20}" for q in ask) + f"{'ordinary questions':>22}")
for name in knowledge:
    print(f"{name:>24}" + "".join(f"{np.mean(keys_right[name][q]):>20.2f}" for q in ask)
          + f"{np.mean(everyday[name]):>22.2f}")
print("\nintervals:")
print("  fine-tuned on A, asked under A:        ", rate(keys_right["fine-tuned on A"]["A, no facts"]))
print("  fine-tuned on A, B's facts in prompt:  ", rate(keys_right["fine-tuned on A"]["B, facts in prompt"]))
print("  retrieval, B's facts in prompt:        ", rate(keys_right["retrieval-trained"]["B, facts in prompt"]))
print("  updated to B, asked under B:           ", rate(keys_right["fine-tuned on A, then B"]["B, no facts"]))
print("  updated to B, asked under A (the old): ", rate(keys_right["fine-tuned on A, then B"]["A, no facts"]))
for name in list(knowledge)[1:]:
    print(f"  ordinary questions, {name} minus llava-mini: {difference(everyday[name], everyday['llava-mini'])}")

# %% [markdown] tags=["solution-only"]
# **Which one updates.** Fine-tuning puts mapping A into the weights: asked without facts, it answers under A far
# above chance (0.56). When the facts change, it is stale: under B it is below chance (0.04), and even with B's facts
# written in its prompt it keeps answering from its weights (0.06) — the parametric memory overrides the context it
# was never taught to read. The retrieval-trained model answers under A and under B alike (0.50 and 0.49), the moment
# the prompt says so, with no training: the update is an edit to a text, and the answer can be traced to the sentence
# it came from. (It is right a little less often than the fine-tuned model under its own mapping, 0.49 against 0.56;
# their intervals overlap.) Updating the fine-tuned model means another run, after which it knows B and has
# **forgotten A** (0.06, below chance): a weight holds one value. The ordinary questions tell what else training
# costs: with half the data ordinary questions, the retrieval-trained model and the model fine-tuned twice lose 5
# points on them each (intervals below 0), the model fine-tuned once 2 (an interval that reaches 0) — retrieval
# training is no cheaper than fine-tuning here: the cost comes from training on a narrow new task, whatever the kind
# of memory. (Drop `+ replay` and rerun to see how much more a run of key questions alone overwrites.) Retrieval
# costs one training run, once; fine-tuning costs one per change of the facts.

# %% [markdown]
# ## 5. Study questions
#
# ### Study question 7 — On which tasks does LLaVA fail? Failure modes and improvements
#
# - **(a)** LLaVA fails the strawberry-yogurt question because it keeps only the CLS token of the image.
# - **(b)** In section 1, shuffling the order of the image tokens left the false-yes rate on conjunction foils where
#   it was, and lowered the accuracy of position questions.
# - **(c)** Summed attribute embeddings, mean-pooled over the cells, give a yes scene and its foil twin the same
#   vector, so no reader of that vector can answer both right.
# - **(d)** In section 2, yes-heavy instruction data raised the false-yes rate most on conjunction foils.
# - **(e)** At the same yes-heavy ratio, making every "no" question a foil brought the false-yes rate on foils back
#   down to the balanced run's.
# - **(f)** Relation questions were `llava-mini`'s weakest short-answer category.
# - **(g)** Hallucination is purely a language-model problem: a better vision encoder cannot reduce it.
# - **(h)** In section 2, `llava-mini` concluded existence questions right less often after writing its own steps
#   than it answered the same questions directly.
# - **(i)** `llava-mini-answer-first`, trained on relation reasoning records that open with the conversation's answer,
#   concluded relation questions right after its steps as often as it answered them directly.
#
# Return the letters of **all** true statements, e.g. `"ace"`.

# %% tags=["exercise"]
def answer_study_q7() -> str:
    '''The letters of every true statement, e.g. "ace".'''
    ### BEGIN SOLUTION
    return "bcdfh"
    ### END SOLUTION


# %% tags=["grader", "study-q7"]
nb10.check_study_q7(answer_study_q7)

# %% [markdown] tags=["solution-only"]
# **A model answer.** (b), (c), (d), (f) and (h) are true. LLaVA keeps every patch token (a); the seed's "CLS only" story
# is a myth the course corrected in notebook 04. More foils took back more than half of the false yeses (15 of 26
# points), not all: the balanced run stayed lower, 0.07 against 0.19, a difference whose interval lies above 0 (e).
# MMVP found CLIP-blind pairs that every LLaVA-style model fails, and higher resolution reduces hallucination in
# LLaVA-1.5 (g). Reasoning first, `llava-mini` concluded 0.58 of the existence questions right against 0.95 answered
# directly (h); trained to open with the answer, the twin's relation conclusions stayed below its direct answers,
# 0.49 against 0.69, the interval of the difference below 0 (i).

# %% [markdown]
# ### Study question 12 — How general is LLaVA? Video, audio, several images?
#
# - **(a)** LlavaMini needed no change of architecture to read several images in one sequence: a prompt format and
#   data were enough.
# - **(b)** Zero-shot, the single-image model was at chance on the two-image and the motion tasks.
# - **(c)** After 200 steps of interleaved data, the model compares images by binding: the foil version of "which
#   image" is solved too.
# - **(d)** With every frame replaced by the last one, the trained model fell back to about chance on motion: it
#   compares the frames rather than reading the direction off where the object ends.
# - **(e)** Audio can be fed to LLaVA through CLIP's image encoder unchanged.
# - **(f)** LLaVA-1.5 scored video on SEED-Bench from a single middle frame.
# - **(g)** Several `<image>` placeholders in a prompt guarantee that a model reasons across the images.
#
# Return the letters of **all** true statements.

# %% tags=["exercise"]
def answer_study_q12() -> str:
    '''The letters of every true statement, e.g. "ace".'''
    ### BEGIN SOLUTION
    return "abdf"
    ### END SOLUTION


# %% tags=["grader", "study-q12"]
nb10.check_study_q12(answer_study_q12)

# %% [markdown] tags=["solution-only"]
# **A model answer.** (a), (b), (d) and (f) are true. The foil version gained 2 points, within noise, while the easy
# version reached 1.00 (c): the data rewarded a shortcut. Audio needs an encoder aligned to it (ImageBind-LLM
# inherits one through ImageBind's joint space) (e). Placeholders splice images; only data teaches comparison (g).

# %% [markdown]
# ### Study question 17 — Could LLaVA do better at long-term memory and knowledge injection?
#
# - **(a)** After the facts changed, the retrieval-trained model answered under the new facts with no training.
# - **(b)** The model fine-tuned on the old facts used the new facts once they were written in its prompt.
# - **(c)** Updating the fine-tuned model by a second run made it forget the old mapping.
# - **(d)** A longer context window is the same thing as long-term memory.
# - **(e)** Retrieval lets an answer be traced to the text it came from; parametric knowledge does not.
# - **(f)** LLaVA retrieves from the web by default.
# - **(g)** Fine-tuning in new facts and then their update, and retrieval training, each mixed with ordinary
#   questions, both cost a few points on the ordinary questions.
#
# Return the letters of **all** true statements.

# %% tags=["exercise"]
def answer_study_q17() -> str:
    '''The letters of every true statement, e.g. "ace".'''
    ### BEGIN SOLUTION
    return "aceg"
    ### END SOLUTION


# %% tags=["grader", "study-q17"]
nb10.check_study_q17(answer_study_q17)

# %% [markdown] tags=["solution-only"]
# **A model answer.** (a), (c), (e) and (g) are true. Section 4's fine-tuned model ignored the facts in its prompt
# (b). On the ordinary questions the retrieval-trained model lost 5 points, and the fine-tuned model 2 after one run
# (an interval that reaches 0) and 5 after the update (g). A context window forgets at its end; memory needs storage
# and retrieval across sessions (d). LLaVA has no retrieval; the paper names it as a direction (f).

# %% [markdown]
# ## Questionnaire
#
# Not graded: questions to think about. Write your answers down.
#
# 1. Design a ShapesWorld in which one object spans several image tokens (larger images, smaller patches). Which of
#    section 1's results would you expect to change, and why?
# 2. The more-foils fix was tested at one yes ratio and one seed. What would you run to claim it works in general?
# 3. Design a motion task that no single frame solves. What is the smallest change to `failures.motion`?
# 4. The which-image model learnt "find the red image". Write the training data that would force it to bind, and
#    predict what it costs in steps.
# 5. Retrieval needed a model trained to read facts. What would a retrieval-augmented LLaVA need in its instruction
#    data, and how would you keep retrieved text from being trusted over the image when they disagree?
