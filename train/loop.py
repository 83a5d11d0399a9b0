"""`persuasion train`: one training run, driven by accelerate, resumable from wherever it was killed.

Encoder and heads learn together on packed windows: each step's forward pass feeds the token
tagger (SI), the span classifier (TC) and the per-token technique tagger from the same hidden
states. After every epoch the weights (and, late in training, their running mean) are scored on
the validation split; the best are kept, tuned on validation and saved as a checkpoint. With a
teacher (`persuasion distil`, train/distil.py) the loss also pulls towards the teacher's outputs.

    persuasion train --config configs/minilm-cpu.yaml --data ../shared/data/ptc-semeval2020
    persuasion train --resume runs/minilm-cpu        # after the run above was killed
"""

from __future__ import annotations

import itertools
import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch.optim.swa_utils import AveragedModel

from persuasion.corpus import Article, load_corpus, split_by_article
from persuasion.errors import PersuasionError
from persuasion.train.features import IGNORE, collate, cut_windows, encode_article
from persuasion.train.recipe import Recipe, parse_override

RECIPE_FILE = "recipe.json"  # the run's recipe, read back by --resume
STATE_DIR = "state"  # what --resume needs: accelerate's state (weights, optimiser, RNGs) and the run's progress
CHECKPOINT_DIR = "checkpoint"


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


# The pieces of a run


@dataclass
class TrainingData:
    train_articles: list
    validation_articles: list
    encoded: list  # EncodedArticle of every training text
    class_weights: torch.Tensor
    content_tokens: int  # per window, besides the tokenizer's framing tokens
    steps_per_epoch: int
    teacher_report: dict | None = None  # when distilling: which teacher labelled the texts, and how long it took


class EpochWindows(torch.utils.data.Dataset):
    """The training windows of one epoch: each epoch cuts the articles on a grid shifted at random
    and shuffles the windows, both seeded by the epoch, so a resumed run sees the same batches."""

    def __init__(self, encoded: list, content_tokens: int, seed: int):
        self.encoded, self.content_tokens, self.seed = encoded, content_tokens, seed
        self.windows: list = []

    def cut(self, epoch: int) -> None:
        # Not `set_epoch`: accelerate's loader calls a dataset's set_epoch with its own count of iterations.
        rng = random.Random(self.seed * 1000 + epoch)
        self.windows = [window for article in self.encoded for window in cut_windows(article, self.content_tokens, rng)]
        rng.shuffle(self.windows)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int):
        return self.windows[index]


class WindowCollator:
    """Batches of windows as tensors (a class, so DataLoader workers could pickle it)."""

    def __init__(self, framing, num_techniques: int):
        self.framing, self.num_techniques = framing, num_techniques

    def __call__(self, windows: list) -> dict:
        return collate(windows, self.framing, self.num_techniques)


class NetworkOutputs(NamedTuple):
    tag_loss: torch.Tensor  # the span tagging loss against the gold tags
    tag_logits: torch.Tensor  # (windows, tokens, 3)
    technique_logits: torch.Tensor  # (spans, techniques), one row per gold technique span of the batch
    token_technique_logits: torch.Tensor | None  # (windows, tokens, techniques), where the network has a tagger


class TrainingNetwork(torch.nn.Module):
    """The network plus its span-tagging loss.

    Where the network has a per-token technique tagger, its logits come out for a per-token
    technique loss: telling the encoder which technique covers each token (a single loaded word
    and a whole doubtful sentence are both just "I" to the span tagger) is the multi-granularity
    signal of the SemEval-2020 SI winner. B/I tokens weigh `span_weight` times an O token.
    """

    def __init__(self, network, span_weight: float = 1.0):
        super().__init__()
        self.network = network
        self.token_loss = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, span_weight, span_weight]),
                                                    ignore_index=IGNORE)

    def forward(self, input_ids, attention_mask, tags, span_window, span_bounds) -> NetworkOutputs:
        hidden = self.network.encode(input_ids, attention_mask)
        token_technique_logits = (self.network.token_technique_logits(hidden)
                                  if self.network.token_technique_head is not None else None)
        tag_logits = self.network.tag_logits(hidden).float()
        return NetworkOutputs(self.tag_loss(tag_logits, tags), tag_logits,
                              self.network.technique_logits(hidden, span_window, span_bounds), token_technique_logits)

    def tag_loss(self, tag_logits, tags):
        if not (tags != IGNORE).any():  # a batch of texts without span tags (memes): technique loss only
            return tag_logits.sum() * 0.0
        return self.token_loss(tag_logits.reshape(-1, tag_logits.shape[-1]), tags.reshape(-1))


