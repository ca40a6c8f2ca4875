"""Exact-match accuracy per question category: the course's quick, judge-free measure of a LlavaMini.

Questions come from the teacher on held-out scenes of a split (`world.SPLITS`), one per scene and category,
single-turn, answered greedily. A reply is right when, normalised (lower case, no punctuation, number words
as digits), it equals the teacher's answer in the style the model was trained on (`teacher.ANSWER_STYLES`):
the short answer ("red") or the whole sentence that restates the referent ("The square is red."). Two
free-form types are scored against the scene instead:

- `description`: F1 of the (colour, shape, position) facts a detailed description states, against the
  scene's objects; a stated object that is not there is a false positive.
- `reasoning`: exact match of the conclusion after "so the answer is" (LLaVA's complex reasoning type).
"""

from __future__ import annotations

import re
import string

import numpy as np
import torch

from llava_mini import cells, teacher, world
from llava_mini.conversation import build_prompt, collate, place_image
from llava_mini.lm import LanguageModel

SHORT_KEYS = teacher.CATEGORIES  # colour, shape, count, position, existence, relation
JSON_KEYS = (*SHORT_KEYS, "overall", "existence_yes", "existence_no", "conjunction_foil", "description",
             "reasoning", "n")
NUMBER_WORDS = {w: str(i) for i, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven",
                                                  "eight", "nine"))}
CONCLUSION = "so the answer is"
MAX_REPLY_TOKENS = {"short": 12, "sentence": 32}  # the longest sentence answer is 17 tokens + </s>
_FACT = re.compile(rf"\b({'|'.join(world.COLOURS)}) ({'|'.join(world.SHAPES)})\b")
_PHRASES = sorted((p for row in world.POSITIONS for p in row), key=len, reverse=True)  # longest first
_POSITION = re.compile(rf"\b({'|'.join(_PHRASES)})\b")
_Z, _C, _S, _P = ("|".join(words) for words in (world.SIZES, world.COLOURS, world.SHAPES, _PHRASES))
# An object a caption names, with its position where stated: "in the P there is a [size] C S" or "C S [in the P]".
_NAMED = re.compile(rf"\bin the ({_P}) there is an? (?:(?:{_Z}) )?({_C}) ({_S})\b"
                    rf"|\b({_C}) ({_S})\b(?: in the ({_P})\b)?")


