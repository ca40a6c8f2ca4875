"""LLaVA-Bench-mini: its files, the judges (rules, and an OpenAI-compatible endpoint on loopback), the scores."""

import filecmp
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llava_mini import bench, world
from llava_mini.bench import judge, remote, scores
from llava_mini.cli import main


@pytest.fixture(scope="module")
def items():
    return bench.load("in")


@pytest.mark.parametrize("name, n", [("in", 90), ("ood", 60)])
def test_shipped_files_are_what_write_makes(tmp_path, name, n):
    out = bench.write(name, tmp_path)
    shipped = bench.DATA_DIR / name
    for f in ("questions.jsonl", "context.jsonl", "answers_teacher.jsonl"):
        assert (out / f).read_text() == (shipped / f).read_text(), f
    images = sorted(p.name for p in (out / "images").iterdir())
    assert images == sorted(p.name for p in (shipped / "images").iterdir())
    assert all(filecmp.cmp(out / "images" / i, shipped / "images" / i, shallow=False) for i in images)
    loaded = bench.load(name)
    assert len(loaded) == n and [it.category for it in loaded[:3]] == list(bench.TYPES)


def test_ood_shifts():
    pairs = bench.scenes("ood")
    assert {len(s.objects) for s, _ in pairs[:10]} <= {4, 5} and all(noise == bench.OOD_NOISE for _, noise in pairs[10:])
    context = bench.context_of(pairs[0][0])
    assert f"there are {len(pairs[0][0].objects)} shapes:" in context.captions[1]
    in_seeds = {s.seed for s, _ in bench.scenes("in")}
    assert not in_seeds & {s.seed for s, _ in pairs} and all(s in world.SPLITS["test"] for s in in_seeds)


def test_the_reference_scores_ten_under_the_rules(items):
    j = judge.RuleJudge()
    for it in items + bench.load("ood"):
        assert judge.parse_score(j.review(it.context, it.question, it.reference, it.reference, it.category)) == (10, 10)


def test_rule_judge_penalises_false_claims_omissions_and_wrong_conclusions(items):
    j = judge.RuleJudge()

    def score(it, reply):
        return judge.parse_score(j.review(it.context, it.question, it.reference, reply, it.category))[1]

    conv = next(it for it in items if it.category == "conv" and it.question.startswith("What colour"))
    gold = judge.solve(conv.question, conv.scene.objects)[1]
    wrong = next(c for c in world.COLOURS if c != gold)
    assert score(conv, conv.reference.replace(gold, wrong)) <= 3
    detail = next(it for it in items if it.category == "detail" and len(it.scene.objects) == 3)
    first = detail.reference.split(". ")
    assert score(detail, ". ".join(first[:2]) + ".") < score(detail, detail.reference)  # omissions
    false = detail.reference.replace(detail.scene.objects[0].colour, "purple" if detail.scene.objects[0].colour
                                     != "purple" else "red", 1)
    assert score(detail, false) < 10
    complex_ = next(it for it in items if it.category == "complex" and it.reference.endswith(("yes.", "no.")))
    steps, answer = complex_.reference.rsplit("so the answer is ", 1)
    flipped = steps + "so the answer is " + ("no." if answer == "yes." else "yes.")
    # a wrong conclusion after true steps scores below a bare right one (they tied at 7 before)
    assert score(complex_, flipped) <= 6 < score(complex_, "So the answer is " + answer) < 10
    assert score(complex_, flipped) < score(complex_, complex_.reference) == 10
    assert score(complex_, "I do not know.") <= 2


