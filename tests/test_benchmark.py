"""`llava-mini benchmark`: LlavaMini vs transformers' Llava on the same weights (tiny configuration, seconds)."""

import json

import pytest

from llava_mini import benchmark, cli

pytest.importorskip("transformers")
TINY = ("--config", "tiny", "--repeats", "2", "--steps", "1", "--warmup", "1", "--batch-size", "4",
        "--text-tokens", "8", "--new-tokens", "8", "--cache-tokens", "8", "16")


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def result():
    return benchmark.run_benchmark("tiny", repeats=2, steps=1, batch_size=4, text_tokens=8, new_tokens=8,
                                   cache_tokens=(8, 16))


def test_json_keys_and_positive_ratios(capsys):
    code, out, _ = run(capsys, "benchmark", "--json", *TINY)
    assert code == 0
    got = json.loads(out)
    assert set(got) == {"config", "train", "generate", "cache", "memory", "bf16"}
    assert got["bf16"] is None  # on CPU only when asked for
    assert {"name", "device", "threads", "params", "vision", "lm", "batch_size", "seq_len", "image_tokens",
            "prompt_len", "new_tokens", "repeats", "steps", "warmup", "torch", "transformers"} <= set(got["config"])
    assert set(got["train"]) == {"ours_steps_per_s", "theirs_steps_per_s", "ratio", "loss_diff"}
    assert set(got["generate"]) == {"ours_tokens_per_s", "theirs_tokens_per_s", "ratio", "same_tokens"}
    assert set(got["cache"]) == {"8", "16"}
    assert all(set(v) == {"cached_s", "uncached_s", "speedup"} for v in got["cache"].values())
    assert {"ours_peak_bytes", "theirs_peak_bytes", "ratio", "how"} <= set(got["memory"])
    for figure in ("train", "generate", "memory"):
        assert got[figure]["ratio"] > 0
    assert all(v["speedup"] > 0 for v in got["cache"].values())
    assert got["config"]["name"] == "tiny" and got["config"]["batch_size"] == 4


def test_same_function_same_tokens(result):
    """Both models hold the same weights: the same first loss (float32 rounding) and the same greedy tokens."""
    assert result["train"]["loss_diff"] < 1e-4
    assert result["generate"]["same_tokens"] is True
    assert result["config"]["seq_len"] == 1 + result["config"]["image_tokens"] + 8
    assert result["memory"]["ours_peak_bytes"] > 0 and result["memory"]["theirs_peak_bytes"] > 0


def test_summary_names_every_figure(result):
    text = benchmark.summary(result)
    assert all(word in text for word in ("train", "generate", "cache", "memory", "ratio", "tiny"))


@pytest.mark.parametrize("argv, expected", [
    (("--repeats", "0"), "--repeats: expected a whole number >= 1, got '0'"),
    (("--steps", "two"), "--steps: expected a whole number >= 1, got 'two'"),
    (("--cache-tokens", "-4"), "--cache-tokens: expected a whole number >= 1"),
    (("--config", "huge"), "--config: invalid choice: 'huge'"),
])
def test_bad_arguments_are_refused_by_argparse(capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["benchmark", *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and expected in err


def test_too_long_a_generation_is_one_line_error(capsys):
    code, out, err = run(capsys, "benchmark", "--config", "tiny", "--cache-tokens", "600")
    assert code == 2 and out == ""
    assert err.startswith("llava-mini benchmark: error: prompt + new tokens need ") and err.count("\n") == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"config": "huge"}, "--config must be one of zoo, large, gpu, tiny, got 'huge'"),
    ({"repeats": 0}, "repeats must be an integer >= 1, got 0"),
    ({"warmup": -1}, "warmup must be an integer >= 0, got -1"),
    ({"cache_tokens": ()}, "cache_tokens must be integers >= 1, got ()"),
    ({"device": "tpu"}, "--device must be cpu or cuda, got 'tpu'"),
    ({"peak": 0.0}, "peak must be a number of TFLOP/s > 0, got 0.0"),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        benchmark.run_benchmark(**{"config": "tiny", **kwargs})


def test_the_gpu_configuration_has_tens_of_millions_of_parameters_and_64_px_images():
    from llava_mini.tokenizer import load_tokenizer

    model = benchmark.build_model("gpu", load_tokenizer())
    n = sum(p.numel() for p in model.parameters())
    assert 20e6 < n < 60e6 and model.config.vision.image_size == 64 and model.num_image_tokens == 64
    batch = benchmark.make_batch(model, 2, 8)
    assert model(**batch).loss.isfinite()


@pytest.mark.parametrize("name, tflops", [("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.0),
                                          ("NVIDIA H200", 989.4), ("NVIDIA A100-SXM4-40GB", 312.0),
                                          ("Tesla T4", None)])
def test_peak_tflops_by_device_name(name, tflops):
    assert benchmark.peak_tflops(name) == tflops


def test_step_flops_are_a_forward_and_a_backward_and_leave_no_gradient():
    """Backward costs about two forwards in matrix products (grad of input and of weight), so a step is just under
    three forwards (the patch embedding needs no input gradient); the count leaves the model's grads empty."""
    from torch.utils.flop_counter import FlopCounterMode

    from llava_mini.tokenizer import load_tokenizer

    model = benchmark.build_model("tiny", load_tokenizer()).train()
    batch = benchmark.make_batch(model, 4, 8)
    with FlopCounterMode(display=False) as counter:
        model(**batch)
    forward = counter.get_total_flops()
    step = benchmark.step_flops(model, batch)
    assert 2.5 * forward < step <= 3 * forward
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.slow
def test_bf16_eager_and_compiled_steps_report_tokens_per_second_and_mfu():
    """The CUDA figures, run on CPU (bf16 autocast and torch.compile work there too, just slowly): MFU is the
    counted FLOPs of a step over its median time and the given peak."""
    got = benchmark.run_benchmark("tiny", repeats=2, steps=1, batch_size=4, text_tokens=8, new_tokens=8,
                                  cache_tokens=(8,), bf16=True, peak=1.0)["bf16"]
    assert got["peak_tflops"] == 1.0 and got["tokens_per_step"] == 4 * 13
    for name in ("eager", "compiled"):
        run = got[name]
        assert run["tokens_per_s"] == pytest.approx(got["tokens_per_step"] / run["step_s"])
        assert run["mfu"] == pytest.approx(got["flops_per_step"] / run["step_s"] / 1e12)
    assert got["compile_speedup"] == pytest.approx(got["eager"]["step_s"] / got["compiled"]["step_s"])
    assert "bf16     compiled" in benchmark.summary({**benchmark.run_benchmark(
        "tiny", repeats=1, steps=1, batch_size=2, text_tokens=8, new_tokens=8, cache_tokens=(8,)), "bf16": got})
