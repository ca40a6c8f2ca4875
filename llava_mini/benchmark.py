"""`llava-mini benchmark`: LlavaMini against transformers' `LlavaForConditionalGeneration`, same weights.

One run, one machine, one configuration: the LlavaMini is exported with `hf.export_hf` to a temporary folder
and transformers' model is loaded from there (nothing downloaded), so both compute the same function
(their first training losses agree to float32 rounding, `train.loss_diff`). Measured:

- `train`: steps/s of one AdamW step (forward with labels, backward, update) on the same batch;
- `generate`: greedy tokens/s, LlavaMini.generate vs transformers' `generate` with its cache;
- `cache`: the KV cache's own speed-up (LlavaMini, cached vs uncached) at 64 and 256 new tokens;
- `memory`: the peak bytes of one training step (CPU: the allocator's live bytes seen by the profiler;
  CUDA: `torch.cuda.max_memory_allocated`);
- `bf16` (on CUDA, or when asked for): LlavaMini's training step under bf16 autocast, eager and wrapped in
  `torch.compile`: tokens/s and MFU, the model FLOPs of a step (counted by `torch.utils.flop_counter` over
  one forward and backward) per second over the GPU's dense bf16 peak.

Every time is the median of `repeats` repetitions after warm-up, ours and theirs interleaved in each
repetition so that machine noise hits both. Ratios are ours/theirs in speed: above 1 LlavaMini is faster.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from contextlib import nullcontext

import numpy as np
import torch

from llava_mini import world
from llava_mini.llava import LlavaConfig, LlavaMini
from llava_mini.lm import IGNORE_INDEX, LMConfig
from llava_mini.vision import VisionConfig

CONFIGS = ("zoo", "large", "gpu", "tiny")  # tiny: the tests' configuration (seconds)
CACHE_TOKENS = (64, 256)
# Dense bf16 tensor-core peaks from the vendors' datasheets (TFLOP/s, without sparsity), matched in this order
# against `torch.cuda.get_device_name`; `--peak-tflops` overrides (another GPU, or a power-capped one).
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("A100", 312.0), ("L4", 121.0))


def build_model(config: str, tokenizer, seed: int = 0) -> LlavaMini:
    """The zoo's trained llava-mini ("zoo"), or its vision tower under a ~10 M-parameter LM ("large"), or a GPU-sized
    model ("gpu": 64-px images in 64 patches, a 256-wide 6-block ViT and a 512-wide 8-block LM, 30 M parameters), or
    a tiny random model ("tiny"); random weights are seeded."""
    if config not in CONFIGS:
        raise ValueError(f"--config must be one of {', '.join(CONFIGS)}, got {config!r}")
    from llava_mini import zoo

    if config == "zoo":
        return zoo.load("llava-mini", kind="llava")
    zoo_cfg = LlavaConfig.from_dict(zoo.read_config("llava-mini")["llava"])
    torch.manual_seed(seed)
    if config == "large":  # 8 × 320-wide Llama blocks (5 heads of 64): 10.2 M parameters with the embeddings
        lm = LMConfig(vocab_size=len(tokenizer), dim=320, layers=8, heads=5)
        vision = zoo_cfg.vision
    elif config == "gpu":
        lm = LMConfig(vocab_size=len(tokenizer), dim=512, layers=8, heads=8)
        vision = VisionConfig(image_size=64, patch_size=8, width=256, layers=6, heads=4)
    else:
        lm = LMConfig(vocab_size=len(tokenizer), dim=32, layers=1, heads=2)
        vision = VisionConfig(image_size=32, patch_size=16, width=32, layers=2, heads=2, intermediate=64)
    cfg = LlavaConfig(lm=lm, vision=vision, image_token_id=zoo_cfg.image_token_id,
                      pad_token_id=zoo_cfg.pad_token_id, eos_token_id=zoo_cfg.eos_token_id)
    return LlavaMini(cfg).eval()


def make_batch(model: LlavaMini, batch_size: int, text_tokens: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A right-padded training batch: per row one image (its placeholders after BOS), then random words;
    rows are 0-7 tokens shorter than the longest; labels on the second half of each row's text."""
    cfg, n_img = model.config, model.num_image_tokens
    rng = np.random.default_rng(seed)
    t = 1 + n_img + text_tokens
    ids = torch.full((batch_size, t), cfg.pad_token_id, dtype=torch.long)
    labels = torch.full((batch_size, t), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros(batch_size, t, dtype=torch.long)
    for row in range(batch_size):
        n_text = text_tokens - (int(rng.integers(0, 8)) if row else 0)
        words = torch.from_numpy(rng.integers(5, cfg.lm.vocab_size, n_text))  # (n_text,) ids 0-4 are special
        ids[row, 0] = 1  # BOS
        ids[row, 1:1 + n_img] = cfg.image_token_id
        ids[row, 1 + n_img:1 + n_img + n_text] = words
        labels[row, 1 + n_img + n_text // 2:1 + n_img + n_text] = words[n_text // 2:]
        mask[row, :1 + n_img + n_text] = 1
    scenes = [world.sample_scene(seed + i) for i in range(batch_size)]
    pixels = world.pixel_values(world.render_batch(scenes, cfg.vision.image_size))  # (B, 3, H, W)
    return {"input_ids": ids, "pixel_values": pixels, "attention_mask": mask, "labels": labels}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _interleaved(fns: dict, repeats: int, warmup: int, device) -> dict[str, float]:
    """Median seconds of each callable over `repeats` rounds, all callables once per round (after `warmup`)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_timed(fn, device))
    return {name: statistics.median(ts) for name, ts in times.items()}


def _train_step(model, optimizer, batch, steps: int, autocast=nullcontext):
    def run():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
    return run


def _peak_bytes(fn, device) -> int:
    """Peak live bytes allocated while `fn` runs, above what was live before."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0  # net bytes each op allocated itself, and "[memory]" frees outside ops, in time order
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU named `device_name` (None: not in `PEAK_BF16_TFLOPS`)."""
    return next((tflops for key, tflops in PEAK_BF16_TFLOPS if key in device_name), None)


def step_flops(model: LlavaMini, batch: dict) -> int:
    """Model FLOPs of one training step: the matrix products and attention of one forward and backward
    (`torch.utils.flop_counter`, which counts a multiply-add as 2); the optimizer's few element-wise FLOPs are not
    model FLOPs (PaLM's MFU convention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def bf16_throughput(model: LlavaMini, batch: dict, repeats: int, warmup: int, device: torch.device,
                    peak: float | None) -> dict:
    """Tokens/s and MFU of AdamW training steps under bf16 autocast, eager and `torch.compile`d, timed interleaved
    after each one's first step (`peak`: the device's TFLOP/s; None leaves `mfu` null). Tokens: every position of
    the padded batch."""
    flops = step_flops(model, batch)
    tokens = batch["input_ids"].numel()
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, **fused)
    result = {"flops_per_step": flops, "tokens_per_step": tokens, "peak_tflops": peak}

    def bf16():
        return torch.autocast(device.type, dtype=torch.bfloat16)

    steps = {"eager": _train_step(model, optimizer, batch, 1, bf16),
             "compiled": _train_step(torch.compile(model), optimizer, batch, 1, bf16)}
    first = {name: _timed(step, device) for name, step in steps.items()}  # the compiled model compiles here
    seconds = _interleaved(steps, repeats, warmup, device)
    for name in steps:
        result[name] = {"step_s": seconds[name], "first_step_s": first[name], "tokens_per_s": tokens / seconds[name],
                        "mfu": flops / seconds[name] / (peak * 1e12) if peak else None}
    result["compile_speedup"] = result["eager"]["step_s"] / result["compiled"]["step_s"]
    return result


def run_benchmark(config: str = "zoo", repeats: int = 5, steps: int = 2, batch_size: int = 32,
                  text_tokens: int = 32, new_tokens: int = 64, cache_tokens=CACHE_TOKENS, warmup: int = 1,
                  device: str = "cpu", seed: int = 0, bf16: bool | None = None,
                  peak: float | None = None) -> dict:
    """The figures of the module docstring as one JSON-ready dict (keys in the README's Performance section).
    `bf16`: measure the bf16 eager/compiled steps (default: on CUDA only); `peak`: the device's dense bf16
    TFLOP/s for MFU (default: `PEAK_BF16_TFLOPS` by device name on CUDA, none on CPU)."""
    for name, value, low in (("repeats", repeats, 1), ("steps", steps, 1), ("batch_size", batch_size, 1),
                             ("text_tokens", text_tokens, 2), ("new_tokens", new_tokens, 1), ("warmup", warmup, 0)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not cache_tokens or any(not isinstance(n, int) or n < 1 for n in cache_tokens):
        raise ValueError(f"cache_tokens must be integers >= 1, got {cache_tokens!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {device!r}")
    if peak is not None and not peak > 0:
        raise ValueError(f"peak must be a number of TFLOP/s > 0, got {peak!r}")
    import transformers
    from transformers import GenerationConfig, LlavaForConditionalGeneration

    from llava_mini.hf import export_hf
    from llava_mini.tokenizer import load_tokenizer

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    tokenizer = load_tokenizer()
    dev = torch.device(device)
    ours = build_model(config, tokenizer, seed)
    longest = 1 + ours.num_image_tokens + max(text_tokens, 8) + max([new_tokens, *cache_tokens])
    if longest > ours.config.lm.max_seq_len:
        raise ValueError(f"prompt + new tokens need {longest} positions, the LM has {ours.config.lm.max_seq_len}")
    with tempfile.TemporaryDirectory() as folder:
        export_hf(ours, tokenizer, folder)
        theirs = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    ours, theirs = ours.to(dev), theirs.to(dev)
    batch = {k: v.to(dev) for k, v in make_batch(ours, batch_size, text_tokens, seed).items()}

    # ---- generation (before training changes the weights): one prompt, greedy, no early end -------------
    prompt = {"input_ids": batch["input_ids"][:1, :1 + ours.num_image_tokens + 8],
              "pixel_values": batch["pixel_values"][:1]}
    no_end = GenerationConfig(do_sample=False, eos_token_id=None, pad_token_id=ours.config.pad_token_id,
                              bos_token_id=None)

    def ours_gen(n, cache=True):
        return lambda: ours.generate(**prompt, max_new_tokens=n, eos_token_id=-1, use_cache=cache)  # -1: never ends

    def theirs_gen(n):
        return lambda: theirs.generate(**prompt, generation_config=no_end, max_new_tokens=n, min_new_tokens=n,
                                       use_cache=True)

    with torch.no_grad():
        same = torch.equal(ours_gen(new_tokens)().cpu(),
                           theirs_gen(new_tokens)()[:, prompt["input_ids"].shape[1]:].cpu())
        gen = _interleaved({"ours": ours_gen(new_tokens), "theirs": theirs_gen(new_tokens)}, repeats, warmup, dev)
        cache = {}
        for n in cache_tokens:
            t = _interleaved({"cached": ours_gen(n), "uncached": ours_gen(n, cache=False)},
                             max(1, repeats // 2), min(warmup, 1), dev)
            cache[str(n)] = {"cached_s": t["cached"], "uncached_s": t["uncached"],
                             "speedup": t["uncached"] / t["cached"]}

    # ---- training: the same batch, AdamW on each ---------------------------------------------------------
    ours.train(), theirs.train()
    with torch.no_grad():
        loss_diff = abs(float(ours(**batch).loss) - float(theirs(**batch).loss))
    fused = {"fused": True} if dev.type == "cuda" else {}
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4, **fused)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-4, **fused)
    train = _interleaved({"ours": _train_step(ours, opt_ours, batch, steps),
                          "theirs": _train_step(theirs, opt_theirs, batch, steps)}, repeats, warmup, dev)
    memory = {name: _peak_bytes(_train_step(model, opt, batch, 1), dev)
              for name, model, opt in (("ours", ours, opt_ours), ("theirs", theirs, opt_theirs))}

    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    if peak is None and dev.type == "cuda":
        peak = peak_tflops(name)
    measure_bf16 = dev.type == "cuda" if bf16 is None else bf16
    low_precision = bf16_throughput(ours, batch, repeats, warmup, dev, peak) if measure_bf16 else None

    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    cfg = ours.config
    return {
        "config": {
            "name": config, "device": name,
            "threads": torch.get_num_threads(), "dtype": "float32", "torch": torch.__version__,
            "transformers": transformers.__version__,
            "params": {"total": count(ours), "vision": count(ours.vision), "projector": count(ours.projector),
                       "lm": count(ours.lm)},
            "vision": {"image_size": cfg.vision.image_size, "patch_size": cfg.vision.patch_size,
                       "width": cfg.vision.width, "layers": cfg.vision.layers},
            "lm": {"dim": cfg.lm.dim, "layers": cfg.lm.layers, "heads": cfg.lm.heads, "hidden": cfg.lm.hidden,
                   "vocab_size": cfg.lm.vocab_size},
            "image_tokens": ours.num_image_tokens, "batch_size": batch_size, "seq_len": batch["input_ids"].shape[1],
            "prompt_len": prompt["input_ids"].shape[1], "new_tokens": new_tokens, "repeats": repeats,
            "steps": steps, "warmup": warmup,
        },
        "train": {"ours_steps_per_s": steps / train["ours"], "theirs_steps_per_s": steps / train["theirs"],
                  "ratio": train["theirs"] / train["ours"], "loss_diff": loss_diff},
        "generate": {"ours_tokens_per_s": new_tokens / gen["ours"], "theirs_tokens_per_s": new_tokens / gen["theirs"],
                     "ratio": gen["theirs"] / gen["ours"], "same_tokens": same},
        "cache": cache,
        "memory": {"ours_peak_bytes": memory["ours"], "theirs_peak_bytes": memory["theirs"],
                   "ratio": memory["ours"] / max(memory["theirs"], 1),
                   "how": "torch.cuda.max_memory_allocated" if dev.type == "cuda" else "profiler (CPU allocator)"},
        "bf16": low_precision,
    }


def summary(result: dict) -> str:
    """A few human-readable lines of `run_benchmark`'s dict."""
    c, t, g, m = result["config"], result["train"], result["generate"], result["memory"]
    lines = [f"config {c['name']}: {c['params']['total']:,} params (LM {c['params']['lm']:,}), {c['device']}, "
             f"{c['threads']} thread(s), batch {c['batch_size']} x {c['seq_len']} tokens",
             f"train    ours {t['ours_steps_per_s']:.2f} steps/s, transformers {t['theirs_steps_per_s']:.2f}: "
             f"ratio {t['ratio']:.2f} (first-loss difference {t['loss_diff']:.1e})",
             f"generate ours {g['ours_tokens_per_s']:.0f} tok/s, transformers {g['theirs_tokens_per_s']:.0f} "
             f"(cached): ratio {g['ratio']:.2f}, same tokens: {g['same_tokens']}"]
    lines += [f"cache    {n} new tokens: {v['speedup']:.2f}x faster than uncached" for n, v in result["cache"].items()]
    lines.append(f"memory   peak of a training step: ours {m['ours_peak_bytes'] / 2**20:.1f} MiB, transformers "
                 f"{m['theirs_peak_bytes'] / 2**20:.1f} MiB ({m['how']})")
    if b := result["bf16"]:
        for name in ("eager", "compiled"):
            mfu = f", MFU {b[name]['mfu']:.1%}" if b[name]["mfu"] is not None else ""
            lines.append(f"bf16     {name}: {b[name]['tokens_per_s']:,.0f} tokens/s{mfu}")
        lines.append(f"bf16     torch.compile: {b['compile_speedup']:.2f}x the eager step "
                     f"(first compiled step {b['compiled']['first_step_s']:.1f} s)")
    return "\n".join(lines)
