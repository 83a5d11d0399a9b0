"""The training recipe: one dataclass whose fields are exactly the YAML keys.

The defaults are the recipe of the shipped fast model; a YAML under configs/ lists only what it changes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from persuasion.errors import PersuasionError, reject_unknown_keys

from persuasion.train.encoders import MINILM


@dataclass
class Recipe:
    base_model: str = MINILM  # a bundled encoder (train/encoders.py) or a Hugging Face model folder
    data_dir: str = "../shared/data/ptc-semeval2020"
    output_dir: str = "runs/detector"
    seed: int = 13  # initial head weights, window cuts and order, dropout
    split_seed: int = 13  # which articles form the validation split; keep it so runs with other seeds compare
    validation_fraction: float = 0.1  # of train articles, held out by article for selection and tuning
    window_tokens: int = 128  # including the tokenizer's framing tokens ([CLS] and [SEP] for BERT)
    inference_stride: int = 96  # content tokens between window starts at inference
    epochs: int = 8
    batch_size: int = 16  # windows per step
    learning_rate: float = 1e-4  # encoder
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    dropout: float = 0.1
    freeze_word_embeddings: bool = True  # half of MiniLM's weights; freezing them speeds CPU steps ~2x
    span_weight: float = 2.0  # loss weight of B/I tokens against O tokens
    technique_loss_weight: float = 1.0
    technique_tagging_weight: float = 0.5  # auxiliary per-token technique loss; its tagger is kept (0: off)
    technique_class_weighting: str = "sqrt_inverse"  # or "none": rare techniques weigh more
    average_from_epoch: int = 4  # from this epoch on, also validate the running mean of the weights (0: off)
    patience: int = 8  # epochs without validation gain before stopping
    max_minutes: float = 50.0  # stop training after this long (0: no limit); tuning still runs
    max_steps: int = 0  # stop after this many optimiser steps (0: no limit); for smoke tests
    meme_dir: str = ""  # SemEval-2021 meme folder to add as extra training text ("" to skip)
    # Distillation (`persuasion distil`, train/distil.py): the student also learns the teacher's outputs.
    teacher: str = ""  # the teacher's checkpoint folder or shipped model name; used only when distil_mix > 0
    teacher_cache: str = ""  # folder of the teacher's cached outputs ("": teacher/ in the run folder)
    distil_mix: float = 0.0  # the teacher's share of the loss, the gold's is 1 - distil_mix (0: no distillation)
    distil_temperature: float = 1.0  # softens teacher and student distributions alike
    distil_memes: bool = False  # the teacher also labels the meme texts of meme_dir (span tags included)
    mixed_precision: str = "no"  # accelerate's setting: "no", "fp16" (GPUs) or "bf16" (GPUs, CPUs with AMX or AVX512-BF16)
    context_tokens: int = 160  # `persuasion train-context`: a marked span's tokens, its context included
    save_every_minutes: float = 10.0  # how often a run saves what `--resume` needs (and at every epoch's end)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict | None = None) -> "Recipe":
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise PersuasionError(f"{path}: not valid YAML ({error.__class__.__name__})") from None
        if not isinstance(values, dict):
            raise PersuasionError(f"{path}: expected a mapping of recipe keys")
        values.update(overrides or {})
        return cls.from_dict(values, source=str(path))

    @classmethod
    def from_dict(cls, values: dict, source: str = "recipe") -> "Recipe":
        reject_unknown_keys(cls, values, source, "recipe key")
        recipe = cls(**values)
        for name in (field.name for field in fields(cls)):
            expected = type(getattr(cls(), name))
            value = getattr(recipe, name)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                setattr(recipe, name, float(value))
            elif expected is float and isinstance(value, str) and (number := as_float(value)) is not None:
                setattr(recipe, name, number)  # YAML 1.1 reads 1e-4 (no dot) as a string
            elif not isinstance(value, expected):
                raise PersuasionError(f"{source}: {name} should be {expected.__name__}, got {value!r}")
        return recipe

    def to_dict(self) -> dict:
        return asdict(self)

    def training_choices(self) -> dict:
        """The keys that shape the trained weights: all but where a run reads and writes (its cached teacher
        outputs included: a cache is used only if it matches the teacher and the texts), and how often it saves."""
        return {key: value for key, value in self.to_dict().items()
                if key not in ("data_dir", "output_dir", "save_every_minutes", "teacher_cache")}

    def resolved_base_model(self) -> str:
        from persuasion.train.encoders import resolve_base_model

        return resolve_base_model(self.base_model)


def as_float(text: str) -> float | None:
    """A finite number written as YAML 1.1 does not read one (1e-4, 5E-5), or None."""
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_override(text: str) -> tuple[str, object]:
    """`key=value` from the command line; the value is read as YAML (numbers, booleans, strings)."""
    if "=" not in text:
        raise PersuasionError(f"--set {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)
