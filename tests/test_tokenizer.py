"""The word-level fast tokenizer: fixed ids, exact round trip, OOV errors, save/load, chat template."""

import importlib.util

import pytest
from transformers import AutoTokenizer

from llava_mini import vocab
from llava_mini.conversation import build_chat, render_chat
from llava_mini.tokenizer import SPACE, SYSTEM_PROMPT, build_tokenizer, decode, encode, load_tokenizer

TEXTS = [
    "red circle: [0.12, 0.40, 0.55, 0.90]",
    "<image>\nWhat colour is the circle?",
    SYSTEM_PROMPT.replace(". ", ".\n"),
    "USER: <image>\nHow many shapes are there? ASSISTANT: two.</s>USER: Is there a red square?",
    "There are 3 objects in the image. The photo's key features: 0.00, 1.00 and 9.",
]


def as_messages(turns, system=None):
    """LLaVA's human/gpt turns as Hugging Face chat messages."""
    messages = [{"role": "system", "content": system}] if system is not None else []
    return messages + [{"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]} for t in turns]


def test_special_ids_and_word_order():
    tok = build_tokenizer(["red", "blue", "."])
    specials = [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.image_token_id]
    assert specials == [0, 1, 2, 3, 4]
    words = [".", "blue", "red"]  # sorted
    assert tok.convert_ids_to_tokens(list(range(len(tok)))) == [
        "<pad>", "<s>", "</s>", "<unk>", "<image>", SPACE, *words, *(SPACE + w for w in words)
    ]
    assert tok.padding_side == "right" and tok.model_max_length == 512
    assert load_tokenizer().convert_tokens_to_ids(list(vocab.WORDS)) == list(range(6, 6 + len(vocab.WORDS)))


@pytest.mark.parametrize("bad", [["red red"], ["red", "red"], ["<s>"], [" red"], [SPACE]])
def test_build_rejects_words_that_are_not_single_tokens(bad):
    with pytest.raises(ValueError, match="single tokens"):
        build_tokenizer(bad)


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_is_exact(text):
    tok = load_tokenizer()
    ids = encode(text)
    assert decode(ids) == text
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text
    assert tok(text).input_ids == [tok.bos_token_id] + ids


def test_every_word_is_one_token_with_or_without_a_space():
    for word in vocab.WORDS:
        assert len(encode(word)) == 1 and len(encode(" " + word)) == 1, repr(word)


def test_newline_is_a_token_and_space_goes_to_the_next_token():
    tok = load_tokenizer()
    ids = encode("USER: <image>\nWhat colour")
    assert tok.convert_ids_to_tokens(ids) == ["USER", ":", SPACE, "<image>", "\n", "What", SPACE + "colour"]


def test_skip_special_tokens_drops_specials_cleanly():
    tok = load_tokenizer()
    ids = tok("<image><image>\nWhat colour is the circle? ASSISTANT: red</s>").input_ids
    assert decode(ids, skip_special_tokens=True) == "\nWhat colour is the circle? ASSISTANT: red"
    assert decode(ids) == "<s><image><image>\nWhat colour is the circle? ASSISTANT: red</s>"


def test_oov_raises_naming_the_word():
    with pytest.raises(ValueError, match="zebra"):
        encode("the zebra is red")
    tok = load_tokenizer()
    assert tok.unk_token_id in tok("the zebra is red").input_ids  # the plain HF call maps it to <unk>


def test_save_and_load_with_auto_tokenizer(tmp_path):
    tok = load_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)  # offline, no trust_remote_code
    for text in TEXTS:
        assert loaded(text).input_ids == tok(text).input_ids
        assert loaded.decode(tok(text).input_ids) == tok.decode(tok(text).input_ids)
    assert loaded.get_vocab() == tok.get_vocab()
    assert loaded.all_special_ids == tok.all_special_ids and loaded.image_token_id == 4
    assert (loaded.padding_side, loaded.model_max_length) == ("right", 512)
    messages = as_messages([{"from": "human", "value": "<image>\nWhat colour is the circle?"}])
    assert loaded.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == tok.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )


TURNS = [
    {"from": "human", "value": "<image>\nWhat colour is the circle?"},
    {"from": "gpt", "value": "red"},
    {"from": "human", "value": "How many shapes are there?"},
    {"from": "gpt", "value": "two."},
]


@pytest.mark.parametrize("system", [None, "A chat.", ""])
def test_chat_template_matches_render_chat_and_build_chat(system):
    tok = load_tokenizer()
    kwargs = {} if system is None else {"system": system}
    messages = as_messages(TURNS, system)
    # apply_chat_template tokenizes with add_special_tokens=False, so the template writes <s> itself.
    assert tok.apply_chat_template(messages, tokenize=False) == tok.bos_token + render_chat(TURNS, **kwargs)
    out = tok.apply_chat_template(messages, return_assistant_tokens_mask=True)
    sample = build_chat(TURNS, tok, num_image_tokens=1, **kwargs)
    assert out["input_ids"] == sample.input_ids
    assert out["assistant_masks"] == [int(label != -100) for label in sample.labels]  # answers + </s>


def test_chat_template_default_system_and_generation_prompt():
    tok = load_tokenizer()
    text = tok.apply_chat_template(as_messages(TURNS[:1]), add_generation_prompt=True, tokenize=False)
    assert text == f"<s>{SYSTEM_PROMPT} USER: <image>\nWhat colour is the circle? ASSISTANT:"


def test_chat_template_rejects_non_alternating_roles():
    with pytest.raises(Exception, match="alternate"):
        load_tokenizer().apply_chat_template(as_messages(TURNS[1:]), tokenize=False)


TEACHER_MISSING = importlib.util.find_spec("llava_mini.teacher") is None


@pytest.mark.skipif(TEACHER_MISSING, reason="llava_mini.teacher has not landed yet")
def test_every_teacher_output_round_trips():
    """Every text the world and the teacher write (captions, boxes, the four sample types with every noise knob,
    evaluation questions) is in the vocabulary and decodes back to itself."""
    import numpy as np

    from llava_mini import teacher, world

    rng = np.random.default_rng(0)
    teachers = [teacher.Teacher(), teacher.Teacher(hallucination=1.0, verbosity="short", max_turns=6)]
    texts = set()
    for seed in range(300):
        context = world.symbolic_context(world.sample_scene(seed))
        texts.update(context.captions + context.boxes)
        for t in teachers:
            for make in (t.brief, t.conversation, t.detail, t.complex_reasoning):
                texts.update(text for turn in make(context, rng).turns for text in turn)
        for category in teacher.CATEGORIES:
            for qa in teacher.questions(context, category, rng, n=3):
                texts.update((qa.question, qa.answer))
    for text in sorted(texts):
        assert decode(encode(text)) == text
        assert decode(encode(" " + text)) == " " + text  # as an answer after "ASSISTANT:"


def test_respell_reads_case_and_spelling_variants_as_known_words_and_leaves_the_rest():
    text, changes = vocab.respell("what color is the Circle in the centre? Is there an elephant?")
    assert text == "What colour is the circle in the center? Is there an elephant?"
    assert changes == [("what", "What"), ("color", "colour"), ("Circle", "circle"), ("centre", "center")]
    assert vocab.respell("What colour is the circle?") == ("What colour is the circle?", [])
    with pytest.raises(ValueError, match=r"'elephant': the models know only"):
        vocab.check_known(text)
    with pytest.raises(ValueError, match=r"'sqare' \(nearest known: square"):
        vocab.check_known("What colour is the sqare?")
    vocab.check_known("What colour is the square?")  # known words: no error
