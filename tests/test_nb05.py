"""Notebook 05's graders bite: the reference passes with one line, a stub is "not done yet", and each
plausible wrong implementation is rejected with a message naming the exercise (tests/test_grading.py's
pattern); the study-question key accepts the right choices in any spelling and rejects wrong sets."""

import torch
import torch.nn.functional as F

from grader_contract import grader_contract

from llava_mini import keys, lm
from llava_mini.grading import nb05, rejects

IGNORE = -100

# --- exercise 5.1: ids and labels ------------------------------------------------------------------


def _layout(turns, system):
    pieces = [(system, False)] if system else []
    for i, turn in enumerate(turns):
        if turn["from"] == "human":
            pieces += [(("USER: " if i or not system else " USER: ") + turn["value"], False), (" ASSISTANT:", False)]
        else:
            pieces += [(" " + turn["value"], True), ("</s>", True)]
    return pieces


def _ids(text, tokenizer, num_image_tokens):
    out = []
    for i in tokenizer.encode(text, add_special_tokens=False):
        out += [i] * num_image_tokens if i == tokenizer.image_token_id else [i]
    return out


def chat_ids_and_labels(turns, tokenizer, num_image_tokens, system):
    input_ids, labels = [tokenizer.bos_token_id], [IGNORE]
    for text, supervised in _layout(turns, system):
        ids = _ids(text, tokenizer, num_image_tokens)
        input_ids += ids
        labels += ids if supervised else [IGNORE] * len(ids)
    return input_ids, labels


def labels_everything(turns, tokenizer, num_image_tokens, system):  # a plain LM loss: the user turns supervised
    ids, _ = chat_ids_and_labels(turns, tokenizer, num_image_tokens, system)
    return ids, [IGNORE] + ids[1:]


def labels_tag_supervised(turns, tokenizer, num_image_tokens, system):
    input_ids, labels = [tokenizer.bos_token_id], [IGNORE]
    for text, supervised in _layout(turns, system):
        ids = _ids(text, tokenizer, num_image_tokens)
        input_ids += ids
        labels += ids if supervised or text == " ASSISTANT:" else [IGNORE] * len(ids)
    return input_ids, labels


def labels_special_tokens_masked(turns, tokenizer, num_image_tokens, system):  # "special tokens take no loss"
    ids, labels = chat_ids_and_labels(turns, tokenizer, num_image_tokens, system)
    return ids, [IGNORE if i in tokenizer.all_special_ids else label for i, label in zip(ids, labels)]


def labels_pre_shifted(turns, tokenizer, num_image_tokens, system):  # labels[t] = ids[t + 1]: shifted twice
    ids, labels = chat_ids_and_labels(turns, tokenizer, num_image_tokens, system)
    return ids, labels[1:] + [IGNORE]


def labels_image_not_expanded(turns, tokenizer, num_image_tokens, system):
    return chat_ids_and_labels(turns, tokenizer, 1, system)


def labels_bos_per_segment(turns, tokenizer, num_image_tokens, system):  # tokenizer(text) adds <s> each time
    input_ids, labels = [], []
    for text, supervised in [("", False)] + _layout(turns, system):
        ids = tokenizer(text)["input_ids"]
        ids = [j for i in ids for j in ([i] * num_image_tokens if i == tokenizer.image_token_id else [i])]
        input_ids += ids
        labels += ids if supervised else [IGNORE] * len(ids)
    return input_ids, labels


