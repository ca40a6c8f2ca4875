"""Small matplotlib figures the notebooks share: LLaVA's recipe diagram (paper Figure 1) and image grids.

Plain matplotlib, no styles: every function returns the figure and leaves `plt.show()` to the notebook.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch, Rectangle

FROZEN, TRAINED, DATA = "#cfe0f3", "#f6b26b", "#eeeeee"
VISUAL, WORD = "#e69138", "#6aa84f"  # H_v tokens, H_q tokens


def _box(ax, x, y, w, h, text, colour, size=9):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.15", fc=colour, ec="black"))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)


def _arrow(ax, start, end):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", lw=1.2))


def _tokens(ax, x, y, n, colour, label):
    for i in range(n):
        ax.add_patch(Rectangle((x + 0.42 * i, y), 0.32, 0.32, fc=colour, ec="black", lw=0.6))
    ax.text(x - 0.12, y + 0.16, label, ha="right", va="center", fontsize=9)


def draw_recipe(ax, trained=("W", "f"), title: str | None = None, answer: str = "answer $X_a$") -> None:
    """LLaVA's architecture on `ax`: X_v -> g -> Z_v -> W -> H_v, X_q -> H_q, both read by f_φ -> X_a.

    `trained` names the parts that learn ("W", "f", "g"); the others are drawn as frozen. `answer` labels the
    target text (in stage 1 it is the caption).
    """
    def colour(part):
        return TRAINED if part in trained else FROZEN

    def state(part):
        return "trained" if part in trained else "frozen"

    ax.set_xlim(0, 10)
    ax.set_ylim(-0.2, 6.4)
    ax.axis("off")
    _box(ax, 0.1, 0.3, 1.4, 1.0, "image\n$X_v$", DATA)
    _box(ax, 2.1, 0.3, 2.0, 1.0, f"vision encoder $g$\n({state('g')})", colour("g"))
    _box(ax, 4.8, 0.3, 1.7, 1.0, f"projection $W$\n({state('W')})", colour("W"))
    _box(ax, 7.34, 0.3, 2.6, 1.0, "instruction $X_q$\n(word embeddings)", DATA)
    _arrow(ax, (1.5, 0.8), (2.1, 0.8))
    _arrow(ax, (4.1, 0.8), (4.8, 0.8))
    ax.text(4.45, 1.05, "$Z_v$", ha="center", fontsize=10)
    _tokens(ax, 4.85, 2.1, 4, VISUAL, "visual tokens $H_v$")
    _tokens(ax, 7.85, 2.1, 4, WORD, "$H_q$")
    _arrow(ax, (5.65, 1.3), (5.65, 2.05))
    _arrow(ax, (8.64, 1.3), (8.64, 2.05))
    _box(ax, 2.1, 3.1, 7.7, 1.0, f"language model $f_\\phi$ (Vicuna; {state('f')})", colour("f"))
    _arrow(ax, (5.65, 2.45), (5.65, 3.1))
    _arrow(ax, (8.64, 2.45), (8.64, 3.1))
    _box(ax, 4.0, 4.8, 3.9, 0.9, f"{answer} (the loss is on it)", DATA)
    _arrow(ax, (5.95, 4.1), (5.95, 4.8))
    if title:
        ax.set_title(title, fontsize=10)


def recipe_figure(stages: bool = False):
    """The architecture (one panel), or with `stages=True` stage 1 and stage 2 side by side."""
    if not stages:
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        draw_recipe(ax, trained=("W", "f"), title="LLaVA (paper §4.1, Figure 1): $H_v = W \\cdot Z_v$, $Z_v = g(X_v)$")
        return fig
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    draw_recipe(axes[0], trained=("W",), title="stage 1, feature alignment: only W trains (image-caption pairs)",
                answer="the caption, as $X_a$")
    draw_recipe(axes[1], trained=("W", "f"), title="stage 2, instruction tuning: W and $f_\\phi$ train")
    fig.tight_layout()
    return fig


def image_grid(images, titles=(), scale: float = 2.2):
    """A row of uint8 images (H, W, 3), drawn pixel for pixel, with optional titles."""
    fig, axes = plt.subplots(1, len(images), figsize=(scale * len(images), scale + 0.3), squeeze=False)
    for i, (ax, image) in enumerate(zip(axes[0], images)):
        ax.imshow(image, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if i < len(titles):
            ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    return fig
