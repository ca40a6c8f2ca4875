"""The word-level Hugging Face fast tokenizer over ShapesWorld's closed vocabulary.

LLaVA feeds Vicuna's SentencePiece tokenizer the training sequence of the paper's §4.2 (eq. 2):
X_system, then per turn `USER: X_instruct ASSISTANT: X_a <STOP>`. Our language is closed (`vocab.WORDS`),
so a word-level model suffices, but it is a real `transformers` tokenizer (a `tokenizers` `WordLevel`
model inside `PreTrainedTokenizerFast`): it saves with `save_pretrained` and loads with
`AutoTokenizer.from_pretrained` offline, no `trust_remote_code`, like Vicuna's.

Ids are fixed: `<pad>`=0, `<s>`=1 (bos), `</s>`=2 (eos, LLaVA's <STOP> for Vicuna-v1), `<unk>`=3,
`<image>`=4 (the Hugging Face placeholder: one id per image token, overwritten by projected features),
then `▁`=5 (a lone space), then every word of `vocab.WORDS` in sorted order, then every word with a
leading `▁` in the same order. So id(w) = 6 + WORDS.index(w) and id(▁w) = 6 + len(WORDS) + WORDS.index(w).

Exact decoding, the SentencePiece way: a normalizer turns every space into `▁`; the pre-tokenizer splits
on `▁?` + `vocab.TOKEN_PATTERN`, so a token carries whether a space preceded it ("red" vs "▁red", as
Llama's "red" vs "▁red"); the decoder turns `▁` back into a space and concatenates. Hence
`decode(encode(t)) == t` for any text of vocabulary words, whatever its spacing (a space no word follows,
e.g. the one before `<image>` in "USER: <image>", is the lone `▁` token). The newline is a token of its
own (TOKEN_PATTERN keeps `\\n`): "<image>\\n" heads the first user turn and LLaVA's `plain` format ends a
caption with "\\n"; ours ends it with `</s>` instead, so that generation can stop (see `conversation`).

The post-processor prepends `<s>`, as Vicuna's tokenizer does: `tokenizer(text)` gives `[bos, ...]`.
The chat template is Vicuna-v1's layout (LLaVA `conversation.py::conv_vicuna_v1`) and emits `<s>` itself,
because `apply_chat_template` tokenizes with `add_special_tokens=False` (the Llama-2 / Mistral convention).
"""

from __future__ import annotations

import functools
import re
from typing import Sequence

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from llava_mini import vocab
from llava_mini.vocab import SYSTEM_PROMPT  # Vicuna-v1's X_system (LLaVA `conv_vicuna_v1`)

PAD, BOS, EOS, UNK, IMAGE = "<pad>", "<s>", "</s>", "<unk>", "<image>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, IMAGE)  # ids 0..4, in this order
SPACE = "▁"  # U+2581, SentencePiece's marker for "a space precedes this token"
MODEL_MAX_LENGTH = 512

# Vicuna-v1 (sep style TWO): "SYSTEM USER: Q1 ASSISTANT: A1</s>USER: Q2 ASSISTANT: A2</s>".
def chat_template(bos: bool) -> str:
    """The Vicuna-v1 chat template (Jinja), the one generator of both templates: the tokenizer's (`bos=True`:
    it emits `<s>` itself, since `apply_chat_template` tokenizes without special tokens) and the exported
    processor's (`bos=False`: the tokenizer adds `<s>` when the processor tokenizes the rendered prompt).

    Content is a string, or a list of {"type": "image"} and {"type": "text", "text": ...} items joined by
    "\n" ([image, text] renders as "<image>\nQ", as in LLaVA). `{% generation %}` marks the supervised spans
    (answer + </s>) for `return_assistant_tokens_mask`."""
    return (
        ("{{- bos_token -}}" if bos else "")
        + "{%- macro render(content) -%}"
        "{%- if content is string -%}{{- content -}}{%- else -%}"
        "{%- for item in content -%}"
        "{{- '\\n' if not loop.first else '' -}}"
        "{{- '" + IMAGE + "' if item['type'] == 'image' else item['text'] -}}"
        "{%- endfor -%}{%- endif -%}"
        "{%- endmacro -%}"
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- set system = render(messages[0]['content']) -%}{%- set loop_messages = messages[1:] -%}"
        "{%- else -%}"
        "{%- set system = '" + SYSTEM_PROMPT.replace("'", "\\'") + "' -%}{%- set loop_messages = messages -%}"
        "{%- endif -%}"
        "{{- system -}}"
        "{%- for message in loop_messages -%}"
        "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
        "{{- raise_exception('roles must alternate user/assistant, starting with user') -}}"
        "{%- endif -%}"
        "{%- if message['role'] == 'user' -%}"
        "{{- (' ' if loop.first and system else '') + 'USER: ' + render(message['content']) -}}"
        "{%- else -%}"
        "{{- ' ASSISTANT:' -}}"
        "{%- generation -%}{{- ' ' + render(message['content']) + eos_token -}}{%- endgeneration -%}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- ' ASSISTANT:' -}}{%- endif -%}"
    )


