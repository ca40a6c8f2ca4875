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
# # 01 — ShapesWorld and instruction data: the symbolic context, the teacher, and what a noisy teacher costs
#
# LLaVA's central contribution is not an architecture; it is **data** (LLaVA §3). In April 2023 there was hardly any
# visual instruction-following data, and writing it by hand at scale was out of reach. So the authors took COCO
# images, wrote each one down as text — its captions and the boxes of its objects, the *symbolic context* — and asked
# a **text-only** GPT-4 to write what a user and an assistant *looking at the image* would say. GPT-4 never saw a
# pixel. Its 158K samples (LLaVA-Instruct-158K) are what turned a captioning model into a chat assistant.
#
# This notebook builds the same pipeline in ShapesWorld, the course's stand-in for COCO: seeded scenes of coloured
# shapes (`llava_mini/world.py`), their symbolic context, and a rule-based *teacher* that reads only that text
# (`llava_mini/teacher.py`) and writes LLaVA's data types in LLaVA's JSON format (`llava_mini/data.py`). It is the
# data every model of the course's zoo was trained on — conversations whose answers are whole sentences ("The square
# is red."), as LLaVA-Instruct's are. Then it asks study question 9: **what does the student inherit when the teacher
# makes things up?**
#
# ### Goals
# After this notebook you can
#
# 1. say what the symbolic context is and why it has boxes as well as captions, and write a box line from a COCO
#    annotation (exercise 1.1);
# 2. write a conversation generator that asks only questions with a definite answer and answers them in sentences
#    that restate what the question is about (exercise 1.2), and say why the answers are written that way;
# 3. read the four things the teacher writes — stage-1 caption pairs, conversations, detailed descriptions, complex
#    reasoning — in LLaVA's JSON format, and say what each one teaches;
# 4. turn the teacher's knobs (hallucination, yes/no balance, verbosity) and measure what they do to the data;
# 5. write a verification filter (exercise 1.3) and run study question 9's experiment: three short stage-2 fine-tunes
#    on clean, noisy, and noisy-but-verified data, and how often each student claims an object that is not there;
# 6. answer study question 9: the risks of GPT-written training data, and their mitigations.
#
# ### Time
# About **70 minutes**: 35 of reading, three exercises of 5–10 minutes each, and the study question. Running every
# cell takes about a minute on 2 CPU cores (graded with `pytest --nbval`: 53–58 s), most of it the three short
# fine-tunes of section 5, which print a line every 10 steps while they train. A busy machine is much slower: with
# other training and grading jobs on the same 2 cores, the same grading took between 4½ and 9 minutes.
#
#
#
# ### Numbers to expect
# Sections 1–4 compute on data only: every number there is exact and the same on every machine. Section 5 trains three
# students briefly and prints how often each — and, for scale, the zoo's fully trained conversation model — answers
# "yes" to questions about present and absent objects, and how strongly it leans to "yes". Those numbers come from one
# short run per setting: read the pattern, not the second decimal.

# %% [markdown]
# ## 0. Set-up

# %%
import dataclasses
import json
import re
import tempfile
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

from llava_mini import conversation, corpora, data, figures, recipe, stages, teacher, train, world, zoo
from llava_mini.course import setup_notebook
from llava_mini.grading import nb01
from llava_mini.tokenizer import load_tokenizer

setup_notebook(seed=0)
tokenizer = load_tokenizer()
IMAGE_SIZE = recipe.VISION.image_size  # the zoo's models see 48 x 48 images
for split, seeds in world.SPLITS.items():
    print(f"{split:>5} split: scenes {seeds.start:>9,} .. {seeds.stop - 1:>9,}")

# %% [markdown]
# ## 1. ShapesWorld: one seed, one scene
#
# A ShapesWorld scene is 1–3 shapes — five colours, five shapes, two sizes — on a 3×3 grid, at most one per cell. A
# scene *is* its seed: `world.sample_scene(seed)` draws it from `numpy.random.default_rng(seed)`, so seed 2 is the same
# scene on every machine, and a split is a range of seeds (above). That reproducibility is the point: every dataset,
# every model and every number in this course can be regenerated from seeds, which LLaVA's data — generated once,
# through a closed API whose model version has since been deprecated — cannot.
#
# `world.render` draws the image $X_v$ the vision encoder sees. The `Scene` is the ground truth; nobody in the pipeline
# but the renderer reads it.

# %%
scenes = [world.sample_scene(seed) for seed in world.split_seeds("train", 6)]
figures.image_grid([world.render(s, IMAGE_SIZE) for s in scenes], [f"scene {s.seed}" for s in scenes])
plt.show()

scene = scenes[2]
print(f"scene {scene.seed}, the ground truth:")
for o in scene.objects:
    print(f"  {o.size:>5} {o.colour:>6} {o.shape:<8} row {o.row}, column {o.col} ({o.position}), "
          f"box ({', '.join(f'{v:.2f}' for v in o.box)})")
print("the same seed gives the same image:",
      np.array_equal(world.render(world.sample_scene(2), IMAGE_SIZE), world.render(scene, IMAGE_SIZE)))

