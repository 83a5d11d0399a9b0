"""Systems the benchmark can score: a trained checkpoint or one of the classical baselines.

Every system answers the three SemEval tasks for a list of articles at once:
SI (which fragments), TC (which technique for each given fragment occurrence) and FLC
(fragments with their techniques).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from persuasion.corpus import Article
from persuasion.errors import PersuasionError

BASELINES = ("majority", "tfidf")


@dataclass
class Predictions:
    si: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    tc: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)  # one per span occurrence, in order
    flc: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)
    # For calibration, None when a system has no scores: the confidence of each TC answer
    # (articles in order, then lines in order) and (start, end, score) of each sentence.
    tc_confidence: list[float] | None = None
    sentence_scores: dict[str, list[tuple[int, int, float]]] | None = None


class System(Protocol):
    name: str

    def predict(self, articles: list[Article], progress: Callable[[int], None]) -> Predictions:
        """Answer SI, TC and FLC for `articles`; call progress(n) as n more articles are done."""


def rank_for_occurrences(spans: Iterable[tuple[int, int]], ranked_by_fragment: dict) -> list[tuple[str, float]]:
    """One (technique, confidence) per span occurrence: the k-th listing of a fragment gets its k-th best.

    The gold lists a fragment once per technique it uses, so repeating the top technique
    for every listing could never score more than one of them.
    """
    seen: dict[tuple[int, int], int] = {}
    answers = []
    for fragment in spans:
        rank = seen.get(fragment, 0)
        seen[fragment] = rank + 1
        ranked = ranked_by_fragment[fragment]
        answers.append(ranked[min(rank, len(ranked) - 1)])
    return answers


def detector_tc_answers(detector, analysis, occurrences: list[tuple[int, int]]) -> list[tuple[str, float]]:
    """The detector's (technique, probability) for each span occurrence of one analysed article."""
    fragments = sorted(set(occurrences))
    rows = detector._technique_probabilities(analysis, fragments) if fragments else []
    ranked = {fragment: detector._ranked(row) for fragment, row in zip(fragments, rows)}
    return rank_for_occurrences(occurrences, ranked)


class DetectorSystem:
    """A persuasion checkpoint: one forward pass per article serves all three tasks."""

    def __init__(self, checkpoint: str | Path | None, batch_articles: int = 4, quantize: bool = False):
        from persuasion.model.detector import SHIPPED_DIR, Detector

        directory = Path(checkpoint) if checkpoint is not None else SHIPPED_DIR
        if not (directory / "persuasion.json").is_file():
            raise PersuasionError(f"{directory}: not a persuasion checkpoint (no persuasion.json); "
                                  f"give --system a checkpoint directory, 'shipped' or one of {', '.join(BASELINES)}")
        self.detector = Detector.load(directory, device="cpu" if quantize else None, quantize=quantize)
        self.name = ("shipped" if checkpoint is None else str(checkpoint)) + (" (int8)" if quantize else "")
        self.batch_articles = batch_articles  # hidden states of a batch are kept for span classification

    def predict(self, articles: list[Article], progress: Callable[[int], None]) -> Predictions:
        detector = self.detector
        predictions = Predictions(tc_confidence=[], sentence_scores={})
        for first in range(0, len(articles), self.batch_articles):
            batch = articles[first: first + self.batch_articles]
            for article, analysis in zip(batch, detector._analyse([a.text for a in batch])):
                result = detector._result(analysis)
                article_id = article.article_id
                predictions.flc[article_id] = [(s.start, s.end, s.technique) for s in result.spans]
                predictions.si[article_id] = sorted({(s.start, s.end) for s in result.spans})
                predictions.sentence_scores[article_id] = [(s.start, s.end, s.score) for s in result.sentences]
                occurrences = [(span.start, span.end) for span in article.spans]
                answers = detector_tc_answers(detector, analysis, occurrences)
                predictions.tc[article_id] = [(s, e, technique) for (s, e), (technique, _) in zip(occurrences, answers)]
                predictions.tc_confidence.extend(confidence for _, confidence in answers)
            progress(len(batch))
        return predictions


def load_system(name: str | None, data_dir: str | Path, train_split: str = "train", quantize: bool = False) -> System:
    """`shipped` (or None), a baseline name, or a checkpoint directory (optionally int8-quantised)."""
    from persuasion.eval import baselines

    if quantize and name in BASELINES:
        raise PersuasionError(f"--quantize applies to checkpoints, not to the {name} baseline")
    if name in (None, "shipped"):
        return DetectorSystem(None, quantize=quantize)
    if name == "majority":
        return baselines.MajorityBaseline.fit(data_dir, train_split)
    if name == "tfidf":
        return baselines.TfidfBaseline.fit(data_dir, train_split)
    if not Path(name).is_dir():
        raise PersuasionError(f"--system {name!r}: not 'shipped', {' or '.join(BASELINES)}, or a checkpoint folder")
    return DetectorSystem(name, quantize=quantize)
