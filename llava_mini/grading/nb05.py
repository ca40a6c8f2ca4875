"""Graders of notebook 05, the answer-token loss (`solutions/05_answer_loss.ipynb`).

- exercise 5.1 `chat_ids_and_labels(turns, tokenizer, num_image_tokens, system)`: the ids of a Vicuna-v1 chat
  and its labels, -100 everywhere but each answer and its `</s>`, built segment by segment; compared with
  `conversation.build_chat` (switched off while the learner's code runs) on the teacher's multi-turn chats.
- exercise 5.2 `pad_batch(samples, pad_id)`: right padding to (B, T) long tensors, padding never attended to
  and never supervised; compared with `conversation.collate` (switched off likewise).
- exercise 5.3 `answer_loss(logits, labels, num_items=None)`: the shifted, masked cross-entropy, summed over
  the supervised tokens and divided by their number (or by `num_items`), written without
  `F.cross_entropy` / `F.nll_loss`; compared with `lm.causal_lm_loss`, value and gradient.
- exercise 5.4 `accumulate(model, micro_batches, loss_fn)`: one optimizer step's backward passes over several
  micro-batches, each loss divided by the supervised tokens of the whole step; the parameters' `.grad` must
  equal the gradient of the one big batch.
- study question 13: the letters of the true statements (key `nb05.study_q13`).

As in notebooks 00-03: the learner's code runs through `grading.call` (an argument changed in place is named),
the reference is computed after that call, dtype and shape come before values, and where a wrong answer
matches a known mistake the hint names that mistake.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llava_mini import conversation, data, lm, train
from llava_mini.conversation import IGNORE_INDEX, Sample, build_chat, collate
from llava_mini.grading import (call, expect, expect_close, expect_dtype, expect_same_gradient, expect_shape,
                                expect_type, forbidden, grader, rng)
from llava_mini.keys import require_answer
from llava_mini.tokenizer import SYSTEM_PROMPT, load_tokenizer

# --- exercise 5.1 ----------------------------------------------------------------------------------


def _teacher_chats(seed: int, n: int) -> list[list[dict]]:
    """Multi-turn conversations of the teacher (LLaVA JSON turns) about `n` scenes from `seed` on."""
    return [data.scene_records(s)[0]["conversation"][0]["conversations"] for s in range(seed, seed + n)]


def _kinds(turns, tokenizer, num_image_tokens: int, system: str) -> list[str]:
    """What each position of build_chat's ids is: bos, system, user, image, tag, answer or stop."""
    kinds = ["bos"]
    for text, supervised in conversation._segments(turns, system):
        ids = conversation._tokenize(text, tokenizer, num_image_tokens)
        if supervised:
            kind = "stop" if text == "</s>" else "answer"
            kinds += [kind] * len(ids)
        elif text == " ASSISTANT:":
            kinds += ["tag"] * len(ids)
        else:
            kind = "system" if text == system else "user"
            kinds += ["image" if i == tokenizer.image_token_id else kind for i in ids]
    return kinds


_LABEL_HINTS = {
    "bos": "`<s>` takes no loss (nothing predicts it): its label is -100",
    "system": "the system prompt is context, not something the model learns to write: its labels are -100",
    "user": "the USER turns are the instruction X_instruct: context, labels -100 (eq. 3 conditions on them)",
    "image": "image positions take no loss: there is no 'next visual token' to predict; labels -100",
    "tag": "the ' ASSISTANT:' tag is part of the prompt the model is given at inference; its labels are -100",
    "answer": "every token of each answer X_a takes the loss: its label is its own id",
    "stop": "each answer's `</s>` takes the loss too (eq. 3's <STOP>): a model never trained on it never stops",
}


