"""Failure modes and beyond (notebook 10; study questions 7, 12 and 17): the probes and the small data sets
that test a LlavaMini where LLaVA is weak, and the batching and scoring they need.

- **Binding.** LLaVA §5.1 (Limitations, Table 6): asked whether the fridge holds "strawberry-flavored yogurt",
  LLaVA says yes when it holds yogurt and, separately, strawberries; the paper reads it as perceiving the image
  as "a bag of patches". `binding_probe` writes the ShapesWorld analogue: "Is there a red circle?" about a red
  circle (`yes`), about a red square and a blue circle (`foil`, a conjunction foil) and about neither (`absent`).
  `ShuffledTokens` shuffles the order of Z_v's tokens at test time.
- **Reasoning.** LLaVA's ScienceQA model reasons before it answers (Table 8: answer first 89.77, reasons first
  90.92). `reasoning_items` asks the teacher's yes/no reasoning questions, `reasoned_and_direct` compares the
  conclusion after the model's own steps with its direct answer, `false_steps` checks the steps against the scene.
- **Several images.** LLaVA trains on one image per conversation (a 2,048-token context, 256 tokens an image);
  LLaVA-1.5 §5 lists the "lack of multiple-image understanding" among its limitations. A LlavaMini sample may hold
  k images (`llava`); `multi_image_prompt` writes their placeholders, `which_image` and `motion` are the tasks.
- **Knowledge.** LLaVA §5.1: naming the ramen restaurant needs "large knowledge coverage", and the side dishes
  may need to "retrieve relevant multimodal information from Internet". `key_question` asks for a fact no pixel
  shows (each colour's key number), with the facts in the prompt (`facts`, retrieval) or without (fine-tuning).

Every task is a list of `Item`s (images, question, answer); `Items` batches them for `train.fit`, `choose` scores
them by forced choice among candidate answers, `bootstrap_ci` (`evaluate.bootstrap_ci`) and `diff_ci` give
95% intervals over items.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from llava_mini import evaluate, teacher, world
from llava_mini.bench.judge import reasoning_claims
from llava_mini.evaluate import bootstrap_ci  # noqa: F401  (notebook 10 calls it as failures.bootstrap_ci)
from llava_mini.conversation import IMAGE, build_chat, build_prompt, collate

DIRECTIONS = ("to the left of", "to the right of", "above", "below")  # where an object ends, from where it began
OTHER_CATEGORIES = tuple(c for c in teacher.CATEGORIES if c != "existence")
KEYS = {"red": 3, "green": 1, "blue": 4, "yellow": 5, "purple": 2}  # colour -> key: a fact no pixel shows


@dataclass(frozen=True)
class Item:
    """One question about k images (k scenes, in the order their placeholders appear) with its right answer
    (`answer`), the wrong ones a forced choice weighs it against (`others`) and what kind of item it is."""

    scenes: tuple[world.Scene, ...]
    question: str
    answer: str
    others: tuple[str, ...] = ()
    kind: str = ""


def scene_with(specs, seed: int, cells=None) -> world.Scene:
    """A scene of the given (colour, shape, size) objects, in `cells` (row-major 0..8) or in random distinct cells."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(world.N_CELLS, size=len(specs), replace=False) if cells is None else cells
    objects = sorted((world.place(spec, int(cell), rng) for spec, cell in zip(specs, cells)),
                     key=lambda o: (o.row, o.col))
    return world.Scene(seed, tuple(objects))


def conjunction_foils(objects) -> list[tuple[str, str]]:
    """The (colour, shape) pairs whose colour and shape are both in the scene but never on one object: the
    "strawberry-flavored yogurt" of a scene holding strawberries and yogurt. Sorted."""
    combos = {(o.colour, o.shape) for o in objects}
    colours, shapes = {o.colour for o in objects}, {o.shape for o in objects}
    return sorted((c, s) for c in colours for s in shapes if (c, s) not in combos)


def _existence(colour: str, shape: str, holds: bool) -> tuple[str, str, tuple[str, ...]]:
    yes, no = f"yes, there is a {colour} {shape}.", f"No, there is no {colour} {shape}."
    return f"Is there a {colour} {shape}?", (yes if holds else no), ((no,) if holds else (yes,))


