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
    assert set(got) == {"config", "train", "generate", "cache", "memory"}
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
