"""A run's training data: the corpus split into training and validation articles, the training texts
encoded (with the teacher's targets when distilling), and each epoch's windows, batched."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass

import torch

from persuasion.corpus import read_articles, split_by_article
from persuasion.errors import PersuasionError
from persuasion.model.windows import WindowFraming
from persuasion.train.distil import attach_teacher_targets
from persuasion.train.features import collate, cut_windows, encode_article
from persuasion.train.recipe import Recipe

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    train_articles: list
    validation_articles: list
    encoded: list  # EncodedArticle of every training text
    class_weights: torch.Tensor
    content_tokens: int  # per window, besides the tokenizer's framing tokens
    steps_per_epoch: int
    teacher_report: dict | None = None  # when distilling: which teacher labelled the texts, and how long it took


def prepare_data(recipe: Recipe, tokenizer, techniques: list[str], processes: int) -> TrainingData:
    articles = read_articles(recipe.data_dir, "train")
    train_articles, validation_articles = split_by_article(articles, recipe.validation_fraction, recipe.split_seed)
    log.info(f"{len(train_articles)} training and {len(validation_articles)} validation articles")
    encoded = [encode_article(article, tokenizer, techniques) for article in train_articles]
    memes = []
    if recipe.meme_dir:
        # Memes teach techniques only: their spans often cover the whole text, unlike news spans.
        memes = read_articles(recipe.meme_dir, "train")
        encoded += [encode_article(meme, tokenizer, techniques, span_tags=False) for meme in memes]
        log.info(f"{len(memes)} meme texts added for the technique head")
    teacher_report = None
    if recipe.distil_mix > 0:
        # Only the training texts: the teacher never sees the validation split.
        taught = [train_articles] + ([memes] if recipe.distil_memes else [])
        teacher_report = attach_teacher_targets(recipe, taught, encoded[:sum(map(len, taught))], techniques)
    content_tokens = recipe.window_tokens - WindowFraming.of(tokenizer).extra_tokens
    # An upper bound of the windows an epoch cuts (their grid shifts each epoch): the schedule's length.
    windows_per_epoch = sum(math.ceil(max(1, len(a.document.token_ids)) / content_tokens) + 1 for a in encoded)
    return TrainingData(train_articles, validation_articles, encoded,
                        technique_class_weights(encoded, len(techniques), recipe.technique_class_weighting),
                        content_tokens, math.ceil(windows_per_epoch / recipe.batch_size / processes), teacher_report)


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


def window_loader(windows: EpochWindows, tokenizer, num_techniques: int, recipe: Recipe) -> torch.utils.data.DataLoader:
    """The batches of the epoch `windows` was last cut for, in the order it shuffled them."""
    # Its own generator: the loader then draws nothing from the global RNG that dropout uses.
    return torch.utils.data.DataLoader(windows, batch_size=recipe.batch_size, shuffle=False,
                                       collate_fn=WindowCollator(WindowFraming.of(tokenizer), num_techniques),
                                       generator=torch.Generator().manual_seed(recipe.seed))
