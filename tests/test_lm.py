"""The decoder f_φ equals transformers' LlamaForCausalLM on the same weights; the KV cache and padding
change no result."""

import pytest
import torch
from torch import nn

from llava_mini.hf import lm_to_hf
from llava_mini.lm import LanguageModel, LMConfig, attention_mask_4d, causal_lm_loss


def hf_llama(cfg: LMConfig):
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_cfg = LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.dim,
        intermediate_size=cfg.hidden,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        rms_norm_eps=cfg.norm_eps,
        max_position_embeddings=cfg.max_seq_len,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    return LlamaForCausalLM(hf_cfg).eval()


def tiny(**kw) -> LMConfig:
    return LMConfig(**{"vocab_size": 50, "dim": 32, "layers": 2, "heads": 4, "hidden": 48, **kw})


def peaked(cfg: LMConfig, seed: int = 0) -> LanguageModel:
    """A random model with larger weights, so greedy decoding has clear winners (no near-ties)."""
    torch.manual_seed(seed)
    model = LanguageModel(cfg).eval()
    for name, p in model.named_parameters():
        if "norm" not in name:
            nn.init.normal_(p, std=0.3)
    return model


@pytest.mark.parametrize(
    "kw",
    [{}, {"kv_heads": 2}, {"kv_heads": 1, "rope_theta": 500.0, "norm_eps": 1e-4}],
    ids=["mha", "gqa", "mqa-theta-eps"],
)
def test_matches_transformers_llama(kw):
    cfg = tiny(**kw)
    ours = peaked(cfg)
    for name, p in ours.named_parameters():
        if "norm" in name:
            nn.init.normal_(p, mean=1.0, std=0.1)
    ref = hf_llama(cfg)
    ref.load_state_dict(lm_to_hf(ours.state_dict()))
    ids = torch.randint(0, cfg.vocab_size, (2, 11))
    with torch.no_grad():
        out = ours(ids)
        theirs = ref(input_ids=ids, output_hidden_states=True)
    # transformers' hidden_states: the embeddings, then each layer's output, the last one after the norm.
    assert len(out.hidden_states) == len(theirs.hidden_states) == cfg.layers + 1
    for mine, hf in zip(out.hidden_states[:-1], theirs.hidden_states[:-1]):
        torch.testing.assert_close(mine, hf, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.norm(out.hidden_states[-1]), theirs.hidden_states[-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.logits, theirs.logits, atol=1e-5, rtol=1e-5)


def test_left_padding_matches_transformers():
    cfg = tiny(kv_heads=2)
    ours = peaked(cfg)
    ref = hf_llama(cfg)
    ref.load_state_dict(lm_to_hf(ours.state_dict()))
    ids = torch.randint(0, cfg.vocab_size, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :4] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
        hf = ref(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    real = mask.bool()
    torch.testing.assert_close(mine[real], hf[real], atol=1e-5, rtol=1e-5)


def test_inputs_embeds_equal_input_ids():
    model = peaked(tiny())
    ids = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, model(inputs_embeds=model.embed_tokens(ids)).logits)
    with pytest.raises(ValueError, match="exactly one"):
        model()


def test_mask_4d_never_empties_a_row():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0]])
    m = attention_mask_4d(mask, past_len=0, t=4)[:, 0]  # (B, T, S)
    assert m.any(-1).all()
    assert m[0, 3].tolist() == [False, False, True, True]  # left pads invisible to real tokens
    assert m[1, 3].tolist() == [True, True, True, True]  # a right pad sees the tokens before it and itself
    assert attention_mask_4d(torch.ones(1, 5), past_len=3, t=2)[0, 0].tolist() == [
        [True, True, True, True, False],
        [True, True, True, True, True],
    ]


def test_cached_generation_equals_uncached():
    cfg = tiny(kv_heads=2)
    model = peaked(cfg)
    torch.manual_seed(1)
    for length in (1, 4, 9):
        prompt = torch.randint(0, cfg.vocab_size, (1, length))
        fast = model.generate(prompt, max_new_tokens=12, use_cache=True)
        slow = model.generate(prompt, max_new_tokens=12, use_cache=False)
        assert fast.shape == (1, 12)
        assert torch.equal(fast, slow)
        # ... and equal to the argmax of a plain forward over the generated sequence (teacher forcing).
        full = torch.cat([prompt, fast], dim=1)
        with torch.no_grad():
            assert torch.equal(model(full).logits[0, length - 1 : -1].argmax(-1), fast[0])


