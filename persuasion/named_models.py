"""Model names the integrations accept (the spaCy component's and the service's `model`): a name or a folder.

    load_model("default")      # the shipped model
    load_model("runs/mine")    # a trained checkpoint folder

A detector is loaded once per folder and shared by every caller in the process.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from persuasion.errors import PersuasionError

# name -> checkpoint folder, None for the model shipped inside the package. The one place to change when
# "fast" and "default" ship as two folders; until then both names are the one shipped model.
MODEL_NAMES: dict[str, str | None] = {"default": None, "fast": None}


def model_directory(model: str | Path) -> Path:
    """The checkpoint folder a model name or path stands for."""
    from persuasion.model.detector import SHIPPED_DIR

    if str(model) in MODEL_NAMES:
        folder = MODEL_NAMES[str(model)]
        return (SHIPPED_DIR if folder is None else Path(folder)).resolve()
    path = Path(model)
    if not (path / "persuasion.json").is_file():
        raise PersuasionError(f"model {str(model)!r}: not {' or '.join(map(repr, MODEL_NAMES))} "
                              "nor a checkpoint folder (no persuasion.json in it)")
    return path.resolve()


def load_model(model: str | Path):
    """The Detector for a model name or checkpoint folder, loaded on first use."""
    return _load_directory(model_directory(model))


@lru_cache(maxsize=None)
def _load_directory(directory: Path):
    from persuasion.model.detector import Detector

    return Detector.load(directory)