# %% [markdown]
# ## 2. The symbolic context
#
# What LLaVA gave GPT-4 instead of the image (§3, and the example of its Table 1) has two parts:
#
# - **captions**: COCO's five human-written sentences per image. They say *what* is there, loosely: "a group of people
#   standing outside of a black vehicle with various luggage";
# - **boxes**: one line per annotated object, `category: [x1, y1, x2, y2]`, the corners **normalised to 0–1** by the
#   image's width and height, e.g. `person: [0.681, 0.242, 0.774, 0.694]`. They say *where* and *how big*, which
#   captions rarely do — and "where" is what conversation questions about positions and complex reasoning need.
#
# ShapesWorld writes both for every scene (`world.symbolic_context`): five captions from five templates, and one box
# line per object, with two decimals (the world places objects on a grid of hundredths, so two are exact).

# %%
context = world.symbolic_context(scene)
print("captions:")
for caption in context.captions:
    print(textwrap.fill(caption, width=110, initial_indent="  - ", subsequent_indent="    "))
print("boxes:")
for line in context.boxes:
    print("  -", line)

# %% [markdown]
# Drawn on the image, with the 3×3 grid: the boxes are everything a reader of the text knows about *where* things are,
# and they are enough to say which cell each object is in (by its centre) and how big it is (by its width).

# %%
fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
for ax, s in zip(axes, scenes[:3]):
    ax.imshow(world.render(s, IMAGE_SIZE), extent=(0, 1, 1, 0), interpolation="nearest")  # x right, y down, 0-1
    for k in (1 / 3, 2 / 3):
        ax.axhline(k, color="white", lw=0.5, ls=":")
        ax.axvline(k, color="white", lw=0.5, ls=":")
    things = teacher.read(world.symbolic_context(s))
    for t in things:
        x1, y1, x2, y2 = t.box
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="white", lw=1))
        # the label under the box; over it in the bottom row, or where the cell below holds an object
        below = t.row < 2 and all((u.row, u.col) != (t.row + 1, t.col) for u in things)

        ax.text(x1, y2 + 0.02 if below else y1 - 0.02, f"{t.colour} {t.shape}", color="white", fontsize=7,
                va="top" if below else "bottom")
    ax.set_title(f"scene {s.seed}", fontsize=9)
    ax.set_xticks([0, 0.5, 1])
    ax.set_yticks([0, 0.5, 1])
fig.tight_layout()
plt.show()


# %% [markdown]
# ### Exercise 1.1: a COCO annotation as a box line
#
# COCO does not store boxes the way LLaVA's prompt writes them. A COCO annotation's `bbox` is
# `[x, y, width, height]` **in pixels**: the top-left corner, then the size. The image is `width` × `height` pixels —
# COCO images are rarely square, so the two normalisations differ. LLaVA's prompt wants the two corners as fractions of
# the image's size; a text-only reader can then compare positions across images of any resolution.
#
# Write `box_line(category, bbox, width, height)`, returning `"category: [x1, y1, x2, y2]"` with each coordinate
# normalised (x by the image width, y by its height) and written with exactly two decimals (`f"{v:.2f}"`: `0.40`, not
# `0.4`). The grader checks your lines against `world.symbolic_context` on ShapesWorld scenes of three image sizes,
# and on COCO-sized images. *(About 3 lines.)*

# %% tags=["exercise"]
def box_line(category: str, bbox: list[float], width: int, height: int) -> str:
    '''COCO's pixel bbox [x, y, w, h] as LLaVA's "category: [x1, y1, x2, y2]", normalised to 0-1, two decimals.'''
    ### BEGIN SOLUTION
    x, y, w, h = bbox
    corners = (x / width, y / height, (x + w) / width, (y + h) / height)
    return f"{category}: [{', '.join(f'{v:.2f}' for v in corners)}]"
    ### END SOLUTION


# %% tags=["grader"]
nb01.check_box_line(box_line)

# %% [markdown]
# The teacher reads the lines back with `teacher.read(context)` (a regular expression per line): colour and shape from
# the category, the size from the box's width, the cell from its centre. That is all it will ever know about the scene.

# %%
for t in teacher.read(context):
    print(f"{t.colour} {t.shape}: [{', '.join(f'{v:.2f}' for v in t.box)}] -> a {t.size} {t.colour} {t.shape} "
          f"in the {t.position}")


