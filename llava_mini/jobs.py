"""The training jobs of the recipe, each a function from hyper-parameters to a trained model.

    pretrain_vision   clip-mini: the vision encoder g, CLIP-style (contrastive image-caption)
    pretrain_lm       vicuna-mini (reads a context, as a chat model does: bound cell tokens or a textual
                      description) or the plain-text LM
    train_stage       LLaVA stage 1 (only W) or stage 2 (W and the LLM), from pretrained parts

The CLI (`llava-mini pretrain-vision | pretrain-lm | train`) and `llava-mini zoo build` call these.
"""

from __future__ import annotations

import time

import torch

from llava_mini import clip, corpora, world
from llava_mini.llava import LlavaConfig, LlavaMini
from llava_mini.lm import LanguageModel, LMConfig
from llava_mini.teacher import Teacher
from llava_mini.tokenizer import load_tokenizer
from llava_mini.train import TrainConfig, fit, format_counts, set_stage
from llava_mini.vision import VisionConfig


def pretrain_vision(vision: VisionConfig, cfg: TrainConfig, text: clip.TextConfig | None = None,
                    pool_scenes: int = 8000, log=print) -> tuple[clip.ClipMini, dict]:
    """Train clip-mini on a pre-rendered pool of twin pairs; return it with its zero-shot caption-retrieval
    accuracy on the validation split."""
    start, tokenizer = time.perf_counter(), load_tokenizer()
    torch.manual_seed(cfg.seed)
    model = clip.ClipMini(vision, text or clip.TextConfig(len(tokenizer)))
    pool = clip.caption_pool(tokenizer, pool_scenes, vision.image_size, cfg.seed)
    losses = fit(model, clip.caption_batches(pool, cfg.batch_size, cfg.seed), cfg, clip.clip_loss, count_fn=None,
                 log=log)
    seconds = time.perf_counter() - start
    return model, {"loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
                   "zero_shot": clip.zero_shot_accuracy(model.cpu(), tokenizer), "seconds": round(seconds, 1)}


def pretrain_lm(corpus: str, lm: LMConfig | None, cfg: TrainConfig, n_scenes: int = 8000,
                teacher: Teacher | None = None, captions_every: int = 1, log=print) -> tuple[LanguageModel, dict]:
    """Pre-train the LLM on the `cells` corpus (vicuna-mini: chats about a scene's cell tokens, captions of
    every `captions_every`-th scene), the textual `context` one, or the `plain` one (the contrast)."""
    start, tokenizer = time.perf_counter(), load_tokenizer()
    torch.manual_seed(cfg.seed)
    model = LanguageModel(lm or LMConfig(len(tokenizer)))
    seeds = world.split_seeds("train", n_scenes)
    examples = (corpora.cell_examples(seeds, tokenizer, teacher, captions_every) if corpus == "cells"
                else corpora.lm_examples(corpus, seeds, tokenizer, teacher))
    batches = corpora.Batches(examples, tokenizer, cfg.batch_size, cfg.seed, group_by_length=True)
    losses = fit(model, batches, cfg, corpora.lm_loss, log=log)
    return model, {"loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
                   "seconds": round(time.perf_counter() - start, 1)}


def assemble(vision_tower, lm: LanguageModel, projector: str = "linear", projector_args=None,
             feature_layer: int = -2, select: str = "patch", seed: int = 0) -> LlavaMini:
    """A LlavaMini from a pretrained vision tower and LLM, with a fresh projector W initialised from `seed`
    (whatever ran before in the process)."""
    tokenizer = load_tokenizer()
    torch.manual_seed(seed)
    vision_cfg = VisionConfig(**{**vision_tower.config.__dict__, "feature_layer": feature_layer, "select": select})
    cfg = LlavaConfig(vision=vision_cfg, lm=lm.config, projector=projector, projector_args=projector_args or {},
                      image_token_id=tokenizer.image_token_id, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id)
    model = LlavaMini(cfg)
    model.vision.load_state_dict(vision_tower.state_dict())
    model.lm.load_state_dict(lm.state_dict())
    return model


def train_stage(model: LlavaMini, stage: int, cfg: TrainConfig, n_scenes: int | dict[str, int] = 8000,
                types=corpora.STAGE2_TYPES, seed_offset: int = 0, teacher: Teacher | None = None,
                log=print) -> dict:
    """Run LLaVA's stage 1 or 2 on `model` in place; return the trainable count, the final loss and the seconds
    taken (data included). `n_scenes` is one number of train scenes, or one per instruction type in `types`
    (stage 2: the conversations of more scenes than the other types, `recipe.STAGE2_SCENES`)."""
    start, tokenizer = time.perf_counter(), load_tokenizer()
    counts = set_stage(model, stage)
    if log:
        log(f"stage {stage}: trainable parameters\n{format_counts(counts)}")
    scenes = n_scenes if isinstance(n_scenes, dict) else dict.fromkeys(types, n_scenes)
    if missing := [t for t in types if t not in scenes]:
        raise ValueError(f"n_scenes gives no number of scenes for {missing}; expected one for each of {list(types)}")
    examples = []
    for n in sorted({scenes[t] for t in types}):  # the types of the fewest scenes first, each group per scene
        seeds = world.split_seeds("train", n, start=seed_offset)
        group = tuple(t for t in types if scenes[t] == n)
        examples += corpora.llava_examples(stage, seeds, tokenizer, model.num_image_tokens, types=group,
                                           teacher=teacher)
    batches = corpora.Batches(examples, tokenizer, cfg.batch_size, cfg.seed, model.config.vision.image_size,
                              group_by_length=True)
    losses = fit(model, batches, cfg, corpora.llava_loss, log=log)
    return {"trainable": counts["total"][0], "loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
            "seconds": round(time.perf_counter() - start, 1)}