def _check_one_chat(fn, turns, tokenizer, n_img: int, system: str) -> None:
    what = f"chat_ids_and_labels(<a chat of {len(turns) // 2} rounds>, tokenizer, {n_img}, system=" \
           f"{system[:12] + '...' if system else ''!r})"
    reason = "builds the answer to this exercise; tokenize each segment yourself"
    with forbidden((conversation, "build_chat"), (conversation, "build_prompt"), reason=reason):
        got = call(lambda t, n, s: fn(t, tokenizer, n, s), turns, n_img, system, what=what)
    expect(isinstance(got, (tuple, list)) and len(got) == 2,
           f"{what} should return two lists, (input_ids, labels), got {type(got).__name__}")
    ids, labels = got
    for name, value in (("input_ids", ids), ("labels", labels)):
        expect_type(value, list, f"the {name} of {what}")
        expect(all(isinstance(v, int) and not isinstance(v, bool) for v in value),
               f"the {name} of {what} should be Python ints (`.tolist()` turns a tensor into them)")
    want = build_chat(turns, tokenizer, n_img, system)
    n_want_images = want.input_ids.count(tokenizer.image_token_id)
    if ids != want.input_ids:
        if ids.count(tokenizer.image_token_id) != n_want_images:
            hint = (f"there should be {n_want_images} image ids: each <image> becomes num_image_tokens = {n_img} "
                    "copies of tokenizer.image_token_id")
        elif ids.count(tokenizer.bos_token_id) != 1:
            hint = ("exactly one `<s>`, at the start: tokenize each segment with add_special_tokens=False, "
                    "or every segment gets a `<s>` of its own")
        else:
            hint = ("the ids should be `<s>` followed by each segment's ids (add_special_tokens=False), in the "
                    "Vicuna-v1 layout of notebook 03 (system | ' USER: ' + question | ' ASSISTANT:' | ' ' + "
                    "answer | '</s>', later turns 'USER: ')")
        at = next((i for i, (a, b) in enumerate(zip(ids, want.input_ids)) if a != b), min(len(ids), len(want.input_ids)))
        raise AssertionError(f"{what}: the input_ids differ from the expected ones at position {at} (of "
                             f"{len(want.input_ids)}); {hint}")
    expect(len(labels) == len(ids), f"{what}: labels should have one entry per input id ({len(ids)}), got "
                                    f"{len(labels)}")
    if labels != want.labels:
        shifted = want.labels[1:] + [IGNORE_INDEX]
        if labels == shifted:
            raise AssertionError(f"{what}: labels[t] should be input_ids[t] (or -100), not the next token: the "
                                 "labels stay aligned with input_ids and the loss does the shift")
        wrong = [i for i, (a, b) in enumerate(zip(labels, want.labels)) if a != b]
        kinds = _kinds(turns, tokenizer, n_img, system)
        found = list(dict.fromkeys(kinds[i] for i in wrong))  # the kinds of position that are wrong, in order
        at = wrong[0]
        raise AssertionError(f"{what}: {len(wrong)} labels are wrong, the first at position {at} (should be "
                             f"{want.labels[at]}, got {labels[at]}); " + "; ".join(_LABEL_HINTS[k] for k in found))


@grader("exercise 5.1", "chat_ids_and_labels")
def check_chat_ids_and_labels(chat_ids_and_labels) -> None:
    """Against `conversation.build_chat` on teacher chats (2-5 rounds), two image sizes, three systems."""
    tokenizer = load_tokenizer()
    seed = int(torch.randint(1000, 100_000, (), generator=rng(51)))
    chats = _teacher_chats(seed, 3)
    chats.append([{"from": "human", "value": "How many shapes are there?"}, {"from": "gpt", "value": "two"},
                  {"from": "human", "value": "<image>\nWhat colour is the circle?"},
                  {"from": "gpt", "value": "The circle is red."}])
    systems = [SYSTEM_PROMPT, "The assistant gives polite answers to the questions of the user.", SYSTEM_PROMPT, ""]
    for turns, system, n_img in zip(chats, systems, (9, 4, 9, 2)):
        _check_one_chat(chat_ids_and_labels, turns, tokenizer, n_img, system)


# --- exercise 5.2 ----------------------------------------------------------------------------------


def _samples(g: torch.Generator) -> list[Sample]:
    out = []
    for length in (7, 3, 11, 5):
        ids = torch.randint(3, 40, (length,), generator=g).tolist()
        supervised = (torch.rand(length, generator=g) > 0.5).tolist()
        supervised[0] = False
        out.append(Sample(ids, [i if s else IGNORE_INDEX for i, s in zip(ids, supervised)]))
    return out


