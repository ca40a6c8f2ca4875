"""The `llava-mini` command: one subcommand per job of the course.

Each subcommand is registered by a small `_add_<name>` function and imports its module lazily,
so `llava-mini --help` stays fast and one broken module never breaks the others.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _add_data(sub):
    p = sub.add_parser("data", help="write N ShapesWorld scenes as PNGs + LLaVA-format JSON")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--n", type=int, required=True, help="number of scenes")
    p.add_argument("--seed", type=int, default=None, help="first scene seed (default: the train split's start)")
    p.add_argument("--size", type=int, default=None, help="image side in px (default: 48, what the zoo reads)")

    def run(args):
        from llava_mini import world
        from llava_mini.data import export_dataset

        export_dataset(args.out, n=args.n, seed=args.seed, size=world.IMAGE_SIZE if args.size is None else args.size)

    p.set_defaults(func=run)


def _add_course(sub):
    from pathlib import Path

    p = sub.add_parser("course", help="student notebooks from solutions/, their checks, answer keys")
    actions = p.add_subparsers(dest="action", required=True)
    for name, text in (("build", "write notebooks/ from solutions/"),
                       ("check", "fail if notebooks/ differs from what build writes, or a tag or output is wrong")):
        a = actions.add_parser(name, help=text)
        a.add_argument("--solutions", type=Path, default=Path("solutions"), help="default: solutions/")
        a.add_argument("--notebooks", type=Path, default=Path("notebooks"), help="default: notebooks/")
    a = actions.add_parser("execute", help="re-run solution notebooks and store their outputs (course environment)")
    a.add_argument("paths", nargs="*", type=Path, help="default: every solutions/NN_*.ipynb")
    a = actions.add_parser("add-key", help="add a hashed answer key to a llava_mini/keys/*.json file")
    a.add_argument("--file", type=Path, required=True, help="e.g. llava_mini/keys/nb04.json")
    a.add_argument("--kind", choices=("text", "choice", "number"), required=True)
    a.add_argument("--precision", type=int, default=0, help="decimal places a number answer is rounded to")
    a.add_argument("question_id")
    a.add_argument("answer")

    def run(args):
        from llava_mini import course, keys

        if args.action == "build":
            print("\n".join(course.build(args.solutions, args.notebooks)))
        elif args.action == "check":
            problems = course.check(args.solutions, args.notebooks)
            if problems:
                raise ValueError(f"{len(problems)} problem(s):\n" + "\n".join(problems))
            print(f"{args.notebooks} matches {args.solutions}")
        elif args.action == "execute":
            for path in args.paths or sorted(Path("solutions").glob("[0-9][0-9]_*.ipynb")):
                course.execute_solution(path)
                print(f"executed {path}")
        else:
            keys.add_key(args.file, args.question_id, args.answer, args.kind, precision=args.precision)

    p.set_defaults(func=run)


def _add_export_hf(sub):
    p = sub.add_parser("export-hf", help="write a zoo LLaVA model for transformers' LlavaForConditionalGeneration")
    p.add_argument("--model", required=True, help="name of a LLaVA checkpoint in the zoo")
    p.add_argument("--out", required=True, help="output directory (config, weights, processor)")

    def run(args):
        from llava_mini import zoo
        from llava_mini.hf import export_hf
        from llava_mini.tokenizer import load_tokenizer

        print(export_hf(zoo.load(args.model), load_tokenizer(), args.out))

    p.set_defaults(func=run)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _positive(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _add_train_args(p, recipe_name: str):
    """Hyper-parameters of a training job; each defaults to the zoo recipe's value (`recipe.<recipe_name>`)."""
    default = f"default: recipe.{recipe_name}'s"
    p.add_argument("--steps", type=_positive, help=default)
    p.add_argument("--batch-size", type=_positive, help=default)
    p.add_argument("--lr", type=float, help=default)
    p.add_argument("--grad-accum", type=_positive, default=1, help="micro-batches per optimizer step")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="checkpoint folder to write")


def _train_config(args, base):
    from dataclasses import replace

    given = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr}
    return replace(base, grad_accum=args.grad_accum, device=args.device, compile=args.compile, seed=args.seed,
                   **{k: v for k, v in given.items() if v is not None})


def _save(args, model, metrics, components=None, answers=None):
    from llava_mini import zoo

    zoo.save(args.out, model.cpu(), root=Path("."), components=components, answers=answers)
    print(json.dumps(metrics))


