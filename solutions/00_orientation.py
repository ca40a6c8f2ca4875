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
# # 00 — Orientation: LLaVA at a glance
#
# **LLaVA** ("Visual Instruction Tuning", Liu, Li, Wu and Lee, NeurIPS 2023, [arXiv 2304.08485](https://arxiv.org/abs/2304.08485))
# turned a language model into a *visual assistant*: you show it an image, ask a question in plain language, and it
# answers. The surprise of the paper is how little machinery that takes — a frozen image encoder, **one linear layer**, a
# chat LLM — and how much of the work is done by the *data*: 158K instruction-following conversations written by a
# GPT-4 that never saw a single pixel.
#
# This course rebuilds LLaVA from scratch, part by part, on **ShapesWorld**: small images of coloured shapes on a 3×3
# grid, described by a rule-based "teacher" that plays GPT-4's role. The notebooks' own experiments train on a laptop
# CPU in minutes; the finished models come from the course's zoo, which the same code builds once.
# This first notebook shows you the finished result and the whole recipe at a glance; the next ten take it apart.
#
# ### Goals
# After this notebook you can
#
# 1. chat with the finished tiny LLaVA, `llava-mini`, and say what each of its three parts does;
# 2. draw the recipe — vision encoder $g$ → $Z_v$ → projection $W$ → $H_v$ → language model $f_\phi$, reading the
#    instruction $X_q$ and writing the answer $X_a$ — and say what trains in each of the two stages, on which data;
# 3. count image tokens and projector parameters, for the real LLaVA and for ours (exercises 0.1 and 0.2);
# 4. write the Vicuna-v1 prompt the model actually reads (exercise 0.3);
# 5. place LLaVA next to BLIP-2 and Flamingo;
# 6. answer study question 1: *what is LLaVA's core contribution, and why does it matter?*
#
# ### Time
# About **45 minutes** of reading and three short exercises (5–10 minutes each). Running every cell takes about 20
# seconds on 2 CPU cores (measured under strict nbval: 18 s); nothing here trains.
#
# ### Numbers to expect
#
# | | real LLaVA (v1) | `llava-mini` (this course) |
# |---|---|---|
# | vision encoder $g$ | CLIP ViT-L/14, 224 px, width 1024 | `clip-mini`: ViT, 48 px, patch 16, width 64 |
# | image tokens per image | 16 × 16 = **256** (LLaVA-1.5 at 336 px: **576**) | 3 × 3 = **9** |
# | projection $W$ | linear 1024 → 4096 (7B): **4,198,400** parameters | linear 64 → 64: **4,160** parameters |
# | language model $f_\phi$ | Vicuna-13B (7B in ablations) | `vicuna-mini`: 2 layers, width 64, 538 words |
# | stage 1 data | CC-595K image–caption pairs | ShapesWorld captions |
# | stage 2 data | LLaVA-Instruct-158K: 58K conversation + 23K detail + 77K complex reasoning | the teacher's three types |
# | headline result | LLaVA-Bench (COCO) relative score **85.1%**; ScienceQA **90.92%** | accuracy per question type, below |

# %% [markdown]
# ## 0. Set-up
#
# Every notebook starts the same way: `setup_notebook` fixes the random seeds, the thread count (2) and the
# plotting defaults, so that what you see is exactly what the graded run sees.

# %%
import textwrap

import matplotlib.pyplot as plt
import torch

from llava_mini import conversation, data, figures, projector, world, zoo
from llava_mini.course import setup_notebook
from llava_mini.tokenizer import SYSTEM_PROMPT, load_tokenizer
from llava_mini.stages import freeze
from llava_mini.train import count_parameters, format_counts

setup_notebook(seed=0)
tokenizer = load_tokenizer()

# %% [markdown]
# ## 1. Meet the finished model
#
# The package ships a small **zoo** of trained checkpoints. `llava-mini` is the end product of the whole recipe: a
# vision encoder pre-trained CLIP-style on ShapesWorld, a small Llama-architecture language model pre-trained on
# ShapesWorld chats, and the projection $W$ that joins them, trained in LLaVA's two stages. Let us load it and look
# inside. The three parts are named after the paper's symbols: `vision` is $g$, `projector` is $W$, `lm` is $f_\phi$.

# %%
model = zoo.load("llava-mini")
print(format_counts(count_parameters(model)))
vision = model.config.vision
print(f"images: {vision.image_size} x {vision.image_size} px, patches of {vision.patch_size} x {vision.patch_size} px")
print("image tokens per image:", model.num_image_tokens)
print("projector:", model.config.projector, tuple(model.projector.weight.shape), "(d_lm, d_vision)")