@grader("exercise 5.2", "pad_batch")
def check_pad_batch(pad_batch) -> None:
    """Against `conversation.collate` (right padding) on four samples of different lengths."""
    samples = _samples(rng(52))
    pad_id = 0
    what = "pad_batch(samples, pad_id=0)"
    with forbidden((conversation, "collate"), reason="is the answer to this exercise"):
        got = call(pad_batch, samples, pad_id, what=what)
    expect_type(got, dict, what)
    want = collate(samples, pad_id)
    expect(set(got) >= set(want), f"{what} should have the keys {sorted(want)}, got {sorted(got)}")
    for key in ("input_ids", "attention_mask", "labels"):
        item = f"{what}[{key!r}]"
        expect_dtype(got[key], torch.long, item)
        expect_shape(got[key], tuple(want[key].shape), item)
    lengths = [len(s.input_ids) for s in samples]
    if not torch.equal(got["input_ids"], want["input_ids"]):
        left = torch.stack([torch.cat([torch.full((max(lengths) - n,), pad_id), torch.tensor(s.input_ids)])
                            for n, s in zip(lengths, samples)])
        hint = ("pad on the right, as LLaVA's training collator does: each row is the sample's ids, then pad_id"
                if torch.equal(got["input_ids"], left) else "each row is the sample's ids followed by pad_id")
        raise AssertionError(f"{what}['input_ids'] is wrong; {hint}")
    if not torch.equal(got["attention_mask"], want["attention_mask"]):
        raise AssertionError(f"{what}['attention_mask'] is wrong: 1 on the sample's own tokens, 0 on padding "
                             "(no real token may attend to a pad)")
    if not torch.equal(got["labels"], want["labels"]):
        pad = want["attention_mask"] == 0
        hint = ("padding must take no loss: its labels are -100, never pad_id (where pad_id is also the end token, "
                "a model trained on padded labels learns to emit it after every answer)"
                if (got["labels"] != want["labels"])[pad].any() else
                "each row's labels are the sample's labels, unchanged, followed by -100")
        raise AssertionError(f"{what}['labels'] is wrong; {hint}")


# --- exercise 5.3 ----------------------------------------------------------------------------------


def _loss_mistakes(logits, labels, num_items) -> dict[str, torch.Tensor]:
    logits = logits.detach().double()
    b, t, v = logits.shape

    def per_token(lg, lb):  # (N, V), (N,) -> summed NLL over lb != -100, and the count
        keep = lb != IGNORE_INDEX
        nll = -lg.log_softmax(-1).gather(-1, lb.clamp(min=0)[:, None])[:, 0]
        return (nll * keep).sum(), keep.sum()

    def divided(total, count):
        return total / (num_items if num_items is not None else count.clamp(min=1))

    unshifted = divided(*per_token(logits.flatten(0, 1), labels.flatten()))
    backwards = divided(*per_token(logits[:, 1:].flatten(0, 1), labels[:, :-1].flatten()))
    shifted_lg, shifted_lb = logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten()
    total, count = per_token(shifted_lg, shifted_lb)
    every = -shifted_lg.log_softmax(-1).gather(-1, shifted_lb.clamp(min=0)[:, None])[:, 0]
    rows = [per_token(logits[i, :-1], labels[i, 1:]) for i in range(b)]
    per_row = torch.stack([s / c.clamp(min=1) for s, c in rows if c > 0]).mean()
    own_count = {"when num_items is given, divide by it (the supervised tokens of the whole optimizer step), not "
                 "by this batch's own count": total / count.clamp(min=1)} if num_items is not None else {}
    return own_count | {
        "the labels are not shifted: position t's logits predict labels[t + 1] (use logits[:, :-1] with "
        "labels[:, 1:])": unshifted,
        "shifted the wrong way: logits[:, :-1] (positions 0..T-2) predict labels[:, 1:], not the other way "
        "round": backwards,
        "divide by the number of supervised tokens, not by every position (B·(T-1)): the masked positions "
        "would otherwise dilute the loss": total / (b * (t - 1)),
        "positions labelled -100 take no loss at all: mask them out, do not score them as token 0":
            divided(every.sum(), count),
        "average over the batch's supervised tokens, not per sequence: a sequence's weight is its number of "
        "answer tokens": per_row,
    }


