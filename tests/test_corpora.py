"""llava_mini.corpora: the bound-cell corpus of vicuna-mini, its batches and its loss."""

import pytest
import torch

from llava_mini import cells, corpora, world
from llava_mini.lm import LanguageModel, LMConfig
from llava_mini.teacher import Teacher
from llava_mini.tokenizer import load_tokenizer

TOK = load_tokenizer()


def test_cell_examples_keep_nine_placeholders_and_carry_their_scenes_cells():
    seeds = world.split_seeds("train", 6)
    examples = corpora.cell_examples(seeds, TOK, Teacher(answers="sentence"))
    assert len(examples) == 12  # a caption and a chat per scene
    for example, seed in zip(examples, [s for s in seeds for _ in range(2)]):
        assert example.seed is None and example.sample.input_ids.count(TOK.image_token_id) == world.N_CELLS
        assert example.cells == cells.cell_words(world.sample_scene(seed), TOK)
    chat = TOK.decode(examples[1].sample.input_ids)
    assert "ASSISTANT: The " in chat or "ASSISTANT: There " in chat or "ASSISTANT: yes, " in chat \
        or "ASSISTANT: No, " in chat or "ASSISTANT: A " in chat  # sentence answers


def test_the_cell_reader_s_loss_reads_the_cells():
    """The loss of a batch changes when each chat gets another scene's cells, and its gradient reaches the
    word embeddings the cells are made of."""
    torch.manual_seed(0)
    lm = LanguageModel(LMConfig(len(TOK), dim=32, layers=1, heads=2))
    examples = corpora.cell_examples(world.split_seeds("train", 8), TOK)
    batch = next(corpora.Batches(examples, TOK, 8, seed=0))
    assert batch["cells"].shape == (8, world.N_CELLS, cells.WORDS_PER_CELL) and "pixel_values" not in batch
    reader = cells.CellReader(lm, TOK.image_token_id)
    loss = reader(**batch).loss
    loss.backward()
    colour = TOK.convert_tokens_to_ids("\u2581" + world.COLOURS[0])
    assert lm.embed_tokens.weight.grad[colour].abs().sum() > 0
    shuffled = dict(batch, cells=batch["cells"].roll(1, dims=0))
    assert not torch.isclose(reader(**shuffled).loss, loss)


def test_captions_every_keeps_every_chat_and_a_caption_of_every_kth_scene():
    seeds = world.split_seeds("train", 8)
    examples = corpora.cell_examples(seeds, TOK, captions_every=4)
    plain = [e for e in examples if "?" not in TOK.decode(e.sample.input_ids)]
    assert len(examples) == 8 + 2 and len(plain) == 2
    assert [e.cells for e in plain] == [cells.cell_words(world.sample_scene(s), TOK) for s in seeds[::4]]
    with pytest.raises(ValueError, match="captions_every"):
        corpora.cell_examples(seeds, TOK, captions_every=0)
