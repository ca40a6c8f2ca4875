"""Bound cell tokens: a scene as 9 vectors, one per cell of the 3x3 grid, the form H_v can take.

With 48-px images and 16-px patches the vision tower gives one patch token Z_v per cell, and stage 1 trains W
so that H_v = W·Z_v reads like words to the LLM (paper §4.1). What form should those 9 vectors have for the
LLM to look things up in them ("what colour is the square?")? One that binds each object's attributes in one
token and says where it is: the sum of the LLM's word embeddings of the cell's

    object:  size + colour + shape + row + column     ("large" + "red" + "circle" + "top" + "left")
    empty:   "." + row + column

vicuna-mini is pre-trained (text only, as Vicuna is) on chats whose image placeholders are filled with these
sums; a linear map from patch features onto them is what W has to learn, and its least-squares solution is a
yardstick for stage 1 (notebook 04). Scenes given as a *textual* description were never read by lookup in
the project's measurements; bound tokens with the cell's position words were (docs/recipe_log.md).
"""

from __future__ import annotations

import torch

from llava_mini import world

WORDS_PER_CELL = 5  # size, colour, shape, row, column; an empty cell fills 3 and pads the rest
PAD = -1  # a missing word: contributes nothing to the sum


def cell_words(scene: world.Scene, tokenizer) -> list[list[int]]:
    """The word ids of each cell, row by row: (9, WORDS_PER_CELL), padded with PAD."""

    def word(text: str) -> int:  # the id of a word as it reads inside a sentence (after a space)
        return tokenizer.convert_tokens_to_ids("\u2581" + text)

    dot = tokenizer.convert_tokens_to_ids(".")
    cells = [[dot, word(world.ROWS[r]), word(world.COLUMNS[c]), PAD, PAD] for r in range(3) for c in range(3)]
    for o in scene.objects:
        cells[o.row * 3 + o.col] = [word(o.size), word(o.colour), word(o.shape), word(world.ROWS[o.row]),
                                    word(world.COLUMNS[o.col])]
    return cells


def embed_cells(embed_tokens: torch.nn.Embedding, cells: torch.Tensor) -> torch.Tensor:
    """(B, 9, WORDS_PER_CELL) word ids -> (B, 9, D): each cell the sum of its words' embeddings."""
    words = embed_tokens(cells.clamp(min=0)) * (cells != PAD).unsqueeze(-1)  # (B, 9, W, D)
    return words.sum(2)


def fill(embed_tokens: torch.nn.Embedding, input_ids: torch.Tensor, cells: torch.Tensor,
         image_token_id: int) -> torch.Tensor:
    """inputs_embeds (B, T, D) for the LLM: token embeddings, each sequence's 9 image placeholders replaced
    by its cell tokens (as `LlavaMini` replaces them by H_v)."""
    placeholders = input_ids == image_token_id  # (B, T)
    found = placeholders.sum(1)
    if not torch.all(found == cells.shape[1]):
        raise ValueError(f"each sequence needs {cells.shape[1]} image placeholders, one per cell; found "
                         f"{found.tolist()}")
    x = embed_tokens(input_ids)  # (B, T, D)
    return x.masked_scatter(placeholders.unsqueeze(-1), embed_cells(embed_tokens, cells).to(x.dtype))


class CellReader(torch.nn.Module):
    """The LLM reading a scene given as cell tokens: its input is `fill`ed token embeddings, its output (and
    loss, with labels) the LLM's own. It holds no parameters of its own, so training it trains the LLM; it is
    how vicuna-mini is pre-trained and asked about cell tokens."""

    def __init__(self, lm, image_token_id: int):
        super().__init__()
        self.lm, self.image_token_id = lm, image_token_id

    def forward(self, input_ids: torch.Tensor, cells: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, num_items_in_batch=None):
        """input_ids (B, T) with 9 image placeholders each; cells (B, 9, WORDS_PER_CELL) word ids."""
        embeds = fill(self.lm.embed_tokens, input_ids, cells, self.image_token_id)  # (B, T, D)
        return self.lm(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels,
                       num_items_in_batch=num_items_in_batch)
