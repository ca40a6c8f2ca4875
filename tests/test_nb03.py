"""Notebook 03's graders bite: the reference passes with one line, a stub is "not done yet", and each
plausible wrong implementation is rejected with a message naming the exercise (tests/test_grading.py's
pattern)."""

import torch
import torch.nn.functional as F

from grader_contract import grader_contract

from llava_mini.grading import nb03, rejects
from llava_mini.lm import LMConfig, RotaryEmbedding

# --- exercise 3.1: the causal mask -----------------------------------------------------------------


def causal_mask(t, past=0):
    query = torch.arange(past, past + t)[:, None]  # (t, 1)
    key = torch.arange(past + t)[None, :]  # (1, past + t)
    return key <= query


def mask_excludes_diagonal(t, past=0):  # off by one: a token cannot see itself
    return torch.arange(past + t)[None, :] < torch.arange(past, past + t)[:, None]


def mask_sees_next_token(t, past=0):  # off by one the other way: triu(diagonal=1) leaked into the mask
    return torch.ones(t, past + t).tril(diagonal=past + 1).bool()


def mask_ignores_past(t, past=0):  # the KV-cache bug: new queries aligned with the first cached keys
    return torch.ones(t, past + t).tril().bool()


def mask_upper_triangle(t, past=0):
    return torch.ones(t, past + t).triu(diagonal=past).bool()


def mask_inverted(t, past=0):  # True where attention is forbidden
    return ~causal_mask(t, past)


def mask_additive_float(t, past=0):  # the -inf convention, not SDPA's bool one
    return torch.zeros(t, past + t).masked_fill(~causal_mask(t, past), float("-inf"))


# --- exercise 3.2: RoPE ----------------------------------------------------------------------------


def _angles(position_ids, d, theta):
    inv_freq = 1.0 / theta ** (torch.arange(0, d, 2).float() / d)  # (d/2,)
    return (position_ids[..., None].float() * inv_freq)[:, None]  # (B, 1, T, d/2)


def apply_rope(x, position_ids, theta=10000.0):
    angles = _angles(position_ids, x.shape[-1], theta)
    angles = torch.cat([angles, angles], dim=-1)  # (B, 1, T, d)
    x1, x2 = x.chunk(2, dim=-1)
    return x * angles.cos() + torch.cat([-x2, x1], dim=-1) * angles.sin()


def rope_adjacent_pairs(x, position_ids, theta=10000.0):  # GPT-J / the RoFormer paper's interleaved layout
    angles = _angles(position_ids, x.shape[-1], theta)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * angles.cos() - odd * angles.sin(), even * angles.sin() + odd * angles.cos()],
                       dim=-1).flatten(-2)


def rope_sign_flipped(x, position_ids, theta=10000.0):
    angles = _angles(position_ids, x.shape[-1], theta)
    angles = torch.cat([angles, angles], dim=-1)
    x1, x2 = x.chunk(2, dim=-1)
    return x * angles.cos() + torch.cat([x2, -x1], dim=-1) * angles.sin()


def rope_sequence_index(x, position_ids, theta=10000.0):
    b, _, t, _ = x.shape
    return apply_rope(x, torch.arange(t).expand(b, t), theta)


def rope_frequency_per_dimension(x, position_ids, theta=10000.0):
    d = x.shape[-1]
    angles = (position_ids[..., None].float() / theta ** (torch.arange(d).float() / d))[:, None]
    x1, x2 = x.chunk(2, dim=-1)
    return x * angles.cos() + torch.cat([-x2, x1], dim=-1) * angles.sin()


def rope_default_theta(x, position_ids, theta=10000.0):
    return apply_rope(x, position_ids)


# --- exercise 3.3: the decoder block ---------------------------------------------------------------


def _rms(x, norm):
    return norm.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps))


def _swiglu(x, mlp):
    return mlp.down_proj(F.silu(mlp.gate_proj(x)) * mlp.up_proj(x))


