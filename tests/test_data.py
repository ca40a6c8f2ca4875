"""LLaVA's JSON format: export, byte-identical re-export, validating load, the `llava-mini data` command."""

import json

import numpy as np
import pytest
from PIL import Image

from llava_mini import data, world
from llava_mini.cli import main
from llava_mini.teacher import Teacher


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return data.export_dataset(tmp_path_factory.mktemp("export"), n=12, seed=100)


def _write(tmp_path, obj, name="bad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def _good():
    return {"id": "0000001", "image": "images/0000001.png",
            "conversations": [{"from": "human", "value": "<image>\nWhat colour is the circle?"},
                              {"from": "gpt", "value": "red"}]}


def test_export_writes_llava_files(exported):
    names = {p.name for p in exported.iterdir()}
    assert names == {"images", "context.json", *(f"{name}.json" for name in data.FILES)}
    assert sorted(p.name for p in (exported / "images").iterdir()) == [f"{s:07d}.png" for s in range(100, 112)]
    sizes = {name: len(data.load_records(exported / f"{name}.json")) for name in data.FILES}
    assert sizes == {"stage1": 12, "plain": 12, "conversation": 12, "detail": 12, "complex_reasoning": 12,
                     "instruct": 36}
    plain = data.load_records(exported / "plain.json")[0]
    assert plain["conversations"][0] == {"from": "human", "value": "<image>"}
    stage1 = data.load_records(exported / "stage1.json")[0]
    assert stage1["conversations"][0]["value"].startswith("<image>\n")
    assert stage1["conversations"][1] == plain["conversations"][1]  # the same caption, two formats
    for record in data.load_records(exported / "instruct.json"):
        assert (exported / record["image"]).is_file()
    context = json.loads((exported / "context.json").read_text())
    assert sorted(context) == [f"{s:07d}" for s in range(100, 112)]
    assert context["0000100"]["boxes"] == list(world.symbolic_context(world.sample_scene(100)).boxes)


def test_export_round_trips(exported):
    for seed in range(100, 112):
        records, meta = data.scene_records(seed)
        for name in data.FILES:
            loaded = [r for r in data.load_records(exported / f"{name}.json") if r["image"] == f"images/{seed:07d}.png"]
            assert loaded == records[name]
        pixels = np.asarray(Image.open(exported / "images" / f"{seed:07d}.png"))
        assert np.array_equal(pixels, world.render(world.sample_scene(seed)))


def test_two_exports_are_byte_identical(exported, tmp_path):
    again = data.export_dataset(tmp_path / "again", n=12, seed=100)
    files = sorted(p.relative_to(exported) for p in exported.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for f in files:
        assert (exported / f).read_bytes() == (again / f).read_bytes(), f
    text = (exported / "instruct.json").read_text()
    assert text.endswith("]\n") and text.startswith('[\n {\n  "conversations"')


def test_default_seed_is_the_train_start_and_injections_are_recorded(tmp_path):
    out = data.export_dataset(tmp_path, n=20, teacher=Teacher(hallucination=1.0))
    context = json.loads((out / "context.json").read_text())
    assert sorted(context)[0] == f"{world.SPLITS['train'].start:07d}"
    assert all(set(entry["injected"]) == {"conversation", "detail"} for entry in context.values())


def test_cli_data_command(tmp_path, capsys):
    assert main(["data", "--out", str(tmp_path / "x"), "--n", "5"]) == 0
    assert len(data.load_records(tmp_path / "x" / "stage1.json")) == 5
    assert main(["data", "--out", str(tmp_path / "y"), "--n", "0"]) == 2
    assert "n must be a positive number of scenes" in capsys.readouterr().err


def test_bad_export_arguments():
    with pytest.raises(ValueError, match="span the train and val splits"):
        data.export_dataset("/tmp/never-written", n=10, seed=world.SPLITS["val"].start - 5)
    with pytest.raises(ValueError, match="seed must be non-negative"):
        data.export_dataset("/tmp/never-written", n=1, seed=-1)


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("conversations"), r"record #0 \(id '0000001'\): missing key\(s\) conversations"),
    (lambda r: r.pop("id"), r"missing key\(s\) id"),
    (lambda r: r["conversations"][0].update(value="What colour is the circle?"),
     r"id '0000001'\): has an image but its first human turn has no <image>"),
    (lambda r: r["conversations"].reverse(), r"turn 0 is from 'gpt' but should be from 'human'"),
    (lambda r: r["conversations"].append({"from": "human", "value": "And?"}), "ends with a human turn"),
    (lambda r: r["conversations"][1].update(value="red <image>"), r"turn 1 \(gpt\) contains <image>"),
    (lambda r: r["conversations"][1].update(value=" "), r"turn 1 \(gpt\) has an empty value"),
    (lambda r: r["conversations"].extend([{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "x"}]),
     "<image> appears 2 times"),
    (lambda r: r["conversations"].insert(1, {"from": "human", "value": "Hm?"}), "turn 1 is from 'human'"),
    (lambda r: r.update(conversations=[]), "'conversations' must be a non-empty list"),
])
def test_malformed_records_raise_naming_the_record(tmp_path, mutate, message):
    record = _good()
    mutate(record)
    with pytest.raises(ValueError, match=message):
        data.load_records(_write(tmp_path, [record]))


def test_malformed_files_raise(tmp_path):
    with pytest.raises(ValueError, match="expected a JSON list of records, got a JSON dict"):
        data.load_records(_write(tmp_path, {"0000001": _good()}))
    with pytest.raises(ValueError, match=r"record #1: expected a JSON object"):
        data.load_records(_write(tmp_path, [_good(), "not a record"]))
    text_only = {"id": "t", "conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "yes"}]}
    assert data.load_records(_write(tmp_path, [_good(), text_only])) == [_good(), text_only]
    text_only["conversations"][0]["value"] = "<image>\nHi?"
    with pytest.raises(ValueError, match=r"id 't'\): <image> appears 1 times"):
        data.load_records(_write(tmp_path, [text_only]))
