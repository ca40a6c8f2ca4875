"""The bench's ceiling for the zoo's LLM: LLaVA's stage 2 behind a perfect eye.

`PerfectEye` gives a LlavaMini the true bound cell tokens of every scene it is shown in place of H_v = W·Z_v
(`llava_mini.cells`: each cell the sum of the LLM's own word embeddings of its object's size, colour, shape, row and
column), so that every lookup error left is the LLM's. It remembers the scene of each image `world.render_batch`
draws while it is open (training batches, `evaluate`'s questions) and of each bench item, and looks images up by
their pixels.

From vicuna-mini (as `llava-mini-stage1` holds it: stage 1 trains only W), stage 2 runs as the zoo's does:
conversations for `recipe.STAGE2_EPOCHS`, then the full mix for `recipe.MIX_EPOCHS` with the chosen teacher. After
each phase it prints one JSON line: the phase, its loss and seconds, the accuracy on `--n` test questions per
category, and LLaVA-Bench-mini's relative scores with their intervals (rules judge).

    python tools/perfect_eye.py --teacher listing    # 1198 s + 776 s of training on 2 cores (docs/recipe_log.md)

Measured (session 16, one run): with the listing teacher, 89.8 [85.8, 93.6] in distribution against
`llava-mini-listing`'s 84.6 through its eye.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json

import numpy as np
import torch

from llava_mini import bench, cells, evaluate, recipe, stages, world, zoo
from llava_mini.bench import scores
from llava_mini.bench.judge import RuleJudge
from llava_mini.tokenizer import load_tokenizer

TEACHERS = {"llava-mini": recipe.TEACHER, "answer-first": recipe.ANSWER_FIRST, "listing": recipe.LISTING}


def _key(pixels: torch.Tensor) -> str:
    return hashlib.sha1(pixels.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


class PerfectEye:
    """While open, `model.encode_images` returns the bound cell tokens of each image's scene: (n_img, 9, D)."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer, self.scenes = model, tokenizer, {}

    def remember(self, scenes, images: np.ndarray) -> None:
        """Record the scene of each (H, W, 3) uint8 image, keyed by its pixel values as the model receives them."""
        for scene, pixels in zip(scenes, world.pixel_values(images)):
            self.scenes[_key(pixels)] = scene

    def _render_batch(self, scenes, *args, **kwargs) -> np.ndarray:
        images = self._render(scenes, *args, **kwargs)
        self.remember(scenes, images)
        return images

    def tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(n_img, 3, H, W) -> (n_img, 9, D): H_v as the sums of the LLM's word embeddings that vicuna-mini was
        pre-trained on (its embedding table trains on in stage 2, and these sums with it)."""
        keys = [_key(p) for p in pixel_values]
        if unknown := sum(k not in self.scenes for k in keys):
            raise ValueError(f"{unknown} of {len(keys)} images were never drawn by world.render_batch nor given to "
                             "remember() while the eye was open: it knows no scene for them")
        words = torch.tensor([cells.cell_words(self.scenes[k], self.tokenizer) for k in keys])  # (n_img, 9, 5)
        embed = self.model.lm.embed_tokens
        return cells.embed_cells(embed, words.to(embed.weight.device))

    def __enter__(self):
        self._render, world.render_batch = world.render_batch, self._render_batch
        self.model.encode_images = self.tokens
        return self

    def __exit__(self, *exc):
        world.render_batch = self._render
        del self.model.encode_images


def bench_scores(model, eye: PerfectEye, name: str, limit: int | None = None) -> dict:
    """LLaVA-Bench-mini's relative scores and intervals for `model` behind `eye` (the first `limit` items)."""
    items = bench.load(name)[:limit]
    eye.remember([it.scene for it in items], np.stack([it.image for it in items]))
    summary = scores.score(model, items, RuleJudge())
    return {k: summary[k] for k in ("relative_score", "ci95", "exact_match")}


def run(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer()
    model = zoo.load("llava-mini-stage1")  # vicuna-mini's LLM; W and g go unused behind the eye
    phases = [("conversations", ("conversation",), recipe.STAGE2_EPOCHS, "llava-mini"),  # llava-mini-conv-only's
              ("full mix", recipe.FULL_MIX, recipe.MIX_EPOCHS, args.teacher)]
    records = []
    with PerfectEye(model, tokenizer) as eye:
        for phase, types, epochs, teacher_name in phases:
            cfg, scenes = recipe.stage2_train(types, epochs), recipe.stage2_scenes(types)
            if args.steps:
                cfg = dataclasses.replace(cfg, steps=args.steps)
            if args.scenes:
                scenes = dict.fromkeys(scenes, args.scenes)
            metrics = stages.train(model, 2, cfg, scenes, types, teacher=TEACHERS[teacher_name], log=None)
            model.eval()
            record = {"phase": phase, "teacher": teacher_name, "loss": metrics["loss"], "seconds": metrics["seconds"]}
            accuracy = evaluate.accuracy(model, tokenizer, split="test", n=args.n, seed=0, answers="sentence")
            record["accuracy"] = {k: round(accuracy[k], 3) for k in evaluate.SHORT_KEYS}
            record["bench"] = {name: bench_scores(model, eye, name, args.bench_limit)
                               for name in ("in", "ood")}
            print(json.dumps(record), flush=True)
            records.append(record)
    return records


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", choices=sorted(TEACHERS), default="listing",
                   help="the mix phase's teacher, as the zoo job of that name (default: listing)")
    p.add_argument("--n", type=int, default=recipe.EVAL["n"], help="test questions per category")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=0, help="steps per phase instead of the recipe's (for tests)")
    p.add_argument("--scenes", type=int, default=0, help="train scenes per type instead of the recipe's")
    p.add_argument("--bench-limit", type=int, default=None, help="score only the first items of each bench")
    args = p.parse_args(argv)
    too_small = args.n < 1 or args.threads < 1 or (args.bench_limit is not None and args.bench_limit < 1)
    if too_small or args.steps < 0 or args.scenes < 0:
        p.error("--n, --threads and --bench-limit must be at least 1, --steps and --scenes at least 0")
    return args


if __name__ == "__main__":
    run(parse())
