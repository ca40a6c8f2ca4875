"""Graders of notebook 03, the language model (`solutions/03_language_model.ipynb`).

- exercise 3.1 `causal_mask(t, past=0)`: bool (t, past + t), True where a query may attend to a key; the
  t new tokens sit at positions past..past+t-1 after `past` cached ones (`lm.attention_mask_4d`'s rule).
- exercise 3.2 `apply_rope(x, position_ids, theta)`: Llama's rotary embedding, dimension i paired with
  i + d/2 (`rotate_half`), compared with `lm.RotaryEmbedding`.
- exercise 3.3 `decoder_block(x, block, rope, position_ids)`: Llama's pre-norm block with RMSNorm and
  SwiGLU written by the learner and the block's own attention, compared with `lm.Block.forward`.
- exercise 3.4 `chat_segments(turns, system)`: the Vicuna-v1 layout as (text, supervised) segments,
  compared with `conversation`'s segments on the teacher's conversations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llava_mini import data
from llava_mini.conversation import _segments, render_chat
from llava_mini.grading import (call, expect, expect_close, expect_dtype, expect_equal, expect_same_gradient,
                                 expect_shape, expect_type, forbidden, grader, rng)
from llava_mini.lm import Block, LMConfig, RMSNorm, RotaryEmbedding, SwiGLU
from llava_mini.tokenizer import SYSTEM_PROMPT


def _matches(got: torch.Tensor, candidate: torch.Tensor) -> bool:
    return got.shape == candidate.shape and torch.allclose(got.detach().double(), candidate.double(), atol=1e-5)


def _first_known(got, mistakes: dict[str, torch.Tensor]) -> str | None:
    return next((hint for hint, out in mistakes.items() if _matches(got, out)), None)


# --- exercise 3.1 ----------------------------------------------------------------------------------

def _reference_mask(t: int, past: int) -> torch.Tensor:
    q = torch.arange(past, past + t)[:, None]  # (t, 1) absolute positions of the queries
    k = torch.arange(past + t)[None, :]  # (1, past + t)
    return k <= q  # (t, past + t)


def _mask_mistakes(t: int, past: int) -> dict[str, torch.Tensor]:
    q = torch.arange(past, past + t)[:, None]
    k = torch.arange(past + t)[None, :]
    return {
        "off by one on the diagonal: a token must see itself (key position <= query position)": k < q,
        "off by one on the diagonal: a token may not see the next token (key position <= query position)":
            k <= q + 1,
        "that is the mask inverted (True where attention is forbidden, the additive-mask habit): in PyTorch's "
        "SDPA a bool mask is True where a query MAY attend": k > q,
        "that is the upper triangle: a query sees the past, not the future": k >= q,
        "the new tokens come after the `past` cached ones: query i sits at position past + i and sees "
        "every cached key": torch.ones(t, past + t).tril().bool(),
    }


@grader("exercise 3.1", "causal_mask")
def check_causal_mask(causal_mask) -> None:
    """Exact comparison for several (t, past), then the mask used in SDPA against `is_causal=True`."""
    for t, past in [(4, 0), (7, 0), (3, 5), (1, 9), (6, 2), (1, 0)]:  # t > 1 first: at t = 1 mistakes look alike
        what = f"causal_mask({t}, past={past})"
        got = call(causal_mask, t, past=past, what=what)
        expect_type(got, torch.Tensor, what)
        expect(got.dtype == torch.bool, f"{what} should be a bool tensor (True = may attend, "
                                        f"PyTorch's SDPA convention), got dtype {got.dtype}")
        expect_shape(got, (t, past + t), what)
        want = _reference_mask(t, past)
        if not torch.equal(got, want):
            hint = _first_known(got.float(), {h: m.float() for h, m in _mask_mistakes(t, past).items()}) or \
                "query i (position past + i) sees keys 0 .. past + i"
            bad = tuple(int(i) for i in torch.nonzero(got != want)[0])
            raise AssertionError(f"{what} is wrong at (query, key) = {bad}; {hint}")
    g = rng(31)
    q, k, v = (torch.randn(2, 3, 6, 4, generator=g) for _ in range(3))
    expect_close(F.scaled_dot_product_attention(q, k, v, attn_mask=call(causal_mask, 6, what="causal_mask(6)")),
                 F.scaled_dot_product_attention(q, k, v, is_causal=True),
                 "SDPA with attn_mask=causal_mask(6)", "it should equal is_causal=True")


# --- exercise 3.2 ----------------------------------------------------------------------------------

def _reference_rope(x: torch.Tensor, position_ids: torch.Tensor, theta: float) -> torch.Tensor:
    d = x.shape[-1]
    cfg = LMConfig(vocab_size=8, dim=d, heads=1, rope_theta=theta, max_seq_len=int(position_ids.max()) + 1)
    return RotaryEmbedding(cfg)(x, position_ids)


def _rope_mistakes(x, position_ids, theta) -> dict[str, torch.Tensor]:
    d = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2).float() / d)  # (d/2,)
    ang = position_ids[..., None].float() * inv  # (B, T, d/2)
    cos, sin = ang.cos()[:, None], ang.sin()[:, None]  # (B, 1, T, d/2)
    even, odd = x[..., 0::2], x[..., 1::2]
    adjacent = torch.stack([even * cos - odd * sin, even * sin + odd * cos], -1).flatten(-2)
    x1, x2 = x.chunk(2, -1)
    cos2, sin2 = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
    flipped = x * cos2 + torch.cat([x2, -x1], -1) * sin2
    b, _, t, _ = x.shape
    inv_all = 1.0 / theta ** (torch.arange(d).float() / d)  # (d,) one frequency per dimension
    ang_all = (position_ids[..., None].float() * inv_all)[:, None]
    per_dim = x * ang_all.cos() + torch.cat([-x2, x1], -1) * ang_all.sin()
    return {
        "that pairs adjacent dimensions (2i, 2i+1), GPT-J's layout; Llama's (and Hugging Face's) rotate_half "
        "pairs dimension i with i + d/2": adjacent,
        "rotate_half is (-x2, x1), not (x2, -x1): that rotates by minus the angle": flipped,
        "the frequencies are theta^(-2i/d) for i < d/2, shared by dimensions i and i + d/2": per_dim,
        "rotate by each token's position_ids, not by its index in the sequence (padding shifts them)":
            _reference_rope(x, torch.arange(t).expand(b, t), theta),
        "use the theta argument (the RoPE base)": _reference_rope(x, position_ids, 10000.0),
    }


@grader("exercise 3.2", "apply_rope")
def check_apply_rope(apply_rope) -> None:
    """Against `lm.RotaryEmbedding` with left-padding-style position ids, two head sizes and two thetas."""
    g = rng(32)
    for b, heads, t, d, theta in [(2, 3, 5, 8, 10000.0), (1, 2, 7, 16, 500.0)]:
        x = torch.randn(b, heads, t, d, generator=g)
        position_ids = torch.stack([torch.arange(t) + 3 * i for i in range(b)])  # (B, T) row i starts at 3i
        what = f"apply_rope(<({b}, {heads}, {t}, {d})>, position_ids, theta={theta:g})"
        with forbidden((RotaryEmbedding, "forward"), reason="is the reference this exercise asks you to write"):
            got = call(apply_rope, x, position_ids, theta, what=what)
        expect_shape(got, (b, heads, t, d), what)
        expect_dtype(got, x.dtype, what)
        want = _reference_rope(x, position_ids, theta)
        hint = _first_known(got, _rope_mistakes(x, position_ids, theta)) or \
            "x·cos + rotate_half(x)·sin with angle position·theta^(-2i/d), each angle used for dims i and i + d/2"
        expect_close(got, want, what, hint, atol=1e-5)


# --- exercise 3.3 ----------------------------------------------------------------------------------

def _random_block(g: torch.Generator, dim: int = 16, heads: int = 4) -> tuple[Block, RotaryEmbedding]:
    cfg = LMConfig(vocab_size=8, dim=dim, heads=heads, hidden=24, max_seq_len=32)
    block = Block(cfg)
    with torch.no_grad():
        for name, param in block.named_parameters():
            if name.endswith("layernorm.weight"):
                param.copy_(1.0 + 0.5 * torch.randn(param.shape, generator=g))
            else:
                param.copy_(0.3 * torch.randn(param.shape, generator=g))
    return block.eval(), RotaryEmbedding(cfg)


def _block_mistakes(x, block, rope, pos) -> dict[str, torch.Tensor]:
    n1, n2, mlp = block.input_layernorm, block.post_attention_layernorm, block.mlp

    def attn(h):
        return block.self_attn(h, rope, pos, None, None)[0]

    def rms(h, norm, weighted=True):
        out = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.eps)
        return norm.weight * out if weighted else out

    def layer(h, norm):
        return norm.weight * F.layer_norm(h, h.shape[-1:], eps=norm.eps)

    def swiglu(h, act=F.silu):
        return mlp.down_proj(act(mlp.gate_proj(h)) * mlp.up_proj(h))

    def pre(norm, ffn=swiglu, norm2=None):
        h = x + attn(norm(x, n1))
        return h + ffn(norm(h, norm2 or n2))

    h_post = rms(x + attn(x), n1)
    b, t, _ = x.shape
    counted = torch.arange(t).expand(b, t)
    h_counted = x + block.self_attn(rms(x, n1), rope, counted, None, None)[0]
    return {
        "pass the position_ids you are given to the attention (they have gaps here, as after padding), not 0..T-1":
            h_counted + swiglu(rms(h_counted, n2)),
        "RMSNorm does not subtract the mean (that is LayerNorm): x / sqrt(mean(x²) + eps) · weight": pre(layer),
        "RMSNorm ends with its learned scale: multiply by norm.weight": pre(lambda h, n: rms(h, n, False)),
        "SwiGLU's gate uses SiLU (x·sigmoid(x)), not GELU": pre(rms, lambda h: swiglu(h, F.gelu)),
        "the gate is silu(gate_proj(x)), multiplied by up_proj(x); you swapped gate and up": pre(
            rms, lambda h: mlp.down_proj(F.silu(mlp.up_proj(h)) * mlp.gate_proj(h))),
        "Llama normalises before each sub-layer (pre-norm); the residual stream is never normalised":
            rms(h_post + swiglu(h_post), n2),
        "the MLP sub-layer has its own norm, post_attention_layernorm": pre(rms, norm2=n1),
        "each sub-layer adds to its input: x = x + attn(norm1(x)); x = x + mlp(norm2(x))":
            swiglu(rms(attn(rms(x, n1)), n2)),
    }


@grader("exercise 3.3", "decoder_block")
def check_decoder_block(decoder_block) -> None:
    """Against `lm.Block.forward` with random weights (norm scales included), shifted position ids."""
    g = rng(33)
    for b, t, dim, heads in [(2, 5, 16, 4), (1, 9, 24, 2)]:
        block, rope = _random_block(g, dim, heads)
        x = (torch.randn(b, t, dim, generator=g) + 1.0).requires_grad_()  # a non-zero mean: RMSNorm != LayerNorm
        # positions with gaps, different per row (as after left padding and packing): a block that ignores
        # position_ids, or passes arange(T) to the attention, gives other outputs (RoPE sees relative positions,
        # so a uniform shift would not tell them apart)
        pos = torch.cumsum(torch.randint(1, 4, (b, t), generator=g), dim=1)
        what = f"decoder_block(x, block, rope, position_ids) on a ({b}, {t}, {dim}) input"
        reference = ("is the reference this exercise asks you to write: use the norms' .weight and .eps and "
                     "mlp's projections")
        with forbidden((Block, "forward"), (RMSNorm, "forward"), (SwiGLU, "forward"), reason=reference):
            got = call(decoder_block, x, block, rope, pos, what=what)
        expect_shape(got, (b, t, dim), what)
        expect_dtype(got, x.dtype, what)
        want = block(x, rope, pos, None, None)[0]
        with torch.no_grad():
            hint = _first_known(got, _block_mistakes(x, block, rope, pos)) or \
                "h = x + attn(rmsnorm1(x)); out = h + down(silu(gate(rmsnorm2(h))) * up(rmsnorm2(h)))"
        expect_close(got, want, what, hint, atol=1e-4)
        expect_same_gradient(got, want, {"x": x, **dict(block.named_parameters())}, what, atol=1e-4)


# --- exercise 3.4 ----------------------------------------------------------------------------------

def _teacher_chats(seed: int, n: int) -> list[list[dict]]:
    """The teacher's conversations (LLaVA JSON turns) about `n` scenes from `seed` on."""
    return [data.scene_records(s)[0]["conversation"][0]["conversations"] for s in range(seed, seed + n)]


