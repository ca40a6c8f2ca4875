"""Graders of notebook 07, stage 2: instruction tuning, on a GPU too (`solutions/07_stage2.ipynb`).

- exercise 7.1 `unfreeze_for_stage2(model)`: the vision tower g frozen, W and the LLM f_φ trainable, whatever
  the model's state before; returns the number of trainable parameters. On tiny LlavaMini models in three
  starting states; `stages.freeze` switched off while the learner's code runs; the weights must not change.
- exercise 7.2 `training_step(model, micro_batches, optimizer, autocast)`: one optimizer step over several
  micro-batches, each forward under `autocast()`, each backward outside it, the loss normalised by the
  supervised tokens of the whole step; then `optimizer.step()` and `optimizer.zero_grad()`. Compared with
  the update the whole batch's gradient gives (SGD, so the update is the gradient itself).
- exercise 7.3 `mfu(n_trainable, lm_tokens, n_vision, vision_tokens, seconds, peak_flops)`: 6·N_trainable per
  language-model token plus 2·N_vision per vision token (the frozen tower has no backward), per second, over
  the peak. `train.training_flops` and `train.mfu` switched off.
- the questionnaire: statements about stage 2, the curriculum, memory and multi-GPU training (a choice key).
"""

from __future__ import annotations

import contextlib
import copy

import torch

from llava_mini import lm, stages, train
from llava_mini.grading import call, expect, expect_close, expect_type, forbidden, grader, rng
from llava_mini.keys import require_answer
from llava_mini.llava import LlavaConfig, LlavaMini
from llava_mini.lm import IGNORE_INDEX
from llava_mini.vision import VisionConfig

# --- exercise 7.1 ----------------------------------------------------------------------------------