def training_loss(network: TrainingNetwork, batch: dict, class_weights, technique_loss_weight: float,
                  technique_tagging_weight: float = 0.0, distil_mix: float = 0.0, distil_temperature: float = 1.0):
    """The gold loss (see gold_loss); when distilling, mixed with the distillation loss as
    (1 - distil_mix) * gold + distil_mix * distillation."""
    outputs = network(batch["input_ids"], batch["attention_mask"], batch["tags"], batch["span_window"],
                      batch["span_bounds"])
    loss = gold_loss(outputs, batch, class_weights, technique_loss_weight, technique_tagging_weight)
    if distil_mix == 0:  # plain training: the gold loss, bit for bit
        return loss
    return (1 - distil_mix) * loss + distil_mix * distillation_loss(
        outputs, batch, distil_temperature, technique_loss_weight, technique_tagging_weight)


def gold_loss(outputs: NetworkOutputs, batch: dict, class_weights, technique_loss_weight: float,
              technique_tagging_weight: float = 0.0):
    """Tagging loss over tokens plus class-weighted soft-target loss over the gold spans, plus, with a
    technique tagger, a per-token, per-technique binary loss."""
    loss, technique_logits, token_technique_logits = (outputs.tag_loss, outputs.technique_logits,
                                                      outputs.token_technique_logits)
    tagged = batch["tags"] != IGNORE
    if len(technique_logits):
        weighted_targets = batch["span_targets"] * class_weights
        technique_loss = -(weighted_targets * technique_logits.float().log_softmax(-1)).sum() / weighted_targets.sum()
        loss = loss + technique_loss_weight * technique_loss
    if token_technique_logits is not None and tagged.any():
        bits = torch.arange(token_technique_logits.shape[-1], device=token_technique_logits.device)
        targets = ((batch["token_techniques"][..., None] >> bits) & 1).float()
        per_token = torch.nn.functional.binary_cross_entropy_with_logits(
            token_technique_logits.float(), targets, reduction="none").sum(-1)
        loss = loss + technique_tagging_weight * per_token[tagged].mean()
    return loss


def distillation_loss(outputs: NetworkOutputs, batch: dict, temperature: float, technique_loss_weight: float,
                      technique_tagging_weight: float = 0.0):
    """How far the student's temperature-softened outputs are from the teacher's, times T² so the gradients
    keep their size across temperatures (Hinton et al., 2015): KL on the O/B/I tags of every taught token,
    binary cross-entropy against sigmoid(teacher logit / T) per token and technique (as a KL), KL on each gold
    span's technique distribution. The parts weigh as in the gold loss; a batch without teacher targets adds 0."""
    loss = outputs.tag_logits.sum() * 0.0
    if "teacher_taught" not in batch:
        return loss
    kl = torch.nn.functional.kl_div
    taught = batch["teacher_taught"]
    if taught.any():
        student = (outputs.tag_logits.float()[taught] / temperature).log_softmax(-1)
        teacher = (batch["teacher_tag_log_probabilities"][taught] / temperature).log_softmax(-1)
        loss = loss + kl(student, teacher, reduction="batchmean", log_target=True)
        if outputs.token_technique_logits is not None and "teacher_token_technique_logits" in batch:
            teacher = batch["teacher_token_technique_logits"][taught] / temperature
            binary = torch.nn.functional.binary_cross_entropy_with_logits
            # Less the teacher's own entropy, which no student can lower: 0 where the two agree.
            per_token = (binary(outputs.token_technique_logits.float()[taught] / temperature, teacher.sigmoid(),
                                reduction="none") - binary(teacher, teacher.sigmoid(), reduction="none")).sum(-1)
            loss = loss + technique_tagging_weight * per_token.mean()
    known = batch["teacher_span_known"]
    if known.any():
        student = (outputs.technique_logits.float()[known] / temperature).log_softmax(-1)
        teacher = (batch["teacher_span_log_probabilities"][known] / temperature).log_softmax(-1)
        loss = loss + technique_loss_weight * kl(student, teacher, reduction="batchmean", log_target=True)
    return temperature ** 2 * loss


def technique_class_weights(encoded_articles, num_techniques: int, scheme: str) -> torch.Tensor:
    counts = torch.zeros(num_techniques)
    for article in encoded_articles:
        for span in article.technique_spans:
            counts += torch.tensor(span.target)
    if scheme == "none":
        return torch.ones(num_techniques)
    if scheme != "sqrt_inverse":
        raise PersuasionError(f"technique_class_weighting must be 'sqrt_inverse' or 'none', got {scheme!r}")
    weights = (counts.sum() / counts.clamp(min=1)).sqrt()
    return weights / (weights * counts).sum() * counts.sum()  # mean weight per example stays 1


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


