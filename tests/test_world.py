"""ShapesWorld: seeded scenes, rendering, symbolic context, splits, pixel normalisation."""

import re
import time

import numpy as np
import pytest
import torch

from llava_mini import world
from llava_mini.world import Scene

CELLS = {"top left": (0, 0), "top center": (0, 1), "top right": (0, 2), "middle left": (1, 0), "center": (1, 1),
         "middle right": (1, 2), "bottom left": (2, 0), "bottom center": (2, 1), "bottom right": (2, 2)}


def _extent(obj, seed: int, size: int = 32) -> tuple[int, int]:
    """(width, height) in pixels of an object drawn alone without noise, measured from its mask."""
    image = world.render(Scene(seed, (obj,)), size=size, noise=0.0).astype(int)
    ys, xs = np.nonzero(np.abs(image - world.BACKGROUND).sum(-1) > 0)
    return int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def test_same_seed_same_scene_image_and_texts():
    for seed in (0, 7, 123456):
        a, b = world.sample_scene(seed), world.sample_scene(seed)
        assert a == b
        assert world.render(a).tobytes() == world.render(b).tobytes()
        assert world.symbolic_context(a) == world.symbolic_context(b)


def test_different_seeds_differ():
    images = {world.render(world.sample_scene(seed)).tobytes() for seed in range(50)}
    assert len(images) == 50
    assert len({world.sample_scene(seed).objects for seed in range(50)}) > 45


def test_scene_invariants():
    counts = np.zeros(world.MAX_OBJECTS + 1, int)
    for seed in range(2000):
        scene = world.sample_scene(seed)
        counts[len(scene.objects)] += 1
        cells = [(o.row, o.col) for o in scene.objects]
        assert len(set(cells)) == len(cells) and cells == sorted(cells)  # one per cell, reading order
        for o in scene.objects:
            x1, y1, x2, y2 = o.box
            assert all(round(v, 2) == v for v in o.box)
            assert o.col / 3 <= x1 < x2 <= (o.col + 1) / 3 and o.row / 3 <= y1 < y2 <= (o.row + 1) / 3
            assert CELLS[o.position] == (o.row, o.col)
    assert counts[0] == 0 and all(counts[1:] > 550)  # 1, 2 and 3 objects about equally often


def test_render_sizes_and_dtype():
    scene = world.sample_scene(3)
    for size in (32, 48, 64, 96):
        image = world.render(scene, size=size)
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert world.render_batch([scene, world.sample_scene(4)]).shape == (2, world.IMAGE_SIZE, world.IMAGE_SIZE, 3)


def test_small_objects_at_least_6px_and_large_clearly_bigger():
    smallest = {"small": 99, "large": 99}
    largest = {"small": 0, "large": 0}
    for seed in range(600):
        for obj in world.sample_scene(seed).objects:
            w, h = _extent(obj, seed)
            smallest[obj.size] = min(smallest[obj.size], w, h)
            largest[obj.size] = max(largest[obj.size], w, h)
    assert smallest["small"] >= 6
    assert smallest["large"] >= 8 and largest["small"] <= 8 < largest["large"]
    scene = world.sample_scene(11, n_objects=3, require=(("red", "circle", "small"),))
    small = next(o for o in scene.objects if o.size == "small")
    assert min(_extent(small, 11, size=64)) >= 12  # everything scales with the image size


def test_rendering_is_fast():
    scenes = [world.sample_scene(seed) for seed in range(1000)]
    start = time.perf_counter()
    world.render_batch(scenes)
    assert time.perf_counter() - start < 1.0


def test_held_out_combinations_are_never_sampled_unless_required():
    held_out = (("red", "circle"), ("blue", "square"))
    for seed in range(3000):
        combos = {(o.colour, o.shape) for o in world.sample_scene(seed, held_out=held_out).objects}
        assert not combos & set(held_out)
    scene = world.sample_scene(5, held_out=held_out, require=(("red", "circle"),))
    assert ("red", "circle") in {(o.colour, o.shape) for o in scene.objects}