def labels_string_split(turns, tokenizer, num_image_tokens, system):
    """LLaVA's preprocess_v1 arithmetic with a tokenizer that adds no <s> of its own: every round is one token
    short, the total does not match, and the whole sample is masked."""
    text = "".join(t for t, _ in _layout(turns, system))
    ids = [tokenizer.bos_token_id] + _ids(text, tokenizer, num_image_tokens)
    labels, cur = list(ids), 1
    labels[0] = IGNORE
    for rnd in text.split("</s>"):
        parts = rnd.split(" ASSISTANT: ")
        if rnd == "" or len(parts) != 2:
            break
        round_len = len(_ids(rnd, tokenizer, num_image_tokens))
        instruction_len = len(_ids(parts[0] + " ASSISTANT: ", tokenizer, num_image_tokens)) - 2
        labels[cur:cur + instruction_len] = [IGNORE] * instruction_len
        cur += round_len
    labels[cur:] = [IGNORE] * (len(labels) - cur)
    if cur != len(ids):
        labels = [IGNORE] * len(ids)
    return ids, labels


def labels_as_tensors(turns, tokenizer, num_image_tokens, system):
    ids, labels = chat_ids_and_labels(turns, tokenizer, num_image_tokens, system)
    return torch.tensor(ids), torch.tensor(labels)


def labels_expand_image_in_place(turns, tokenizer, num_image_tokens, system):  # rewrites the caller's turns
    for turn in turns:
        turn["value"] = turn["value"].replace("<image>", "<image>" * num_image_tokens)
    return chat_ids_and_labels(turns, tokenizer, 1, system)


def labels_calls_build_chat(turns, tokenizer, num_image_tokens, system):
    from llava_mini import conversation

    sample = conversation.build_chat(turns, tokenizer, num_image_tokens, system)
    return sample.input_ids, sample.labels


# --- exercise 5.2: padding -------------------------------------------------------------------------


def pad_batch(samples, pad_id):
    width = max(len(s.input_ids) for s in samples)
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for s in samples:
        n = width - len(s.input_ids)
        rows["input_ids"].append(s.input_ids + [pad_id] * n)
        rows["attention_mask"].append([1] * len(s.input_ids) + [0] * n)
        rows["labels"].append(s.labels + [IGNORE] * n)
    return {k: torch.tensor(v) for k, v in rows.items()}


def pad_labels_with_pad_id(samples, pad_id):
    batch = pad_batch(samples, pad_id)
    batch["labels"] = batch["labels"].masked_fill(batch["attention_mask"] == 0, pad_id)
    return batch


def pad_labels_from_ids(samples, pad_id):  # labels = input_ids where attended: every real token supervised
    batch = pad_batch(samples, pad_id)
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE)
    return batch


def pad_mask_all_ones(samples, pad_id):
    batch = pad_batch(samples, pad_id)
    batch["attention_mask"] = torch.ones_like(batch["attention_mask"])
    return batch


def pad_left(samples, pad_id):
    width = max(len(s.input_ids) for s in samples)
    return {
        "input_ids": torch.tensor([[pad_id] * (width - len(s.input_ids)) + s.input_ids for s in samples]),
        "attention_mask": torch.tensor([[0] * (width - len(s.input_ids)) + [1] * len(s.input_ids) for s in samples]),
        "labels": torch.tensor([[IGNORE] * (width - len(s.input_ids)) + s.labels for s in samples]),
    }


def pad_in_place(samples, pad_id):  # extends the caller's lists
    width = max(len(s.input_ids) for s in samples)
    masks = []
    for s in samples:
        n = width - len(s.input_ids)
        masks.append([1] * len(s.input_ids) + [0] * n)
        s.input_ids.extend([pad_id] * n)
        s.labels.extend([IGNORE] * n)
    return {"input_ids": torch.tensor([s.input_ids for s in samples]), "attention_mask": torch.tensor(masks),
            "labels": torch.tensor([s.labels for s in samples])}


def pad_float_mask(samples, pad_id):
    batch = pad_batch(samples, pad_id)
    batch["attention_mask"] = batch["attention_mask"].float()
    return batch


def pad_calls_collate(samples, pad_id):
    from llava_mini import conversation

    return conversation.collate(samples, pad_id)


# --- exercise 5.3: the loss ------------------------------------------------------------------------


