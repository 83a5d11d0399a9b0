"""The trainer: one object that owns a run's accelerator, network, optimiser, averaged weights and progress.

`persuasion train` (train/loop.py) builds a `Trainer` and drives it epoch by epoch: `step` trains on one
batch, `validate` scores the epoch's weights on the validation split and keeps the best, `save_state`
writes what `--resume` needs, and `save_checkpoint` tunes the best weights and saves them for users.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel

from persuasion.errors import PersuasionError
from persuasion.taxonomy import TECHNIQUES
from persuasion.train.data import EpochWindows, prepare_data, window_loader
from persuasion.train.logs import ProgressLog
from persuasion.train.losses import TrainingNetwork, training_loss
from persuasion.train.recipe import Recipe

RECIPE_FILE = "recipe.json"  # the run's recipe, read back by --resume
STATE_DIR = "state"  # what --resume needs: accelerate's state (weights, optimiser, RNGs) and the run's progress
CHECKPOINT_DIR = "checkpoint"
LOG_EVERY_STEPS = 25

log = logging.getLogger(__name__)


def make_accelerator(recipe: Recipe):
    """The run's accelerator: the one place where a run's devices and precision are chosen.

    accelerate keeps one device setup and precision per process; a second run in the same process (tests,
    notebooks) shares them, so it may not ask for another precision.
    """
    from accelerate import Accelerator

    try:
        return Accelerator(mixed_precision=recipe.mixed_precision)
    except ValueError as error:
        if "already been initialized" not in str(error):
            raise
        raise PersuasionError(f"mixed_precision {recipe.mixed_precision!r}: this process already trained with "
                              "another precision, and accelerate keeps one per process; start this run in a new "
                              "process") from None


def build_training_network(recipe: Recipe, techniques: list[str]) -> TrainingNetwork:
    from persuasion.model.network import PersuasionNetwork

    network = PersuasionNetwork.from_encoder_name(recipe.resolved_base_model(), len(techniques), recipe.dropout,
                                                  technique_tagger=recipe.technique_tagging_weight > 0)
    if recipe.freeze_word_embeddings:
        network.encoder.get_input_embeddings().weight.requires_grad_(False)
    return TrainingNetwork(network, recipe.span_weight)


def make_optimizer(network: TrainingNetwork, recipe: Recipe) -> torch.optim.AdamW:
    """AdamW with the encoder at the recipe's learning rate and the freshly initialised heads at their own."""
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = {"encoder_decay": [], "encoder_no_decay": [], "heads": []}
    for name, parameter in network.named_parameters():
        if not parameter.requires_grad:
            continue
        if not name.startswith("network.encoder."):
            groups["heads"].append(parameter)
        elif any(marker in name for marker in no_decay):
            groups["encoder_no_decay"].append(parameter)
        else:
            groups["encoder_decay"].append(parameter)
    return torch.optim.AdamW([
        {"params": groups["encoder_decay"], "lr": recipe.learning_rate, "weight_decay": recipe.weight_decay},
        {"params": groups["encoder_no_decay"], "lr": recipe.learning_rate, "weight_decay": 0.0},
        {"params": groups["heads"], "lr": recipe.head_learning_rate, "weight_decay": recipe.weight_decay},
    ])