def _first_known(got: torch.Tensor, mistakes: dict[str, torch.Tensor]) -> str | None:
    return next((hint for hint, value in mistakes.items()
                 if torch.allclose(got.detach().double(), value, atol=1e-5, rtol=1e-5)), None)


def _loss_case(g: torch.Generator, b: int, t: int, v: int, pad: bool, bos_label: bool):
    base = torch.randn(b, t, v, generator=g, requires_grad=True)
    logits = base * 2.0  # non-leaf: an in-place change is reported, not refused by autograd
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[torch.rand(b, t, generator=g) < 0.5] = IGNORE_INDEX  # context positions
    if not bos_label:
        labels[:, 0] = IGNORE_INDEX
    if pad:
        labels[0, t - 3:] = IGNORE_INDEX  # the first row is shorter: padding
    return base, logits, labels


@grader("exercise 5.3", "answer_loss")
def check_answer_loss(answer_loss) -> None:
    """Against `lm.causal_lm_loss`: value, dtype, shape (), gradient w.r.t. the logits; with and without
    num_items; F.cross_entropy, F.nll_loss and the package's loss switched off while the learner's code runs."""
    g = rng(53)
    cases = [(2, 7, 11, True, False, None), (3, 6, 5, False, True, None), (2, 9, 13, True, False, 40)]
    for b, t, v, pad, bos_label, num_items in cases:
        base, logits, labels = _loss_case(g, b, t, v, pad, bos_label)
        what = f"answer_loss(<({b}, {t}, {v}) logits>, labels" + (f", num_items={num_items})" if num_items else ")")
        reason = "computes this exercise's answer: write the log-softmax, the gather and the mask yourself"
        with forbidden((F, "cross_entropy"), (F, "nll_loss"), (lm, "causal_lm_loss"), reason=reason):
            got = call(answer_loss, logits, labels, num_items, what=what)
        expect_type(got, torch.Tensor, what)
        expect_dtype(got, logits.dtype, what)
        expect_shape(got, (), what)
        want = lm.causal_lm_loss(logits, labels, num_items)[0]
        hint = _first_known(got, _loss_mistakes(logits, labels, num_items)) or \
            "sum of -log softmax(logits[:, :-1])[labels[:, 1:]] over labels != -100, divided by their number"
        expect_close(got, want, what, hint, atol=1e-5)
        expect_same_gradient(got, want, {"the logits": base}, what)


# --- exercise 5.4 ----------------------------------------------------------------------------------


def _tiny_lm(g: torch.Generator) -> lm.LanguageModel:
    cfg = lm.LMConfig(vocab_size=24, dim=16, layers=1, heads=2, hidden=32, max_seq_len=32)
    model = lm.LanguageModel(cfg)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.3 * torch.randn(param.shape, generator=g))
    return model


def _micro_batches(g: torch.Generator) -> list[dict]:
    """Three micro-batches whose supervised counts differ a lot (one has few answer tokens, one many), with
    padding, and some rows whose position 0 carries a label (which the shifted loss never uses)."""
    out = []
    for b, t, share in ((2, 12, 0.8), (2, 6, 0.15), (3, 9, 0.5)):
        ids = torch.randint(3, 24, (b, t), generator=g)
        labels = torch.where(torch.rand(b, t, generator=g) < share, ids, torch.full_like(ids, IGNORE_INDEX))
        labels[:, 1] = ids[:, 1]  # at least one supervised token per row
        labels[0, 0] = ids[0, 0]  # position 0 labelled: no logit predicts it
        mask = torch.ones(b, t, dtype=torch.long)
        mask[-1, t - 2:] = 0  # the last row is padded
        ids[-1, t - 2:] = 0
        labels[-1, t - 2:] = IGNORE_INDEX
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def _loss_fn(model, batch: dict, n_items) -> torch.Tensor:
    """What `train.fit` computes: the model's own loss, the micro-batch's summed token loss / n_items (its own count
    when n_items is None)."""
    return model(**batch, num_items_in_batch=n_items).loss


