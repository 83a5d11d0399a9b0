"""What detection returns: typed spans over the caller's string, sentence scores, a summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Span:
    """A fragment of the input using one technique; `text[start:end] == span.text` always holds."""

    start: int
    end: int
    text: str
    technique: str
    # P(a span flagged at this score overlaps a span annotators marked with this technique), fitted on the
    # validation articles from p(fragment uses a technique) x p(it is this technique); the model card shows
    # how well it holds on dev.
    score: float


@dataclass(frozen=True)
class SentenceScore:
    start: int
    end: int
    score: float  # P(the sentence overlaps a technique span), fitted on validation from its highest token score


@dataclass(frozen=True)
class TechniqueSummary:
    technique: str
    count: int
    max_score: float


@dataclass
class DetectionResult:
    text: str
    spans: list[Span] = field(default_factory=list)
    sentences: list[SentenceScore] = field(default_factory=list)

    @property
    def summary(self) -> list[TechniqueSummary]:
        """Count and highest score per technique found, most frequent first."""
        by_technique: dict[str, list[float]] = {}
        for span in self.spans:
            by_technique.setdefault(span.technique, []).append(span.score)
        rows = [TechniqueSummary(name, len(scores), max(scores)) for name, scores in by_technique.items()]
        return sorted(rows, key=lambda row: (-row.count, -row.max_score, row.technique))

    def to_dict(self, include_text: bool = False) -> dict:
        result = {
            "spans": [asdict(span) for span in self.spans],
            "sentences": [asdict(sentence) for sentence in self.sentences],
            "summary": [asdict(row) for row in self.summary],
        }
        if include_text:
            result["text"] = self.text
        return result
