"""Graders of notebook 06, stage 1: feature alignment (`solutions/06_stage1.ipynb`).

- exercise 6.1 `freeze(model, stage)`: W alone trainable in stage 1, W and f_φ in stage 2, g never; set with
  `requires_grad_`, from any starting state; then one backward pass on plain caption pairs must reach W (and
  f_φ in stage 2) and nothing else. `stages.freeze` is switched off while the learner's code runs.
- exercise 6.2 `trainable_counts(model)`: {child: (trainable, total)} and "total", counting elements of the
  tensors that require gradients; compared with `train.count_parameters` (switched off likewise).
- exercise 6.3 `optimizer_groups(model, lr, projector_lr=None)`: AdamW parameter groups holding exactly the
  trainable tensors, W in a group of its own at `projector_lr` when one is given (LLaVA's `--mm_projector_lr`).
- exercise 6.4 `stage1_loss(model, batch)`: the answer-token loss of a `plain` batch written out, Z_v = g(X_v)
  under `torch.no_grad()`, H_v = W·Z_v and f_φ with the gradient flowing through it to W; compared with
  `LlavaMini.forward` (value and W's gradient), which is switched off with `embed` and `encode_images`.
- study question 3: the letters of the true statements (key `nb06.study_q3`).

As in notebooks 00-05: the learner's code runs through `grading.call` (an argument changed in place is named),
the reference is computed after that call, dtype and shape come before values, and where a wrong answer matches a
known mistake the hint names that mistake.
"""

from __future__ import annotations

import torch
from torch import nn

from llava_mini import stages, train, world, zoo
from llava_mini.corpora import Batches
from llava_mini.grading import (call, expect, expect_close, expect_dtype, expect_same_gradient, expect_shape,
                                expect_type, forbidden, grader, rng)
from llava_mini.keys import require_answer
from llava_mini.llava import LlavaMini
from llava_mini.tokenizer import load_tokenizer

PARTS = ("vision", "projector", "lm")
_PART_NAMES = {"vision": "the vision tower g", "projector": "the projection W", "lm": "the language model f_φ"}


def _model() -> LlavaMini:
    return zoo.load("llava-mini-stage1")


def _batch(seed: int, n: int = 4) -> dict:
    """A batch of `n` plain caption pairs (stage 1's data) about train scenes drawn from `seed`."""
    tokenizer = load_tokenizer()
    first = int(torch.randint(0, 50_000, (), generator=rng(seed)))
    seeds = world.split_seeds("train", n, start=first)
    examples = stages.examples(1, seeds, tokenizer, 9)
    return next(Batches(examples, tokenizer, n, seed=seed))


def _set_state(model: nn.Module, state: str) -> None:
    """The flags a model comes in with: all trainable, all frozen, or another stage's."""
    model.requires_grad_(state == "all trainable")
    if state in ("stage 1", "stage 2"):
        model.projector.requires_grad_(True)
        model.lm.requires_grad_(state == "stage 2")


def _trainable(stage: int) -> dict[str, bool]:
    return {"vision": False, "projector": True, "lm": stage == 2}


# --- exercise 6.1 ----------------------------------------------------------------------------------


def _check_flags(model: LlavaMini, stage: int, start: str, what: str) -> None:
    want = _trainable(stage)
    for part in PARTS:
        flags = [p.requires_grad for p in getattr(model, part).parameters()]
        if all(flags) == want[part] and any(flags) == want[part]:
            continue
        state = "partly trainable" if any(flags) and not all(flags) else ("trainable" if any(flags) else "frozen")
        if part == "vision":
            hint = "the vision encoder g stays frozen in both stages (LLaVA §4.2; CLIP is never trained)"
        elif part == "lm" and stage == 1:
            hint = ("stage 1 freezes the LLM: only W learns to turn Z_v into inputs the frozen f_φ can read; "
                    "freeze the whole model first (model.requires_grad_(False)), then unfreeze W")
        elif part == "lm":
            hint = "stage 2 trains f_φ end to end together with W (the vision tower stays frozen)"
        else:
            hint = f"W is what stage {stage} trains: every parameter of model.projector requires a gradient"
        raise AssertionError(f"after {what} on a model that was {start}, {_PART_NAMES[part]} is {state}; {hint}")


