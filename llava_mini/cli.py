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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llava-mini", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_data,):
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