class RunLog:
    """Lines to the run folder's train.log and to the console, from the main process only."""

    def __init__(self, accelerator, output_dir: Path, echo=None):
        self.main = accelerator.is_main_process
        self.file = open(output_dir / "train.log", "a", encoding="utf-8") if self.main else None
        self.echo = echo or print

    def __call__(self, message: str) -> None:
        if self.main:
            line = f"[{time.strftime('%H:%M:%S')}] {message}"
            self.echo(line)
            self.file.write(line + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()


# The run


def train(recipe: Recipe, resume: bool = False, log=None) -> Path:
    """Train, select, tune and save a checkpoint under `recipe.output_dir`; returns the checkpoint folder."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import set_seed
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    from persuasion.model.windows import WindowFraming
    from persuasion.taxonomy import TECHNIQUES

    check_recipe(recipe)
    output_dir = Path(recipe.output_dir)
    checkpoint = output_dir / CHECKPOINT_DIR
    if resume and (checkpoint / "validation.json").is_file():
        print(f"{output_dir}: the run has finished; its checkpoint is {checkpoint}")
        return checkpoint
    if not resume and (output_dir / STATE_DIR).exists():
        raise PersuasionError(f"{output_dir}: holds a run already; continue it with --resume {output_dir}, "
                              "or give another --output")
    # A second train() in one process (tests, notebooks) may ask for another precision: start clean.
    AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(mixed_precision=recipe.mixed_precision)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / RECIPE_FILE).write_text(json.dumps(recipe.to_dict(), indent=2) + "\n")
    say = RunLog(accelerator, output_dir, log)
    set_seed(recipe.seed)
    say(f"recipe {json.dumps(recipe.to_dict())}")
    tokenizer = AutoTokenizer.from_pretrained(recipe.resolved_base_model())
    techniques = list(TECHNIQUES)
    data = prepare_data(recipe, tokenizer, techniques, accelerator.num_processes, say)

    set_seed(recipe.seed)  # the heads' initial weights do not depend on how much data preparation drew
    network = build_training_network(recipe, techniques)
    optimizer = make_optimizer(network, recipe)
    total_steps = min(data.steps_per_epoch * recipe.epochs, recipe.max_steps or math.inf)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(recipe.warmup_fraction * total_steps), total_steps)
    windows = EpochWindows(data.encoded, data.content_tokens, recipe.seed)
    # Its own generator: the loader then draws nothing from the global RNG that dropout uses.
    loader = torch.utils.data.DataLoader(windows, batch_size=recipe.batch_size, shuffle=False,
                                         collate_fn=WindowCollator(WindowFraming.of(tokenizer), len(techniques)),
                                         generator=torch.Generator().manual_seed(recipe.seed))
    network, optimizer, scheduler, loader = accelerator.prepare(network, optimizer, scheduler, loader)
    averaged = AveragedModel(accelerator.unwrap_model(network).network, avg_fn=running_mean)
    state = RunState(accelerator, network, optimizer, scheduler, loader, windows, averaged, Progress(), BestWeights())
    for saved in (state.averaged, state.progress, state.best):
        accelerator.register_for_checkpointing(saved)
    if resume:
        load_state(accelerator, output_dir, say)

    run_epochs(recipe, state, data, tokenizer, total_steps, say)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_tuned_checkpoint(recipe, accelerator.unwrap_model(network).network, state.best, state.progress, data,
                              tokenizer, checkpoint, say)
    say.close()
    return checkpoint


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
        from persuasion.model.checkpoint import read_settings, resolve

        read_settings(resolve(recipe.teacher))  # a teacher that is no checkpoint stops the run now, not after the data
    if recipe.distil_memes and not (recipe.meme_dir and recipe.distil_mix > 0):
        raise PersuasionError("distil_memes needs meme_dir (the meme folder) and distil_mix > 0")


def prepare_data(recipe: Recipe, tokenizer, techniques: list[str], processes: int, say) -> TrainingData:
    from persuasion.model.windows import WindowFraming

    articles = [Article.from_record(row) for row in load_corpus(recipe.data_dir, ["train"])["train"]]
    train_articles, validation_articles = split_by_article(articles, recipe.validation_fraction, recipe.split_seed)
    say(f"{len(train_articles)} training and {len(validation_articles)} validation articles")
    encoded = [encode_article(article, tokenizer, techniques) for article in train_articles]
    memes = []
    if recipe.meme_dir:
        # Memes teach techniques only: their spans often cover the whole text, unlike news spans.
        memes = [Article.from_record(row) for row in load_corpus(recipe.meme_dir, ["train"])["train"]]
        encoded += [encode_article(meme, tokenizer, techniques, span_tags=False) for meme in memes]
        say(f"{len(memes)} meme texts added for the technique head")
    teacher_report = None
    if recipe.distil_mix > 0:
        from persuasion.train.distil import attach_teacher_targets

        # Only the training texts: the teacher never sees the validation split.
        taught = [train_articles] + ([memes] if recipe.distil_memes else [])
        teacher_report = attach_teacher_targets(recipe, taught, encoded[:sum(map(len, taught))], techniques, say)
    content_tokens = recipe.window_tokens - WindowFraming.of(tokenizer).extra_tokens
    # An upper bound of the windows an epoch cuts (their grid shifts each epoch): the schedule's length.
    windows_per_epoch = sum(math.ceil(max(1, len(a.document.token_ids)) / content_tokens) + 1 for a in encoded)
    return TrainingData(train_articles, validation_articles, encoded,
                        technique_class_weights(encoded, len(techniques), recipe.technique_class_weighting),
                        content_tokens, math.ceil(windows_per_epoch / recipe.batch_size / processes), teacher_report)


def build_training_network(recipe: Recipe, techniques: list[str]) -> TrainingNetwork:
    from persuasion.model.network import PersuasionNetwork

    network = PersuasionNetwork.from_encoder_name(recipe.resolved_base_model(), len(techniques), recipe.dropout,
                                                  technique_tagger=recipe.technique_tagging_weight > 0)
    if recipe.freeze_word_embeddings:
        network.encoder.get_input_embeddings().weight.requires_grad_(False)
    return TrainingNetwork(network, recipe.span_weight)


@dataclass
class RunState:
    """What training moves forward, prepared by accelerate; the last three are saved with its state too."""

    accelerator: object
    network: TrainingNetwork
    optimizer: torch.optim.Optimizer
    scheduler: object
    loader: torch.utils.data.DataLoader
    windows: EpochWindows
    averaged: AveragedModel  # the running mean of the weights
    progress: Progress
    best: BestWeights


def run_epochs(recipe: Recipe, state: RunState, data: TrainingData, tokenizer, total_steps: int, say) -> None:
    """Train epoch after epoch, validating after each, until the epochs, the patience or the budget run out."""
    accelerator, network, optimizer, scheduler = state.accelerator, state.network, state.optimizer, state.scheduler
    loader, windows, averaged, progress, best = state.loader, state.windows, state.averaged, state.progress, state.best
    output_dir = Path(recipe.output_dir)
    last_save = time.time()
    class_weights = data.class_weights.to(accelerator.device)
    while not progress.stopped and progress.epoch < recipe.epochs:
        windows.cut(progress.epoch)
        averaging = 0 < recipe.average_from_epoch <= progress.epoch + 1
        network.train()
        epoch_started, tokens_seen, running = time.time(), 0, []
        out_of_budget = False
        # Batches a killed run had done are drawn again and dropped: cheap next to a step, and the loader
        # then draws on its own generator exactly as the uninterrupted run did.
        for batch in itertools.islice(loader, progress.batches_done, None):
            with accelerator.autocast():
                loss = training_loss(network, batch, class_weights, recipe.technique_loss_weight,
                                     recipe.technique_tagging_weight, recipe.distil_mix, recipe.distil_temperature)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(network.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            if averaging:
                averaged.update_parameters(accelerator.unwrap_model(network).network)
            progress.step += 1
            progress.batches_done += 1
            tokens_seen += int(batch["attention_mask"].sum())
            running.append(loss.item())
            if progress.step % 25 == 0:
                rate = tokens_seen * accelerator.num_processes / (time.time() - epoch_started)
                say(f"epoch {progress.epoch + 1} step {progress.step}/{total_steps} "
                    f"loss {sum(running) / len(running):.4f} ({rate:.0f} tokens/s)")
                running = []
            if (recipe.max_minutes and progress.elapsed_minutes() >= recipe.max_minutes) or (recipe.max_steps and progress.step >= recipe.max_steps):
                out_of_budget = True
                break
            if time.time() - last_save >= recipe.save_every_minutes * 60:
                save_state(accelerator, output_dir, progress, say)
                last_save = time.time()
        progress.epoch += 1
        progress.batches_done = 0
        if accelerator.is_main_process:
            validate_epoch(recipe, accelerator.unwrap_model(network).network, averaged, progress, best, data,
                           tokenizer, accelerator.device, say)
        stop = out_of_budget or progress.epochs_without_gain >= recipe.patience
        if accelerator.num_processes > 1:
            stop = bool(accelerator.gather(torch.tensor([stop], device=accelerator.device)).any())
        if stop:
            progress.stopped = "budget reached" if out_of_budget else f"no validation gain in {recipe.patience} epochs"
            say(f"stopping: {progress.stopped}")
        elif progress.epoch == recipe.epochs:
            progress.stopped = "all epochs trained"
        save_state(accelerator, output_dir, progress, say)
        last_save = time.time()


def validate_epoch(recipe, network, averaged, progress, best, data, tokenizer, device, say) -> None:
    """Score the epoch's last weights and their running mean on validation; keep the best."""
    candidates = {"last": network.eval()}
    if int(averaged.n_averaged) > 0:
        candidates["averaged"] = averaged.module.eval()
    gained = False
    for weights, candidate in candidates.items():
        place = {"epoch": progress.epoch, "step": progress.step}
        score = validation_entry(candidate, tokenizer, recipe, data, device, place, weights,
                                 progress.elapsed_minutes())
        progress.history.append(score)
        say(f"validation of {weights} weights {json.dumps(place)}: {json.dumps(score)}")
        if score["selection"] > progress.best_score:
            progress.best_score, gained = score["selection"], True
            best.keep(candidate)
    progress.epochs_without_gain = 0 if gained else progress.epochs_without_gain + 1


def validation_entry(network, tokenizer, recipe: Recipe, data: TrainingData, device, place: dict, weights: str,
                     minutes: float) -> dict:
    from persuasion.model.detector import Detector
    from persuasion.train.tune import validation_scores

    if data.validation_articles:
        scores = validation_scores(Detector(network, tokenizer, run_settings(recipe), device=str(device)),
                                   data.validation_articles)
    else:  # without a validation split the last epoch wins
        scores = {"selection": float(place["epoch"])}
    return scores | place | {"minutes": round(minutes, 2), "weights": weights}


def run_settings(recipe: Recipe):
    from persuasion.model.checkpoint import DetectorSettings
    from persuasion.taxonomy import TECHNIQUES

    return DetectorSettings(techniques=tuple(TECHNIQUES), window_tokens=recipe.window_tokens,
                            window_stride=recipe.inference_stride, technique_tagger=recipe.technique_tagging_weight > 0,
                            base_model=recipe.base_model, recipe=recipe.to_dict())


def save_state(accelerator, output_dir: Path, progress: Progress, say) -> None:
    """accelerate's state plus the progress, written beside the last one and swapped in, so a kill at any
    moment leaves one whole state behind."""
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
        say(f"saved the run's state after epoch {progress.epoch}, batch {progress.batches_done} (step {progress.step})")


def load_state(accelerator, output_dir: Path, say) -> None:
    for name in (STATE_DIR, f"{STATE_DIR}.old"):  # .old: killed between the two renames of save_state
        if (output_dir / name).is_dir():
            accelerator.load_state(str(output_dir / name))
            say(f"resumed from {output_dir / name}")
            return
    raise PersuasionError(f"--resume {output_dir}: no saved state yet; start the run again without --resume")


def save_tuned_checkpoint(recipe, network, best: BestWeights, progress: Progress, data: TrainingData, tokenizer,
                          checkpoint: Path, say) -> None:
    """The best weights as an fp16 checkpoint, tuned on validation as users will load it."""
    from persuasion.model.checkpoint import write_settings, write_validation_report
    from persuasion.model.detector import Detector
    from persuasion.train.tune import hardware, tune_detector

    network = network.cpu().eval()
    if best.state:
        network.load_state_dict(best.state)
    Detector(network, tokenizer, run_settings(recipe)).save(checkpoint)
    # Tune on the fp16 weights as shipped, so thresholds match what users load.
    detector = Detector.load(checkpoint)
    report = {}
    if data.validation_articles:
        detector, report = tune_detector(detector, data.validation_articles, log=say)
    write_settings(checkpoint, detector.settings, detector.decoding)
    device = hardware(detector.device)
    minutes = round(progress.elapsed_minutes(), 2)  # tuning included
    write_validation_report(checkpoint, {
        "validation": report, "history": progress.history, "train_minutes": minutes,
        "trained_on": device, "tuned_on": device, "stopped": progress.stopped,
        "validation_articles": sorted(a.article_id for a in data.validation_articles)}
        | ({"teacher": data.teacher_report} if data.teacher_report else {}))
    say(f"saved {checkpoint} after {minutes} minutes; validation {json.dumps(report)}")
