"""Notebook 04's graders bite: the reference passes with one line, a stub is "not done yet", and each plausible wrong
implementation is rejected with a message naming the exercise (tests/test_grading.py's pattern); the study-question
keys accept the right choices in any spelling and reject wrong sets."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from grader_contract import grader_contract

from llava_mini import keys, projector
from llava_mini.grading import graders, nb04, rejects
from llava_mini.llava import LlavaMini

# --- exercise 4.1: H_v = W·Z_v + b -----------------------------------------------------------------


def visual_tokens(hidden_states, weight, bias, layer=-2):
    z_v = hidden_states[layer][:, 1:]  # (B, N, d_v): CLS dropped
    return z_v @ weight.T + bias  # (B, N, d_llm)


def vt_cls_kept(hidden_states, weight, bias, layer=-2):  # select_feature="cls_patch"
    return hidden_states[layer] @ weight.T + bias


def vt_last_token_dropped(hidden_states, weight, bias, layer=-2):
    return hidden_states[layer][:, :-1] @ weight.T + bias


def vt_transposed(hidden_states, weight, bias, layer=-2):  # the paper's W·Z_v read with Z_v as rows
    return hidden_states[layer][:, 1:] @ weight + bias


def vt_no_bias(hidden_states, weight, bias, layer=-2):
    return hidden_states[layer][:, 1:] @ weight.T


def vt_last_layer(hidden_states, weight, bias, layer=-2):  # hidden_states[-1], whatever layer says
    return hidden_states[-1][:, 1:] @ weight.T + bias


def vt_always_minus_two(hidden_states, weight, bias, layer=-2):
    return visual_tokens(hidden_states, weight, bias)


def vt_mean_pooled(hidden_states, weight, bias, layer=-2):  # the seed write-up's "mean-pool" myth
    return hidden_states[layer][:, 1:].mean(1, keepdim=True) @ weight.T + bias


def vt_cls_only(hidden_states, weight, bias, layer=-2):  # the seed write-up's "keeps only CLS" myth
    return hidden_states[layer][:, :1] @ weight.T + bias


def vt_f_linear(hidden_states, weight, bias, layer=-2):
    return F.linear(hidden_states[layer][:, 1:], weight, bias)


def vt_no_grad(hidden_states, weight, bias, layer=-2):
    with torch.no_grad():
        return visual_tokens(hidden_states, weight, bias, layer)


def vt_zeroes_cls_in_place(hidden_states, weight, bias, layer=-2):  # "drops" CLS by writing zeros into it
    with torch.no_grad():
        hidden_states[layer][:, 0] = 0.0
    return visual_tokens(hidden_states, weight, bias, layer)


# --- exercise 4.2: mlp2x_gelu ----------------------------------------------------------------------


def mlp2x_gelu(z_v, w1, b1, w2, b2):
    return F.gelu(z_v @ w1.T + b1) @ w2.T + b2


def mlp_relu(z_v, w1, b1, w2, b2):
    return F.relu(z_v @ w1.T + b1) @ w2.T + b2


def mlp_tanh_gelu(z_v, w1, b1, w2, b2):
    return F.gelu(z_v @ w1.T + b1, approximate="tanh") @ w2.T + b2


def mlp_no_activation(z_v, w1, b1, w2, b2):
    return (z_v @ w1.T + b1) @ w2.T + b2


def mlp_w1_transposed(z_v, w1, b1, w2, b2):
    return F.gelu(z_v @ w1 + b1) @ w2.T + b2


def mlp_w2_transposed(z_v, w1, b1, w2, b2):
    return F.gelu(z_v @ w1.T + b1) @ w2 + b2


def mlp_no_second_bias(z_v, w1, b1, w2, b2):
    return F.gelu(z_v @ w1.T + b1) @ w2.T


def mlp_gelu_after_both(z_v, w1, b1, w2, b2):
    return F.gelu(F.gelu(z_v @ w1.T + b1) @ w2.T + b2)


def mlp_through_modules(z_v, w1, b1, w2, b2):  # builds the package's module: the exercise is the products
    module = projector.MLPProjector(w1.shape[1], w1.shape[0])
    with torch.no_grad():
        for layer, (w, b) in zip((module[0], module[2]), ((w1, b1), (w2, b2))):
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    return module(z_v)


def mlp_in_place(z_v, w1, b1, w2, b2):
    h = z_v.mul_(1.0) @ w1.T  # harmless-looking, but an in-place op on the caller's z_v
    z_v.add_(1.0)
    return F.gelu(h + b1) @ w2.T + b2


def mlp_no_grad(z_v, w1, b1, w2, b2):
    with torch.no_grad():
        return mlp2x_gelu(z_v, w1, b1, w2, b2)


# --- exercise 4.3: parameter counts ----------------------------------------------------------------


def projector_params(kind, d_v, d_llm):
    linear = d_v * d_llm + d_llm
    return linear if kind == "linear" else linear + d_llm * d_llm + d_llm


def params_bias_twice(kind, d_v, d_llm):
    return projector_params(kind, d_v, d_llm) + d_llm


def params_no_bias(kind, d_v, d_llm):
    return d_v * d_llm if kind == "linear" else d_v * d_llm + d_llm * d_llm


def params_input_bias(kind, d_v, d_llm):
    return projector_params(kind, d_v, d_llm) - d_llm + d_v


def params_mlp_two_first_layers(kind, d_v, d_llm):
    return projector_params("linear", d_v, d_llm) * (1 if kind == "linear" else 2)


def params_mlp_one_bias(kind, d_v, d_llm):
    return projector_params(kind, d_v, d_llm) - (d_llm if kind == "mlp2x_gelu" else 0)


def params_float(kind, d_v, d_llm):
    return float(projector_params(kind, d_v, d_llm))


def params_calls_reference(kind, d_v, d_llm):
    return projector.projector_param_count(kind, d_v, d_llm)


def params_builds_modules(kind, d_v, d_llm):
    return sum(p.numel() for p in projector.build_projector(kind, d_v, d_llm).parameters())


# --- exercise 4.4: the least-squares W --------------------------------------------------------------


def _solution(z, targets):
    design = torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], dim=1)  # (n, d_in + 1)
    return torch.linalg.lstsq(design.double(), targets.double()).solution  # (d_in + 1, d_out)


def least_squares_projector(z, targets):
    x = _solution(z, targets)
    return x[:-1].T.to(z.dtype), x[-1].to(z.dtype)


def lsq_normal_equations(z, targets):  # the same solution by the normal equations, in float32: also right
    design = torch.cat([z, torch.ones(len(z), 1)], dim=1)
    x = torch.linalg.solve(design.T @ design, design.T @ targets)
    return x[:-1].T, x[-1]


def lsq_transposed(z, targets):
    x = _solution(z, targets)
    return x[:-1].float(), x[-1].float()


def lsq_through_origin(z, targets):
    x = torch.linalg.lstsq(z, targets).solution  # (d_in, d_out)
    return x.T, torch.zeros(targets.shape[1])


def lsq_mean_bias(z, targets):
    x = torch.linalg.lstsq(z, targets).solution
    return x.T, targets.mean(0)


def lsq_inverse_regression(z, targets):
    x = _solution(targets, z)  # (d_out + 1, d_in)
    return x[:-1].float(), x[-1].float()


def lsq_float64(z, targets):
    x = _solution(z, targets)
    return x[:-1].T, x[-1]


def lsq_centres_in_place(z, targets):
    mean_z, mean_t = z.mean(0), targets.mean(0)
    z -= mean_z  # the caller's z is centred too
    w = torch.linalg.lstsq(z, targets - mean_t).solution.T  # (d_out, d_in)
    return w, mean_t - mean_z @ w.T


def lsq_calls_reference(z, targets):
    fitted = projector.least_squares_linear(z, targets)
    return fitted.weight.detach(), fitted.bias.detach()


# --- exercise 4.5: the splice ----------------------------------------------------------------------


def _check_counts(input_ids, image_features, image_token_id):
    n_slots, n_rows = int((input_ids == image_token_id).sum()), image_features.shape[0] * image_features.shape[1]
    if n_slots != n_rows:
        raise ValueError(f"{n_slots} image placeholders but {n_rows} image feature vectors")


def splice(embeds, input_ids, image_features, image_token_id):
    _check_counts(input_ids, image_features, image_token_id)
    mask = (input_ids == image_token_id)[..., None].expand_as(embeds)  # (B, T, D)
    return embeds.masked_scatter(mask, image_features)


def splice_by_index(embeds, input_ids, image_features, image_token_id):  # also right: an index copy
    _check_counts(input_ids, image_features, image_token_id)
    out = embeds.clone()
    out[input_ids == image_token_id] = image_features.reshape(-1, embeds.shape[-1])
    return out


def splice_images_reversed(embeds, input_ids, image_features, image_token_id):
    return splice(embeds, input_ids, image_features.flip(0), image_token_id)


def splice_patches_reversed(embeds, input_ids, image_features, image_token_id):
    return splice(embeds, input_ids, image_features.flip(1), image_token_id)


def splice_interleaved(embeds, input_ids, image_features, image_token_id):
    return splice(embeds, input_ids, image_features.transpose(0, 1), image_token_id)


def splice_column_major(embeds, input_ids, image_features, image_token_id):
    _check_counts(input_ids, image_features, image_token_id)
    mask = (input_ids == image_token_id)[..., None].expand_as(embeds)
    return embeds.transpose(0, 1).masked_scatter(mask.transpose(0, 1), image_features).transpose(0, 1)


def splice_truncates(embeds, input_ids, image_features, image_token_id):  # HF's old silent failure, by hand
    mask = input_ids == image_token_id
    rows = image_features.reshape(-1, embeds.shape[-1])[: int(mask.sum())]
    out = embeds.clone()
    out[mask] = torch.cat([rows, embeds[mask][len(rows):]])  # pads with the text embeddings when too few
    return out


def splice_unchecked(embeds, input_ids, image_features, image_token_id):  # masked_scatter's own error, if any
    mask = (input_ids == image_token_id)[..., None].expand_as(embeds)
    return embeds.masked_scatter(mask, image_features)


def splice_vague_error(embeds, input_ids, image_features, image_token_id):
    if int((input_ids == image_token_id).sum()) != image_features[..., 0].numel():
        raise ValueError("wrong number of images")
    return splice(embeds, input_ids, image_features, image_token_id)


def splice_runtime_error(embeds, input_ids, image_features, image_token_id):
    n_slots = int((input_ids == image_token_id).sum())
    if n_slots != image_features[..., 0].numel():
        raise RuntimeError(f"{n_slots} placeholders, {image_features[..., 0].numel()} features")
    return splice(embeds, input_ids, image_features, image_token_id)


def splice_fixed_id(embeds, input_ids, image_features, image_token_id):  # the id hard-coded
    return splice(embeds, input_ids, image_features, 7)


def splice_in_place(embeds, input_ids, image_features, image_token_id):
    _check_counts(input_ids, image_features, image_token_id)
    mask = (input_ids == image_token_id)[..., None].expand_as(embeds)
    return embeds.masked_scatter_(mask, image_features)


def splice_detached(embeds, input_ids, image_features, image_token_id):
    return splice(embeds, input_ids, image_features.detach(), image_token_id)


def splice_calls_reference(embeds, input_ids, image_features, image_token_id):
    model = SimpleNamespace(lm=SimpleNamespace(embed_tokens=lambda ids: embeds))
    return LlavaMini.embed(model, input_ids, image_features)


# --- study questions -------------------------------------------------------------------------------


def answer_study_q2():
    return "a, b, c, f, h"


def answer_study_q8():
    return "adfg"


def answer_study_q14():
    return ["a", "e", "g"]


def q2_least_squares_is_maximum_likelihood():
    return "abcdfh"


def q2_one_token_per_image():
    return "abcefh"


def q2_scale_matters():
    return "abcfgh"


def q8_pool_is_free():
    return "abdfg"


def q8_llava_keeps_cls():
    return "acdfg"


def q8_bigger_always_better():
    return "adfgh"


def q14_nearest_word_suffices():
    return "abeg"


def q14_linear_means_local():
    return "aefg"


def q14_lm_predicts_them():
    return "aegh"


RIGHT = {
    "exercise 4.1": visual_tokens,
    "exercise 4.2": mlp2x_gelu,
    "exercise 4.3": projector_params,
    "exercise 4.4": least_squares_projector,
    "exercise 4.5": splice,
    "study question 2": answer_study_q2,
    "study question 8": answer_study_q8,
    "study question 14": answer_study_q14,
}
WRONG = {
    "exercise 4.1": [vt_cls_kept, vt_last_token_dropped, vt_transposed, vt_no_bias, vt_last_layer, vt_always_minus_two,
                     vt_mean_pooled, vt_cls_only, vt_f_linear, vt_no_grad, vt_zeroes_cls_in_place],
    "exercise 4.2": [mlp_relu, mlp_tanh_gelu, mlp_no_activation, mlp_w1_transposed, mlp_w2_transposed,
                     mlp_no_second_bias, mlp_gelu_after_both, mlp_through_modules, mlp_in_place, mlp_no_grad],
    "exercise 4.3": [params_bias_twice, params_no_bias, params_input_bias, params_mlp_two_first_layers,
                     params_mlp_one_bias, params_float, params_calls_reference, params_builds_modules],
    "exercise 4.4": [lsq_transposed, lsq_through_origin, lsq_mean_bias, lsq_inverse_regression, lsq_float64,
                     lsq_centres_in_place, lsq_calls_reference],
    "exercise 4.5": [splice_images_reversed, splice_patches_reversed, splice_interleaved, splice_column_major,
                     splice_truncates, splice_unchecked, splice_vague_error, splice_runtime_error, splice_fixed_id,
                     splice_in_place, splice_detached, splice_calls_reference],
    "study question 2": [q2_least_squares_is_maximum_likelihood, q2_one_token_per_image, q2_scale_matters],
    "study question 8": [q8_pool_is_free, q8_llava_keeps_cls, q8_bigger_always_better],
    "study question 14": [q14_nearest_word_suffices, q14_linear_means_local, q14_lm_predicts_them],
}
(test_every_grader_has_right_and_wrong_implementations, test_right_answer_prints_one_fixed_line,
 test_wrong_implementation_is_rejected, test_stub_is_not_done_yet) = grader_contract("llava_mini.grading.nb04",
                                                                                     RIGHT, WRONG)


@pytest.mark.parametrize("label, also_right", [("exercise 4.4", lsq_normal_equations),
                                               ("exercise 4.5", splice_by_index)])
def test_other_right_answers_pass(label, also_right, capsys):
    graders("llava_mini.grading.nb04")[label](also_right)
    assert capsys.readouterr().out == f"{label} passed\n"


def test_hints_name_the_mistake():
    m = {fn.__name__: rejects(check, fn) for check, fns in [
        (nb04.check_visual_tokens, WRONG["exercise 4.1"]), (nb04.check_mlp2x_gelu, WRONG["exercise 4.2"]),
        (nb04.check_projector_params, WRONG["exercise 4.3"]),
        (nb04.check_least_squares_projector, WRONG["exercise 4.4"]), (nb04.check_splice, WRONG["exercise 4.5"])]
        for fn in fns}
    assert "the CLS token (index 0) is kept" in m["vt_cls_kept"]
    assert "the FIRST token (index 0), not the last" in m["vt_last_token_dropped"]
    assert "Z_v @ W uses W transposed" in m["vt_transposed"]
    assert "add the bias b" in m["vt_no_bias"]
    assert "not hidden_states[-1]" in m["vt_last_layer"]
    assert "(the layer asked for, -1), not hidden_states[-2]" in m["vt_always_minus_two"]
    assert "LLaVA pools nothing" in m["vt_mean_pooled"] and "LLaVA pools nothing" in m["vt_cls_only"]
    assert "calls torch.nn.functional.linear, which is the product" in m["vt_f_linear"]
    assert "carries no gradient" in m["vt_no_grad"]
    assert "changed its argument 1 in place" in m["vt_zeroes_cls_in_place"]
    assert "not ReLU" in m["mlp_relu"]
    assert "not the tanh approximation" in m["mlp_tanh_gelu"]
    assert "without it the MLP is one linear map" in m["mlp_no_activation"]
    assert "use w1.T" in m["mlp_w1_transposed"]
    assert "use w2.T" in m["mlp_w2_transposed"]
    assert "add the second bias b2" in m["mlp_no_second_bias"]
    assert "not after the second one" in m["mlp_gelu_after_both"]
    assert "calls Linear.forward" in m["mlp_through_modules"] or "calls Sequential.forward" in m["mlp_through_modules"]
    assert "changed its argument 1 in place" in m["mlp_in_place"]
    assert "carries no gradient" in m["mlp_no_grad"]
    assert "the bias is counted twice" in m["params_bias_twice"]
    assert "count the bias too" in m["params_no_bias"]
    assert "one entry per OUTPUT" in m["params_input_bias"]
    assert "d_llm·d_llm entries" in m["params_mlp_two_first_layers"]
    assert "each of the two linear layers has a bias" in m["params_mlp_one_bias"]
    assert "should be a int, got float" in m["params_float"]
    assert "calls llava_mini.projector.projector_param_count" in m["params_calls_reference"]
    assert "calls llava_mini.projector.build_projector" in m["params_builds_modules"]
    assert "the weight is returned transposed" in m["lsq_transposed"]
    assert "fit the bias with W" in m["lsq_through_origin"]
    assert "the bias is not the targets' mean" in m["lsq_mean_bias"]
    assert "regresses z on the targets" in m["lsq_inverse_regression"]
    assert "should have dtype torch.float32, got torch.float64" in m["lsq_float64"]
    assert "changed its argument 1 in place" in m["lsq_centres_in_place"]
    assert "calls llava_mini.projector.least_squares_linear" in m["lsq_calls_reference"]
    assert "the images go in the order they are given" in m["splice_images_reversed"]
    assert "raster order, patch 0 first" in m["splice_patches_reversed"]
    assert "do not interleave" in m["splice_interleaved"]
    assert "row by row (row-major)" in m["splice_column_major"]
    assert "silently truncates" in m["splice_truncates"] and "silently truncates" in m["splice_unchecked"]
    assert "should say both counts, 12 placeholders and 16 feature vectors" in m["splice_vague_error"]
    assert "should raise ValueError" in m["splice_runtime_error"]
    assert "the image_token_id argument" in m["splice_fixed_id"]
    assert "changed its argument 1 in place" in m["splice_in_place"]
    assert "does not reach image_features" in m["splice_detached"]
    assert "calls LlavaMini.embed" in m["splice_calls_reference"]


@pytest.mark.parametrize("question, right, wrong", [
    ("nb04.study_q2", ["abcfh", "HFCBA", "a, b, c, f, h"], ["abcf", "abcdfh", "abcfgh", "abcefh", "", None]),
    ("nb04.study_q8", ["adfg", "G F D A", ["g", "a", "d", "f"]], ["adf", "abdfg", "acdfg", "adfgh", "adefg", ""]),
    ("nb04.study_q14", ["aeg", "E, A, G", ["g", "e", "a"]], ["ae", "abeg", "aefg", "aegh", "acdeg", ""]),
])
def test_study_keys(question, right, wrong):
    assert all(keys.check_answer(question, answer) for answer in right)
    assert not any(keys.check_answer(question, answer) for answer in wrong)
