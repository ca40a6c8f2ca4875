"""The jobs that make LLaVA's pretrained parts, and the assembly of a LlavaMini from them.

    pretrain_vision   clip-mini: the vision encoder g, CLIP-style (contrastive image-caption)
    pretrain_lm       vicuna-mini (reads a context, as a chat model does: bound cell tokens or a textual
                      description) or the plain-text LM
    assemble          g + a fresh W + f_φ, ready for stage 1 (`llava_mini.stages`)

The CLI (`llava-mini pretrain-vision | pretrain-lm | train`) and `llava-mini zoo build` call these.
"""

from __future__ import annotations

import time

import torch

from llava_mini import cells, clip, corpora, world
from llava_mini.llava import LlavaConfig, LlavaMini
from llava_mini.lm import LanguageModel, LMConfig
from llava_mini.teacher import Teacher
from llava_mini.tokenizer import load_tokenizer
from llava_mini.train import TrainConfig, fit
from llava_mini.vision import VisionConfig


def pretrain_vision(vision: VisionConfig, cfg: TrainConfig, text: clip.TextConfig | None = None,
                    pool_scenes: int = 8000, log=print) -> tuple[clip.ClipMini, dict]:
    """Train clip-mini on a pre-rendered pool of twin pairs; return it with its zero-shot caption-retrieval
    accuracy on the validation split."""
    start, tokenizer = time.perf_counter(), load_tokenizer()
    torch.manual_seed(cfg.seed)
    model = clip.ClipMini(vision, text or clip.TextConfig(len(tokenizer)))
    pool = clip.caption_pool(tokenizer, pool_scenes, vision.image_size, cfg.seed)
    losses = fit(model, clip.caption_batches(pool, cfg.batch_size, cfg.seed), cfg, count_fn=None, log=log)
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
    reader = cells.CellReader(model, tokenizer.image_token_id) if corpus == "cells" else model
    losses = fit(reader, batches, cfg, log=log)
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