def decoder_block(x, block, rope, position_ids):
    h = x + block.self_attn(_rms(x, block.input_layernorm), rope, position_ids, None, None)[0]
    return h + _swiglu(_rms(h, block.post_attention_layernorm), block.mlp)


def block_layer_norm(x, block, rope, position_ids):
    def norm(h, n):
        return n.weight * F.layer_norm(h, h.shape[-1:], eps=n.eps)

    h = x + block.self_attn(norm(x, block.input_layernorm), rope, position_ids, None, None)[0]
    return h + _swiglu(norm(h, block.post_attention_layernorm), block.mlp)


def block_gelu(x, block, rope, position_ids):
    h = x + block.self_attn(_rms(x, block.input_layernorm), rope, position_ids, None, None)[0]
    m = block.mlp
    z = _rms(h, block.post_attention_layernorm)
    return h + m.down_proj(F.gelu(m.gate_proj(z)) * m.up_proj(z))


def block_gate_up_swapped(x, block, rope, position_ids):
    h = x + block.self_attn(_rms(x, block.input_layernorm), rope, position_ids, None, None)[0]
    m = block.mlp
    z = _rms(h, block.post_attention_layernorm)
    return h + m.down_proj(F.silu(m.up_proj(z)) * m.gate_proj(z))


def block_post_norm(x, block, rope, position_ids):
    h = _rms(x + block.self_attn(x, rope, position_ids, None, None)[0], block.input_layernorm)
    return _rms(h + _swiglu(h, block.mlp), block.post_attention_layernorm)


def block_no_norm_weight(x, block, rope, position_ids):
    def rms(h):
        return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)

    h = x + block.self_attn(rms(x), rope, position_ids, None, None)[0]
    return h + _swiglu(rms(h), block.mlp)


def block_no_residual(x, block, rope, position_ids):
    h = block.self_attn(_rms(x, block.input_layernorm), rope, position_ids, None, None)[0]
    return _swiglu(_rms(h, block.post_attention_layernorm), block.mlp)


def block_swiglu_without_up(x, block, rope, position_ids):
    h = x + block.self_attn(_rms(x, block.input_layernorm), rope, position_ids, None, None)[0]
    z = _rms(h, block.post_attention_layernorm)
    return h + block.mlp.down_proj(F.silu(block.mlp.gate_proj(z)))


# --- exercise 3.4: the chat template ---------------------------------------------------------------


def chat_segments(turns, system):
    segments = [(system, False)] if system else []
    for i, turn in enumerate(turns):
        if turn["from"] == "human":
            segments.append((("USER: " if i or not system else " USER: ") + turn["value"], False))
            segments.append((" ASSISTANT:", False))
        else:
            segments.append((" " + turn["value"], True))
            segments.append(("</s>", True))
    return segments


def segments_space_after_stop(turns, system):  # "</s> USER:": sep2 followed by sep
    out = chat_segments(turns, system)
    return [(t.replace("USER: ", " USER: ") if t.startswith("USER: ") else t, s) for t, s in out]


def segments_vicuna_v0(turns, system):  # the paper's Table 2 format: '###' separators, Human/Assistant
    out = [(system + "###", False)]
    for turn in turns:
        if turn["from"] == "human":
            out += [("Human: " + turn["value"] + "###", False), ("Assistant:", False)]
        else:
            out += [(" " + turn["value"], True), ("###", True)]
    return out


def segments_newline_separator(turns, system):
    return [("\n" if t == "</s>" else t, s) for t, s in chat_segments(turns, system)]


def segments_tag_supervised(turns, system):
    return [(t, s or t == " ASSISTANT:") for t, s in chat_segments(turns, system)]


def segments_stop_unsupervised(turns, system):
    return [(t, s and t != "</s>") for t, s in chat_segments(turns, system)]


