"""Linear probes: what does each layer of the vision encoder g know about each object?

LLaVA hands the projection W the patch tokens Z_v of one layer (paper §4.1; the penultimate, §5.2). A
linear probe asks whether an attribute of an object (its shape, its colour) can be read off those tokens
by a linear map, which is all a linear W can do. The probe reads the mean of the patch tokens that
overlap the object's box (with 48-px images and 16-px patches, exactly the token of the object's grid
cell) and is a multinomial logistic regression fitted with L-BFGS, as in CLIP's linear-probe evaluation
(Radford et al., 2021); it is deterministic and takes about a second. Measured on random-init ViTs: large
objects are linearly readable even from random features (~98%); small ones, jittered inside their cell,
are not (~65%).

`cell_probe` asks the same of every patch token, empty or not: which cell is it (the position embedding
must survive to the layer W reads, or "where is the circle?" has no answer in H_v), is an object there, and
that object's colour, shape and size. These are the words of a bound cell token (`llava_mini.cells`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from llava_mini import world
from llava_mini.vision import VisionTower

ATTRIBUTES = {"shape": world.SHAPES, "colour": world.COLOURS, "size": world.SIZES}


def patch_mask(box, image_size: int, patch_size: int) -> torch.Tensor:
    """(N,) bool: the patches (row-major) that overlap a normalised (x1, y1, x2, y2) box."""
    grid = image_size // patch_size
    edges = torch.arange(grid + 1) / grid  # patch borders in [0, 1]
    x1, y1, x2, y2 = box
    cols = (edges[1:] > x1) & (edges[:-1] < x2)  # (grid,)
    rows = (edges[1:] > y1) & (edges[:-1] < y2)  # (grid,)
    return (rows[:, None] & cols[None, :]).flatten()  # (grid * grid,)


@torch.no_grad()
def object_features(vision: VisionTower, scenes, layer: int) -> tuple[torch.Tensor, list]:
    """One feature vector per object: the mean of hidden_states[layer]'s patch tokens over its box."""
    cfg = vision.config
    hidden = vision.eval()(world.pixel_values(world.render_batch(scenes, cfg.image_size)))[0][layer]
    patches = hidden[:, 1:]  # (B, N, D): drop CLS
    feats, objects = [], []
    for tokens, scene in zip(patches, scenes):
        for obj in scene.objects:
            mask = patch_mask(obj.box, cfg.image_size, cfg.patch_size)  # (N,)
            feats.append(tokens[mask].mean(0))
            objects.append(obj)
    return torch.stack(feats), objects  # (n_objects, D)


def fit_logistic(x: torch.Tensor, labels: torch.Tensor, n_classes: int, l2: float = 1e-3, max_iter: int = 200):
    """Multinomial logistic regression fitted with L-BFGS (CLIP's linear-probe protocol); returns a predict
    function. Features are standardised; the fit runs in float64, so it is deterministic and converges."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = ((x - mean) / std).double()  # (n, D)
    weight = torch.zeros(z.shape[1], n_classes, dtype=torch.double, requires_grad=True)  # (D, C)
    bias = torch.zeros(n_classes, dtype=torch.double, requires_grad=True)  # (C,)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(z @ weight + bias, labels) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)

    def predict(x_new: torch.Tensor) -> torch.Tensor:
        return (((x_new - mean) / std).double() @ weight.detach() + bias.detach()).argmax(1)

    return predict


def probe(vision: VisionTower, attribute: str = "shape", layer: int = -2, n_train: int = 2000,
          n_test: int = 500) -> dict[str, float]:
    """Probe accuracy for one attribute at one layer, overall and for small and large objects.

    Train scenes come from the train split, test scenes from the validation split, all with 2-3 objects.
    """
    if attribute not in ATTRIBUTES:
        raise KeyError(f"unknown attribute {attribute!r}; expected one of {', '.join(ATTRIBUTES)}")
    classes = ATTRIBUTES[attribute]

    def dataset(split: str, n: int):
        scenes = [world.sample_scene(s, n_objects=2 + s % 2) for s in world.split_seeds(split, n)]
        x, objects = object_features(vision, scenes, layer)
        y = torch.tensor([classes.index(getattr(o, attribute)) for o in objects])
        return x, y, np.array([o.size for o in objects])

    x, y, _ = dataset("train", n_train)
    predict = fit_logistic(x, y, len(classes))
    x, y, sizes = dataset("val", n_test)
    correct = (predict(x) == y).numpy()
    result = {"all": float(correct.mean())}
    for size in world.SIZES:
        result[size] = float(correct[sizes == size].mean())
    return result


@torch.no_grad()
def patch_labels(vision: VisionTower, scenes, layer: int) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Every patch token of hidden_states[layer] (CLS dropped), flattened to (B·N, D), with its labels: `cell`
    (its index, row-major), `occupied`, and the colour, shape and size of the object whose centre lies in it
    (-1 when empty)."""
    cfg = vision.config
    grid = cfg.image_size // cfg.patch_size
    hidden = vision.eval()(world.pixel_values(world.render_batch(scenes, cfg.image_size)))[0][layer]
    patches = hidden[:, 1:]  # (B, N, D)
    n = patches.shape[1]
    labels = {key: np.full((len(scenes), n), -1) for key in ("occupied", *ATTRIBUTES)}
    labels["cell"] = np.tile(np.arange(n), (len(scenes), 1))
    labels["occupied"][:] = 0
    for b, scene in enumerate(scenes):
        for obj in scene.objects:
            x1, y1, x2, y2 = obj.box
            index = int((y1 + y2) / 2 * grid) * grid + int((x1 + x2) / 2 * grid)
            labels["occupied"][b, index] = 1
            for attribute, classes in ATTRIBUTES.items():
                labels[attribute][b, index] = classes.index(getattr(obj, attribute))
    return patches.reshape(-1, patches.shape[-1]), {k: v.reshape(-1) for k, v in labels.items()}  # (B·N, D)


def cell_probe(vision: VisionTower, layer: int = -2, n_train: int = 1000, n_test: int = 300) -> dict[str, float]:
    """Linear-probe accuracy on the patch tokens of one layer: `cell` (which of the N cells, from the token
    alone), `occupied` (object or background), and for occupied patches `colour`, `shape` (also
    `shape_small`, `shape_large`) and `size`. Train scenes from the train split, test scenes from val."""
    n_cells = (vision.config.image_size // vision.config.patch_size) ** 2
    classes = {"cell": n_cells, "occupied": 2, **{k: len(v) for k, v in ATTRIBUTES.items()}}
    train = patch_labels(vision, [world.sample_scene(s) for s in world.split_seeds("train", n_train)], layer)
    test = patch_labels(vision, [world.sample_scene(s) for s in world.split_seeds("val", n_test)], layer)
    small = test[1]["size"] == ATTRIBUTES["size"].index("small")
    result = {}
    for key, n_classes in classes.items():
        keep, held = train[1][key] >= 0, test[1][key] >= 0
        predict = fit_logistic(train[0][keep], torch.from_numpy(train[1][key][keep]), n_classes)
        correct = (predict(test[0]).numpy() == test[1][key])
        result[key] = float(correct[held].mean())
        if key == "shape":
            result["shape_small"] = float(correct[held & small].mean())
            result["shape_large"] = float(correct[held & ~small].mean())
    return result
