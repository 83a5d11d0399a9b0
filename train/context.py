"""`persuasion train-context`: train a checkpoint's context classifier (model/context.py), then tune the mix.

    persuasion train-context runs/default --config configs/context-minilm.yaml --data ../shared/data/ptc-semeval2020
    persuasion train-context runs/default --config configs/context-minilm.yaml --data ../shared/data/ptc-semeval2020 \
        --resume                                         # after the run above was killed

The classifier learns from every gold technique span of the training articles the checkpoint's run trained
on, each marked in its context; the articles the checkpoint held out for validation stay out, and after every
epoch its TC micro-F1 on their gold spans picks the best weights. Those are saved into the checkpoint's
`context/` folder and the checkpoint is tuned again (`persuasion tune`): the mix of the two classifiers and
the context classifier's temperature are fitted on validation with everything else.

The run folder (the recipe's output_dir) holds the recipe, train.log and state/, what --resume needs
(accelerate's state: weights, optimiser, random states; and the progress), saved every
`save_every_minutes` and after each epoch.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from pathlib import Path

import torch

from persuasion.corpus import Article, technique_gold
from persuasion.errors import PersuasionError
from persuasion.eval.metrics import tc_scores
from persuasion.model.checkpoint import (load_network, read_settings, read_validation_report, split_articles,
                                         resolve_model, write_settings, write_validation_report)
from persuasion.model.context import CONTEXT_DIR, ContextClassifier, ContextNetwork, ContextSettings, SpanMarker
from persuasion.model.decoding import rank_for_occurrences, ranked
from persuasion.model.detector import Detector
from persuasion.train.logs import ProgressLog
from persuasion.train.loop import resumed_recipe
from persuasion.train.recipe import Recipe, parse_override
from persuasion.train.trainer import (RECIPE_FILE, BestWeights, Progress, load_run_state, make_accelerator,
                                      save_run_state)
from persuasion.train.tune import TUNING_PRECISION, hardware, tune_detector

LOG_EVERY_STEPS = 25

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="the checkpoint folder to give a context classifier (changed in place)")
    parser.add_argument("--config", required=True, help="YAML recipe, e.g. configs/context-minilm.yaml")
    parser.add_argument("--data", help="PTC folder; overrides the recipe's data_dir")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one recipe key, e.g. --set epochs=1 (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in the recipe's output_dir from its last saved state (same --config)")


def run(args) -> int:
    checkpoint = resolve_model(args.checkpoint)
    overrides = dict(parse_override(text) for text in args.set) | ({"data_dir": args.data} if args.data else {})
    recipe = context_recipe(args.config, overrides, args.resume)
    train_context(recipe, checkpoint, resume=args.resume)
    return 0


def context_recipe(config: str, overrides: dict, resume: bool) -> Recipe:
    """The recipe of --config with --set and --data applied; resuming, the one the run started with, which
    --config and --set must not change (as `persuasion train --resume` checks)."""
    recipe = Recipe.from_yaml(config, overrides)
    return resumed_recipe(Path(recipe.output_dir), config, overrides) if resume else recipe


def context_encoder(base_model: str):
    """(encoder, tokenizer) to start from: a checkpoint's encoder (a shipped model's name or a checkpoint
    folder, already trained on the techniques) or a base encoder (a bundled name or a model folder)."""
    from transformers import AutoModel, AutoTokenizer

    try:
        network, tokenizer, _ = load_network(resolve_model(base_model))
        return network.encoder.train(), tokenizer
    except PersuasionError:
        folder = Recipe(base_model=base_model).resolved_base_model()
        return AutoModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


class ContextExamples:
    """Every gold technique span of some articles, marked in its context, with its technique's index."""

    def __init__(self, articles: list[Article], marker: SpanMarker, techniques: list[str]):
        self.examples, self.occurrences = [], []
        for article in articles:
            for span in article.spans:
                marked = marker.mark(article.text, span.start, span.end)
                if marked is not None:
                    self.examples.append((marked, techniques.index(span.technique)))
                    self.occurrences.append((article.article_id, span.start, span.end))

    def batches(self, batch_size: int, seed: int) -> list[list[int]]:
        """The examples' indices in batches, shuffled by seed (a resumed epoch cuts the same batches)."""
        order = list(range(len(self.examples)))
        random.Random(seed).shuffle(order)
        return [order[first: first + batch_size] for first in range(0, len(order), batch_size)]


