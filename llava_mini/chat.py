"""Chatting with a LlavaMini about one image: the multi-turn loop of LLaVA's demo, at toy scale.

The image goes into the first user turn as `<image>\\n` + question (LLaVA's layout); later turns are text.
Each answer is greedy and ends at `</s>`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from llava_mini import vocab, world, zoo
from llava_mini.conversation import build_prompt
from llava_mini.tokenizer import load_tokenizer


def read_image(path: str, size: int, log=None) -> np.ndarray:
    """An image file as an RGB uint8 array (size, size, 3). Another size is resized the way the exported
    `CLIPImageProcessor` does it (shortest edge to `size`, bicubic, then a centre crop), and `log` is told."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no image file {path}")
    try:
        image = Image.open(path).convert("RGB")
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image file (expected a PNG, JPEG or another format PIL reads)") from None
    if image.size != (size, size):
        width, height = image.size
        scale = size / min(width, height)
        resized = image.resize((int(width * scale) if width > height else size,
                                int(height * scale) if height > width else size), Image.Resampling.BICUBIC)
        left, top = (resized.width - size) // 2, (resized.height - size) // 2
        image = resized.crop((left, top, left + size, top + size))
        if log:
            log(f"note: {path} is {width}x{height} px; resized to the model's {size}x{size} "
                "(shortest edge, bicubic, centre crop, as CLIPImageProcessor does)")
    return np.array(image)  # a writable copy, as torch.from_numpy wants


def _note(text: str) -> None:
    print(text, file=sys.stderr)


@dataclass
class Session:
    model: torch.nn.Module
    image: np.ndarray  # (H, W, 3) uint8
    turns: list[dict] = field(default_factory=list)

    @classmethod
    def open(cls, model_name: str, image: str | None = None, scene: int | None = None) -> Session:
        if (image is None) == (scene is None):
            raise ValueError("give exactly one of an image path and a scene seed")
        model = zoo.load(model_name, kind="llava")
        size = model.config.vision.image_size
        if image is not None:
            pixels = read_image(image, size, log=_note)
        else:
            pixels = world.render(world.sample_scene(scene), size)
        return cls(model, pixels)

    def ask(self, question: str, max_new_tokens: int = 160, log=None) -> str:
        """The model's greedy answer to the next question; the turn is kept for the following ones.

        Ordinary variants of known words ("what", "color") are read as the known word, and `log` is told;
        any other unknown word raises ValueError naming the nearest known words."""
        tokenizer = load_tokenizer()
        question, changes = vocab.respell(question)
        vocab.check_known(question)
        if changes and log:
            log("note: read " + ", ".join(f"{typed!r} as {known!r}" for typed, known in changes))
        value = ("<image>\n" + question) if not self.turns else question
        turns = self.turns + [{"from": "human", "value": value}]
        ids = build_prompt(turns, tokenizer, self.model.num_image_tokens)
        out = self.model.generate(torch.tensor([ids]), world.pixel_values(self.image), max_new_tokens=max_new_tokens,
                                  eos_token_id=tokenizer.eos_token_id)
        answer = tokenizer.decode(out[0], skip_special_tokens=True).strip()
        self.turns = turns + [{"from": "gpt", "value": answer}]
        return answer


def interactive(session: Session, max_new_tokens: int = 160) -> None:
    """Read questions from standard input until an empty line or end of input."""
    print("Ask about the image (an empty line ends the chat).", file=sys.stderr)
    for line in sys.stdin:
        if not line.strip():
            break
        try:
            print(session.ask(line.strip(), max_new_tokens, log=_note), flush=True)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