# %% [markdown]
# ## 3. The teacher and its three data types
#
# LLaVA prompted GPT-4 with a system message, a few hand-written examples — the **only** human annotations in the
# whole dataset — and then the symbolic context of one image, once per response type:
#
# | type | LLaVA | what it teaches |
# |---|---|---|
# | conversation | 58K | multi-turn questions with definite answers about object types, counts, positions |
# | detailed description | 23K | describing everything in the image, at length |
# | complex reasoning | 77K | questions whose answer needs steps; the reasoning comes before the answer |
#
# And for stage 1, no GPT-4 at all: 595K CC3M image-caption pairs, each turned into a one-turn "conversation" by a
# brief-description instruction drawn from the list of the paper's Table 11 ("Describe the image concisely.").
#
# `teacher.Teacher` writes the same four kinds, by rules, from the context alone. Its conversations follow a rule of
# LLaVA's conversation prompt: ask **only questions with a definite answer** — either what the
# question asks about can be seen and answered confidently, or it can be determined confidently that it is not there.
# A question like "What colour is the circle?" about a scene with two circles has no definite answer; a student
# trained on it would learn to pick one at random.
#
# **The answers are sentences.** LLaVA-Instruct's conversations seldom answer in one word: asked about the colour of a
# bus, GPT-4 writes "The bus in the image is white and red." The teacher answers the same way, restating what the
# question is about before the answer:
#
# | question | the teacher's answer |
# |---|---|
# | What colour is the square? | The square is red. |
# | How many objects are there? | There are 3 objects. |
# | Is there a red square? | yes, there is a red square. / No, there is no red square. |
#
# (The course's closed vocabulary has "yes" but no "Yes", so that one sentence starts in lower case.) The restated
# referent is not decoration. To answer "red" in one word, the model needs two attention steps at the position where
# it writes it: carry the referent ("square") from wherever it sits in the question to that position, then match it
# against the visual tokens. The two only pay off together, so a small model is slow to learn either. In the sentence,
# the model has just written "The square is" when it comes to "red": the referent is a few tokens back at a fixed
# place, and what is left is one step — match it against the visual tokens. This project measured the difference on a
# small language model that reads a scene as 9 cell tokens (the `Teacher` docstring in `llava_mini/teacher.py`):
# trained on sentence answers, it beat the level of a model that ignores the question on shape questions after about
# 24,000 training sequences; trained on one-word answers, it had beaten that level on none of colour, shape or
# existence after 56,000. Every model in the course's zoo was trained on sentence answers, and `llava-mini accuracy`
# scores a reply by its whole sentence.
#
# ### Exercise 1.2: a conversation generator with definite answers
#
# Write `definite_turns(context)`, using only the context (`teacher.read(context)` gives the objects back, each with
# `.colour`, `.shape`, `.size` and `.position`). Return a list of `(question, answer)` pairs, in any order, each answer
# a sentence exactly as written here:
#
# 1. `("How many objects are there?", "There are {n} objects.")`, with $n$ the number of objects in digits, and
#    `"There is 1 object."` when there is one;
# 2. `("What colour is the {shape}?", "The {shape} is {colour}.")` for every object whose **shape** no other object
#    has;
# 3. `("Where is the {colour} {shape}?", "The {colour} {shape} is in the {position}.")` for every object whose
#    **colour and shape together** no other object has.
#
# The grader compares with the reference on random scenes and on the cases that need care. *(About 9 lines.)*

# %% tags=["exercise"]
def definite_turns(context: world.SymbolicContext) -> list[tuple[str, str]]:
    '''The count, colour and position questions that have a definite answer, with their answers.'''
    ### BEGIN SOLUTION
    things = teacher.read(context)
    n = len(things)
    turns = [("How many objects are there?", "There is 1 object." if n == 1 else f"There are {n} objects.")]
    for t in things:
        if [u.shape for u in things].count(t.shape) == 1:
            turns.append((f"What colour is the {t.shape}?", f"The {t.shape} is {t.colour}."))
        if [(u.colour, u.shape) for u in things].count((t.colour, t.shape)) == 1:
            ref = f"{t.colour} {t.shape}"
            turns.append((f"Where is the {ref}?", f"The {ref} is in the {t.position}."))
    return turns
    ### END SOLUTION


# %% tags=["grader"]
nb01.check_definite_turns(definite_turns)

# %% [markdown]
# The package's teacher does the same for six question categories — colour, shape, count, position, existence,
# relation — and picks among the phrases that single out one object ("the square", "the green object", "the object in
# the bottom right"). `data.scene_records(seed)` runs it on one scene and returns the scene's records in **LLaVA's JSON
# format**, the format of `llava_instruct_150k.json`: an `id`, an `image` path, and `conversations`, a list of turns
# `{"from": "human" | "gpt", "value": ...}` whose first human turn carries the `<image>` placeholder. Here is scene
# 2's conversation record, exactly as it would be written to disk:

# %%
records, meta = data.scene_records(scene.seed)
print(json.dumps(records["conversation"][0], indent=1))


# %% [markdown]
# And the other three things it writes for the same scene: the stage-1 pair (a Table 11 instruction and one caption),
# the same pair in the `plain` layout that LLaVA's released stage-1 training actually uses (just the image, then the
# caption: notebook 03), and the two long types:

# %%
def show(record, width=110):
    for turn in record["conversations"]:
        speaker = "USER:     " if turn["from"] == "human" else "ASSISTANT:"
        text = turn["value"].replace("\n", "\\n")  # show the newline after <image>
        print(textwrap.fill(f"{speaker} {text}", width=width, subsequent_indent=" " * 11))


for name in ("stage1", "plain", "detail", "complex_reasoning"):
    print(f"--- {name}.json")
    show(records[name][0])

# %% [markdown]
# Three choices in there are LLaVA's, and each has a reason:
#
# - **Complex reasoning puts the reasoning first** and ends with "so the answer is …". A causal language model writes
#   left to right: reasoning written *after* the answer cannot have helped choose it. (In the paper's ScienceQA
#   ablation, Table 8, answering first scores below reasoning first; the paragraph about it contradicts its own
#   table — notebook 09 comes back to it.) The question ends with the cue "Explain before you answer." so the student
#   can tell it from a conversation question, which wants a one-sentence answer.
# - **Detailed descriptions are long**: one description is trained on about as many tokens as a whole conversation —
#   see below.
# - **Everything is written as if seen.** LLaVA's prompts tell GPT-4 to answer "as you are seeing the image"; the
#   student cannot tell a fact the teacher read in the boxes from one it made up. Section 4 comes back to this.
#
# `data.export_dataset` writes a whole dataset in LLaVA's layout — one JSON file per type, the mix, the images, and
# `context.json` with what the teacher read for each scene — and `data.load_records` reads a file back, checking
# every record:

# %%
with tempfile.TemporaryDirectory() as tmp:
    out = data.export_dataset(tmp, n=20, size=IMAGE_SIZE)
    for path in sorted(out.glob("*.json")):
        entries = json.loads(path.read_text())
        print(f"{path.name:<24} {len(entries):>3} {'scenes' if path.name == 'context.json' else 'records'}")
    print(f"{'images/':<24} {len(list((out / 'images').glob('*.png'))):>3} PNG files")
    print("instruct.json reads back, every record checked:", len(data.load_records(out / "instruct.json")), "records")

# %% [markdown]
# **Where the loss goes.** The loss of eq. 3 is an average over *supervised tokens* (the answers), not over records.
# So a type's share of the gradient is its share of the answer tokens. Counted on 300 scenes, one record of each type
# per scene, with the labels of notebook 03's chat template:

# %%
kinds = ("plain", *data.TYPES.values())
supervised = {kind: [] for kind in kinds}
for seed in world.split_seeds("train", 300):
    by_file, _ = data.scene_records(seed)
    for kind in kinds:
        record = by_file[kind][0]
        sample = (conversation.build_plain(record, tokenizer, recipe.VISION.num_patches) if kind == "plain" else
                  conversation.build_chat(record["conversations"], tokenizer, recipe.VISION.num_patches))
        supervised[kind].append(sum(label != conversation.IGNORE_INDEX for label in sample.labels))

means = {kind: float(np.mean(counts)) for kind, counts in supervised.items()}
stage2 = sum(means[kind] for kind in data.TYPES.values())
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.boxplot([supervised[kind] for kind in kinds], orientation="horizontal")
ax.set_yticks(range(1, len(kinds) + 1), [f"{kind} (stage {1 if kind == 'plain' else 2})" for kind in kinds])
ax.set_xlabel("supervised tokens per record")
plt.show()
print(f"{'':>18} | tokens per record | share of the stage-2 loss")
for kind in kinds:
    share = f"{means[kind] / stage2:.2f}" if kind != "plain" else "-"
    print(f"{kind:>18} | {means[kind]:>17.1f} | {share:>9}")

# %% [markdown]
# Sentence answers make the conversations the heaviest type: 53.8 supervised tokens per record on average, against
# 47.1 for a detailed description and 41.6 for complex reasoning, so 0.38 of the stage-2 loss when each type has one
# record per scene. The zoo's stage 2 takes its conversations from more scenes than the other two types (the `scenes`
# of `llava-mini` in the zoo's manifest), so there their share is larger still. The spread is wide too: a conversation
# has 2 to 10 turns.

# %% [markdown]
# ## 4. The teacher's knobs: what a GPT teacher gets wrong
#
# A strong teacher is still not a faithful one. Three of the known risks of GPT-written visual data are knobs of
# `teacher.Teacher`:
#
# - `hallucination=p`: with probability $p$ a conversation asks about an object that is **not in the context** and
#   answers "yes, there is a …", and a detailed description describes it. Which object? Not a random one: like the
#   objects POPE (Li et al., 2023) found models hallucinate most, it is preferably one that **co-occurs** with a shape
#   that is there — ShapesWorld's designated pairs (`world.COOCCURRING`) are circle–triangle and square–cross.
#   `Sample.injected` records the made-up object; nobody downstream is told.
# - `yes_ratio`: the share of existence questions whose answer is "yes". GPT-written data is short of confident
#   negatives; a student that rarely sees "no" learns to say "yes".
# - `verbosity`: "long" descriptions add a relation per pair of objects; "short" ones list the objects.
#
# A hallucinating teacher at $p = 1$, for scene 2:

# %%
liar = teacher.Teacher(hallucination=1.0)
for sample in (liar.conversation(context, np.random.default_rng(0)), liar.detail(context, np.random.default_rng(0))):
    print(f"--- {sample.type} (made up: {sample.injected})")
    for question, answer in sample.turns:
        print(textwrap.fill(f"USER: {question} ASSISTANT: {answer}", width=110, subsequent_indent="  "))

# %% [markdown]
# What the knobs do to a dataset, measured on the conversations about 2,000 training scenes: the share with a made-up
# object, the share of existence answers that are "yes", and how often the made-up object's shape is a co-occurrence
# partner of a shape in the scene — against how often it would be if the teacher picked among the absent objects at
# random. (Even the default teacher writes fewer "yes" answers than its `yes_ratio`: a scene has only 1–3 objects to
# ask about and a conversation never repeats a question, while absent objects are plenty.)

# %%
PARTNER = {a: b for pair in world.COOCCURRING for a, b in (pair, pair[::-1])}


def says_yes(answer: str) -> bool:
    '''Does an answer to "Is there a ...?" say yes? "yes, there is a red square." does; "No, there is no ..." not.'''
    return answer.startswith("yes")


