"""ShapesWorld: the toy stand-in for LLaVA's COCO images and their annotations.

LLaVA §3 turns every COCO image into a *symbolic context* that a text-only GPT-4 can read: the image's
captions and its boxes written as `category: [x1, y1, x2, y2]`. ShapesWorld gives the same two views of
one seeded scene:

    sample_scene(seed) -> Scene            the ground truth: 1-3 objects on a 3x3 grid
    render(scene)      -> (H, W, 3) uint8   the image X_v the vision tower sees
    symbolic_context(scene)                 5 captions + boxes, all the teacher may read

A scene holds at most one object per grid cell, so objects never overlap. Everything is drawn from
`numpy.random.default_rng(seed)`, so a seed names the same scene, image and texts on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

COLOURS = ("red", "green", "blue", "yellow", "purple")
SHAPES = ("circle", "square", "triangle", "cross", "diamond")
SIZES = ("small", "large")
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "center", "right")
# One canonical phrase per cell, used in captions and as the answer to "Where is ...?".
POSITIONS = tuple(
    tuple("center" if (row, col) == ("middle", "center") else f"{row} {col}" for col in COLUMNS) for row in ROWS
)
MAX_OBJECTS = 3
N_CELLS = len(ROWS) * len(COLUMNS)
# The co-occurrence knob's designated shape pairs (POPE's "objects that appear together"): with probability
# `cooccurrence` a scene of 2+ objects contains one of these pairs. Diamonds have no partner: the control.
COOCCURRING = (("circle", "triangle"), ("square", "cross"))
# Splits are disjoint seed ranges; a scene's id is its seed.
SPLITS = {"train": range(0, 1_000_000), "val": range(1_000_000, 1_100_000), "test": range(1_100_000, 1_200_000)}

RGB = {"red": (220, 50, 50), "green": (50, 190, 70), "blue": (60, 100, 235), "yellow": (235, 215, 40),
       "purple": (160, 70, 210)}
BACKGROUND = 24  # dark grey, the same in all three channels
NOISE_STD = 8.0  # Gaussian pixel noise, in 0-255 units
# Object side in hundredths of the image side: a small object is 7.0-8.0 px at 32 px (so at least 6 px
# across on the pixel grid, whatever its shape), a large one 9.3-10.2 px; a cell is 10.7 px.
EXTENT = {"small": (22, 25), "large": (29, 32)}
# The size every zoo model reads and `llava-mini data` exports: 48 px and 16-px patches give one image token
# per cell of the 3x3 grid (`recipe.VISION`).
IMAGE_SIZE = 48
MIN_IMAGE_SIZE = 32  # below this a small object drops under 7 px and may be less than 6 px across
# Normalisation for the vision tower, measured on 10,000 train images (see `pixel_values`).
PIXEL_MEAN = (0.1414, 0.1338, 0.1320)
PIXEL_STD = (0.1750, 0.1484, 0.1578)

# Every phrasing the world writes ({slots} are filled with the word lists above); vocab.py reads these.
BOX = "{colour} {shape}: [{x1}, {y1}, {x2}, {y2}]"
PHRASES = {
    "full": "a {size} {colour} {shape} in the {position}",
    "located": "in the {position} there is a {size} {colour} {shape}",
    "sized": "a {size} {colour} {shape}",
    "plain": "a {colour} {shape}",
}
COUNT_PHRASES = ("there is one shape:", "there are two shapes:", "there are three shapes:")
CAPTIONS = ("{full}.", "{count} {full}.", "{located}.", "{plain} on a dark background.", "an image of {sized}.")
TEMPLATES = (BOX, *PHRASES.values(), *COUNT_PHRASES, *CAPTIONS, "{a}, {b} and {c}")
WORDS = COLOURS + SHAPES + SIZES + ROWS + COLUMNS


@dataclass(frozen=True)
class Object:
    """One shape. `box` = (x1, y1, x2, y2), normalised to [0, 1], 2 decimals; it lies inside cell (row, col)."""

    colour: str
    shape: str
    size: str
    row: int
    col: int
    box: tuple[float, float, float, float]

    @property
    def position(self) -> str:
        return POSITIONS[self.row][self.col]


@dataclass(frozen=True)
class Scene:
    seed: int
    objects: tuple[Object, ...]  # in reading order (row, then column)


@dataclass(frozen=True)
class SymbolicContext:
    """What LLaVA's text-only GPT-4 sees instead of the image (§3): captions and boxes, nothing else."""

    captions: tuple[str, ...]
    boxes: tuple[str, ...]


