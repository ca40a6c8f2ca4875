"""`llava_mini.ablate` on a tiny protocol: arms train and score, resume, and the shipped runs match their manifest."""

import dataclasses
import json

import numpy as np
import pytest

from llava_mini import ablate, zoo
from llava_mini.cli import main


@pytest.fixture
def tiny(monkeypatch):
    """A protocol of 2 steps a stage and 4 questions per category."""
    for name in ("STAGE1", "STAGE2_CONV", "STAGE2_MIX"):
        monkeypatch.setattr(ablate, name, dataclasses.replace(getattr(ablate, name), steps=2, batch_size=8))
    monkeypatch.setattr(ablate, "STAGE1_SCENES", 16)
    monkeypatch.setattr(ablate, "CONV_SCENES", {"conversation": 16})
    monkeypatch.setattr(ablate, "MIX_SCENES", {"conversation": 16, "detail": 8, "complex_reasoning": 8})
    monkeypatch.setattr(ablate, "EVAL_N", 4)


def test_every_ablation_starts_from_the_baseline_and_changes_one_thing():
    defaults = {f.name: f.default for f in dataclasses.fields(ablate.Arm) if f.name != "name"}
    for name, arms in ablate.ABLATIONS.items():
        assert arms[0] is ablate.BASELINE
        for arm in arms[1:]:
            changed = [k for k, v in defaults.items() if getattr(arm, k) != v and k != "queries"]
            assert len(changed) == 1, (name, arm)


def test_run_trains_scores_and_resumes(tiny, tmp_path):
    table = ablate.run("lm", seeds=1, root=tmp_path, progress=False)
    assert set(table) == {"baseline", "frozen-lm"}
    result = table["frozen-lm"][0]
    assert len(result["correct"]["colour"]) == 4 and len(result["bench_pairs"]) == 90
    assert 0 <= result["accuracy"]["overall"] <= 1 and result["visual_tokens"] == 9
    # the frozen arm stored only W: its LLM is vicuna-mini's, untouched
    assert zoo.read_config("frozen-lm-s0", tmp_path)["components"] == {"vision": "clip-mini", "lm": "vicuna-mini"}
    assert result["lm_own_task"]["overall"] == pytest.approx(table["baseline"][0]["lm_own_task"]["overall"], abs=1) 
    assert zoo.verify(tmp_path) == []
    stamp = (tmp_path / "baseline-s0" / "result.json").stat().st_mtime_ns
    ablate.run("lm", seeds=1, root=tmp_path, progress=False)  # nothing left to do: nothing is rewritten
    assert (tmp_path / "baseline-s0" / "result.json").stat().st_mtime_ns == stamp


def test_rejudge_rescores_the_bench_and_keeps_the_rest(tiny, tmp_path, monkeypatch):
    ablate.run("lm", seeds=1, root=tmp_path, progress=False)
    before = json.loads((tmp_path / "frozen-lm-s0" / "result.json").read_text())
    monkeypatch.setattr(ablate.RuleJudge, "review", lambda self, *args, **kw: "10 5\nhalf marks")
    assert main(["ablate", "lm", "--seeds", "1", "--root", str(tmp_path), "--rejudge"]) in (0, None)
    after = json.loads((tmp_path / "frozen-lm-s0" / "result.json").read_text())
    assert after["relative_score"]["overall"] == 50 and after["bench_pairs"][0] == [10, 5]
    assert {k: v for k, v in after.items() if not k.startswith(("bench", "relative"))} == {
        k: v for k, v in before.items() if not k.startswith(("bench", "relative"))}
    entry = zoo.read_manifest(tmp_path)["frozen-lm-s0"]
    assert entry["metrics"]["relative_score"]["overall"] == 50 and zoo.verify(tmp_path) == []


def test_load_names_the_command_that_makes_missing_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="llava-mini ablate projector --seeds 3"):
        ablate.load("projector", 3, tmp_path)


def test_unknown_ablation_and_bad_seeds_are_refused(capsys):
    assert main(["ablate", "colour"]) == 2
    assert "unknown ablation 'colour'; expected one of lm, projector" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ablate", "lm", "--seeds", "0"])


def test_paired_difference_keeps_questions_paired():
    rng = np.random.default_rng(0)
    hard = rng.random(200) < 0.5
    a = (rng.random((3, 200)) < np.where(hard, 0.1, 0.9)).astype(float)
    b = np.clip(a + (rng.random((3, 200)) < 0.1), 0, 1)
    mean, low, high = ablate.paired_difference(a, b)
    assert mean == pytest.approx((b - a).mean()) and low <= mean <= high and low > 0
    assert ablate.paired_difference(a, a) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="two \\(seeds, questions\\) arrays of one shape"):
        ablate.paired_difference(a, b[:2])


def test_shipped_runs_match_the_manifest_and_their_results():
    manifest = zoo.read_manifest(ablate.ROOT)
    assert zoo.verify(ablate.ROOT) == []
    for name, arms in ablate.ABLATIONS.items():
        for arm in arms:
            for seed in range(3):
                run = f"{arm.name}-s{seed}"
                result = json.loads((ablate.ROOT / run / "result.json").read_text())
                recorded = manifest[run]["metrics"]["accuracy"]
                assert recorded["overall"] == pytest.approx(result["accuracy"]["overall"], abs=1e-4)
                assert manifest[run]["recipe"]["protocol"] == json.loads(json.dumps(ablate.PROTOCOL))
                assert np.mean(result["correct"]["colour"]) == pytest.approx(result["accuracy"]["colour"])
