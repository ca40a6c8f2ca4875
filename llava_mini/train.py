"""The trainer: one loop for CPU and CUDA, for every job of the recipe.

`fit` trains whatever parameters of a model require gradients; the model owns its loss (`model(**batch).loss`,
as transformers' models do), so the same loop trains clip-mini, the LLMs and both LLaVA stages
(`llava_mini.stages` decides what is frozen). AdamW, linear warm-up, then cosine decay (LLaVA App. C), or a
constant rate (`decay=0`) for learning curves; gradient accumulation normalised by the whole step's
supervised tokens; an optional evaluation every `eval_every` steps.

Under `torchrun` (torch.distributed initialised before `fit`), the model is wrapped in DistributedDataParallel:
each optimizer step reads `world × grad_accum` micro-batches from the stream (the same seeded stream on every
rank) and rank r trains on its own shard of them, so the global batch, the loss and the weights are those of
one process with `grad_accum × world` (`test_train_ddp.py`: 2 CPU processes, gloo).
"""

from __future__ import annotations

import math
import os
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from llava_mini.lm import IGNORE_INDEX


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (LLaVA App. C uses AdamW, no weight decay, cosine, 3% warm-up)."""

    steps: int = 300
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: float = 0.03  # fraction of steps with a linear warm-up
    decay: float = 1.0  # fraction of steps, at the end, of the cosine decay to 0 (1: all after the warm-up;
    #                     below 1: constant at `lr` until then, "warm-up, stable, decay"; 0: constant to the end)
    grad_accum: int = 1  # micro-batches per optimizer step
    max_grad_norm: float | None = 1.0
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    bf16: bool = True  # bf16 autocast, used only on CUDA
    compile: bool = False  # torch.compile the model's forward
    seed: int = 0
    log_every: int = 25
    eval_every: int = 0  # steps between calls of `fit`'s `evaluate` (0: only after the last step)
    progress: bool | None = None  # tqdm bar; None = only when stderr is a terminal


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {name!r}")
    return torch.device(name)


def count_parameters(model: nn.Module) -> dict[str, tuple[int, int]]:
    """{top-level child: (trainable, total)} plus "total"; what each stage prints."""
    counts = {}
    for name, child in model.named_children():
        params = list(child.parameters())
        counts[name] = (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
    counts["total"] = tuple(sum(c[i] for c in counts.values()) for i in (0, 1))
    return counts


def format_counts(counts: dict[str, tuple[int, int]]) -> str:
    return "\n".join(f"{name:>10}: {t:>9,} trainable of {n:>9,}" for name, (t, n) in counts.items())


def cosine_lr(step: int, total: int, warmup_steps: int, peak: float, decay_steps: int | None = None) -> float:
    """Linear warm-up to `peak`, constant, then cosine decay to 0 at `total` over the last `decay_steps`
    (default: every step after the warm-up; 0: no decay)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if decay_steps == 0:
        return peak
    decay_steps = total - warmup_steps if decay_steps is None else decay_steps
    progress = (step - (total - decay_steps)) / max(1, decay_steps)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def supervised_tokens(batch: dict) -> int:
    """Number of tokens that take loss after the causal shift (labels[:, 1:] != -100)."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def training_flops(n_trainable: int, tokens: int, n_forward_only: int = 0, forward_only_tokens: int = 0) -> int:
    """Estimated FLOPs of training on `tokens` tokens: 6·N per token for the N parameters that train (2·N in the
    forward pass, 4·N in the backward: the gradients of the activations and of the weights), plus 2·N per token
    for a frozen encoder that runs before anything trainable (LLaVA's vision tower g: forward only, since no
    gradient has to pass through it). Attention's score FLOPs are left out, as in the usual 6·N·D estimate."""
    return 6 * n_trainable * tokens + 2 * n_forward_only * forward_only_tokens


def mfu(flops: float, seconds: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: the FLOPs the model needs (`training_flops`) per second, as a fraction of the
    device's peak (e.g. 989e12 for an H100 SXM's dense bf16)."""
    if seconds <= 0 or peak_flops <= 0:
        raise ValueError(f"seconds and peak_flops must be positive, got {seconds} and {peak_flops}")
    return flops / seconds / peak_flops


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def distributed() -> tuple[int, int]:
    """(rank, world size) of an initialised torch.distributed process group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@contextmanager
