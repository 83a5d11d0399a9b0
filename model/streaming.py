"""Long documents in memory that does not grow with them: what `Detector.detect` does with a long text.

`Detector.score` keeps every window's hidden states until the spans are classified (about 200 KB a window
for MiniLM: 4.2 GB for a document of 4.9 M characters). Here the text is tokenized a piece at a time and its
windows go through the same window scorer as `score`'s (`scored_windows`), a batch at a time; after each
batch the tokens no later window sees are decoded, up to the last place where the document can be cut
without changing a span (`last_safe_cut`: enough tokens below the threshold that no run joins across it, and
not inside a word). The stretch between two cuts is a document of its own (a `DocumentScores` of its tokens
and of the windows that overlap it, so each span is classified in the window `score` would choose), scored
and decoded as `detect` does a short text; a sentence across a cut takes the highest score of both sides.
Then the stretch's windows and tokens are freed, and the freed heap handed back to the system. What
stays is the text, the spans and sentence scores found so far and one word id per word (Repetition counts
words over the whole text): for MiniLM, about 16 MB more at 5 M characters than at 0.5 M.

The result is `decode(detector.score([text])[0], detector.decoding)`: the same forward passes in the same
order give the same token scores, and spans and techniques are equal (scores to float rounding: spans are
classified in other batches). Only a stretch of MAX_STRETCH_TOKENS with no safe cut (a document scoring above
the threshold throughout) is cut where it stands, which may split a span there.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import cache

from persuasion.model.decoding import (DocumentScores, WindowScores, WordCounts, calibrated_sentences, last_safe_cut,
                                       sentence_peak, technique_spans)
from persuasion.model.scoring import scored_windows
from persuasion.model.windows import TokenizedDocument, iter_sentence_bounds, tokenize_in_pieces
from persuasion.result import DetectionResult, Span

STREAMED_CHARACTERS = 100_000  # detect reads texts longer than this window by window
PIECE_CHARACTERS = 50_000  # tokenized at a time
MAX_STRETCH_TOKENS = 50_000  # windows of at most this many tokens wait for a safe cut (about 100 MB for MiniLM)

Progress = Callable[[int, int], None]  # (characters decoded so far, characters in the text)


def release_freed_memory() -> None:
    """Hand the heap pages freed with a stretch's windows back to the system (glibc's malloc_trim; elsewhere
    nothing). Once glibc raises its mmap threshold, torch's large buffers come from the heap, and without
    this the resident set creeps up by about 35 MB per million characters."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc, or no C library to load this way (Windows)
        return None


class TokenBuffer:
    """A text's tokens, tokenized a piece at a time as windows ask for them, forgotten once decoded."""

    def __init__(self, pieces: Iterator[TokenizedDocument]):
        self.pieces = pieces
        self.first = 0  # document index of ids[0]
        self.ids: list[int] = []
        self.offsets: list[tuple[int, int]] = []
        self.complete = False

    @property
    def end(self) -> int:
        return self.first + len(self.ids)

    def reach(self, count: int) -> None:
        """Tokenize until `count` tokens are known or the text is done."""
        while self.end < count and not self.complete:
            piece = next(self.pieces, None)
            if piece is None:
                self.complete = True
            else:
                self.ids.extend(piece.token_ids)
                self.offsets.extend(piece.offsets)

    def document(self, start: int, end: int) -> TokenizedDocument:
        return TokenizedDocument(self.ids[start - self.first: end - self.first],
                                 self.offsets[start - self.first: end - self.first])

    def ids_between(self, start: int, end: int) -> list[int]:
        return self.ids[start - self.first: end - self.first]

    def character_of(self, token: int) -> int | None:
        """Where token `token` starts in the text; None past the last token."""
        return self.offsets[token - self.first][0] if token < self.end else None

    def forget_before(self, token: int) -> None:
        del self.ids[: token - self.first], self.offsets[: token - self.first]
        self.first = token


