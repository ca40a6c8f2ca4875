"""The language model f_φ: a Llama decoder (LLaVA paper §4.1 uses Vicuna, a fine-tuned LLaMA).

The architecture maps 1:1 onto transformers' `LlamaForCausalLM`: token embeddings -> `layers` pre-norm
blocks [RMSNorm -> causal attention with rotary positions (RoPE) -> +residual, RMSNorm -> SwiGLU MLP
-> +residual] -> RMSNorm -> untied `lm_head`. Linear layers have no bias; keys and values may use fewer
heads than queries (grouped-query attention, `kv_heads`).

The model reads either token ids or ready-made embeddings (`inputs_embeds`): LLaVA feeds it the
sequence [H_v, embed(X_q)], where the visual tokens H_v = W·Z_v are not words at all (paper eq. 1-2).

Padding is described by `attention_mask` (B, past + T), 1 for real tokens, on either side; positions are
then cumsum(mask) - 1, so a left-padded prompt gets the same positions as the prompt alone. A KV cache is
a list with one (k, v) pair per layer, each (B, kv_heads, past, head_dim), extended at every call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

IGNORE_INDEX = -100  # labels that take no loss: PyTorch cross-entropy's ignore value, LLaVA's IGNORE_INDEX
KVCache = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class LMConfig:
    """Shape of the decoder; comments give the `LlamaConfig` field each maps onto."""

    vocab_size: int  # vocab_size
    dim: int = 128  # hidden_size
    layers: int = 4  # num_hidden_layers
    heads: int = 4  # num_attention_heads
    kv_heads: int | None = None  # num_key_value_heads; None -> heads (plain multi-head attention)
    hidden: int | None = None  # intermediate_size; None -> 8/3·dim rounded up to a multiple of 32
    rope_theta: float = 10000.0  # rope_parameters["rope_theta"]
    norm_eps: float = 1e-6  # rms_norm_eps
    max_seq_len: int = 512  # max_position_embeddings: length of the cached RoPE table

    def __post_init__(self):
        if self.kv_heads is None:
            self.kv_heads = self.heads
        if self.hidden is None:  # SwiGLU with 8/3·dim has the parameters of a 4·dim two-matrix MLP
            self.hidden = 32 * math.ceil(8 * self.dim / 3 / 32)
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.heads} heads of even size")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} must be a multiple of kv_heads {self.kv_heads}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


@dataclass
class LMOutput:
    logits: torch.Tensor  # (B, T, vocab)
    hidden_states: tuple[torch.Tensor, ...]  # layers + 1 tensors (B, T, dim): embeddings, then each block
    past_kv: KVCache | None  # the cache extended by this call's keys and values (when use_cache)
    loss: torch.Tensor | None = None  # with labels: `causal_lm_loss`, as LlamaForCausalLM returns it
    n_supervised: torch.Tensor | None = None  # with labels: supervised tokens of this batch (after the shift)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · weight, computed in float32 as Llama does."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dim (Llama's RoPE pairs dim i with i + d/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class RotaryEmbedding(nn.Module):
    """cos/sin of position·θ^(-2i/d) for every position below max_seq_len, looked up by position id."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float) / cfg.head_dim))
        freqs = torch.arange(cfg.max_seq_len).float()[:, None] * inv_freq  # (max_seq_len, head_dim/2)
        angles = torch.cat([freqs, freqs], dim=-1)  # (max_seq_len, head_dim)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """x (B, heads, T, head_dim) rotated by position_ids (B, T)."""
        cos = self.cos[position_ids][:, None].to(x.dtype)  # (B, 1, T, head_dim)
        sin = self.sin[position_ids][:, None].to(x.dtype)
        return x * cos + rotate_half(x) * sin


class Attention(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.heads, self.kv_heads = cfg.heads, cfg.kv_heads
        self.q_proj = nn.Linear(cfg.dim, cfg.heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.dim, cfg.kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.dim, cfg.kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x, rope, position_ids, mask, past):
        """x (B, T, dim); mask None (plain causal) or bool (B, 1, T, past + T); past None or (k, v)."""
        q = rearrange(self.q_proj(x), "b t (h d) -> b h t d", h=self.heads)  # (B, heads, T, hd)
        k = rearrange(self.k_proj(x), "b t (h d) -> b h t d", h=self.kv_heads)  # (B, kv_heads, T, hd)
        v = rearrange(self.v_proj(x), "b t (h d) -> b h t d", h=self.kv_heads)  # (B, kv_heads, T, hd)
        q, k = rope(q, position_ids), rope(k, position_ids)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)  # (B, kv_heads, past + T, hd)
            v = torch.cat([past[1], v], dim=2)
        group = self.heads // self.kv_heads  # query heads sharing one key/value head
        # repeat_interleave copies even for group 1 (plain multi-head): skip it there, as Llama's repeat_kv does
        k_all = k.repeat_interleave(group, dim=1) if group > 1 else k  # (B, heads, past + T, hd)
        v_all = v.repeat_interleave(group, dim=1) if group > 1 else v
        y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask, is_causal=mask is None)  # (B, heads, T, hd)
        return self.o_proj(rearrange(y, "b h t d -> b t (h d)")), (k, v)


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.hidden, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.hidden, bias=False)
        self.down_proj = nn.Linear(cfg.hidden, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Llama's `LlamaDecoderLayer`."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x, rope, position_ids, mask, past):
        a, kv = self.self_attn(self.input_layernorm(x), rope, position_ids, mask, past)
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x)), kv


