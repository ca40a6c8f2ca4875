"""Graders: plain functions that check a learner's exercise, usable with or without a kernel.

Layout: one module per notebook, `llava_mini/grading/nbNN.py` (`demo.py` is the machinery's test course
and a template). Each exposes `check_<what>(learner_fn)` functions decorated with `@grader`, and a
notebook's grader cell makes exactly one call:

    from llava_mini.grading import nb04
    nb04.check_projector(Projector)

A grader builds its inputs from its own seeded generator (`rng`), runs the learner's code through `call`
(copies of the arguments, checked for changes afterwards; the learner's own exceptions kept apart from the
grader's verdicts), computes the reference *after* that call (nothing for the learner's code to find in a
caller's frame), and compares with the `expect_*` helpers: dtype and shape first, then values, then, for
anything that trains, gradients (`expect_same_gradient`). Where an exercise says "write it yourself",
`forbidden` makes the package's reference (or a library shortcut) fail while the learner's code runs.
`@grader` turns the stub's `NotImplementedError` into "exercise 4.2 is not done yet: ...", any wrong
answer into an AssertionError that names the exercise and gives a short hint, and prints one fixed line
when everything is right.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import io
import random
import traceback
from typing import Callable
from unittest import mock

import numpy as np
import torch

# (module, label) -> grader. A label is unique within one notebook's module; the same label may recur in
# another module (the demo course and notebook 00 both have "exercise 0.1"; several notebooks check one study
# question).
_GRADERS: dict[tuple[str, str], Callable] = {}


def grader(label: str, implement: str) -> Callable[[Callable], Callable]:
    """Decorate a check: `label` names the exercise ("exercise 4.2", "study question 13") in every message,
    `implement` names what the learner writes ("count_image_tokens", "Projector.forward").

    The check runs with Python, NumPy and torch random state seeded to 0 and restored afterwards, so a
    grader neither depends on nor disturbs the notebook's random numbers.
    """

    def decorate(check: Callable) -> Callable:
        @functools.wraps(check)
        def run(*args, **kwargs) -> None:
            try:
                with _isolated_rng():
                    check(*args, **kwargs)
            except NotImplementedError as err:
                if str(err):  # a library's NotImplementedError, not the stub's bare one
                    raise AssertionError(f"{label}: your code raised NotImplementedError: {err}") from err
                raise AssertionError(f"{label} is not done yet: implement {implement} in the cell above") from None
            except LearnerError as err:
                raise AssertionError(f"{label}: {err}") from err.__cause__
            except AssertionError as err:
                raise AssertionError(f"{label} is not right yet: {err}") from None
            except Exception as err:
                raise AssertionError(f"{label}: your code raised {type(err).__name__}: {err}") from err
            print(f"{label} passed")

        key = (run.__module__, label)
        known = _GRADERS.get(key, run)
        if known.__qualname__ != run.__qualname__:  # a reload is fine
            raise ValueError(
                f"two graders for {label!r} in {run.__module__}: {known.__qualname__} and {run.__qualname__}"
            )
        _GRADERS[key] = run
        return run

    return decorate


class LearnerError(Exception):
    """An exception raised inside the learner's code (by `call`), told apart from the grader's own verdicts:
    a learner's failing `assert` is reported as theirs, not as the grader's hint."""


class ForbiddenCall(Exception):
    """Raised by a function that `forbidden` switched off, when the learner's code calls it."""


def call(fn: Callable, *args, what: str, **kwargs):
    """`fn(*args, **kwargs)`, the learner's code, on the grader's own arguments (so that gradients with respect to
    them can be checked), snapshotted before and compared after the call. Raises AssertionError when the learner's
    code changed an argument in place or called a `forbidden` function, LearnerError when it raised anything
    else (the stub's bare NotImplementedError passes through)."""
    before = [_snapshot(a) for a in (*args, *kwargs.values())]
    try:
        result = fn(*args, **kwargs)
    except NotImplementedError as err:
        if not str(err):
            raise
        raise LearnerError(f"your code raised NotImplementedError: {err}") from err
    except ForbiddenCall as err:
        raise AssertionError(f"{what} calls {err}") from None
    except Exception as err:
        raise LearnerError(_describe(err)) from err
    names = [f"argument {i + 1}" for i in range(len(args))] + [f"argument {k!r}" for k in kwargs]
    for name, old, new in zip(names, before, (*args, *kwargs.values())):
        expect(_same(old, new), f"{what} changed its {name} in place; work on a copy (`.clone()`, `list(...)`, "
                                "`dict(...)`) and leave the inputs as they were")
    return result