def _nll(logits, labels):
    """Per-position -log p(label), 0 where the label is -100; and the mask."""
    keep = labels != IGNORE
    picked = logits.log_softmax(-1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    return -picked * keep, keep


def answer_loss(logits, labels, num_items=None):
    nll, keep = _nll(logits[:, :-1], labels[:, 1:])
    return nll.sum() / (num_items if num_items is not None else keep.sum().clamp(min=1))


def loss_not_shifted(logits, labels, num_items=None):
    nll, keep = _nll(logits, labels)
    return nll.sum() / (num_items if num_items is not None else keep.sum())


def loss_shifted_backwards(logits, labels, num_items=None):
    nll, keep = _nll(logits[:, 1:], labels[:, :-1])
    return nll.sum() / (num_items if num_items is not None else keep.sum())


def loss_mean_over_all_positions(logits, labels, num_items=None):
    nll, _ = _nll(logits[:, :-1], labels[:, 1:])
    return nll.mean()


def loss_ignored_scored_as_token_zero(logits, labels, num_items=None):
    lb = labels[:, 1:].clamp(min=0)
    picked = logits[:, :-1].log_softmax(-1).gather(-1, lb[..., None])[..., 0]
    count = (labels[:, 1:] != IGNORE).sum()
    return -picked.sum() / (num_items if num_items is not None else count)


def loss_per_sequence_mean(logits, labels, num_items=None):
    nll, keep = _nll(logits[:, :-1], labels[:, 1:])
    return (nll.sum(1) / keep.sum(1)).mean()


def loss_ignores_num_items(logits, labels, num_items=None):
    return answer_loss(logits, labels)


def loss_without_grad(logits, labels, num_items=None):
    with torch.no_grad():
        return answer_loss(logits, labels, num_items)


def loss_as_float(logits, labels, num_items=None):
    return answer_loss(logits, labels, num_items).item()


def loss_float64(logits, labels, num_items=None):
    return answer_loss(logits.double(), labels, num_items)


def loss_masks_labels_in_place(logits, labels, num_items=None):  # labels[labels == -100] = 0 on the caller's tensor
    keep = labels != IGNORE
    labels[~keep] = 0
    picked = logits[:, :-1].log_softmax(-1).gather(-1, labels[:, 1:, None])[..., 0]
    return -(picked * keep[:, 1:]).sum() / (num_items if num_items is not None else keep[:, 1:].sum())


def loss_calls_cross_entropy(logits, labels, num_items=None):
    total = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), reduction="sum")
    return total / (num_items if num_items is not None else (labels[:, 1:] != IGNORE).sum())


def loss_calls_reference(logits, labels, num_items=None):
    return lm.causal_lm_loss(logits, labels, num_items)[0]


# --- exercise 5.4: gradient accumulation -----------------------------------------------------------


def _count(batch):
    return int((batch["labels"][:, 1:] != IGNORE).sum())


def accumulate(model, micro_batches, loss_fn):
    n_items = sum(_count(b) for b in micro_batches)
    total = 0.0
    for batch in micro_batches:
        loss = loss_fn(model, batch, n_items)
        loss.backward()
        total += loss.item()
    return total


def accumulate_mean_of_means(model, micro_batches, loss_fn):  # the pre-2024 default
    total = 0.0
    for batch in micro_batches:
        loss = loss_fn(model, batch, None) / len(micro_batches)
        loss.backward()
        total += loss.item()
    return total


def accumulate_sum_of_means(model, micro_batches, loss_fn):
    total = 0.0
    for batch in micro_batches:
        loss = loss_fn(model, batch, None)
        loss.backward()
        total += loss.item()
    return total


def accumulate_count_unshifted(model, micro_batches, loss_fn):
    n_items = sum(int((b["labels"] != IGNORE).sum()) for b in micro_batches)
    total = 0.0
    for batch in micro_batches:
        loss = loss_fn(model, batch, n_items)
        loss.backward()
        total += loss.item()
    return total


def accumulate_count_attended(model, micro_batches, loss_fn):
    n_items = sum(int(b["attention_mask"].sum()) for b in micro_batches)
    total = 0.0
    for batch in micro_batches:
        loss = loss_fn(model, batch, n_items)
        loss.backward()
        total += loss.item()
    return total


