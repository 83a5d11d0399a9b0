"""The detector: text in, technique spans with exact character offsets and calibrated scores out."""

from __future__ import annotations

import bisect
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from persuasion.errors import PersuasionError
from persuasion.result import DetectionResult, SentenceScore, Span
from persuasion.model.network import BEGIN, INSIDE, OUTSIDE, load_checkpoint
from persuasion.model.windows import (TokenizedDocument, batch_windows, plan_windows, sentence_bounds, sentence_pieces,
                                      token_sentences, tokenize_document)

SHIPPED_DIR = Path(__file__).parent / "shipped"
SENTENCE_BREAK = re.compile(r"[.!?]\s|\n")  # spans are not joined across these
WORD_CHARACTER = re.compile(r"\w")
TECHNIQUE_COLUMN = 3  # after the O/B/I columns of the per-token probabilities


@dataclass
class WindowEncoding:
    token_start: int  # first document token in the window
    token_end: int  # one past the last
    hidden: torch.Tensor  # (window tokens + 2, hidden): [CLS] tokens [SEP]


@dataclass
class DocumentAnalysis:
    text: str
    document: TokenizedDocument
    p_inside: np.ndarray  # p(token is in a technique span), averaged over the windows that see it
    p_begin: np.ndarray  # p(token begins a span)
    windows: list[WindowEncoding]
    p_sentence: np.ndarray | None = None  # per token, p(its sentence holds a technique); None without a sentence head
    p_technique: np.ndarray | None = None  # per token, p(some technique's span covers it); None without a tagger

    def token_scores(self, sentence_gate: float, technique_mix: float = 0.0) -> np.ndarray:
        """p(inside), mixed with the technique tagger's p(token in any technique's span) by `technique_mix`,
        times p(sentence holds a technique) ** gate where the network scores sentences."""
        scores = self.p_inside
        if technique_mix and self.p_technique is not None:
            scores = (1.0 - technique_mix) * scores + technique_mix * self.p_technique
        if sentence_gate and self.p_sentence is not None:
            scores = scores * self.p_sentence ** sentence_gate
        return scores