# %% [markdown]
# About 430 thousand parameters in all — the real LLaVA-13B has about thirty thousand times more — and almost all of
# them are in the two pre-trained towers. The bridge $W$ is 1% of the model. ("trainable" above only says that PyTorch
# *could* update them: which parts actually train is decided per stage, in section 3.)
#
# ### Chatting about a scene
#
# Now the fun part. We draw three scenes from the **test** split (seeds the model never saw in training), render them,
# and ask a few questions, keeping each conversation going turn by turn like LLaVA's demo. `chat.Session` does the
# bookkeeping: the first user turn carries the image, each answer is greedy and stops at the end-of-answer token
# `</s>`. Next to each answer we print what is really in the scene.

# %%
from llava_mini.chat import Session


def chat_about(seed, questions_and_truths):
    # Show the scene, then ask the questions one after another in one conversation.
    image = world.render(world.sample_scene(seed), model.config.vision.image_size)
    figures.image_grid([image], [f"test scene {seed}"], scale=2.4)
    plt.show()
    session = Session(model, image)
    for question, truth in questions_and_truths:
        answer = session.ask(question)
        print("USER:     ", question)
        print(textwrap.fill("ASSISTANT: " + answer, width=110, subsequent_indent=" " * 11))
        print("  (truth:", truth + ")")


# %%
chat_about(1_100_001, [
    ("How many objects are there?", "3"),
    ("What colour is the circle?", "red"),
    ("Where is the blue square?", "middle left"),
])
chat_about(1_100_001, [
    ("Describe the following image in detail.",
     "a large purple diamond top center, a small blue square middle left, a small red circle bottom center"),
])

# %%
chat_about(1_100_002, [
    ("Where is the red cross?", "middle left"),
    ("What is to the left of the purple diamond?", "a red cross (the green triangle is above it)"),
    ("Is there a green triangle?", "yes, in the top right"),
])

# %%
chat_about(1_100_009, [
    ("Which is larger, the square or the circle? Explain before you answer.",
     "the circle: it is large, the square is small"),
])

# %% [markdown]
# Compare each answer with the truth printed under it. Three things are worth seeing.
#
# **The format is learned.** Every short question gets one sentence that restates what was asked ("The circle is
# red."), the description lists each object with its size and place, and the question that ends with "Explain before
# you answer." gets facts first, then "so the answer is …": the three styles of the teacher's instruction data
# (conversation, detailed description, complex reasoning). Nobody programmed them; stage 2 taught them. The
# description is asked in a chat of its own: the detail and reasoning records are single-turn, in LLaVA's data as
# in ours, and after a few short turns this small model's descriptions fall apart.
#
# **It looks things up in the image.** "Where is the blue square?" needs the model to find the square among the nine
# image tokens and read that token's place; "What colour is the circle?" needs it to read the circle's token. Measured
# on 300 held-out test questions per category, one question per fresh chat (the table below), `llava-mini` names the
# right colour 90% of the time and the right shape 98% — a model that ignores the question and names some object's
# colour scores 66%.
#
# **The content is still often wrong, and more so deep into a chat.** In the first chat the colour of the circle,
# asked second, comes out as the diamond's; asked first in a fresh chat (two cells below) the same model says red.
# The evaluation asks single-turn questions, the chats here go on turn after turn, and this small model is less
# reliable the longer the chat. The description names the large diamond a small cross, and the third scene's
# reasoning mixes up the two objects' facts before it concludes. The second scene's relation ("to the left of")
# comes out right here, but relations are its weakest category (67% right). It is a 430-thousand-parameter model
# trained on one CPU thread, and the course's target for it — 95% on every question type — is not reached
# (`llava-mini zoo gates` lists every target and the measured value). Keep that in mind through the course: a model with the right *form* and wrong
# *facts* is exactly what LLaVA's critics mean by hallucination (study questions 7 and 9), and notebooks 08–10
# measure it properly.
#
# What does a model that skipped stage 2 do? `llava-mini-stage1` has the same three parts and went through stage 1
# only (image → caption). Ask it a question:

# %%
stage1_model = zoo.load("llava-mini-stage1")
image = world.render(world.sample_scene(1_100_001), model.config.vision.image_size)
for name, m in [("llava-mini-stage1", stage1_model), ("llava-mini", model)]:
    print(f"{name:>17}:", Session(m, image).ask("What colour is the circle?"))

