"""What the training jobs read, as batches: the LM corpora here; LLaVA's stage-1 and stage-2 data are
`llava_mini.stages.examples`, built from the same records (`records`: LLaVA's JSON format from
`data.scene_records`, turned into ids and labels by `conversation`).

vicuna-mini, the frozen LLM of stage 1, must already know how to read a prefix and answer from it, as
Vicuna does. Its corpus (`cell_examples`) is built from the same records with the image placeholders kept,
one per grid cell, and filled with the scene's cell tokens (`llava_mini.cells`: the sum of the words of what
each cell holds), the form H_v = W·Z_v can take; stage 1 then only has to teach W to write H_v in a form the
LLM already reads. The contrast LM (`plain-lm`, `lm_examples("plain")`) sees the captions and chats with no
scene at all. `lm_examples("context")` replaces the image by a *textual* scene description (the first
generation's vicuna-mini, and `tools/learning_curves.py text`): it was never read by lookup in the project's
measurements; cell tokens were (docs/recipe_log.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from llava_mini import cells, world
from llava_mini.conversation import IGNORE_INDEX, Sample, build_chat, build_plain, collate
from llava_mini.data import scene_records
from llava_mini.teacher import Teacher

LM_CORPORA = ("context", "plain")
LENGTH_GROUP = 16  # batches per length-sorted group (`Batches(group_by_length=True)`)


@dataclass
class Example:
    """One training sequence and what fills its placeholders: the image of scene `seed`, or the scene's
    cell tokens given as word ids (`cells.cell_words`), or nothing (text only)."""

    sample: Sample
    seed: int | None
    cells: list[list[int]] | None = None


def _splice(sample: Sample, image_id: int, replacement: list[int]) -> Sample:
    """Replace the run of image placeholders by `replacement` ids, which take no loss."""
    ids, labels = sample.input_ids, sample.labels
    start = ids.index(image_id)
    end = start + 1
    while end < len(ids) and ids[end] == image_id:
        end += 1
    return Sample(ids[:start] + replacement + ids[end:], labels[:start] + [IGNORE_INDEX] * len(replacement) + labels[end:])


def records(seeds, teacher: Teacher | None, kinds: tuple[str, ...]):
    """(seed, meta, record) for each record of the given kinds of each scene, in LLaVA's JSON format."""
    for seed in seeds:
        by_kind, meta = scene_records(seed, teacher)
        for kind in kinds:
            for record in by_kind[kind]:
                yield seed, meta, record


def lm_examples(corpus: str, seeds, tokenizer, teacher: Teacher | None = None) -> list[Example]:
    """Text-only LM pre-training: `context` (description -> caption; chats about a description) or `plain`."""
    if corpus not in LM_CORPORA:
        raise ValueError(f"unknown LM corpus {corpus!r}; expected one of {LM_CORPORA}")
    image_id = tokenizer.image_token_id
    out = []
    for seed, meta, record in records(seeds, teacher, ("plain", "conversation")):
        description = tokenizer.encode(meta["captions"][0], add_special_tokens=False) if corpus == "context" else []
        if record["conversations"][0]["value"] == "<image>":  # a plain record: description -> caption
            sample = build_plain(record, tokenizer, 1)
        else:
            sample = build_chat(record["conversations"], tokenizer, 1)
        out.append(Example(_splice(sample, image_id, description), None))
    return out


def cell_examples(seeds, tokenizer, teacher: Teacher | None = None, captions_every: int = 1) -> list[Example]:
    """Text-only LM pre-training on bound scenes: per scene a chat about the cells, and for every
    `captions_every`-th scene also "cells -> caption"; the 9 image placeholders hold the scene's cell tokens.

    Caption lines between the chats slow the lookup the chats teach (48k chats at a constant 3e-3: shape
    0.84 alone, 0.61 with a caption line per chat; docs/recipe_log.md), so vicuna-mini sees captions of a
    quarter of its scenes: enough for stage 1 to have captions to align W to."""
    if captions_every < 1:
        raise ValueError(f"captions_every must be a positive number of scenes, got {captions_every}")
    out = []
    for index, seed in enumerate(seeds):
        kinds = ("plain", "conversation") if index % captions_every == 0 else ("conversation",)
        words = cells.cell_words(world.sample_scene(seed), tokenizer)
        for _, _, record in records([seed], teacher, kinds):
            if record["conversations"][0]["value"] == "<image>":  # a plain record: cells -> caption
                sample = build_plain(record, tokenizer, world.N_CELLS)
            else:
                sample = build_chat(record["conversations"], tokenizer, world.N_CELLS)
            out.append(Example(sample, None, words))
    return out


class Batches:
    """Endless shuffled batches over a fixed list of examples, with their images rendered once.

    With `group_by_length`, each shuffled run of `LENGTH_GROUP` batches is sorted by sequence length before
    it is cut into batches, and the batches are shuffled again: batches hold sequences of similar length, so
    less of each step is padding (LLaVA's `group_by_modality_length`, transformers' length grouping).
    """

    def __init__(self, examples: list[Example], tokenizer, batch_size: int, seed: int = 0,
                 image_size: int = world.IMAGE_SIZE, group_by_length: bool = False):
        if not examples:
            raise ValueError("no examples to batch")
        if batch_size > len(examples):
            raise ValueError(f"batch_size {batch_size} exceeds the {len(examples)} examples")
        self.examples, self.batch_size, self.group_by_length = examples, batch_size, group_by_length
        self.lengths = np.array([len(e.sample.input_ids) for e in examples])
        self.pad_id = tokenizer.pad_token_id
        self.rng = np.random.default_rng(seed)
        seeds = sorted({e.seed for e in examples if e.seed is not None})
        self.row = {s: i for i, s in enumerate(seeds)}
        images = world.render_batch([world.sample_scene(s) for s in seeds], image_size) if seeds else None
        self.pixels = world.pixel_values(images) if seeds else None  # (n_scenes, 3, H, W)
        self.batches: list[np.ndarray] = []

    def _epoch(self) -> list[np.ndarray]:
        """One pass over the examples as a list of index batches (the last incomplete batch is dropped)."""
        order, b = self.rng.permutation(len(self.examples)), self.batch_size
        if self.group_by_length:
            group = LENGTH_GROUP * b
            order = np.concatenate([chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                                    for chunk in np.split(order, range(group, len(order), group))])
        batches = [order[i:i + b] for i in range(0, len(order) - b + 1, b)]
        return [batches[i] for i in self.rng.permutation(len(batches))] if self.group_by_length else batches

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if not self.batches:
            self.batches = self._epoch()[::-1]
        chosen = [self.examples[i] for i in self.batches.pop()]
        batch = collate([e.sample for e in chosen], self.pad_id)
        rows = [self.row[e.seed] for e in chosen if e.seed is not None]
        if rows:
            batch["pixel_values"] = self.pixels[rows]  # (B, 3, H, W)
        bound = [e.cells for e in chosen if e.cells is not None]
        if bound:
            batch["cells"] = torch.tensor(bound)  # (B, 9, cells.WORDS_PER_CELL)
        return batch