def _add_pretrain_vision(sub):
    p = sub.add_parser("pretrain-vision", help="train clip-mini, the vision encoder g, CLIP-style")
    _add_train_args(p, "CLIP_TRAIN")

    def run(args):
        from llava_mini import jobs, recipe

        cfg = _train_config(args, recipe.CLIP_TRAIN)
        model, metrics = jobs.pretrain_vision(recipe.VISION, cfg, pool_scenes=recipe.CLIP_POOL, log=_stderr)
        _save(args, model, metrics)

    p.set_defaults(func=run)


def _add_pretrain_lm(sub):
    p = sub.add_parser("pretrain-lm", help="train vicuna-mini (corpus 'cells') or the plain-text LM ('plain')")
    p.add_argument("--corpus", choices=("cells", "plain"), default="cells")  # the keys of recipe.LM_TRAIN
    _add_train_args(p, "LM_TRAIN[corpus]")

    def run(args):
        from llava_mini import jobs, recipe
        from llava_mini.lm import LMConfig
        from llava_mini.tokenizer import load_tokenizer

        cfg = _train_config(args, recipe.LM_TRAIN[args.corpus])
        shape = LMConfig(len(load_tokenizer()), **recipe.LM_SHAPE)
        model, metrics = jobs.pretrain_lm(args.corpus, shape, cfg, recipe.LM_SCENES, recipe.TEACHER,
                                          recipe.LM_CAPTIONS_EVERY, log=_stderr)
        _save(args, model, metrics)

    p.set_defaults(func=run)


def _add_train(sub):
    p = sub.add_parser("train", help="LLaVA stage 1 (only W) or stage 2 (W and the LLM)")
    p.add_argument("--stage", type=int, choices=(1, 2), required=True)
    p.add_argument("--vision", default="clip-mini", help="stage 1: vision tower (zoo name or folder)")
    p.add_argument("--lm", default="vicuna-mini", help="stage 1: LLM (zoo name or folder)")
    p.add_argument("--projector", default="linear", help="stage 1: linear | mlp2x_gelu | resampler | cls | mean")
    p.add_argument("--init", default="llava-mini-stage1", help="stage 2: the checkpoint to start from")
    p.add_argument("--epochs", type=_positive, help="stage 2: epochs over the records of --types (default: STAGE2_EPOCHS; "
                                              "the zoo's llava-mini: --init llava-mini-conv-only --epochs 6)")
    p.add_argument("--types", help="stage 2 instruction types, comma-separated (default: all three)")
    _add_train_args(p, "STAGE1_TRAIN / stage2_train(types, epochs)")

    def run(args):
        from llava_mini import jobs, recipe, stages, train, zoo

        if args.stage == 1:
            vision, lm = zoo.load(args.vision, kind="clip").vision, zoo.load(args.lm, kind="lm")
            model = jobs.assemble(vision, lm, args.projector)
            components = {"vision": args.vision, "lm": args.lm}
        else:
            model = zoo.load(args.init, kind="llava")
            components = {"vision": zoo.read_config(args.init)["components"]["vision"]}
        types = tuple(args.types.split(",")) if args.types else recipe.FULL_MIX
        epochs = recipe.STAGE2_EPOCHS if args.epochs is None else args.epochs
        cfg = _train_config(args, recipe.STAGE1_TRAIN if args.stage == 1 else recipe.stage2_train(types, epochs))
        scenes = recipe.stage2_scenes(types) if args.stage == 2 else recipe.STAGE1_SCENES
        with train.process_group(cfg.device) as rank:  # torchrun: one process per device, DistributedDataParallel
            metrics = stages.train(model, args.stage, cfg, scenes, types, teacher=recipe.TEACHER,
                                   log=_stderr if rank == 0 else None)
        if rank == 0:
            _save(args, model, metrics, components, answers=recipe.TEACHER.answers)

    p.set_defaults(func=run)


def _add_chat(sub):
    p = sub.add_parser("chat", help="ask a LLaVA checkpoint about an image; prints only its answer")
    p.add_argument("--model", default="llava-mini", help="zoo name or checkpoint folder")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="an image file (resized to the model's size as CLIPImageProcessor does)")
    source.add_argument("--scene", type=int, help="a ShapesWorld scene seed, rendered on the fly")
    p.add_argument("question", nargs="?", help="answered once (even if empty); without it, an interactive loop")
    p.add_argument("--max-new-tokens", type=int, default=160)

    def run(args):
        from llava_mini import chat

        session = chat.Session.open(args.model, image=args.image, scene=args.scene)
        if args.question is not None:
            print(session.ask(args.question, max_new_tokens=args.max_new_tokens, log=_stderr))
            return
        chat.interactive(session, max_new_tokens=args.max_new_tokens)

    p.set_defaults(func=run)


