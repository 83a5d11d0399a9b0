"""What a system the benchmark scores answers: Predictions, and the System protocol that returns them.

Apart from eval/systems.py, which loads the baselines, so that eval/baselines.py can use them too.

Every system answers the three SemEval tasks for a list of articles at once:
SI (which fragments), TC (which technique for each given fragment occurrence) and FLC
(fragments with their techniques).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from persuasion.corpus import Article


@dataclass
class Predictions:
    si: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    tc: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)  # one per span occurrence, in order
    flc: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)
    # For calibration, None when a system has no scores: the confidence of each TC answer
    # (articles in order, then lines in order), the score of each FLC span (in flc's order) and
    # (start, end, score) of each sentence.
    tc_confidence: list[float] | None = None
    span_scores: dict[str, list[float]] | None = None
    sentence_scores: dict[str, list[tuple[int, int, float]]] | None = None


class System(Protocol):
    name: str
    precision: str | None  # what a checkpoint computes in (model/precision.py); None for a baseline

    def predict(self, articles: list[Article], progress: Callable[[int], None]) -> Predictions:
        """Answer SI, TC and FLC for `articles`; call progress(n) as n more articles are done."""
