"""Errors a user can cause; the CLI prints their message as one line and exits non-zero."""


class PersuasionError(ValueError):
    """Base class: the message names the input at fault and what to do."""
