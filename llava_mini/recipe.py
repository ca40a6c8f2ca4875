"""The toy-scale LLaVA recipe: configurations and `build_zoo`, which trains and evaluates the zoo.

    clip-mini              vision encoder g, CLIP-style                        (LLaVA: CLIP ViT-L/14)
    vicuna-mini            LLM pre-trained to chat about a scene given as bound cell tokens (LLaVA: Vicuna)
    plain-lm               LLM pre-trained on the same chats with no scene (the contrast: stage 1 fails on it)
    plain-lm-stage1        stage 1 on plain-lm
    llava-mini-stage1      stage 1 on vicuna-mini: only W trained, no instruction tuning
    llava-mini-conv-only   stage 1 + stage 2 on conversations only (paper Table 4's ablation)
    llava-mini             llava-mini-conv-only + stage 2 on the full mix (conversation, detail, complex reasoning)
    llava-mini-answer-first  the same, its reasoning records opening with the answer (paper Table 8's ablation)
    llava-mini-listing     the answer-first twin whose reasoning steps list the objects (the bench's best score)

The zoo is built once, like the CLIP and Vicuna that LLaVA downloads, and shipped with its sha256 manifest:
up to two hours on the 2-core machine, each job at most an hour, run one name at a time with
`llava-mini zoo build --only NAME` (and committed after each). Every job is seeded and runs on one CPU
thread (`BUILD_THREADS`), so a rebuild on the same machine kind is bitwise identical; on two shared cores
one thread is also faster than two as soon as anything else runs. Metrics are measured on held-out scenes
and written to the manifest, with the seconds each job took. All chats answer in sentences that restate
the referent (`TEACHER`), as LLaVA-Instruct's do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import time
from pathlib import Path

import torch

from llava_mini import clip, evaluate, jobs, probe, stages, world, zoo
from llava_mini.lm import LMConfig
from llava_mini.teacher import Teacher
from llava_mini.tokenizer import load_tokenizer
from llava_mini.train import TrainConfig
from llava_mini.vision import VisionConfig

# 48-px images and 16-px patches: one image token per cell of ShapesWorld's 3x3 grid (32/8 gives a 4x4 grid
# that cuts objects apart, and a linear probe of shape stayed near 40%).
VISION = VisionConfig(image_size=world.IMAGE_SIZE, patch_size=16, width=64, layers=4, heads=4)
CLIP_POOL = 8000  # scenes (each with its shape or cell twin) pre-rendered for clip-mini
CLIP_TRAIN = TrainConfig(steps=1800, batch_size=128, lr=2e-3, warmup=0.05)
TEACHER = Teacher(answers="sentence")
ANSWER_FIRST = dataclasses.replace(TEACHER, reasoning="answer_first")  # llava-mini-answer-first's teacher
LISTING = dataclasses.replace(ANSWER_FIRST, steps="listing")  # llava-mini-listing's teacher
LM_SHAPE = {"dim": 64, "layers": 2, "heads": 4}  # vicuna-mini and plain-lm (LOOKUP_MEASUREMENTS' 64x2 LM)
LM_SCENES = 16000
LM_CAPTIONS_EVERY = 4  # vicuna-mini's corpus: a chat per scene, a caption per 4th scene (corpora.cell_examples)
LM_TRAIN = {"cells": TrainConfig(steps=5500, batch_size=64, lr=3e-3, warmup=0.02, decay=0.25),
            "plain": TrainConfig(steps=1000, batch_size=64, lr=3e-3, warmup=0.02)}
LM_CORPUS = {"vicuna-mini": "cells", "plain-lm": "plain"}
PROJECTOR = "linear"  # LLaVA v1's H_v = W·Z_v
STAGE1_SCENES = 8000  # LLaVA's 595K CC3M pairs: one caption per scene
STAGE1_TRAIN = TrainConfig(steps=3000, batch_size=64, lr=3e-3)
# Stage 2 is a curriculum: conversations first, then the full mix. llava-mini-conv-only (paper Table 4's
# ablation) trains STAGE2_EPOCHS over the conversations; llava-mini continues it for MIX_EPOCHS over the full mix
# (LLaVA's stage 2 trains 3 epochs over LLaVA-Instruct-158K; 6 here, since 3 left the descriptions at F1 .79
# against 6's .91 at the same lookup accuracy). Conversations, the turns in which the LLM learns to
# look things up in H_v, come from six times the scenes of each other type (LLaVA's 58K conversations carry most of
# its question-answer turns). Measured (docs/recipe_log.md): the full mix from stage 1 for 12 epochs (6000 steps)
# never learns existence (.53; its yes/No margin separates present from absent objects no better than chance,
# AUC .51) while conversations alone do (.98); continuing conv-only on the full mix keeps it (.98, n=100).
STAGE2_EPOCHS = 12
MIX_EPOCHS = 6
STAGE2_SCENES = {"conversation": 24000, "detail": 4000, "complex_reasoning": 4000}
STAGE2_TRAIN = TrainConfig(steps=0, batch_size=64, lr=1e-3)  # steps: `stage2_train(types, epochs)`
FULL_MIX = stages.STAGE2_TYPES  # conversation, detail, complex reasoning
REBUILD_CHECK = TrainConfig(steps=20, batch_size=16, lr=STAGE1_TRAIN.lr)  # the test suite's bit-for-bit rebuild
FINGERPRINT_TOLERANCE = 1e-5  # W's fingerprint on another CPU kind: measured equal to 6 decimals
EVAL = {"split": "test", "n": 300, "seed": 0}  # the manifest's `accuracy`
QUICK_EVAL = {"split": "test", "n": 30, "seed": 0}  # `accuracy_quick`, re-checked by the test suite
BUILD_THREADS = 1
JOB_BUDGET_S, ZOO_BUDGET_S = 3600, 7200  # one job, the whole zoo (evaluation included), on 2 CPU cores


def stage2_scenes(types) -> dict[str, int]:
    """The number of train scenes stage 2 reads for each instruction type in `types`."""
    stages.check_types(types)
    return {t: STAGE2_SCENES[t] for t in types}


def stage2_train(types, epochs: int = STAGE2_EPOCHS) -> TrainConfig:
    """`STAGE2_TRAIN` for `epochs` over the records of `types` (one per scene and type)."""
    records = sum(stage2_scenes(types).values())
    return dataclasses.replace(STAGE2_TRAIN, steps=epochs * records // STAGE2_TRAIN.batch_size)


def _clip_mini(root: Path, log) -> dict:
    model, metrics = jobs.pretrain_vision(VISION, CLIP_TRAIN, pool_scenes=CLIP_POOL, log=log)
    zoo.save("clip-mini", model.cpu(), root)
    torch.manual_seed(CLIP_TRAIN.seed)
    initial = clip.ClipMini(VISION, model.text_config).vision  # the tower clip-mini started from
    for key, tower in (("probe_shape", model.vision), ("probe_shape_random_init", initial)):
        metrics[key] = {k: round(v, 4) for k, v in probe.probe(tower, "shape", -2).items()}
    for key, tower in (("probe_cells", model.vision), ("probe_cells_random_init", initial)):
        metrics[key] = {k: round(v, 4) for k, v in probe.cell_probe(tower, -2).items()}
    return metrics


def _lm(name: str, root: Path, log) -> dict:
    corpus, tokenizer = LM_CORPUS[name], load_tokenizer()
    model, metrics = jobs.pretrain_lm(corpus, LMConfig(len(tokenizer), **LM_SHAPE), LM_TRAIN[corpus], LM_SCENES,
                                      TEACHER, LM_CAPTIONS_EVERY, log=log)
    zoo.save(name, model.cpu(), root)
    if corpus == "cells":  # its own task: chats about bound cell tokens, and captions of them
        metrics["accuracy"] = _rounded(evaluate.accuracy(model, tokenizer, **EVAL, answers=TEACHER.answers,
                                                         free_form=False))
        metrics["caption_f1"] = round(evaluate.caption_f1(model, tokenizer, **EVAL)[0], 4)
    return metrics


def _stage1(name: str, lm: str, root: Path, log) -> dict:
    model = jobs.assemble(zoo.load("clip-mini", root).vision, zoo.load(lm, root), PROJECTOR)
    metrics = stages.train(model, 1, STAGE1_TRAIN, STAGE1_SCENES, teacher=TEACHER, log=log)
    zoo.save(name, model.cpu(), root, components={"vision": "clip-mini", "lm": lm}, answers=TEACHER.answers)
    return metrics


def _stage2(name: str, init: str, types: tuple[str, ...], epochs: int, root: Path, log,
            teacher: Teacher = TEACHER) -> dict:
    model = zoo.load(init, root)
    metrics = stages.train(model, 2, stage2_train(types, epochs), stage2_scenes(types), types, teacher=teacher,
                           log=log)
    zoo.save(name, model.cpu(), root, components={"vision": "clip-mini"}, answers=teacher.answers)
    return metrics


def _mix_job(name: str, teacher: Teacher) -> tuple:
    """(job, recipe) of the mix phase from llava-mini-conv-only: llava-mini and its two twins differ only in the
    teacher."""
    recipe = {"train": stage2_train(FULL_MIX, MIX_EPOCHS), "stage": 2, "init": "llava-mini-conv-only",
              "types": ",".join(FULL_MIX), "scenes": stage2_scenes(FULL_MIX), "teacher": teacher}
    return (lambda root, log: _stage2(name, "llava-mini-conv-only", FULL_MIX, MIX_EPOCHS, root, log, teacher)), recipe


# name -> (job, recipe recorded in the manifest), in dependency order.
JOBS = {
    "clip-mini": (_clip_mini, {"train": CLIP_TRAIN, "vision": VISION, "pool_scenes": CLIP_POOL}),
    "vicuna-mini": (lambda root, log: _lm("vicuna-mini", root, log),
                    {"train": LM_TRAIN["cells"], "corpus": "cells", "lm": LM_SHAPE, "scenes": LM_SCENES,
                     "captions_every": LM_CAPTIONS_EVERY,
                     "teacher": TEACHER}),
    "plain-lm": (lambda root, log: _lm("plain-lm", root, log),
                 {"train": LM_TRAIN["plain"], "corpus": "plain", "lm": LM_SHAPE, "scenes": LM_SCENES,
                  "teacher": TEACHER}),
    "plain-lm-stage1": (lambda root, log: _stage1("plain-lm-stage1", "plain-lm", root, log),
                        {"train": STAGE1_TRAIN, "stage": 1, "vision": "clip-mini", "lm": "plain-lm",
                         "projector": PROJECTOR, "teacher": TEACHER}),
    "llava-mini-stage1": (lambda root, log: _stage1("llava-mini-stage1", "vicuna-mini", root, log),
                          {"train": STAGE1_TRAIN, "stage": 1, "vision": "clip-mini", "lm": "vicuna-mini",
                           "projector": PROJECTOR, "teacher": TEACHER}),
    "llava-mini-conv-only": (lambda root, log: _stage2("llava-mini-conv-only", "llava-mini-stage1", ("conversation",),
                                                       STAGE2_EPOCHS, root, log),
                             {"train": stage2_train(("conversation",)), "stage": 2, "init": "llava-mini-stage1",
                              "types": "conversation", "scenes": stage2_scenes(("conversation",)),
                              "teacher": TEACHER}),
    "llava-mini": _mix_job("llava-mini", TEACHER),
    "llava-mini-answer-first": _mix_job("llava-mini-answer-first", ANSWER_FIRST),
    "llava-mini-listing": _mix_job("llava-mini-listing", LISTING),
}
NAMES = tuple(JOBS)


def rebuild_projector(root: Path = zoo.ZOO_DIR) -> dict[str, torch.Tensor]:
    """W's tensors after `REBUILD_CHECK`'s short stage 1 from the zoo's clip-mini and vicuna-mini."""
    threads = torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    try:
        model = jobs.assemble(zoo.load("clip-mini", root).vision, zoo.load("vicuna-mini", root))
        stages.train(model, 1, REBUILD_CHECK, n_scenes=4 * REBUILD_CHECK.batch_size, teacher=TEACHER, log=None)
    finally:
        torch.set_num_threads(threads)
    return model.projector.state_dict()


