"""The detector: text in, technique spans with exact character offsets and calibrated scores out.

Inference is two public stages: `detector.score(texts)` runs the network (`DocumentScores`), and
`decode(scores, decoding)` turns scores into spans. `detect` is the two in a row under the
checkpoint's tuned decoding.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import replace
from numbers import Integral
from pathlib import Path

import torch

from persuasion.errors import PersuasionError
from persuasion.limits import too_long
from persuasion.model.checkpoint import (DetectorSettings, load_network, read_settings, resolve_model, save_weights,
                                         write_settings)
from persuasion.model.decoding import (Decoding, DocumentScores, SpanClassifier, WindowScores, decode, ranked,
                                       technique_probabilities)
from persuasion.model.network import PersuasionNetwork
from persuasion.model.precision import apply_precision, choose_precision, native_bf16
from persuasion.model.streaming import STREAMED_CHARACTERS, Progress, detect_in_stretches
from persuasion.model.windows import WindowFraming, batch_windows, plan_windows, tokenize_document
from persuasion.result import DetectionResult


class Detector:
    """Finds persuasion techniques: `Detector.load().detect(text)`."""

    def __init__(self, network: PersuasionNetwork, tokenizer, settings: DetectorSettings,
                 decoding: Decoding = Decoding(), device: str = "cpu", precision: str = "fp32"):
        self.network = network.to(device).eval()
        self.tokenizer = tokenizer
        self.framing = WindowFraming.of(tokenizer)
        self.settings = settings
        self.decoding = decoding
        self.device = device
        self.precision = precision  # what the network computes in: fp32, bf16 or int8 (model/precision.py)
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
        return cls(apply_precision(network, chosen), tokenizer, settings, decoding, device, chosen)

    def save(self, directory: str | Path, half: bool = True) -> Path:
        """A checkpoint folder that `Detector.load(directory)` reads back: weights (fp16 unless half=False),
        tokenizer, encoder config and persuasion.json."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.network.encoder.config.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        save_weights(self.network, directory, half)
        write_settings(directory, self.settings, self.decoding)
        return directory

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
        scores = self.score([text])[0]
        return [ranked(self.techniques, row) for row in technique_probabilities(scores, list(spans), self.decoding)]

    # Scoring

    @torch.inference_mode()
    def score(self, texts: list[str], batch_size: int = 32) -> list[DocumentScores]:
        """The network's probabilities for each text, windows of all texts sharing forward passes.

        Every window's hidden states are kept, so that decoding can classify any span: memory grows with the
        texts (tuning and the benchmark score articles; `detect` streams long texts instead)."""
        for text in texts:
            check_text(text)
        content = self.settings.window_tokens - self.framing.extra_tokens
        documents = [tokenize_document(self.tokenizer, text) for text in texts]
        jobs = []  # (document index, token start, token end)
        for index, document in enumerate(documents):
            for start, end in plan_windows(len(document.token_ids), content, self.settings.window_stride):
                jobs.append((index, start, end))
        windows: list[list[WindowScores]] = [[] for _ in documents]
        for batch_start in range(0, len(jobs), batch_size):
            batch = jobs[batch_start: batch_start + batch_size]
            scored = self.score_windows([documents[i].token_ids[s:e] for i, s, e in batch])
            for (index, start, end), window in zip(batch, scored):
                windows[index].append(WindowScores(start, end, *window))
        classifier = SpanClassifier(self.network, self.device)
        return [DocumentScores(texts[index], document, self.techniques, windows[index], classifier, self.framing.offset)
                for index, document in enumerate(documents)]

    @torch.inference_mode()
    def score_windows(self, token_ids_per_window: list[list[int]]) -> list[tuple]:
        """One forward pass over windows of content tokens: for each, (log p(O/B/I) of its content tokens,
        its hidden states with the framing tokens, the technique tagger's p(some technique) or None)."""
        input_ids, attention_mask = batch_windows(token_ids_per_window, self.framing)
        hidden = self.network.encode(input_ids.to(self.device), attention_mask.to(self.device))
        log_probabilities = self.network.tag_log_probabilities(hidden).cpu()
        tagger = self.settings.technique_tagger
        p_any = self.network.p_any_technique(hidden).cpu().numpy() if tagger else None
        offset, framing_tokens = self.framing.offset, self.framing.extra_tokens
        return [(log_probabilities[row, offset: offset + len(ids)], hidden[row, : len(ids) + framing_tokens].float(),
                 p_any[row, offset: offset + len(ids)] if tagger else None)
                for row, ids in enumerate(token_ids_per_window)]


def check_text(text) -> None:
    """A TypeError for what is not a str, a PersuasionError (a ValueError) for a text over the one length limit."""
    if not isinstance(text, str):
        raise TypeError(f"detect expects str, got {type(text).__name__}")
    problem = too_long(len(text))
    if problem:
        raise PersuasionError(f"text of {problem}")