def running_mean(averaged: torch.Tensor, current: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """The mean after one more sample (`samples` so far): the average of the points a fine-tune passes
    through late in training sits in a flatter region of the loss than any one of them and generalises
    better (stochastic weight averaging, Izmailov et al. 2018)."""
    return averaged + (current - averaged) / (samples + 1)


def detector_settings(recipe: Recipe):
    """The settings a checkpoint of this run is saved (and validated) with."""
    from persuasion.model.checkpoint import DetectorSettings

    return DetectorSettings(techniques=tuple(TECHNIQUES), window_tokens=recipe.window_tokens,
                            window_stride=recipe.inference_stride, technique_tagger=recipe.technique_tagging_weight > 0,
                            base_model=recipe.base_model, recipe=recipe.to_dict())


@dataclass
class Progress:
    """Where a run stands; saved with accelerate's state, so --resume carries on from it."""

    epoch: int = 0  # epochs finished
    batches_done: int = 0  # batches of the current epoch done
    step: int = 0
    minutes: float = 0.0  # training minutes before this process took the run over
    history: list = field(default_factory=list)  # every validation
    best_score: float = -float("inf")
    epochs_without_gain: int = 0
    stopped: str = ""  # why training stopped; empty while it runs
    taken_over: float = field(default_factory=time.time)  # when this process started or resumed the run; not saved

    def elapsed_minutes(self) -> float:
        """Training minutes of the run so far, over every process that has trained it."""
        return self.minutes + (time.time() - self.taken_over) / 60

    def state_dict(self) -> dict:
        saved = {name: value for name, value in self.__dict__.items() if name != "taken_over"}
        return {"progress": json.dumps(saved | {"minutes": self.elapsed_minutes()})}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(json.loads(state["progress"]))
        self.taken_over = time.time()


class BestWeights:
    """The best-scoring weights so far, on the CPU, saved with the run's state."""

    def __init__(self):
        self.state: dict[str, torch.Tensor] = {}

    def keep(self, network: torch.nn.Module) -> None:
        self.state = {name: tensor.detach().cpu().clone() for name, tensor in network.state_dict().items()}

    def state_dict(self) -> dict:
        return self.state

    def load_state_dict(self, state: dict) -> None:
        self.state = dict(state)


def save_run_state(accelerator, output_dir: Path, progress: Progress) -> None:
    """accelerate's state (weights, optimiser, random states and what the run registered, its progress among
    them), written beside the last one and swapped in, so a kill at any moment leaves one whole state behind."""
    target, fresh, stale = output_dir / STATE_DIR, output_dir / f"{STATE_DIR}.new", output_dir / f"{STATE_DIR}.old"
    if accelerator.is_main_process:
        shutil.rmtree(fresh, ignore_errors=True)
    accelerator.save_state(str(fresh))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if target.exists():
            target.rename(stale)
        fresh.rename(target)
        shutil.rmtree(stale, ignore_errors=True)
        log.info(f"saved the run's state after epoch {progress.epoch}, batch {progress.batches_done} "
                 f"(step {progress.step})")


def load_run_state(accelerator, output_dir: Path) -> None:
    for name in (STATE_DIR, f"{STATE_DIR}.old"):  # .old: killed between the two renames of save_run_state
        if (output_dir / name).is_dir():
            accelerator.load_state(str(output_dir / name))
            log.info(f"resumed from {output_dir / name}")
            return
    raise PersuasionError(f"--resume {output_dir}: no saved state yet; start the run again without --resume")


class Trainer:
    """One training run: builds everything from the recipe, in an order that makes a run reproducible from
    its seed, then trains, validates, saves and resumes it."""

    def __init__(self, recipe: Recipe):
        self.recipe, self.output_dir = recipe, Path(recipe.output_dir)
        self.accelerator = make_accelerator(recipe)
        self.progress_log = None
        if self.accelerator.is_main_process:  # which shows the run's lines and keeps them in its train.log
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / RECIPE_FILE).write_text(json.dumps(recipe.to_dict(), indent=2) + "\n")
            self.progress_log = ProgressLog(self.output_dir / "train.log", timestamps=True)
        try:
            self.prepare()
        except BaseException:
            self.close()
            raise

    def prepare(self) -> None:
        """The data, the network, its optimiser and schedule, and the batches, prepared by accelerate."""
        from accelerate.utils import set_seed
        from transformers import AutoTokenizer, get_linear_schedule_with_warmup

        recipe, accelerator = self.recipe, self.accelerator
        set_seed(recipe.seed)
        log.info(f"recipe {json.dumps(recipe.to_dict())}")
        self.tokenizer = AutoTokenizer.from_pretrained(recipe.resolved_base_model())
        self.data = prepare_data(recipe, self.tokenizer, list(TECHNIQUES), accelerator.num_processes)
        self.class_weights = self.data.class_weights.to(accelerator.device)

        set_seed(recipe.seed)  # the heads' initial weights do not depend on how much data preparation drew
        network = build_training_network(recipe, list(TECHNIQUES))
        optimizer = make_optimizer(network, recipe)
        self.total_steps = min(self.data.steps_per_epoch * recipe.epochs, recipe.max_steps or math.inf)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(recipe.warmup_fraction * self.total_steps),
                                                    self.total_steps)
        self.windows = EpochWindows(self.data.encoded, self.data.content_tokens, recipe.seed)
        loader = window_loader(self.windows, self.tokenizer, len(TECHNIQUES), recipe)
        self.network, self.optimizer, self.scheduler, self.loader = accelerator.prepare(
            network, optimizer, scheduler, loader)
        self.averaged = AveragedModel(self.unwrapped(), avg_fn=running_mean)  # the running mean of the weights
        self.progress, self.best = Progress(), BestWeights()
        for saved in (self.averaged, self.progress, self.best):
            accelerator.register_for_checkpointing(saved)
        self.averaging = False
        self.epoch_started, self.tokens_seen, self.losses = time.time(), 0, []

    def unwrapped(self):
        """The network being trained, out of accelerate's wrapping and without the loss."""
        return self.accelerator.unwrap_model(self.network).network

    # Training

    def start_epoch(self) -> None:
        """Cut the epoch's windows and start counting its speed."""
        self.windows.cut(self.progress.epoch)
        self.averaging = 0 < self.recipe.average_from_epoch <= self.progress.epoch + 1
        self.network.train()
        self.epoch_started, self.tokens_seen, self.losses = time.time(), 0, []

    def step(self, batch: dict) -> None:
        """One optimiser step on a batch, then the running mean of the weights, the counts and the log."""
        recipe, accelerator, progress = self.recipe, self.accelerator, self.progress
        with accelerator.autocast():
            loss = training_loss(self.network, batch, self.class_weights, recipe.technique_loss_weight,
                                 recipe.technique_tagging_weight, recipe.distil_mix, recipe.distil_temperature)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(self.network.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        if self.averaging:
            self.averaged.update_parameters(self.unwrapped())
        progress.step += 1
        progress.batches_done += 1
        self.tokens_seen += int(batch["attention_mask"].sum())
        self.losses.append(loss.item())
        if progress.step % LOG_EVERY_STEPS == 0:
            rate = self.tokens_seen * accelerator.num_processes / (time.time() - self.epoch_started)
            log.info(f"epoch {progress.epoch + 1} step {progress.step}/{self.total_steps} "
                     f"loss {sum(self.losses) / len(self.losses):.4f} ({rate:.0f} tokens/s)")
            self.losses = []

    def budget_spent(self) -> bool:
        """Whether the recipe's minutes or steps have run out."""
        recipe, progress = self.recipe, self.progress
        return bool((recipe.max_minutes and progress.elapsed_minutes() >= recipe.max_minutes)
                    or (recipe.max_steps and progress.step >= recipe.max_steps))

    def end_epoch(self, out_of_budget: bool) -> None:
        """Count the epoch done, validate its weights, and decide whether training stops here."""
        recipe, accelerator, progress = self.recipe, self.accelerator, self.progress
        progress.epoch += 1
        progress.batches_done = 0
        if accelerator.is_main_process:
            self.validate()
        stop = out_of_budget or progress.epochs_without_gain >= recipe.patience
        if accelerator.num_processes > 1:
            stop = bool(accelerator.gather(torch.tensor([stop], device=accelerator.device)).any())
        if stop:
            progress.stopped = "budget reached" if out_of_budget else f"no validation gain in {recipe.patience} epochs"
            log.info(f"stopping: {progress.stopped}")
        elif progress.epoch == recipe.epochs:
            progress.stopped = "all epochs trained"

    # Validation

    def validate(self) -> None:
        """Score the epoch's last weights and their running mean on validation; keep the best."""
        progress = self.progress
        candidates = {"last": self.unwrapped().eval()}
        if int(self.averaged.n_averaged) > 0:
            candidates["averaged"] = self.averaged.module.eval()
        gained = False
        for weights, candidate in candidates.items():
            place = {"epoch": progress.epoch, "step": progress.step}
            minutes = round(progress.elapsed_minutes(), 2)  # before this validation, as the history has it
            score = self.validation_scores(candidate) | place | {"minutes": minutes, "weights": weights}
            progress.history.append(score)
            log.info(f"validation of {weights} weights {json.dumps(place)}: {json.dumps(score)}")
            if score["selection"] > progress.best_score:
                progress.best_score, gained = score["selection"], True
                self.best.keep(candidate)
        progress.epochs_without_gain = 0 if gained else progress.epochs_without_gain + 1

    def validation_scores(self, network) -> dict:
        from persuasion.model.detector import Detector
        from persuasion.train.tune import validation_scores

        if not self.data.validation_articles:  # without a validation split the last epoch wins
            return {"selection": float(self.progress.epoch)}
        detector = Detector(network, self.tokenizer, detector_settings(self.recipe),
                            device=str(self.accelerator.device))
        return validation_scores(detector, self.data.validation_articles)

    # Saving

    def save_state(self) -> None:
        save_run_state(self.accelerator, self.output_dir, self.progress)

    def load_state(self) -> None:
        load_run_state(self.accelerator, self.output_dir)

    def save_checkpoint(self, checkpoint: Path) -> None:
        """The best weights as an fp16 checkpoint, tuned on validation as users will load it (main process)."""
        from persuasion.model.checkpoint import write_settings, write_validation_report
        from persuasion.model.detector import Detector
        from persuasion.train.tune import TUNING_PRECISION, hardware, tune_detector

        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return
        network = self.unwrapped().cpu().eval()
        if self.best.state:
            network.load_state_dict(self.best.state)
        Detector(network, self.tokenizer, detector_settings(self.recipe)).save(checkpoint)
        # Tune on the fp16 weights as shipped, so thresholds match what users load.
        detector = Detector.load(checkpoint, precision=TUNING_PRECISION)
        data, report = self.data, {}
        if data.validation_articles:
            detector, report = tune_detector(detector, data.validation_articles, data.train_articles)
        write_settings(checkpoint, detector.settings, detector.decoding)
        device = hardware(detector.device)
        minutes = round(self.progress.elapsed_minutes(), 2)  # tuning included
        write_validation_report(checkpoint, {
            "validation": report, "history": self.progress.history, "train_minutes": minutes,
            "trained_on": device, "tuned_on": device, "stopped": self.progress.stopped,
            "validation_articles": sorted(a.article_id for a in data.validation_articles)}
            | ({"teacher": data.teacher_report} if data.teacher_report else {}))
        log.info(f"saved {checkpoint} after {minutes} minutes; validation {json.dumps(report)}")

    def close(self) -> None:
        """Let go of the run's objects, as accelerate asks between two trainings in one process."""
        self.accelerator.free_memory()
        if self.progress_log is not None:
            self.progress_log.close()