# %% [markdown]
# Asked first, in a fresh chat, `llava-mini` gets the circle right. The stage-1 model answers in the right form — its
# language model, `vicuna-mini`, was pre-trained on chats — but names the diamond's colour: stage 1 taught $W$ only
# to turn an image into a caption, and that is not enough to find the circle. In the paper this comparison is the sharpest row of Table 4: on LLaVA-Bench (COCO), the same
# architecture **without instruction tuning scores 21.5**, against **85.1** with the full instruction data.
#
# The zoo's manifest records what each checkpoint scored when the zoo was built: exact-match accuracy on 300
# held-out test questions per category (`overall` is their mean; a reply counts only when the whole sentence is
# right), the F1 of the objects a detailed description names (`description`), the share of step-by-step answers that
# reach the right conclusion (`reasoning`), and the share of short answers that are really captions (`caption_like`):

# %%
manifest = zoo.read_manifest()
names = ["llava-mini-stage1", "llava-mini-conv-only", "llava-mini"]
rows = ["colour", "shape", "count", "position", "existence", "relation", "overall", "description", "reasoning",
        "caption_like"]
print(f"{'':>13}" + "".join(f"{name:>22}" for name in names))
for row in rows:
    print(f"{row:>13}" + "".join(f"{manifest[name]['metrics']['accuracy'][row]:>22.2f}" for name in names))

# %% [markdown]
# Read the table like the paper's Table 4, column by column: stage 1 only; stage 2 on conversations alone; that model
# trained on for six more epochs on the full mix of the three data types (the model you just chatted with). Three
# things stand out.
#
# - **Instruction tuning is what makes the model answer from the image.** Stage 1 alone scores at or below the
#   level of ignoring the question on every short category; stage 2 lifts colour and shape to 0.89–0.98.
# - **Only the full mix writes descriptions and reasoning** (description F1 0.91, reasoning 0.58): the other two
#   never saw those formats — Table 4's point that each data type teaches its own kind of answer.
# - **The order mattered at this size.** LLaVA trains stage 2 on the three types in one pass. Trained that way from
#   stage 1, our model never learnt existence questions (0.53: it told present from absent objects no better than
#   chance), so the zoo trains conversations first and the full mix after, and the short answers keep what the
#   conversations taught (existence 0.98 in both columns). The paper reports no such difficulty, but its model is
#   thirty thousand times larger; notebook 07 trains stage 2 and notebook 09 takes the data mix apart.
#
# ## 2. The recipe at a glance
#
# LLaVA's architecture (§4.1, Figure 1) is three parts and one equation. An image $X_v$ goes through a pre-trained
# vision encoder $g$, which gives a grid of feature vectors $Z_v = g(X_v)$, one per image patch. A trainable
# projection $W$ maps each of them into the language model's word-embedding space:
#
# $$H_v = W \cdot Z_v, \qquad Z_v = g(X_v) \qquad \text{(LLaVA eq. 1)}$$
#
# The language model $f_\phi$ then reads the **visual tokens** $H_v$ exactly as it reads word embeddings, followed by the
# embedded instruction $X_q$, and writes the answer $X_a$ one token at a time. The loss is taken on the answer tokens
# only (eq. 3; notebook 05).

# %%
figures.recipe_figure()
plt.show()

# %% [markdown]
# The real choices, and ours:
#
# | part | LLaVA v1 (paper §4.1; released code) | `llava-mini` (module) |
# |---|---|---|
# | $g$ | CLIP ViT-L/14 at 224 px; the grid features of the second-to-last layer (`mm_vision_select_layer -2`), CLS token dropped | `vision.VisionTower`, the `CLIPVisionModel` architecture, `feature_layer=-2`, `select="patch"` |
# | $W$ | one `nn.Linear(1024 → 5120)` for Vicuna-13B (→ 4096 for 7B); LLaVA-1.5 uses a 2-layer MLP (`mlp2x_gelu`) | `projector.LinearProjector(64 → 64)` (also `mlp2x_gelu`, `resampler`, pooling baselines) |
# | $f_\phi$ | Vicuna (13B; 7B ablated) | `lm.LanguageModel`, the `LlamaForCausalLM` architecture |
# | the seam | `<image>` in the prompt is replaced by the 256 rows of $H_v$ | `<image>` is expanded to 9 placeholders, overwritten by $H_v$ |
#
# A myth worth killing early: LLaVA does **not** pool the image into one vector (neither a mean nor the CLS token).
# Every patch becomes its own visual token, in raster order — 256 of them per 224-px image.
#
# Let us follow one image through `llava-mini` and watch the shapes:

