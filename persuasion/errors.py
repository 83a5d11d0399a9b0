"""Errors a user can cause; the CLI prints their message as one line and exits non-zero."""

from collections.abc import Iterable
from dataclasses import fields
from enum import IntEnum


class PersuasionError(ValueError):
    """Base class: the message names the input at fault and what to do."""


def reject_unknown_keys(dataclass_type, keys: Iterable[str], source: str, kind: str,
                        error: type[PersuasionError] = PersuasionError) -> None:
    """An error naming the keys `dataclass_type` has no field for, and the ones it has: a misspelt key in a
    recipe, checkpoint or decoding must stop the reader, not be silently ignored."""
    known = [field.name for field in fields(dataclass_type)]
    unknown = sorted(set(keys) - set(known))
    if unknown:
        raise error(f"{source}: unknown {kind}(s) {', '.join(unknown)}; known: {', '.join(known)}")


class ExitStatus(IntEnum):
    """What the `persuasion` command exits with."""

    OK = 0
    SOME_FAILED = 1
    USAGE = 2
    NONE_SCORED = 3
    INTERRUPTED = 130


# Shown by `persuasion --help` and `persuasion detect --help`; README.md's table says the same.
EXIT_STATUS_MEANINGS = {
    ExitStatus.OK: "done; for detect, every document was scored",
    ExitStatus.SOME_FAILED: "detect: some documents have an error record, the others were scored",
    ExitStatus.USAGE: "a bad argument, input or setup: stopped before scoring anything",
    ExitStatus.NONE_SCORED: "detect: no document could be scored; each has an error record",
    ExitStatus.INTERRUPTED: "interrupted",
}


def exit_status_help() -> str:
    return "exit status:\n" + "\n".join(f"  {status.value:<4} {meaning}"
                                         for status, meaning in EXIT_STATUS_MEANINGS.items())