def accumulate_zero_grad_each_time(model, micro_batches, loss_fn):
    n_items = sum(_count(b) for b in micro_batches)
    total = 0.0
    for batch in micro_batches:
        model.zero_grad()
        loss = loss_fn(model, batch, n_items)
        loss.backward()
        total += loss.item()
    return total


def accumulate_returns_tensor(model, micro_batches, loss_fn):
    n_items = sum(_count(b) for b in micro_batches)
    total = 0.0
    for batch in micro_batches:
        loss = loss_fn(model, batch, n_items)
        loss.backward()
        total = total + loss.detach()
    return total


def accumulate_masks_batches_in_place(model, micro_batches, loss_fn):  # pads labels of the caller's batches
    for batch in micro_batches:
        batch["labels"][batch["attention_mask"] == 0] = IGNORE
        batch["labels"][:, 0] = IGNORE
    return accumulate(model, micro_batches, loss_fn)


def accumulate_calls_supervised_tokens(model, micro_batches, loss_fn):
    from llava_mini import train

    n_items = sum(train.supervised_tokens(b) for b in micro_batches)
    total = 0.0
    for batch in micro_batches:
        loss = loss_fn(model, batch, n_items)
        loss.backward()
        total += loss.item()
    return total


# --- study question 13 -----------------------------------------------------------------------------


def answer_study_q13():
    return "a, c, f, h"


def q13_contrastive():
    return "abcfh"


def q13_frozen_means_no_gradient():
    return "afh"


def q13_no_grad_is_fine():
    return "acefh"


RIGHT = {
    "exercise 5.1": chat_ids_and_labels,
    "exercise 5.2": pad_batch,
    "exercise 5.3": answer_loss,
    "exercise 5.4": accumulate,
    "study question 13": answer_study_q13,
}
WRONG = {
    "exercise 5.1": [labels_everything, labels_tag_supervised, labels_special_tokens_masked, labels_pre_shifted,
                     labels_image_not_expanded, labels_bos_per_segment, labels_string_split, labels_as_tensors,
                     labels_expand_image_in_place, labels_calls_build_chat],
    "exercise 5.2": [pad_labels_with_pad_id, pad_labels_from_ids, pad_mask_all_ones, pad_left, pad_in_place,
                     pad_float_mask, pad_calls_collate],
    "exercise 5.3": [loss_not_shifted, loss_shifted_backwards, loss_mean_over_all_positions,
                     loss_ignored_scored_as_token_zero, loss_per_sequence_mean, loss_ignores_num_items,
                     loss_without_grad, loss_as_float, loss_float64, loss_masks_labels_in_place,
                     loss_calls_cross_entropy, loss_calls_reference],
    "exercise 5.4": [accumulate_mean_of_means, accumulate_sum_of_means, accumulate_count_unshifted,
                     accumulate_count_attended, accumulate_zero_grad_each_time, accumulate_returns_tensor,
                     accumulate_masks_batches_in_place, accumulate_calls_supervised_tokens],
    "study question 13": [q13_contrastive, q13_frozen_means_no_gradient, q13_no_grad_is_fine],
}
(test_every_grader_has_right_and_wrong_implementations, test_right_answer_prints_one_fixed_line,
 test_wrong_implementation_is_rejected, test_stub_is_not_done_yet) = grader_contract("llava_mini.grading.nb05",
                                                                                     RIGHT, WRONG)


