"""Ablations (notebook 09): one change to the recipe at a time, several seeds, scored on the same questions.

Every arm runs the same short protocol, the zoo's recipe at about a tenth of its compute (the zoo's llava-mini:
3000 stage-1 steps, then 4500 + 1500 stage-2 steps):

    stage 1  `STAGE1` (800 steps × 64 captions, lr 3e-3) on clip-mini and vicuna-mini, W initialised from the seed
    stage 2  `STAGE2_CONV` (400 steps × 64 conversations), then `STAGE2_MIX` (200 steps × 64 of the full mix),
             lr 1e-3: the zoo's curriculum, shortened

and is scored on the same test questions: exact match per category (`EVAL_N` per category, one 0/1 per question
kept for paired comparisons), description F1 and reasoning, the rules judge's relative score on LLaVA-Bench-mini
(one score pair per question), and the LLM's own text-only skill after stage 2 (vicuna-mini's task: chats about
bound cell tokens), which says what stage 2 made it forget.

`ABLATIONS` maps a name to its arms; each starts with `BASELINE` (the zoo's choices: linear W, penultimate layer,
image before the question, stage 1 run, the LLM trained in stage 2), shared by all. `run(name, seeds)` trains and
scores what is missing, one (arm, seed) at a time, into `zoo/ablations/<arm>-s<seed>/` with a manifest entry
(`zoo.record`), so it resumes after an interruption and two processes can share the work: a run that another
process holds (its lock file) is left for last. The notebook reads the results with `load`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llava_mini import bench, evaluate, jobs, stages, zoo
from llava_mini.bench.judge import RuleJudge
from llava_mini.bench.scores import judge_all, relative_score
from llava_mini.recipe import BUILD_THREADS, TEACHER
from llava_mini.tokenizer import load_tokenizer
from llava_mini.train import TrainConfig

ROOT = zoo.ZOO_DIR / "ablations"
STAGE1 = TrainConfig(steps=800, batch_size=64, lr=3e-3)
STAGE1_SCENES = 8000
STAGE2_CONV = TrainConfig(steps=400, batch_size=64, lr=1e-3)
STAGE2_MIX = TrainConfig(steps=200, batch_size=64, lr=1e-3)
CONV_SCENES = {"conversation": 12800}  # two epochs
MIX_SCENES = {"conversation": 4800, "detail": 800, "complex_reasoning": 800}  # the zoo's 6:1:1, two epochs
EVAL_N = 300  # test questions per category
PROTOCOL = {"stage1": STAGE1.__dict__, "stage1_scenes": STAGE1_SCENES, "stage2_conversation": STAGE2_CONV.__dict__,
            "conversation_scenes": CONV_SCENES, "stage2_mix": STAGE2_MIX.__dict__, "mix_scenes": MIX_SCENES,
            "eval_n": EVAL_N, "teacher": TEACHER.__dict__}


@dataclass(frozen=True)
class Arm:
    """One configuration of the recipe; the defaults are the zoo's (`BASELINE`)."""

    name: str
    projector: str = "linear"  # a kind from projector.PROJECTOR_KINDS
    queries: int | None = None  # the resampler's learned queries: its number of visual tokens
    feature_layer: int = -2  # which hidden state of the ViT is Z_v (mm_vision_select_layer)
    stage1: bool = True  # run stage 1 before stage 2 (False: stage 2 from a fresh W, the paper's "from scratch")
    train_lm: bool = True  # train f_φ in stage 2 (False: only W, as in stage 1)
    image: str = "before"  # the image placeholder before or after the first question

    def stage1_name(self, seed: int) -> str:
        """The stage-1 checkpoint this arm starts from (shared by arms that differ only after stage 1)."""
        queries = f"{self.queries}" if self.queries else ""
        return f"stage1-{self.projector}{queries}-layer{self.feature_layer}-s{seed}"


BASELINE = Arm("baseline")
ABLATIONS = {
    "lm": (BASELINE, Arm("frozen-lm", train_lm=False)),  # (a) study question 4
    "projector": (BASELINE, Arm("mlp2x-gelu", projector="mlp2x_gelu"),  # (b) questions 8, 11
                  Arm("resampler-3", projector="resampler", queries=3),
                  Arm("resampler-9", projector="resampler", queries=9)),
    "feature-layer": (BASELINE, Arm("last-layer", feature_layer=-1)),  # (c) question 16
    "image-position": (BASELINE, Arm("image-after", image="after")),  # (d) question 10
    "stage1": (BASELINE, Arm("no-stage1", stage1=False)),  # (e) the paper's "from scratch" (ScienceQA −5.11)
}
ARMS = {arm.name: arm for arms in ABLATIONS.values() for arm in arms}