def process_group(device: str = "auto"):
    """Under `torchrun` (WORLD_SIZE > 1 in the environment): initialise torch.distributed for `fit` — NCCL on CUDA,
    gloo on CPU — yield this process's rank, and tear the group down afterwards. Elsewhere: yield 0, do nothing."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield 0
        return
    torch.distributed.init_process_group("nccl" if resolve_device(device).type == "cuda" else "gloo")
    try:
        yield torch.distributed.get_rank()
    finally:
        torch.distributed.destroy_process_group()


def _all_reduce_sum(value: float | int, device: torch.device) -> float:
    """The sum over ranks of one number (float64 on the wire, so an integer count stays exact)."""
    t = torch.tensor(float(value), dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.item()


def fit(
    model: nn.Module,
    batches: Iterator[dict],
    cfg: TrainConfig,
    count_fn: Callable[[dict], int] | None = supervised_tokens,
    log: Callable[[str], None] | None = print,
    evaluate: Callable[[int, list[float]], bool | None] | None = None,
) -> list[float]:
    """Train the model's trainable parameters with AdamW; return the loss of every optimizer step.

    Each micro-batch's loss is `model(**batch, num_items_in_batch=n).loss`, the summed token losses divided
    by n, the number of supervised tokens (`count_fn`) of the *whole* optimizer step (all micro-batches), so
    that gradient accumulation gives exactly the gradient of one big batch. With `count_fn=None` the model's
    loss is taken as a mean (`model(**batch).loss`) and divided by `grad_accum`.

    `evaluate(step, losses)` runs every `cfg.eval_every` steps and after the last, in eval mode without
    gradients; returning True stops training there.

    Under torch.distributed (see the module docstring) rank r keeps micro-batches r·grad_accum to
    (r+1)·grad_accum - 1 of the step's world·grad_accum; n is the all-reduced count of the whole step, and the
    loss is scaled by the world size because DDP averages the ranks' gradients: the update is the single
    process's. The returned losses are the global ones (all-reduced); only rank 0 logs.
    """
    device = resolve_device(cfg.device)
    rank, world = distributed()
    if world > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count())))
    torch.manual_seed(cfg.seed)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters: call stages.freeze() or unfreeze something")
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999), fused=fused)
    step_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        step_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    step_model = torch.compile(step_model) if cfg.compile else step_model
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if (cfg.bf16 and device.type == "cuda") else nullcontext()
    )
    warmup_steps = max(1, round(cfg.warmup * cfg.steps))
    decay_steps = None if cfg.decay >= 1 else (0 if cfg.decay <= 0 else max(1, round(cfg.decay * cfg.steps)))
    show_bar = (sys.stderr.isatty() if cfg.progress is None else cfg.progress) and rank == 0
    log = log if rank == 0 else None
    bar = None
    if show_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, desc="train", leave=False)
    history: list[float] = []
    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, cfg.steps, warmup_steps, cfg.lr, decay_steps)
        step_batches = [next(batches) for _ in range(world * cfg.grad_accum)]  # the step's; this rank's shard kept
        micro = [to_device(b, device) for b in step_batches[rank * cfg.grad_accum:(rank + 1) * cfg.grad_accum]]
        n_items = sum(count_fn(b) for b in micro) if count_fn else None
        if world > 1 and n_items is not None:
            n_items = round(_all_reduce_sum(n_items, device))  # the supervised tokens of the global step
        total = 0.0
        for i, b in enumerate(micro):
            sync = world == 1 or i + 1 == len(micro) or not hasattr(step_model, "no_sync")
            with nullcontext() if sync else step_model.no_sync():  # DDP all-reduces at the last micro-batch
                with autocast:
                    if n_items is None:
                        loss = step_model(**b).loss / cfg.grad_accum
                    else:
                        loss = step_model(**b, num_items_in_batch=n_items).loss
                # DDP averages the ranks' gradients; a loss over the global count n must be summed instead
                (loss * world if world > 1 and n_items is not None else loss).backward()
            total += loss.item()
        if world > 1:
            total = _all_reduce_sum(total, device) / (1 if n_items is not None else world)
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        history.append(total)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total:.4f}")
        elif log and cfg.log_every and (step + 1) % cfg.log_every == 0:
            log(f"step {step + 1:>5}/{cfg.steps}  loss {total:.4f}")
        last = step + 1 == cfg.steps
        if evaluate and (last or (cfg.eval_every and (step + 1) % cfg.eval_every == 0)):
            model.eval()
            with torch.no_grad():
                stop = evaluate(step + 1, history)
            model.train()
            if stop:
                break
    if bar is not None:
        bar.close()
    model.eval()
    return history