# Answers that must not score like right ones (an audit of the rule judge), by bench question id: hedges, a filler
# sentence in place of reasoning, false steps behind a right conclusion, denials read as statements, false sizes.
LOOPHOLES = [
    (36, "yes or no.", 3), (39, "No, well, yes.", 3), (36, "yes, there is no purple diamond.", 3),
    (12, "No, the yellow triangle is below the small blue diamond.", 3),
    (33, "The red object is in the center or the bottom center.", 3),
    (2, "Done. So the answer is no.", 7), (8, "Let me check. So the answer is yes or no.", 5),
    (8, "Hmm. So the answer is yes. Actually no.", 5),
    (2, "The blue object is the large purple circle in the top left. The small red square is the small green cross "
        "in the bottom right. Both are in the middle row, so the answer is no.", 5),
    (5, "The purple cross is the large purple cross in the middle left. The small green diamond in the middle right "
        "is to the left of it. In total, 1 object is to the left of it, so the answer is 0.", 6),
    (11, "The large red diamond in the top right is neither red nor a cross. No object is a red cross, so the answer "
         "is no.", 6),
    (1, "There are 2 objects in the image. There is no small red square in the middle left. There is no large blue "
        "square in the middle right. The small red square is to the left of the large blue square.", 1),
    (1, "There are 2 objects in the image. A large red square is in the middle left. In the middle right, there is a "
        "small blue square. The red square is to the left of the blue square.", 5),
    # a second audit: denials of the asked thing, "no" inside another sentence, another object, two conclusions
    (57, "The triangle is not red.", 1), (15, "There are not 3 objects.", 1), (12, "I have no idea.", 1),
    (18, "The object in the center is blue.", 3), (81, "The circle is yellow. The square is yellow.", 9),
    (2, "The blue object is the large blue square in the middle right. The small red square is the small red square in "
        "the middle left. Both are in the middle row, so the answer is yes. Wait, so the answer is no.", 7),
    (11, "The large red diamond in the top right is not red. No object is a red cross, so the answer is no.", 6),
    (1, "There are 2 objects in the image. There isn't a small red square in the middle left. There isn't a large "
        "blue square in the middle right.", 1),
]


@pytest.mark.parametrize("qid, reply, at_most", LOOPHOLES)
def test_rule_judge_does_not_pay_for_hedges_fillers_or_false_steps(items, qid, reply, at_most):
    it = next(it for it in items if it.question_id == qid)
    assert judge.rule_score(it.category, it.question, reply, it.scene.objects) <= at_most


def test_rule_judge_pays_right_answers_in_other_words(items):
    """A right conclusion named another way, British spelling, a count with its noun: full marks."""
    by_id = {it.question_id: it for it in items}
    for qid, old, new in ((14, "the answer is the yellow square.", "the answer is the large yellow square."),
                          (53, "the answer is 2.", "the answer is 2 objects."), (33, "center", "centre")):
        it = by_id[qid]
        assert old in it.reference
        assert judge.rule_score(it.category, it.question, it.reference.replace(old, new), it.scene.objects) == 10


def test_rule_judge_checks_the_object_a_reply_is_about():
    ood = {it.question_id: it for it in bench.load("ood")}
    it = ood[30]  # "Is there a red triangle?": there is none, and there is a green triangle
    assert judge.solve(it.question, it.scene.objects) == ("yesno", "no")
    for reply in ("No, there is a red triangle.", "No, there is no green triangle.", "I have no idea."):
        assert judge.rule_score(it.category, it.question, reply, it.scene.objects) <= 3, reply
    larger = ood[11]  # "Which is larger, ...": a large object that is not one of the two compared is wrong
    wrong = larger.reference.rsplit("so the answer is", 1)[0] + "so the answer is the red circle."
    assert judge.rule_score(larger.category, larger.question, wrong, larger.scene.objects) <= 7
    scene = world.sample_scene(1105051)  # "What is X?" when the answer shares the question's colour and shape
    assert judge.rule_score("conv", "What is below the large purple cross?",
                            "A purple cross is below the large purple cross.", scene.objects) == 10
    huge = "There are 1" + "0" * 5000 + " objects in the image. A small red square is in the middle left."
    assert judge.rule_score("detail", "Describe the image.", huge, scene.objects) <= 5  # read, not crashed


def test_padding_with_true_sentences_never_raises_a_rule_score(items):
    for it in items:
        t = it.scene.objects[0]
        padded = it.reference + f" There is a {t.colour} {t.shape}." * 3
        for reply in (it.reference, it.reference.replace("yes.", "no.")):
            assert (judge.rule_score(it.category, it.question, reply + padded[len(it.reference):], it.scene.objects)
                    <= judge.rule_score(it.category, it.question, reply, it.scene.objects))


@pytest.mark.parametrize("review, expected", [
    ("8 7\nAssistant 1 is better.", (8.0, 7.0)), ("8,7", (8.0, 7.0)), ("7.5 9", (7.5, 9.0)),
    ("8/10 7/10\n", None), ("8\n7", None), ("Assistant 1: 8 Assistant 2: 7", None), ("8 7 6", None),
    ("", None), ("11 3", None), ("0 5", None), ("nan 5", None), ("\nfirst line empty 8 7", None)])
def test_parse_score(review, expected):
    assert judge.parse_score(review) == expected


