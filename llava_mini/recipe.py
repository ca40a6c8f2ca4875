"""The toy-scale LLaVA recipe: configurations and `build_zoo`, which retrains and re-evaluates the zoo.

    clip-mini              vision encoder g, CLIP-style                        (LLaVA: CLIP ViT-L/14)
    vicuna-mini            LLM pre-trained to read a textual context            (LLaVA: Vicuna)
    plain-lm               LLM pre-trained on plain text (the contrast: stage 1 fails on it)
    plain-lm-stage1        stage 1 on plain-lm
    llava-mini-stage1      stage 1 on vicuna-mini: only W trained, no instruction tuning
    llava-mini             stage 1 + stage 2 on the full mix (conversation, detail, complex reasoning)
    llava-mini-conv-only   stage 1 + stage 2 on conversations only (paper Table 4's ablation)

Every step is seeded; metrics are measured on held-out scenes and written to the manifest.
"""

from __future__ import annotations

import json
import time

import torch

from llava_mini import evaluate, jobs, probe, zoo
from llava_mini.lm import LMConfig
from llava_mini.tokenizer import load_tokenizer
from llava_mini.train import TrainConfig
from llava_mini.vision import VisionConfig, VisionTower

VISION = VisionConfig(image_size=48, patch_size=16, width=64, layers=4, heads=4)
CLIP_TRAIN = TrainConfig(steps=1500, batch_size=64, lr=3e-3, warmup=0.05)
LM_TRAIN = {"context": TrainConfig(steps=600, batch_size=32, lr=3e-3), "plain": TrainConfig(steps=300, batch_size=32, lr=3e-3)}
STAGE1_TRAIN = TrainConfig(steps=300, batch_size=32, lr=2e-3)
STAGE2_TRAIN = TrainConfig(steps=500, batch_size=32, lr=1e-3)
EVAL_N = 300  # questions per category in the manifest's metrics


def clip_meta(model) -> dict:
    return {"kind": "clip", "vision": model.vision.config.__dict__, "text": model.text_config.__dict__,
            "embed_dim": model.visual_projection.out_features}


def component(name: str, part: str) -> str:
    """The zoo name a LLaVA checkpoint took one of its parts from."""
    return json.loads(zoo._config_path(name, zoo.ZOO_DIR).read_text())["components"][part]


def _clip_mini() -> dict:
    model, metrics = jobs.pretrain_vision(VISION, CLIP_TRAIN)
    zoo.save("clip-mini", model.cpu(), clip_meta(model))
    torch.manual_seed(0)
    random_tower = VisionTower(VISION)
    for size_key, tower in (("probe_shape", model.vision), ("probe_shape_random_init", random_tower)):
        metrics[size_key] = {k: round(v, 4) for k, v in probe.probe(tower, "shape", -2).items()}
    return metrics


def _lm(name: str, corpus: str) -> dict:
    model, metrics = jobs.pretrain_lm(corpus, LMConfig(len(load_tokenizer())), LM_TRAIN[corpus])
    zoo.save(name, model.cpu(), {"kind": "lm", "lm": model.config.__dict__})
    return metrics


def _stage1(name: str, lm: str) -> dict:
    model = jobs.assemble(zoo.load("clip-mini").vision, zoo.load(lm))
    metrics = jobs.train_stage(model, 1, STAGE1_TRAIN)
    zoo.save(name, model.cpu(), {"kind": "llava", "llava": model.config.to_dict()},
             components={"vision": "clip-mini", "lm": lm})
    return metrics


def _stage2(name: str, types: tuple[str, ...]) -> dict:
    model = zoo.load("llava-mini-stage1")
    metrics = jobs.train_stage(model, 2, STAGE2_TRAIN, types=types)
    zoo.save(name, model.cpu(), {"kind": "llava", "llava": model.config.to_dict()}, components={"vision": "clip-mini"})
    return metrics


STEPS = {
    "clip-mini": (_clip_mini, {"train": CLIP_TRAIN, "vision": VISION}),
    "vicuna-mini": (lambda: _lm("vicuna-mini", "context"), {"train": LM_TRAIN["context"], "corpus": "context"}),
    "plain-lm": (lambda: _lm("plain-lm", "plain"), {"train": LM_TRAIN["plain"], "corpus": "plain"}),
    "plain-lm-stage1": (lambda: _stage1("plain-lm-stage1", "plain-lm"), {"train": STAGE1_TRAIN, "lm": "plain-lm"}),
    "llava-mini-stage1": (lambda: _stage1("llava-mini-stage1", "vicuna-mini"), {"train": STAGE1_TRAIN}),
    "llava-mini": (lambda: _stage2("llava-mini", ("conversation", "detail", "complex_reasoning")),
                   {"train": STAGE2_TRAIN, "types": "conversation,detail,complex_reasoning"}),
    "llava-mini-conv-only": (lambda: _stage2("llava-mini-conv-only", ("conversation",)),
                             {"train": STAGE2_TRAIN, "types": "conversation"}),
}


def _plain(recipe: dict) -> dict:
    return {k: (v.__dict__ if hasattr(v, "__dict__") else v) for k, v in recipe.items()}


def build_zoo(only=None, log=print) -> None:
    """Rebuild the named checkpoints (default: all, in dependency order) and record them in the manifest."""
    unknown = set(only or ()) - set(STEPS)
    if unknown:
        raise KeyError(f"unknown zoo names {sorted(unknown)}; expected some of {', '.join(STEPS)}")
    tokenizer = load_tokenizer()
    for name, (step, recipe) in STEPS.items():
        if only and name not in only:
            continue
        start = time.perf_counter()
        log(f"== {name}")
        metrics = step()
        if recipe.get("train") is not CLIP_TRAIN and name not in ("vicuna-mini", "plain-lm"):
            result = evaluate.accuracy(zoo.load(name), tokenizer, "test", EVAL_N)
            metrics["accuracy"] = {k: round(result[k], 4) if isinstance(result[k], float) else result[k]
                                   for k in (*evaluate.JSON_KEYS, "caption_like")}
        metrics["build_seconds"] = round(time.perf_counter() - start, 1)
        zoo.record(name, _plain(recipe), metrics)
        log(json.dumps(metrics))