def test_cooccurrence_knob():
    def rate(p):
        scenes = [world.sample_scene(seed, n_objects=2, cooccurrence=p) for seed in range(1000)]
        shapes = [{o.shape for o in s.objects} for s in scenes]
        return np.mean([any(set(pair) <= found for pair in world.COOCCURRING) for found in shapes])

    chance = 2 * 2 / 25  # two designated pairs, each drawn in either order
    assert rate(1.0) == 1.0
    assert abs(rate(0.0) - chance) < 0.05
    assert abs(rate(0.5) - (0.5 + 0.5 * chance)) < 0.06


def test_symbolic_context_format():
    for seed in range(200):
        scene = world.sample_scene(seed)
        context = world.symbolic_context(scene)
        assert len(context.captions) == 5 and len(set(context.captions)) == 5
        assert all(c.endswith(".") and "  " not in c for c in context.captions)
        assert len(context.boxes) == len(scene.objects)
        for line, o in zip(context.boxes, scene.objects):
            match = re.fullmatch(r"(\w+) (\w+): \[(\d\.\d\d), (\d\.\d\d), (\d\.\d\d), (\d\.\d\d)\]", line)
            assert match and match[1] == o.colour and match[2] == o.shape
            assert tuple(float(v) for v in match.groups()[2:]) == o.box
            assert world.cell_of(o.box) == (o.row, o.col) and world.size_of(o.box) == o.size
    one = world.Scene(0, (world.Object("red", "circle", "large", 0, 0, (0.01, 0.02, 0.31, 0.32)),
                          world.Object("blue", "square", "small", 1, 1, (0.40, 0.41, 0.63, 0.64))))
    context = world.symbolic_context(one)
    assert context.captions[0] == "a large red circle in the top left and a small blue square in the center."
    assert context.boxes == ("red circle: [0.01, 0.02, 0.31, 0.32]", "blue square: [0.40, 0.41, 0.63, 0.64]")


def test_splits_are_disjoint_and_split_seeds():
    ranges = list(world.SPLITS.values())
    for i, a in enumerate(ranges):
        for b in ranges[i + 1:]:
            assert a.stop <= b.start or b.stop <= a.start
    assert list(world.split_seeds("val", 3, start=2)) == [world.SPLITS["val"].start + k for k in (2, 3, 4)]
    with pytest.raises(KeyError, match="unknown split 'dev'"):
        world.split_seeds("dev", 3)
    with pytest.raises(ValueError, match="the test split has"):
        world.split_seeds("test", len(world.SPLITS["test"]) + 1)


def test_pixel_values():
    images = world.render_batch([world.sample_scene(s) for s in range(4)])
    x = world.pixel_values(images)
    assert x.shape == (4, 3, world.IMAGE_SIZE, world.IMAGE_SIZE) and x.dtype == torch.float32
    assert torch.equal(world.pixel_values(images[1]), x[1:2])
    expected = (images[2, 5, 7, 1] / 255 - world.PIXEL_MEAN[1]) / world.PIXEL_STD[1]
    assert x[2, 1, 5, 7].item() == pytest.approx(expected, abs=1e-5)
    many = world.pixel_values(world.render_batch([world.sample_scene(s) for s in range(500)]))
    assert many.mean((0, 2, 3)).abs().max() < 0.1 and (many.std((0, 2, 3)) - 1).abs().max() < 0.1
    with pytest.raises(ValueError, match="uint8"):
        world.pixel_values(images.astype(np.float32))


def test_impossible_specs_raise_clear_errors():
    with pytest.raises(ValueError, match="a scene holds 1 to 3 objects; got n_objects=4"):
        world.sample_scene(0, n_objects=4)
    with pytest.raises(ValueError, match="unknown colour 'pink'; expected one of red, green"):
        world.sample_scene(0, held_out=(("pink", "circle"),))
    with pytest.raises(ValueError, match="unknown shape 'star'"):
        world.sample_scene(0, require=(("red", "star"),))
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        world.sample_scene(0, require=(("red", "circle", "huge"),))
    with pytest.raises(ValueError, match="require lists 2 objects but the scene has only 1"):
        world.sample_scene(0, n_objects=1, require=(("red", "circle"), ("blue", "square")))
    with pytest.raises(ValueError, match="at least 32 px so that a small object is at least 6 px"):
        world.render(world.sample_scene(0), size=16)
    with pytest.raises(ValueError, match=r"cooccurrence is a probability"):
        world.sample_scene(0, cooccurrence=1.5)
