"""The `persuasion` spaCy component: technique spans in `doc.spans["persuasion"]` on any English pipeline.

    import spacy
    nlp = spacy.blank("en")                      # no spaCy model download needed
    nlp.add_pipe("persuasion", config={"model": "default", "min_score": 0.2, "precision": "auto"})
    doc = nlp(text)
    for span in doc.spans["persuasion"]:
        print(span.text, span.label_, span._.persuasion_score)

spaCy finds the factory through the `spacy_factories` entry point, so `add_pipe` needs no import.

- Each span's label is its technique; `span._.persuasion_score` is its score, the calibrated chance that it
  overlaps a span annotators marked with that technique (also in the group's `attrs["scores"]`, in span
  order, as spaCy's spancat stores them). `min_score` leaves out the spans below it (default: the model's,
  0, every span), as `Detector.with_min_score` does.
- Spans are snapped to spaCy tokens: whitespace at a fragment's edges is dropped, and an edge that
  falls inside a token moves out to that token's boundary (`alignment_mode="expand"`), so the span
  covers every token the fragment touches. Two fragments of one technique that snap to the same
  tokens become one span with the higher score.
- Where the pipeline sets sentences (a `sentencizer` or parser before this component),
  `sent._.persuasion_score` is the highest score of the detector's sentences that overlap it.
- `nlp.pipe(texts, batch_size=n)` hands n docs at a time to `Detector.detect_many`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from spacy.language import Language
from spacy.tokens import Doc, Span, SpanGroup
from spacy.util import minibatch

from persuasion.result import DetectionResult

SPANS_KEY = "persuasion"
SCORE = "persuasion_score"


def _stored_score(span: Span) -> float | None:
    # Keyed by label too: one fragment can carry two techniques, each with its own score.
    return span.doc.user_data.get((SCORE, span.start_char, span.end_char, span.label_))


if not Span.has_extension(SCORE):
    Span.set_extension(SCORE, getter=_stored_score)


@Language.factory("persuasion", assigns=["doc.spans"],
                  default_config={"model": "default", "min_score": None, "spans_key": SPANS_KEY,
                                  "windows_per_batch": 32, "precision": "auto"})
def make_persuasion(nlp: Language, name: str, model: str, min_score: float | None, spans_key: str,
                    windows_per_batch: int, precision: str) -> "PersuasionComponent":
    """`model`: "default", "fast" or a checkpoint folder; spans scoring below `min_score` are left out (None:
    the model's default); `windows_per_batch`: windows per forward pass (detect_many's batch_size); `precision`:
    what the model computes in, as `Detector.load` takes it ("auto", "fp32", "bf16" or "int8")."""
    from persuasion.named_models import load_model

    return PersuasionComponent(load_model(model, precision), min_score, spans_key, windows_per_batch)


class PersuasionComponent:
    def __init__(self, detector, min_score: float | None = None, spans_key: str = SPANS_KEY,
                 windows_per_batch: int = 32):
        self.detector = detector if min_score is None else detector.with_min_score(min_score)
        self.spans_key = spans_key
        self.windows_per_batch = windows_per_batch

    def __call__(self, doc: Doc) -> Doc:
        return self.annotate(doc, self.detector.detect(doc.text))

    def pipe(self, docs: Iterable[Doc], batch_size: int = 32) -> Iterator[Doc]:
        for batch in minibatch(docs, size=batch_size):
            results = self.detector.detect_many([doc.text for doc in batch], batch_size=self.windows_per_batch)
            for doc, result in zip(batch, results):
                yield self.annotate(doc, result)

    def annotate(self, doc: Doc, result: DetectionResult) -> Doc:
        """Put `result`'s spans and sentence scores on `doc`."""
        chosen: dict[tuple[int, int, str], tuple[Span, float]] = {}
        for found in result.spans:
            span = snap_to_tokens(doc, found.start, found.end, found.technique)
            if span is None:
                continue
            key = (span.start_char, span.end_char, span.label_)
            if key not in chosen or found.score > chosen[key][1]:
                chosen[key] = (span, found.score)
        for (start, end, label), (_, score) in chosen.items():
            doc.user_data[(SCORE, start, end, label)] = score
        # Stable: fragments the detector found at one place stay in its order (best technique first).
        spans = sorted((span for span, _ in chosen.values()), key=lambda span: (span.start, span.end))
        doc.spans[self.spans_key] = SpanGroup(doc, name=self.spans_key, spans=spans,
                                              attrs={"scores": [span._.get(SCORE) for span in spans]})
        if doc.has_annotation("SENT_START"):
            for sentence in doc.sents:
                overlapping = [s.score for s in result.sentences
                               if s.start < sentence.end_char and sentence.start_char < s.end]
                if overlapping:
                    doc.user_data[(SCORE, sentence.start_char, sentence.end_char, sentence.label_)] = max(overlapping)
        return doc


def snap_to_tokens(doc: Doc, start: int, end: int, label: str) -> Span | None:
    """The tokens a fragment touches, its whitespace edges dropped; None when it holds no token."""
    fragment = doc.text[start:end]
    start += len(fragment) - len(fragment.lstrip())
    end -= len(fragment) - len(fragment.rstrip())
    if start >= end:
        return None
    span = doc.char_span(start, end, label=label, alignment_mode="expand")
    return span if span is not None and len(span) else None