def _describe(segment) -> str:
    return f"({segment[0]!r}, {segment[1]})" if isinstance(segment, tuple) and len(segment) == 2 else repr(segment)


@grader("exercise 3.4", "chat_segments")
def check_chat_segments(chat_segments) -> None:
    """Segment by segment against `conversation`'s Vicuna-v1 layout, on teacher chats and three systems."""
    seed = int(torch.randint(1000, 100_000, (), generator=rng(34)))
    chats = _teacher_chats(seed, 3)
    chats.append([{"from": "human", "value": "How many shapes are there?"}, {"from": "gpt", "value": "two"}])
    systems = [SYSTEM_PROMPT, "You are a careful assistant who looks at shapes.", SYSTEM_PROMPT, ""]
    for turns, system in zip(chats, systems):
        what = f"chat_segments(<a chat of {len(turns) // 2} rounds>, system={system[:12] + '...' if system else ''!r})"
        got = call(chat_segments, turns, system, what=what)
        expect_type(got, list, what)
        got = [tuple(s) if isinstance(s, list) else s for s in got]  # [text, flag] pairs are fine too
        want = list(_segments(turns, system))
        text = "".join(s[0] for s in got if isinstance(s, tuple) and len(s) == 2 and isinstance(s[0], str))
        if text != render_chat(turns, system):
            full = render_chat(turns, system)
            at = next((i for i, (a, b) in enumerate(zip(text, full)) if a != b), min(len(text), len(full)))
            lo = max(0, at - 20)
            raise AssertionError(
                f"{what}: the joined text is not the Vicuna-v1 layout; first difference at character {at}: "
                f"expected ...{full[lo:at + 15]!r}..., got ...{text[lo:at + 15]!r}...; the separator after an "
                "answer is '</s>' with no space before the next 'USER: ' (LLaVA's sep2)")
        for i, (g_seg, w_seg) in enumerate(zip(got, want)):
            if g_seg != w_seg:
                if isinstance(g_seg, tuple) and g_seg[0] == w_seg[0]:
                    hint = ("the loss is on each answer and its '</s>' only (eq. 3); the system, the USER turns and "
                            "the ' ASSISTANT:' tag are context")
                else:
                    hint = ("split as system | ' USER: ' + question | ' ASSISTANT:' | ' ' + answer | '</s>' "
                            "(later turns 'USER: '): the space before an answer belongs to the answer, as the "
                            "tokenizer attaches a space to the word after it")
                raise AssertionError(f"{what}: segment {i} should be {_describe(w_seg)}, got {_describe(g_seg)}; "
                                     f"{hint}")
        expect_equal(len(got), len(want), f"the number of segments of {what}")