# %%
image = world.render(world.sample_scene(1_100_001), model.config.vision.image_size)  # the first chat scene
pixels = world.pixel_values(image)  # X_v: (1, 3, 48, 48), normalised
with torch.no_grad():
    z_v = model.vision.features(pixels)  # Z_v = g(X_v): one 64-vector per patch
    h_v = model.projector(z_v)  # H_v = W · Z_v: one 64-vector per patch, the LLM's width
print("X_v:", tuple(pixels.shape))
print("Z_v:", tuple(z_v.shape), " (images, patches, vision width)")
print("H_v:", tuple(h_v.shape), " (images, visual tokens, LLM width)")
print("a word embedding:", tuple(model.lm.embed_tokens.weight[0].shape))


# %% [markdown]
# ### Exercise 0.1: how many image tokens?
#
# A ViT cuts an `image_size` × `image_size` image into non-overlapping `patch_size` × `patch_size` patches; each
# patch becomes one token. A CLIP ViT also prepends a **CLS** token (the summary vector that CLIP's contrastive loss
# reads). LLaVA drops it (`select_feature='patch'`), so the image tokens are the patch tokens only — unless
# `keep_cls=True` (LLaVA's `'cls_patch'` option), which keeps it in front.
#
# Write `count_image_tokens(image_size, patch_size, keep_cls=False)`. Return an `int`, and raise `ValueError` when
# the patches do not tile the image (`image_size` not a multiple of `patch_size`). The grader checks, among others,
# CLIP ViT-L/14 at 224 px (LLaVA v1), at 336 px (LLaVA-1.5) and `llava-mini`'s own 48/16. *(About 3 lines.)*

