"""The projection W (LLaVA paper §4.1, eq. 1): visual features Z_v -> visual tokens H_v in the LLM's
word-embedding space, so that f_φ can read them like words.

Every projector maps Z_v (n_img, N, in_dim) to H_v (n_img, k, out_dim); `num_tokens(N)` says how many
tokens k each image then occupies in the LLM's sequence (the model expands `<image>` to that many
placeholders). Kinds, with their parameter counts (`projector_param_count`):

| kind         | H_v                                   | k | parameters                                  |
|--------------|---------------------------------------|---|---------------------------------------------|
| `linear`     | W·Z_v + b (LLaVA v1)                  | N | in·out + out (1024 -> 4096: 4,198,400)      |
| `mlp2x_gelu` | W2·GELU(W1·Z_v + b1) + b2 (LLaVA-1.5) | N | linear + out·out + out (7B: 20,979,712)     |
| `resampler`  | k learned queries attend to Z_v       | k | k·out + in·out + 4·out² + 9·out             |
| `cls`        | W·(CLS token) + b                     | 1 | in·out + out                                |
| `mean`       | W·mean(Z_v over its tokens) + b       | 1 | in·out + out                                |

`cls` and `mean` are the *pooling baselines*: one token per image, the information bottleneck of
"one global image vector" designs. LLaVA itself keeps every patch token. `cls` needs the CLS token in
Z_v, i.e. the vision tower must keep it: `VisionConfig(select="cls_patch")` (LlavaMini checks this).
`mean` averages whatever tokens it is given; with `select="patch"` that is the N patch tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

PROJECTOR_KINDS = ("linear", "mlp2x_gelu", "resampler", "cls", "mean")


class LinearProjector(nn.Linear):
    """LLaVA v1: H_v = W·Z_v, one matrix (plus bias) shared by all N tokens. Keys: weight, bias."""

    def num_tokens(self, n_in: int) -> int:
        return n_in


class MLPProjector(nn.Sequential):
    """LLaVA-1.5's `mlp2x_gelu`: Linear -> GELU (erf) -> Linear. Keys 0.* and 2.*, as LLaVA's mm_projector."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def num_tokens(self, n_in: int) -> int:
        return n_in


class ClsProjector(nn.Linear):
    """Baseline: only the CLS token (index 0 of Z_v, present with select="cls_patch"), projected by W."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return super().forward(z[:, :1])  # (n_img, 1, out_dim)

    def num_tokens(self, n_in: int) -> int:
        return 1


class MeanPoolProjector(nn.Linear):
    """Baseline: the average of the feature tokens, projected by W."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return super().forward(z.mean(dim=1, keepdim=True))  # (n_img, 1, out_dim)

    def num_tokens(self, n_in: int) -> int:
        return 1