def _tiny_llava(g: torch.Generator, projector: str) -> LlavaMini:
    cfg = LlavaConfig(lm=lm.LMConfig(vocab_size=20, dim=16, layers=1, heads=2, hidden=32, max_seq_len=32),
                      image_token_id=3, pad_token_id=0, eos_token_id=2, projector=projector,
                      vision=VisionConfig(image_size=16, patch_size=8, width=16, layers=2, heads=2))
    model = LlavaMini(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model


def _set_state(model: LlavaMini, state: str, g: torch.Generator) -> None:
    if state == "after stage 1":
        model.requires_grad_(False)
        model.projector.requires_grad_(True)
    elif state == "everything trainable":
        model.requires_grad_(True)
    else:  # a random mixture, parameter by parameter
        for p in model.parameters():
            p.requires_grad_(bool(torch.rand((), generator=g) < 0.5))


def _state_of(part: torch.nn.Module) -> str:
    flags = {p.requires_grad for p in part.parameters()}
    return "trainable" if flags == {True} else "frozen" if flags == {False} else "partly trainable"


@grader("exercise 7.1", "unfreeze_for_stage2")
def check_unfreeze_for_stage2(unfreeze_for_stage2) -> None:
    """Vision frozen, projector and LM trainable, from three starting states and two projectors; the returned
    count is that of the trainable parameters; stages.freeze refused; weights unchanged."""
    g = rng(71)
    for projector, state in (("linear", "after stage 1"), ("mlp2x_gelu", "everything trainable"),
                             ("linear", "a random mixture")):
        model = _tiny_llava(g, projector)
        _set_state(model, state, g)
        what = f"unfreeze_for_stage2(model) on a model with {state} ({projector} projector)"
        with forbidden((stages, "freeze"), reason="is the package's answer to this exercise: set requires_grad "
                                                  "yourself"):
            got = call(unfreeze_for_stage2, model, what=what)
        vision, projector_state, language = (_state_of(m) for m in (model.vision, model.projector, model.lm))
        expect(vision == "frozen", f"after {what} the vision tower is {vision}: g stays frozen in stage 2 as in "
                                   "stage 1 (LLaVA trains only W and the LLM; set its requires_grad to False)")
        expect(language == "trainable", f"after {what} the language model is {language}: stage 2 fine-tunes "
                                        "every weight of f_φ (requires_grad_(True) on model.lm)")
        expect(projector_state == "trainable", f"after {what} the projector W is {projector_state}: W keeps "
                                               "training in stage 2 together with the LLM")
        want = sum(p.numel() for p in model.parameters() if p.requires_grad)
        expect_type(got, int, f"the value {what} returns")
        total = sum(p.numel() for p in model.parameters())
        hint = ("that is every parameter, frozen ones included: count only those with requires_grad"
                if got == total else
                "that leaves out W (the projector trains too)" if got == sum(p.numel() for p in model.lm.parameters())
                else "count p.numel() over the parameters with requires_grad")
        expect(got == want, f"{what} returned {got}, but {want} parameters are trainable; {hint}")


# --- exercise 7.2 ----------------------------------------------------------------------------------


class _Autocast:
    """Stands in for torch.autocast: a context manager factory that records whether it is active."""

    def __init__(self):
        self.active = False
        self.entered = 0

    @contextlib.contextmanager
    def __call__(self):
        self.active, self.entered = True, self.entered + 1
        try:
            yield
        finally:
            self.active = False


def _tiny_lm(g: torch.Generator) -> lm.LanguageModel:
    model = lm.LanguageModel(lm.LMConfig(vocab_size=24, dim=16, layers=1, heads=2, hidden=32, max_seq_len=32))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model


def _micro_batches(g: torch.Generator) -> list[dict]:
    """Micro-batches whose supervised counts differ a lot, with padding and a label at position 0."""
    out = []
    for b, t, share in ((2, 11, 0.8), (2, 6, 0.15), (3, 9, 0.5)):
        ids = torch.randint(3, 24, (b, t), generator=g)
        labels = torch.where(torch.rand(b, t, generator=g) < share, ids, torch.full_like(ids, IGNORE_INDEX))
        labels[:, 1] = ids[:, 1]
        labels[0, 0] = ids[0, 0]
        mask = torch.ones(b, t, dtype=torch.long)
        mask[-1, t - 2:] = 0
        ids[-1, t - 2:] = 0
        labels[-1, t - 2:] = IGNORE_INDEX
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def _count(batch: dict) -> int:
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def _updated(model: torch.nn.Module, micro: list[dict], lr: float, weight) -> list[torch.Tensor]:
    """The parameters after one SGD step on sum_b weight(b) · (b's mean token loss)."""
    model = copy.deepcopy(model)
    total = sum(weight(b) * model(**b).loss for b in micro)
    grads = torch.autograd.grad(total, list(model.parameters()))
    return [(p - lr * gr).detach() for p, gr in zip(model.parameters(), grads)]


@grader("exercise 7.2", "training_step")
def check_training_step(training_step) -> None:
    """After one call on a tiny LanguageModel with SGD: the parameters moved by the whole step's gradient
    (summed token losses / all supervised tokens of the step), the gradients zeroed, the step's loss returned;
    every forward under autocast() and no backward under it; train.fit and train.supervised_tokens refused."""
    g = rng(72)
    model, micro, lr = _tiny_lm(g), _micro_batches(g), 0.5
    before = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    autocast, forwards, backwards = _Autocast(), [], []
    model.register_forward_pre_hook(lambda module, args: forwards.append(autocast.active))
    for p in model.parameters():
        p.register_hook(lambda grad: backwards.append(autocast.active))
    what = "training_step(model, micro_batches, optimizer, autocast)"
    with forbidden((train, "fit"), (train, "supervised_tokens"), reason="is what this exercise asks you to write"):
        got = call(lambda batches: training_step(model, batches, optimizer, autocast), micro, what=what)
    expect(len(forwards) == len(micro), f"{what} ran the model {len(forwards)} times for {len(micro)} micro-batches: "
                                        "one forward pass per micro-batch")
    expect(all(forwards), f"{what} ran a forward pass outside autocast(): wrap each micro-batch's forward "
                          "(the model call that makes the loss) in `with autocast():`")
    expect(not any(backwards), f"{what} called backward() inside autocast(): leave the `with autocast():` block "
                               "before loss.backward() (autocast covers the forward; the backward uses the dtypes "
                               "the forward chose)")
    expect_type(got, float, f"the value {what} returns (the step's loss, for logging: `.item()`)")
    expect(all(p.grad is None or not p.grad.any() for p in model.parameters()),
           f"{what} left gradients in .grad after the step: call optimizer.zero_grad() once the step is taken, "
           "or the next step adds its gradient to this one")
    n_all = sum(_count(b) for b in micro)
    want = _updated(before, micro, lr, lambda b: _count(b) / n_all)
    k = len(micro)
    mistakes = {
        "the parameters did not move: call optimizer.step() after the micro-batches' backward passes":
            [p.detach() for p in before.parameters()],
        "the micro-batches' losses were not normalised by the step's supervised tokens: each micro-batch's mean "
        "loss was added as it is, so the step's gradient is k times too large and weighs micro-batches, not tokens. "
        "Pass num_items_in_batch = the supervised tokens (labels[:, 1:] != -100) of all the micro-batches":
            _updated(before, micro, lr, lambda b: 1.0),
        "each micro-batch's mean loss was divided by the number of micro-batches: a token in a micro-batch with few "
        "answer tokens weighs more. Divide every micro-batch's summed loss by the supervised tokens of the whole "
        "step (num_items_in_batch)": _updated(before, micro, lr, lambda b: 1 / k),
        "the step's supervised tokens were counted before the shift: count labels[:, 1:] != -100":
            _updated(before, micro, lr, lambda b: _count(b) / sum(int((m["labels"] != IGNORE_INDEX).sum())
                                                                  for m in micro)),
        "only the last micro-batch's gradient took part: do not zero the gradients between micro-batches":
            _updated(before, micro, lr, lambda b: float(b is micro[-1]) * _count(b) / n_all),
    }
    params = [p.detach() for p in model.parameters()]
    if not all(torch.allclose(a, w, atol=1e-6, rtol=1e-4) for a, w in zip(params, want)):
        hint = next((text for text, wrong in mistakes.items()
                     if all(torch.allclose(a, w, atol=1e-6, rtol=1e-4) for a, w in zip(params, wrong))),
                    "accumulate every micro-batch's gradient (loss with num_items_in_batch = the step's supervised "
                    "tokens, then backward), then one optimizer.step() and one optimizer.zero_grad()")
        name, mine, theirs = next((n, a, w) for (n, _), a, w in zip(model.named_parameters(), params, want)
                                  if not torch.allclose(a, w, atol=1e-6, rtol=1e-4))
        expect_close(mine, theirs, f"{name} after the step", hint, atol=1e-6)
    with torch.no_grad():
        step_loss = float(sum(before(**b, num_items_in_batch=n_all).loss for b in micro))
    expect(abs(got - step_loss) <= 1e-5 * max(1.0, abs(step_loss)),
           f"{what} should return the step's loss: the sum of the micro-batches' losses, each divided by the "
           "step's supervised tokens (the loss of the one big batch)")


# --- exercise 7.3 ----------------------------------------------------------------------------------


@grader("exercise 7.3", "mfu")
def check_mfu(mfu) -> None:
    """Against (6·N_trainable·lm_tokens + 2·N_vision·vision_tokens) / seconds / peak_flops, on counts where each
    plausible mistake gives another number."""
    cases = [(179_840, 1_000_000, 250_048, 300_000, 2.5, 989e12),
             (7_000_000_000, 4_096, 303_000_000, 2_570, 0.25, 312e12),
             (13_000_000_000, 2_048, 303_000_000, 1_285, 0.5, 989e12)]
    for n_trainable, lm_tokens, n_vision, vision_tokens, seconds, peak in cases:
        what = f"mfu({n_trainable}, {lm_tokens}, {n_vision}, {vision_tokens}, {seconds}, {peak:.0e})"
        with forbidden((train, "training_flops"), (train, "mfu"), reason="is the package's answer to this exercise"):
            got = call(mfu, n_trainable, lm_tokens, n_vision, vision_tokens, seconds, peak, what=what)
        expect_type(got, (float, int), what)
        got = float(got)
        rate = seconds * peak
        want = (6 * n_trainable * lm_tokens + 2 * n_vision * vision_tokens) / rate
        mistakes = {
            "the frozen vision tower was counted at 6·N per token: it has no backward pass (nothing before it "
            "trains and it is frozen), so it costs only its forward, 2·N_vision per vision token":
                (6 * n_trainable * lm_tokens + 6 * n_vision * vision_tokens) / rate,
            "the vision tower's parameters were added to the trainable ones: it is frozen and runs forward only, "
            "2·N_vision per vision token": 6 * (n_trainable + n_vision) * lm_tokens / rate,
            "the vision tower's forward pass is missing: it still runs on every image, 2·N_vision per vision token":
                6 * n_trainable * lm_tokens / rate,
            "only the forward pass was counted for the trainable parameters: training costs 6·N per token (2·N "
            "forward, 4·N backward)": (2 * n_trainable * lm_tokens + 2 * n_vision * vision_tokens) / rate,
            "the vision tower runs on vision tokens (patches), not on the language model's tokens":
                (6 * n_trainable * lm_tokens + 2 * n_vision * lm_tokens) / rate,
            "that is a percentage: return the fraction of the peak (0.4, not 40)": 100 * want,
            "that is FLOP/s: divide by the device's peak FLOP/s": want * peak,
        }
        if abs(got - want) > 1e-9 * max(abs(want), 1e-30):
            hint = next((text for text, value in mistakes.items() if abs(got - value) <= 1e-6 * abs(value)),
                        "(6·n_trainable·lm_tokens + 2·n_vision·vision_tokens) / seconds / peak_flops")
            raise AssertionError(f"{what} is not the model FLOPs utilisation; {hint}")


# --- the questionnaire ----------------------------------------------------------------------------


@grader("questionnaire 7", "answer_questionnaire")
def check_questionnaire(answer_questionnaire) -> None:
    require_answer("nb07.questionnaire", answer_questionnaire(), options="abcdefghij",
                   hint="check each statement against sections 1 (freezing), 4 (the curriculum), 6 (memory) and "
                        "7 (multi-GPU)")
