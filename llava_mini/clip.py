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


# Initial scale of the ViT's learned position embeddings. CLIP's 0.02 leaves them tiny next to the patch
# content: after a short training a linear probe read an object token's grid cell at chance (13%), so position
# would reach W only through the LLM's own position encoding. Measured with cell twins (`probe.cell_probe`,
# layer -2, 1800 steps): std 0.5 -> cell 0.963 (object patches 0.85), 1.0 -> 0.997, 1.5 -> 0.998; the
# small-object shape probe 0.951, 0.934, 0.934; zero-shot retrieval 0.98, 1.00, 1.00.
POSITION_INIT_STD = 1.0


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


@dataclass
class ClipOutput:
    loss: torch.Tensor  # the symmetric InfoNCE of `contrastive_loss`
    image_embeds: torch.Tensor  # (B, E) unit length
    text_embeds: torch.Tensor  # (B, E) unit length


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
        nn.init.normal_(self.vision.position_embedding, std=POSITION_INIT_STD)

    def embed(self, pixel_values, input_ids, attention_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit-length image and caption embeddings, each (B, embed_dim)."""
        image = self.visual_projection(self.vision(pixel_values)[1])  # pooled = post_layernorm(CLS)
        text = self.text_projection(self.text(input_ids, attention_mask))
        return F.normalize(image, dim=-1), F.normalize(text, dim=-1)

    def forward(self, pixel_values, input_ids, attention_mask) -> ClipOutput:
        """A batch of true (image, caption) pairs: their unit embeddings and CLIP's loss over the batch."""
        image, text = self.embed(pixel_values, input_ids, attention_mask)
        return ClipOutput(contrastive_loss(image, text, self.logit_scale), image, text)


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE: mean of the image->text and text->image cross-entropies.

    image, text: (B, E) unit vectors where row i of each is a true pair. The scale exp(t) is clamped at
    100, as in CLIP, so the temperature cannot collapse.
    """
    logits = logit_scale.clamp(max=math.log(100)).exp() * image @ text.T  # (B, B)
    targets = torch.arange(len(logits), device=logits.device)  # (B,) the diagonal
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def _caption_ids(captions, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded caption ids, each ending with </s>, and their attention mask: both (B, T)."""
    ids = [tokenizer.encode(c, add_special_tokens=False) + [tokenizer.eos_token_id] for c in captions]
    longest = max(map(len, ids))
    return (torch.tensor([row + [tokenizer.pad_token_id] * (longest - len(row)) for row in ids]),
            torch.tensor([[1] * len(row) + [0] * (longest - len(row)) for row in ids]))


def shape_twin(scene: world.Scene, rng: np.random.Generator) -> world.Scene:
    """The same scene with one object's shape changed: a hard negative that only shape tells apart.

    The twin keeps the scene's seed, so `world.render` draws the same colour jitter and pixel noise: the two
    images differ only inside the changed object's box."""
    i = int(rng.integers(len(scene.objects)))
    obj = scene.objects[i]
    shape = [s for s in world.SHAPES if s != obj.shape][int(rng.integers(len(world.SHAPES) - 1))]
    objects = scene.objects[:i] + (replace(obj, shape=shape),) + scene.objects[i + 1:]
    return replace(scene, objects=objects)


def cell_twin(scene: world.Scene, rng: np.random.Generator) -> world.Scene:
    """The same scene with one object moved to an empty cell: a hard negative that only position tells
    apart. Without it CLIP's loss needs little position, and a probe of clip-mini's layer -2 read an object
    token's own cell only 78% of the time (a random-init ViT: 100%), so W could not write "top left"."""
    i = int(rng.integers(len(scene.objects)))
    obj = scene.objects[i]
    empty = sorted(set(range(world.N_CELLS)) - {o.row * 3 + o.col for o in scene.objects})
    moved = world.place((obj.colour, obj.shape, obj.size), empty[int(rng.integers(len(empty)))], rng)
    objects = tuple(sorted(scene.objects[:i] + (moved,) + scene.objects[i + 1:], key=lambda o: (o.row, o.col)))
    return replace(scene, objects=objects)


TWINS = (shape_twin, cell_twin)


@dataclass
class CaptionPool:
    """Pre-rendered (image, caption) pairs: scene 2i and its twin 2i + 1 (a shape twin for even i, a cell
    twin for odd i), captioned in full."""

    pixels: np.ndarray  # (2n, H, W, 3) uint8
    ids: torch.Tensor  # (2n, T) caption ids, right-padded, each ending with </s>
    mask: torch.Tensor  # (2n, T) attention mask of the ids
    caption: np.ndarray  # (2n,) index of the caption's text, equal for equal captions

    def __len__(self) -> int:
        return len(self.caption)


def caption_pool(tokenizer, n_scenes: int, image_size: int, seed: int = 0) -> CaptionPool:
    """n_scenes train scenes and a twin of each, alternately a shape twin and a cell twin, rendered and
    tokenized once (sampling, rendering and tokenizing on the fly cost more than a training step)."""
    rng = np.random.default_rng(seed)
    scenes = []
    for i, s in enumerate(world.split_seeds("train", n_scenes)):
        scene = world.sample_scene(s)
        scenes += [scene, TWINS[i % 2](scene, rng)]
    captions = [world.symbolic_context(scene).captions[0] for scene in scenes]  # the most detailed caption
    index = {c: i for i, c in enumerate(sorted(set(captions)))}
    ids, mask = _caption_ids(captions, tokenizer)
    return CaptionPool(world.render_batch(scenes, image_size), ids, mask, np.array([index[c] for c in captions]))


def caption_batches(pool: CaptionPool, batch_size: int, seed: int):
    """Endless batches of batch_size / 2 random twin pairs from the pool, with no caption twice in a batch.

    A duplicate caption would be a false negative on the other's row. Every image's twin is in its batch:
    random negatives almost always differ in colour or position, so without twins the encoder learns little
    about shape (measured: a linear probe on shape stays near 35% after 600 steps).
    """
    if batch_size % 2 or not 2 <= batch_size <= len(pool):
        raise ValueError(f"batch_size must be even and at most the pool's {len(pool)} images, got {batch_size}")
    rng = np.random.default_rng(seed)
    while True:
        chosen, seen = [], set()
        for pair in rng.permutation(len(pool) // 2):
            texts = {int(pool.caption[2 * pair]), int(pool.caption[2 * pair + 1])}
            if len(texts) == 2 and seen.isdisjoint(texts):
                seen |= texts
                chosen += [2 * pair, 2 * pair + 1]
                if len(chosen) == batch_size:
                    break
        rows = torch.tensor(chosen)
        length = int(pool.mask[rows].sum(1).max())
        yield {"pixel_values": world.pixel_values(pool.pixels[chosen]),  # (B, 3, H, W)
               "input_ids": pool.ids[rows, :length], "attention_mask": pool.mask[rows, :length]}  # (B, T)


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
    ids, mask = _caption_ids(captions, tokenizer)
    pixels = world.pixel_values(world.render_batch(scenes, model.vision.config.image_size))  # (n, 3, H, W)
    image, text = model.eval().embed(pixels, ids, mask)
    return float(((image @ text.T).argmax(1) == torch.arange(len(image))).float().mean())
