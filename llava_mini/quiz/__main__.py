"""`python -m llava_mini.quiz build|check`: write the sealed quizzes and keys from the plain sources, or list drift."""

import sys

from llava_mini.quiz import sealing


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["build"]:
        print("\n".join(sealing.build()))
        return 0
    if args == ["check"]:
        problems = sealing.check()
        print("\n".join(problems) or "quizzes/ and the quiz keys match solutions/quizzes/")
        return 1 if problems else 0
    print("usage: python -m llava_mini.quiz build|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
