"""Graders of notebook 04, the projector (`solutions/04_projector.ipynb`).

- exercise 4.1 `visual_tokens(hidden_states, weight, bias, layer=-2)`: LLaVA v1's H_v = W·Z_v + b, where Z_v is
  `hidden_states[layer]` with the CLS token (index 0) dropped and W is stored as nn.Linear stores it, (d_llm, d_v).
- exercise 4.2 `mlp2x_gelu(z_v, w1, b1, w2, b2)`: LLaVA-1.5's projector, Linear -> GELU (erf) -> Linear.
- exercise 4.3 `projector_params(kind, d_v, d_llm)`: the parameter count of "linear" and "mlp2x_gelu" from the
  layer shapes, LLaVA's real sizes included (compared with `projector.projector_param_count`).
- exercise 4.4 `least_squares_projector(z, targets)`: the closed-form (weight, bias) minimising the squared error of
  z·Wᵀ + b against the targets (compared with `projector.least_squares_linear`).
- exercise 4.5 `splice(embeds, input_ids, image_features, image_token_id)`: each image's N feature rows written, in
  order, over its run of placeholders, with a ValueError naming both counts when they differ.
- study questions 2, 8 and 14: the letters of the true statements (keys `nb04.study_q2`, `nb04.study_q8`,
  `nb04.study_q14`).

As in notebooks 02 and 03: the learner's code runs through `grading.call` (an argument changed in place is named),
the package's reference (and `F.linear`, `nn.Linear.forward`, where the exercise is the matrix product) is switched
off while it runs, the reference is computed after the call, dtype and shape come before values, gradients are
compared for the forward passes and the splice, and a wrong answer that matches a known mistake is named.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llava_mini import cells, projector
from llava_mini.grading import (LearnerError, call, expect, expect_close, expect_dtype, expect_same_gradient,
                                expect_shape, expect_type, forbidden, grader, rng)
from llava_mini.keys import require_answer
from llava_mini.llava import LlavaMini


def _matches(got: torch.Tensor, candidate: torch.Tensor, atol: float = 1e-5) -> bool:
    return got.shape == candidate.shape and torch.allclose(got.detach().double(), candidate.double(), atol=atol)


def _first_known(got: torch.Tensor, mistakes: dict[str, torch.Tensor], atol: float = 1e-5) -> str | None:
    """The hint of the first known mistake whose output `got` reproduces."""
    return next((hint for hint, out in mistakes.items() if _matches(got, out, atol)), None)


_MATMUL = "is the product this exercise asks you to write (with @ or torch.matmul)"
_TRANSPOSED = ("W is stored as nn.Linear stores it, (d_llm, d_v) = (out, in): H_v = Z_v @ W.T + b; Z_v @ W uses "
               "W transposed (it only runs because this W is square)")


# --- exercise 4.1 ----------------------------------------------------------------------------------

def _hidden_states(g: torch.Generator, b: int, n: int, d: int, layers: int) -> tuple[torch.Tensor, ...]:
    """layers + 1 hidden states (B, 1 + N, d), as VisionTower returns them, each a non-leaf tensor with gradient."""
    return tuple((torch.randn(b, n + 1, d, generator=g) + 0.0).requires_grad_() * 1.0 for _ in range(layers + 1))


def _visual_token_mistakes(hs, weight, bias, layer) -> dict[str, torch.Tensor]:
    z = hs[layer][:, 1:]
    mistakes = {
        "drop the CLS token, which is the FIRST token (index 0), not the last": hs[layer][:, :-1] @ weight.T + bias,
        "add the bias b: H_v = W·Z_v + b": z @ weight.T,
    }
    if weight.shape[0] == weight.shape[1]:
        mistakes[_TRANSPOSED] = z @ weight + bias
    for other in range(-len(hs), 0):
        if other != layer % len(hs) - len(hs):
            mistakes[f"use hidden_states[layer] (the layer asked for, {layer}), not hidden_states[{other}]"] = \
                hs[other][:, 1:] @ weight.T + bias
    return mistakes


def _visual_tokens_case(visual_tokens, g: torch.Generator, b: int, n: int, d_v: int, d_llm: int, layer: int,
                        layers: int = 4) -> None:
    hs = _hidden_states(g, b, n, d_v, layers)
    weight = torch.randn(d_llm, d_v, generator=g).requires_grad_()
    bias = torch.randn(d_llm, generator=g).requires_grad_()
    what = f"visual_tokens(<{layers + 1} hidden states ({b}, {n + 1}, {d_v})>, W ({d_llm}, {d_v}), b, layer={layer})"
    with forbidden((F, "linear"), (nn.Linear, "forward"), reason=_MATMUL):
        got = call(visual_tokens, hs, weight, bias, layer=layer, what=what)
    expect_type(got, torch.Tensor, what)
    if got.ndim == 3 and got.shape[1] == n + 1:
        raise AssertionError(f"{what} has {n + 1} tokens per image, one too many: the CLS token (index 0) is kept; "
                             "LLaVA's select_feature='patch' drops it, leaving the N patch tokens")
    if got.ndim == 3 and got.shape[1] == 1:
        raise AssertionError(f"{what} has one token per image: LLaVA pools nothing (no CLS-only, no mean); every "
                             "patch token becomes a visual token")
    expect_shape(got, (b, n, d_llm), what)
    expect_dtype(got, hs[0].dtype, what)
    want = hs[layer][:, 1:] @ weight.T + bias  # (B, N, d_llm)
    with torch.no_grad():
        hint = _first_known(got, _visual_token_mistakes(hs, weight, bias, layer)) or \
            "H_v = hidden_states[layer][:, 1:] @ W.T + b"
    expect_close(got, want, what, hint)
    expect_same_gradient(got, want, {"W": weight, "b": bias, **{f"hidden_states[{i}]": h for i, h in enumerate(hs)}},
                         what)


@grader("exercise 4.1", "visual_tokens")
def check_visual_tokens(visual_tokens) -> None:
    """A square W first (a transposed W then runs, and is named), then other widths and layers."""
    g = rng(41)
    _visual_tokens_case(visual_tokens, g, b=2, n=4, d_v=8, d_llm=8, layer=-2)
    _visual_tokens_case(visual_tokens, g, b=3, n=9, d_v=6, d_llm=10, layer=-2)
    _visual_tokens_case(visual_tokens, g, b=1, n=9, d_v=6, d_llm=10, layer=-1)
    _visual_tokens_case(visual_tokens, g, b=2, n=4, d_v=8, d_llm=8, layer=-3)


# --- exercise 4.2 ----------------------------------------------------------------------------------

def _mlp_mistakes(z, w1, b1, w2, b2) -> dict[str, torch.Tensor]:
    h = z @ w1.T + b1
    square = w1.shape[0] == w1.shape[1]
    mistakes = {
        "mlp2x_gelu uses the exact GELU (erf), nn.GELU()'s default, not the tanh approximation":
            F.gelu(h, approximate="tanh") @ w2.T + b2,
        "the activation is GELU, not ReLU": F.relu(h) @ w2.T + b2,
        "put a GELU between the two linear layers (without it the MLP is one linear map)": h @ w2.T + b2,
        "the GELU goes between the layers only, not after the second one": F.gelu(F.gelu(h) @ w2.T + b2),
        "the second weight is stored (out, in) too: use w2.T": F.gelu(h) @ w2 + b2,
        "add both biases": F.gelu(z @ w1.T) @ w2.T,
        "add the second bias b2": F.gelu(h) @ w2.T,
    }
    if square:
        mistakes["the first weight is stored (d_llm, d_v), as nn.Linear stores it: use w1.T"] = \
            F.gelu(z @ w1 + b1) @ w2.T + b2
    return mistakes


def _mlp_case(mlp2x_gelu, g: torch.Generator, b: int, n: int, d_v: int, d_llm: int) -> None:
    def leaf(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g)).requires_grad_()

    z = (1.5 * torch.randn(b, n, d_v, generator=g)).requires_grad_() * 1.0  # non-leaf: an in-place change is named
    w1, b1, w2, b2 = leaf(d_llm, d_v, scale=0.6), leaf(d_llm), leaf(d_llm, d_llm, scale=0.6), leaf(d_llm)
    what = f"mlp2x_gelu(<({b}, {n}, {d_v})>, w1 ({d_llm}, {d_v}), b1, w2 ({d_llm}, {d_llm}), b2)"
    with forbidden((F, "linear"), (nn.Linear, "forward"), (nn.Sequential, "forward"), reason=_MATMUL):
        got = call(mlp2x_gelu, z, w1, b1, w2, b2, what=what)
    expect_shape(got, (b, n, d_llm), what)
    expect_dtype(got, z.dtype, what)
    want = F.gelu(z @ w1.T + b1) @ w2.T + b2  # (B, N, d_llm)
    with torch.no_grad():
        hint = _first_known(got, _mlp_mistakes(z, w1, b1, w2, b2)) or "H_v = GELU(Z_v @ w1.T + b1) @ w2.T + b2"
    expect_close(got, want, what, hint)
    expect_same_gradient(got, want, {"z_v": z, "w1": w1, "b1": b1, "w2": w2, "b2": b2}, what)


@grader("exercise 4.2", "mlp2x_gelu")
def check_mlp2x_gelu(mlp2x_gelu) -> None:
    """A square first layer first (a transposed w1 then runs, and is named), then d_v != d_llm."""
    g = rng(42)
    _mlp_case(mlp2x_gelu, g, b=2, n=4, d_v=8, d_llm=8)
    _mlp_case(mlp2x_gelu, g, b=3, n=9, d_v=6, d_llm=10)


# --- exercise 4.3 ----------------------------------------------------------------------------------

def _count_mistakes(kind: str, i: int, o: int) -> dict[str, int]:
    if kind == "linear":
        return {
            "the bias is counted twice: W has d_v·d_llm entries and b has d_llm": i * o + 2 * o,
            "count the bias too: b has one entry per output, d_llm": i * o,
            "the bias has one entry per OUTPUT (d_llm), not per input": i * o + i,
        }
    return {
        "the second layer maps d_llm -> d_llm: its weight has d_llm·d_llm entries": 2 * (i * o + o),
        "each of the two linear layers has a bias": i * o + o + o * o,
        "count both biases, one of d_llm entries per layer": i * o + o * o,
        "a bias is counted twice": i * o + o * o + 3 * o,
        "the first layer's bias has d_llm entries, not d_v": i * o + i + o * o + o,
    }


@grader("exercise 4.3", "projector_params")
def check_projector_params(projector_params) -> None:
    """Small widths first (d_v != d_llm, so a bias on the wrong side shows), then LLaVA's and other real sizes."""
    sizes = [(6, 10), (64, 64), (1024, 4096), (1024, 5120), (1152, 3584), (768, 2048)]
    for kind in ("linear", "mlp2x_gelu"):
        for d_v, d_llm in sizes:
            what = f"projector_params({kind!r}, d_v={d_v}, d_llm={d_llm})"
            with forbidden((projector, "projector_param_count"), (projector, "build_projector"),
                           reason="is the reference this exercise asks you to write"):
                got = call(projector_params, kind, d_v, d_llm, what=what)
            expect_type(got, int, what)
            want = projector.projector_param_count(kind, d_v, d_llm)
            if got != want:
                hint = next((h for h, n in _count_mistakes(kind, d_v, d_llm).items() if n == got),
                            "count the entries of every weight matrix and bias vector of the layers")
                raise AssertionError(f"{what} should be {want:,}, got {got:,}; {hint}")


