"""`persuasion train`: the whole training run in one readable loop, driven by accelerate.

Encoder + both heads learn together on packed windows: each step's forward pass feeds the
token tagger (SI) and the span classifier (TC) from the same hidden states.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from pathlib import Path

from persuasion.train.features import IGNORE
from persuasion.train.recipe import Recipe, parse_override


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="YAML recipe (see configs/)")
    parser.add_argument("--data", help="PTC folder; overrides the recipe's data_dir")
    parser.add_argument("--output", help="run folder; overrides the recipe's output_dir")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one recipe key, e.g. --set epochs=2 (repeatable)")


def run(args) -> int:
    overrides = dict(parse_override(text) for text in args.set)
    if args.data:
        overrides["data_dir"] = args.data
    if args.output:
        overrides["output_dir"] = args.output
    train(Recipe.from_yaml(args.config, overrides))
    return 0


def split_by_article(articles: list, fraction: float, seed: int) -> tuple[list, list]:
    """Seeded split of whole articles: (train, validation)."""
    order = sorted(articles, key=lambda article: article.article_id)
    random.Random(seed).shuffle(order)
    size = max(1, round(len(order) * fraction)) if fraction > 0 else 0
    validation_ids = {article.article_id for article in order[:size]}
    return ([a for a in articles if a.article_id not in validation_ids],
            [a for a in articles if a.article_id in validation_ids])


def technique_class_weights(encoded_articles, num_techniques: int, scheme: str):
    import torch

    counts = torch.zeros(num_techniques)
    for article in encoded_articles:
        for span in article.technique_spans:
            counts += torch.tensor(span.target)
    if scheme == "none":
        return torch.ones(num_techniques)
    if scheme != "sqrt_inverse":
        raise ValueError(f"technique_class_weighting must be 'sqrt_inverse' or 'none', got {scheme!r}")
    weights = (counts.sum() / counts.clamp(min=1)).sqrt()
    return weights / (weights * counts).sum() * counts.sum()  # mean weight per example stays 1


def make_training_network(network, span_weight: float = 1.0):
    """The network plus its span-tagging loss.

    Where the network has a per-token technique tagger, its logits come out for a per-token
    technique loss: telling the encoder which technique covers each token (a single loaded word
    and a whole doubtful sentence are both just "I" to the span tagger) is the multi-granularity
    signal of the SemEval-2020 SI winner.
    A softmax tagger weighs B/I tokens `span_weight` times an O token; a CRF tagger scores whole
    tag sequences, so it takes no per-token weight.
    """
    import torch

    class TrainingNetwork(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.network = network
            self.token_loss = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, span_weight, span_weight]),
                                                        ignore_index=IGNORE)

        def forward(self, input_ids, attention_mask, tags, span_window, span_bounds, sentence_window, sentence_bounds):
            """(span tagging loss, technique logits per span, per-token technique logits, sentence logits)."""
            hidden = self.network.encode(input_ids, attention_mask)
            token_technique_logits = (self.network.token_technique_logits(hidden)
                                      if self.network.token_technique_head is not None else None)
            sentence_logits = (self.network.sentence_logits(hidden, sentence_window, sentence_bounds)
                               if self.network.sentence_head is not None else None)
            return (self.tag_loss(hidden, tags), self.network.technique_logits(hidden, span_window, span_bounds),
                    token_technique_logits, sentence_logits)

        def tag_loss(self, hidden, tags):
            tag_logits = self.network.tag_logits(hidden).float()
            tagged = tags != IGNORE
            if not tagged.any():  # a batch of texts without span tags (memes): technique loss only
                return tag_logits.sum() * 0.0
            if self.network.tag_transitions is not None:
                return -self.network.tag_transitions.log_likelihood(tag_logits, tags, tagged).sum() / tagged.sum()
            return self.token_loss(tag_logits.reshape(-1, tag_logits.shape[-1]), tags.reshape(-1))

    return TrainingNetwork()


def make_optimizer(network, recipe: Recipe):
    """AdamW with the encoder at the recipe's learning rate and the freshly initialised heads at their own."""
    import torch

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