def test_hints_name_the_mistake():
    check = nb05.check_chat_ids_and_labels
    assert "the USER turns are the instruction" in rejects(check, labels_everything)
    assert "' ASSISTANT:' tag" in rejects(check, labels_tag_supervised)
    assert "`</s>` takes the loss too" in rejects(check, labels_special_tokens_masked)
    assert "not the next token" in rejects(check, labels_pre_shifted)
    assert "copies of tokenizer.image_token_id" in rejects(check, labels_image_not_expanded)
    assert "exactly one `<s>`" in rejects(check, labels_bos_per_segment)
    assert "every token of each answer X_a takes the loss" in rejects(check, labels_string_split)
    assert "should be a list, got Tensor" in rejects(check, labels_as_tensors)
    assert "changed its argument 1 in place" in rejects(check, labels_expand_image_in_place)
    assert "calls llava_mini.conversation.build_chat" in rejects(check, labels_calls_build_chat)
    check = nb05.check_pad_batch
    assert "never pad_id" in rejects(check, pad_labels_with_pad_id)
    assert "the sample's labels, unchanged" in rejects(check, pad_labels_from_ids)
    assert "0 on padding" in rejects(check, pad_mask_all_ones)
    assert "pad on the right" in rejects(check, pad_left)
    assert "changed its argument 1 in place" in rejects(check, pad_in_place)
    assert "should have dtype torch.int64, got torch.float32" in rejects(check, pad_float_mask)
    assert "calls llava_mini.conversation.collate" in rejects(check, pad_calls_collate)
    check = nb05.check_answer_loss
    assert "the labels are not shifted" in rejects(check, loss_not_shifted)
    assert "shifted the wrong way" in rejects(check, loss_shifted_backwards)
    assert "not by every position" in rejects(check, loss_mean_over_all_positions)
    assert "do not score them as token 0" in rejects(check, loss_ignored_scored_as_token_zero)
    assert "not per sequence" in rejects(check, loss_per_sequence_mean)
    assert "when num_items is given, divide by it" in rejects(check, loss_ignores_num_items)
    assert "carries no gradient" in rejects(check, loss_without_grad)
    assert "should be a Tensor, got float" in rejects(check, loss_as_float)
    assert "should have dtype torch.float32, got torch.float64" in rejects(check, loss_float64)
    assert "changed its argument 2 in place" in rejects(check, loss_masks_labels_in_place)
    assert "calls torch.nn.functional.cross_entropy" in rejects(check, loss_calls_cross_entropy)
    assert "calls llava_mini.lm.causal_lm_loss" in rejects(check, loss_calls_reference)
    check = nb05.check_accumulate
    assert "transformers fixed in 2024" in rejects(check, accumulate_mean_of_means)
    assert "without any division" in rejects(check, accumulate_sum_of_means)
    assert "after the shift: labels[:, 1:]" in rejects(check, accumulate_count_unshifted)
    assert "not the attended ones" in rejects(check, accumulate_count_attended)
    assert "only the last micro-batch" in rejects(check, accumulate_zero_grad_each_time)
    assert "should be a float, got Tensor" in rejects(check, accumulate_returns_tensor)
    assert "changed its argument 2 in place" in rejects(check, accumulate_masks_batches_in_place)
    assert "calls llava_mini.train.supervised_tokens" in rejects(check, accumulate_calls_supervised_tokens)


def test_study_q13_key():
    for answer in ("acfh", "A, C, F and H", ["h", "f", "c", "a"], "(a) (c) (f) (h)"):
        assert keys.check_answer("nb05.study_q13", answer)
    for answer in ("acf", "acfgh", "abcdefgh", ""):
        assert not keys.check_answer("nb05.study_q13", answer)


def test_a_mismatched_sample_is_all_ignored():
    """The notebook's reproduction of LLaVA's "tokenization mismatch": with a tokenizer that adds no <s> of its
    own, the string arithmetic drifts by one token per round and the whole sample is masked."""
    from llava_mini.tokenizer import SYSTEM_PROMPT, load_tokenizer

    tokenizer = load_tokenizer()
    turns = nb05._teacher_chats(7, 1)[0]
    ids, labels = labels_string_split(turns, tokenizer, 9, SYSTEM_PROMPT)
    assert ids == chat_ids_and_labels(turns, tokenizer, 9, SYSTEM_PROMPT)[0]
    assert set(labels) == {IGNORE}
