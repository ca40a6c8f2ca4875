"""tools/perfect_eye.py: the eye gives exactly the scene's cell tokens, refuses images it never saw, and a tiny
run of both stage-2 phases prints its two records without ever looking through the model's own g and W."""

import importlib.util
from pathlib import Path

import pytest
import torch

from llava_mini import cells, evaluate, world, zoo
from llava_mini.llava import LlavaMini
from llava_mini.tokenizer import load_tokenizer

TOOL = Path(__file__).parents[1] / "tools" / "perfect_eye.py"
spec = importlib.util.spec_from_file_location("perfect_eye", TOOL)
perfect_eye = importlib.util.module_from_spec(spec)
spec.loader.exec_module(perfect_eye)


@pytest.fixture(scope="module")
def model():
    return zoo.load("llava-mini-stage1")


def test_the_eye_sees_the_cell_tokens_of_each_rendered_scene(model):
    tokenizer = load_tokenizer()
    scenes = [world.sample_scene(seed) for seed in world.split_seeds("test", 3)]
    renderer = world.render_batch
    with perfect_eye.PerfectEye(model, tokenizer):
        pixels = world.pixel_values(world.render_batch(scenes[::-1]))  # drawn in another order than asked
        h_v = model.encode_images(pixels[[2, 0]])  # (2, 9, D)
    words = torch.tensor([cells.cell_words(s, tokenizer) for s in (scenes[0], scenes[2])])
    torch.testing.assert_close(h_v, cells.embed_cells(model.lm.embed_tokens, words), rtol=0, atol=0)
    assert "encode_images" not in vars(model) and world.render_batch is renderer  # closed: both are back


def test_an_image_the_eye_never_saw_is_refused_and_the_eye_closes_on_the_error(model):
    unseen = world.pixel_values(world.render_batch([world.sample_scene(world.split_seeds("test", 1)[0])]))
    renderer = world.render_batch
    with pytest.raises(ValueError, match="never drawn"), perfect_eye.PerfectEye(model, load_tokenizer()):
        model.encode_images(unseen)
    assert "encode_images" not in vars(model) and world.render_batch is renderer


def test_a_tiny_run_prints_one_record_per_phase_and_never_uses_the_models_own_eye(monkeypatch, capsys):
    def own_eye(self, pixel_values):
        raise AssertionError("the run looked through g and W instead of the perfect eye")

    monkeypatch.setattr(LlavaMini, "encode_images", own_eye)
    args = perfect_eye.parse(["--steps", "2", "--scenes", "64", "--n", "3", "--threads", "1", "--bench-limit", "3"])
    records = perfect_eye.run(args)
    assert [r["phase"] for r in records] == ["conversations", "full mix"]
    assert [r["teacher"] for r in records] == ["llava-mini", "listing"]
    for r in records:
        assert r["loss"] > 0 and set(r["accuracy"]) == set(evaluate.SHORT_KEYS)
        assert set(r["bench"]) == {"in", "ood"} and r["bench"]["in"]["relative_score"]["overall"] is not None
    assert capsys.readouterr().out.count("\n") == 2


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        perfect_eye.parse(["--teacher", "verbose"])
    with pytest.raises(SystemExit):
        perfect_eye.parse(["--n", "0"])
    with pytest.raises(SystemExit):
        perfect_eye.parse(["--bench-limit", "0"])
