"""Systems the benchmark can score: a trained checkpoint or one of the classical baselines.

What each answers, for a list of articles at once, is eval/predictions.py's Predictions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from persuasion.corpus import Article
from persuasion.errors import PersuasionError
from persuasion.eval import baselines
from persuasion.eval.predictions import Predictions, System

BASELINES = ("majority", "tfidf")


class DetectorSystem:
    """A persuasion checkpoint: one scoring per article serves all three tasks."""

    def __init__(self, model: str | Path | None, batch_articles: int = 4, precision: str = "auto"):
        from persuasion.model.detector import Detector

        self.detector = Detector.load(model, precision=precision)
        self.name = str(model or "default")
        self.precision = self.detector.precision
        self.batch_articles = batch_articles  # the windows' hidden states of a batch are kept for span classification

    def predict(self, articles: list[Article], progress: Callable[[int], None]) -> Predictions:
        return predict_with(self.detector, self.detector.decoding, articles, progress, self.batch_articles)


def predict_with(detector, decoding, articles: list[Article], progress: Callable[[int], None] = lambda done: None,
                 batch_articles: int = 4) -> Predictions:
    """SI, TC and FLC answers of a detector under a decoding."""
    from persuasion.model.decoding import classify_occurrences, decode

    predictions = Predictions(tc_confidence=[], span_scores={}, sentence_scores={})
    for first in range(0, len(articles), batch_articles):
        batch = articles[first: first + batch_articles]
        for article, scores in zip(batch, detector.score_windows([a.text for a in batch])):
            occurrences = [(span.start, span.end) for span in article.spans]
            result = decode(detector.classify_candidates(scores, [decoding], occurrences), decoding)
            article_id = article.article_id
            predictions.flc[article_id] = [(s.start, s.end, s.technique) for s in result.spans]
            predictions.span_scores[article_id] = [s.score for s in result.spans]
            predictions.si[article_id] = sorted({(s.start, s.end) for s in result.spans})
            predictions.sentence_scores[article_id] = [(s.start, s.end, s.score) for s in result.sentences]
            answers = classify_occurrences(scores, occurrences, decoding)
            predictions.tc[article_id] = [(s, e, technique) for (s, e), (technique, _) in zip(occurrences, answers)]
            predictions.tc_confidence.extend(confidence for _, confidence in answers)
        progress(len(batch))
    return predictions


def load_system(name: str | None, data_dir: str | Path, train_split: str = "train", precision: str = "auto") -> System:
    """A baseline's name, or a model (a shipped model's name, None for the default, or a checkpoint folder) in
    `precision`."""
    if precision != "auto" and name in BASELINES:
        raise PersuasionError(f"--precision applies to checkpoints, not to the {name} baseline")
    if name == "majority":
        return baselines.MajorityBaseline.fit(data_dir, train_split)
    if name == "tfidf":
        return baselines.TfidfBaseline.fit(data_dir, train_split)
    return DetectorSystem(name, precision=precision)
