"""clip-mini: pre-training the vision encoder g the way CLIP was (Radford et al., 2021).

LLaVA takes g from CLIP ViT-L/14 and never trains it (paper §4.2). CLIP learned g by contrasting images
with their captions: a batch of B (image, caption) pairs gives a B×B similarity matrix whose diagonal
holds the true pairs, and a symmetric cross-entropy (InfoNCE over rows and over columns) with a learnable
temperature pulls the true pairs together. Here the captions come from ShapesWorld's symbolic context.

What the image side feeds the loss is `post_layernorm(CLS)` through a bias-free projection: the patch
tokens of the last block never reach the loss, which is why LLaVA reads the penultimate layer (-2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llava_mini import world
from llava_mini.lm import Block, LMConfig, RMSNorm, RotaryEmbedding, attention_mask_4d
from llava_mini.vision import VisionConfig, VisionTower


@dataclass
class TextConfig:
    """A small causal text transformer, pooled at its last token like CLIP's text tower (at its EOS)."""

    vocab_size: int
    dim: int = 64
    layers: int = 2
    heads: int = 4


class TextEncoder(nn.Module):
    """Caption ids (B, T) -> one vector per caption (B, dim), read at each caption's last real token."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        lm_cfg = LMConfig(cfg.vocab_size, dim=cfg.dim, layers=cfg.layers, heads=cfg.heads)
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(lm_cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.dim, lm_cfg.norm_eps)
        self.rope = RotaryEmbedding(lm_cfg)
        nn.init.normal_(self.embed_tokens.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        b, t = input_ids.shape
        x = self.embed_tokens(input_ids)  # (B, T, dim)
        positions = torch.arange(t, device=x.device).expand(b, t)  # (B, T); right padding
        mask = attention_mask_4d(attention_mask, 0, t)  # (B, 1, T, T) causal and padding
        for block in self.layers:
            x, _ = block(x, self.rope, positions, mask, None)
        last = attention_mask.long().sum(1) - 1  # (B,) index of each caption's end token
        return self.norm(x[torch.arange(b, device=x.device), last])  # (B, dim)


class ClipMini(nn.Module):
    """Image tower g + text tower + bias-free projections into a shared space, and CLIP's temperature."""

    def __init__(self, vision: VisionConfig, text: TextConfig, embed_dim: int = 64):
        super().__init__()
        self.text_config = text
        self.vision = VisionTower(vision)
        self.text = TextEncoder(text)
        self.visual_projection = nn.Linear(vision.width, embed_dim, bias=False)
        self.text_projection = nn.Linear(text.dim, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature 0.07

    def embed(self, pixel_values, input_ids, attention_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit-length image and caption embeddings, each (B, embed_dim)."""
        image = self.visual_projection(self.vision(pixel_values)[1])  # pooled = post_layernorm(CLS)
        text = self.text_projection(self.text(input_ids, attention_mask))
        return F.normalize(image, dim=-1), F.normalize(text, dim=-1)

    def forward(self, pixel_values, input_ids, attention_mask) -> torch.Tensor:
        image, text = self.embed(pixel_values, input_ids, attention_mask)
        return contrastive_loss(image, text, self.logit_scale)


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE: mean of the image->text and text->image cross-entropies.

    image, text: (B, E) unit vectors where row i of each is a true pair. The scale exp(t) is clamped at
    100, as in CLIP, so the temperature cannot collapse.
    """
    logits = logit_scale.clamp(max=math.log(100)).exp() * image @ text.T  # (B, B)
    targets = torch.arange(len(logits), device=logits.device)  # (B,) the diagonal
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def _batch(scenes, captions, tokenizer, image_size: int) -> dict:
    """Rendered images and right-padded caption ids (each caption ends with </s>) as one batch."""
    ids = [tokenizer.encode(c, add_special_tokens=False) + [tokenizer.eos_token_id] for c in captions]
    longest = max(map(len, ids))
    return {
        "pixel_values": world.pixel_values(world.render_batch(scenes, image_size)),  # (B, 3, H, W)
        "input_ids": torch.tensor([row + [tokenizer.pad_token_id] * (longest - len(row)) for row in ids]),
        "attention_mask": torch.tensor([[1] * len(row) + [0] * (longest - len(row)) for row in ids]),
    }


def shape_twin(scene: world.Scene, rng: np.random.Generator) -> world.Scene:
    """The same scene with one object's shape changed: a hard negative that only shape tells apart."""
    i = int(rng.integers(len(scene.objects)))
    obj = scene.objects[i]
    shape = [s for s in world.SHAPES if s != obj.shape][int(rng.integers(len(world.SHAPES) - 1))]
    objects = scene.objects[:i] + (replace(obj, shape=shape),) + scene.objects[i + 1:]
    return replace(scene, objects=objects)


def caption_batches(tokenizer, batch_size: int, seed: int, image_size: int = 32, hard_negatives: float = 0.5):
    """Endless (image, caption) batches from the train split, with no caption twice in a batch.

    Each scene gives its most detailed caption half of the time and one of its five captions otherwise;
    a duplicate caption would be a false negative on the other's row, so duplicates are skipped. A share
    `hard_negatives` of the batch are shape twins (`shape_twin`) of other scenes in it, captioned in full:
    random negatives almost always differ in colour or position, so without twins the encoder learns
    little about shape (measured: a linear probe on shape stays near 35% after 600 steps).
    """
    rng = np.random.default_rng(seed)
    seeds = world.SPLITS["train"]
    n_twins = int(batch_size * hard_negatives) // 2
    while True:
        scenes, captions = [], []

        def add(scene, caption):
            if caption not in captions and len(scenes) < batch_size:
                scenes.append(scene)
                captions.append(caption)

        while len(scenes) < 2 * n_twins:
            scene = world.sample_scene(int(rng.integers(len(seeds))) + seeds.start)
            twin = shape_twin(scene, rng)
            pair = [world.symbolic_context(s).captions[0] for s in (scene, twin)]
            if not set(pair) & set(captions):
                add(scene, pair[0])
                add(twin, pair[1])
        while len(scenes) < batch_size:
            scene = world.sample_scene(int(rng.integers(len(seeds))) + seeds.start)
            options = world.symbolic_context(scene).captions
            add(scene, options[0] if rng.random() < 0.5 else options[int(rng.integers(len(options)))])
        yield _batch(scenes, captions, tokenizer, image_size)


def clip_loss(model: ClipMini, batch: dict, n_items=None) -> torch.Tensor:
    return model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])


@torch.no_grad()
def zero_shot_accuracy(model: ClipMini, tokenizer, n: int = 200, split: str = "val") -> float:
    """Share of n images whose best-matching caption, among the n images' detailed captions, is their own."""
    scenes, captions = [], []
    for seed in world.split_seeds(split, 10 * n):
        scene = world.sample_scene(seed)
        caption = world.symbolic_context(scene).captions[0]
        if caption not in captions:
            scenes.append(scene)
            captions.append(caption)
        if len(scenes) == n:
            break
    batch = _batch(scenes, captions, tokenizer, model.vision.config.image_size)
    image, text = model.eval().embed(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
    return float(((image @ text.T).argmax(1) == torch.arange(len(image))).float().mean())
