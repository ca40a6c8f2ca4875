"""LLaVA's two conversation templates, with ids and labels built by construction.

LLaVA paper §4.2, eq. (2), the training sequence: X_system, then per turn
`USER: X_instruct ASSISTANT: X_a <STOP>`; eq. (3): the loss is on X_a and <STOP> only. Our layouts:

- Vicuna-v1 chat (stage 2, `--version v1`):
  `<s>SYSTEM USER: <image>\\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT: A2</s>`.
  Supervised: each answer A_t and its `</s>`. Ignored (-100): `<s>`, the system prompt, every `USER: ...`
  span, every ` ASSISTANT:` tag and every image token.
- `plain` (stage 1, `--version plain`): `<s>` + N image tokens + caption + `</s>`. LLaVA ends the caption
  with "\\n" and no eos (`train.py::preprocess_plain`); we end it with `</s>` so that a captioning model
  can stop generating (the newline is still a token, used by "<image>\\n" in chats). Only `<s>` and the
  image tokens are -100.

LLaVA's `preprocess_v1` renders the whole dialogue, tokenizes it, then re-derives each round's length by
splitting the string on "</s>" and " ASSISTANT: "; when that arithmetic disagrees with the tokenizer it
masks the whole sample ("WARNING: tokenization mismatch", haotian-liu/LLaVA#661, #1166). Here every
segment is tokenized on its own and concatenated with its loss flag, so labels are right by construction.
Spaces belong to the token that follows them (see `tokenizer`): the tag is " ASSISTANT:" and the answer
" A1", whose first token is "▁A1" - the same tokens the joint tokenization of `render_chat` gives (tested).

A `<image>` in a human turn is expanded in place to N copies of the `<image>` id, the Hugging Face
convention (transformers' `LlavaProcessor`): the model overwrites those positions with the projected
features H_v = W·Z_v.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch

from llava_mini.lm import IGNORE_INDEX
from llava_mini.tokenizer import BOS, EOS, IMAGE, PAD, SYSTEM_PROMPT, UNK, encode

ROLES = ("human", "gpt")  # LLaVA's JSON speakers, rendered as USER / ASSISTANT
IMAGE_POSITIONS = ("before", "after")  # the image placeholder before the first instruction (LLaVA's order) or after

__all__ = [
    "SYSTEM_PROMPT", "IGNORE_INDEX", "Sample", "render_chat", "build_chat", "build_plain", "build_prompt", "collate",
    "place_image",
]


def place_image(instruction: str, image: str = "before") -> str:
    """The first human turn: `<image>\\nX_q` (image "before", LLaVA's order) or `X_q\\n<image>` ("after").
    A placeholder already in `instruction` (a LLaVA record's "<image>\\n" prefix) is moved, not doubled."""
    if image not in IMAGE_POSITIONS:
        raise ValueError(f"image must be one of {IMAGE_POSITIONS}, got {image!r}")
    text = instruction.replace(IMAGE + "\n", "").replace(IMAGE, "").strip()
    return f"{IMAGE}\n{text}" if image == "before" else f"{text}\n{IMAGE}"


@dataclass
class Sample:
    """One training sequence: token ids and per-position targets (IGNORE_INDEX where no loss)."""

    input_ids: list[int]
    labels: list[int]


def _check_turns(turns: Sequence[Mapping[str, str]]) -> None:
    """Raise ValueError unless turns alternate human/gpt from human, are non-empty, and images are human."""
    if not turns:
        raise ValueError("expected at least one turn, got an empty conversation")
    for i, turn in enumerate(turns):
        expected = ROLES[i % 2]
        if not isinstance(turn, Mapping):
            raise ValueError(f"turn {i}: expected a {{'from': ..., 'value': ...}} dict, got {turn!r}")
        if turn.get("from") != expected:
            raise ValueError(
                f"turn {i}: expected from={expected!r} (turns alternate human/gpt, starting with human), "
                f"got {turn.get('from')!r}"
            )
        value = turn.get("value")
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"turn {i} ({expected}): expected a non-empty string value, got {value!r}")
        if expected == "gpt" and IMAGE in value:
            raise ValueError(f"turn {i} (gpt): an answer cannot contain {IMAGE!r}, got {value!r}")
        for special in (PAD, BOS, EOS, UNK):
            if special in value:
                raise ValueError(f"turn {i} ({expected}): text cannot contain the special token {special!r}")


def _segments(turns: Sequence[Mapping[str, str]], system: str) -> Iterator[tuple[str, bool]]:
    """The Vicuna-v1 layout as (text, supervised) segments; after each human turn comes the ASSISTANT tag."""
    if system:
        yield system, False  # X_system
    for i, turn in enumerate(turns):
        if turn["from"] == "human":
            yield ("USER: " if i or not system else " USER: ") + turn["value"], False  # X_instruct
            yield " ASSISTANT:", False
        else:
            yield " " + turn["value"], True  # X_a: its first token carries the space after the tag
            yield EOS, True  # <STOP>


def render_chat(turns: Sequence[Mapping[str, str]], system: str = SYSTEM_PROMPT) -> str:
    """The chat as text, one `<image>` per image, without `<s>` (the tokenizer adds it), as in LLaVA's
    `Conversation.get_prompt()`. Turns ending with a human turn end with the " ASSISTANT:" prompt."""
    _check_turns(turns)
    return "".join(text for text, _ in _segments(turns, system))


def _tokenize(text: str, tokenizer, num_image_tokens: int) -> list[int]:
    """Ids of one segment, each `<image>` expanded to `num_image_tokens` image ids."""
    if num_image_tokens < 1:
        raise ValueError(f"num_image_tokens must be >= 1, got {num_image_tokens}")
    image_id = tokenizer.convert_tokens_to_ids(IMAGE)
    ids = []
    for i in encode(text, tokenizer):
        ids.extend([i] * num_image_tokens if i == image_id else [i])
    return ids


def _truncate(sample: Sample, image_id: int, max_length: int | None) -> Sample:
    """Cut the tail to `max_length`, never an image token (cutting one gives transformers#36002's
    "Image features and image tokens do not match")."""
    if max_length is None or len(sample.input_ids) <= max_length:
        return sample
    if image_id in sample.input_ids[max_length:]:
        last = len(sample.input_ids) - 1 - sample.input_ids[::-1].index(image_id)
        raise ValueError(
            f"max_length={max_length} would cut image tokens (the last one is at position {last} of "
            f"{len(sample.input_ids)}); raise max_length or drop the sample, image tokens are never cut"
        )
    return Sample(sample.input_ids[:max_length], sample.labels[:max_length])


def build_chat(
    turns: Sequence[Mapping[str, str]],
    tokenizer,
    num_image_tokens: int,
    system: str = SYSTEM_PROMPT,
    max_length: int | None = None,
) -> Sample:
    """Stage-2 sample: `<s>` + Vicuna-v1 segments; loss on each answer and its `</s>` only."""
    _check_turns(turns)
    if turns[-1]["from"] != "gpt":
        raise ValueError(f"a training chat must end with a gpt turn, got {len(turns)} turns ending with human")
    input_ids, labels = [tokenizer.bos_token_id], [IGNORE_INDEX]
    for text, supervised in _segments(turns, system):
        ids = _tokenize(text, tokenizer, num_image_tokens)
        input_ids += ids
        labels += ids if supervised else [IGNORE_INDEX] * len(ids)
    return _truncate(Sample(input_ids, labels), tokenizer.convert_tokens_to_ids(IMAGE), max_length)


def build_prompt(
    turns_so_far: Sequence[Mapping[str, str]], tokenizer, num_image_tokens: int, system: str = SYSTEM_PROMPT
) -> list[int]:
    """Generation prompt: `<s>` + the chat up to and including the final " ASSISTANT:" tag."""
    _check_turns(turns_so_far)
    if turns_so_far[-1]["from"] != "human":
        raise ValueError(f"a prompt must end with a human turn, got {len(turns_so_far)} turns ending with gpt")
    ids = [tokenizer.bos_token_id]
    for text, _ in _segments(turns_so_far, system):
        ids += _tokenize(text, tokenizer, num_image_tokens)
    return ids


def build_plain(
    caption: str | Sequence[Mapping[str, str]] | Mapping,
    tokenizer,
    num_image_tokens: int,
    max_length: int | None = None,
) -> Sample:
    """Stage-1 `plain` sample: `<s>` + N image tokens + caption + `</s>`; loss on caption and `</s>`.

    `caption` is the caption itself, or a LLaVA record (or its `conversations`) of two turns, human
    `<image>` + instruction and gpt caption; like LLaVA's `preprocess_plain`, the instruction is dropped.
    """
    if not isinstance(caption, str):
        turns = caption["conversations"] if isinstance(caption, Mapping) else caption
        _check_turns(turns)
        if len(turns) != 2 or IMAGE not in turns[0]["value"]:
            raise ValueError(f"plain expects 2 turns with {IMAGE!r} in the human one, got {len(turns)}: {turns!r}")
        caption = turns[1]["value"]
    _check_turns([{"from": "human", "value": IMAGE}, {"from": "gpt", "value": caption}])
    input_ids = [tokenizer.bos_token_id] + _tokenize(IMAGE, tokenizer, num_image_tokens)
    answer = _tokenize(caption + EOS, tokenizer, num_image_tokens)
    sample = Sample(input_ids + answer, [IGNORE_INDEX] * len(input_ids) + answer)
    return _truncate(sample, tokenizer.convert_tokens_to_ids(IMAGE), max_length)


def collate(
    samples: Sequence[Sample | Sequence[int]], pad_id: int, padding_side: str = "right"
) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest sample: `input_ids`, `attention_mask`, `labels` (B, T) long tensors.

    Padding gets attention 0 and label IGNORE_INDEX. Right padding for training (LLaVA's collator);
    left padding for batched generation, so every prompt ends at the last position (transformers#28184).
    A bare id list (a `build_prompt` result) counts as a sample with no supervised token.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if not samples:
        raise ValueError("expected at least one sample, got an empty batch")
    samples = [s if isinstance(s, Sample) else Sample(list(s), [IGNORE_INDEX] * len(s)) for s in samples]
    width = max(len(s.input_ids) for s in samples)

    def pad(row: list[int], fill: int) -> list[int]:
        fills = [fill] * (width - len(row))
        return row + fills if padding_side == "right" else fills + row

    batch = {
        "input_ids": [pad(s.input_ids, pad_id) for s in samples],
        "attention_mask": [pad([1] * len(s.input_ids), 0) for s in samples],
        "labels": [pad(s.labels, IGNORE_INDEX) for s in samples],
    }
    return {key: torch.tensor(rows, dtype=torch.long) for key, rows in batch.items()}  # each (B, T)
