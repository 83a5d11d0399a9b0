"""The detector: text in, technique spans with exact character offsets and calibrated scores out.

Inference is two public stages: `detector.score(texts)` runs the network (`DocumentScores`: arrays), and
`decode(scores, decoding)` turns scores into spans with numpy alone. `detect` is the two in a row under the
checkpoint's tuned decoding. Spans found under another decoding are classified by the network's second
stage first: `detector.classify_candidates(scores, [decoding])`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from numbers import Integral
from pathlib import Path

import torch

from persuasion.errors import PersuasionError
from persuasion.limits import too_long
from persuasion.model.checkpoint import (DetectorSettings, load_network, read_settings, resolve_model, save_weights,
                                         write_settings)
from persuasion.model.context import CONTEXT_DIR, ContextClassifier
from persuasion.model.decoding import Decoding, DocumentScores, decode, decode_spans, ranked, technique_probabilities
from persuasion.model.network import PersuasionNetwork
from persuasion.model.precision import apply_precision, choose_precision, native_bf16
from persuasion.model.scoring import classify_spans, scored_windows
from persuasion.model.streaming import STREAMED_CHARACTERS, Progress, detect_in_stretches
from persuasion.model.windows import WindowFraming, plan_windows, tokenize_document
from persuasion.result import DetectionResult


class Detector:
    """Finds persuasion techniques: `Detector.load().detect(text)`."""

    def __init__(self, network: PersuasionNetwork, tokenizer, settings: DetectorSettings,
                 decoding: Decoding = Decoding(), device: str = "cpu", precision: str = "fp32",
                 context: ContextClassifier | None = None):
        self.network = network.to(device).eval()
        self.context = context  # a second technique classifier that reads each span in its context, if any
        self.tokenizer = tokenizer
        self.framing = WindowFraming.of(tokenizer)
        self.settings = settings
        self.decoding = decoding
        self.device = device
        self.precision = precision  # what the network computes in: fp32, bf16 or int8 (model/precision.py)
        # Called before each forward pass over windows when set: a server stops a long call there by raising.
        self.before_each_pass: Callable[[], None] | None = None
        self.techniques = list(settings.techniques)

    @classmethod
    def load(cls, model: str | Path | None = None, device: str | None = None, precision: str = "auto") -> "Detector":
        """A checkpoint folder, or a shipped model by name ("default", the most accurate, or "fast");
        with no argument, the default model inside the package. Nothing is downloaded.

        precision: "auto" (bf16 where the hardware computes it natively, else fp32), "fp32", "bf16" or
        "int8" (CPU only); `detector.precision` says which was chosen.
        """
        directory = resolve_model(model)
        device = device or ("cuda" if torch.cuda.is_available() and precision != "int8" else "cpu")
        chosen = choose_precision(precision, device, native_bf16(device))
        _, decoding = read_settings(directory)
        network, tokenizer, settings = load_network(directory)
        context = None
        if (directory / CONTEXT_DIR).is_dir():
            context = ContextClassifier.load(directory / CONTEXT_DIR, device)
            context.network = apply_precision(context.network, chosen)
        return cls(apply_precision(network, chosen), tokenizer, settings, decoding, device, chosen, context)

    def save(self, directory: str | Path, half: bool = True) -> Path:
        """A checkpoint folder that `Detector.load(directory)` reads back: weights (fp16 unless half=False),
        tokenizer, encoder config and persuasion.json."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.network.encoder.config.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        save_weights(self.network, directory, half)
        write_settings(directory, self.settings, self.decoding)
        if self.context is not None:
            self.context.save(directory / CONTEXT_DIR)
        return directory

    def with_context(self, context: ContextClassifier | None) -> "Detector":
        """The same network with this context classifier, mixed in by the decoding's context shares; None: the head
        alone, those shares set to 0 (no decoding can mix in a classifier the detector lacks)."""
        detector = copy.copy(self)
        detector.context = context
        if context is None:
            detector.decoding = replace(self.decoding, context_mix=0.0, detection_context_mix=0.0)
        return detector

    def with_decoding(self, decoding: Decoding) -> "Detector":
        """The same network under another decoding (the network is shared, not copied)."""
        detector = copy.copy(self)
        detector.decoding = decoding
        return detector

    def with_stride(self, stride: int) -> "Detector":
        """The same network reading windows `stride` content tokens apart."""
        detector = copy.copy(self)
        detector.settings = replace(self.settings, window_stride=stride)
        return detector

    def with_min_score(self, min_score: float) -> "Detector":
        """The same detector leaving out spans scoring below min_score (0 to 1)."""
        if not 0.0 <= min_score <= 1.0:
            raise PersuasionError(f"min_score {min_score}: give a score from 0 to 1")
        return self.with_decoding(replace(self.decoding, min_score=float(min_score)))

    # Detection

    def detect(self, text: str, batch_size: int = 32, progress: Progress | None = None) -> DetectionResult:
        """The spans and sentence scores of one text; batch_size windows per forward pass."""
        return next(self.detect_many([text], batch_size, progress))

    def detect_many(self, texts: Iterable[str], batch_size: int = 32, progress: Progress | None = None
                    ) -> Iterator[DetectionResult]:
        """Results in input order; windows of several documents share forward passes. A text over
        STREAMED_CHARACTERS is read on its own, in memory that does not grow with it (`detect_streamed`),
        calling progress(characters done, characters) as it goes, when given."""
        if isinstance(texts, (str, bytes)):  # at the call, not at the first next(): a str would be its characters
            raise TypeError("detect_many expects an iterable of texts, not one text; use detect(text) for one")
        return self._detect_in_order(texts, batch_size, progress)

    def _detect_in_order(self, texts: Iterable[str], batch_size: int, progress: Progress | None
                         ) -> Iterator[DetectionResult]:
        pending: list[str] = []
        for text in texts:
            if isinstance(text, str) and len(text) > STREAMED_CHARACTERS:
                yield from self._detect_together(pending, batch_size)
                pending = []
                yield self.detect_streamed(text, batch_size, progress)
                continue
            pending.append(text)
            if len(pending) >= max(1, batch_size // 4):
                yield from self._detect_together(pending, batch_size)
                pending = []
        yield from self._detect_together(pending, batch_size)

    def detect_streamed(self, text: str, batch_size: int = 32, progress: Progress | None = None) -> DetectionResult:
        """detect(text), the windows run in order and decoded as they finish, their states then freed
        (model/streaming.py): memory stays flat however long the text. The spans are those of
        decode(score([text])[0], decoding)."""
        check_text(text)
        return detect_in_stretches(self, text, batch_size, progress)

    def _detect_together(self, texts: list[str], batch_size: int) -> Iterator[DetectionResult]:
        return (decode(scores, self.decoding) for scores in self.score(texts, batch_size)) if texts else iter(())

    def classify(self, text: str, start: int, end: int) -> list[tuple[str, float]]:
        """Techniques ranked by calibrated probability for the span text[start:end] (the TC task)."""
        return self.classify_spans(text, [(start, end)])[0]

    def classify_spans(self, text: str, spans: list[tuple[int, int]]) -> list[list[tuple[str, float]]]:
        """For each (start, end), techniques ranked by calibrated probability."""
        check_text(text)
        for start, end in spans:
            for name, offset in (("start", start), ("end", end)):
                if isinstance(offset, bool) or not isinstance(offset, Integral):
                    raise TypeError(f"a span's {name} is a character offset, an int; got {offset!r} "
                                    f"({type(offset).__name__})")
            if not 0 <= start < end <= len(text):
                raise ValueError(f"span ({start}, {end}) is not inside the text of {len(text)} characters; "
                                 f"give 0 <= start < end <= {len(text)}")
        if not spans:
            return []
        spans = [(int(start), int(end)) for start, end in spans]
        scores = self.classify_candidates(self.score_windows([text])[0], spans=spans)
        return [ranked(self.techniques, row) for row in technique_probabilities(scores, spans, self.decoding)]

    # Scoring

    def score(self, texts: list[str], batch_size: int = 32) -> list[DocumentScores]:
        """The network's outputs for each text: its windows' (`score_windows`), and the technique logits of the
        spans the detector's decoding finds, so that `decode(scores, detector.decoding)` needs nothing more."""
        return [self.classify_candidates(scores, [self.decoding]) for scores in self.score_windows(texts, batch_size)]

    def score_windows(self, texts: list[str], batch_size: int = 32) -> list[DocumentScores]:
        """The network's first stage for each text: every window's span tagger outputs and encoder states,
        windows of all texts sharing forward passes; no span classified yet.

        Every window's states are kept, so that any span can be classified later: memory grows with the texts
        (tuning and the benchmark score articles; `detect` streams long texts instead)."""
        for text in texts:
            check_text(text)
        content = self.settings.window_tokens - self.framing.extra_tokens
        documents = [tokenize_document(self.tokenizer, text) for text in texts]
        planned = ((index, start, end, document.token_ids[start:end]) for index, document in enumerate(documents)
                   for start, end in plan_windows(len(document.token_ids), content, self.settings.window_stride))
        windows = [[] for _ in documents]
        for batch in scored_windows(self.network, self.framing, planned, batch_size, self.device,
                                    self.before_each_pass):
            for index, window in batch:
                windows[index].append(window)
        return [DocumentScores(text, document, self.techniques, document_windows)
                for text, document, document_windows in zip(texts, documents, windows)]

    def classify_candidates(self, scores: DocumentScores, decodings: Iterable[Decoding] = (),
                            spans: Sequence[tuple[int, int]] = ()) -> DocumentScores:
        """The network's second stage: the technique logits of every span each decoding finds and of the given
        spans, added to `scores` (those already classified are not classified again), and, where the detector has
        a context classifier, its logits of the given spans and of the spans of each decoding with a
        `detection_context_mix`; returns `scores`."""
        found = [(decoding, [(start, end) for start, end, _ in decode_spans(scores, decoding)])
                 for decoding in decodings]
        classify_spans(self.network, self.framing, scores, [*(span for _, each in found for span in each), *spans],
                       self.device)
        if self.context is not None:  # the given spans, and a decoding's own where it mixes the classifier in
            read = [span for decoding, each in found if decoding.detection_context_mix for span in each]
            unread = [span for span in dict.fromkeys([*read, *spans]) if span not in scores.context_logits]
            scores.context_logits.update(zip(unread, self.context.logits(scores.text, unread)))
        return scores


def check_text(text) -> None:
    """A TypeError for what is not a str, a PersuasionError (a ValueError) for a text over the one length limit."""
    if not isinstance(text, str):
        raise TypeError(f"detect expects str, got {type(text).__name__}")
    problem = too_long(len(text))
    if problem:
        raise PersuasionError(f"text of {problem}")