def _snapshot(x):
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, dict):
        return {k: _snapshot(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_snapshot(v) for v in x) if not hasattr(x, "_fields") else type(x)(*map(_snapshot, x))
    return copy.deepcopy(x)


def _describe(err: Exception) -> str:
    """"your code raised X: message", or where a learner's own `assert` failed without a message, the line."""
    if isinstance(err, AssertionError) and not str(err):
        frame = traceback.extract_tb(err.__traceback__)[-1]
        return f"an assert in your code failed: `{(frame.line or '').strip()}` (line {frame.lineno})"
    return f"your code raised {type(err).__name__}: {err}"


def _same(old, new) -> bool:
    """Is `new` (an argument after the call) still equal to `old` (its snapshot)? Tensors: dtype, shape and values
    (NaN equal to NaN); containers, dataclasses and modules item by item; anything else by `==`."""
    if isinstance(old, torch.Tensor):
        if not isinstance(new, torch.Tensor) or old.dtype != new.dtype or old.shape != new.shape:
            return False
        new = new.detach()
        return bool(((old == new) | (old.isnan() & new.isnan()) if old.is_floating_point() else old == new).all())
    if type(old) is not type(new):
        return False
    if isinstance(old, np.ndarray):
        return old.shape == new.shape and np.array_equal(old, new, equal_nan=old.dtype.kind == "f")
    if isinstance(old, dict):
        return old.keys() == new.keys() and all(_same(old[k], new[k]) for k in old)
    if isinstance(old, (list, tuple)):
        return len(old) == len(new) and all(_same(x, y) for x, y in zip(old, new))
    if dataclasses.is_dataclass(old):
        return all(_same(getattr(old, f.name), getattr(new, f.name)) for f in dataclasses.fields(old))
    if isinstance(old, torch.nn.Module):
        return _same(old.state_dict(), new.state_dict())
    return bool(old == new)


@contextlib.contextmanager
def forbidden(*targets: tuple[object, str], reason: str):
    """While active, each `(owner, name)` in `targets` (a module or class and the attribute to switch off, e.g.
    `(torch.nn.functional, "scaled_dot_product_attention")`) raises ForbiddenCall when called, so `call`
    reports "... calls owner.name, which <reason>"."""
    with contextlib.ExitStack() as stack:
        for owner, name in targets:
            qualified = f"{getattr(owner, '__name__', type(owner).__name__)}.{name}"

            def refuse(*args, _name=qualified, **kwargs):
                raise ForbiddenCall(f"{_name}, which {reason}")

            stack.enter_context(mock.patch.object(owner, name, refuse))
        yield


def graders(module: str | None = None) -> dict[str, Callable]:
    """The registered graders by label, optionally only those of one module (e.g. "llava_mini.grading.nb04").

    Labels are unique within a module only: without `module`, a label that several modules use maps to one of them.
    """
    return {label: g for (mod, label), g in _GRADERS.items() if module is None or mod == module}


@contextlib.contextmanager
def _isolated_rng(seed: int = 0):
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng():
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def rng(seed: int) -> torch.Generator:
    """A grader's own CPU generator: inputs never depend on how much randomness the learner used."""
    return torch.Generator().manual_seed(seed)


def _short(x) -> str:
    """A compact description of a value for a hint: small tensors in full, larger ones by shape."""
    if isinstance(x, torch.Tensor):
        if x.numel() <= 12:
            return f"tensor({x.tolist()})"
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    text = repr(x)
    return text if len(text) <= 80 else text[:77] + "..."


def expect(condition: bool, hint: str) -> None:
    """Raise AssertionError(hint) unless `condition` holds."""
    if not condition:
        raise AssertionError(hint)


def expect_type(value, kind: type | tuple[type, ...], what: str) -> None:
    """`value` is an instance of `kind` (bool is not accepted as an int)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))
    names = " or ".join(k.__name__ for k in kinds)
    expect(ok, f"{what} should be a {names}, got {type(value).__name__} {_short(value)}")


def expect_shape(t, shape: tuple[int, ...], what: str) -> None:
    """`t` is a tensor of exactly `shape`."""
    expect_type(t, torch.Tensor, what)
    expect(tuple(t.shape) == tuple(shape), f"{what} should have shape {tuple(shape)}, got {tuple(t.shape)}")


def expect_dtype(t, dtype: torch.dtype, what: str) -> None:
    """`t` is a tensor of `dtype` (float64 where float32 is expected is a mistake of its own, named as such)."""
    expect_type(t, torch.Tensor, what)
    expect(t.dtype == dtype, f"{what} should have dtype {dtype}, got {t.dtype}" +
           ("; keep the computation in the inputs' dtype (NumPy and Python floats give float64)"
            if t.dtype == torch.float64 else ""))


def expect_same_gradient(got: torch.Tensor, want: torch.Tensor, inputs: dict[str, torch.Tensor], what: str,
                         *, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """`got` (the learner's output) and `want` (the reference's, on the same `inputs`) have the same gradient
    with respect to each named input, for one fixed random cotangent: a value computed under `no_grad`,
    through `.detach()` or in NumPy has the right value and no gradient, which is what training needs."""
    expect(got.requires_grad, f"{what} carries no gradient: it was computed under torch.no_grad(), through "
                               ".detach() or .item(), or outside torch (NumPy); keep it on the autograd graph")
    cotangent = torch.randn(want.shape, generator=rng(7), dtype=want.dtype)
    names, tensors = list(inputs), list(inputs.values())
    mine = torch.autograd.grad((got * cotangent).sum(), tensors, retain_graph=True, allow_unused=True)
    theirs = torch.autograd.grad((want * cotangent).sum(), tensors, retain_graph=True, allow_unused=True)
    for name, g_got, g_want in zip(names, mine, theirs):
        expect(g_got is not None or g_want is None, f"the gradient of {what} does not reach {name}: a step of the "
                                                    "computation leaves the autograd graph")
        if g_want is not None:
            expect_close(g_got, g_want, f"the gradient of {what} with respect to {name}", atol=atol, rtol=rtol)


def expect_equal(got, want, what: str, hint: str = "") -> None:
    """Exact equality (tensors: same shape, dtype kind and values)."""
    if isinstance(want, torch.Tensor):
        expect_shape(got, want.shape, what)
        expect(got.dtype == want.dtype, f"{what} should have dtype {want.dtype}, got {got.dtype}")
        same = torch.equal(got, want)
    else:
        same = got == want
    expect(same, f"{what} should be {_short(want)}, got {_short(got)}" + (f"; {hint}" if hint else ""))


def expect_close(got, want: torch.Tensor, what: str, hint: str = "", *, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Same shape and values within `atol + rtol * |want|`; the message gives the largest difference."""
    expect_shape(got, want.shape, what)
    got = got.detach().to(torch.float64)
    want = want.detach().to(torch.float64)
    bad = ~torch.isclose(got, want, atol=atol, rtol=rtol)
    if bad.any():
        diff = (got - want).abs().nan_to_num(float("inf"))
        where = tuple(int(i) for i in torch.nonzero(bad)[0])
        raise AssertionError(
            f"{what} differs from the reference at {int(bad.sum())} of {bad.numel()} entries "
            f"(first at index {where}, largest difference {diff.max().item():.3g})" + (f"; {hint}" if hint else "")
        )


def rejects(check: Callable, *learner) -> str:
    """The AssertionError message `check` gives a wrong implementation; AssertionError if it accepts it.

    Used by the tests that prove graders bite: each plausible wrong implementation must be rejected,
    and not merely taken for an unfinished stub.
    """
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            check(*learner)
    except AssertionError as err:
        message = str(err)
    else:
        raise AssertionError(f"{check.__name__} accepted a wrong implementation: {learner}")
    if "is not done yet" in message:
        raise AssertionError(f"{check.__name__} took a wrong implementation for a stub: {message}")
    return message
