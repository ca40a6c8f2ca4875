"""Vicuna-v1 and plain templates: labels by construction, no tokenization mismatch, truncation, collation."""

import random

import pytest
import torch

from llava_mini import vocab
from llava_mini.conversation import (
    IGNORE_INDEX,
    SYSTEM_PROMPT,
    Sample,
    build_chat,
    build_plain,
    build_prompt,
    collate,
    render_chat,
)
from llava_mini.tokenizer import IMAGE, encode, load_tokenizer

N = 5  # image tokens per image in these tests
TURNS = [
    {"from": "human", "value": "<image>\nWhat colour is the circle?"},
    {"from": "gpt", "value": "red"},
    {"from": "human", "value": "How many shapes are there?"},
    {"from": "gpt", "value": "two."},
]
WORDS = [w for w in vocab.WORDS if w != "\n"]  # a text starts with a word; "\n" may follow


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def random_text(rng, max_words=8):
    """Words of the vocabulary joined with the world's spacing: none before . , ? : ; ! ], none after [."""
    text = ""
    for word in [rng.choice(WORDS)] + rng.choices(vocab.WORDS, k=rng.randint(0, max_words)):
        glue = not text or word in ".,?:;!]" or text.endswith(("[", "\n"))
        text += word if glue else " " + word
    return text


def random_chat(rng, max_rounds=4, max_images=3):
    turns = []
    for _ in range(rng.randint(1, max_rounds)):
        question = random_text(rng)
        for _ in range(rng.choice([0, 0, 1, 1, 1, max_images])):  # image anywhere: head, tail, inside
            where = rng.choice(["head", "tail"])
            question = f"{IMAGE}\n{question}" if where == "head" else f"{question} {IMAGE}"
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": random_text(rng)}]
    return turns


def image_positions(sample, tok):
    return [i for i, t in enumerate(sample.input_ids) if t == tok.image_token_id]


def test_render_chat_layout():
    assert render_chat(TURNS, system="SYS") == (
        "SYS USER: <image>\nWhat colour is the circle? ASSISTANT: red</s>"
        "USER: How many shapes are there? ASSISTANT: two.</s>"
    )
    assert render_chat(TURNS[:1], system="") == "USER: <image>\nWhat colour is the circle? ASSISTANT:"
    assert render_chat(TURNS).startswith(SYSTEM_PROMPT + " USER: ")


def test_labels_supervise_answers_and_their_eos_only(tok):
    sample = build_chat(TURNS, tok, N)
    supervised = [t for t, label in zip(sample.input_ids, sample.labels) if label != IGNORE_INDEX]
    assert tok.decode(supervised) == " red</s> two.</s>"
    assert len(supervised) == sum(len(encode(" " + t["value"])) + 1 for t in TURNS[1::2])
    assert sample.input_ids[0] == tok.bos_token_id and sample.labels[0] == IGNORE_INDEX
    assert [sample.labels[i] for i in image_positions(sample, tok)] == [IGNORE_INDEX] * N
    assert all(label in (IGNORE_INDEX, t) for t, label in zip(sample.input_ids, sample.labels))


@pytest.mark.parametrize("seed", range(200))
def test_segments_equal_joint_tokenization_of_random_chats(tok, seed):
    """The proof of no "tokenization mismatch": segment-built ids == tokenizing the rendered chat."""
    rng = random.Random(seed)
    turns = random_chat(rng)
    system = rng.choice([SYSTEM_PROMPT, SYSTEM_PROMPT, "", random_text(rng)])
    num_image_tokens = rng.randint(1, 9)
    text = render_chat(turns, system=system)
    sample = build_chat(turns, tok, num_image_tokens, system=system)
    assert sample.input_ids == tok(text.replace(IMAGE, IMAGE * num_image_tokens)).input_ids
    n_img = text.count(IMAGE)
    assert len(sample.input_ids) == len(tok(text).input_ids) - n_img + n_img * num_image_tokens
    assert len(image_positions(sample, tok)) == n_img * num_image_tokens
    assert all(sample.labels[i] == IGNORE_INDEX for i in image_positions(sample, tok))
    supervised = sum(label != IGNORE_INDEX for label in sample.labels)
    assert supervised == sum(len(encode(" " + t["value"])) + 1 for t in turns[1::2])
    assert tok.decode(sample.input_ids) == tok.bos_token + text.replace(IMAGE, IMAGE * num_image_tokens)
    prompt = build_prompt(turns[:-1], tok, num_image_tokens, system=system)
    assert prompt == sample.input_ids[: len(prompt)] and tok.decode(prompt).endswith(" ASSISTANT:")


def test_build_prompt_ends_with_the_assistant_tag(tok):
    prompt = build_prompt(TURNS[:3], tok, N)
    chat = build_chat(TURNS, tok, N)
    assert prompt == chat.input_ids[: len(prompt)]
    assert chat.labels[len(prompt)] != IGNORE_INDEX  # the next token is the first of answer 2
    assert tok.convert_ids_to_tokens(prompt[-2:]) == ["▁ASSISTANT", ":"]
    with pytest.raises(ValueError, match="end with a human turn"):
        build_prompt(TURNS, tok, N)