def planned_windows(tokens: TokenBuffer, content: int, stride: int) -> Iterator[tuple[int, int]]:
    """plan_windows(number of tokens, content, stride), planned as the tokens arrive."""
    start = 0
    while True:
        tokens.reach(start + content + 1)
        if start + content >= tokens.end:  # the text has ended: the last window is aligned to its end
            if tokens.end:
                yield max(0, tokens.end - content), tokens.end
            return
        yield start, start + content
        start += stride


class SentencePeaks:
    """Each sentence's highest p(token inside a span), over the stretches it crosses."""

    def __init__(self, text: str):
        self.bounds = iter_sentence_bounds(text)
        self.current = next(self.bounds, None)
        self.peak: float | None = None
        self.done: list[tuple[int, int]] = []
        self.peaks: list[float] = []

    def add(self, stretch: DocumentScores, temperature: float, cut_character: int | None) -> None:
        """Read a decoded stretch; sentences ending before cut_character (None: the text's end) are done."""
        p_inside, _ = stretch.span_probabilities(temperature)
        while self.current is not None:
            start, end = self.current
            peak = sentence_peak(stretch, p_inside, start, end)
            if peak is not None:
                self.peak = peak if self.peak is None else max(self.peak, peak)
            if cut_character is not None and end > cut_character:
                return  # it goes on past the cut
            self.done.append(self.current)
            self.peaks.append(0.0 if self.peak is None else self.peak)
            self.current, self.peak = next(self.bounds, None), None


def detect_in_stretches(detector, text: str, batch_size: int = 32, progress: Progress | None = None
                        ) -> DetectionResult:
    decoding, settings = detector.decoding, detector.settings
    tokens = TokenBuffer(tokenize_in_pieces(detector.tokenizer, text, PIECE_CHARACTERS))
    planned = ((None, start, end, tokens.ids_between(start, end)) for start, end in
               planned_windows(tokens, settings.window_tokens - detector.framing.extra_tokens, settings.window_stride))
    words = WordCounts(text)
    held: list[WindowScores] = []  # the windows run that overlap tokens not yet decoded
    spans: list[Span] = []
    sentences = SentencePeaks(text)
    decoded = 0  # tokens before this one are decoded

    def stretch(start: int, end: int) -> DocumentScores:
        overlapping = [replace(window, token_start=window.token_start - start, token_end=window.token_end - start)
                       for window in held if window.token_end > start and window.token_start < end]
        return DocumentScores(text, tokens.document(start, end), detector.techniques, overlapping, words=words)

    def decode_before(final: int, last: bool) -> None:
        """Decode up to the last safe cut before token `final` (to `final` itself when it is the text's end)."""
        nonlocal decoded, held
        probe = stretch(decoded, final)
        cut = final - decoded if last else last_safe_cut(probe, decoding)
        if cut is None and final - decoded > MAX_STRETCH_TOKENS:
            cut = final - decoded
        if not cut:
            return
        part = probe if cut == final - decoded else stretch(decoded, decoded + cut)
        decoded += cut
        cut_character = tokens.character_of(decoded)
        spans.extend(technique_spans(detector.classify_candidates(part, [decoding]), decoding))
        sentences.add(part, decoding.span_temperature, cut_character)
        held = [window for window in held if window.token_end > decoded]
        tokens.forget_before(decoded)
        release_freed_memory()
        if progress is not None and cut_character is not None:
            progress(cut_character, len(text))

    for batch in scored_windows(detector.network, detector.framing, planned, batch_size, detector.device,
                                detector.before_each_pass):
        held.extend(window for _, window in batch)
        decode_before(batch[-1][1].token_start, last=False)  # windows start in order: later ones start after it
    decode_before(tokens.end, last=True)
    sentences.add(stretch(decoded, decoded), decoding.span_temperature, None)  # sentences with no token
    if progress is not None:
        progress(len(text), len(text))
    return DetectionResult(text, spans, calibrated_sentences(sentences.done, sentences.peaks, decoding))
