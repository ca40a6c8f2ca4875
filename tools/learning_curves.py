"""Learning curves: short-answer accuracy per category against training steps (the evidence behind the zoo's
missed accuracy gates; docs/recipe_log.md, "The first generation").

Three experiments, each trained by the project's trainer (`train.fit`) at a constant learning rate after a
100-step warm-up (`decay=0`, so a curve can be cut at any step), printing one JSON line per evaluation: step,
seconds, mean loss of the last 50 steps and the greedy exact-match accuracy of each short category on `--n` test
questions.

    text    an LLM on vicuna-mini's corpus: the scene as a *textual* description (~25 words) before the chat
    slots   the same chats with a *bound* context: the 9 cell tokens of `llava_mini.cells` (each the sum of the
            word embeddings of its object's size, colour, shape, row and column): the form visual tokens take
            (the GPU curves in docs/recipe_log.md were measured before the row and column words were added)
    stage2  LLaVA's stage 2 on images, from the zoo's `llava-mini-stage1` (projector W + LLM train)

    python tools/learning_curves.py text --dim 128 --layers 4 --lr 1e-3 --batch 32 --seconds 300 --device cuda
    python tools/learning_curves.py slots --dim 64 --layers 2 --lr 3e-3 --batch 128 --seconds 150 --device cuda
    python tools/learning_curves.py stage2 --types conversation --lr 1e-3 --batch 128 --seconds 300 --device cuda
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from llava_mini import cells, corpora, evaluate, stages, world, zoo
from llava_mini.conversation import build_chat, build_plain, build_prompt, collate
from llava_mini.data import scene_records
from llava_mini.lm import LanguageModel, LMConfig
from llava_mini.tokenizer import load_tokenizer
from llava_mini.train import TrainConfig, fit, resolve_device, to_device

WARMUP_STEPS = 100
CELLS = world.N_CELLS


def short_questions(n: int):
    return {category: evaluate._draw("test", n, 0, category) for category in evaluate.SHORT_KEYS}


def score(replies: list[str], pairs) -> float:
    return round(float(np.mean([evaluate.normalise(r) == evaluate.normalise(qa.answer)
                                for r, (_, qa) in zip(replies, pairs)])), 3)


def text_experiment(args, tokenizer, device):
    """vicuna-mini's `context` corpus and its single-turn questions about a textual description."""
    lm = LanguageModel(LMConfig(len(tokenizer), dim=args.dim, layers=args.layers)).to(device)
    examples = corpora.lm_examples("context", world.split_seeds("train", args.scenes), tokenizer)
    batches = corpora.Batches(examples, tokenizer, args.batch, 0, group_by_length=True)
    image_id, questions = tokenizer.image_token_id, short_questions(args.n)

    @torch.no_grad()
    def evaluate_now():
        result = {}
        for category, pairs in questions.items():
            prompts = []
            for scene, qa in pairs:
                ids = build_prompt([{"from": "human", "value": "<image>\n" + qa.question}], tokenizer, 1)
                description = tokenizer.encode(world.symbolic_context(scene).captions[0], add_special_tokens=False)
                at = ids.index(image_id)
                prompts.append(ids[:at] + description + ids[at + 1:])
            batch = to_device(collate(prompts, tokenizer.pad_token_id, padding_side="left"), device)
            out = lm.generate(batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=6,
                              eos_token_id=tokenizer.eos_token_id)
            result[category] = score(tokenizer.batch_decode(out.cpu(), skip_special_tokens=True), pairs)
        return result

    return lm, batches, evaluate_now