def test_plain_masks_exactly_bos_and_image_tokens(tok):
    caption = "a red circle left of a blue square."
    sample = build_plain(caption, tok, N)
    assert sample.input_ids == [tok.bos_token_id] + [tok.image_token_id] * N + encode(caption) + [tok.eos_token_id]
    assert sample.labels[: 1 + N] == [IGNORE_INDEX] * (1 + N)
    assert sample.labels[1 + N :] == sample.input_ids[1 + N :]  # caption + one end token (</s>)
    record = {"id": "0", "image": "0.png", "conversations": [
        {"from": "human", "value": "Describe this image briefly.\n<image>"}, {"from": "gpt", "value": caption}]}
    assert build_plain(record, tok, N) == sample  # the instruction is dropped, as in preprocess_plain
    assert build_plain(record["conversations"], tok, N) == sample


@pytest.mark.parametrize("bad", [TURNS, [{"from": "human", "value": "Describe this."}, TURNS[1]]])
def test_plain_rejects_records_that_are_not_one_image_caption_pair(tok, bad):
    with pytest.raises(ValueError, match="plain expects 2 turns"):
        build_plain(bad, tok, N)


def test_truncation_cuts_the_tail_but_never_image_tokens(tok):
    full = build_chat(TURNS, tok, N)
    cut = build_chat(TURNS, tok, N, max_length=len(full.input_ids) - 3)
    assert cut == Sample(full.input_ids[:-3], full.labels[:-3])
    last_image = image_positions(full, tok)[-1]
    assert build_chat(TURNS, tok, N, max_length=last_image + 1).input_ids == full.input_ids[: last_image + 1]
    with pytest.raises(ValueError, match="would cut image tokens"):
        build_chat(TURNS, tok, N, max_length=last_image)
    with pytest.raises(ValueError, match="would cut image tokens"):
        build_plain("red", tok, N, max_length=N)


def test_collate_right_and_left_padding(tok):
    long, short = build_chat(TURNS, tok, N), build_plain("red", tok, N)
    t, s = len(long.input_ids), len(short.input_ids)
    right = collate([long, short], tok.pad_token_id)
    assert all(v.shape == (2, t) and v.dtype == torch.long for v in right.values())
    assert right["input_ids"][1].tolist() == short.input_ids + [tok.pad_token_id] * (t - s)
    assert right["attention_mask"][1].tolist() == [1] * s + [0] * (t - s)
    assert right["labels"][1].tolist() == short.labels + [IGNORE_INDEX] * (t - s)
    assert right["labels"][0].tolist() == long.labels and right["attention_mask"][0].all()
    left = collate([long, build_prompt(TURNS[:1], tok, N)], tok.pad_token_id, padding_side="left")
    prompt = build_prompt(TURNS[:1], tok, N)
    assert left["input_ids"][1].tolist() == [tok.pad_token_id] * (t - len(prompt)) + prompt
    assert left["attention_mask"][1].tolist() == [0] * (t - len(prompt)) + [1] * len(prompt)
    assert (left["labels"][1] == IGNORE_INDEX).all()
    with pytest.raises(ValueError, match="padding_side"):
        collate([long], tok.pad_token_id, padding_side="middle")


@pytest.mark.parametrize(
    "turns, problem",
    [
        ([], "empty conversation"),
        ([{"from": "gpt", "value": "red"}], "starting with human"),
        ([("human", "<image>\nWhat colour is the circle?")], "dict"),
        ([TURNS[0], TURNS[0]], "alternate"),
        ([TURNS[0], {"from": "gpt", "value": "  "}], "non-empty"),
        ([TURNS[0], {"from": "gpt", "value": "<image> red"}], "cannot contain '<image>'"),
        ([{"from": "human", "value": "red</s>"}, TURNS[1]], "special token '</s>'"),
        (TURNS[:3], "must end with a gpt turn"),
    ],
)
def test_invalid_turns_raise(tok, turns, problem):
    with pytest.raises(ValueError, match=problem):
        build_chat(turns, tok, N)


def test_oov_word_in_a_turn_raises(tok):
    with pytest.raises(ValueError, match="zebra"):
        build_chat([TURNS[0], {"from": "gpt", "value": "a zebra"}], tok, N)


def test_every_exported_record_builds_without_mismatch(tok):
    """The real data (`data.scene_records`): plain and stage-1 records build as plain samples, the three
    instruction types as chats whose ids equal the joint tokenization of their rendered text."""
    from llava_mini import data

    for seed in range(50):
        records, _ = data.scene_records(seed)
        for name, batch in records.items():
            for record in batch:
                if name in ("stage1", "plain"):
                    assert build_plain(record, tok, N).labels[: 1 + N] == [IGNORE_INDEX] * (1 + N)
                    continue
                sample = build_chat(record["conversations"], tok, N, max_length=tok.model_max_length)
                text = render_chat(record["conversations"]).replace(IMAGE, IMAGE * N)
                assert sample.input_ids == tok(text).input_ids


def test_place_image_puts_the_placeholder_before_or_after_the_instruction():
    from llava_mini.conversation import place_image

    assert place_image("What colour is the square?") == "<image>\nWhat colour is the square?"
    assert place_image("<image>\nWhat colour is the square?", "after") == "What colour is the square?\n<image>"
    assert place_image("What?\n<image>", "before") == "<image>\nWhat?"
    with pytest.raises(ValueError, match="image must be one of"):
        place_image("What?", "middle")