def _add_accuracy(sub):
    p = sub.add_parser("accuracy", help="exact-match accuracy per question category (one JSON object)")
    p.add_argument("--model", default="llava-mini", help="zoo name or checkpoint folder")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--json", action="store_true", help="print only the JSON object (the only output there is)")
    p.add_argument("--seed", type=int, default=0, help="index of the first scene in the split")
    p.add_argument("--n", type=int, default=300, help="questions per category")
    p.add_argument("--answers", choices=("short", "sentence"),
                   help="answer style to score against (default: the one the checkpoint was taught)")

    def run(args):
        from llava_mini import evaluate, zoo
        from llava_mini.tokenizer import load_tokenizer

        if args.n < 1:
            raise ValueError(f"n must be a positive number of questions per category, got {args.n}")
        model = zoo.load(args.model, kind="llava")
        answers = args.answers or zoo.answer_style(args.model)
        result = evaluate.accuracy(model, load_tokenizer(), args.split, args.n, args.seed, answers=answers)
        print(json.dumps({k: result[k] for k in evaluate.JSON_KEYS}))

    p.set_defaults(func=run)


def _add_bench(sub):
    p = sub.add_parser("bench", help="LLaVA-Bench-mini: judged relative score vs the teacher (one JSON object)")
    p.add_argument("--model", default="llava-mini", help="zoo name or checkpoint folder")
    p.add_argument("--bench", default="in", choices=("in", "ood"), help="in-distribution (90) or OOD (60)")
    p.add_argument("--judge", default="rules", choices=("rules", "openai"),
                   help="rules: the offline judge; openai: LLAVA_MINI_JUDGE_URL / _MODEL / _KEY")
    p.add_argument("--json", action="store_true", help="print only the JSON object (the only output there is)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")

    def run(args):
        from llava_mini.bench import scores

        print(json.dumps(scores.run(args.model, args.bench, args.judge, seed=args.seed)))

    p.set_defaults(func=run)


def _add_benchmark(sub):
    p = sub.add_parser("benchmark", help="train and generate speed of LlavaMini vs transformers' Llava, same weights")
    p.add_argument("--config", choices=("zoo", "large", "gpu", "tiny"), default="zoo",
                   help="zoo: the zoo's llava-mini; large: its vision tower under a 10 M-parameter LM; gpu: 64 px, "
                        "30.8 M parameters; tiny: tests")
    p.add_argument("--repeats", type=_positive, default=5, help="timed repetitions per figure (median; default 5)")
    p.add_argument("--steps", type=_positive, default=2, help="training steps per timed repetition (default 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed repetitions first (default 1)")
    p.add_argument("--batch-size", type=_positive, default=32, help="training batch (default 32)")
    p.add_argument("--text-tokens", type=_positive, default=32, help="text tokens per training row (default 32)")
    p.add_argument("--new-tokens", type=_positive, default=64, help="tokens per timed generation (default 64)")
    p.add_argument("--cache-tokens", type=_positive, nargs="+", default=[64, 256],
                   help="new-token counts of the cache speed-up (default 64 256)")
    p.add_argument("--threads", type=_positive, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="also time our step in bf16, eager and torch.compile'd, with MFU (default: on cuda only)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the device's dense bf16 TFLOP/s for MFU (default: looked up by GPU name)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON (default: a summary)")

    def run(args):
        import torch

        from llava_mini.benchmark import run_benchmark, summary

        if args.threads is not None:
            torch.set_num_threads(args.threads)
        result = run_benchmark(args.config, repeats=args.repeats, steps=args.steps, batch_size=args.batch_size,
                               text_tokens=args.text_tokens, new_tokens=args.new_tokens,
                               cache_tokens=tuple(args.cache_tokens), warmup=args.warmup, device=args.device,
                               bf16=args.bf16, peak=args.peak_tflops)
        print(json.dumps(result, indent=2) if args.json else summary(result))

    p.set_defaults(func=run)


def _add_ablate(sub):
    p = sub.add_parser("ablate", help="notebook 09's ablations: train and score every arm and seed that is missing")
    p.add_argument("name", help="lm, projector, feature-layer, image-position or stage1 (arms: llava_mini/ablate.py)")
    p.add_argument("--seeds", type=_positive, default=3, help="seeds per arm (default 3)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cuda: the same code in bf16")
    p.add_argument("--root", type=Path, help="folder of the runs (default: the package's zoo/ablations)")
    p.add_argument("--rejudge", action="store_true",
                   help="train nothing: score the bench again for the runs there are (after a change of the judge)")

    def run(args):
        from statistics import mean, pstdev

        from llava_mini import ablate

        ablate.check_name(args.name)
        if args.rejudge:
            ablate.rejudge(args.name, args.seeds, args.root or ablate.ROOT)
        table = (ablate.load(args.name, args.seeds, args.root or ablate.ROOT) if args.rejudge else
                 ablate.run(args.name, args.seeds, args.root or ablate.ROOT, args.device))
        for arm, results in table.items():
            overall = [r["accuracy"]["overall"] for r in results]
            relative = [r["relative_score"]["overall"] for r in results]
            print(f"{arm:>14}  exact match {mean(overall):.3f} ± {pstdev(overall):.3f}  "
                  f"relative score {mean(relative):.1f} ± {pstdev(relative):.1f}  ({len(results)} seeds)")

    p.set_defaults(func=run)


