"""llava_mini.cells: each object's words land in its cell, with the cell's position; a cell token is the sum
of its words' embeddings; only the image placeholders are replaced, and a wrong count is refused."""

import pytest
import torch

from llava_mini import cells, world
from llava_mini.lm import LanguageModel, LMConfig
from llava_mini.tokenizer import load_tokenizer

TOK = load_tokenizer()


def words(ids):
    return TOK.convert_ids_to_tokens([i for i in ids if i != cells.PAD])


def test_each_object_and_each_empty_cell_is_named_with_its_row_and_column():
    scene = next(s for s in (world.sample_scene(i) for i in range(50)) if len(s.objects) == 3)
    table = cells.cell_words(scene, TOK)
    assert len(table) == world.N_CELLS and all(len(c) == cells.WORDS_PER_CELL for c in table)
    occupied = {o.row * 3 + o.col: o for o in scene.objects}
    for index, ids in enumerate(table):
        row, col = "\u2581" + world.ROWS[index // 3], "\u2581" + world.COLUMNS[index % 3]
        o = occupied.get(index)
        want = ["\u2581" + o.size, "\u2581" + o.colour, "\u2581" + o.shape] if o else ["."]
        assert words(ids) == want + [row, col]


def test_cell_tokens_are_summed_word_embeddings_in_the_placeholders_only():
    lm = LanguageModel(LMConfig(len(TOK), dim=16, layers=1, heads=2))
    image = TOK.image_token_id
    ids = torch.tensor([[TOK.bos_token_id] + [image] * 9 + [TOK.eos_token_id]] * 2)  # (2, 11)
    table = torch.tensor([cells.cell_words(world.sample_scene(s), TOK) for s in (3, 4)])  # (2, 9, 5)
    x = cells.fill(lm.embed_tokens, ids, table, image)
    assert x.shape == (2, 11, 16)
    for b in range(2):
        for cell in range(9):
            present = [w for w in table[b, cell].tolist() if w != cells.PAD]
            assert torch.allclose(x[b, 1 + cell], lm.embed_tokens.weight[present].sum(0))
        assert torch.equal(x[b, 0], lm.embed_tokens.weight[TOK.bos_token_id])
        assert torch.equal(x[b, -1], lm.embed_tokens.weight[TOK.eos_token_id])
    x.sum().backward()
    assert lm.embed_tokens.weight.grad[table[0, 0, 0]].abs().sum() > 0  # the sums train the word embeddings


def test_a_sequence_without_nine_placeholders_is_refused():
    lm = LanguageModel(LMConfig(len(TOK), dim=16, layers=1, heads=2))
    ids = torch.tensor([[TOK.bos_token_id] + [TOK.image_token_id] * 8])
    table = torch.tensor([cells.cell_words(world.sample_scene(3), TOK)])
    with pytest.raises(ValueError, match="needs 9 image placeholders"):
        cells.fill(lm.embed_tokens, ids, table, TOK.image_token_id)
