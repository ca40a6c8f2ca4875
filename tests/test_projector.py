"""Projectors W: output shapes, token counts, parameter counts (toy and LLaVA's real sizes)."""

import pytest
import torch

from llava_mini.projector import PROJECTOR_KINDS, build_projector, projector_param_count

OPTIONS = {"resampler": {"num_queries": 5, "heads": 2}}


@pytest.mark.parametrize("kind", PROJECTOR_KINDS)
def test_shapes_and_token_counts(kind):
    torch.manual_seed(0)
    proj = build_projector(kind, 24, 32, **OPTIONS.get(kind, {}))
    z = torch.randn(3, 17, 24)  # (n_img, N, in_dim)
    h = proj(z)
    expected_k = {"linear": 17, "mlp2x_gelu": 17, "resampler": 5, "cls": 1, "mean": 1}[kind]
    assert proj.num_tokens(17) == expected_k
    assert h.shape == (3, expected_k, 32)
    h.sum().backward()  # every parameter takes part
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in proj.parameters())


@pytest.mark.parametrize("kind", PROJECTOR_KINDS)
def test_param_count_formula_matches_modules(kind):
    for kw in ({}, OPTIONS.get(kind, {})):
        proj = build_projector(kind, 24, 32, **kw)
        assert projector_param_count(kind, 24, 32, **kw) == sum(p.numel() for p in proj.parameters())


def test_llava_sizes():
    """LLaVA-7B: CLIP ViT-L width 1024 -> Vicuna-7B width 4096 (13B: 5120); built on the meta device."""
    expected = {
        ("linear", 4096): 4_198_400,
        ("mlp2x_gelu", 4096): 20_979_712,
        ("linear", 5120): 5_248_000,
        ("mlp2x_gelu", 5120): 31_467_520,
    }
    for (kind, out_dim), count in expected.items():
        assert projector_param_count(kind, 1024, out_dim) == count
        with torch.device("meta"):
            assert sum(p.numel() for p in build_projector(kind, 1024, out_dim).parameters()) == count


def test_linear_is_one_matrix_per_token():
    torch.manual_seed(0)
    proj = build_projector("linear", 8, 6)
    z = torch.randn(2, 4, 8)
    torch.testing.assert_close(proj(z), z @ proj.weight.T + proj.bias)
    mlp = build_projector("mlp2x_gelu", 8, 6)
    assert [k for k in mlp.state_dict()] == ["0.weight", "0.bias", "2.weight", "2.bias"]  # LLaVA's keys


def test_pooling_baselines():
    torch.manual_seed(0)
    z = torch.randn(2, 5, 8)
    cls = build_projector("cls", 8, 6)
    torch.testing.assert_close(cls(z)[:, 0], z[:, 0] @ cls.weight.T + cls.bias)
    mean = build_projector("mean", 8, 6)
    torch.testing.assert_close(mean(z)[:, 0], z.mean(1) @ mean.weight.T + mean.bias)


def test_invalid_kind_and_options():
    with pytest.raises(KeyError, match="linear, mlp2x_gelu, resampler, cls, mean"):
        build_projector("mlp3x_relu", 8, 8)
    with pytest.raises(KeyError, match="valid kinds"):
        projector_param_count("identity", 8, 8)
    with pytest.raises(ValueError, match="no options"):
        build_projector("linear", 8, 8, num_queries=4)
    with pytest.raises(ValueError, match="divisible"):
        build_projector("resampler", 8, 10, heads=4)


def test_least_squares_linear_recovers_an_exact_affine_map_and_rejects_bad_shapes():
    from llava_mini.projector import least_squares_linear

    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, 6, generator=g) + 2.0  # (n, in_dim), a non-zero mean: the bias is not the targets' mean
    weight, bias = torch.randn(4, 6, generator=g), torch.randn(4, generator=g)
    proj = least_squares_linear(z, z @ weight.T + bias)
    assert isinstance(proj, torch.nn.Linear) and proj.num_tokens(9) == 9
    assert torch.allclose(proj.weight, weight, atol=1e-5) and torch.allclose(proj.bias, bias, atol=1e-5)
    with pytest.raises(ValueError, match="same n"):
        least_squares_linear(z, torch.randn(49, 4))
    with pytest.raises(ValueError, match="more rows"):
        least_squares_linear(z[:5], torch.randn(5, 4))
