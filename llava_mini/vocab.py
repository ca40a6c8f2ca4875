"""The closed vocabulary of ShapesWorld's language: every token the world, the teacher and the chat
templates can write, and nothing else.

Real LLaVA inherits Vicuna's 32K-token SentencePiece vocabulary; a toy world needs only a few hundred
words, so the tokenizer (`llava_mini.tokenizer`) is word-level over `WORDS`, splitting text with
`TOKEN_PATTERN`. `WORDS` is derived from the templates and word lists of `world` and `teacher`, so a new
phrasing there cannot silently fall out of the vocabulary.

Text conventions for everything generated: single spaces between tokens, no space before `. , ? : ; ! ]`,
no space after `[`; questions and the teacher's sentences start with a capital letter, captions and short
answers are lower-case.
"""

from __future__ import annotations

import difflib
import re

from llava_mini import teacher, world

# A token: a decimal number, an integer, a word (with an optional 's-style suffix), a newline, or one
# punctuation character.
WORD_PATTERN = r"[A-Za-z]+(?:'[a-z]+)?"
TOKEN_PATTERN = rf"\d+\.\d+|\d+|{WORD_PATTERN}|\n|[^\sA-Za-z0-9]"
# Vicuna v1's system prompt and roles, as used by LLaVA's `conv_vicuna_v1` chat template.
SYSTEM_PROMPT = ("A chat between a curious user and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the user's questions.")
ROLES = ("USER", "ASSISTANT")


def tokens(text: str) -> list[str]:
    """Split text into vocabulary tokens with TOKEN_PATTERN (whitespace other than newlines is dropped)."""
    return re.findall(TOKEN_PATTERN, text)


def _words() -> tuple[str, ...]:
    texts = [re.sub(r"\{\w+\}", " ", t) for t in world.TEMPLATES + teacher.TEMPLATES]  # drop the {slots}
    texts += [*world.WORDS, *teacher.WORDS, SYSTEM_PROMPT, *ROLES, ":", "\n"]
    numbers = [f"{i / 100:.2f}" for i in range(101)]  # box coordinates 0.00 ... 1.00
    digits = [str(i) for i in range(world.N_CELLS + 1)]  # counts 0 ... 9
    return tuple(sorted({tok for text in texts for tok in tokens(text)} | set(numbers) | set(digits)))


WORDS: tuple[str, ...] = _words()
_KNOWN = frozenset(WORDS)


def unknown_words(text: str) -> list[str]:
    """The tokens of `text` that are not in WORDS, each once, in order of appearance."""
    return list(dict.fromkeys(tok for tok in tokens(text) if tok not in _KNOWN))


# Ordinary variants of known words that a learner types: the spelling of the other side of the Atlantic.
SPELLINGS = {"color": "colour", "centre": "center"}  # the only such words the vocabulary has


def respell(text: str) -> tuple[str, list[tuple[str, str]]]:
    """`text` with each unknown word that is a variant of a known one (another letter case, `SPELLINGS`)
    replaced by it, and the (typed, read as) pairs; other words are left as they are."""
    changes = []

    def known_variant(match: re.Match) -> str:
        word = match.group(0)
        if word in _KNOWN:
            return word
        spelt = SPELLINGS.get(word.lower(), word.lower())
        for candidate in (spelt, spelt.capitalize(), spelt.upper()):
            if candidate in _KNOWN:
                changes.append((word, candidate))
                return candidate
        return word

    return re.sub(WORD_PATTERN, known_variant, text), changes


def check_known(text: str) -> None:
    """Raise ValueError naming each unknown word of `text` and the known words nearest to it."""
    unknown = unknown_words(text)
    if unknown:
        hints = []
        for word in unknown:
            near = difflib.get_close_matches(word, WORDS, n=3, cutoff=0.6)
            hints.append(f"{word!r} (nearest known: {', '.join(near)})" if near else repr(word))
        raise ValueError(f"unknown word(s) {'; '.join(hints)}: the models know only the {len(WORDS)} words of "
                         "ShapesWorld (llava_mini.vocab.WORDS)")