class WeightAverage:
    """Running mean of the trainable weights, one sample after every optimiser step.

    The mean of the points a fine-tune passes through late in training sits in a flatter region
    of the loss than any one of them and generalises better (stochastic weight averaging,
    Izmailov et al. 2018), like an ensemble of those points at the inference cost of one model.
    The mean stays on the weights' device: copying a large encoder to the CPU every step would
    cost more than the step.
    """

    def __init__(self):
        self.mean, self.samples = {}, 0

    def add(self, model) -> None:
        self.samples += 1
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            weights = parameter.detach().float()
            if name in self.mean:
                self.mean[name] += (weights - self.mean[name]) / self.samples
            else:
                self.mean[name] = weights.clone()

    def applied_to(self, model):
        """A copy of the model carrying the averaged weights (frozen weights are shared by every sample)."""
        averaged = copy.deepcopy(model)
        averaged.load_state_dict(self.mean, strict=False)
        return averaged


def weight_soup(states: list[dict]) -> dict:
    """The element-wise mean of several networks' weights (a uniform "model soup").

    Fine-tunes that start from the same weights stay in one basin of the loss, so their mean is
    a sound network; such soups often generalise better than each ingredient (Wortsman et al.
    2022) at the inference cost of one model. Whether they do here is for validation to say.
    """
    return {name: (sum(state[name].float() for state in states) / len(states)).to(tensor.dtype)
            if tensor.is_floating_point() else tensor
            for name, tensor in states[0].items()}


def training_loss(network, batch: dict, class_weights, technique_loss_weight: float,
                  technique_tagging_weight: float = 0.0, sentence_loss_weight: float = 0.0):
    """Tagging loss over tokens plus class-weighted soft-target loss over the gold spans.

    With a technique tagging weight, also a per-token, per-technique binary loss (see make_training_network);
    with a sentence head, a binary loss on whether each sentence piece holds a technique.
    """
    import torch

    loss, technique_logits, token_technique_logits, sentence_logits = network(
        batch["input_ids"], batch["attention_mask"], batch["tags"], batch["span_window"], batch["span_bounds"],
        batch["sentence_window"], batch["sentence_bounds"])
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
    if sentence_logits is not None and len(sentence_logits):
        loss = loss + sentence_loss_weight * torch.nn.functional.binary_cross_entropy_with_logits(
            sentence_logits.float(), batch["sentence_targets"])
    return loss


