"""Chatting with a LlavaMini about one image: the multi-turn loop of LLaVA's demo, at toy scale.

The image goes into the first user turn as `<image>\\n` + question (LLaVA's layout); later turns are text.
Each answer is greedy and ends at `</s>`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from llava_mini import world, zoo
from llava_mini.conversation import build_prompt
from llava_mini.tokenizer import load_tokenizer


def read_image(path: str, size: int, log=None) -> np.ndarray:
    """An image file as an RGB uint8 array (size, size, 3). Another size is resized the way the exported
    `CLIPImageProcessor` does it (shortest edge to `size`, bicubic, then a centre crop), and `log` is told."""
    image = Image.open(path).convert("RGB")
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
            pixels = read_image(image, size, log=lambda note: print(note, file=sys.stderr))
        else:
            pixels = world.render(world.sample_scene(scene), size)
        return cls(model, pixels)

    def ask(self, question: str, max_new_tokens: int = 160) -> str:
        """The model's greedy answer to the next question; the turn is kept for the following ones."""
        tokenizer = load_tokenizer()
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
        print(session.ask(line.strip(), max_new_tokens), flush=True)
