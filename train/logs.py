"""Where training's progress lines go: every module under `persuasion.train` logs to the `persuasion.train`
logger, and a command shows those lines while it runs (a training run also keeps them in its train.log)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

LOGGER = logging.getLogger("persuasion.train")


class ProgressLog:
    """Shows the `persuasion.train` lines on the console, and in `log_file` where given, until closed."""

    def __init__(self, log_file: Path | None = None, timestamps: bool = False):
        formatter = logging.Formatter("[%(asctime)s] %(message)s" if timestamps else "%(message)s", "%H:%M:%S")
        self.handlers = [logging.StreamHandler(sys.stdout)]
        if log_file is not None:
            self.handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        self.level = LOGGER.level
        for handler in self.handlers:
            handler.setFormatter(formatter)
            LOGGER.addHandler(handler)
        LOGGER.setLevel(logging.INFO)

    def close(self) -> None:
        for handler in self.handlers:
            LOGGER.removeHandler(handler)
            handler.close()
        self.handlers = []
        LOGGER.setLevel(self.level)

    def __enter__(self) -> "ProgressLog":
        return self

    def __exit__(self, *exception) -> None:
        self.close()
