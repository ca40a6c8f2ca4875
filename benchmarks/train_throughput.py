"""Training throughput of a stage-2 step: fp32 vs bf16 vs bf16 + torch.compile, tiny and scaled-up LM.

Usage (from the repository root): `PYTHONPATH=. python benchmarks/train_throughput.py` on a CUDA machine
(`DEVICE=cpu` for a smoke run). Prints one JSON line per configuration: steps/s, tokens/s, model TFLOP/s
(6 x trainable parameters x tokens / time) and MFU against an H100's 989 dense bf16 TFLOP/s.
Random-init models on the recipe's stage-2 data: the numbers measure speed, not learning.
"""

import json
import os
import time

import torch

from llava_mini import corpora, jobs, recipe, stages, world
from llava_mini.lm import LanguageModel, LMConfig
from llava_mini.tokenizer import load_tokenizer
from llava_mini.train import TrainConfig, fit
from llava_mini.vision import VisionTower

DEVICE = os.environ.get("DEVICE", "cuda")
H100_BF16_FLOPS = 989e12


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def run(name, lm_cfg, examples, tokenizer, steps, batch_size, bf16, compile_):
    torch.manual_seed(0)
    model = jobs.assemble(VisionTower(recipe.VISION), LanguageModel(lm_cfg))
    stages.freeze(model, 2)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    batches = corpora.Batches(examples, tokenizer, batch_size, seed=0, image_size=recipe.VISION.image_size)
    cfg = TrainConfig(steps=10, batch_size=batch_size, lr=1e-3, device=DEVICE, bf16=bf16, compile=compile_,
                      log_every=0, progress=False)
    fit(model, batches, cfg)  # warm-up, and compilation
    sync()
    tokens = 0

    def counted():
        nonlocal tokens
        for batch in batches:
            tokens += int(batch["attention_mask"].sum())
            yield batch

    cfg.steps = steps
    start = time.perf_counter()
    losses = fit(model, counted(), cfg)
    sync()
    seconds = time.perf_counter() - start
    flops = 6 * trainable * tokens / seconds
    print(json.dumps({"run": name, "trainable": trainable, "steps_per_s": round(steps / seconds, 1),
                      "tokens_per_s": int(tokens / seconds), "model_tflops": round(flops / 1e12, 2),
                      "mfu": round(flops / H100_BF16_FLOPS, 4), "final_loss": round(sum(losses[-5:]) / 5, 3)}),
          flush=True)


def main():
    tokenizer = load_tokenizer()
    examples = stages.examples(2, world.split_seeds("train", 3000), tokenizer,
                               VisionTower(recipe.VISION).num_image_tokens)
    small, scaled = LMConfig(len(tokenizer)), LMConfig(len(tokenizer), dim=768, layers=12, heads=12)
    for name, cfg, steps, batch_size, bf16, compile_ in (
        ("small fp32", small, 100, 32, False, False),
        ("small bf16", small, 100, 32, True, False),
        ("small bf16+compile", small, 100, 32, True, True),
        ("scaled 768x12 bf16", scaled, 50, 64, True, False),
        ("scaled 768x12 bf16+compile", scaled, 50, 64, True, True),
    ):
        run(name, cfg, examples, tokenizer, steps, batch_size, bf16, compile_)
    print(torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu", torch.__version__)


if __name__ == "__main__":
    main()