def _check(kind: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}; expected one of {', '.join(allowed)}")


def _check_spec(spec, what: str) -> None:
    if not isinstance(spec, (tuple, list)) or len(spec) not in (2, 3):
        raise ValueError(f"{what} entries must be (colour, shape) or (colour, shape, size); got {spec!r}")
    for kind, value, allowed in zip(("colour", "shape", "size"), spec, (COLOURS, SHAPES, SIZES)):
        _check(kind, value, allowed)


def place(spec, cell: int, rng: np.random.Generator) -> Object:
    """A (colour, shape, size) object in cell 0..8 (row-major), its size and position jittered inside the cell.

    Column (or row) k spans hundredths ceil(100k/3)..floor(100(k+1)/3) of the image side."""
    _check_spec(spec, "place")
    if not 0 <= cell < N_CELLS:
        raise ValueError(f"cell must be 0..{N_CELLS - 1} (row-major over the 3x3 grid); got {cell}")
    colour, shape, size = spec
    side = int(rng.integers(EXTENT[size][0], EXTENT[size][1] + 1))
    row, col = divmod(cell, 3)
    x1, y1 = (int(rng.integers(-(-100 * k // 3), 100 * (k + 1) // 3 - side + 1)) for k in (col, row))
    box = tuple(round(v / 100, 2) for v in (x1, y1, x1 + side, y1 + side))
    return Object(colour, shape, size, row, col, box)


def sample_scene(seed: int, n_objects: int | None = None, held_out=(), cooccurrence: float = 0.0,
                 require=()) -> Scene:
    """Sample a scene of `n_objects` (default: 1-3 at random) in distinct cells.

    held_out:     (colour, shape) combinations the sampler never produces.
    cooccurrence: probability that a scene of 2+ objects contains one `COOCCURRING` shape pair.
    require:      (colour, shape[, size]) objects the scene must contain, even if held out (for OOD sets).
    """
    for spec in held_out:
        _check_spec(spec, "held_out")
        if len(spec) != 2:
            raise ValueError(f"held_out entries are (colour, shape) pairs; got {spec!r}")
    for spec in require:
        _check_spec(spec, "require")
    if not 0.0 <= cooccurrence <= 1.0:
        raise ValueError(f"cooccurrence is a probability in [0, 1]; got {cooccurrence}")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, MAX_OBJECTS + 1)) if n_objects is None else n_objects
    if not 1 <= n <= MAX_OBJECTS:
        raise ValueError(f"a scene holds 1 to {MAX_OBJECTS} objects; got n_objects={n}")
    if len(require) > n:
        raise ValueError(f"require lists {len(require)} objects but the scene has only {n}")
    excluded = {tuple(h) for h in held_out}
    allowed = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in excluded]
    if not allowed:
        raise ValueError("held_out leaves no colour-shape combination to sample")
    specs = [(r[0], r[1], r[2] if len(r) == 3 else None) for r in require]  # size None: drawn below
    if rng.random() < cooccurrence and len(specs) + 2 <= n:
        for shape in COOCCURRING[int(rng.integers(len(COOCCURRING)))]:
            colours = [c for c, s in allowed if s == shape]
            if not colours:
                raise ValueError(f"held_out removes every colour of {shape!r}, which cooccurrence needs")
            specs.append((colours[int(rng.integers(len(colours)))], shape, None))
    while len(specs) < n:
        specs.append((*allowed[int(rng.integers(len(allowed)))], None))
    specs = [(c, s, z or SIZES[int(rng.integers(len(SIZES)))]) for c, s, z in specs]
    cells = rng.choice(N_CELLS, size=n, replace=False)
    objects = sorted((place(spec, int(cell), rng) for spec, cell in zip(specs, cells)), key=lambda o: (o.row, o.col))
    return Scene(seed, tuple(objects))


def cell_of(box) -> tuple[int, int]:
    """(row, col) of the cell holding a box (its centre decides, as boxes lie inside their cell)."""
    x1, y1, x2, y2 = box
    return int((y1 + y2) / 2 * 3), int((x1 + x2) / 2 * 3)


def size_of(box) -> str:
    """'small' or 'large' from a box's width (the two `EXTENT` ranges do not overlap)."""
    return "small" if box[2] - box[0] < (EXTENT["small"][1] + EXTENT["large"][0]) / 200 else "large"


# Each shape as a mask over (u, v), coordinates relative to the box centre in units of half the side.
_MASKS = {
    "circle": lambda u, v: u**2 + v**2 <= 1,
    "square": lambda u, v: np.maximum(abs(u), abs(v)) <= 1,
    "triangle": lambda u, v: (abs(u) <= (v + 1) / 2) & (v <= 1),
    "cross": lambda u, v: (np.minimum(abs(u), abs(v)) <= 1 / 3) & (np.maximum(abs(u), abs(v)) <= 1),
    "diamond": lambda u, v: abs(u) + abs(v) <= 1,
}


def render(scene: Scene, size: int = IMAGE_SIZE, noise: float = NOISE_STD) -> np.ndarray:
    """Draw a scene as an RGB uint8 image (size, size, 3): flat shapes, jittered colours, Gaussian noise."""
    if size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size must be at least {MIN_IMAGE_SIZE} px so that a small object is at least "
                         f"6 px across; got size={size}")
    rng = np.random.default_rng([scene.seed, size])  # the pixel noise stream, separate from the scene's
    centres = (np.arange(size) + 0.5) / size  # pixel centres in [0, 1]
    image = np.full((size, size, 3), float(BACKGROUND))
    for obj in scene.objects:
        x1, y1, x2, y2 = obj.box
        half = (x2 - x1) / 2
        u = (centres[None, :] - (x1 + x2) / 2) / half  # (1, W)
        v = (centres[:, None] - (y1 + y2) / 2) / half  # (H, 1)
        mask = _MASKS[obj.shape](u, v)  # (H, W)
        image[mask] = np.array(RGB[obj.colour]) + rng.normal(0.0, 10.0, 3)
    image += rng.normal(0.0, noise, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def render_batch(scenes, size: int = IMAGE_SIZE, noise: float = NOISE_STD) -> np.ndarray:
    """Render several scenes into one (B, size, size, 3) uint8 array."""
    return np.stack([render(scene, size, noise) for scene in scenes])


def join_phrases(items: list[str]) -> str:
    """'x', 'x and y', 'x, y and z'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def symbolic_context(scene: Scene) -> SymbolicContext:
    """The 5 captions and the `colour shape: [x1, y1, x2, y2]` boxes of a scene (LLaVA §3, Table 14)."""
    words = [dict(size=o.size, colour=o.colour, shape=o.shape, position=o.position) for o in scene.objects]
    slots = {name: join_phrases([phrase.format(**w) for w in words]) for name, phrase in PHRASES.items()}
    slots["count"] = COUNT_PHRASES[len(scene.objects) - 1]
    boxes = tuple(BOX.format(colour=o.colour, shape=o.shape, **dict(zip(("x1", "y1", "x2", "y2"),
                                                                        (f"{v:.2f}" for v in o.box))))
                  for o in scene.objects)
    return SymbolicContext(tuple(caption.format(**slots) for caption in CAPTIONS), boxes)


def split_seeds(split: str, n: int, start: int = 0) -> range:
    """Seeds start..start+n-1 of a split (a scene's seed is its id)."""
    if split not in SPLITS:
        raise KeyError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    seeds = SPLITS[split]
    if n < 0 or start < 0 or start + n > len(seeds):
        raise ValueError(f"the {split} split has {len(seeds)} seeds; asked for {n} from index {start}")
    return seeds[start:start + n]


def pixel_values(images) -> torch.Tensor:
    """uint8 image(s) (H, W, 3) or (B, H, W, 3) -> float (B, 3, H, W) = (x / 255 - PIXEL_MEAN) / PIXEL_STD."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]  # (1, H, W, 3)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ValueError(f"expected uint8 images of shape (H, W, 3) or (B, H, W, 3); got {x.dtype} {x.shape}")
    pixels = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W)
    mean, std = torch.tensor(PIXEL_MEAN)[:, None, None], torch.tensor(PIXEL_STD)[:, None, None]  # (3, 1, 1)
    return (pixels - mean) / std
