"""`persuasion train`: one training run, driven by accelerate, resumable from wherever it was killed.

Encoder and heads learn together on packed windows: each step's forward pass feeds the token
tagger (SI), the span classifier (TC) and the per-token technique tagger from the same hidden
states. After every epoch the weights (and, late in training, their running mean) are scored on
the validation split; the best are kept, tuned on validation and saved as a checkpoint. With a
teacher (`persuasion distil`, train/distil.py) the loss also pulls towards the teacher's outputs.

This file is the command and the epoch loop; the windows come from train/data.py, the loss from
train/losses.py, and each step, validation and save is a method of the Trainer (train/trainer.py).

    persuasion train --config configs/minilm-cpu.yaml --data ../shared/data/ptc-semeval2020
    persuasion train --resume runs/minilm-cpu        # after the run above was killed
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

from persuasion.errors import PersuasionError
from persuasion.train.recipe import Recipe, parse_override
from persuasion.train.trainer import CHECKPOINT_DIR, RECIPE_FILE, STATE_DIR, Trainer


def add_arguments(parser) -> None:
    parser.add_argument("--config", help="YAML recipe (see configs/); optional with --resume")
    parser.add_argument("--data", help="PTC folder; overrides the recipe's data_dir")
    parser.add_argument("--output", help="run folder; overrides the recipe's output_dir")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one recipe key, e.g. --set epochs=2 (repeatable)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its last saved state, with the recipe it started with")


def run(args) -> int:
    train(recipe_from_arguments(args), resume=bool(args.resume))
    return 0


def recipe_from_arguments(args, overrides: dict | None = None) -> Recipe:
    """The recipe of --config with --set and --data applied, or, with --resume, the one the run started with."""
    overrides = dict(parse_override(text) for text in args.set) | (overrides or {})
    if args.data:
        overrides["data_dir"] = args.data
    if args.resume:
        return resumed_recipe(Path(args.resume), args.config, overrides)
    if args.config:
        return Recipe.from_yaml(args.config, overrides | ({"output_dir": args.output} if args.output else {}))
    raise PersuasionError("give --config RECIPE.yaml, or --resume RUN_DIR to continue a run")


def resumed_recipe(run_dir: Path, config: str | None, overrides: dict) -> Recipe:
    """The recipe a run started with; a --config or --set that trains differently is an error."""
    path = run_dir / RECIPE_FILE
    if not path.is_file():
        raise PersuasionError(f"--resume {run_dir}: no {RECIPE_FILE} there; give the folder a `persuasion train` run wrote")
    recipe = Recipe.from_dict(json.loads(path.read_text()) | {"output_dir": str(run_dir)}, source=str(path))
    asked = Recipe.from_yaml(config, overrides) if config else Recipe.from_dict(recipe.to_dict() | overrides)
    if asked.training_choices() != recipe.training_choices():
        changed = sorted(key for key, value in asked.training_choices().items() if recipe.training_choices()[key] != value)
        raise PersuasionError(f"--resume {run_dir}: the run started with other values of {', '.join(changed)}; "
                              "resume it with its own recipe, or start a new run in another folder")
    # Where the run reads may change between its starts; its cached teacher outputs only if asked anew.
    moved = {"data_dir": asked.data_dir}
    if "teacher_cache" in overrides:
        moved["teacher_cache"] = overrides["teacher_cache"]
    return Recipe.from_dict(recipe.to_dict() | moved)


def train(recipe: Recipe, resume: bool = False) -> Path:
    """Train, select, tune and save a checkpoint under `recipe.output_dir`; returns the checkpoint folder."""
    check_recipe(recipe)
    output_dir = Path(recipe.output_dir)
    checkpoint = output_dir / CHECKPOINT_DIR
    if resume and (checkpoint / "validation.json").is_file():
        print(f"{output_dir}: the run has finished; its checkpoint is {checkpoint}")
        return checkpoint
    if not resume and (output_dir / STATE_DIR).exists():
        raise PersuasionError(f"{output_dir}: holds a run already; continue it with --resume {output_dir}, "
                              "or give another --output")
    trainer = Trainer(recipe)
    try:
        if resume:
            trainer.load_state()
        run_epochs(trainer)
        trainer.save_checkpoint(checkpoint)
    finally:
        trainer.close()
    return checkpoint


def run_epochs(trainer: Trainer) -> None:
    """Train epoch after epoch, validating after each, until the epochs, the patience or the budget run out."""
    recipe, progress = trainer.recipe, trainer.progress
    last_save = time.time()
    while not progress.stopped and progress.epoch < recipe.epochs:
        trainer.start_epoch()
        out_of_budget = False
        # Batches a killed run had done are drawn again and dropped: cheap next to a step, and the loader
        # then draws on its own generator exactly as the uninterrupted run did.
        for batch in itertools.islice(trainer.loader, progress.batches_done, None):
            trainer.step(batch)
            if trainer.budget_spent():
                out_of_budget = True
                break
            if time.time() - last_save >= recipe.save_every_minutes * 60:
                trainer.save_state()
                last_save = time.time()
        trainer.end_epoch(out_of_budget)
        trainer.save_state()
        last_save = time.time()


def check_recipe(recipe: Recipe) -> None:
    """The recipe's choices that no type check catches, before any data is read."""
    if not 0 <= recipe.distil_mix <= 1:
        raise PersuasionError(f"distil_mix should be between 0 (no distillation) and 1, got {recipe.distil_mix}")
    if recipe.distil_temperature <= 0:
        raise PersuasionError(f"distil_temperature should be above 0, got {recipe.distil_temperature}")
    if recipe.distil_mix > 0 and not recipe.teacher:
        raise PersuasionError("distil_mix > 0 needs a teacher: persuasion distil --teacher CHECKPOINT, "
                              "or set the recipe's teacher")
    if recipe.distil_mix > 0:
        from persuasion.model.checkpoint import read_settings, resolve_model

        read_settings(resolve_model(recipe.teacher))  # a teacher that is no checkpoint stops the run now, not after the data
    if recipe.distil_memes and not (recipe.meme_dir and recipe.distil_mix > 0):
        raise PersuasionError("distil_memes needs meme_dir (the meme folder) and distil_mix > 0")
