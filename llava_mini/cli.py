"""The `llava-mini` command: one subcommand per job of the course.

Each subcommand is registered by a small `_add_<name>` function and imports its module lazily,
so `llava-mini --help` stays fast and one broken module never breaks the others.
"""

from __future__ import annotations

import argparse
import sys


def _add_data(sub):
    p = sub.add_parser("data", help="write N ShapesWorld scenes as PNGs + LLaVA-format JSON")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--n", type=int, required=True, help="number of scenes")
    p.add_argument("--seed", type=int, default=None, help="first scene seed (default: the train split's start)")

    def run(args):
        from llava_mini.data import export_dataset

        export_dataset(args.out, n=args.n, seed=args.seed)

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llava-mini", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_data, _add_course, _add_export_hf):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"llava-mini {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