def train(recipe: Recipe, log=None) -> Path:
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import set_seed
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    from persuasion.corpus import read_meme_articles, read_ptc_articles
    from persuasion.model.detector import Detector
    from persuasion.model.network import DetectorSettings, PersuasionNetwork, save_checkpoint
    from persuasion.taxonomy import TECHNIQUES
    from persuasion.train.features import collate, cut_windows, encode_article
    from persuasion.train.export import write_validation_report
    from persuasion.train.tune import hardware, tune_detector, validation_scores

    # A second train() in one process (tests, notebooks) may ask for another precision: start clean.
    AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(mixed_precision=recipe.mixed_precision)
    output_dir = Path(recipe.output_dir)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    log_file = open(output_dir / "train.log", "a", encoding="utf-8") if accelerator.is_main_process else None

    def say(message: str) -> None:
        if accelerator.is_main_process:
            line = f"[{time.strftime('%H:%M:%S')}] {message}"
            (log or print)(line)
            log_file.write(line + "\n")
            log_file.flush()

    set_seed(recipe.seed)
    techniques = list(TECHNIQUES)
    base_model = recipe.resolved_base_model()
    articles = read_ptc_articles(recipe.data_dir, "train")
    train_articles, validation_articles = split_by_article(articles, recipe.validation_fraction, recipe.split_seed)
    say(f"recipe {json.dumps(recipe.to_dict())}")
    say(f"{len(train_articles)} training and {len(validation_articles)} validation articles")

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    encoded = [encode_article(article, tokenizer, techniques) for article in train_articles]
    if recipe.meme_dir:
        # Memes teach techniques only: their spans often cover the whole text, unlike news spans.
        memes = read_meme_articles(Path(recipe.meme_dir) / "training_set_task2.txt")
        encoded += [encode_article(meme, tokenizer, techniques, span_tags=False) for meme in memes]
        say(f"{len(memes)} meme texts added for the technique head")
    class_weights = technique_class_weights(encoded, len(techniques), recipe.technique_class_weighting).to(accelerator.device)
    content_tokens = recipe.window_tokens - 2
    windows_per_epoch = sum(math.ceil(max(1, len(a.document.token_ids)) / content_tokens) + 1 for a in encoded)
    steps_per_epoch = math.ceil(windows_per_epoch / recipe.batch_size / accelerator.num_processes)
    total_steps = steps_per_epoch * recipe.epochs
    if recipe.max_steps:
        total_steps = min(total_steps, recipe.max_steps)
    settings = DetectorSettings(techniques=techniques, window_tokens=recipe.window_tokens,
                                window_stride=recipe.inference_stride, base_model=recipe.base_model,
                                sentence_head=recipe.sentence_loss_weight > 0, span_crf=recipe.span_crf,
                                technique_tagger=recipe.technique_tagging_weight > 0, recipe=recipe.to_dict())
    started = time.time()
    history: list[dict] = []

    def validate(candidate, weights: str, place: dict) -> float:
        """Score one candidate on the validation split and log it into the history; returns its selection score.

        `place` says where in training the candidate comes from (epoch, step, member).
        """
        detector = Detector(candidate, tokenizer, copy.deepcopy(settings), str(accelerator.device))
        scores = (validation_scores(detector, validation_articles) if validation_articles
                  else {"selection": -float(place.get("epoch", recipe.epochs))})
        scores.update(place, minutes=round((time.time() - started) / 60, 2), weights=weights)
        history.append(scores)
        say(f"validation of {weights} weights {json.dumps(place)}: {json.dumps(scores)}")
        return scores["selection"]

    def train_member(member: int):
        """One fine-tune from the shared initial weights; returns (network, best score, best state)."""
        set_seed(recipe.seed)  # every member starts from the same weights, so their mean is a sound model
        network = PersuasionNetwork.from_encoder_name(base_model, len(techniques), recipe.dropout,
                                                      sentence_head=settings.sentence_head, span_crf=settings.span_crf,
                                                      technique_tagger=settings.technique_tagger)
        if recipe.freeze_word_embeddings:
            network.encoder.get_input_embeddings().weight.requires_grad_(False)
        network = make_training_network(network, recipe.span_weight)
        if member:  # member 0 keeps the single-model random stream, so one-member recipes train as before
            set_seed(recipe.seed + member)

        optimizer = make_optimizer(network, recipe)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(recipe.warmup_fraction * total_steps), total_steps)
        network, optimizer, scheduler = accelerator.prepare(network, optimizer, scheduler)
        # The time budget is shared out equally, so a slow machine still trains every member.
        member_minutes = recipe.max_minutes * (member + 1) / recipe.soup_members

        step, best_score, best_state, epochs_without_gain = 0, -float("inf"), None, 0
        weight_average = WeightAverage()
        out_of_budget = False
        for epoch in range(recipe.epochs):
            rng = random.Random((recipe.seed + member) * 1000 + epoch)
            windows = [window for article in encoded for window in cut_windows(article, content_tokens, rng)]
            rng.shuffle(windows)
            batches = [windows[i: i + recipe.batch_size] for i in range(0, len(windows), recipe.batch_size)]
            # Every process takes the same number of batches so gradient synchronisation lines up.
            per_process = len(batches) // accelerator.num_processes
            batches = batches[accelerator.process_index * per_process: (accelerator.process_index + 1) * per_process]
            averaging = 0 < recipe.average_from_epoch <= epoch + 1
            network.train()
            epoch_started, tokens_seen, running = time.time(), 0, []
            for batch_windows in batches:
                batch = {key: value.to(accelerator.device)
                         for key, value in collate(batch_windows, tokenizer, len(techniques)).items()}
                with accelerator.autocast():
                    loss = training_loss(network, batch, class_weights, recipe.technique_loss_weight,
                                         recipe.technique_tagging_weight, recipe.sentence_loss_weight)
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(network.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                if averaging and accelerator.is_main_process:  # only the main process validates
                    weight_average.add(accelerator.unwrap_model(network).network)
                step += 1
                tokens_seen += int(batch["attention_mask"].sum())
                running.append(loss.item())
                if step % 25 == 0:
                    rate = tokens_seen * accelerator.num_processes / (time.time() - epoch_started)
                    say(f"epoch {epoch + 1} step {step}/{total_steps} loss {sum(running) / len(running):.4f} "
                        f"({rate:.0f} tokens/s)")
                    running = []
                minutes = (time.time() - started) / 60
                if (recipe.max_minutes and minutes >= member_minutes) or (recipe.max_steps and step >= recipe.max_steps):
                    out_of_budget = True
                    break

            if accelerator.is_main_process:
                model = accelerator.unwrap_model(network).network.eval()
                candidates = {"last": model}
                if weight_average.samples:
                    candidates["averaged"] = weight_average.applied_to(model)
                gained = False
                for weights, candidate in candidates.items():
                    place = {"epoch": epoch + 1, "step": step}
                    if recipe.soup_members > 1:
                        place["member"] = member
                    score = validate(candidate, weights, place)
                    if score > best_score:
                        best_score, gained = score, True
                        best_state = {name: tensor.detach().cpu().clone() for name, tensor in candidate.state_dict().items()}
                epochs_without_gain = 0 if gained else epochs_without_gain + 1
            stop = out_of_budget or epochs_without_gain >= recipe.patience
            if accelerator.num_processes > 1:
                stop = bool(accelerator.gather(torch.tensor([stop], device=accelerator.device)).any())
            if stop:
                say("stopping: " + ("budget reached" if out_of_budget else f"no validation gain in {recipe.patience} epochs"))
                break
        network = accelerator.unwrap_model(network).network.cpu().eval()
        accelerator.free_memory()  # the next member gets a fresh optimiser; drop this one's state
        return network, best_score, best_state

    members = [train_member(member) for member in range(recipe.soup_members)]
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return output_dir / "checkpoint"
    model, best_score, best_state = max(members, key=lambda member: member[1])
    if len(members) > 1:
        soup = weight_soup([state for _, _, state in members])
        model.load_state_dict(soup)
        if validate(model, "soup", {"members": len(members)}) > best_score:
            best_state = soup
    model.load_state_dict(best_state)
    checkpoint = save_checkpoint(model, tokenizer, settings, output_dir / "checkpoint")
    # Tune on the fp16 weights as shipped, so thresholds match what users load.
    detector = Detector.load(checkpoint, device=str(accelerator.device))
    report = tune_detector(detector, validation_articles, log=say) if validation_articles else {}
    save_checkpoint(detector.network, tokenizer, detector.settings, checkpoint)
    device = hardware(detector)
    summary = {"validation": report, "history": history, "train_minutes": round((time.time() - started) / 60, 2),
               "trained_on": device, "tuned_on": device,
               "validation_articles": sorted(a.article_id for a in validation_articles)}
    write_validation_report(checkpoint, summary)
    say(f"saved {checkpoint} after {summary['train_minutes']} minutes; validation {json.dumps(report)}")
    log_file.close()
    return checkpoint