def check_name(name: str) -> None:
    if name not in ABLATIONS:
        raise KeyError(f"unknown ablation {name!r}; expected one of {', '.join(ABLATIONS)}")


def _fresh(arm: Arm, seed: int):
    """clip-mini's tower and vicuna-mini with a new W of the arm's kind, initialised from `seed`."""
    args = {"num_queries": arm.queries} if arm.queries else None
    return jobs.assemble(zoo.load("clip-mini").vision, zoo.load("vicuna-mini"), arm.projector, args,
                         feature_layer=arm.feature_layer, seed=seed)


def _locked(path: Path, blocking: bool):
    """An open lock file under `path`'s folder, locked, or None when another process holds it (non-blocking)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path.parent / f".{path.name}.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _done(name: str, root: Path) -> bool:
    return name in zoo.read_manifest(root) and (root / name / "model.safetensors").exists()


def _stage1(arm: Arm, seed: int, root: Path, device: str, log) -> str:
    name = arm.stage1_name(seed)
    with _locked(root / name, blocking=True):
        if not _done(name, root):
            model = _fresh(arm, seed)
            metrics = stages.train(model, 1, dataclasses.replace(STAGE1, seed=seed, device=device), STAGE1_SCENES,
                                   teacher=TEACHER, log=log)
            zoo.save(name, model.cpu(), root, components={"vision": "clip-mini", "lm": "vicuna-mini"},
                     answers=TEACHER.answers)
            zoo.record(name, {"arm": arm.__dict__, "seed": seed, "train": STAGE1.__dict__}, metrics, root)
    return name


def train_arm(arm: Arm, seed: int, root: Path = ROOT, device: str = "cpu", log=None):
    """The arm's model after the protocol's stage 1 (if it has one) and stage 2; trains its stage 1 if missing."""
    model = zoo.load(_stage1(arm, seed, root, device, log), root) if arm.stage1 else _fresh(arm, seed)
    for cfg, scenes in ((STAGE2_CONV, CONV_SCENES), (STAGE2_MIX, MIX_SCENES)):
        stages.train(model, 2, dataclasses.replace(cfg, seed=seed, device=device), scenes, tuple(scenes),
                     teacher=TEACHER, log=log, image=arm.image, train_lm=arm.train_lm)
    return model


def score(model, arm: Arm) -> dict:
    """Everything the notebook compares, per question where a paired comparison needs it."""
    tokenizer, other = load_tokenizer(), "after" if arm.image == "before" else "before"
    acc = evaluate.accuracy(model, tokenizer, n=EVAL_N, answers=TEACHER.answers, image=arm.image)
    swapped = evaluate.accuracy(model, tokenizer, n=EVAL_N, answers=TEACHER.answers, image=other, free_form=False)
    own = evaluate.accuracy(model.lm, tokenizer, n=EVAL_N, answers=TEACHER.answers, free_form=False)
    return {"accuracy": {k: acc[k] for k in evaluate.JSON_KEYS if k != "n"}, "correct": acc["correct"],
            "image_swapped": {k: swapped[k] for k in (*evaluate.SHORT_KEYS, "overall")},
            "lm_own_task": {k: own[k] for k in (*evaluate.SHORT_KEYS, "overall")},
            **bench_scores(model, arm), "visual_tokens": model.num_image_tokens}


def bench_scores(model, arm: Arm) -> dict:
    """LLaVA-Bench-mini (in distribution) under the rule judge: relative score overall and per type, and the
    (reference, model) score of every question."""
    items = bench.load("in")
    pairs, failures = judge_all(items, bench.answer(model, load_tokenizer(), items, image=arm.image), RuleJudge())
    by_type = {t: relative_score([p for p, it in zip(pairs, items) if it.category == t]) for t in bench.TYPES}
    return {"relative_score": {"overall": relative_score(pairs), **by_type}, "bench_pairs": pairs,
            "bench_failures": failures}


def rejudge(name: str, seeds: int = 3, root: Path = ROOT) -> None:
    """Score the bench again for every shipped run of ablation `name`, without training: after a change of the
    judge, each run's result.json and its manifest entry take the new bench scores (the rest is kept)."""
    check_name(name)
    manifest = zoo.read_manifest(root)
    for arm in ABLATIONS[name]:
        for seed in range(seeds):
            run_name = f"{arm.name}-s{seed}"
            path = root / run_name / "result.json"
            result = {**json.loads(path.read_text()), **bench_scores(zoo.load(run_name, root), arm)}
            path.write_text(json.dumps(result, sort_keys=True) + "\n")
            entry = manifest[run_name]
            metrics = {**entry["metrics"], "relative_score": _rounded(result["relative_score"])}
            zoo.record(run_name, entry["recipe"], metrics, root)


