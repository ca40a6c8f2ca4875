"""The `llava-mini` training-side commands: chat, accuracy, zoo, and their error messages."""

import json
import shutil

import pytest

from llava_mini import chat, cli, evaluate, recipe, world, zoo


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_chat_prints_only_the_answer(capsys):
    question = "How many objects are there?"
    code, out, err = run(capsys, "chat", "--model", "llava-mini", "--scene", "1100000", question)
    assert code == 0 and err == ""
    assert out == chat.Session.open("llava-mini", scene=1100000).ask(question) + "\n"
    assert out.count("\n") == 1 and out.strip()


def test_chat_answers_an_empty_question_once(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", None)  # reading standard input would fail: an empty question is a question
    code, out, err = run(capsys, "chat", "--model", "llava-mini", "--scene", "1100001", "")
    assert code == 0 and err == "" and out.count("\n") == 1


def test_chat_reads_an_image_file(capsys, tmp_path):
    from PIL import Image

    path = tmp_path / "scene.png"
    Image.fromarray(world.render(world.sample_scene(1100000), 48)).save(path)
    code, out, _ = run(capsys, "chat", "--image", str(path), "How many objects are there?")
    assert code == 0 and out == run(capsys, "chat", "--scene", "1100000", "How many objects are there?")[1]
    Image.fromarray(world.render(world.sample_scene(1100000), 32)).save(path)
    code, out, err = run(capsys, "chat", "--image", str(path), "How many objects are there?")
    assert code == 0 and out.count("\n") == 1
    assert err.count("note:") == 1 and "is 32x32 px; resized to the model's 48x48" in err


def test_chat_refuses_a_file_that_is_not_an_image(capsys, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    for image, message in ((path, "is not an image file (expected a PNG, JPEG"), (tmp_path / "none.png", "no image file")):
        code, out, err = run(capsys, "chat", "--image", str(image), "How many objects are there?")
        assert code == 2 and out == "" and err.startswith("llava-mini chat: error: ") and message in err
        assert err.count("\n") == 1  # one line, no traceback


def test_chat_reads_ordinary_variants_of_known_words_and_says_so(capsys):
    canonical = run(capsys, "chat", "--scene", "1100000", "What colour is the circle?")[1]
    code, out, err = run(capsys, "chat", "--scene", "1100000", "what color is the circle?")
    assert code == 0 and out == canonical
    assert err == "note: read 'what' as 'What', 'color' as 'colour'\n"


def test_chat_names_an_unknown_word_and_the_nearest_known_ones(capsys):
    code, out, err = run(capsys, "chat", "--scene", "1100000", "What colour is the sqare?")
    assert code == 2 and out == ""
    assert "unknown word(s) 'sqare' (nearest known: square" in err and "USER" not in err  # not the internal prompt
    code, _, err = run(capsys, "chat", "--scene", "1100000", "What colour is the elephant?")
    assert code == 2 and "unknown word(s) 'elephant':" in err


def test_data_exports_images_at_the_zoo_size_unless_told(capsys, tmp_path):
    from PIL import Image

    assert run(capsys, "data", "--out", str(tmp_path / "a"), "--n", "1", "--seed", "1100000")[0] == 0
    assert run(capsys, "data", "--out", str(tmp_path / "b"), "--n", "1", "--seed", "1100000", "--size", "32")[0] == 0
    assert Image.open(next((tmp_path / "a" / "images").iterdir())).size == (48, 48)
    assert Image.open(next((tmp_path / "b" / "images").iterdir())).size == (32, 32)
    code, _, err = run(capsys, "data", "--out", str(tmp_path / "c"), "--n", "1", "--size", "16")
    assert code == 2 and "at least 32 px" in err


def test_accuracy_json_prints_exactly_one_object_with_the_issues_keys(capsys):
    code, out, err = run(capsys, "accuracy", "--model", "llava-mini", "--split", "test", "--json", "--n", "5")
    assert code == 0 and out.endswith("\n") and out.count("\n") == 1
    result = json.loads(out)
    assert tuple(result) == evaluate.JSON_KEYS and result["n"] == 5
    assert all(0.0 <= result[k] <= 1.0 for k in evaluate.JSON_KEYS if k != "n" and result[k] is not None)
    assert all(result[k] is not None for k in (*evaluate.SHORT_KEYS, "overall", "description", "reasoning"))


@pytest.mark.parametrize("argv, message", [
    (("chat", "--model", "no-such-model", "--scene", "1", "hi"), "no checkpoint 'no-such-model'"),
    (("accuracy", "--model", "no-such-model", "--n", "5"), "no checkpoint 'no-such-model'"),
    (("accuracy", "--model", "llava-mini", "--n", "0"), "n must be a positive number"),
    (("chat", "--model", "clip-mini", "--scene", "1", "hi"), "'clip-mini' is a clip checkpoint"),
    (("train", "--stage", "1", "--lm", "no-such-lm", "--out", "x"), "no checkpoint 'no-such-lm'"),
    (("zoo", "build", "--only", "llava-maxi"), "unknown zoo names ['llava-maxi']"),
    (("zoo", "rebuild-check", "--root", "."), "has no llava-mini-stage1; build it first"),
    (("chat", "--model", "llava-mni", "--scene", "1", "hi"), "no checkpoint 'llava-mni' (did you mean llava-mini?)"),
])
def test_errors_give_a_clear_message_and_a_nonzero_exit(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code != 0 and out == "" and message in err and err.startswith(f"llava-mini {argv[0]}: error:")
    assert not err.startswith(f"llava-mini {argv[0]}: error: \"")  # a KeyError's message, not its repr


@pytest.mark.parametrize("argv, message", [
    (("train", "--stage", "2", "--epochs", "0", "--out", "x"), "argument --epochs: expected a whole number >= 1, got '0'"),
    (("train", "--stage", "1", "--steps", "ten", "--out", "x"), "argument --steps: expected a whole number >= 1, got 'ten'"),
])
def test_a_training_length_must_be_a_positive_whole_number(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        cli.main(list(argv))
    assert exit_.value.code == 2 and capsys.readouterr().err.strip().endswith(f"llava-mini train: error: {message}")


def test_zoo_verify_and_list(capsys):
    code, out, _ = run(capsys, "zoo", "verify")
    assert code == 0 and out.startswith(f"{len(recipe.NAMES)} checkpoints match the manifest")
    code, out, _ = run(capsys, "zoo", "list")
    assert code == 0 and sorted(line.split()[0] for line in out.splitlines()) == sorted(recipe.NAMES)


def test_zoo_rebuild_check_compares_and_records(capsys, tmp_path):
    code, out, _ = run(capsys, "zoo", "rebuild-check")
    assert code == 0 and out.lstrip().startswith("same  fingerprint: largest difference")
    for name in ("clip-mini", "vicuna-mini", "llava-mini-stage1"):
        shutil.copytree(zoo.ZOO_DIR / name, tmp_path / name)
        entry = zoo.read_manifest()[name]
        zoo.record(name, entry["recipe"], {k: v for k, v in entry["metrics"].items() if not k.startswith("rebuild")},
                   tmp_path)
    code, _, err = run(capsys, "zoo", "rebuild-check", "--root", str(tmp_path))
    assert code == 2 and "records no rebuild check" in err
    code, out, _ = run(capsys, "zoo", "rebuild-check", "--root", str(tmp_path), "--record")
    recorded = zoo.read_manifest(tmp_path)["llava-mini-stage1"]["metrics"]
    assert code == 0 and recorded["rebuild_cpu"] == recipe.cpu_kind() and recorded["rebuild_check"] in out
    code, out, _ = run(capsys, "zoo", "rebuild-check", "--root", str(tmp_path))
    assert code == 0 and "   same  sha256" in out


def test_zoo_gates_read_the_given_zoo_and_fail_while_a_target_is_missed(capsys, tmp_path):
    code, out, _ = run(capsys, "zoo", "gates", "--root", str(tmp_path))  # an empty zoo: every metric missing
    lines = out.splitlines()
    assert code == 1 and len(lines) == len(recipe.gates({})) and all(line.lstrip().startswith("NOT MET") for line in lines)
    code, out, _ = run(capsys, "zoo", "gates")
    assert code == 1 and "clip-mini layer -2 patch probe: cell >= 0.99" in out


def test_accuracy_scores_the_style_asked_for(capsys):
    base = ("accuracy", "--model", "llava-mini", "--json", "--n", "3")
    taught, short, sentence = (json.loads(run(capsys, *base, *extra)[1]) for extra in
                               ((), ("--answers", "short"), ("--answers", "sentence")))
    assert taught == sentence  # the shipped llava-mini was taught sentences that restate the referent
    assert short["colour"] == short["shape"] == 0.0  # it never answers a bare "red"