def existence_question(scene: world.Scene, rng: np.random.Generator, yes_ratio: float, foil_share: float) -> Item:
    """"Is there a C S?": present with probability `yes_ratio`; else a conjunction foil with probability
    `foil_share` (where the scene has one), else a colour or a shape the scene lacks (the teacher's other "no"
    kinds)."""
    grid = [(c, s) for c in world.COLOURS for s in world.SHAPES]
    present = sorted({(o.colour, o.shape) for o in scene.objects})
    foils = conjunction_foils(scene.objects)
    if rng.random() < yes_ratio:
        kind, options = "yes", present
    elif foils and rng.random() < foil_share:
        kind, options = "foil", foils
    else:
        kind, options = "absent", [combo for combo in grid if combo not in present and combo not in foils]
    colour, shape = options[int(rng.integers(len(options)))]
    return Item((scene,), *_existence(colour, shape, kind == "yes"), kind=kind)


def qa_items(seeds, yes_ratio: float = 0.5, foil_share: float = 1 / 3, seed: int = 0) -> list[Item]:
    """Single-turn training questions, one per scene: half existence (`existence_question`), half the teacher's
    other categories, answered in sentences as `llava-mini` was taught (`teacher.QA.sentence`)."""
    items = []
    for s in seeds:
        rng, scene = np.random.default_rng([seed, s]), world.sample_scene(s)
        if rng.random() < 0.5:
            items.append(existence_question(scene, rng, yes_ratio, foil_share))
            continue
        category = OTHER_CATEGORIES[int(rng.integers(len(OTHER_CATEGORIES)))]
        items += [Item((scene,), qa.question, qa.sentence, kind=category)
                  for qa in teacher.questions(world.symbolic_context(scene), category, rng)]
    return items


def category_items(seeds, category: str, seed: int = 0) -> list[Item]:
    """One teacher question of `category` (`teacher.CATEGORIES`) per scene that has one, answered in a sentence."""
    items = []
    for s in seeds:
        scene = world.sample_scene(s)
        items += [Item((scene,), qa.question, qa.sentence, kind=category) for qa in
                  teacher.questions(world.symbolic_context(scene), category, np.random.default_rng([seed, s]))]
    return items


def binding_probe(n: int, seed: int = 0) -> list[Item]:
    """3n existence questions about two-object scenes: n of each kind, `yes` (a red circle and a blue square),
    `foil` (a red square and a blue circle: both attributes there, never bound), `absent` (neither)."""
    items = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        (c1, c2, c3), (s1, s2, s3) = (rng.choice(words, 3, replace=False) for words in (world.COLOURS, world.SHAPES))
        z1, z2 = (str(z) for z in rng.choice(world.SIZES, 2))
        for kind, specs, asked in (("yes", [(c1, s1, z1), (c2, s2, z2)], (c1, s1)),
                                   ("foil", [(c1, s2, z1), (c2, s1, z2)], (c1, s1)),
                                   ("absent", [(c1, s2, z1), (c2, s2, z2)], (c3, s3))):
            scene = scene_with(specs, int(rng.integers(2**31)))
            items.append(Item((scene,), *_existence(*asked, kind == "yes"), kind=kind))
    return items