def segments_space_in_tag(turns, system):  # same text, but the answer's space glued to the tag
    return [(" ASSISTANT: " if t == " ASSISTANT:" else (t[1:] if s and t != "</s>" else t), s)
            for t, s in chat_segments(turns, system)]


def segments_ignore_empty_system(turns, system):
    out = chat_segments(turns, system or "x")
    return out[1:] if not system else out


def rope_in_place(x, position_ids, theta=10000.0):  # right values, but the caller's x is overwritten
    out = apply_rope(x, position_ids, theta)
    x.copy_(out)
    return x


def rope_float64(x, position_ids, theta=10000.0):  # angles in float64 (NumPy-style): the output's dtype changes
    return apply_rope(x.double(), position_ids, theta)


def rope_calls_reference(x, position_ids, theta=10000.0):
    cfg = LMConfig(vocab_size=8, dim=x.shape[-1], heads=1, rope_theta=theta, max_seq_len=int(position_ids.max()) + 1)
    return RotaryEmbedding(cfg)(x, position_ids)


def block_ignores_position_ids(x, block, rope, position_ids):  # positions 0..T-1 whatever the caller gave
    return decoder_block(x, block, rope, torch.arange(x.shape[1]).expand(x.shape[0], -1))


def block_calls_reference(x, block, rope, position_ids):
    return block(x, rope, position_ids, None, None)[0]


def block_uses_the_norm_modules(x, block, rope, position_ids):  # the exercise asks for RMSNorm written by hand
    h = x + block.self_attn(block.input_layernorm(x), rope, position_ids, None, None)[0]
    return h + _swiglu(block.post_attention_layernorm(h), block.mlp)


def block_without_grad(x, block, rope, position_ids):  # right values, but nothing could train through it
    with torch.no_grad():
        return decoder_block(x, block, rope, position_ids)


def block_detached_mlp(x, block, rope, position_ids):  # the MLP's output cut from the graph
    h = x + block.self_attn(_rms(x, block.input_layernorm), rope, position_ids, None, None)[0]
    return h + _swiglu(_rms(h, block.post_attention_layernorm), block.mlp).detach()


def segments_strip_image_in_place(turns, system):  # strips "<image>\n" from the caller's first question
    turns[0]["value"] = turns[0]["value"].replace("<image>\n", "")
    return chat_segments(turns, system)


RIGHT = {
    "exercise 3.1": causal_mask,
    "exercise 3.2": apply_rope,
    "exercise 3.3": decoder_block,
    "exercise 3.4": chat_segments,
}
WRONG = {
    "exercise 3.1": [mask_excludes_diagonal, mask_sees_next_token, mask_ignores_past, mask_upper_triangle,
                     mask_additive_float, mask_inverted],
    "exercise 3.2": [rope_adjacent_pairs, rope_sign_flipped, rope_sequence_index, rope_frequency_per_dimension,
                     rope_default_theta, rope_in_place, rope_float64, rope_calls_reference],
    "exercise 3.3": [block_layer_norm, block_gelu, block_gate_up_swapped, block_post_norm, block_no_norm_weight,
                     block_no_residual, block_swiglu_without_up, block_ignores_position_ids, block_calls_reference,
                     block_uses_the_norm_modules, block_without_grad, block_detached_mlp],
    "exercise 3.4": [segments_space_after_stop, segments_vicuna_v0, segments_newline_separator,
                     segments_tag_supervised, segments_stop_unsupervised, segments_space_in_tag,
                     segments_ignore_empty_system, segments_strip_image_in_place],
}
(test_every_grader_has_right_and_wrong_implementations, test_right_answer_prints_one_fixed_line,
 test_wrong_implementation_is_rejected, test_stub_is_not_done_yet) = grader_contract("llava_mini.grading.nb03",
                                                                                     RIGHT, WRONG)


