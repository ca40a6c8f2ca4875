"""LLaVA's two training stages (paper §4.2) in one place: what each freezes, what it reads, and the job.

    stage 1  pre-training for feature alignment: only W trains; g and f_φ are frozen. It reads image–caption
             pairs in the `plain` format (LLaVA: CC-595K, 1 epoch, lr 2e-3, batch 128).
    stage 2  fine-tuning end to end: W and f_φ train; g stays frozen. It reads the instruction data:
             conversation, detailed description, complex reasoning (LLaVA: LLaVA-Instruct-158K, 3 epochs,
             lr 2e-5, batch 32).

Freezing is `requires_grad_(False)`, never `torch.no_grad()`: in stage 1 the gradient of the answer-token loss
must flow *through* the frozen LLM back to W. The vision encoder is frozen in both stages, as in the paper and
the official code. The zoo's recipe (`recipe`), the `llava-mini train` command and the notebooks call these.
"""

from __future__ import annotations

import time

from llava_mini import world
from llava_mini.conversation import build_chat, build_plain, place_image
from llava_mini.corpora import Batches, Example, records
from llava_mini.llava import LlavaMini
from llava_mini.teacher import Teacher
from llava_mini.tokenizer import load_tokenizer
from llava_mini.train import TrainConfig, count_parameters, fit, format_counts

STAGES = (1, 2)
STAGE2_TYPES = ("conversation", "detail", "complex_reasoning")  # LLaVA-Instruct-158K's three types


def check_stage(stage) -> None:
    if stage not in STAGES:
        raise ValueError(f"stage must be 1 (feature alignment) or 2 (instruction tuning), got {stage!r}")


def check_types(types) -> None:
    """Raise ValueError unless every name in `types` is one of the stage-2 instruction types."""
    unknown = set(types) - set(STAGE2_TYPES)
    if unknown:
        raise ValueError(f"unknown instruction types {sorted(unknown)}; expected some of {', '.join(STAGE2_TYPES)}")


def freeze(model: LlavaMini, stage: int, train_lm: bool | None = None) -> dict[str, tuple[int, int]]:
    """Make W (stage 1) or W and f_φ (stage 2) the only trainable parameters of `model`; return the
    per-module (trainable, total) parameter counts (`train.count_parameters`). `train_lm` overrides the stage's
    choice for f_φ (notebook 09's ablation: stage 2 with the LLM frozen)."""
    check_stage(stage)
    model.requires_grad_(False)
    model.projector.requires_grad_(True)
    model.lm.requires_grad_(stage == 2 if train_lm is None else train_lm)
    return count_parameters(model)


def examples(stage: int, seeds, tokenizer, num_image_tokens: int, types=STAGE2_TYPES,
             teacher: Teacher | None = None, image: str = "before") -> list[Example]:
    """What a stage reads. Stage 1: one `plain` example (image, caption) per scene. Stage 2: one Vicuna-v1
    chat per scene and instruction type in `types`, the image placeholder `image` ("before", LLaVA's order, or
    "after") the first instruction."""
    check_stage(stage)
    if stage == 1:
        return [Example(build_plain(r, tokenizer, num_image_tokens), seed)
                for seed, _, r in records(seeds, teacher, ("plain",))]
    check_types(types)
    chats = [(seed, r["conversations"]) for seed, _, r in records(seeds, teacher, tuple(types))]
    if image != "before":
        chats = [(seed, [{**turns[0], "value": place_image(turns[0]["value"], image)}, *turns[1:]])
                 for seed, turns in chats]
    return [Example(build_chat(turns, tokenizer, num_image_tokens), seed) for seed, turns in chats]


def train(model: LlavaMini, stage: int, cfg: TrainConfig, n_scenes: int | dict[str, int] = 8000,
          types=STAGE2_TYPES, seed_offset: int = 0, teacher: Teacher | None = None, log=print,
          image: str = "before", train_lm: bool | None = None) -> dict:
    """Run stage 1 or 2 on `model` in place; return the trainable count, the final loss and the seconds taken
    (data included). `n_scenes` is one number of train scenes, or one per instruction type in `types` (stage
    2: the conversations of more scenes than the other types, `recipe.STAGE2_SCENES`). `image`: where stage 2's
    chats put the image placeholder (`examples`); `train_lm`: see `freeze`."""
    start, tokenizer = time.perf_counter(), load_tokenizer()
    counts = freeze(model, stage, train_lm)
    if log:
        log(f"stage {stage}: trainable parameters\n{format_counts(counts)}")
    scenes = n_scenes if isinstance(n_scenes, dict) else dict.fromkeys(types, n_scenes)
    if missing := [t for t in types if t not in scenes]:
        raise ValueError(f"n_scenes gives no number of scenes for {missing}; expected one for each of {list(types)}")
    data = []
    for n in sorted({scenes[t] for t in types}):  # the types of the fewest scenes first, each group per scene
        seeds = world.split_seeds("train", n, start=seed_offset)
        group = tuple(t for t in types if scenes[t] == n)
        data += examples(stage, seeds, tokenizer, model.num_image_tokens, types=group, teacher=teacher, image=image)
    batches = Batches(data, tokenizer, cfg.batch_size, cfg.seed, model.config.vision.image_size,
                      group_by_length=True)
    losses = fit(model, batches, cfg, log=log)
    return {"trainable": counts["total"][0], "loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
            "seconds": round(time.perf_counter() - start, 1)}
