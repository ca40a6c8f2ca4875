"""Exact-match accuracy per question category: the course's quick, judge-free measure of a LlavaMini.

Questions come from the teacher on held-out scenes of a split (`world.SPLITS`), one per scene and category,
single-turn, answered greedily. Short answers are compared after normalisation (lower case, no punctuation,
number words as digits). Two free-form types are scored against the scene instead:

- `description`: F1 of the (colour, shape, position) facts a detailed description states, against the
  scene's objects; a stated object that is not there is a false positive.
- `reasoning`: exact match of the conclusion after "so the answer is" (LLaVA's complex reasoning type).
"""

from __future__ import annotations

import re
import string

import numpy as np
import torch

from llava_mini import teacher, world
from llava_mini.conversation import build_prompt, collate

SHORT_KEYS = teacher.CATEGORIES  # colour, shape, count, position, existence, relation
JSON_KEYS = (*SHORT_KEYS, "overall", "existence_yes", "existence_no", "conjunction_foil", "description",
             "reasoning", "n")
NUMBER_WORDS = {w: str(i) for i, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven",
                                                  "eight", "nine"))}
CONCLUSION = "so the answer is"
_FACT = re.compile(rf"\b({'|'.join(world.COLOURS)}) ({'|'.join(world.SHAPES)})\b")
_PHRASES = sorted((p for row in world.POSITIONS for p in row), key=len, reverse=True)  # longest first
_POSITION = re.compile(rf"\b({'|'.join(_PHRASES)})\b")


def normalise(answer: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed, number words as digits."""
    words = answer.lower().translate(str.maketrans("", "", string.punctuation)).split()
    return " ".join(NUMBER_WORDS.get(w, w) for w in words)


def conclusion(text: str) -> str | None:
    """The normalised words after the last "so the answer is", or None when there is no conclusion."""
    at = text.lower().rfind(CONCLUSION)
    return None if at < 0 else normalise(text[at + len(CONCLUSION):])


def stated_facts(description: str) -> list[tuple[str, str, str]]:
    """(colour, shape, position) for each sentence that names exactly one object and one position."""
    facts = []
    for sentence in re.split(r"(?<=\.)\s+", description):
        objects, positions = _FACT.findall(sentence), _POSITION.findall(sentence)
        if len(objects) == 1 and len(positions) == 1:
            facts.append((*objects[0], positions[0]))
    return facts


def description_f1(description: str, scene: world.Scene) -> float:
    truth = {(o.colour, o.shape, o.position) for o in scene.objects}
    stated = set(stated_facts(description))
    hits = len(stated & truth)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(stated), hits / len(truth)
    return 2 * precision * recall / (precision + recall)


@torch.no_grad()
def answer(model, tokenizer, scenes, questions: list[str], max_new_tokens: int = 12, batch_size: int = 64) -> list[str]:
    """Greedy single-turn answers, one per (scene, question), in batches of left-padded prompts."""
    model.eval()
    n_image = model.num_image_tokens
    device = next(model.parameters()).device
    answers = []
    for i in range(0, len(questions), batch_size):
        chunk = questions[i:i + batch_size]
        prompts = [build_prompt([{"from": "human", "value": "<image>\n" + q}], tokenizer, n_image) for q in chunk]
        batch = collate(prompts, tokenizer.pad_token_id, padding_side="left")
        pixels = world.pixel_values(world.render_batch(scenes[i:i + batch_size], model.config.vision.image_size))
        out = model.generate(batch["input_ids"].to(device), pixels.to(device), batch["attention_mask"].to(device),
                             max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id)
        answers += tokenizer.batch_decode(out.cpu(), skip_special_tokens=True)
    return [a.strip() for a in answers]


def _draw(split: str, n: int, seed: int, category: str):
    """n (scene, QA) pairs of a category, one per scene, from consecutive seeds of the split."""
    pairs, start = [], seed
    for s in world.SPLITS[split][start:]:
        scene = world.sample_scene(s)
        qa = teacher.questions(world.symbolic_context(scene), category, np.random.default_rng([s, len(category)]))
        if qa:
            pairs.append((scene, qa[0]))
        if len(pairs) == n:
            return pairs
    raise ValueError(f"the {split} split ran out of scenes for {n} {category} questions")


def accuracy(model, tokenizer, split: str = "test", n: int = 300, seed: int = 0) -> dict:
    """Every key of `JSON_KEYS` (fractions in [0, 1], `n` the questions per category), plus `caption_like`:
    the share of short answers that are captions (a stage-1 model's habit) and `examples` of each category."""
    if split not in world.SPLITS:
        raise KeyError(f"unknown split {split!r}; expected one of {', '.join(world.SPLITS)}")
    if n < 1:
        raise ValueError(f"n must be a positive number of questions per category, got {n}")
    result, examples, caption_like, by_kind = {}, {}, [], {}
    for category in SHORT_KEYS:
        pairs = _draw(split, n, seed, category)
        replies = answer(model, tokenizer, [s for s, _ in pairs], [qa.question for _, qa in pairs])
        correct = [normalise(r) == normalise(qa.answer) for r, (_, qa) in zip(replies, pairs)]
        result[category] = float(np.mean(correct))
        examples[category] = (pairs[0][1].question, pairs[0][1].answer, replies[0])
        caption_like += [len(r.split()) > 4 and bool(_FACT.search(r)) for r in replies]
        for ok, (_, qa) in zip(correct, pairs):
            by_kind.setdefault(qa.kind, []).append(ok)
    result["overall"] = float(np.mean([result[c] for c in SHORT_KEYS]))
    no = [ok for k in teacher.NO_KINDS for ok in by_kind.get(k, [])]
    for key, oks in (("existence_yes", by_kind.get("yes", [])), ("existence_no", no),
                     ("conjunction_foil", by_kind.get("conjunction_foil", []))):
        result[key] = float(np.mean(oks)) if oks else None  # None: no such question among the n drawn

    scenes = [world.sample_scene(s) for s in world.SPLITS[split][seed:seed + n]]
    rng = np.random.default_rng(seed)
    prompts = [teacher.DETAIL_INSTRUCTIONS[int(rng.integers(len(teacher.DETAIL_INSTRUCTIONS)))] for _ in scenes]
    descriptions = answer(model, tokenizer, scenes, prompts, max_new_tokens=160)
    result["description"] = float(np.mean([description_f1(d, s) for d, s in zip(descriptions, scenes)]))
    examples["description"] = (prompts[0], None, descriptions[0])

    tutor = teacher.Teacher()
    tasks = [tutor.complex_reasoning(world.symbolic_context(s), np.random.default_rng([s.seed, 7])).turns[0]
             for s in scenes]
    replies = answer(model, tokenizer, scenes, [f"{q} {teacher.REASONING_CUE}" for q, _ in tasks], max_new_tokens=120)
    result["reasoning"] = float(np.mean([conclusion(r) == conclusion(a) for r, (_, a) in zip(replies, tasks)]))
    examples["reasoning"] = (tasks[0][0], tasks[0][1], replies[0])
    result["n"] = n
    result["caption_like"] = float(np.mean(caption_like))
    result["examples"] = examples
    return result