def shuffle_tokens(z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Z_v (n_img, N, D) with each image's N tokens in an order of its own (`torch.randperm`); nothing else moves."""
    order = torch.stack([torch.randperm(z.shape[1], generator=generator) for _ in range(z.shape[0])])  # (n_img, N)
    return torch.gather(z, 1, order[..., None].expand_as(z))  # (n_img, N, D)


class ShuffledTokens(nn.Module):
    """A projector W that first shuffles Z_v's tokens (`shuffle_tokens`): the grid read as a bag of patches."""

    def __init__(self, projector: nn.Module, seed: int = 0):
        super().__init__()
        self.projector, self.generator = projector, torch.Generator().manual_seed(seed)

    def num_tokens(self, n_in: int) -> int:
        return self.projector.num_tokens(n_in)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.projector(shuffle_tokens(z, self.generator))


def multi_image_prompt(question: str, k: int) -> str:
    """The first human turn for k images: LLaVA's `<image>\\nX_q` for one; for several, one labelled line each,
    "image 1: <image>" ... "image k: <image>", then the question (LLaVA-NeXT-Interleave's interleaved format)."""
    if k < 1:
        raise ValueError(f"a multi-image prompt needs at least one image, got k={k}")
    if k == 1:
        return f"{IMAGE}\n{question}"
    return "".join(f"image {i}: {IMAGE}\n" for i in range(1, k + 1)) + question


def which_image(n: int, seed: int = 0, foil: bool = True) -> list[Item]:
    """Two images, one with a (colour, shape) object, the other with a conjunction foil of it:
    "Is there a red circle in image 1 or image 2?" (chance: 1/2)."""
    items = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        (c1, c2), (s1, s2) = (rng.choice(words, 2, replace=False) for words in (world.COLOURS, world.SHAPES))
        z1, z2 = (str(z) for z in rng.choice(world.SIZES, 2))
        other = [(c1, s2, z1), (c2, s1, z2)] if foil else [(c2, s2, z1)]
        scenes = [scene_with(specs, int(rng.integers(2**31))) for specs in ([(c1, s1, z1), (c2, s2, z2)], other)]
        where = int(rng.integers(2))
        scenes = scenes if where == 0 else scenes[::-1]
        answers = [f"There is a {c1} {s1} in image {j}." for j in (1, 2)]
        items.append(Item(tuple(scenes), f"Is there a {c1} {s1} in image 1 or image 2?", answers[where],
                          (answers[1 - where],), "which image"))
    return items


def motion(n: int, seed: int = 0) -> list[Item]:
    """Three frames of one object crossing a row or a column, one cell a frame, beside a still one: "Is the red
    circle in image 3 to the left of, to the right of, above or below the red circle in image 1?" (chance: 1/4)."""
    items = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        direction = int(rng.integers(4))
        line = int(rng.integers(3))  # the row (moving left or right) or column (moving up or down) it crosses
        path = [3 * line + step if direction < 2 else 3 * step + line for step in range(3)]  # cells, first to last
        path = path[::-1] if direction in (0, 2) else path
        (c1, c2), (s1, s2) = (rng.choice(words, 2, replace=False) for words in (world.COLOURS, world.SHAPES))
        still = int(rng.choice([c for c in range(world.N_CELLS) if c not in path]))
        specs, scene_seed = [(c1, s1, str(rng.choice(world.SIZES))), (c2, s2, "large")], int(rng.integers(2**31))
        frames = tuple(scene_with(specs, scene_seed, [cell, still]) for cell in path)
        moving = f"the {c1} {s1}"
        answers = [f"The {c1} {s1} in image 3 is {d} {moving} in image 1." for d in DIRECTIONS]
        question = f"Is {moving} in image 3 to the left of, to the right of, above or below {moving} in image 1?"
        items.append(Item(frames, question, answers[direction], tuple(answers[:direction] + answers[direction + 1:]),
                          DIRECTIONS[direction]))
    return items


def facts(colours, keys: dict[str, int]) -> str:
    """The retrieved facts about the given colours, one sentence each: "The key of a red object is 3."."""
    return " ".join(f"The key of a {c} object is {keys[c]}." for c in colours)


def key_question(scene: world.Scene, keys: dict[str, int], rng: np.random.Generator, retrieve: bool) -> Item:
    """"What is the key of the circle?" about an object named by its shape, which must be unique in the scene;
    with `retrieve`, the facts about every colour in the scene come first, in random order (chance: 1/5)."""
    unique = [o for o in scene.objects if sum(p.shape == o.shape for p in scene.objects) == 1]
    target = unique[int(rng.integers(len(unique)))]
    question = f"What is the key of the {target.shape}?"
    if retrieve:
        colours = sorted({o.colour for o in scene.objects})
        question = facts([colours[j] for j in rng.permutation(len(colours))], keys) + " " + question
    answers = [f"The key of the {target.shape} is {k}." for k in sorted(set(KEYS.values()))]
    right = answers.pop(keys[target.colour] - 1)
    return Item((scene,), question, right, tuple(answers), target.colour)


def key_items(seeds, keys: dict[str, int] | None, retrieve: bool, seed: int = 0) -> list[Item]:
    """One key question per scene of `seeds` with a unique shape; `keys=None`: a new random mapping per item."""
    items = []
    for s in seeds:
        rng, scene = np.random.default_rng([seed, s]), world.sample_scene(s)
        mapping = keys or dict(zip(world.COLOURS, (int(k) for k in rng.permutation(len(KEYS)) + 1)))
        if any(sum(p.shape == o.shape for p in scene.objects) == 1 for o in scene.objects):
            items.append(key_question(scene, mapping, rng, retrieve))
    return items


def _human(item: Item) -> dict:
    """The item's first (and only) human turn: its images' placeholders, then the question."""
    return {"from": "human", "value": multi_image_prompt(item.question, len(item.scenes))}


class Items:
    """Endless shuffled training batches of items for `train.fit`: Vicuna-v1 chats (loss on the answer), the
    images of each row in order (`pixel_values` lists them row by row, as `LlavaMini.embed` fills them)."""

    def __init__(self, items: list[Item], tokenizer, num_image_tokens: int, batch_size: int, seed: int = 0):
        self.samples = [build_chat([_human(it), {"from": "gpt", "value": it.answer}], tokenizer, num_image_tokens)
                        for it in items]
        self.pixels = [world.pixel_values(world.render_batch(it.scenes)) for it in items]  # each (k, 3, H, W)
        self.pad_id, self.batch_size, self.rng = tokenizer.pad_token_id, batch_size, np.random.default_rng(seed)
        self.order: list[int] = []

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if len(self.order) < self.batch_size:
            self.order += list(self.rng.permutation(len(self.samples)))
        rows, self.order = self.order[:self.batch_size], self.order[self.batch_size:]
        batch = collate([self.samples[r] for r in rows], self.pad_id)
        batch["pixel_values"] = torch.cat([self.pixels[r] for r in rows])  # (sum of k, 3, H, W)
        return batch


@torch.no_grad()
def choose(model, tokenizer, items: list[Item], batch_size: int = 64) -> np.ndarray:
    """Forced choice: 1 where the model gives the right answer a higher likelihood (summed log-probability of
    its tokens) than every answer in `others`, else 0; one per item. Needs no answer format learnt."""
    model.eval()
    rows = [(i, text) for i, it in enumerate(items) for text in (it.answer, *it.others)]
    scores = np.zeros(len(rows))
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        samples = [build_chat([_human(items[i]), {"from": "gpt", "value": text}], tokenizer, model.num_image_tokens)
                   for i, text in chunk]
        batch = collate(samples, tokenizer.pad_token_id)
        pixels = torch.cat([world.pixel_values(world.render_batch(items[i].scenes)) for i, _ in chunk])
        logits = model(batch["input_ids"], pixels, batch["attention_mask"]).logits[:, :-1]  # (B, T-1, V)
        labels = batch["labels"][:, 1:]  # (B, T-1)
        logp = torch.log_softmax(logits.float(), -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
        scores[start:start + len(chunk)] = (logp * (labels >= 0)).sum(1).numpy()  # (B,)
    right, at = np.zeros(len(items), dtype=int), 0
    for i, it in enumerate(items):
        own, at = scores[at:at + 1 + len(it.others)], at + 1 + len(it.others)  # the right answer's score first
        right[i] = int(own[0] > own[1:].max()) if it.others else 1
    return right


@torch.no_grad()
def generate(model, tokenizer, items: list[Item], max_new_tokens: int = 24, batch_size: int = 64) -> list[str]:
    """Greedy replies to the items' questions, their k images each, left-padded in batches."""
    model.eval()
    replies = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        prompts = [build_prompt([_human(it)], tokenizer, model.num_image_tokens) for it in chunk]
        batch = collate(prompts, tokenizer.pad_token_id, padding_side="left")
        pixels = torch.cat([world.pixel_values(world.render_batch(it.scenes)) for it in chunk])
        out = model.generate(batch["input_ids"], pixels, batch["attention_mask"], max_new_tokens=max_new_tokens,
                             eos_token_id=tokenizer.eos_token_id)
        replies += [r.strip() for r in tokenizer.batch_decode(out, skip_special_tokens=True)]
    return replies


def exact(model, tokenizer, items: list[Item]) -> np.ndarray:
    """1 where the greedy reply equals the item's answer (`evaluate.normalise`: case, punctuation), else 0."""
    replies = generate(model, tokenizer, items, max_new_tokens=evaluate.MAX_REPLY_TOKENS["sentence"])
    same = [evaluate.normalise(r) == evaluate.normalise(it.answer) for r, it in zip(replies, items)]
    return np.array(same, dtype=int)


def reasoning_items(n: int, start: int = 0) -> list[Item]:
    """n of the teacher's complex-reasoning questions that a conversation asks too ("Is there a red cross?", "Is the
    A above the B?": kind `existence` or `relation`, answered yes or no), drawn on consecutive test scenes from
    `start` on (at most one a scene: a scene whose draw counts or compares sizes gives none), with the conclusion
    the teacher reasons to as the answer. The question is given without `teacher.REASONING_CUE`."""
    tutor, items = teacher.Teacher(), []
    for seed in world.SPLITS["test"][start:]:
        scene = world.sample_scene(seed)
        rng = np.random.default_rng([seed, 7])  # apart from the scene's own stream, as `evaluate` draws reasoning
        question, reply = tutor.complex_reasoning(world.symbolic_context(scene), rng).turns[0]
        answer = evaluate.conclusion(reply)
        kind = "existence" if question.startswith("Is there") else "relation" if question.startswith("Is the") else None
        if kind is not None:
            items.append(Item((scene,), question, answer, ("no" if answer == "yes" else "yes",), kind))
        if len(items) == n:
            return items
    raise ValueError(f"the test split ran out of scenes for {n} yes/no reasoning questions from {start} on")


def reasoned_and_direct(model, tokenizer, items: list[Item]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(reasoned, direct, replies) for items of `reasoning_items`: 1/0 per item, is the conclusion right after the
    model writes its own steps (the question with `teacher.REASONING_CUE`, the complex-reasoning format), and is
    the first word of its answer to the bare question (a conversation turn) right; and the reasoning replies."""
    cued = [dataclasses.replace(it, question=f"{it.question} {teacher.REASONING_CUE}") for it in items]
    replies = generate(model, tokenizer, cued, max_new_tokens=120)
    direct = generate(model, tokenizer, items, max_new_tokens=evaluate.MAX_REPLY_TOKENS["sentence"])
    return (np.array([evaluate.conclusion(r) == it.answer for r, it in zip(replies, items)], dtype=int),
            np.array([opening(r) == it.answer for r, it in zip(direct, items)], dtype=int), replies)


def opening(reply: str) -> str | None:
    """The yes or no a reply opens with ("yes, there is a red cross. The …"), or None."""
    word = (evaluate.normalise(reply).split() or [""])[0]
    return word if word in ("yes", "no") else None


def false_steps(replies: list[str], items: list[Item]) -> np.ndarray:
    """1 where a reasoning reply holds a step its scene contradicts, else 0, one per item: the rules judge's check
    of every step (`bench.judge.reasoning_claims`), with an opening answer left out (it is no step)."""
    flags = []
    for reply, it in zip(replies, items):
        steps = reply.split(". ", 1)[-1] if opening(reply) else reply
        _, false, _ = reasoning_claims(steps, f"{it.question} {teacher.REASONING_CUE}", it.scenes[0].objects)
        flags.append(int(false > 0))
    return np.array(flags, dtype=int)


def diff_ci(a, b, paired: bool = True, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of mean(a) - mean(b): `paired`, a and b score the same items (resampled together), else
    each side is resampled on its own."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired and len(a) != len(b):
        raise ValueError(f"paired scores need one value per item on each side, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, len(a), size=(n_boot, len(a)))
    ib = ia if paired else rng.integers(0, len(b), size=(n_boot, len(b)))
    low, high = np.percentile(a[ia].mean(axis=1) - b[ib].mean(axis=1), [2.5, 97.5])
    return float(low), float(high)