def test_relative_score_leaves_failures_out_and_bootstrap_brackets_it():
    pairs = [(10, 8), (10, 9), None, (8, 8), (10, 5)]
    assert scores.relative_score(pairs) == pytest.approx(100 * 30 / 38)
    low, high = scores.bootstrap_ci(pairs, 500, 0)
    assert low < scores.relative_score(pairs) < high
    assert scores.bootstrap_ci([(10, 8)] * 5) == pytest.approx((80.0, 80.0))
    with pytest.raises(ValueError, match="no scored pair"):
        scores.relative_score([None, None])


class _Endpoint(BaseHTTPRequestHandler):
    mode = "ok"
    seen: list = []

    def do_POST(self):  # noqa: N802 (the http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, self.headers.get("Authorization"), body))
        if self.mode == "slow":
            time.sleep(1.0)
        if self.mode == "error":
            self.send_response(500)
            self.end_headers()
            return
        text = {"ok": json.dumps({"choices": [{"message": {"role": "assistant", "content": "9 6\nbecause"}}]}),
                "unparseable": json.dumps({"choices": [{"message": {"content": "Assistant 1 gets 9/10."}}]}),
                "garbage": "<html>not json", "slow": "{}"}[self.mode]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        try:
            self.wfile.write(text.encode())
        except BrokenPipeError:
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Endpoint.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("mode, unparseable, errors", [
    ("ok", 0, 0), ("unparseable", 3, 0), ("garbage", 0, 3), ("slow", 0, 3), ("error", 0, 3)])
def test_openai_judge_on_loopback(items, endpoint, monkeypatch, mode, unparseable, errors):
    monkeypatch.setattr(_Endpoint, "mode", mode)
    monkeypatch.setenv("LLAVA_MINI_JUDGE_URL", endpoint)
    monkeypatch.setenv("LLAVA_MINI_JUDGE_MODEL", "judge-model")
    monkeypatch.setenv("LLAVA_MINI_JUDGE_KEY", "k")
    reviewer = remote.OpenAIJudge(timeout=0.3)
    chosen = items[:3]
    pairs, failures = scores.judge_all(chosen, [it.reference for it in chosen], reviewer)
    assert failures == {"parse_failures": unparseable, "errors": errors}
    result = scores.summarise(chosen, pairs, failures, [it.reference for it in chosen], n_boot=50)
    assert result["parse_failures"] == {"unparseable": unparseable, "judge_errors": errors}
    if mode == "ok":
        assert pairs == [(9.0, 6.0)] * 3 and result["relative_score"]["overall"] == pytest.approx(66.7)
        path, auth, body = _Endpoint.seen[0]
        assert path == "/v1/chat/completions" and auth == "Bearer k" and body["model"] == "judge-model"
        assert body["temperature"] == 0.2 and body["messages"][0]["content"] == judge.SYSTEM
        user = body["messages"][1]["content"]
        assert user.index("[Context]") < user.index("[Question]") < user.index("[Assistant 1]") < user.index(
            "[Assistant 2]") < user.index("[System]")
    else:
        assert result["relative_score"]["overall"] is None and result["n"] == {"questions": 3, "scored": 0}


def test_openai_judge_needs_its_settings(monkeypatch):
    for name in remote.ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="LLAVA_MINI_JUDGE_URL"):
        remote.OpenAIJudge()


def test_bench_command_prints_one_json_object(capsys):
    assert main(["bench", "--model", "llava-mini", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert tuple(result) == scores.JSON_KEYS
    assert set(result["relative_score"]) == {"overall", *bench.TYPES} and result["n"]["questions"] == 90
    assert result["parse_failures"] == {"unparseable": 0, "judge_errors": 0}
    low, high = result["ci95"]["overall"]
    assert low <= result["relative_score"]["overall"] <= high


def test_bench_command_with_the_openai_judge_on_loopback(endpoint, monkeypatch, capsys):
    monkeypatch.setattr(_Endpoint, "mode", "garbage")
    monkeypatch.setenv("LLAVA_MINI_JUDGE_URL", endpoint)
    monkeypatch.setenv("LLAVA_MINI_JUDGE_MODEL", "judge-model")
    assert main(["bench", "--model", "llava-mini", "--judge", "openai", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["parse_failures"] == {"unparseable": 0, "judge_errors": 90} and result["n"]["scored"] == 0
    assert result["relative_score"]["overall"] is None and len(_Endpoint.seen) == 90
