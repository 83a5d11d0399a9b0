"""The `persuasion` command: one subcommand per user task, each implemented in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

from persuasion import __version__
from persuasion.errors import ExitStatus, PersuasionError, exit_status_help
from persuasion.extras import require_training_extras

# subcommand -> (module with add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS = {
    "detect": ("persuasion.batch", "score documents and write one record per document"),
    "benchmark": ("persuasion.eval.benchmark", "run a system on a PTC split and score it with the official metrics"),
    "compare": ("persuasion.eval.compare",
                "compare two systems' submission files on a PTC split, with the range of each gain over articles"),
    "train": ("persuasion.train.loop", "train a detector from a YAML recipe"),
    "distil": ("persuasion.train.distil_command",
               "train a detector on the gold and on a trained teacher checkpoint's outputs"),
    "train-context": ("persuasion.train.context",
                      "give a checkpoint a context classifier that reads each span again in its context, and tune it"),
    "tune": ("persuasion.train.tune", "tune a trained checkpoint's decoding again on its validation split"),
    "sweep": ("persuasion.train.sweep", "train variants of one recipe side by side and rank them on validation"),
    "export": ("persuasion.train.export", "make a trained checkpoint a shipped model and record its dev metrics"),
    "fetch-encoder": ("persuasion.train.encoders",
                      "download the all-mpnet-base-v2 base encoder into the user cache, once, for training"),
    "speed": ("persuasion.eval.speed", "measure inference tokens/s against a plain transformers pipeline"),
    "serve": ("persuasion.web", "serve a local web page and JSON API"),
}
# Checked before these start, so a missing package is one line at once, not a traceback at the end of the work.
NEEDS_TRAINING_EXTRAS = {"benchmark", "train", "distil", "train-context", "tune", "sweep", "export"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; only `command`'s module is imported, so one command never pays for another's imports."""
    parser = argparse.ArgumentParser(prog="persuasion", description="Find persuasion techniques in text.",
                                     epilog=exit_status_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"persuasion {__version__}")
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
        if args.command in NEEDS_TRAINING_EXTRAS:
            require_training_extras()
        return args.run(args) or ExitStatus.OK
    except (PersuasionError, FileNotFoundError, IsADirectoryError, PermissionError) as error:
        print(f"persuasion {args.command}: error: {error}", file=sys.stderr)
        return ExitStatus.USAGE
    except KeyboardInterrupt:
        print(f"persuasion {args.command}: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
