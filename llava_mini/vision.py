"""The vision encoder g: a CLIP ViT (LLaVA paper §4.1: "the pre-trained CLIP visual encoder ViT-L/14").

Given an image X_v it produces the visual features Z_v = g(X_v). The architecture maps 1:1 onto
transformers' `CLIPVisionModel` (same modules, same order, same state-dict shapes), only tiny:

    X_v (B, 3, H, W) -> patchify + bias-free linear -> prepend CLS -> + learned positions -> pre_layrnorm
    -> `layers` pre-LN blocks [LN1 -> attention -> +residual, LN2 -> fc1 -> act -> fc2 -> +residual]

Every block's output is kept: `hidden_states[0]` is the pre_layrnorm output and `hidden_states[i]` the
output of block i. LLaVA does not use the last block: it takes `hidden_states[-2]` (the penultimate block,
`mm_vision_select_layer=-2`) and drops the CLS token (`mm_vision_select_feature='patch'`), giving N = (H/p)·(W/p)
patch features (256 for ViT-L/14 at 224 px, 16 here at 32 px with 8 px patches). `post_layernorm` only
normalises the CLS output, the pooled vector that CLIP's contrastive head sees; LLaVA never uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

SELECT_STRATEGIES = ("patch", "cls_patch")
ACTIVATIONS = ("quick_gelu", "gelu")


@dataclass
class VisionConfig:
    """Shape of the ViT; field names follow the paper/LLaVA, the comments give `CLIPVisionConfig`'s."""

    image_size: int = 32  # image_size
    patch_size: int = 8  # patch_size
    channels: int = 3  # num_channels
    width: int = 64  # hidden_size
    layers: int = 4  # num_hidden_layers
    heads: int = 4  # num_attention_heads
    intermediate: int | None = None  # intermediate_size; None -> 4 * width, as in every CLIP ViT
    act: str = "quick_gelu"  # hidden_act: x·sigmoid(1.702x) (OpenAI CLIP) or "gelu" (erf)
    eps: float = 1e-5  # layer_norm_eps
    feature_layer: int = -2  # which hidden state LLaVA reads (mm_vision_select_layer)
    select: str = "patch"  # "patch": drop CLS (N tokens); "cls_patch": keep it (N + 1 tokens)

    def __post_init__(self):
        if self.intermediate is None:
            self.intermediate = 4 * self.width
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"act must be one of {ACTIVATIONS}, got {self.act!r}")
        if self.select not in SELECT_STRATEGIES:
            raise ValueError(f"select must be one of {SELECT_STRATEGIES}, got {self.select!r}")
        if not -(self.layers + 1) <= self.feature_layer <= self.layers:
            raise ValueError(
                f"feature_layer must index the {self.layers + 1} hidden states "
                f"(-{self.layers + 1}..{self.layers}), got {self.feature_layer}"
            )

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """OpenAI CLIP's sigmoid approximation of GELU."""
    return x * torch.sigmoid(1.702 * x)


class PatchEmbedding(nn.Module):
    """Cut X_v into p×p patches and embed each with one bias-free linear map.

    This is exactly CLIP's `Conv2d(3, D, kernel_size=p, stride=p, bias=False)`: each patch is flattened in
    the conv weight's (c, p1, p2) order, so a conv weight `w` (D, 3, p, p) loads as `w.reshape(D, -1)`.
    """

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.patch_size = cfg.patch_size
        self.proj = nn.Linear(cfg.channels * cfg.patch_size**2, cfg.width, bias=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        patches = rearrange(pixel_values, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=p, p2=p)  # (B, N, 3·p·p)
        return self.proj(patches)  # (B, N, D)


class Attention(nn.Module):
    """Bidirectional multi-head self-attention (every token sees every token, no causal mask)."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.heads = cfg.heads
        self.q_proj = nn.Linear(cfg.width, cfg.width)
        self.k_proj = nn.Linear(cfg.width, cfg.width)
        self.v_proj = nn.Linear(cfg.width, cfg.width)
        self.out_proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (
            rearrange(proj(x), "b n (h d) -> b h n d", h=self.heads)  # (B, heads, N+1, D/heads)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        y = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N+1, D/heads), scale 1/sqrt(D/heads)
        return self.out_proj(rearrange(y, "b h n d -> b n (h d)"))  # (B, N+1, D)


class MLP(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.width, cfg.intermediate)
        self.fc2 = nn.Linear(cfg.intermediate, cfg.width)
        self.act = quick_gelu if cfg.act == "quick_gelu" else F.gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN transformer block (CLIP's `CLIPEncoderLayer`)."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.self_attn = Attention(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class VisionTower(nn.Module):
    """The vision encoder g (CLIP ViT). `features(X_v)` returns Z_v, the input of the projection W."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.config = cfg
        self.patch_embedding = PatchEmbedding(cfg)
        self.class_embedding = nn.Parameter(torch.zeros(cfg.width))
        self.position_embedding = nn.Parameter(torch.zeros(cfg.num_patches + 1, cfg.width))
        self.pre_layrnorm = nn.LayerNorm(cfg.width, eps=cfg.eps)  # sic: CLIP's spelling, kept for the mapping
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.post_layernorm = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.apply(_init_weights)
        nn.init.normal_(self.class_embedding, std=0.02)
        nn.init.normal_(self.position_embedding, std=0.02)

    @property
    def num_image_tokens(self) -> int:
        """Tokens per image in Z_v: N patches, plus 1 when the CLS token is kept."""
        return self.config.num_patches + (self.config.select == "cls_patch")

    def forward(self, pixel_values: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """X_v (B, 3, H, W) -> (hidden_states: layers + 1 tensors (B, N+1, D), pooled CLS output (B, D))."""
        cfg = self.config
        if pixel_values.shape[1:] != (cfg.channels, cfg.image_size, cfg.image_size):
            raise ValueError(
                f"expected pixel_values of shape (B, {cfg.channels}, {cfg.image_size}, {cfg.image_size}), "
                f"got {tuple(pixel_values.shape)}"
            )
        x = self.patch_embedding(pixel_values)  # (B, N, D)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)  # (B, 1, D)
        x = torch.cat([cls.to(x.dtype), x], dim=1) + self.position_embedding  # (B, N+1, D)
        x = self.pre_layrnorm(x)
        hidden_states = [x]
        for block in self.layers:
            x = block(x)
            hidden_states.append(x)
        pooled = self.post_layernorm(x[:, 0])  # (B, D): CLS only, for a contrastive head
        return tuple(hidden_states), pooled

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Z_v = g(X_v): hidden_states[feature_layer], (B, N, D) for "patch", (B, N+1, D) for "cls_patch"."""
        hidden = self.forward(pixel_values)[0][self.config.feature_layer]  # (B, N+1, D)
        return hidden[:, 1:] if self.config.select == "patch" else hidden


def _init_weights(module: nn.Module) -> None:
    """Normal(0, 0.02) weights and zero biases (CLIP's and Llama's `initializer_range`)."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
