"""The recipe and the training loop, on tiny in-process models and a tiny corpus written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from persuasion.errors import PersuasionError
from persuasion.train.recipe import Recipe

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_every_config_loads_into_the_recipe():
    for path in sorted(CONFIGS.glob("*.yaml")):
        recipe = Recipe.from_yaml(path)
        assert set(yaml.safe_load(path.read_text())) == set(recipe.to_dict()), path


def test_unknown_recipe_key_is_an_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: 2\nlearning_rte: 0.1\n")
    with pytest.raises(PersuasionError, match="learning_rte"):
        Recipe.from_yaml(path)


def test_wrong_type_is_an_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: two\n")
    with pytest.raises(PersuasionError, match="epochs"):
        Recipe.from_yaml(path)
