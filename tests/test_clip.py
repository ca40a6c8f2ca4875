"""clip-mini: CLIP's symmetric InfoNCE, its temperature, shape and cell twins and duplicate-free caption batches."""

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llava_mini import clip, world
from llava_mini.tokenizer import load_tokenizer
from llava_mini.vision import VisionConfig


def unit(n: int, d: int = 8, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_contrastive_loss_is_symmetric_and_matches_its_definition():
    image, text, scale = unit(6, seed=0), unit(6, seed=1), torch.tensor(math.log(10.0))
    loss = clip.contrastive_loss(image, text, scale)
    assert torch.allclose(loss, clip.contrastive_loss(text, image, scale))  # swapping the towers: same loss
    logits = 10.0 * image @ text.T
    targets = torch.arange(6)
    expected = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    torch.testing.assert_close(loss, expected)
    assert not torch.allclose(F.cross_entropy(logits, targets), F.cross_entropy(logits.T, targets))


def test_temperature_matters_and_is_clamped():
    pairs = unit(5, seed=2)
    text = F.normalize(pairs + 0.1 * unit(5, seed=3), dim=-1)  # each caption nearest its own image
    losses = [clip.contrastive_loss(pairs, text, torch.tensor(math.log(s))).item() for s in (1.0, 10.0, 50.0)]
    assert losses[0] > losses[1] > losses[2]  # a sharper softmax rewards the right pairs more
    capped = clip.contrastive_loss(pairs, text, torch.tensor(math.log(1000.0)))
    torch.testing.assert_close(capped, clip.contrastive_loss(pairs, text, torch.tensor(math.log(100.0))))
    scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    clip.contrastive_loss(pairs, text, scale).backward()
    assert scale.grad.abs() > 0  # the temperature is learned


def test_shape_twin_differs_only_in_one_shape():
    rng = np.random.default_rng(0)
    for seed in range(200):
        scene = world.sample_scene(seed)
        twin = clip.shape_twin(scene, rng)
        changed = [(a, b) for a, b in zip(scene.objects, twin.objects) if a != b]
        assert twin.seed == scene.seed and len(twin.objects) == len(scene.objects) and len(changed) == 1
        (a, b), = changed
        assert a.shape != b.shape and (a.colour, a.size, a.row, a.col, a.box) == (b.colour, b.size, b.row, b.col, b.box)
        if seed < 20:  # same colour jitter and noise: the images differ only inside the changed box
            diff = (world.render(scene, 48) != world.render(twin, 48)).any(-1)  # (48, 48)
            rows, cols = np.nonzero(diff)
            x1, y1, x2, y2 = (round(v * 48) for v in a.box)
            assert diff.any() and rows.min() >= y1 - 1 and rows.max() <= y2 and cols.min() >= x1 - 1 and cols.max() <= x2


OBJECT = re.compile(rf"(small|large) ({'|'.join(world.COLOURS)}) ({'|'.join(world.SHAPES)})")


def test_cell_twin_moves_one_object_to_an_empty_cell():
    rng = np.random.default_rng(0)
    for seed in range(200):
        scene = world.sample_scene(seed)
        twin = clip.cell_twin(scene, rng)
        assert twin.seed == scene.seed and len(twin.objects) == len(scene.objects)
        cells = [{(o.row, o.col) for o in s.objects} for s in (scene, twin)]
        assert len(cells[1]) == len(scene.objects) and len(cells[0] - cells[1]) == 1  # one object moved, no overlap
        spec = [sorted((o.colour, o.shape, o.size) for o in s.objects) for s in (scene, twin)]
        assert spec[0] == spec[1]
        assert [(o.row, o.col) for o in twin.objects] == sorted((o.row, o.col) for o in twin.objects)


def test_caption_pool_alternates_shape_and_cell_twins():
    pool = clip.caption_pool(load_tokenizer(), 6, 48)
    assert len(pool) == 12 and all(pool.caption[2 * i] != pool.caption[2 * i + 1] for i in range(6))


def test_caption_batches_hold_twin_pairs_and_no_duplicate_caption():
    tokenizer = load_tokenizer()
    pool = clip.caption_pool(tokenizer, 12, 48)
    doubled = clip.CaptionPool(np.concatenate([pool.pixels] * 2), torch.cat([pool.ids] * 2),
                               torch.cat([pool.mask] * 2), np.concatenate([pool.caption] * 2))  # every caption twice
    batches = clip.caption_batches(doubled, 16, seed=0)
    for _ in range(20):
        b = next(batches)
        assert b["pixel_values"].shape == (16, 3, 48, 48) and b["input_ids"].shape == b["attention_mask"].shape
        captions = [tokenizer.decode(row[mask.bool()]) for row, mask in zip(b["input_ids"], b["attention_mask"])]
        assert len(set(captions)) == 16, captions
        for first, second in zip(captions[::2], captions[1::2]):  # a scene and its twin
            differ = [(x, y) for x, y in zip(first.split(), second.split()) if x != y]
            shape_twin = len(first.split()) == len(second.split()) and len(differ) == 1 and differ[0][0] in world.SHAPES
            moved = sorted(OBJECT.findall(first)) == sorted(OBJECT.findall(second)) and first != second
            assert shape_twin or moved, (first, second)
    with pytest.raises(ValueError, match="even"):
        next(clip.caption_batches(pool, 7, seed=0))


def test_one_clip_step_lowers_the_loss_on_its_batch():
    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    model = clip.ClipMini(VisionConfig(image_size=48, patch_size=16, width=32, layers=2, heads=2),
                          clip.TextConfig(len(tokenizer), dim=32, layers=1), embed_dim=16)
    b = next(clip.caption_batches(clip.caption_pool(tokenizer, 8, 48), 16, seed=0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = model(**b).loss
    for _ in range(5):
        optimizer.zero_grad()
        model(**b).loss.backward()
        optimizer.step()
    assert model(**b).loss < first