# %% tags=["exercise"]
def count_image_tokens(image_size: int, patch_size: int, keep_cls: bool = False) -> int:
    """Tokens a ViT gives for a square image: the patch grid, plus the CLS token if keep_cls; an int."""
    ### BEGIN SOLUTION
    if image_size % patch_size:
        raise ValueError(f"image size {image_size} is not a multiple of patch size {patch_size}")
    return (image_size // patch_size) ** 2 + (1 if keep_cls else 0)
    ### END SOLUTION


# %% tags=["grader"]
from llava_mini.grading import nb00

nb00.check_image_tokens(count_image_tokens)

# %% [markdown]
# So LLaVA v1 spends 256 positions of its 2048-token context on one image, LLaVA-1.5 576. Our 9 tokens are the same
# idea at toy scale. A sequence of the wrong length is a classic bug: the model refuses a prompt whose number of
# image placeholders does not match the image (the error is caught and printed here):

# %%
turns = [{"from": "human", "value": "<image>\nWhat colour is the circle?"}]
ids = conversation.build_prompt(turns, tokenizer, num_image_tokens=8)  # one placeholder too few
try:
    model.generate(torch.tensor([ids]), pixels, max_new_tokens=5)
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## 3. Two stages: align, then instruct
#
# LLaVA trains in two stages (§4.2). In both, the vision encoder $g$ stays **frozen** — the released code even runs it
# under `torch.no_grad()`.
#
# **Stage 1 — pre-training for feature alignment.** Data: **CC-595K**, 595K image–caption pairs filtered from CC3M for
# a balanced coverage of noun phrases. Only $W$ trains; $g$ and $f_\phi$ are frozen. Each pair becomes a one-turn
# "chat" whose answer is the caption. The authors describe this stage as training "a compatible visual tokenizer for
# the frozen LLM": $W$ learns to map CLIP's features to embeddings that the frozen Vicuna already knows how to talk
# about. (1 epoch, learning rate 2e-3, batch 128; about 4 hours on 8 A100s. The released scripts use the `plain`
# template: just the image, then the caption.)
#
# **Stage 2 — fine-tuning end to end.** Data: **LLaVA-Instruct-158K** — **58K conversations**, **23K detailed
# descriptions**, **77K complex-reasoning** answers, over about 80K COCO images. Now $W$ **and** $f_\phi$ train; $g$
# stays frozen. This is where the model learns to *follow instructions*: to answer the question asked, in the style
# asked. (3 epochs, learning rate 2e-5, batch 32; about 10 hours on 8 A100s.)

# %%
figures.recipe_figure(stages=True)
plt.show()

# %% [markdown]
# `stages.freeze` freezes a model the way each stage does (`llava_mini/stages.py` holds both stages: what each
# freezes, what it reads, the training job). Here is what trains in `llava-mini`:

# %%
for stage in (1, 2):
    counts = freeze(model, stage)
    print(f"stage {stage}: {counts['total'][0] / counts['total'][1]:.1%} of the parameters train")
    print(format_counts(counts))
model.requires_grad_(False)  # back to inference: nothing trains in this notebook
print("after the demonstration:", sum(p.requires_grad for p in model.parameters()), "trainable tensors")


# %% [markdown]
# ### Exercise 0.2: the size of $W$
#
# A linear projection from width `d_vision` to width `d_lm` is a `d_lm × d_vision` matrix, plus (by default, as in
# PyTorch's `nn.Linear` and in LLaVA) a bias vector $b$: $H_v = W Z_v + b$. Write `projector_params(d_vision, d_lm,
# bias=True)`, the number of parameters, as an `int`. The grader checks LLaVA-7B's 1024 → 4096, LLaVA-13B's
# 1024 → 5120, ours, and random sizes against a real `nn.Linear`. *(About 2 lines.)*

# %% tags=["exercise"]
def projector_params(d_vision: int, d_lm: int, bias: bool = True) -> int:
    """Parameters of a linear map from d_vision to d_lm: the matrix W, plus the bias b if bias; an int."""
    ### BEGIN SOLUTION
    return d_vision * d_lm + (d_lm if bias else 0)
    ### END SOLUTION


# %% tags=["grader"]
nb00.check_projector_params(projector_params)

# %% [markdown]
# About 4.2 million parameters for 7B, 5.2 million for 13B: **less than a thousandth** of the LLM. That is why stage 1
# is cheap and stable, and why one can question whether a single linear layer is enough (study question 2; LLaVA-1.5
# swapped it for a two-layer MLP, `projector.projector_param_count("mlp2x_gelu", 1024, 4096)` = 20,979,712).
# Notebook 04 builds $W$ and tests where a linear map fails.
#
# ## 4. The data: a text-only teacher
#
# The paper's central idea (§3) is about data. COCO images come with human annotations: five captions and the
# bounding boxes of the objects. LLaVA gives this **symbolic context** — text only — to GPT-4, with a few hand-written
# examples, and asks it to write what a user and an assistant *looking at the image* would say. GPT-4 never sees the
# image. It writes three types of response: multi-turn **conversations** with definite answers, **detailed
# descriptions**, and **complex reasoning** answered step by step.
#
# ShapesWorld copies this exactly. Each scene has captions and boxes (`colour shape: [x1, y1, x2, y2]`, normalised to
# 0–1, as in the paper's §3 and Table 1), and `teacher.Teacher` reads *only those strings* to write the same three types. Here
# is one scene, what the teacher sees, and what it writes:

# %%
seed = 3
scene_image = world.render(world.sample_scene(seed), model.config.vision.image_size)
figures.image_grid([scene_image], [f"train scene {seed}"], scale=2.4)
plt.show()
records, context = data.scene_records(seed)
print("What the teacher sees (the symbolic context):")
print("captions:")
for caption in context["captions"]:
    print(textwrap.fill(caption, width=110, initial_indent="  - ", subsequent_indent="    "))
print("boxes:")
for box in context["boxes"]:
    print("  -", box)


# %%
def show(record):
    for turn in record["conversations"]:
        speaker = "USER:     " if turn["from"] == "human" else "ASSISTANT:"
        text = turn["value"].replace("\n", "\\n")  # show the newline after <image>
        print(textwrap.fill(f"{speaker} {text}", width=110, subsequent_indent=" " * 11))


for name in ["stage1", "conversation", "detail", "complex_reasoning"]:
    print(f"--- {name}.json")
    show(records[name][0])


# %% [markdown]
# `stage1` is the stage-1 pair (a brief-description instruction drawn from the paper's Table 11, and one caption);
# the other three are the stage-2 instruction types. The complex-reasoning question ends with a format cue,
# "Explain before you answer.": without it, "How many objects are above the diamond?" reads exactly like a
# conversation question, and the model could not know whether to answer in a word or to reason first. (LLaVA-1.5
# solved the same ambiguity from the other side, with a cue on its short-answer questions: "Answer the question using
# a single word or phrase.") The records are in LLaVA's own JSON format, so
# `llava-mini data --out DIR --n N` writes files shaped like `llava_instruct_158k.json`. Notebook 01 studies the
# teacher, its knobs, and what teacher noise (a made-up object, say) costs the student.
#
# ## 5. What the model actually reads: the Vicuna-v1 prompt
#
# A chat model reads one long string. LLaVA's stage 2 lays a conversation out in Vicuna-v1's format (`conv_vicuna_v1`
# in the released code): the system prompt, then per turn the user's words and the assistant's answer, each answer
# closed by the end token `</s>`. For a conversation with earlier turns $(q_1, a_1), \dots$ and a new question $q$:
#
# ```
# SYSTEM USER: <image>\nq1 ASSISTANT: a1</s>USER: q2 ASSISTANT: a2</s>USER: q ASSISTANT:
# ```
#
# Precisely, as a Python string:
#
# 1. it starts with the system prompt `system` (by default `SYSTEM_PROMPT`, Vicuna's "A chat between a curious user
#    and an artificial intelligence assistant. …");
# 2. each user turn is `"USER: " + question`, preceded by a single space `" "` after the system prompt (first turn);
#    after an earlier `</s>` it follows immediately, with **no** space;
# 3. the **first** user turn, and only the first, starts with the image placeholder and a newline:
#    `"USER: <image>\n" + question`;
# 4. after each user turn comes `" ASSISTANT:"`; an earlier answer follows as `" " + answer + "</s>"`;
# 5. the prompt for the new question ends with `" ASSISTANT:"` — the model writes from there.
#
# (The tokenizer adds the start token `<s>` itself; it is not part of the string.)

# %% [markdown]
# ### Exercise 0.3: assemble the prompt
#
# Write `chat_prompt(history, question, system=SYSTEM_PROMPT)`: `history` is a list of earlier `(question, answer)`
# pairs (possibly empty), `question` the new question; return the prompt string above. Questions and answers are
# plain text, without `<image>`. The grader compares with the package's `conversation.render_chat` on the teacher's
# conversations, after 0, 1, 2, … earlier turns, and once with another system prompt. *(About 6 lines.)*

# %% tags=["exercise"]
def chat_prompt(history: list[tuple[str, str]], question: str, system: str = SYSTEM_PROMPT) -> str:
    """The Vicuna-v1 prompt for the next answer: system, earlier turns, the new question, " ASSISTANT:"."""
    ### BEGIN SOLUTION
    prompt = system
    for i, (q, a) in enumerate([*history, (question, None)]):
        prompt += (" USER: <image>\n" if i == 0 else "USER: ") + q + " ASSISTANT:"
        if a is not None:
            prompt += " " + a + "</s>"
    return prompt
    ### END SOLUTION


# %% tags=["grader"]
nb00.check_chat_prompt(chat_prompt)

# %% [markdown]
# The package builds the same string from LLaVA's JSON turns, then the token ids, with `<image>` expanded to one
# placeholder per visual token. Those 9 placeholders are the positions the model overwrites with the 9 rows of $H_v$:

# %%
turns = [
    {"from": "human", "value": "<image>\nWhat colour is the circle?"},
    {"from": "gpt", "value": "red"},
    {"from": "human", "value": "Where is it?"},
]
print(repr(conversation.render_chat(turns)))
ids = conversation.build_prompt(turns, tokenizer, model.num_image_tokens)
image_id = tokenizer.convert_tokens_to_ids("<image>")
print("prompt length:", len(ids), "tokens, of which", ids.count(image_id), "are image placeholders")
print(tokenizer.convert_ids_to_tokens(ids)[-24:])

# %% [markdown]
# (Words are tokens of our closed ShapesWorld vocabulary; `▁` marks a token preceded by a space, as in Vicuna's
# SentencePiece tokenizer.) Notebook 03 builds the tokenizer and chat template, notebook 05 the labels: the loss is
# taken on `red` and `</s>` only, never on the system prompt, the question or the image.
#
# ## 6. Where LLaVA sits: BLIP-2 and Flamingo
#
# LLaVA was not the first model to connect a vision encoder to an LLM. Its two best-known predecessors bridge the gap
# with **cross-attention** instead of one linear layer — and the paper (§4.1) names both as more elaborate options it
# leaves for future work, choosing the linear layer because it is light and lets the authors iterate quickly on data.
#
# | | **Flamingo** (Alayrac et al. 2022) | **BLIP-2** (Li et al. 2023) | **LLaVA** (Liu et al. 2023) |
# |---|---|---|---|
# | how the image enters the LM | a **Perceiver Resampler** compresses the features to 64 visual tokens, which new **gated cross-attention** layers *inside* the frozen LM attend to | a **Q-Former**: **32 learned queries** cross-attend to the frozen ViT's features; their outputs are fed to the LM's input as "soft visual prompts" | **every patch** feature goes through $W$ and is fed to the LM's input as a token (256 at 224 px) |
# | bridge size | new cross-attention layers throughout the LM; tanh gates start at 0, so the LM is exactly unchanged at initialisation | Q-Former, 188M parameters | one linear layer, 4–5M parameters |
# | what trains | resampler + cross-attention layers; vision encoder and LM frozen (fine-tuning the LM cost −8.0% in its ablations) | Q-Former (+ a projection); ViT and LLM frozen | stage 1: $W$; stage 2: $W$ + the whole LLM; ViT always frozen |
# | pre-training data | large web corpora of interleaved image–text pages, plus image–text pairs | two pre-training stages on 129M images | 595K captions + 158K generated instructions |
# | instruction following | few-shot prompting | none built in (instruction-tuned later by InstructBLIP) | trained for it: the whole point |
# | LLaVA-Bench (In-the-Wild), relative score | OpenFlamingo: 19.1 | 38.1 | **67.3** |
#
# Two different things go by "cross-attention" here (study question 11). BLIP-2's Q-Former and Flamingo's Perceiver
# Resampler are **resamplers**: a fixed number of learned queries attend to the image features and come out as a
# short sequence of tokens, however large the image. Flamingo additionally puts cross-attention **inside** the LM.
# Our package has an analogue of the first kind: the projector `resampler`, $k$ learned queries cross-attending to
# $Z_v$ (notebook 09 compares it with the linear $W$). Whatever the number of patches, it gives $k$ tokens:

# %%
resampler = projector.build_projector("resampler", 64, 64, num_queries=4)
with torch.no_grad():
    for n_patches in (9, 36):  # a 48-px and a 96-px image at patch 16
        z = torch.randn(1, n_patches, 64)  # Z_v: (1, N, 64)
        print(f"Z_v {tuple(z.shape)} -> linear W {tuple(model.projector(z).shape)}, resampler {tuple(resampler(z).shape)}")
linear_size = projector.projector_param_count("linear", 64, 64)
resampler_size = projector.projector_param_count("resampler", 64, 64, num_queries=4)
print(f"parameters: linear {linear_size:,} | resampler {resampler_size:,}")

# %% [markdown]
# The resampler buys a fixed, small token budget with about five times the parameters — and, in BLIP-2's case, a dedicated
# pre-training stage on 129M images. LLaVA's bet was the opposite: keep the bridge trivial and put the effort into
# instruction data. At academic data scales the simple prefix held up well (LLaVA-1.5-7B beats the Flamingo-style
# IDEFICS-80B, e.g. VQAv2 78.5 vs 60.0).
#
# ## 7. What LLaVA reported
#
# The paper's two headline numbers, and what they mean:
#
# - **LLaVA-Bench (COCO): 85.1% relative score** (Table 4). 30 COCO images, 90 questions (conversation, detail,
#   complex reasoning). GPT-4 judges both LLaVA's answer and the answer of a *text-only* GPT-4 that reads the
#   symbolic context; the relative score is LLaVA's mean score divided by the reference's. It is *not* "85% as good
#   as a multimodal GPT-4", and it is in-distribution: the questions come from the same pipeline as the training data.
#   On the harder, hand-curated **In-the-Wild** set the score is **67.3%** (Table 5).
# - **ScienceQA: 90.92%** accuracy (Table 7), fine-tuned for 12 epochs, reasoning before the answer; **92.53%**, a new
#   state of the art at the time, when GPT-4 acts as a judge between LLaVA and a text-only GPT-4 (human accuracy:
#   88.40%).
#
# Table 4 is the clearest evidence that the data makes the assistant:

# %%
rows = ["no instruction\ntuning", "conversation\nonly", "conv + 5% detail\n+ 10% complex", "detail +\ncomplex",
        "full data"]
scores = [21.5, 73.8, 80.5, 81.9, 85.1]  # LLaVA-Bench (COCO), relative score, "All" column of Table 4
fig, ax = plt.subplots(figsize=(7, 3.2))
bars = ax.barh(rows, scores, color=["#bbbbbb"] * 4 + ["#f6b26b"])
ax.bar_label(bars, fmt="%.1f", padding=3)
ax.set_xlim(0, 100)
ax.set_xlabel("relative score vs text-only GPT-4 (%)")
ax.set_title("LLaVA-Bench (COCO), paper Table 4: the training data ablation")
fig.tight_layout()
plt.show()


# %% [markdown]
# Instruction tuning adds more than 60 points; a little detail and complex-reasoning data on top of conversations adds
# about 7 more (73.8 → 80.5) and even improves the conversation score; all three types together are best. You saw the
# toy version of the first bar in section 1.
#
# ## 8. Study question 1
#
# > **1) LLaVA 的核心贡献是什么？为何重要？**
# >
# > *What is LLaVA's core contribution, and why does it matter?*
#
# Which of these statements are true? Several are.
#
# - **(a)** LLaVA's novelty is a new cross-attention architecture that fuses image features into every layer of the LLM.
# - **(b)** Its key idea is about data: a text-only GPT-4, given only captions and bounding boxes, turned existing COCO
#   annotations into 158K multimodal instruction-following samples (conversations, detailed descriptions, complex
#   reasoning).
# - **(c)** GPT-4 looked at the COCO images themselves when it wrote the conversations.
# - **(d)** A deliberately minimal model — frozen CLIP ViT-L/14, one trainable projection, Vicuna — tuned on that data
#   becomes a general visual assistant, and this cheap two-stage recipe is the one most later open vision-language
#   models copy.
# - **(e)** CLIP is fine-tuned together with the LLM in stage 2, which is why LLaVA sees better than CLIP alone.
# - **(f)** The 85.1% on LLaVA-Bench means LLaVA is 85% as good as a multimodal GPT-4 on real-world photos.
# - **(g)** Without instruction tuning the same model scores 21.5 instead of 85.1 on LLaVA-Bench (COCO): the
#   instruction data is what turns the connected model into an assistant.
# - **(h)** Besides the data and the model, LLaVA released LLaVA-Bench, its data, code and checkpoints; v1 trains in
#   about 14 hours on 8 A100s (4 + 10), so others could reproduce it and build on it.
#
# Return the letters of **all** true statements, e.g. `"ace"`.

# %% tags=["exercise"]
def answer_study_q1() -> str:
    """The letters of every true statement, e.g. "ace"."""
    ### BEGIN SOLUTION
    return "bdgh"
    ### END SOLUTION


# %% tags=["grader", "study-q1"]
nb00.check_study_q1(answer_study_q1)

# %% [markdown] tags=["solution-only"]
# **A model answer.** LLaVA's core contribution is *visual instruction tuning*, and it is about data more than
# architecture. (b) A text-only GPT-4 turned existing annotations — captions and boxes, never pixels (so (c) is false)
# — into 158K instruction-following samples of three types. (d) A deliberately minimal model trained on them — frozen
# CLIP ViT-L/14, one linear projection, Vicuna; not a new cross-attention design, so (a) is false — became a general
# visual assistant. CLIP stays frozen in both stages, so (e) is false. (g) The data is what matters: without
# instruction tuning the same model scores 21.5 instead of 85.1. (f) confuses the metric: 85.1% is a ratio to a
# *text-only* GPT-4 on an in-distribution benchmark. (h) The paper lists four contributions — the data pipeline, the
# model, LLaVA-Bench, and the open release — and v1 trains in about a day on one 8-GPU node.
#
# Why it matters: it carried "instruction tuning with machine-generated data" from text LLMs to vision; its two-stage
# recipe (align a projector, then instruction-tune) became the template most open vision-language models follow
# (LLaVA-1.5 keeps the skeleton, with an MLP projector and 665K mixed data); and it gave the community a cheap,
# reproducible baseline.

# %% [markdown]
# ## Questionnaire
#
# Not graded: a few questions to think about before notebook 01. Write your answers down; you will meet each of them
# again.
#
# 1. The teacher (GPT-4) never saw the images. What kinds of mistake can such a teacher make that a teacher looking at
#    the pixels would not — and what kinds can it *not* make? (Notebook 01; study question 9.)
# 2. In stage 1 the LLM is frozen, yet the loss is computed by the LLM. How does the gradient reach $W$? (Notebook 05.)
# 3. `llava-mini` spends 9 tokens per image, LLaVA-1.5 576. What would you expect to happen to a question about the
#    *position* of a shape if the 9 tokens were averaged into one? (Notebooks 04 and 09; study question 14.)
# 4. Suppose a stage-1 model captions instead of answering. Is that a failure of the vision side, of $W$, or of the
#    language model? How would you find out?
# 5. LLaVA-Bench's 85.1% is relative to a text-only GPT-4 that reads the *annotations*. Can a model exceed 100%? What
#    would that tell you? (Notebook 08; study question 6.)
# 6. Flamingo keeps the LM exactly unchanged at initialisation (tanh gates at 0); LLaVA's stage 2 changes the whole LM.
#    What does each design risk? (Study questions 4 and 11.)