# --- exercise 4.4 ----------------------------------------------------------------------------------

def _regression_data(g: torch.Generator, n: int, d_in: int, d_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """z with a non-zero mean (so the bias is not the targets' mean) and noisy affine targets."""
    z = torch.randn(n, d_in, generator=g) + torch.linspace(-2.0, 3.0, d_in)  # (n, d_in)
    a, c = torch.randn(d_out, d_in, generator=g), 2.0 * torch.randn(d_out, generator=g)
    return z, z @ a.T + c + 0.3 * torch.randn(n, d_out, generator=g)  # (n, d_out)


def _lstsq(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.linalg.lstsq(x.double(), y.double()).solution


def _lstsq_mistakes(z, t) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    ones = torch.ones(len(z), 1, dtype=torch.float64)
    right = _lstsq(torch.cat([z.double(), ones], 1), t)  # (d_in + 1, d_out)
    through_origin = _lstsq(z, t)  # (d_in, d_out)
    inverse = _lstsq(torch.cat([t.double(), ones], 1), z)  # (d_out + 1, d_in)
    zeros = torch.zeros(t.shape[1], dtype=torch.float64)
    return {
        "the weight is returned transposed: lstsq's solution X of [z, 1] X = targets is (d_in + 1, d_out), and W "
        "is stored as nn.Linear stores it, (d_out, d_in): take X[:-1].T": (right[:-1], right[-1]),
        "fit the bias with W: solve for [W, b] on [z, 1] (a column of ones), not for W alone with b = 0":
            (through_origin.T, zeros),
        "the bias is not the targets' mean when z has a non-zero mean: solve for [W, b] on [z, 1] (a column of "
        "ones)": (through_origin.T, t.double().mean(0)),
        "that regresses z on the targets; solve z·Wᵀ + b ≈ targets": (inverse[:-1], inverse[-1]),
    }


def _lstsq_case(least_squares_projector, g: torch.Generator, n: int, d_in: int, d_out: int) -> None:
    z, t = _regression_data(g, n, d_in, d_out)
    what = f"least_squares_projector(<z ({n}, {d_in})>, <targets ({n}, {d_out})>)"
    with forbidden((projector, "least_squares_linear"), reason="is the reference this exercise asks you to write"):
        got = call(least_squares_projector, z, t, what=what)
    expect(isinstance(got, (tuple, list)) and len(got) == 2, f"{what} should return a pair (weight, bias), got "
                                                             f"{type(got).__name__}")
    weight, bias = got
    expect_type(weight, torch.Tensor, f"the weight of {what}")
    expect_type(bias, torch.Tensor, f"the bias of {what}")
    if d_in != d_out and tuple(weight.shape) == (d_in, d_out):
        raise AssertionError(f"the weight of {what} has shape {(d_in, d_out)}: it is W transposed; store it as "
                             f"nn.Linear does, (d_out, d_in) = {(d_out, d_in)}, so that H = z @ W.T + b")
    expect_shape(weight, (d_out, d_in), f"the weight of {what}")
    expect_shape(bias, (d_out,), f"the bias of {what}")
    expect_dtype(weight, z.dtype, f"the weight of {what}")
    expect_dtype(bias, z.dtype, f"the bias of {what}")
    solution = _lstsq(torch.cat([z, torch.ones(n, 1)], 1), t)  # (d_in + 1, d_out)
    hint = next((h for h, (w, b) in _lstsq_mistakes(z, t).items()
                 if _matches(weight, w, 1e-3) and _matches(bias, b, 1e-3)),
                "the residual targets - (z @ W.T + b) must be orthogonal to every column of z and to the constant "
                "(the normal equations)")
    expect_close(weight, solution[:-1].T, f"the weight of {what}", hint, atol=1e-3, rtol=1e-3)
    expect_close(bias, solution[-1], f"the bias of {what}", hint, atol=1e-3, rtol=1e-3)


@grader("exercise 4.4", "least_squares_projector")
def check_least_squares_projector(least_squares_projector) -> None:
    """A square case first (a transposed weight has the right shape there, and is named), then d_in != d_out."""
    g = rng(44)
    _lstsq_case(least_squares_projector, g, n=200, d_in=5, d_out=5)
    _lstsq_case(least_squares_projector, g, n=300, d_in=7, d_out=4)


# --- exercise 4.5 ----------------------------------------------------------------------------------

def _prompt_ids(g: torch.Generator, runs: list[list[int]], n: int, image_id: int, t: int) -> torch.Tensor:
    """(B, t) ids: random text ids (never image_id) and, per row, one run of n placeholders per entry of runs[row],
    starting at those positions."""
    ids = torch.randint(0, 20, (len(runs), t), generator=g)
    ids[ids == image_id] = image_id + 1
    for row, starts in enumerate(runs):
        for start in starts:
            ids[row, start:start + n] = image_id
    return ids


def _splice_mistakes(embeds, ids, feats, image_id) -> dict[str, torch.Tensor]:
    mask = (ids == image_id)[..., None].expand_as(embeds)

    def fill(source):
        return embeds.masked_scatter(mask, source)

    column_major = embeds.transpose(0, 1).masked_scatter(mask.transpose(0, 1), feats).transpose(0, 1)
    return {
        "the images go in the order they are given: image i fills the i-th run of placeholders, reading the rows "
        "of the batch in order": fill(feats.flip(0)),
        "the N features of an image go in raster order, patch 0 first": fill(feats.flip(1)),
        "fill image by image, each image's N rows in a block: do not interleave the images' patches":
            fill(feats.transpose(0, 1)),
        "walk the batch row by row (row-major): the first row's placeholders come first": column_major,
    }


def _expect_count_error(splice, embeds, ids, feats, image_id, n_slots: int, n_rows: int, what: str) -> None:
    try:
        out = call(splice, embeds, ids, feats, image_id, what=what)
    except LearnerError as err:
        cause = err.__cause__
        expect(isinstance(cause, ValueError), f"{what} should raise ValueError for the count mismatch ({n_slots} "
                                              f"placeholders, {n_rows} feature vectors) before splicing; it raised "
                                              f"{type(cause).__name__}: {cause}")
        message = str(cause)
        expect(str(n_slots) in message and str(n_rows) in message,
               f"the ValueError of {what} should say both counts, {n_slots} placeholders and {n_rows} feature "
               f"vectors; it said {message!r}")
        return
    if isinstance(out, torch.Tensor) and out.shape == embeds.shape and n_rows > n_slots:
        raise AssertionError(f"{what} returned a sequence: a splice that silently truncates drops "
                             f"{n_rows - n_slots} feature vectors of the images; compare the counts and raise "
                             "ValueError when they differ")
    raise AssertionError(f"{what} returned without an error: {n_slots} placeholders cannot hold {n_rows} feature "
                         "vectors; compare the counts and raise ValueError when they differ")


def _splice_case(splice, g: torch.Generator, image_id: int) -> None:
    n, d, t = 4, 6, 16
    runs = [[3], [], [1, 9]]  # one image, none, two images
    ids = _prompt_ids(g, runs, n, image_id, t)  # (3, t)
    embeds = torch.randn(3, t, d, generator=g).requires_grad_() * 1.0  # (B, T, D), non-leaf
    feats = torch.randn(3, n, d, generator=g).requires_grad_() * 1.0  # (n_img, N, D)
    what = f"splice(embeds (3, {t}, {d}), input_ids, image_features (3, {n}, {d}), image_token_id={image_id})"
    reason = "is the reference this exercise asks you to write"
    try:
        with forbidden((LlavaMini, "embed"), (cells, "fill"), reason=reason):
            got = call(splice, embeds, ids, feats, image_id, what=what)
    except LearnerError as err:
        if not isinstance(err.__cause__, ValueError):
            raise
        raise AssertionError(f"{what} raised ValueError ({err.__cause__}) although the counts match: {3 * n} "
                             f"placeholders with id {image_id}, the image_token_id argument, and {3 * n} feature "
                             "vectors") from None
    expect_shape(got, (3, t, d), what)
    expect_dtype(got, embeds.dtype, what)
    want = embeds.masked_scatter((ids == image_id)[..., None].expand_as(embeds), feats)  # (B, T, D)
    with torch.no_grad():
        text_kept = bool(torch.equal(got[ids != image_id].detach(), embeds[ids != image_id].detach()))
        expect(text_kept, f"{what} changed the embeddings of text tokens: only the placeholders (id {image_id}) "
                          "are replaced")
        hint = _first_known(got, _splice_mistakes(embeds, ids, feats, image_id)) or \
            f"write image i's N rows over the i-th run of placeholders (id {image_id}, the image_token_id argument)"
    expect_close(got, want, what, hint, atol=0.0, rtol=0.0)
    expect_same_gradient(got, want, {"embeds": embeds, "image_features": feats}, what)

    with forbidden((LlavaMini, "embed"), (cells, "fill"), reason=reason):
        extra = torch.randn(4, n, d, generator=g)  # one image more than the placeholders hold
        _expect_count_error(splice, embeds.detach(), ids, extra, image_id, 3 * n, 4 * n,
                            f"splice(..., image_features ({4}, {n}, {d})) on {3 * n} placeholders")
        fewer = torch.randn(2, n, d, generator=g)
        _expect_count_error(splice, embeds.detach(), ids, fewer, image_id, 3 * n, 2 * n,
                            f"splice(..., image_features ({2}, {n}, {d})) on {3 * n} placeholders")


@grader("exercise 4.5", "splice")
def check_splice(splice) -> None:
    """Three rows (one image, none, two), two placeholder ids, then a feature count too large and too small."""
    g = rng(45)
    for image_id in (7, 3):
        _splice_case(splice, g, image_id)


# --- study questions -------------------------------------------------------------------------------

@grader("study question 2", "answer_study_q2")
def check_study_q2(answer_study_q2) -> None:
    require_answer("nb04.study_q2", answer_study_q2(), options="abcdefgh",
                   hint="check each statement against this notebook's shapes, counts and measurements (the least-"
                        "squares W, the MLP, the scaled W)")


@grader("study question 8", "answer_study_q8")
def check_study_q8(answer_study_q8) -> None:
    require_answer("nb04.study_q8", answer_study_q8(), options="abcdefgh",
                   hint="check each statement against the bottleneck probes, the MLP experiment and what LLaVA's code "
                        "feeds W (notebook 02 for the layer)")


@grader("study question 14", "answer_study_q14")
def check_study_q14(answer_study_q14) -> None:
    require_answer("nb04.study_q14", answer_study_q14(), options="abcdefgh",
                   hint="check each statement against the decoding table and the lengths measured above, and against "
                        "how the training loss treats image positions")