class Resampler(nn.Module):
    """k learned queries attend to the N feature tokens (one cross-attention layer, as in the resamplers
    of Flamingo and Qwen-VL): H_v has k tokens whatever N is. The features carry their positions already
    (the ViT added position embeddings), so no extra positional encoding is used."""

    def __init__(self, in_dim: int, out_dim: int, num_queries: int = 8, heads: int = 4):
        super().__init__()
        if out_dim % heads:
            raise ValueError(f"resampler out_dim {out_dim} is not divisible by heads {heads}")
        self.heads = heads
        self.queries = nn.Parameter(torch.randn(num_queries, out_dim) * 0.02)  # (k, out_dim)
        self.kv_proj = nn.Linear(in_dim, out_dim)
        self.ln_q = nn.LayerNorm(out_dim)
        self.ln_kv = nn.LayerNorm(out_dim)
        self.q_proj = nn.Linear(out_dim, out_dim)
        self.k_proj = nn.Linear(out_dim, out_dim)
        self.v_proj = nn.Linear(out_dim, out_dim)
        self.o_proj = nn.Linear(out_dim, out_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        kv = self.ln_kv(self.kv_proj(z))  # (n_img, N, out_dim)
        queries = self.ln_q(self.queries).expand(z.shape[0], -1, -1)  # (n_img, k, out_dim)
        q = rearrange(self.q_proj(queries), "b k (h d) -> b h k d", h=self.heads)  # (n_img, heads, k, d)
        k = rearrange(self.k_proj(kv), "b n (h d) -> b h n d", h=self.heads)  # (n_img, heads, N, d)
        v = rearrange(self.v_proj(kv), "b n (h d) -> b h n d", h=self.heads)  # (n_img, heads, N, d)
        y = F.scaled_dot_product_attention(q, k, v)  # (n_img, heads, k, d)
        return self.o_proj(rearrange(y, "b h k d -> b k (h d)"))  # (n_img, k, out_dim)

    def num_tokens(self, n_in: int) -> int:
        return self.queries.shape[0]


_PROJECTORS = {
    "linear": LinearProjector,
    "mlp2x_gelu": MLPProjector,
    "resampler": Resampler,
    "cls": ClsProjector,
    "mean": MeanPoolProjector,
}


def _check_kind(kind: str, kw: dict) -> None:
    if kind not in _PROJECTORS:
        raise KeyError(f"unknown projector kind {kind!r}; valid kinds: {', '.join(PROJECTOR_KINDS)}")
    if kw and kind != "resampler":
        raise ValueError(f"projector {kind!r} takes no options, got {sorted(kw)}")


def build_projector(kind: str, in_dim: int, out_dim: int, **kw) -> nn.Module:
    """The projector `kind` from the vision width `in_dim` to the LLM width `out_dim`.

    Only `resampler` takes options: `num_queries` (k, default 8) and `heads` (default 4).
    """
    _check_kind(kind, kw)
    return _PROJECTORS[kind](in_dim, out_dim, **kw)


def projector_param_count(kind: str, in_dim: int, out_dim: int, **kw) -> int:
    """Parameter count from the layer shapes alone (no module is built)."""
    _check_kind(kind, kw)
    linear = in_dim * out_dim + out_dim  # W and b
    if kind == "mlp2x_gelu":
        return linear + out_dim * out_dim + out_dim
    if kind == "resampler":
        queries = kw.get("num_queries", 8) * out_dim
        layer_norms = 2 * 2 * out_dim
        attention = 4 * (out_dim * out_dim + out_dim)  # q, k, v, o
        return queries + linear + layer_norms + attention
    return linear


def least_squares_linear(z: torch.Tensor, targets: torch.Tensor) -> LinearProjector:
    """The closed-form linear W (notebook 04's "least-squares view"): the LinearProjector whose W·z + b is nearest,
    in summed squared error, to `targets` over the rows of z (n, in_dim) and targets (n, out_dim). Solved by
    `torch.linalg.lstsq` on [z, 1] in float64; the module is float32, as every projector."""
    if z.ndim != 2 or targets.ndim != 2 or z.shape[0] != targets.shape[0]:
        raise ValueError(f"expected z (n, in_dim) and targets (n, out_dim) with the same n, got {tuple(z.shape)} "
                         f"and {tuple(targets.shape)}")
    if z.shape[0] <= z.shape[1]:
        raise ValueError(f"need more rows than in_dim + 1 unknowns per output, got {z.shape[0]} rows for "
                         f"in_dim {z.shape[1]}")
    design = torch.cat([z.detach().double(), torch.ones(z.shape[0], 1, dtype=torch.float64)], dim=1)  # (n, in+1)
    solution = torch.linalg.lstsq(design, targets.detach().double()).solution  # (in+1, out)
    projector = LinearProjector(z.shape[1], targets.shape[1])
    with torch.no_grad():
        projector.weight.copy_(solution[:-1].T)  # (out, in): nn.Linear's layout
        projector.bias.copy_(solution[-1])
    return projector
