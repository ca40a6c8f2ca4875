"""`python -m llava_mini.quiz build|check`: write the sealed quizzes and keys from the plain sources, or list drift
(and every zoo number in the sources or the written answers that the zoo's manifest does not say)."""

import sys

from llava_mini.quiz import sealing, zoo_numbers


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["build"]:
        print("\n".join(sealing.build()))
        return 0
    if args == ["check"]:
        problems = sealing.check() + zoo_numbers.problems()
        print("\n".join(problems) or "quizzes/ and the quiz keys match solutions/quizzes/, and the zoo's numbers the "
              "sources and the written answers cite match its manifest")
        return 1 if problems else 0
    print("usage: python -m llava_mini.quiz build|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