def knob_stats(tutor, seeds) -> dict[str, float | None]:
    '''What a teacher's conversations about these scenes hold: made-up objects, "yes" answers, co-occurrence.'''
    made_up, answers, partnered, chance = 0, [], [], []
    for seed in seeds:
        scene_context = world.symbolic_context(world.sample_scene(seed))
        things = teacher.read(scene_context)
        sample = tutor.conversation(scene_context, np.random.default_rng([seed, 1]))
        answers += [answer for question, answer in sample.turns if question.startswith("Is there a ")]
        if sample.injected:
            made_up += 1
            partners = {PARTNER.get(t.shape) for t in things}
            absent = [(c, s) for c in world.COLOURS for s in world.SHAPES
                      if all((t.colour, t.shape) != (c, s) for t in things)]
            partnered.append(sample.injected.split()[1] in partners)
            chance.append(np.mean([s in partners for _, s in absent]))
    return {"made up": made_up / len(seeds), "existence 'yes'": np.mean([says_yes(a) for a in answers]),
            "made-up shape co-occurs": np.mean(partnered) if partnered else None,
            "at random": np.mean(chance) if chance else None}


settings = {"Teacher()": teacher.Teacher(), "hallucination=0.1": teacher.Teacher(hallucination=0.1),
            "hallucination=0.3": teacher.Teacher(hallucination=0.3), "yes_ratio=0.8": teacher.Teacher(yes_ratio=0.8)}
seeds = world.split_seeds("train", 2000)
columns = ["made up", "existence 'yes'", "made-up shape co-occurs", "at random"]
print(f"{'':>17} | " + " | ".join(columns))
for name, tutor in settings.items():
    stats = knob_stats(tutor, seeds)
    print(f"{name:>17} | " + " | ".join(f"{'-' if stats[c] is None else f'{stats[c]:.2f}':>{len(c)}}" for c in columns))
for verbosity in ("short", "long"):
    tutor = teacher.Teacher(verbosity=verbosity)
    descriptions = [tutor.detail(world.symbolic_context(world.sample_scene(s)), np.random.default_rng(s)).turns[0][1]
                    for s in seeds[:300]]
    words = [len(text.split()) for text in descriptions]
    print(f"verbosity={verbosity!r}: a detailed description has {np.mean(words):.1f} words on average")


# %% [markdown]
# Two things to take from the table. The made-up objects are the teacher's *bias*, not noise: they concentrate on the
# partners of what is there. And every made-up object arrives as a "yes": hallucination does not only add false facts,
# it shifts the answer balance of a whole question type — and a student that cannot yet tell a present object from an
# absent one falls back on the majority answer of its data. Which does a student learn from such data: the made-up
# facts, the shifted balance, or both? Only training can tell.
#
# ## 5. Study question 9: what does the student inherit?
#
# **The experiment.** Three students, identical in everything but their data:
#
# | student | stage-2 data |
# |---|---|
# | `p = 0` | the teacher's conversations, hallucination 0 |
# | `p = 0.3` | the same scenes, hallucination 0.3 |
# | `p = 0.3, verified` | the `p = 0.3` records that pass a **verification filter** |
#
# Each starts from `llava-mini-stage1` (clip-mini + vicuna-mini, stage 1 done: $W$ aligned, no instruction tuning) and
# runs the stage 2 that made the zoo's `llava-mini-conv-only`, only much shorter. Then we ask each about held-out test
# scenes, the way POPE does: one question about an object that is there, one about a random absent object, and — when
# the scene has a shape with a co-occurrence partner — one about an absent partner. The measure of hallucination is how
# often the student answers "yes" about an absent object.
#
# **The mitigation.** The teacher read the boxes; so can a checker. A verification filter re-derives every fact it can
# from the symbolic context and drops any record that contradicts it. Later work uses the same idea in several forms
# (LLaVA-RLHF, for one, gives its reward model the image's captions and ground-truth answers to check claims against),
# and it needs no access to the teacher's internals — here, no peeking at `Sample.injected`.
#
# ### Exercise 1.3: the verification filter
#
# Write `verified(record, context)`: `record` is a LLaVA conversation record (a dict with `"conversations"`),
# `context` the scene's symbolic context. Return `True` when every **existence claim** in the record agrees with the
# boxes, `False` otherwise. An existence claim is a human turn `"Is there a {colour} {shape}?"` and the gpt answer
# after it, which is one of the teacher's two sentences, `"yes, there is a {colour} {shape}."` or
# `"No, there is no {colour} {shape}."`. The claim agrees with the boxes when the answer says yes exactly if some box
# is that colour **and** that shape. Mind the first human turn, which starts with `"<image>\n"`, and leave the record
# as it is: section 5 trains on the very records your filter reads. *(About 6 lines.)*

# %% tags=["exercise"]
def verified(record: dict, context: world.SymbolicContext) -> bool:
    '''True when every "Is there a {colour} {shape}?" answer in the record agrees with the context's boxes.'''
    ### BEGIN SOLUTION
    present = {(t.colour, t.shape) for t in teacher.read(context)}
    turns = record["conversations"]
    for question, answer in zip(turns[::2], turns[1::2]):
        claim = re.fullmatch(r"Is there a (\w+) (\w+)\?", question["value"].removeprefix("<image>\n"))
        if claim and answer["value"].startswith("yes") != (claim.groups() in present):
            return False
    return True
    ### END SOLUTION


