"""The vision tower g equals transformers' CLIPVisionModel on the same weights, hidden state by hidden state."""

import pytest
import torch
from torch import nn

from llava_mini.hf import vision_to_hf
from llava_mini.vision import PatchEmbedding, VisionConfig, VisionTower


def hf_clip(cfg: VisionConfig):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    hf_cfg = CLIPVisionConfig(
        hidden_size=cfg.width,
        intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        num_channels=cfg.channels,
        hidden_act=cfg.act,
        layer_norm_eps=cfg.eps,
        attn_implementation="eager",
    )
    return CLIPVisionModel(hf_cfg).eval()


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_matches_transformers_clip(act):
    torch.manual_seed(0)
    cfg = VisionConfig(act=act, layers=3, intermediate=96)
    ours = VisionTower(cfg).eval()
    for name, p in ours.named_parameters():  # make LayerNorm weights and all biases non-trivial too
        nn.init.normal_(p, mean=1.0 if "norm" in name and name.endswith("weight") else 0.0, std=0.1)
    ref = hf_clip(cfg)
    missing, unexpected = ref.load_state_dict(vision_to_hf(ours.state_dict(), cfg), strict=False)
    assert not unexpected and all("position_ids" in k for k in missing)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        hidden, pooled = ours(x)
        out = ref(pixel_values=x, output_hidden_states=True)
    assert len(hidden) == len(out.hidden_states) == cfg.layers + 1
    for mine, theirs in zip(hidden, out.hidden_states):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hidden[-1], out.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, out.pooler_output, atol=1e-5, rtol=1e-5)


def test_patch_embedding_is_a_conv():
    torch.manual_seed(0)
    p, d = 8, 16
    conv = nn.Conv2d(3, d, kernel_size=p, stride=p, bias=False)
    emb = PatchEmbedding(VisionConfig(width=d, patch_size=p))
    emb.proj.weight.data.copy_(conv.weight.reshape(d, -1))
    x = torch.randn(2, 3, 32, 32)
    expected = conv(x).flatten(2).transpose(1, 2)  # (B, D, 4, 4) -> (B, 16, D), patches row by row
    torch.testing.assert_close(emb(x), expected)
    # Flattening each patch as (p1 p2 c) instead of the conv's (c p1 p2) gives the right shape, wrong values.
    wrong = conv.weight.permute(0, 2, 3, 1).reshape(d, -1)  # (D, p·p·3)
    emb.proj.weight.data.copy_(wrong)
    assert emb(x).shape == expected.shape
    assert not torch.allclose(emb(x), expected, atol=1e-3)


def test_features_select_and_layer():
    torch.manual_seed(0)
    x = torch.randn(3, 3, 32, 32)
    tower = VisionTower(VisionConfig()).eval()
    hidden, _ = tower(x)
    z = tower.features(x)
    assert tower.num_image_tokens == 16 and z.shape == (3, 16, 64)
    torch.testing.assert_close(z, hidden[-2][:, 1:])  # penultimate block, CLS dropped
    tower.config.select, tower.config.feature_layer = "cls_patch", -1
    assert tower.num_image_tokens == 17
    torch.testing.assert_close(tower.features(x), hidden[-1])


def test_bad_config_and_input():
    with pytest.raises(ValueError, match="select"):
        VisionConfig(select="cls")
    with pytest.raises(ValueError, match="act"):
        VisionConfig(act="relu")
    with pytest.raises(ValueError, match="feature_layer"):
        VisionConfig(feature_layer=-6)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        VisionTower(VisionConfig())(torch.zeros(1, 3, 64, 64))