def cpu_kind() -> str:
    """The CPU's model name and a digest of its feature flags: the machine kind whose kernels a bit-for-bit
    rebuild depends on (another CPU rounds the last bits of the same training differently)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields = {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in info.splitlines()
                                                            if ":" in line)}
    model = fields.get("model name", platform.processor() or platform.machine())
    flags = " ".join(sorted(fields.get("flags", "").split()))
    return f"{model}, {torch.backends.cpu.get_cpu_capability()}, flags {hashlib.sha256(flags.encode()).hexdigest()[:8]}"


def rebuild_record(state: dict[str, torch.Tensor]) -> dict:
    """What the build records of `rebuild_projector`'s W: its sha256 (`rebuild_check`), its `fingerprint`
    (`rebuild_fingerprint`) and the machine kind that made them (`rebuild_cpu`)."""
    return {"rebuild_check": _sha256(state), "rebuild_fingerprint": fingerprint(state), "rebuild_cpu": cpu_kind()}


def compare_rebuild(recorded: dict, fresh: dict) -> list[tuple[str, bool | None, str]]:
    """(check, passed, detail) for a fresh `rebuild_record` against the recorded one: the fingerprint within
    `FINGERPRINT_TOLERANCE` on any CPU; the sha256 bit for bit where the CPU kind is the recorded one (passed None
    elsewhere)."""
    gap = max(abs(a - b) for a, b in zip(fresh["rebuild_fingerprint"], recorded["rebuild_fingerprint"]))
    rows = [("fingerprint", gap <= FINGERPRINT_TOLERANCE,
             f"largest difference {gap:.1e} (allowed {FINGERPRINT_TOLERANCE:g})")]
    if recorded.get("rebuild_cpu") != fresh["rebuild_cpu"]:
        rows.append(("sha256", None, f"not comparable: recorded on {recorded.get('rebuild_cpu', 'an unrecorded CPU')}, "
                                     f"this is {fresh['rebuild_cpu']}"))
    else:
        rows.append(("sha256", fresh["rebuild_check"] == recorded["rebuild_check"], fresh["rebuild_check"]))
    return rows


def _sha256(state: dict[str, torch.Tensor]) -> str:
    return hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()


def fingerprint(state: dict[str, torch.Tensor], n: int = 16) -> list[float]:
    """W's tensors, flattened and projected onto n fixed random unit directions: equal within float rounding
    whenever the same code trains the same components, far apart after any other change."""
    flat = torch.cat([state[k].detach().double().flatten() for k in sorted(state)])
    directions = torch.randn(n, flat.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return [round(v, 6) for v in (directions / directions.norm(dim=1, keepdim=True) @ flat).tolist()]


def _rounded(result: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()
            if k not in ("examples", "correct")}


def _plain(recipe: dict) -> dict:
    return {k: (v.__dict__ if hasattr(v, "__dict__") else v) for k, v in recipe.items()}


def build_zoo(only=None, root: Path = zoo.ZOO_DIR, log=print) -> float:
    """Rebuild the named checkpoints (default: all, in dependency order) under `root`, evaluate each LLaVA
    checkpoint (`EVAL` and `QUICK_EVAL`) and record everything in the manifest; return the seconds taken."""
    unknown = sorted(set(only or ()) - set(JOBS))
    if unknown:
        raise KeyError(f"unknown zoo names {unknown}; expected some of {', '.join(JOBS)}")
    root = Path(root)
    tokenizer, begin, threads = load_tokenizer(), time.perf_counter(), torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    try:
        _build(only, root, tokenizer, log)
    finally:
        torch.set_num_threads(threads)
    return time.perf_counter() - begin


def _build(only, root: Path, tokenizer, log) -> None:
    for name, (job, recipe) in JOBS.items():
        if only and name not in only:
            continue
        start = time.perf_counter()
        if log:
            log(f"== {name}")
        metrics = job(root, log)
        if recipe.get("stage"):
            model, style = zoo.load(name, root), TEACHER.answers
            metrics["accuracy"] = _rounded(evaluate.accuracy(model, tokenizer, **EVAL, answers=style))
            metrics["accuracy_quick"] = {**QUICK_EVAL, "answers": style,
                                         **_rounded(evaluate.accuracy(model, tokenizer, **QUICK_EVAL, answers=style))}
            metrics["caption_f1"] = round(evaluate.caption_f1(model, tokenizer, **EVAL)[0], 4)
        if name == "llava-mini-stage1":
            metrics.update(rebuild_record(rebuild_projector(root)))
        metrics["build_seconds"] = round(time.perf_counter() - start, 1)
        zoo.record(name, _plain(recipe), metrics, root)
        if log:
            log(json.dumps(metrics))


def _metric(metrics: dict, name: str, *path: str) -> float:
    """A build-time metric, or NaN when the manifest has none (a job not built yet, or by an older recipe)."""
    value = metrics.get(name, {})
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return float("nan") if value is None else float(value)


def gates(metrics: dict[str, dict]) -> list[tuple[str, float, bool]]:
    """The zoo's targets (issue #12) checked against build-time metrics ({name: metrics} as in the manifest):
    a list of (target, measured value, met); a missing metric is NaN and not met. `llava-mini zoo gates`
    prints it."""
    rows = []

    def at_least(target: str, value: float, threshold: float):
        rows.append((f"{target} >= {threshold:.2f}", value, value >= threshold))

    for key, threshold in (("cell", 0.99), ("occupied", 0.99), ("colour", 0.98), ("shape_small", 0.95),
                           ("shape_large", 0.95), ("size", 0.95)):
        at_least(f"clip-mini layer -2 patch probe: {key}", _metric(metrics, "clip-mini", "probe_cells", key), threshold)
    gap = (_metric(metrics, "clip-mini", "probe_shape", "small")
           - _metric(metrics, "clip-mini", "probe_shape_random_init", "small"))
    at_least("clip-mini small-object shape probe minus the random-init ViT's", gap, 0.20)
    for key in ("colour", "shape", "count", "position", "existence"):
        at_least(f"vicuna-mini on cell tokens: {key}", _metric(metrics, "vicuna-mini", "accuracy", key), 0.95)
    for key, threshold in (("colour", 0.95), ("shape", 0.95), ("count", 0.95), ("position", 0.95),
                           ("existence", 0.95), ("relation", 0.80), ("overall", 0.92), ("description", 0.90),
                           ("reasoning", 0.80)):
        at_least(f"llava-mini {key}", _metric(metrics, "llava-mini", "accuracy", key), threshold)
    at_least("llava-mini-stage1 caption F1", _metric(metrics, "llava-mini-stage1", "caption_f1"), 0.90)
    for other, margin in (("llava-mini-stage1", 0.30), ("llava-mini-conv-only", 0.10)):
        for key in ("description", "reasoning"):
            gap = _metric(metrics, "llava-mini", "accuracy", key) - _metric(metrics, other, "accuracy", key)
            at_least(f"llava-mini {key} minus {other}'s", gap, margin)
    for name in NAMES:
        seconds = _metric(metrics, name, "build_seconds")
        rows.append((f"{name} builds in <= {JOB_BUDGET_S} s", seconds, seconds <= JOB_BUDGET_S))
    total = sum(_metric(metrics, name, "build_seconds") for name in NAMES)
    rows.append((f"zoo build in <= {ZOO_BUDGET_S} s", total, total <= ZOO_BUDGET_S))
    return rows