def class_weights(examples: ContextExamples, num_techniques: int, scheme: str) -> torch.Tensor:
    counts = torch.bincount(torch.tensor([technique for _, technique in examples.examples]), minlength=num_techniques)
    if scheme == "none":
        return torch.ones(num_techniques)
    if scheme != "sqrt_inverse":
        raise PersuasionError(f"technique_class_weighting must be 'sqrt_inverse' or 'none', got {scheme!r}")
    return (counts.sum() / counts.clamp(min=1).float()).sqrt()  # cross entropy's weighted mean: only ratios count


def train_context(recipe: Recipe, checkpoint: Path, resume: bool = False) -> None:
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    output = Path(recipe.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / RECIPE_FILE).write_text(json.dumps(recipe.to_dict(), indent=2) + "\n")
    progress_log = ProgressLog(output / "train.log", timestamps=True)
    accelerator = make_accelerator(recipe)
    try:
        set_seed(recipe.seed)
        techniques = list(read_techniques(checkpoint))
        training, validation = split_articles(recipe.data_dir, checkpoint)
        encoder, tokenizer = context_encoder(recipe.base_model)
        marker = SpanMarker(tokenizer, recipe.context_tokens)
        train_examples = ContextExamples(training, marker, techniques)
        validation_examples = ContextExamples(validation, marker, techniques)
        log.info(f"{len(train_examples.examples)} training spans from {len(training)} articles, "
                 f"{len(validation_examples.examples)} validation spans from {len(validation)}")
        set_seed(recipe.seed)  # the head's initial weights do not depend on how much data preparation drew
        network = ContextNetwork(encoder, len(techniques), recipe.dropout)
        if recipe.freeze_word_embeddings:
            network.encoder.get_input_embeddings().weight.requires_grad_(False)
        optimizer = torch.optim.AdamW([
            {"params": [p for p in network.encoder.parameters() if p.requires_grad], "lr": recipe.learning_rate},
            {"params": network.head.parameters(), "lr": recipe.head_learning_rate}], weight_decay=recipe.weight_decay)
        steps_per_epoch = math.ceil(len(train_examples.examples) / recipe.batch_size)
        total_steps = min(steps_per_epoch * recipe.epochs, recipe.max_steps or math.inf)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(recipe.warmup_fraction * total_steps), total_steps)
        network, optimizer, scheduler = accelerator.prepare(network, optimizer, scheduler)
        progress, best = Progress(), BestWeights()
        for saved in (progress, best):
            accelerator.register_for_checkpointing(saved)
        if resume:
            load_run_state(accelerator, output)
        weights = class_weights(train_examples, len(techniques), recipe.technique_class_weighting).to(accelerator.device)
        unwrapped = accelerator.unwrap_model(network)
        last_save = time.time()
        while not progress.stopped:
            network.train()
            batches = train_examples.batches(recipe.batch_size, recipe.seed * 1000 + progress.epoch)
            for rows in batches[progress.batches_done:]:
                input_ids, attention_mask, markers = marker.batch([train_examples.examples[row][0] for row in rows])
                targets = torch.tensor([train_examples.examples[row][1] for row in rows], device=accelerator.device)
                with accelerator.autocast():
                    logits = network(input_ids.to(accelerator.device), attention_mask.to(accelerator.device),
                                     markers.to(accelerator.device))
                    loss = torch.nn.functional.cross_entropy(logits.float(), targets, weight=weights)
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(network.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                progress.step += 1
                progress.batches_done += 1
                if progress.step % LOG_EVERY_STEPS == 0:
                    log.info(f"epoch {progress.epoch + 1} step {progress.step}/{total_steps} loss {loss.item():.4f}")
                if progress.step >= total_steps:
                    break
                if time.time() - last_save >= recipe.save_every_minutes * 60:
                    save_run_state(accelerator, output, progress)
                    last_save = time.time()
            progress.epoch += 1
            progress.batches_done = 0
            score = validation_tc(unwrapped, marker, validation_examples, validation, techniques, accelerator.device)
            progress.history.append(score | {"epoch": progress.epoch, "step": progress.step,
                                             "minutes": round(progress.elapsed_minutes(), 2)})
            log.info(f"validation after epoch {progress.epoch}: {json.dumps(progress.history[-1])}")
            if score["tc_micro_f1"] > progress.best_score:
                progress.best_score = score["tc_micro_f1"]
                best.keep(unwrapped)
            if progress.epoch >= recipe.epochs or progress.step >= total_steps:
                progress.stopped = "all epochs trained"
            save_run_state(accelerator, output, progress)
            last_save = time.time()
        unwrapped.load_state_dict(best.state)
        settings = ContextSettings(tuple(techniques), recipe.context_tokens, recipe.base_model, recipe.to_dict())
        classifier = ContextClassifier(unwrapped.cpu().eval(), tokenizer, settings)
        shutil.rmtree(checkpoint / CONTEXT_DIR, ignore_errors=True)
        classifier.save(checkpoint / CONTEXT_DIR)
        tune_with_context(checkpoint, validation, training, progress)
    finally:
        accelerator.free_memory()
        progress_log.close()


def read_techniques(checkpoint: Path) -> tuple[str, ...]:
    return read_settings(checkpoint)[0].techniques


@torch.inference_mode()
def validation_tc(network: ContextNetwork, marker: SpanMarker, examples: ContextExamples, articles: list[Article],
                  techniques: list[str], device) -> dict:
    """The classifier's own TC micro- and macro-F1 on the validation articles' gold spans."""
    network.eval()
    logits = []
    for first in range(0, len(examples.examples), 64):
        chunk = [marked for marked, _ in examples.examples[first: first + 64]]
        input_ids, attention_mask, markers = marker.batch(chunk)
        logits.extend(network(input_ids.to(device), attention_mask.to(device), markers.to(device)).float().cpu().numpy())
    network.train()
    by_article: dict[str, dict] = {}
    for (article_id, start, end), row in zip(examples.occurrences, logits):
        by_article.setdefault(article_id, {})[(start, end)] = ranked(techniques, row)
    predicted = {}
    for article in articles:
        occurrences = [(span.start, span.end) for span in article.spans
                       if (span.start, span.end) in by_article.get(article.article_id, {})]
        answers = rank_for_occurrences(occurrences, by_article.get(article.article_id, {}))
        predicted[article.article_id] = [(s, e, technique) for (s, e), (technique, _) in zip(occurrences, answers)]
    scores = tc_scores(predicted, technique_gold(articles))
    return {"tc_micro_f1": scores["micro_f1"], "tc_macro_f1": scores["macro_f1"]}


def tune_with_context(checkpoint: Path, validation: list[Article], training: list[Article], progress: Progress
                      ) -> None:
    """Tune the checkpoint again with its context classifier, keeping its report's training record."""
    report = read_validation_report(checkpoint)
    detector, report["validation"] = tune_detector(Detector.load(checkpoint, precision=TUNING_PRECISION), validation,
                                                   training)
    report["tuned_on"] = hardware(detector.device)
    report["context_classifier"] = {"history": progress.history, "train_minutes": round(progress.elapsed_minutes(), 2)}
    write_settings(checkpoint, detector.settings, detector.decoding)
    write_validation_report(checkpoint, report)
    log.info(f"tuned {checkpoint} with its context classifier: validation {json.dumps(report['validation'])}")