def test_second_turn_on_cache_matches_recomputation():
    cfg = tiny(kv_heads=1)
    model = peaked(cfg)
    turn1 = torch.randint(0, cfg.vocab_size, (2, 6))
    turn2 = torch.randint(0, cfg.vocab_size, (2, 5))
    mask = torch.ones(2, 11, dtype=torch.long)
    mask[1, :2] = 0  # row 1 was left-padded in turn 1
    with torch.no_grad():
        first = model(turn1, attention_mask=mask[:, :6], use_cache=True)
        second = model(turn2, attention_mask=mask, past_kv=first.past_kv, use_cache=True)
        full = model(torch.cat([turn1, turn2], 1), attention_mask=mask)
    assert second.past_kv[0][0].shape == (2, 1, 11, cfg.head_dim)
    torch.testing.assert_close(second.logits, full.logits[:, 6:], atol=1e-5, rtol=1e-5)
    # generate() continues the cached conversation exactly as it continues the full prompt.
    with torch.no_grad():
        cont = model.generate(turn2, attention_mask=mask, past_kv=first.past_kv, max_new_tokens=6)
        ref = model.generate(torch.cat([turn1, turn2], 1), attention_mask=mask, max_new_tokens=6)
    assert torch.equal(cont, ref)


def test_left_padded_batch_generates_each_prompt_alone():
    cfg = tiny(kv_heads=2)
    model = peaked(cfg, seed=3)
    prompts = [torch.randint(0, cfg.vocab_size, (n,)) for n in (3, 8, 5)]
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :], mask[i, width - len(p) :] = p, 1
    batch = model.generate(ids, attention_mask=mask, max_new_tokens=10)
    for i, p in enumerate(prompts):
        assert torch.equal(batch[i], model.generate(p[None], max_new_tokens=10)[0])


def test_eos_stops_rows_and_pads_after():
    cfg = tiny()
    model = peaked(cfg)
    prompts = torch.randint(0, cfg.vocab_size, (4, 5))
    free = model.generate(prompts, max_new_tokens=8)
    eos = int(free[0, 2])  # row 0 emits this id at step 3: make it the end token
    out = model.generate(prompts, max_new_tokens=8, eos_token_id=eos, pad_token_id=-1)
    for row, ref in zip(out, free):
        hits = (ref == eos).nonzero()
        stop = int(hits[0]) + 1 if len(hits) else len(ref)
        assert torch.equal(row[:stop], ref[:stop])
        assert (row[stop:] == -1).all()
    if all((ref == eos).any() for ref in free):
        assert out.shape[1] < 8  # everyone finished early: the loop stopped


def test_sampling_is_seeded_and_top_k_restricts():
    model = peaked(tiny())
    prompt = torch.randint(0, 50, (2, 4))

    def sample(seed, **kw):
        gen = torch.Generator().manual_seed(seed)
        return model.generate(prompt, max_new_tokens=20, do_sample=True, generator=gen, **kw)

    assert torch.equal(sample(0), sample(0))
    assert not torch.equal(sample(0, temperature=5.0), sample(1, temperature=5.0))
    greedy = model.generate(prompt, max_new_tokens=20)
    assert torch.equal(sample(7, top_k=1), greedy)


def test_loss_normalisation():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[-100, 3, 4, -100, -100], [-100, -100, 1, 2, 3]])
    loss, n = causal_lm_loss(logits, labels)
    assert int(n) == 5
    per_token = nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), reduction="none"
    )
    torch.testing.assert_close(loss, per_token.sum() / 5)
    torch.testing.assert_close(causal_lm_loss(logits, labels, num_items_in_batch=20)[0], per_token.sum() / 20)
    empty, n0 = causal_lm_loss(logits, torch.full_like(labels, -100))
    assert int(n0) == 0 and float(empty) == 0.0


def test_config_validation_and_sizes():
    cfg = LMConfig(vocab_size=300)
    assert (cfg.kv_heads, cfg.hidden, cfg.head_dim) == (4, 352, 32)
    with pytest.raises(ValueError, match="kv_heads"):
        LMConfig(vocab_size=10, heads=4, kv_heads=3)
    model = LanguageModel(tiny(max_seq_len=8))
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask"):
        model(torch.zeros(1, 4, dtype=torch.long), attention_mask=torch.ones(1, 3))