def attention_mask_4d(attention_mask: torch.Tensor, past_len: int, t: int) -> torch.Tensor:
    """Key padding mask (B, past + T) -> boolean (B, 1, T, past + T): causal AND key is a real token.

    A query may always see itself, so a padding query's row is never all False (softmax of nothing is NaN,
    and a NaN value would leak into real rows through 0·NaN in the attention-weighted sum).
    """
    q_pos = torch.arange(past_len, past_len + t, device=attention_mask.device)[:, None]  # (T, 1)
    k_pos = torch.arange(past_len + t, device=attention_mask.device)[None, :]  # (1, past + T)
    visible = attention_mask.bool()[:, None, :] | (k_pos == q_pos)  # (B, T, past + T)
    return (visible & (k_pos <= q_pos))[:, None]  # (B, 1, T, past + T)


class LanguageModel(nn.Module):
    """The LLM f_φ: token ids or embeddings -> next-token logits, with an optional KV cache."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.rope = RotaryEmbedding(cfg)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)  # Llama's initializer_range

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_kv: KVCache | None = None,
        use_cache: bool = False,
        labels: torch.Tensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
    ) -> LMOutput:
        """input_ids (B, T) or inputs_embeds (B, T, dim); attention_mask (B, past + T) covers the cache too.
        With labels (B, T), -100 where no loss is taken, the output holds the next-token loss (`causal_lm_loss`)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, dim)
        b, t = x.shape[:2]
        past_len = past_kv[0][0].shape[2] if past_kv else 0
        if past_len + t > self.config.max_seq_len:
            raise ValueError(f"sequence of {past_len + t} tokens exceeds max_seq_len {self.config.max_seq_len}")
        if attention_mask is not None and attention_mask.shape != (b, past_len + t):
            raise ValueError(
                f"attention_mask must cover cache + input, shape ({b}, {past_len + t}), "
                f"got {tuple(attention_mask.shape)}"
            )
        if position_ids is None:
            if attention_mask is None:
                position_ids = torch.arange(past_len, past_len + t, device=x.device).expand(b, t)  # (B, T)
            else:  # count real tokens only, so padding on the left does not shift positions
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past_len:]  # (B, T)
        if attention_mask is None and past_len == 0:
            mask = None  # plain causal: SDPA's is_causal (only valid while queries and keys align)
        else:
            if attention_mask is None:
                attention_mask = torch.ones(b, past_len + t, dtype=torch.bool, device=x.device)
            mask = attention_mask_4d(attention_mask, past_len, t)
        hidden_states, new_kv = [x], []
        for i, block in enumerate(self.layers):
            x, kv = block(x, self.rope, position_ids, mask, past_kv[i] if past_kv else None)
            hidden_states.append(x)
            new_kv.append(kv)
        logits = self.lm_head(self.norm(x))  # (B, T, vocab)
        out = LMOutput(logits, tuple(hidden_states), new_kv if use_cache else None)
        if labels is not None:
            out.loss, out.n_supervised = causal_lm_loss(logits, labels, num_items_in_batch)
        return out

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        past_kv: KVCache | None = None,
        max_new_tokens: int = 32,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Greedy or sampled continuation; returns the new ids (B, ≤ max_new_tokens).

        Prompts in a batch must be left-padded (attention_mask 0 on the left). A row that has produced
        `eos_token_id` is finished: later columns hold `pad_token_id` (default: the eos id). The loop stops
        once every row is finished. With `past_kv` the prompt continues a cached conversation (its
        attention_mask then covers cache + prompt). Without the cache (`use_cache=False`) every step
        re-reads the whole sequence: slower, same tokens.
        """
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, dim)
        b, device = x.shape[0], x.device
        past_len = past_kv[0][0].shape[2] if past_kv else 0
        if attention_mask is None:
            attention_mask = torch.ones(b, past_len + x.shape[1], dtype=torch.long, device=device)
        pad = eos_token_id if pad_token_id is None else pad_token_id
        finished = torch.zeros(b, dtype=torch.bool, device=device)
        cache, new_tokens = past_kv, []
        for _ in range(max_new_tokens):
            out = self(inputs_embeds=x, attention_mask=attention_mask, past_kv=cache, use_cache=use_cache)
            logits = out.logits[:, -1].float()  # (B, vocab)
            if do_sample:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]  # (B, 1)
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                token = torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]  # (B,)
            else:
                token = logits.argmax(-1)  # (B,)
            if eos_token_id is None:
                new_tokens.append(token)
            else:
                new_tokens.append(token.masked_fill(finished, pad))  # (B,): pad after a row's end
                finished |= token == eos_token_id
                if finished.all():
                    break
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(b, 1)], dim=1)  # (B, S + 1)
            step = self.embed_tokens(token)[:, None]  # (B, 1, dim); finished rows go on, unread
            if use_cache:
                x, cache = step, out.past_kv
            else:
                x = torch.cat([x, step], dim=1)  # (B, T + 1, dim)
        return torch.stack(new_tokens, dim=1)  # (B, new)


def causal_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy: position t predicts labels[t + 1]; labels -100 take no loss.

    Returns (loss, n_supervised). The summed token losses are divided by `num_items_in_batch`, the
    number of supervised tokens in the whole optimizer step (all gradient-accumulation micro-batches),
    when given; otherwise by this batch's own count. Dividing every micro-batch by the same total makes
    the accumulated gradient equal to the gradient of one big batch, whatever the micro-batch lengths.
    """
    shift_logits = logits[:, :-1].flatten(0, 1).float()  # (B·(T-1), vocab)
    shift_labels = labels[:, 1:].flatten()  # (B·(T-1),)
    total = F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    n_supervised = (shift_labels != IGNORE_INDEX).sum()
    denominator = n_supervised if num_items_in_batch is None else num_items_in_batch
    if isinstance(denominator, torch.Tensor):
        return total / denominator.clamp(min=1), n_supervised
    return total / max(denominator, 1), n_supervised
