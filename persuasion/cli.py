"""The `persuasion` command: one subcommand per user task, each implemented in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

from persuasion.errors import PersuasionError

# subcommand -> (module with add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS = {
    "detect": ("persuasion.batch", "score documents and write one record per document"),
    "benchmark": ("persuasion.eval.benchmark", "run a system on a PTC split and score it with the official metrics"),
    "train": ("persuasion.train.loop", "train a detector from a YAML recipe"),
    "tune": ("persuasion.train.tune", "tune a trained checkpoint's decoding again on its validation split"),
    "sweep": ("persuasion.train.sweep", "train variants of one recipe side by side and rank them on validation"),
    "export": ("persuasion.train.export", "make a trained checkpoint a shipped model and record its dev metrics"),
    "speed": ("persuasion.eval.speed", "measure inference tokens/s against a plain transformers pipeline"),
    "serve": ("persuasion.web", "serve a local web page and JSON API"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; only `command`'s module is imported, so one command never pays for another's imports."""
    parser = argparse.ArgumentParser(prog="persuasion", description="Find persuasion techniques in text.")
    subcommands = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        subparser = subcommands.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(subparser)
            subparser.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((word for word in argv if not word.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    try:
        return args.run(args) or 0
    except (PersuasionError, FileNotFoundError, IsADirectoryError, PermissionError) as error:
        print(f"persuasion {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"persuasion {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
