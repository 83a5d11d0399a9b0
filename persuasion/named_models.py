"""Model names the integrations accept (the spaCy component's and the service's `model`): a name or a folder.

    load_model("default")      # the most accurate shipped model
    load_model("fast")         # the fast one
    load_model("runs/mine")    # a trained checkpoint folder

A detector is loaded once per folder and shared by every caller in the process.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


def model_directory(model: str | Path) -> Path:
    """The checkpoint folder a model name or path stands for (model/checkpoint.py:resolve_model), absolute."""
    from persuasion.model.checkpoint import resolve_model

    return resolve_model(model).resolve()


def load_model(model: str | Path, precision: str = "auto"):
    """The Detector for a model name or checkpoint folder in `precision`, loaded on first use."""
    return _load_directory(model_directory(model), precision)


@lru_cache(maxsize=None)
def _load_directory(directory: Path, precision: str):
    from persuasion.model.detector import Detector

    return Detector.load(directory, precision=precision)