def _gradient(model, micro: list[dict], scale) -> list[torch.Tensor]:
    """Gradient of sum over micro-batches of scale(b) * loss(b), with the losses' own counts."""
    model.zero_grad(set_to_none=True)
    total = sum(scale(b) * _loss_fn(model, b, None) for b in micro)
    return list(torch.autograd.grad(total, list(model.parameters())))


@grader("exercise 5.4", "accumulate")
def check_accumulate(accumulate) -> None:
    """On a tiny LanguageModel: after the learner's backward passes, every parameter's .grad equals the gradient
    of the whole step's loss (summed token losses over all micro-batches / all their supervised tokens), and
    the returned float equals that loss."""
    g = rng(54)
    model = _tiny_lm(g)
    micro = _micro_batches(g)
    what = "accumulate(model, micro_batches, loss_fn)"
    model.zero_grad(set_to_none=True)
    with forbidden((train, "supervised_tokens"), (train, "fit"), reason="is what this exercise asks you to write"):
        got = call(accumulate, model, micro, _loss_fn, what=what)
    expect_type(got, float, f"the value {what} returns (the step's loss, for logging: `.item()`)")
    grads = [p.grad for p in model.parameters()]
    expect(all(gr is not None for gr in grads), f"{what} left a parameter's .grad at None: call .backward() on each "
                                                "micro-batch's loss")
    got_grads = [gr.clone() for gr in grads]
    n_all = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in micro)
    counts = [int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in micro]
    want = _gradient(model, micro, lambda b: int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) / n_all)
    with torch.no_grad():
        step_loss = sum(_loss_fn(model, b, n_all) for b in micro)
    k = len(micro)
    mistakes = {
        "that is the mean of each micro-batch's mean loss, the gradient-accumulation bug that transformers fixed in "
        "2024: a token in a micro-batch with few answer tokens weighs more. Divide every micro-batch's summed loss "
        "by the supervised tokens of the whole step": lambda b: 1 / k,
        "each micro-batch's mean loss is added up without any division: count the supervised tokens of the whole "
        "step and pass that count as n_items": lambda b: 1.0,
        "count the supervised tokens as the loss sees them, after the shift: labels[:, 1:] != -100 (position 0 is "
        "never predicted)": lambda b: int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) / sum(
            int((m["labels"] != IGNORE_INDEX).sum()) for m in micro),
        "count the supervised tokens (labels != -100 after the shift), not the attended ones (attention_mask)":
            lambda b: int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) / sum(
                int(m["attention_mask"].sum()) for m in micro),
        "only the last micro-batch's gradient is left: do not zero the gradients between micro-batches (the "
        "optimizer step zeroes them once per step)":
            lambda b: float(b is micro[-1]) * counts[-1] / n_all,
    }
    for i, (mine, theirs) in enumerate(zip(got_grads, want)):
        if not torch.allclose(mine, theirs, atol=1e-6, rtol=1e-4):
            hint = None
            for text, scale in mistakes.items():
                wrong = _gradient(model, micro, scale)
                if all(torch.allclose(a, w, atol=1e-6, rtol=1e-4) for a, w in zip(got_grads, wrong)):
                    hint = text
                    break
            name = list(dict(model.named_parameters()))[i]
            expect_close(mine, theirs, f"the accumulated gradient of {name}", hint or
                         "each micro-batch: loss_fn(model, batch, n_items) with n_items = the step's supervised "
                         "tokens, then .backward()", atol=1e-6)
    expect(abs(got - float(step_loss)) <= 1e-5 * max(1.0, abs(float(step_loss))),
           f"{what} should return the step's loss, the sum of the micro-batches' losses (each already divided by "
           f"the step's count): the loss of the one big batch")


# --- study question 13 -----------------------------------------------------------------------------

@grader("study question 13", "answer_study_q13")
def check_study_q13(answer_study_q13) -> None:
    require_answer("nb05.study_q13", answer_study_q13(), options="abcdefgh",
                   hint="check each statement against eq. 3, the labels of section 2, and the autograd experiment of "
                        "section 6")