# %% tags=["grader"]
nb01.check_verified(verified)

# %% [markdown]
# The three training sets. The filter sees only records and contexts; the table also uses what the filter could not
# see — which records really had a made-up object — to score it:

# %%
N_SCENES = 2000  # training scenes per student, one conversation each


def conversations(hallucination: float) -> list[tuple]:
    '''(seed, conversation record, symbolic context, made-up object or None) for each training scene.'''
    tutor, rows = teacher.Teacher(hallucination=hallucination), []
    for seed in world.split_seeds("train", N_SCENES):
        by_file, meta = data.scene_records(seed, tutor)
        scene_context = world.SymbolicContext(tuple(meta["captions"]), tuple(meta["boxes"]))
        rows.append((seed, by_file["conversation"][0], scene_context, meta["injected"].get("conversation")))
    return rows


noisy = conversations(0.3)
arms = {"p = 0": conversations(0.0), "p = 0.3": noisy,
        "p = 0.3, verified": [row for row in noisy if verified(row[1], row[2])]}
print(f"{'':>18} | records | with a made-up object | existence answers 'yes'")
for name, rows in arms.items():
    answers = [turn["value"] for _, record, _, _ in rows
               for q, turn in zip(record["conversations"][::2], record["conversations"][1::2])
               if "Is there a " in q["value"]]
    print(f"{name:>18} | {len(rows):>7} | {sum(row[3] is not None for row in rows):>21} | "
          f"{np.mean([says_yes(a) for a in answers]):>23.2f}")
kept = {row[0] for row in arms["p = 0.3, verified"]}
made_up = [row[0] for row in noisy if row[3] is not None]
print(f"the filter dropped {sum(s not in kept for s in made_up)} of the {len(made_up)} records with a made-up object, "
      f"and {sum(row[0] not in kept for row in noisy if row[3] is None)} clean ones")

# %% [markdown]
# Now the three fine-tunes. `finetune` is `stages.train` spelled out, so that it can take our records: load the
# stage-1 model, unfreeze $W$ and the language model (stage 2; the vision encoder stays frozen), turn each record into
# ids and labels with the chat template, and run the trainer with the settings that trained the zoo's
# `llava-mini-conv-only` (read from the zoo's manifest: batch size, learning rate, warm-up and decay) for `STEPS`
# steps. The zoo's model is this same code run longer, on conversations about more scenes; the table after the
# training puts the two side by side. The `p = 0` student is that recipe's beginning: the teacher writes the same
# conversations for the same first scenes. The filtered student sees fewer distinct records in the same number of
# steps.
#
# The trainer prints a line every 10 steps while it runs (that cell's output is a log and is not compared when the
# notebook is graded):

# %% tags=["nbval-ignore-output"]
STEPS = 60  # per student
CONV_ONLY = zoo.read_manifest()["llava-mini-conv-only"]["recipe"]  # how the zoo's conversation model was trained
ZOO_STAGE2 = train.TrainConfig(**CONV_ONLY["train"])


def finetune(name: str, rows) -> tuple:
    '''A stage-2 student: llava-mini-stage1 fine-tuned on these conversation records for STEPS steps.'''
    model = zoo.load("llava-mini-stage1")
    stages.freeze(model, 2)
    examples = [corpora.Example(conversation.build_chat(record["conversations"], tokenizer, model.num_image_tokens),
                                seed) for seed, record, _, _ in rows]
    batches = corpora.Batches(examples, tokenizer, ZOO_STAGE2.batch_size, seed=0,
                              image_size=model.config.vision.image_size, group_by_length=True)
    run = dataclasses.replace(ZOO_STAGE2, steps=STEPS, log_every=10, progress=False)  # a printed line per 10 steps
    losses = train.fit(model, batches, run, log=lambda line: print(f"{name:>18}: {line}"))
    return model, losses


students, losses = {}, {}
for name, rows in arms.items():
    students[name], losses[name] = finetune(name, rows)

# %%
print(f"{'':>25} | steps x batch | conversations | loss of the last 10 steps")
for name, rows in arms.items():
    loss = np.mean(losses[name][-10:])
    print(f"{name:>25} | {STEPS:>5} x {ZOO_STAGE2.batch_size:<5} | {len(rows):>13} | {loss:>25.2f}")

zoo_loss = zoo.read_manifest()["llava-mini-conv-only"]["metrics"]["loss"]
print(f"{'zoo: llava-mini-conv-only':>25} | {ZOO_STAGE2.steps:>5} x {ZOO_STAGE2.batch_size:<5} | "
      f"{CONV_ONLY['scenes']['conversation']:>13} | {zoo_loss:>25.2f}")


# %% [markdown]
# The measurement: POPE-style questions about 300 test scenes, and for each kind of question two numbers.
#
# - **The share of "yes" answers**, greedy, as POPE counts them. For an object that is there, "yes" is right (the
#   higher the better); for an absent one, every "yes" is a hallucination.
# - **How far the model leans to "yes"**: the probability it gives "yes" as the first word of its answer, out of the
#   two first words an answer can have ("yes, there is …" or "No, there is no …"), averaged over the questions.
#   Greedy decoding turns any lean past one half into a "yes", so the share of "yes" answers alone cannot tell a
#   model that is sure from one that is tipped by a hair.
#
# Both come from the model's scores for the first token of its answer (the answer's first word decides yes or no). For
# scale, the same questions also go to the zoo's `llava-mini-conv-only`.

