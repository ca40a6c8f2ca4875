"""Graders: plain functions that check a learner's exercise, usable with or without a kernel.

Layout: one module per notebook, `llava_mini/grading/nbNN.py` (`demo.py` is the machinery's test course
and a template). Each exposes `check_<what>(learner_fn)` functions decorated with `@grader`, and a
notebook's grader cell makes exactly one call:

    from llava_mini.grading import nb04
    nb04.check_projector(Projector)

A grader builds its inputs from its own seeded generator (`rng`), runs the learner's code and compares
with the package's reference or with properties, using the `expect_*` helpers. `@grader` turns the stub's
`NotImplementedError` into "exercise 4.2 is not done yet: ...", any wrong answer into an AssertionError
that names the exercise and gives a short hint, and prints one fixed line when everything is right.
"""

from __future__ import annotations

import contextlib
import functools
import io
import random
from typing import Callable

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
