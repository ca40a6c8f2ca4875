"""tools/learning_curves.py: each experiment trains and evaluates on a tiny budget; the slot context is bound."""

import importlib.util
from pathlib import Path

import pytest
import torch

from llava_mini import evaluate, world
from llava_mini.lm import LanguageModel, LMConfig
from llava_mini.tokenizer import load_tokenizer

TOOL = Path(__file__).parents[1] / "tools" / "learning_curves.py"
spec = importlib.util.spec_from_file_location("learning_curves", TOOL)
curves = importlib.util.module_from_spec(spec)
spec.loader.exec_module(curves)


@pytest.mark.parametrize("experiment", ["text", "slots", "stage2"])
def test_each_experiment_prints_a_curve(experiment, capsys):
    args = curves.parse([experiment, "--dim", "32", "--layers", "1", "--scenes", "40", "--batch", "8", "--steps", "4",
                         "--eval-every", "2", "--n", "4", "--lr", "3e-3", "--device", "cpu"])
    records = curves.run(args)
    assert [r["step"] for r in records] == [2, 4]
    for r in records:
        assert set(evaluate.SHORT_KEYS) <= set(r) and all(0.0 <= r[k] <= 1.0 for k in evaluate.SHORT_KEYS)
        assert r["loss"] > 0
    assert capsys.readouterr().out.count("\n") == 2


def test_slot_words_put_each_object_in_its_cell():
    tokenizer = load_tokenizer()
    scene = next(s for s in (world.sample_scene(i) for i in range(50)) if len(s.objects) == 3)
    cells = curves.slot_words(scene, tokenizer)
    for o in scene.objects:
        words = tokenizer.convert_ids_to_tokens(cells[o.row * 3 + o.col])
        assert words == ["\u2581" + o.size, "\u2581" + o.colour, "\u2581" + o.shape]
    empty = [c for c in cells if c[1] == -1]
    assert len(empty) == 6 and all(c[0] == tokenizer.convert_tokens_to_ids(".") for c in empty)


def test_slot_embeds_are_summed_word_embeddings():
    tokenizer = load_tokenizer()
    lm = LanguageModel(LMConfig(len(tokenizer), dim=16, layers=1, heads=2))
    image = tokenizer.image_token_id
    ids = torch.tensor([[tokenizer.bos_token_id] + [image] * 9 + [tokenizer.eos_token_id]])
    slots = torch.tensor([curves.slot_words(world.sample_scene(3), tokenizer)])
    x = curves.slot_embeds(lm, ids, slots, image)
    for cell in range(9):
        words = [w for w in slots[0, cell].tolist() if w >= 0]
        assert torch.allclose(x[0, 1 + cell], lm.embed_tokens.weight[words].sum(0))
    assert torch.equal(x[0, 0], lm.embed_tokens.weight[tokenizer.bos_token_id])


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        curves.parse(["text", "--batch", "0"])