# %%
def existence_probes(seeds) -> dict[str, list]:
    '''(scene, question) pairs per kind: a present object, a random absent one, an absent co-occurrence partner.'''
    probes = {"present": [], "absent (random)": [], "absent (co-occurring)": []}
    for seed in seeds:
        test_scene = world.sample_scene(seed)
        rng = np.random.default_rng([seed, 9])
        there = sorted({(o.colour, o.shape) for o in test_scene.objects})
        absent = [(c, s) for c in world.COLOURS for s in world.SHAPES if (c, s) not in there]
        partners = {PARTNER.get(o.shape) for o in test_scene.objects}
        pools = {"present": there, "absent (random)": absent,
                 "absent (co-occurring)": [(c, s) for c, s in absent if s in partners]}
        for kind, pool in pools.items():
            if pool:
                colour, shape = pool[int(rng.integers(len(pool)))]
                probes[kind].append((test_scene, f"Is there a {colour} {shape}?"))
    return probes


FIRST = {word: tokenizer.convert_tokens_to_ids("▁" + word) for word in ("yes", "No")}  # "▁": the word after a space


@torch.no_grad()
def first_word(model, pairs) -> tuple[float, float]:
    '''The share of greedy answers whose first word is "yes", and the mean probability of "yes" out of "yes" and
    "No" as that first word: the model's scores for the token right after "ASSISTANT:".'''
    prompts = [conversation.build_prompt([{"from": "human", "value": "<image>\n" + question}], tokenizer,
                                         model.num_image_tokens) for _, question in pairs]
    batch = conversation.collate(prompts, tokenizer.pad_token_id, padding_side="left")
    pixels = world.pixel_values(world.render_batch([s for s, _ in pairs], model.config.vision.image_size))
    scores = model(batch["input_ids"], pixels, batch["attention_mask"]).logits[:, -1]  # (questions, vocabulary)
    p = scores.softmax(-1)
    lean = p[:, FIRST["yes"]] / (p[:, FIRST["yes"]] + p[:, FIRST["No"]])
    return float((scores.argmax(-1) == FIRST["yes"]).float().mean()), float(lean.mean())


probes = existence_probes(world.split_seeds("test", 300))
models = {**students, "zoo: llava-mini-conv-only": zoo.load("llava-mini-conv-only")}
results = {name: [first_word(model, pairs) for pairs in probes.values()] for name, model in models.items()}

fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True, layout="constrained")
x, width = np.arange(len(probes)), 0.8 / len(results)
for panel, (ax, title) in enumerate(zip(axes, ('share of "yes" answers (greedy)', 'mean probability of "yes"'))):
    for i, (name, values) in enumerate(results.items()):
        bars = ax.bar(x + (i - (len(results) - 1) / 2) * width, [v[panel] for v in values], width=width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)  # a bar of height 0 still shows its value
    ax.set_xticks(x, [f"{kind}\n({len(pairs)} questions)" for kind, pairs in probes.items()], fontsize=8)
    ax.axhline(0.5, color="grey", lw=0.5, ls=":")
    ax.set_ylim(0, 1.1)
    ax.set_title(title, fontsize=10)
fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, title="trained on", title_fontsize=8,
           loc="outside right upper")
fig.suptitle('"Is there a ...?" about 300 test scenes', fontsize=10)
plt.show()
for panel, what in enumerate(('share of "yes" answers', 'mean probability of "yes"')):
    print(f"{what:>25} | " + " | ".join(f"{kind:>21}" for kind in probes))
    for name, values in results.items():
        print(f"{name:>25} | " + " | ".join(f"{v[panel]:>21.2f}" for v in values))


# %% [markdown]
# **What the tables show.** Read each row across first. A model that *sees* says "yes" to the present object and "no"
# to both absent ones. The zoo's `llava-mini-conv-only` does (its row in both tables: the present column stands apart
# from the two absent ones). The three students do not: each gives nearly the same share of "yes" answers in all three
# columns, and the same probability of "yes" to the second decimal: after 60 steps they do not look at the image to
# decide whether something is there. The zoo's model is the same code run longer — more steps, on conversations about
# more scenes (the table above) — and somewhere in that longer run it learned to look.
#
# Now read down the right panel. What a blind student does learn is the answer balance of its data. The `p = 0.3`
# student leans to "yes" (0.61), the clean one does not (0.49): the teacher's made-up objects raised the share of
# "yes" among existence answers from 0.45 to 0.56, every made-up object arriving as a "yes", and a student that cannot
# check the image answers with what its data said most often. The filter dropped exactly the 559 records with a
# made-up object and no clean one, which restored the clean balance (0.45), and the filtered student's lean came back
# to 0.51, next to the clean student's.
#
# The left panel is what POPE would report, and it exaggerates. Greedy decoding answers "yes" whenever the lean is
# past one half, so a blind student gives nearly the same answer to every question: the clean student says "yes" to
# 0.17–0.21 of them and the filtered one to 0.90–0.93, though their leans differ by 0.02; the `p = 0.3` student,
# leaning 0.61, says "yes" every time. A blind model's share of "yes" answers records which side of one half it
# happens to sit on; look at the lean, or at several seeds, before calling two such students different. That is study
# question 9 in its barest form: where a model cannot check a claim against the image, it learns the teacher's claims,
# their balance included, and repeats them with the teacher's confidence.
#
# Two cautions. One short run per setting: the pattern is the result, not the decimals. And a student that could see
# would show the bias differently — as "yes" on the co-occurring absent partner (the right group of bars) more often
# than on a random absent object, POPE's adversarial setting. The teacher's made-up objects are concentrated on those
# partners (section 4's table: 0.93 of the made-up shapes at `hallucination=0.3`, against 0.30 by chance), which is
# why the filter matters most there.