def _check_backward(model: LlavaMini, stage: int, batch: dict, what: str) -> None:
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    expect(loss.requires_grad, f"after {what} the loss carries no gradient at all: freezing by torch.no_grad() (or "
                               "by .detach()) cuts the graph, and W then gets no gradient through the frozen LLM; "
                               "freeze with requires_grad_(False) instead")
    loss.backward()
    want = _trainable(stage)
    for part in PARTS:
        grads = [p.grad for p in getattr(model, part).parameters()]
        if want[part]:
            expect(all(g is not None and bool(g.abs().sum() > 0) for g in grads),
                   f"after {what}, {_PART_NAMES[part]} gets no gradient from the caption loss: something cuts the "
                   "graph between the loss and it (torch.no_grad() or .detach() around a frozen part); frozen "
                   "parts must still pass the gradient through")
        else:
            expect(all(g is None for g in grads), f"after {what}, {_PART_NAMES[part]} received a gradient: it "
                                                  "should be frozen")


@grader("exercise 6.1", "freeze")
def check_freeze(freeze) -> None:
    """Six starting states and stages on the zoo's llava-mini-stage1, flags then one backward pass."""
    batch = _batch(61)
    cases = [("all trainable", 1), ("stage 2", 1), ("all frozen", 1), ("all trainable", 2), ("stage 1", 2),
             ("all frozen", 2)]
    for start, stage in cases:
        model = _model()
        _set_state(model, start)
        what = f"freeze(model, {stage})"
        with forbidden((stages, "freeze"), reason="is the answer to this exercise; set requires_grad yourself"):
            call(freeze, model, stage, what=what)
        _check_flags(model, stage, start, what)
        _check_backward(model, stage, batch, what)


# --- exercise 6.2 ----------------------------------------------------------------------------------