def _run_one(arm: Arm, seed: int, root: Path, device: str, log) -> None:
    name, start = f"{arm.name}-s{seed}", time.perf_counter()
    model = train_arm(arm, seed, root, device, log)
    result = score(model, arm)
    components = {"vision": "clip-mini"} if arm.train_lm else {"vision": "clip-mini", "lm": "vicuna-mini"}
    zoo.save(name, model.cpu(), root, components=components, answers=TEACHER.answers)
    (root / name / "result.json").write_text(json.dumps(result, sort_keys=True) + "\n")
    summary = {k: result[k] for k in ("accuracy", "relative_score", "image_swapped", "lm_own_task")}
    zoo.record(name, {"arm": arm.__dict__, "seed": seed, "protocol": PROTOCOL}, _rounded(
        {**summary, "build_seconds": time.perf_counter() - start}), root)


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return round(value, 4) if isinstance(value, float) else value


def run(name: str, seeds: int = 3, root: Path = ROOT, device: str = "cpu", log=None, progress: bool | None = None):
    """Train and score every (arm, seed) of ablation `name` that `root` does not hold yet; return `load`'s table.
    Runs on `BUILD_THREADS` CPU threads (bitwise reproducible on one machine kind) or on CUDA (bf16)."""
    from tqdm.auto import tqdm

    check_name(name)
    if seeds < 1:
        raise ValueError(f"seeds must be a whole number >= 1, got {seeds}")
    todo = [(arm, s) for arm in ABLATIONS[name] for s in range(seeds) if not _done(f"{arm.name}-s{s}", root)]
    threads = torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    try:
        with tqdm(total=len(todo), desc=f"ablate {name}", disable=progress is False) as bar:
            deferred = []
            for pass_ in ("free", "held"):
                for arm, seed in (todo if pass_ == "free" else deferred):
                    run_name = f"{arm.name}-s{seed}"
                    lock = _locked(root / run_name, blocking=pass_ == "held")
                    if lock is None:  # another process is training it: come back when the rest is done
                        deferred.append((arm, seed))
                        continue
                    with lock:
                        if not _done(run_name, root):
                            bar.set_postfix_str(run_name)
                            _run_one(arm, seed, root, device, log)
                    bar.update(1)
    finally:
        torch.set_num_threads(threads)
    return load(name, seeds, root)


def load(name: str, seeds: int = 3, root: Path = ROOT) -> dict[str, list[dict]]:
    """{arm name: [result of seed 0, 1, …]} for ablation `name`, read from `root` (each `score`'s dict)."""
    check_name(name)
    table = {}
    for arm in ABLATIONS[name]:
        paths = [root / f"{arm.name}-s{s}" / "result.json" for s in range(seeds)]
        missing = [str(p.parent.name) for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(f"ablation {name!r} lacks runs {missing}; make them with "
                                    f"`llava-mini ablate {name} --seeds {seeds}`")
        table[arm.name] = [json.loads(p.read_text()) for p in paths]
    return table


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of b − a and its 95% bootstrap interval, for per-question scores of two arms on the same questions:
    arrays (seeds, questions); each seed's runs are averaged first, then questions are resampled together."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two (seeds, questions) arrays of one shape, got {a.shape} and {b.shape}")
    diff = (b - a).mean(axis=0)  # (questions,)
    return float(diff.mean()), *evaluate.bootstrap_ci(diff, n_boot, seed)