# %% [markdown]
# ### Study question 9: which statements are true?
#
# *What risks and biases come from using GPT-4 to generate instruction-following data? How can they be mitigated?*
#
# - **(a)** The teacher writes every answer as if it saw the image ("Answer all questions as you are seeing the image"
#   in LLaVA's prompts), so in the data a fact read from the annotations and a made-up one look the same, and the
#   student learns to state both as perception.
# - **(b)** GPT-4 is strong enough that its instruction data contains no hallucinations; the risk concerns weaker
#   teachers only.
# - **(c)** Made-up objects are not random: they are disproportionately objects that often appear together with those
#   in the scene, which is why absent co-occurring objects make the hardest negatives.
# - **(d)** Filtering the generated answers for fluency (say, their perplexity under a language model) removes the
#   made-up objects.
# - **(e)** Checking the generated claims against the annotations the teacher was given, and dropping the records that
#   contradict them, removes this kind of error before training, without access to the teacher.
# - **(f)** Scoring the student with the same GPT-4 that wrote its training data is an independent check of the data.
# - **(g)** Data with few "no" answers pushes a student towards "yes" on existence questions; balancing yes and no
#   answers, with negatives sampled among co-occurring objects, counters it.
# - **(h)** Once the verification filter has run, the remaining data is free of bias.
#
# Return the letters of **all** true statements, e.g. `"ace"`.

# %% tags=["exercise"]
def answer_study_q9() -> str:
    '''The letters of every true statement, e.g. "ace".'''
    ### BEGIN SOLUTION
    return "aceg"
    ### END SOLUTION


# %% tags=["grader", "study-q9"]
nb01.check_study_q9(answer_study_q9)

# %% [markdown] tags=["solution-only"]
# **A model answer.** (a), (c), (e) and (g) are true. The core risk is (a): GPT-4 was told to write as if it saw the
# image, so every claim in LLaVA-Instruct reads as perception and the student learns to make claims with the same
# confidence whether or not anything grounds them. GPT-4 does make such claims — LLaVA-1.5 (§5.2) notes that
# LLaVA-Instruct's detailed descriptions contain some hallucinated content, so (b) is false — and they are biased (c):
# POPE found hallucinated objects concentrate on frequent objects and on those that co-occur with what is present.
# Other risks follow from the same pipeline: a style and length bias towards GPT-4's prose, which a GPT-4 judge then
# rewards, so (f) is circular, not independent; a distribution skewed to COCO's everyday scenes and English, with the
# social biases of CLIP, LLaMA and GPT-4; terms-of-use limits; and irreproducibility, since the data came from a
# pinned API version that has since been deprecated. Mitigations: verify claims against the annotations (e) — this
# notebook's filter — though it only catches what the annotations can check; balance yes and no answers and sample
# negatives adversarially (g), as POPE's probes and negative-instruction datasets such as LRV-Instruction do; mix
# in human-written and academic task data; evaluate with exact-match probes and non-GPT judges; and publish prompts,
# model versions and seeds. Fluency says nothing about truth — a made-up object is as fluent as a real one — so (d)
# is false; and a filter removes contradictions, not the style, topic or answer-balance biases, so (h) is false.

# %% [markdown]
# ## Questionnaire
#
# Not graded: questions to think about before notebook 02. Write your answers down.
#
# 1. LLaVA gave GPT-4 captions *and* boxes. Which of the three data types would suffer most without the boxes, and
#    why? Which would suffer least?
# 2. LLaVA's box lines are normalised to 0–1. What would a text-only teacher get wrong if they were in pixels, for
#    images of different sizes?
# 3. Your `verified` checks only existence claims. Which other claims in the teacher's conversations could a checker
#    re-derive from the boxes? Which claims in GPT-4's real complex-reasoning answers (say, about why people are
#    gathered at a car) could no checker verify from COCO's annotations?
# 4. The filter drops whole records. What does that do to the answer balance of the data, and to how many "no"
#    answers the student sees? Is dropping better than correcting the false turn?
# 5. In section 3 the conversations carry the largest share of the supervised tokens of the stage-2 mix, the detailed
#    descriptions the next largest. If only the detailed descriptions hallucinated, would the student's conversations
#    be safe?
# 6. Section 5 trained one student per setting, for 60 steps each. What would you need to run before calling a
#    difference of a few points real? (Study question 15.)
# 7. A student that cannot see the object a question asks about still has to answer. What does it fall back on, and
#    what does that say about how to read a "yes" rate?
# 8. The teacher's answers restate the referent. What does that cost in supervised tokens, and what does scoring a
#    reply by its whole sentence check that scoring only its answer word would not?