def slots_experiment(args, tokenizer, device):
    """The same `plain` lines and chats, the scene given as 9 bound slot tokens instead of words."""
    lm = LanguageModel(LMConfig(len(tokenizer), dim=args.dim, layers=args.layers)).to(device)
    examples = []
    for seed in world.split_seeds("train", args.scenes):
        records, _ = scene_records(seed)
        slots = cells.cell_words(world.sample_scene(seed), tokenizer)
        examples.append((build_plain(records["plain"][0], tokenizer, CELLS), slots))
        examples.append((build_chat(records["conversation"][0]["conversations"], tokenizer, CELLS), slots))
    rng, image_id, questions = np.random.default_rng(0), tokenizer.image_token_id, short_questions(args.n)

    def batches():
        while True:
            chosen = [examples[i] for i in rng.choice(len(examples), args.batch, replace=False)]
            yield {**collate([s for s, _ in chosen], tokenizer.pad_token_id),
                   "cells": torch.tensor([w for _, w in chosen])}  # (B, 9, WORDS_PER_CELL)

    @torch.no_grad()
    def evaluate_now():
        result = {}
        for category, pairs in questions.items():
            prompts = [build_prompt([{"from": "human", "value": "<image>\n" + qa.question}], tokenizer, CELLS)
                       for _, qa in pairs]
            batch = to_device(collate(prompts, tokenizer.pad_token_id, padding_side="left"), device)
            slots = torch.tensor([cells.cell_words(scene, tokenizer) for scene, _ in pairs], device=device)
            out = lm.generate(inputs_embeds=cells.fill(lm.embed_tokens, batch["input_ids"], slots, image_id),
                              attention_mask=batch["attention_mask"], max_new_tokens=6,
                              eos_token_id=tokenizer.eos_token_id)
            result[category] = score(tokenizer.batch_decode(out.cpu(), skip_special_tokens=True), pairs)
        return result

    return cells.CellReader(lm, image_id), batches(), evaluate_now


def stage2_experiment(args, tokenizer, device):
    """LLaVA's stage 2 (W and the LLM train, the vision tower frozen) from a zoo checkpoint."""
    model = zoo.load(args.init)
    stages.freeze(model, 2)
    model.to(device)
    types = tuple(args.types.split(","))
    examples = stages.examples(2, world.split_seeds("train", args.scenes), tokenizer, model.num_image_tokens,
                               types=types)
    batches = corpora.Batches(examples, tokenizer, args.batch, 0, model.config.vision.image_size, group_by_length=True)
    questions = short_questions(args.n)

    def evaluate_now():
        result = {}
        for category, pairs in questions.items():
            replies = evaluate.answer(model, tokenizer, [s for s, _ in pairs], [qa.question for _, qa in pairs],
                                      max_new_tokens=6)
            result[category] = score(replies, pairs)
        return result

    return model, batches, evaluate_now


EXPERIMENTS = {"text": text_experiment, "slots": slots_experiment, "stage2": stage2_experiment}


def run(args) -> list[dict]:
    """Train until `--steps` or `--seconds` runs out; return (and print) one record per evaluation."""
    torch.manual_seed(args.seed)
    device, tokenizer = resolve_device(args.device), load_tokenizer()
    model, batches, evaluate_now = EXPERIMENTS[args.experiment](args, tokenizer, device)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, warmup=min(1.0, WARMUP_STEPS / args.steps),
                      decay=0, eval_every=args.eval_every, device=args.device, bf16=False, seed=args.seed, log_every=0,
                      progress=False)
    records, start = [], time.perf_counter()

    def evaluate(step: int, losses: list[float]) -> bool:
        record = {"experiment": args.experiment, "step": step, "seconds": round(time.perf_counter() - start, 1),
                  "loss": round(float(np.mean(losses[-50:])), 4), **evaluate_now()}
        print(json.dumps(record), flush=True)
        records.append(record)
        return time.perf_counter() - start > args.seconds

    fit(model, batches, cfg, count_fn=None, log=None, evaluate=evaluate)
    return records


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=EXPERIMENTS)
    parser.add_argument("--dim", type=int, default=128, help="LLM width (text, slots)")
    parser.add_argument("--layers", type=int, default=4, help="LLM depth (text, slots)")
    parser.add_argument("--init", default="llava-mini-stage1", help="zoo checkpoint stage 2 starts from")
    parser.add_argument("--types", default="conversation,detail,complex_reasoning", help="stage-2 instruction types")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--scenes", type=int, default=16000, help="training scenes")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=300.0, help="stop at the first evaluation after this much time")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--n", type=int, default=100, help="test questions per category")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.batch, args.scenes, args.steps, args.eval_every, args.n) < 1 or args.seconds <= 0:
        parser.error("--batch, --scenes, --steps, --eval-every, --n and --seconds must be positive")
    return args


if __name__ == "__main__":
    run(parse())
