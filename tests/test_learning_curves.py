"""tools/learning_curves.py: each experiment trains and evaluates on a tiny budget."""

import importlib.util
from pathlib import Path

import pytest
from llava_mini import evaluate

TOOL = Path(__file__).parents[1] / "tools" / "learning_curves.py"
spec = importlib.util.spec_from_file_location("learning_curves", TOOL)
curves = importlib.util.module_from_spec(spec)
spec.loader.exec_module(curves)


@pytest.mark.parametrize("experiment", ["text", "slots", "stage2"])
def test_each_experiment_prints_a_curve(experiment, capsys):
    args = curves.parse([experiment, "--dim", "32", "--layers", "1", "--scenes", "40", "--batch", "8", "--steps", "4",
                         "--eval-every", "2", "--n", "4", "--lr", "3e-3", "--device", "cpu"])
    records = curves.run(args)
    assert [r["step"] for r in records] == [2, 4]
    for r in records:
        assert set(evaluate.SHORT_KEYS) <= set(r) and all(0.0 <= r[k] <= 1.0 for k in evaluate.SHORT_KEYS)
        assert r["loss"] > 0
    assert capsys.readouterr().out.count("\n") == 2


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        curves.parse(["text", "--batch", "0"])