def _add_zoo(sub):
    p = sub.add_parser("zoo", help="the pretrained checkpoints: list, verify, rebuild")
    actions = p.add_subparsers(dest="action", required=True)
    for name, text in (("list", "names and the metrics measured when they were built"),
                       ("verify", "check every file against the manifest's sha256"),
                       ("gates", "the zoo's targets against its build-time metrics; exit 1 if one is not met"),
                       ("rebuild-check", "rerun the short stage 1 the manifest records and compare its W; exit 1 "
                                         "if it differs")):
        actions.add_parser(name, help=text).add_argument("--root", type=Path, help="zoo folder (default: the package's)")
    actions.choices["rebuild-check"].add_argument("--record", action="store_true",
                                                  help="write this machine's result into the manifest instead")
    b = actions.add_parser("build", help="train and evaluate the checkpoints (up to 2 h on 2 cores; use --only)")
    b.add_argument("--only", nargs="*", help="rebuild only these names (their components must exist)")
    b.add_argument("--root", type=Path, help="zoo folder to write (default: the package's zoo)")

    def run(args):
        from llava_mini import recipe, zoo

        root = args.root or zoo.ZOO_DIR
        if args.action == "list":
            for name, entry in zoo.read_manifest(root).items():
                print(name, json.dumps(entry["metrics"]))
        elif args.action == "verify":
            bad = zoo.verify(root)
            if bad:
                raise ValueError("files differ from the manifest: " + ", ".join(bad))
            print(f"{len(zoo.read_manifest(root))} checkpoints match the manifest")
        elif args.action == "gates":
            rows = recipe.gates({name: entry["metrics"] for name, entry in zoo.read_manifest(root).items()})
            for target, value, met in rows:
                print(f"{'met' if met else 'NOT MET':>7}  {value:8.3f}  {target}")
            if not all(met for _, _, met in rows):
                return 1
        elif args.action == "rebuild-check":
            return _rebuild_check(root, args.record)
        else:
            seconds = recipe.build_zoo(args.only, root)
            print(f"built in {seconds:.0f} s")

    p.set_defaults(func=run)


def _add_quiz(sub):
    p = sub.add_parser("quiz", help="the self-assessment quiz on study question N, in the terminal")
    p.add_argument("number", metavar="N", help="the study question, 1-17")
    p.add_argument("--answers", nargs="+", metavar="ANSWER",
                   help="score these answers, one per item in order (letters such as b or ad, or a number), "
                        "without asking; exit 0 only when all are right")

    def run(args):
        from llava_mini import quiz

        if args.answers is not None:
            return quiz.score_answers(args.number, args.answers)
        return quiz.run_terminal(args.number)

    p.set_defaults(func=run)


def _rebuild_check(root: Path, record: bool) -> int:
    from llava_mini import recipe, zoo

    entry = zoo.read_manifest(root).get("llava-mini-stage1")
    if entry is None:
        raise KeyError(f"the manifest in {root} has no llava-mini-stage1; build it first")
    fresh = recipe.rebuild_record(recipe.rebuild_projector(root))
    if record:
        zoo.record("llava-mini-stage1", entry["recipe"], {**entry["metrics"], **fresh}, root)
        print(f"recorded: {fresh['rebuild_check']} on {fresh['rebuild_cpu']}")
        return 0
    if "rebuild_fingerprint" not in entry["metrics"]:
        raise KeyError("the manifest records no rebuild check; run `llava-mini zoo rebuild-check --record`")
    rows = recipe.compare_rebuild(entry["metrics"], fresh)
    for check, passed, detail in rows:
        print(f"{ {True: 'same', False: 'DIFFERS', None: 'skipped'}[passed]:>7}  {check}: {detail}")
    return 1 if False in [passed for _, passed, _ in rows] else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llava-mini", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_data, _add_course, _add_export_hf, _add_pretrain_vision, _add_pretrain_lm, _add_train,
                _add_chat, _add_accuracy, _add_bench, _add_benchmark, _add_ablate, _add_zoo, _add_quiz):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err  # str(KeyError) adds quotes
        print(f"llava-mini {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
