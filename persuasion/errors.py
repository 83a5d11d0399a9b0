"""Errors a user can cause; the CLI prints their message as one line and exits non-zero."""

from enum import IntEnum


class PersuasionError(ValueError):
    """Base class: the message names the input at fault and what to do."""


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