class Detector:
    """Finds persuasion techniques: `Detector.load().detect(text)`."""

    def __init__(self, network, tokenizer, settings, device: str = "cpu"):
        self.network = network.to(device).eval()
        self.tokenizer = tokenizer
        self.settings = settings
        self.device = device
        self.techniques = list(settings.techniques)

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | None = None, quantize: bool = False) -> "Detector":
        """Load a checkpoint directory; with no path, the model shipped inside the package.

        quantize=True turns the network's linear layers into dynamic int8 ones: faster on CPU, CPU only.
        """
        directory = Path(path) if path is not None else SHIPPED_DIR
        device = device or ("cuda" if torch.cuda.is_available() and not quantize else "cpu")
        if quantize and device != "cpu":
            raise PersuasionError(f"int8 quantisation runs on the CPU only; load with device='cpu', not {device!r}")
        network, tokenizer, settings = load_checkpoint(directory, device)
        if quantize:
            with warnings.catch_warnings():  # torch marks eager quantisation deprecated; it still works
                warnings.simplefilter("ignore")
                network = torch.ao.quantization.quantize_dynamic(network, {torch.nn.Linear}, dtype=torch.qint8)
        return cls(network, tokenizer, settings, device)

    # Public calls

    def detect(self, text: str) -> DetectionResult:
        return next(self.detect_many([text]))

    def detect_many(self, texts: Iterable[str], batch_size: int = 32) -> Iterator[DetectionResult]:
        """Results in input order; windows of several documents share forward passes."""
        pending: list[str] = []
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"detect expects str, got {type(text).__name__}")
            pending.append(text)
            if len(pending) >= max(1, batch_size // 4):
                yield from self._detect_group(pending, batch_size)
                pending = []
        if pending:
            yield from self._detect_group(pending, batch_size)

    def classify(self, text: str, start: int, end: int) -> list[tuple[str, float]]:
        """Techniques ranked by calibrated probability for the span text[start:end] (the TC task)."""
        return self.classify_spans(text, [(start, end)])[0]

    def classify_spans(self, text: str, spans: list[tuple[int, int]]) -> list[list[tuple[str, float]]]:
        for start, end in spans:
            if not 0 <= start < end <= len(text):
                raise ValueError(f"span {start}-{end} is not inside the text ({len(text)} characters)")
        if not spans:
            return []
        analysis = self._analyse([text])[0]
        probabilities = self._technique_probabilities(analysis, spans)
        return [self._ranked(row) for row in probabilities]

    # Internals

    def _detect_group(self, texts: list[str], batch_size: int) -> Iterator[DetectionResult]:
        for analysis in self._analyse(texts, batch_size):
            yield self._result(analysis)

    @torch.inference_mode()
    def _analyse(self, texts: list[str], batch_size: int = 32) -> list[DocumentAnalysis]:
        content = self.settings.window_tokens - 2
        documents = [tokenize_document(self.tokenizer, text) for text in texts]
        jobs = []  # (document index, token start, token end)
        for index, document in enumerate(documents):
            for start, end in plan_windows(len(document.token_ids), content, self.settings.window_stride):
                jobs.append((index, start, end))
        tagger = self.settings.technique_tagger
        # Columns: p(O), p(B), p(I) and, with a technique tagger, p(token in any technique's span).
        sums = [np.zeros((len(d.token_ids), 4 if tagger else 3), dtype=np.float64) for d in documents]
        counts = [np.zeros(len(d.token_ids), dtype=np.float64) for d in documents]
        windows: list[list[WindowEncoding]] = [[] for _ in documents]
        sentences = _SentenceScores(texts, documents) if self.settings.sentence_head else None
        for batch_start in range(0, len(jobs), batch_size):
            batch = jobs[batch_start: batch_start + batch_size]
            input_ids, attention_mask = batch_windows(
                [documents[i].token_ids[s:e] for i, s, e in batch], self.tokenizer)
            attention_mask = attention_mask.to(self.device)
            hidden = self.network.encode(input_ids.to(self.device), attention_mask)
            log_probabilities = self.network.tag_log_probabilities(hidden, attention_mask, crf=self.settings.span_crf)
            # The temperature sharpens or flattens p(tag) itself, so it means the same for a softmax or a CRF tagger.
            probabilities = (log_probabilities / self.settings.span_temperature).softmax(-1)
            if tagger:
                # Noisy-or over the techniques: the token is outside a span only if no technique covers it.
                p_none = (1.0 - self.network.token_technique_logits(hidden).float().sigmoid()).prod(-1)
                probabilities = torch.cat([probabilities, (1.0 - p_none)[..., None]], dim=-1)
            probabilities = probabilities.cpu().numpy()
            for row, (index, start, end) in enumerate(batch):
                sums[index][start:end] += probabilities[row, 1: 1 + end - start]
                counts[index][start:end] += 1
                windows[index].append(WindowEncoding(start, end, hidden[row, : end - start + 2].float()))
            if sentences is not None:
                sentences.add(self.network, hidden, batch)
        analyses = []
        for index, document in enumerate(documents):
            mean = sums[index] / np.maximum(counts[index], 1)[:, None]
            analyses.append(DocumentAnalysis(texts[index], document, mean[:, BEGIN] + mean[:, INSIDE],
                                             mean[:, BEGIN], windows[index],
                                             sentences.per_token(index) if sentences is not None else None,
                                             mean[:, TECHNIQUE_COLUMN] if tagger else None))
        return analyses

    def _decode_spans(self, analysis: DocumentAnalysis) -> list[tuple[int, int, float]]:
        """(start, end, score) of the spans that reach the span threshold somewhere.

        A span grows over its neighbours down to the threshold less the extension margin (hysteresis,
        tuned on validation): the tagger is surest in the middle of an annotated fragment and its
        runs at one threshold mostly end inside the fragment.
        """
        seed = self.settings.span_threshold
        candidates = self._candidate_spans(analysis, seed - self.settings.span_extension_margin)
        return [(start, end, score) for start, end, score, peak in candidates if peak >= seed]

    def _candidate_spans(self, analysis: DocumentAnalysis, threshold: float) -> list[tuple[int, int, float, float]]:
        """(start, end, mean score, peak score) of runs of tokens scoring at least `threshold`.

        Runs are split where a token looks like a new beginning. Runs a few tokens apart on the same
        line join (gap tuned on validation): the tagger often dips below the threshold inside one
        annotated fragment.
        """
        gap = self.settings.span_gap_tokens
        scores = analysis.token_scores(self.settings.sentence_gate, self.settings.technique_tag_mix)
        offsets, text = analysis.document.offsets, analysis.text
        # A token continues the run before it unless p(begin) dominates its p(inside).
        continues = (analysis.p_begin <= analysis.p_inside - analysis.p_begin).tolist()
        token_runs: list[list[int]] = []  # [first, last] token of each run
        for token in np.flatnonzero(scores >= threshold).tolist():  # tuning decodes often: loop only where it counts
            if token_runs:
                last = token_runs[-1][1]
                adjacent = last == token - 1
                bridgeable = (not adjacent and token - last - 1 <= gap
                              and not SENTENCE_BREAK.search(text[offsets[last][1]: offsets[token][0]]))
                if (adjacent or bridgeable) and continues[token]:
                    token_runs[-1][1] = token
                    continue
            token_runs.append([token, token])
        spans = []
        for first, last in token_runs:
            start, end = self._snap_to_words(text, offsets[first][0], offsets[last][1])
            run_scores = scores[first: last + 1]
            score, peak = float(run_scores.mean()), float(run_scores.max())
            if score >= self.settings.span_min_score:
                if spans and start < spans[-1][1]:  # snapping made two runs touch: keep them as one
                    previous = spans.pop()
                    start, score, peak = previous[0], max(score, previous[2]), max(peak, previous[3])
                spans.append((start, end, score, peak))
        return spans

    @staticmethod
    def _snap_to_words(text: str, start: int, end: int) -> tuple[int, int]:
        """Grow a span to whole words: the tagger works on word pieces, annotators on words."""
        while start > 0 and WORD_CHARACTER.match(text[start - 1]) and WORD_CHARACTER.match(text[start]):
            start -= 1
        while end < len(text) and WORD_CHARACTER.match(text[end]) and WORD_CHARACTER.match(text[end - 1]):
            end += 1
        return start, end

    def _technique_probabilities(self, analysis: DocumentAnalysis, spans: list[tuple[int, int]],
                                 chunk: int = 256) -> np.ndarray:
        """p(technique) for each (start, end), read from the window that sees the span best."""
        probabilities = np.full((len(spans), len(self.techniques)), 1.0 / len(self.techniques))
        windows = analysis.windows
        window_ends = [window.token_end for window in windows]  # increasing, as windows are planned in order
        chosen: dict[int, int] = {}  # window index in the analysis -> row in the stacked hidden states
        known, span_rows, bounds = [], [], []
        for index, (start, end) in enumerate(spans):
            tokens = analysis.document.tokens_overlapping(start, end)
            if tokens is None or not windows:  # a span of only whitespace or unknown characters
                continue
            # Only windows that overlap the span compete; they are contiguous in planning order.
            first_candidate = bisect.bisect_right(window_ends, tokens[0])
            candidates = range(first_candidate, len(windows))
            best = first_candidate
            for candidate in candidates:
                if windows[candidate].token_start > tokens[1]:
                    break
                if _centrality(windows[candidate], tokens) > _centrality(windows[best], tokens):
                    best = candidate
            window = windows[best]
            known.append(index)
            span_rows.append(chosen.setdefault(best, len(chosen)))
            bounds.append((max(tokens[0], window.token_start) - window.token_start + 1,
                           min(tokens[1], window.token_end - 1) - window.token_start + 1))
        if not known:
            return probabilities
        stacked_windows = [windows[i].hidden for i in chosen]  # dicts keep insertion order = row order
        width = max(hidden.shape[0] for hidden in stacked_windows)
        hidden = torch.zeros((len(stacked_windows), width, stacked_windows[0].shape[1]), device=self.device)
        for row, window_hidden in enumerate(stacked_windows):
            hidden[row, : window_hidden.shape[0]] = window_hidden
        span_rows_tensor = torch.tensor(span_rows, dtype=torch.long, device=self.device)
        bounds_tensor = torch.tensor(bounds, dtype=torch.long, device=self.device)
        for first in range(0, len(known), chunk):  # chunks bound the per-span copies of window states
            with torch.inference_mode():
                logits = self.network.technique_logits(hidden, span_rows_tensor[first: first + chunk],
                                                       bounds_tensor[first: first + chunk])
            rows = (logits.float() / self.settings.technique_temperature).softmax(-1).cpu().numpy()
            probabilities[known[first: first + chunk]] = rows
        return self._boost_repetition(analysis.text, spans, probabilities)

    def _boost_repetition(self, text: str, spans: list[tuple[int, int]], probabilities: np.ndarray) -> np.ndarray:
        """Raise p(Repetition) for spans whose words occur again in the document.

        A window shows the model only ~100 tokens, so it cannot see the other occurrence itself.
        """
        boost = self.settings.repetition_boost
        if boost == 1.0 or "Repetition" not in self.techniques:
            return probabilities
        column = self.techniques.index("Repetition")
        document = _normalise(text)
        for row, (start, end) in enumerate(spans):
            if _recurs(text[start:end], document):
                probabilities[row, column] *= boost
                probabilities[row] /= probabilities[row].sum()
        return probabilities

    def _ranked(self, probabilities: np.ndarray) -> list[tuple[str, float]]:
        order = np.argsort(-probabilities, kind="stable")
        return [(self.techniques[i], float(probabilities[i])) for i in order]

    def _result(self, analysis: DocumentAnalysis) -> DetectionResult:
        detected = self._decode_spans(analysis)
        spans: list[Span] = []
        if detected:
            probabilities = self._technique_probabilities(analysis, [(s, e) for s, e, _ in detected])
            for (start, end, span_score), row in zip(detected, probabilities):
                for technique, probability in self._techniques_for_span(row):
                    spans.append(Span(start, end, analysis.text[start:end], technique, span_score * probability))
        spans = self._apply_repetition_rule(analysis.text, spans)
        return DetectionResult(analysis.text, spans, self._sentence_scores(analysis))

    def _techniques_for_span(self, probabilities: np.ndarray) -> list[tuple[str, float]]:
        """The best technique always; others only above their tuned threshold (spans can carry two)."""
        ranked = self._ranked(probabilities)
        thresholds = self.settings.technique_thresholds
        return [ranked[0]] + [(t, p) for t, p in ranked[1:] if t in thresholds and p >= thresholds[t]]

    def _apply_repetition_rule(self, text: str, spans: list[Span]) -> list[Span]:
        if not self.settings.repetition_rule:
            return spans
        document = _normalise(text)
        relabelled = []
        for span in spans:
            if span.technique != "Repetition" and _recurs(span.text, document):
                span = Span(span.start, span.end, span.text, "Repetition", span.score)
            relabelled.append(span)
        return relabelled

    def _sentence_scores(self, analysis: DocumentAnalysis) -> list[SentenceScore]:
        sentences = []
        document = analysis.document
        for start, end in sentence_bounds(analysis.text):
            tokens = document.tokens_overlapping(start, end)
            score = float(analysis.p_inside[tokens[0]: tokens[1] + 1].max()) if tokens else 0.0
            sentences.append(SentenceScore(start, end, min(score, 1.0)))
        return sentences


class _SentenceScores:
    """p(sentence holds a technique) per sentence, the mean over the windows that see it, by tokens seen."""

    def __init__(self, texts: list[str], documents: list[TokenizedDocument]):
        self.token_sentences = [np.array(token_sentences(document, sentence_bounds(text)), dtype=np.int64)
                                for text, document in zip(texts, documents)]
        sizes = [int(ids.max()) + 1 if len(ids) else 0 for ids in self.token_sentences]
        self.sums = [np.zeros(size) for size in sizes]
        self.weights = [np.zeros(size) for size in sizes]

    def add(self, network, hidden: torch.Tensor, batch: list[tuple[int, int, int]]) -> None:
        """Score the sentence pieces of one batch of windows, (document, token start, token end) each."""
        piece_windows, piece_bounds, owners = [], [], []
        for row, (index, start, end) in enumerate(batch):
            for sentence, first, last in sentence_pieces(self.token_sentences[index][start:end].tolist()):
                piece_windows.append(row)
                piece_bounds.append((first + 1, last + 1))  # +1: [CLS] comes first
                owners.append((index, sentence, last - first + 1))
        if not owners:
            return
        logits = network.sentence_logits(hidden, torch.tensor(piece_windows, device=hidden.device),
                                         torch.tensor(piece_bounds, device=hidden.device))
        for (index, sentence, size), probability in zip(owners, logits.float().sigmoid().cpu().numpy()):
            self.sums[index][sentence] += probability * size
            self.weights[index][sentence] += size

    def per_token(self, index: int) -> np.ndarray:
        ids = self.token_sentences[index]
        per_sentence = self.sums[index] / np.maximum(self.weights[index], 1e-9)
        return np.where(ids >= 0, per_sentence[np.maximum(ids, 0)] if len(per_sentence) else 1.0, 1.0)


def _centrality(window: WindowEncoding, tokens: tuple[int, int]) -> tuple[int, int]:
    """Prefer the window that holds the whole span with the most context on its nearer side."""
    covered = min(tokens[1] + 1, window.token_end) - max(tokens[0], window.token_start)
    margin = min(tokens[0] - window.token_start, window.token_end - 1 - tokens[1])
    return covered, margin


def _normalise(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _recurs(fragment: str, normalised_document: str) -> bool:
    """Whether the fragment's words occur at least twice in the document (case and punctuation aside)."""
    phrase = _normalise(fragment)
    return len(phrase) >= 3 and normalised_document.count(phrase) >= 2