def test_hints_name_the_mistake():
    assert "a token must see itself" in rejects(nb03.check_causal_mask, mask_excludes_diagonal)
    assert "may not see the next token" in rejects(nb03.check_causal_mask, mask_sees_next_token)
    assert "after the `past` cached ones" in rejects(nb03.check_causal_mask, mask_ignores_past)
    assert "upper triangle" in rejects(nb03.check_causal_mask, mask_upper_triangle)
    assert "should be a bool tensor" in rejects(nb03.check_causal_mask, mask_additive_float)
    assert "pairs dimension i with i + d/2" in rejects(nb03.check_apply_rope, rope_adjacent_pairs)
    assert "minus the angle" in rejects(nb03.check_apply_rope, rope_sign_flipped)
    assert "position_ids, not by its index" in rejects(nb03.check_apply_rope, rope_sequence_index)
    assert "theta^(-2i/d)" in rejects(nb03.check_apply_rope, rope_frequency_per_dimension)
    assert "use the theta argument" in rejects(nb03.check_apply_rope, rope_default_theta)
    assert "does not subtract the mean" in rejects(nb03.check_decoder_block, block_layer_norm)
    assert "SiLU" in rejects(nb03.check_decoder_block, block_gelu)
    assert "swapped gate and up" in rejects(nb03.check_decoder_block, block_gate_up_swapped)
    assert "pre-norm" in rejects(nb03.check_decoder_block, block_post_norm)
    assert "norm.weight" in rejects(nb03.check_decoder_block, block_no_norm_weight)
    assert "adds to its input" in rejects(nb03.check_decoder_block, block_no_residual)
    assert "'</s>' with no space" in rejects(nb03.check_chat_segments, segments_space_after_stop)
    assert "first difference" in rejects(nb03.check_chat_segments, segments_vicuna_v0)
    assert "first difference" in rejects(nb03.check_chat_segments, segments_newline_separator)
    assert "the loss is on each answer" in rejects(nb03.check_chat_segments, segments_tag_supervised)
    assert "the loss is on each answer" in rejects(nb03.check_chat_segments, segments_stop_unsupervised)
    assert "the space before an answer belongs to the answer" in rejects(nb03.check_chat_segments,
                                                                         segments_space_in_tag)


def test_hints_name_the_new_classes_of_mistake():
    assert "the mask inverted" in rejects(nb03.check_causal_mask, mask_inverted)
    assert "changed its argument 1 in place" in rejects(nb03.check_apply_rope, rope_in_place)
    assert "should have dtype torch.float32, got torch.float64" in rejects(nb03.check_apply_rope, rope_float64)
    assert "calls RotaryEmbedding.forward, which is the reference" in rejects(nb03.check_apply_rope,
                                                                               rope_calls_reference)
    assert "pass the position_ids you are given" in rejects(nb03.check_decoder_block, block_ignores_position_ids)
    assert "calls Block.forward" in rejects(nb03.check_decoder_block, block_calls_reference)
    assert "calls RMSNorm.forward" in rejects(nb03.check_decoder_block, block_uses_the_norm_modules)
    assert "carries no gradient" in rejects(nb03.check_decoder_block, block_without_grad)
    assert "the gradient of decoder_block" in rejects(nb03.check_decoder_block, block_detached_mlp)
    assert "changed its argument 1 in place" in rejects(nb03.check_chat_segments, segments_strip_image_in_place)


def test_the_segments_join_to_the_tokenizer_chat_template():
    from llava_mini.tokenizer import SYSTEM_PROMPT, load_tokenizer

    turns = [{"from": "human", "value": "What colour is the circle?"}, {"from": "gpt", "value": "red"},
             {"from": "human", "value": "How many shapes are there?"}, {"from": "gpt", "value": "two"}]
    messages = [{"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]} for t in turns]
    rendered = load_tokenizer().apply_chat_template(messages, tokenize=False)
    assert rendered == "<s>" + "".join(text for text, _ in chat_segments(turns, SYSTEM_PROMPT))