def normalise(answer: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed, number words as digits."""
    words = answer.lower().translate(str.maketrans("", "", string.punctuation)).split()
    return " ".join(NUMBER_WORDS.get(w, w) for w in words)


def conclusion(text: str) -> str | None:
    """The normalised words after the last "so the answer is", or None when there is no conclusion."""
    at = text.lower().rfind(CONCLUSION)
    return None if at < 0 else normalise(text[at + len(CONCLUSION):])


def is_caption(reply: str, answers: str = "short") -> bool:
    """Does a reply to a short question read as a stage-1 caption (over 4 words, naming an object)? The
    teacher's sentence answers do too, so in that style a caption must also start in lower case, as captions
    do and sentence answers (but "yes, ...") do not."""
    caption = len(reply.split()) > 4 and bool(_FACT.search(reply))
    if answers == "sentence":
        caption = caption and reply[:1].islower() and not reply.startswith("yes")
    return caption


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
def generate(model, tokenizer, scenes, prompts: list[list[int]], max_new_tokens: int,
             batch_size: int = 64) -> list[str]:
    """Greedy continuations of prompt ids (each with the image placeholders of its scene), left-padded in
    batches. A LlavaMini sees each scene's image; a LanguageModel (vicuna-mini) reads its cell tokens."""
    model.eval()
    device = next(model.parameters()).device
    answers = []
    for i in range(0, len(prompts), batch_size):
        chunk = scenes[i:i + batch_size]
        batch = collate(prompts[i:i + batch_size], tokenizer.pad_token_id, padding_side="left")
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        if isinstance(model, LanguageModel):
            table = torch.tensor([cells.cell_words(s, tokenizer) for s in chunk], device=device)
            out = model.generate(inputs_embeds=cells.fill(model.embed_tokens, ids, table, tokenizer.image_token_id),
                                 attention_mask=mask, max_new_tokens=max_new_tokens,
                                 eos_token_id=tokenizer.eos_token_id)
        else:
            pixels = world.pixel_values(world.render_batch(chunk, model.config.vision.image_size)).to(device)
            out = model.generate(ids, pixels, mask, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id)
        answers += tokenizer.batch_decode(out.cpu(), skip_special_tokens=True)
    return [a.strip() for a in answers]


def image_tokens(model) -> int:
    """How many placeholders stand for one image: N patch tokens, or one cell token per grid cell."""
    return world.N_CELLS if isinstance(model, LanguageModel) else model.num_image_tokens


def answer(model, tokenizer, scenes, questions: list[str], max_new_tokens: int = 12, batch_size: int = 64,
           image: str = "before") -> list[str]:
    """Greedy single-turn answers in the Vicuna-v1 chat format, one per (scene, question), the image placeholder
    `image` ("before" or "after") the question (`conversation.place_image`)."""
    n_image = image_tokens(model)
    prompts = [build_prompt([{"from": "human", "value": place_image(q, image)}], tokenizer, n_image) for q in questions]
    return generate(model, tokenizer, scenes, prompts, max_new_tokens, batch_size)


def caption_f1(model, tokenizer, split: str = "test", n: int = 300, seed: int = 0) -> tuple[float, list[str]]:
    """Mean F1 of the objects the model's `plain`-format captions (stage 1's task: `<s>` + image, then the
    caption) name against the scene's objects, and the captions. A named object matches when its colour and
    shape are right and so is its position where the caption states one."""
    scenes = [world.sample_scene(s) for s in world.SPLITS[split][seed:seed + n]]
    prompt = [tokenizer.bos_token_id] + [tokenizer.image_token_id] * image_tokens(model)
    captions = generate(model, tokenizer, scenes, [prompt] * n, max_new_tokens=60)
    return float(np.mean([_caption_f1(c, s) for c, s in zip(captions, scenes)])), captions


def _caption_f1(caption: str, scene: world.Scene) -> float:
    named = [(m[2] or m[4], m[3] or m[5], m[1] or m[6]) for m in _NAMED.finditer(caption)]  # (colour, shape, position)
    truth = [(o.colour, o.shape, o.position) for o in scene.objects]
    unmatched, hits = list(truth), 0
    for colour, shape, position in named:
        match = next((t for t in unmatched if t[:2] == (colour, shape) and position in (None, t[2])), None)
        if match is not None:
            unmatched.remove(match)
            hits += 1
    return 0.0 if hits == 0 else 2 * hits / (len(named) + len(truth))


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


def accuracy(model, tokenizer, split: str = "test", n: int = 300, seed: int = 0, answers: str = "short",
             free_form: bool = True, image: str = "before") -> dict:
    """Every key of `JSON_KEYS` (fractions in [0, 1], `n` the questions per category), plus `caption_like`:
    the share of short-category replies that are captions (a stage-1 model's habit) and `examples` of each
    category, and `correct`: per category, one 0/1 per question, in the order drawn (for paired comparisons of two
    models on the same questions). `answers`: the answer style replies are compared with. Without `free_form` the
    description and reasoning scores are left out (`None`): a language model pre-trained on chats alone never saw
    them. `image`: where the image placeholder goes, "before" (LLaVA's order) or "after" the question."""
    if answers not in teacher.ANSWER_STYLES:
        raise ValueError(f"unknown answer style {answers!r}; expected one of {', '.join(teacher.ANSWER_STYLES)}")
    if split not in world.SPLITS:
        raise KeyError(f"unknown split {split!r}; expected one of {', '.join(world.SPLITS)}")
    if n < 1:
        raise ValueError(f"n must be a positive number of questions per category, got {n}")
    result, examples, caption_like, by_kind, per_question = {}, {}, [], {}, {}
    for category in SHORT_KEYS:
        pairs = _draw(split, n, seed, category)
        replies = answer(model, tokenizer, [s for s, _ in pairs], [qa.question for _, qa in pairs],
                         max_new_tokens=MAX_REPLY_TOKENS[answers], image=image)
        correct = [normalise(r) == normalise(qa.reply(answers)) for r, (_, qa) in zip(replies, pairs)]
        result[category] = float(np.mean(correct))
        per_question[category] = [int(ok) for ok in correct]
        examples[category] = (pairs[0][1].question, pairs[0][1].reply(answers), replies[0])
        caption_like += [is_caption(r, answers) for r in replies]
        for ok, (_, qa) in zip(correct, pairs):
            by_kind.setdefault(qa.kind, []).append(ok)
    result["overall"] = float(np.mean([result[c] for c in SHORT_KEYS]))
    no = [ok for k in teacher.NO_KINDS for ok in by_kind.get(k, [])]
    for key, oks in (("existence_yes", by_kind.get("yes", [])), ("existence_no", no),
                     ("conjunction_foil", by_kind.get("conjunction_foil", []))):
        result[key] = float(np.mean(oks)) if oks else None  # None: no such question among the n drawn

    result["n"] = n
    result["caption_like"] = float(np.mean(caption_like))
    result["examples"] = examples
    result["correct"] = per_question
    result["description"] = result["reasoning"] = None
    if free_form:
        _free_form(model, tokenizer, split, n, seed, result, examples, image)
    return result


def bootstrap_ci(values, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of `values` (one score per question), resampling the questions with
    replacement `n_boot` times."""
    values = np.asarray(values, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(values), size=(n_boot, len(values)))  # (n_boot, n)
    low, high = np.percentile(values[idx].mean(axis=1), [2.5, 97.5])
    return float(low), float(high)


def _free_form(model, tokenizer, split: str, n: int, seed: int, result: dict, examples: dict, image: str) -> None:
    """The `description` F1 and `reasoning` scores (and examples) of `accuracy`, in place."""
    scenes = [world.sample_scene(s) for s in world.SPLITS[split][seed:seed + n]]
    rng = np.random.default_rng(seed)
    prompts = [teacher.DETAIL_INSTRUCTIONS[int(rng.integers(len(teacher.DETAIL_INSTRUCTIONS)))] for _ in scenes]
    descriptions = answer(model, tokenizer, scenes, prompts, max_new_tokens=160, image=image)
    result["description"] = float(np.mean([description_f1(d, s) for d, s in zip(descriptions, scenes)]))
    examples["description"] = (prompts[0], None, descriptions[0])

    tutor = teacher.Teacher()
    tasks = [tutor.complex_reasoning(world.symbolic_context(s), np.random.default_rng([s.seed, 7])).turns[0]
             for s in scenes]
    replies = answer(model, tokenizer, scenes, [f"{q} {teacher.REASONING_CUE}" for q, _ in tasks], max_new_tokens=120,
                     image=image)
    result["reasoning"] = float(np.mean([conclusion(r) == conclusion(a) for r, (_, a) in zip(replies, tasks)]))
    examples["reasoning"] = (tasks[0][0], tasks[0][1], replies[0])