CHAT_TEMPLATE = chat_template(bos=True)


def build_tokenizer(words: Sequence[str] | None = None) -> PreTrainedTokenizerFast:
    """Build the tokenizer over `words` (default `vocab.WORDS`), each of which must be one token."""
    words = tuple(vocab.WORDS if words is None else words)
    pattern = re.compile(vocab.TOKEN_PATTERN)
    bad = [w for w in words if w in (*SPECIAL_TOKENS, SPACE) or not pattern.fullmatch(w)]
    if bad or len(set(words)) != len(words):
        problem = bad or "duplicates"
        raise ValueError(f"words must be distinct single tokens of TOKEN_PATTERN, not specials; got {problem}")
    tokens = [*SPECIAL_TOKENS, SPACE, *sorted(words), *(SPACE + w for w in sorted(words))]
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token=UNK))
    backend.normalizer = normalizers.Replace(" ", SPACE)
    # The catch-all punctuation class must not swallow the space marker itself.
    word = vocab.TOKEN_PATTERN.replace(r"[^\sA-Za-z0-9]", rf"[^\sA-Za-z0-9{SPACE}]")
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(f"{SPACE}?(?:{word})"), behavior="isolated")
    backend.decoder = decoders.Replace(SPACE, " ")
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B:1", special_tokens=[(BOS, SPECIAL_TOKENS.index(BOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        extra_special_tokens={"image_token": IMAGE},
        padding_side="right",  # LLaVA trains with right padding; set "left" for batched generation
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,  # spacing is exact; never "clean" it
        chat_template=CHAT_TEMPLATE,
    )


@functools.lru_cache(maxsize=1)
def load_tokenizer() -> PreTrainedTokenizerFast:
    """The tokenizer over `vocab.WORDS`, built once and shared (do not mutate it; build your own)."""
    return build_tokenizer()


def encode(text: str, tokenizer: PreTrainedTokenizerFast | None = None) -> list[int]:
    """Ids of `text` without bos; special tokens written in the text (e.g. `<image>`) map to their ids.

    Unlike `tokenizer(text)`, an out-of-vocabulary word raises `ValueError` naming it instead of
    silently becoming `<unk>`.
    """
    tokenizer = load_tokenizer() if tokenizer is None else tokenizer
    encoding = tokenizer.backend_tokenizer.encode(text, add_special_tokens=False)
    unknown = [text[a:b].strip() for i, (a, b) in zip(encoding.ids, encoding.offsets) if i == tokenizer.unk_token_id]
    if unknown:
        raise ValueError(f"out-of-vocabulary word(s) {sorted(set(unknown))} in {text!r}")
    return encoding.ids


def decode(
    ids: Sequence[int], tokenizer: PreTrainedTokenizerFast | None = None, skip_special_tokens: bool = False
) -> str:
    """Text of `ids`, exact: `decode(encode(t)) == t`."""
    tokenizer = load_tokenizer() if tokenizer is None else tokenizer
    return tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False)