class _Toy(nn.Module):
    """Two children, one of them partly frozen (a frozen bias under a trainable weight)."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(5, 3)
        self.head = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
        self.encoder.requires_grad_(False)
        self.head[0].bias.requires_grad_(False)


def _count_cases() -> list[tuple[str, nn.Module]]:
    cases = []
    for start in ("stage 1", "stage 2", "all trainable"):
        model = _model()
        _set_state(model, start)
        cases.append((f"a LlavaMini frozen as {start}" if start != "all trainable" else "a LlavaMini, all trainable",
                      model))
    cases.append(("a two-child module with a frozen bias inside a trainable child", _Toy()))
    return cases


@grader("exercise 6.2", "trainable_counts")
def check_trainable_counts(trainable_counts) -> None:
    """Against `train.count_parameters` on three LlavaMini states and a partly frozen toy module."""
    for name, model in _count_cases():
        what = f"trainable_counts(<{name}>)"
        with forbidden((train, "count_parameters"), (stages, "freeze"),
                       reason="is the answer to this exercise; count the tensors yourself"):
            got = call(trainable_counts, model, what=what)
        want = train.count_parameters(model)
        expect_type(got, dict, what)
        expect(set(got) == set(want), f"{what} should have the keys {sorted(want)} (one per top-level child, from "
                                      f"model.named_children(), and 'total'), got {sorted(got)}")
        for key in want:
            value = got[key]
            expect(isinstance(value, (tuple, list)) and len(value) == 2
                   and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
                   f"{what}[{key!r}] should be a pair of ints (trainable, total), got {value!r}")
            (t, n), (t_want, n_want) = value, want[key]
            if n != n_want:
                tensors = sum(1 for _ in (model if key == "total" else getattr(model, key)).parameters())
                hint = ("count elements (p.numel()), not tensors" if n == tensors else
                        "the total of a child is the number of elements of all its parameters")
                raise AssertionError(f"{what}[{key!r}] gives {n:,} parameters in all; expected {n_want:,}: {hint}")
            if t != t_want:
                if t == n_want:
                    hint = ("that is every parameter, frozen ones included: count only the tensors with "
                            "p.requires_grad")
                else:
                    hint = "count p.numel() over exactly the parameters with p.requires_grad, tensor by tensor"
                raise AssertionError(f"{what}[{key!r}] gives {t:,} trainable parameters; expected {t_want:,}: {hint}")


# --- exercise 6.3 ----------------------------------------------------------------------------------


def _describe_group(group, names) -> str:
    return "[" + ", ".join(names.get(id(p), "a tensor not in the model") for p in group) + "]"


@grader("exercise 6.3", "optimizer_groups")
def check_optimizer_groups(optimizer_groups) -> None:
    """Stages 1 and 2, with and without a projector learning rate; the groups must build an AdamW."""
    for stage, lr, projector_lr in ((1, 2e-3, None), (2, 2e-5, None), (2, 2e-5, 1e-4), (1, 2e-3, 5e-4)):
        model = _model()
        stages.freeze(model, stage)
        what = f"optimizer_groups(<a model frozen for stage {stage}>, lr={lr:g}, projector_lr={projector_lr})"
        got = call(optimizer_groups, model, lr, projector_lr, what=what)
        expect_type(got, list, what)
        names = {id(p): n for n, p in model.named_parameters()}
        projector = {id(p) for p in model.projector.parameters()}
        trainable = {id(p) for p in model.parameters() if p.requires_grad}
        for group in got:
            expect(isinstance(group, dict) and "params" in group and "lr" in group,
                   f"{what}: each group should be a dict with 'params' (a list of tensors) and 'lr', got {group!r}")
            expect(isinstance(group["params"], list), f"{what}: a group's 'params' should be a list of tensors")
            expect(len(group["params"]) > 0, f"{what} holds an empty group; leave out a group that has no "
                                             "trainable tensors")
        held = [id(p) for group in got for p in group["params"]]
        expect(len(held) == len(set(held)), f"{what} puts a tensor in more than one group (torch refuses that): "
                                            "W belongs only to its own group when projector_lr is given")
        frozen = [names.get(i, "?") for i in held if i not in trainable]
        expect(not frozen, f"{what} gives the optimizer {len(frozen)} frozen tensors (the first {frozen[0]!r} if "
                           "any): the groups are the record of what trains; keep only p.requires_grad tensors"
               if frozen else "")
        missing = [names[i] for i in trainable if i not in set(held)]
        expect(not missing, f"{what} leaves out trainable tensors, e.g. {missing[:2]}" if missing else "")
        for group in got:
            ids = {id(p) for p in group["params"]}
            if projector_lr is not None and ids & projector:
                expect(ids <= projector, f"{what}: with projector_lr given, W's tensors form a group of their own "
                                         "at projector_lr (LLaVA's --mm_projector_lr); got a group of "
                                         f"{len(ids)} tensors that mixes W's with others")
                want_lr = projector_lr
            else:
                want_lr = lr
            expect(isinstance(group["lr"], float) and abs(group["lr"] - want_lr) <= 1e-12,
                   f"{what}: the group {_describe_group(group['params'], names)[:80]}... should have lr {want_lr:g}, "
                   f"got {group['lr']!r}" + ("; W's group takes projector_lr (LLaVA's --mm_projector_lr)"
                                             if want_lr == projector_lr else ""))
        torch.optim.AdamW(got, lr=lr)  # accepted by the optimizer


# --- exercise 6.4 ----------------------------------------------------------------------------------


@grader("exercise 6.4", "stage1_loss")
def check_stage1_loss(stage1_loss) -> None:
    """Against LlavaMini.forward's loss on two plain batches: value, W's gradient, and no graph through g."""
    reason = "runs the forward pass this exercise writes out; use model.vision, model.projector and model.lm"
    for seed, tower_flags in ((64, False), (65, True)):
        model = _model()
        stages.freeze(model, 1)
        model.vision.requires_grad_(tower_flags)  # the second case: a tower whose flags were left on
        batch = _batch(seed)
        what = "stage1_loss(model, batch)"
        with forbidden((LlavaMini, "forward"), (LlavaMini, "embed"), (LlavaMini, "encode_images"), reason=reason):
            got = call(stage1_loss, model, batch, what=what)
        expect_dtype(got, torch.float32, f"the loss of {what}")
        expect_shape(got, (), f"the loss of {what}")
        expect(got.requires_grad, f"the loss of {what} carries no gradient: the path from W to the loss is cut "
                                  "(torch.no_grad() or .detach()); a frozen LLM must still pass the gradient back to "
                                  "W, so it cannot run under torch.no_grad() (freezing is requires_grad_, set by "
                                  "freeze; no_grad goes around the vision tower only)")
        want = model(**batch).loss
        expect_close(got, want, f"the loss of {what}", "H_v = W·g(X_v) goes where the input ids hold the image "
                                                      "placeholder (masked_scatter), then f_φ's answer-token loss with "
                                                      "the batch's labels")
        params = dict(model.projector.named_parameters())
        expect_same_gradient(got, want, {f"W's {k}": v for k, v in params.items()}, f"the loss of {what}",
                             atol=1e-6, rtol=1e-4)
        if tower_flags:
            tower = [p for p in model.vision.parameters()]
            reached = [g is not None for g in torch.autograd.grad(got, tower, retain_graph=True, allow_unused=True)]
            expect(not any(reached), f"{what} records a graph through the vision tower (its weights received a "
                                     "gradient when their flags were left on): compute Z_v = g(X_v) under "
                                     "torch.no_grad(), as LLaVA's CLIP encoder does, so g never trains whatever its "
                                     "flags say and stores no activations for a backward pass")


# --- study question 3 -------------------------------------------------------------------------------


@grader("study question 3", "answer_study_q3")
def check_study_q3(answer_study_q3) -> None:
    answer = call(answer_study_q3, what="answer_study_q3()")
    require_answer("nb06.study_q3", answer, options="abcdefghi",
                   hint="reread sections 1 (what each stage trains), 6 (what stage 1 leaves undone) and 7 (plain-lm)")
