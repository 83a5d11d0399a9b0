"""The last inference stage: a document's scores and a `Decoding` in, technique spans out.

The network's stages (model/scoring.py) return arrays: each window's span tagger outputs, and the technique
head's logits of the spans classified so far. Everything here is numpy on those arrays, so tuning can try
thousands of decodings on one scoring (`dataclasses.replace(decoding, ...)`); a span decoding finds must
have been classified (`Detector.classify_candidates`).
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property

import numpy as np

from persuasion.errors import reject_unknown_keys
from persuasion.model.windows import SENTENCE_END, TokenizedDocument, sentence_bounds
from persuasion.result import DetectionResult, SentenceScore, Span

OUTSIDE, BEGIN, INSIDE = range(3)  # the span tagger's columns
WORD_CHARACTER = re.compile(r"\w")
# Characters that join two runs of word characters into one word: "pro-terror", "don't", "Trump’s".
WORD_JOINERS = frozenset("-'’")
WORD_PATTERN = re.compile(r"\w+(?:[-'’]\w+)*")  # a whole word, joined parts included
# Words a span does not end on when `trim_function_words` is set: annotators end a fragment on its content,
# and a span ending "... and" or "... of the" is cut where no annotator would. (Openings are kept: a quarter of
# the training spans open on "the", "a", "to", "if", ...)
DANGLING_WORDS = frozenset(
    "a an and as at because but by for from if in into nor of on or than that the to whose which while who whom "
    "with".split())


@dataclass(frozen=True)
class Decoding:
    """Every choice between the network's probabilities and the spans a user sees; fitted on validation."""

    span_threshold: float = 0.5  # token score a span must reach somewhere
    span_extension_margin: float = 0.0  # a span grows over tokens down to span_threshold less this
    span_min_score: float = 0.0  # a span's mean token score must reach this (tuning's; min_score is the user's)
    span_gap_tokens: int = 0  # runs this few tokens apart on one line join into one span
    span_temperature: float = 1.0  # flattens or sharpens the span tagger's p(O/B/I)
    technique_temperature: float = 1.0  # flattens or sharpens p(technique | span)
    technique_tag_mix: float = 0.0  # token score = (1 - mix) p(inside) + mix p(token in any technique's span)
    technique_thresholds: Mapping[str, float] = field(default_factory=dict)  # second labels for a span above these
    # p(technique) = (1 - mix) head's + mix context classifier's (model/context.py), where the checkpoint has one
    context_mix: float = 0.0
    context_temperature: float = 1.0  # flattens or sharpens the context classifier's p(technique | span)
    # The context classifier's share for the spans `detect` finds (context_mix is for spans a caller gives): it
    # learnt from spans as annotators mark them, and a detected span's edges often sit words away from those.
    detection_context_mix: float = 0.0
    # Then p(technique) = (1 - mix) x that + mix x the technique tagger's p(technique) averaged over the span's
    # tokens (normalised over the techniques), where the network kept its tagger: a third reader of the span.
    tagger_technique_mix: float = 0.0
    tagger_technique_temperature: float = 1.0  # flattens or sharpens that average: its power 1 / T, normalised
    # p(Repetition) multiplier by how often a fragment's words occur in the document: entry k - 1 for k times, the
    # last entry for that many or more. A fragment that occurs once repeats nothing, so entry 0 is 0.
    repetition_weights: tuple[float, ...] = (0.0, 1.0)
    repetition_rule: bool = False  # relabel spans whose words recur in the document as Repetition
    join_across_sentences: bool = True  # a run of tokens continues over a sentence end (False: it is cut there)
    trim_function_words: bool = False  # a span does not end on a dangling function word (DANGLING_WORDS)
    # Where the network kept its technique tagger: a run of tokens whose p(technique t covers the token) reaches
    # this is a span of technique t too, unless a detected span of t overlaps it (None: no such spans). The gold
    # has overlapping spans of different techniques; the span tagger finds one span per stretch of text.
    tagger_span_threshold: float | None = None
    # (raw score, calibrated score) knots, increasing, read with np.interp: a span's raw score (p(span) x
    # p(technique)) becomes P(a span flagged at that score overlaps a gold span of its technique), a sentence's
    # (its highest p(token inside a span)) P(the sentence overlaps a gold span); both fitted on validation
    # (train/calibration.py). Empty: the raw score.
    span_calibration: tuple[tuple[float, float], ...] = ()
    sentence_calibration: tuple[tuple[float, float], ...] = ()
    # Spans whose calibrated score is below this are left out. 0 by default: every span decoding finds, so the
    # benchmark scores what `detect` returns; raise it to see fewer spans, each more often right.
    min_score: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "repetition_weights", tuple(float(weight) for weight in self.repetition_weights))
        for name in ("span_calibration", "sentence_calibration"):  # JSON gives lists; equality needs tuples
            knots = tuple((float(raw), float(calibrated)) for raw, calibrated in getattr(self, name))
            object.__setattr__(self, name, knots)

    @classmethod
    def from_dict(cls, values: Mapping, source: str = "decoding") -> "Decoding":
        if "context_mix" in values and "detection_context_mix" not in values:  # tuned when one share served both
            values = {**values, "detection_context_mix": values["context_mix"]}
        if "repetition_boost" in values:  # a checkpoint tuned before repetition_weights: one boost for 2 or more times
            values = {key: value for key, value in values.items() if key != "repetition_boost"} | {
                "repetition_weights": (0.0, values["repetition_boost"])}
        reject_unknown_keys(cls, values, source, "decoding key")
        return cls(**values)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["technique_thresholds"] = dict(self.technique_thresholds)
        for name in ("span_calibration", "sentence_calibration"):
            values[name] = [list(knot) for knot in values[name]]
        return values


def calibrate(knots: Sequence[tuple[float, float]], raw: Sequence[float]) -> list[float]:
    """Raw scores through a monotone map given by its knots (np.interp; flat beyond the end knots): it never
    reorders scores. No knots: the raw scores."""
    if not knots:
        return [float(score) for score in raw]
    xs, ys = zip(*knots)
    return np.interp(np.asarray(raw, dtype=np.float64), xs, ys).tolist()


@dataclass
class WindowScores:
    """What the network returned for one window: its token range, its span tagger's outputs, and the encoder's
    states, which only the network's span stage reads (model/scoring.py)."""

    token_start: int  # first document token in the window
    token_end: int  # one past the last
    tag_log_probabilities: np.ndarray  # (tokens, 3) float32: log p(O/B/I) of its content tokens
    states: np.ndarray  # (framing + tokens, hidden) float32: the encoder's states, framing tokens included
    # (tokens, techniques): the technique tagger's p(a span of the technique covers the token); None without one
    p_techniques: np.ndarray | None = None


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / temperature) over the last axis, in the logits' precision."""
    scaled = logits / np.asarray(temperature, dtype=logits.dtype)
    exponentials = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


class WordCounts:
    """How often a run of words occurs in one document, whole words, case and punctuation aside.

    Built once per document (a word id per word); a count looks only at the occurrences of the fragment's
    rarest word, so counting every span of a long document costs about as much as reading it once.
    """

    def __init__(self, text: str):
        self.vocabulary: dict[str, int] = {}
        ids = array("i", (self.vocabulary.setdefault(word, len(self.vocabulary)) for word in _words(text)))
        self.ids = np.frombuffer(ids, dtype=np.int32) if ids else np.zeros(0, dtype=np.int32)
        self.positions = np.argsort(self.ids, kind="stable")  # each word's positions, in order, word by word
        self.first = np.concatenate([[0], np.cumsum(np.bincount(self.ids, minlength=len(self.vocabulary)))])

    def occurrences(self, fragment: str) -> int:
        """Positions where the fragment's words occur in a row (overlapping ones count)."""
        phrase = [self.vocabulary.get(word) for word in _words(fragment)]
        if not phrase or None in phrase:
            return 0
        frequencies = [self.first[word + 1] - self.first[word] for word in phrase]
        anchor = int(np.argmin(frequencies))
        word = phrase[anchor]
        starts = self.positions[self.first[word]: self.first[word + 1]] - anchor
        starts = starts[(starts >= 0) & (starts <= len(self.ids) - len(phrase))]
        matches = np.ones(len(starts), dtype=bool)
        for offset, word in enumerate(phrase):
            if offset != anchor:
                matches &= self.ids[starts + offset] == word
        return int(matches.sum())

    def repeats(self, fragment: str) -> int:
        """How many times the fragment occurs, as Repetition counts it: at least once (a fragment without words
        too), and a run of fewer than three letters once however often it occurs ("it", "a")."""
        return max(self.occurrences(fragment), 1) if len(" ".join(_words(fragment))) >= 3 else 1

    def recurs(self, fragment: str) -> bool:
        """Whether the fragment's words occur at least twice in the document (`repeats`)."""
        return self.repeats(fragment) >= 2


@dataclass
class DocumentScores:
    """The network's output for one document: its windows' span tagger outputs and states, and the technique
    head's logits of the spans classified so far. Decoding reads it and never changes it.

    It may also stand for a stretch of a long document (model/streaming.py): then `document` holds that
    stretch's tokens, window token indices count from its first token (a window may start before it or end
    after it) and `words` counts words over the whole text.
    """

    text: str
    document: TokenizedDocument
    techniques: list[str]
    windows: list[WindowScores]
    # (start, end) -> the technique head's logits for that span (None: it has no token to classify); filled by
    # the network's span stage (Detector.classify_candidates), a cache: a span is classified once
    span_logits: dict[tuple[int, int], np.ndarray | None] = field(default_factory=dict, repr=False)
    # (start, end) -> the context classifier's logits, for a checkpoint that has one; filled alike, a cache too
    context_logits: dict[tuple[int, int], np.ndarray | None] = field(default_factory=dict, repr=False)
    words: WordCounts | None = None  # of the whole text; made on first use
    _probabilities: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # temperature -> (p_inside, p_begin)

    def _window_means(self, rows, width: int | None = None) -> np.ndarray:
        """Per token, the mean over the windows that see it of rows(window), which has a row per window token
        (of `width` columns, or one value)."""
        size = len(self.document.token_ids)
        sums = np.zeros((size, width) if width else size, dtype=np.float64)
        counts = np.zeros(size, dtype=np.float64)
        for window in self.windows:
            first, last = max(window.token_start, 0), min(window.token_end, size)  # a stretch's windows overhang it
            if first < last:
                sums[first:last] += rows(window)[first - window.token_start: last - window.token_start]
                counts[first:last] += 1
        return sums / (np.maximum(counts, 1)[:, None] if width else np.maximum(counts, 1))

    def span_probabilities(self, temperature: float) -> tuple[np.ndarray, np.ndarray]:
        """(p(token inside a span), p(token begins one)), averaged over the windows that see each token."""
        if temperature not in self._probabilities:
            mean = self._window_means(lambda window: softmax(window.tag_log_probabilities, temperature), width=3)
            self._probabilities[temperature] = (mean[:, BEGIN] + mean[:, INSIDE], mean[:, BEGIN])
        return self._probabilities[temperature]

    @cached_property
    def p_technique(self) -> np.ndarray | None:
        """Per token, the technique tagger's p(some technique's span covers it), the noisy-or over the
        techniques (outside a span only if no technique covers it); None without a tagger."""
        if not self.windows or self.windows[0].p_techniques is None:
            return None
        return self._window_means(lambda window: 1.0 - (1.0 - window.p_techniques).prod(axis=-1))

    @cached_property
    def p_each_technique(self) -> np.ndarray | None:
        """(tokens, techniques): the technique tagger's p(a span of each technique covers the token); None
        without a tagger."""
        if not self.windows or self.windows[0].p_techniques is None:
            return None
        return self._window_means(lambda window: window.p_techniques, width=len(self.techniques))

    @cached_property
    def word_counts(self) -> WordCounts:
        return self.words if self.words is not None else WordCounts(self.text)

    def token_scores(self, decoding: Decoding) -> np.ndarray:
        """p(inside), mixed with the technique tagger's p(token in any technique's span) by the decoding's mix."""
        scores, _ = self.span_probabilities(decoding.span_temperature)
        if decoding.technique_tag_mix and self.p_technique is not None:
            scores = (1.0 - decoding.technique_tag_mix) * scores + decoding.technique_tag_mix * self.p_technique
        return scores


def decode(scores: DocumentScores, decoding: Decoding) -> DetectionResult:
    """Spans with their techniques, and sentence scores, for one scored document."""
    return DetectionResult(scores.text, technique_spans(scores, decoding), sentence_scores(scores, decoding))


def technique_spans(scores: DocumentScores, decoding: Decoding) -> list[Span]:
    """The detected spans, each with its technique (or two) and calibrated score, those below min_score left out."""
    detected = decode_spans(scores, decoding)
    spans: list[Span] = []
    if detected:
        probabilities = technique_probabilities(scores, [(start, end) for start, end, _ in detected],
                                                replace(decoding, context_mix=decoding.detection_context_mix))
        for (start, end, span_score), row in zip(detected, probabilities):
            for technique, probability in techniques_for_span(scores.techniques, row, decoding):
                spans.append(Span(start, end, scores.text[start:end], technique, span_score * probability))
    if decoding.repetition_rule:
        spans = relabel_repetitions(scores.word_counts, spans)
    spans += [Span(start, end, scores.text[start:end], technique, score)
              for start, end, technique, score in tagger_spans(scores, decoding, spans)]
    spans.sort(key=lambda span: (span.start, span.end, -span.score))  # in text order, techniques best first
    calibrated = calibrate(decoding.span_calibration, [span.score for span in spans])
    return [replace(span, score=score) for span, score in zip(spans, calibrated) if score >= decoding.min_score]


def decode_spans(scores: DocumentScores, decoding: Decoding) -> list[tuple[int, int, float]]:
    """(start, end, score) of the spans that reach the span threshold somewhere.

    A span grows over its neighbours down to the threshold less the extension margin (hysteresis,
    tuned on validation): the tagger is surest in the middle of an annotated fragment and its
    runs at one threshold mostly end inside the fragment.
    """
    candidates = span_candidates(scores, decoding)
    return [(start, end, score) for start, end, score, peak in candidates if peak >= decoding.span_threshold]


def span_candidates(scores: DocumentScores, decoding: Decoding) -> list[tuple[int, int, float, float]]:
    """(start, end, mean score, peak score) of runs of tokens scoring at least the extension threshold
    (span_threshold - span_extension_margin).

    Runs are split where a token looks like a new beginning. Runs a few tokens apart in the same
    sentence join (gap tuned on validation): the tagger often dips below the threshold inside one
    annotated fragment.
    """
    threshold = decoding.span_threshold - decoding.span_extension_margin
    gap = decoding.span_gap_tokens
    token_scores = scores.token_scores(decoding)
    p_inside, p_begin = scores.span_probabilities(decoding.span_temperature)
    offsets, text = scores.document.offsets, scores.text
    # A token continues the run before it unless p(begin) dominates its p(inside).
    continues = (p_begin <= p_inside - p_begin).tolist()
    token_runs: list[list[int]] = []  # [first, last] token of each run
    for token in np.flatnonzero(token_scores >= threshold).tolist():  # tuning decodes often: loop only where it counts
        if token_runs:
            last = token_runs[-1][1]
            adjacent = last == token - 1
            sentence_ends = sentence_end_between(text, offsets[last][1], offsets[token][0])
            joinable = adjacent and (decoding.join_across_sentences or not sentence_ends)
            bridgeable = not adjacent and token - last - 1 <= gap and not sentence_ends
            if (joinable or bridgeable) and continues[token]:
                token_runs[-1][1] = token
                continue
        token_runs.append([token, token])
    spans = []
    for first, last in token_runs:
        edges = run_edges(text, offsets, first, last, decoding)
        if edges is None:
            continue
        start, end = edges
        run_scores = token_scores[first: last + 1]
        score, peak = float(run_scores.mean()), float(run_scores.max())
        if score >= decoding.span_min_score:
            if spans and start < spans[-1][1]:  # snapping made two runs touch: keep them as one
                previous = spans.pop()
                start, score, peak = previous[0], max(score, previous[2]), max(peak, previous[3])
            spans.append((start, end, score, peak))
    return spans


def run_edges(text: str, offsets: Sequence[tuple[int, int]], first: int, last: int, decoding: Decoding
              ) -> tuple[int, int] | None:
    """The characters a run of tokens (first to last, inclusive) covers as a span: whole words, without a dangling
    function word at its end if the decoding trims; None for a run without a word character ("!" or "..." alone
    is no fragment of an argument)."""
    start, end = snap_to_words(text, offsets[first][0], offsets[last][1])
    if decoding.trim_function_words:
        end = without_dangling_words(text, start, end)
    return (start, end) if WORD_CHARACTER.search(text, start, end) else None


def tagger_spans(scores: DocumentScores, decoding: Decoding, detected: Sequence[Span] = ()
                 ) -> list[tuple[int, int, str, float]]:
    """(start, end, technique, mean p(technique)) of each run of tokens whose technique tagger p(technique)
    reaches `tagger_span_threshold`, shaped as detected spans are (whole words, cut at sentence ends unless
    the decoding joins across them, dangling words trimmed if it trims), those a detected span of the same
    technique overlaps left out. A Repetition run whose words occur once is no Repetition (see
    `weigh_repetition`)."""
    if decoding.tagger_span_threshold is None or scores.p_each_technique is None:
        return []
    p_each = scores.p_each_technique
    offsets, text = scores.document.offsets, scores.text
    found = []
    for column, technique in enumerate(scores.techniques):
        token_runs: list[list[int]] = []
        for token in np.flatnonzero(p_each[:, column] >= decoding.tagger_span_threshold).tolist():
            if token_runs and token_runs[-1][1] == token - 1 and (
                    decoding.join_across_sentences or not sentence_end_between(text, offsets[token - 1][1],
                                                                                offsets[token][0])):
                token_runs[-1][1] = token
            else:
                token_runs.append([token, token])
        shaped: list[tuple[int, int, list[float]]] = []
        for first, last in token_runs:
            edges = run_edges(text, offsets, first, last, decoding)
            if edges is None:
                continue
            start, end = edges
            run_scores = p_each[first: last + 1, column].tolist()
            if shaped and start < shaped[-1][1]:  # snapping made two runs touch: keep them as one
                previous_start, _, previous_scores = shaped.pop()
                start, run_scores = previous_start, previous_scores + run_scores
            shaped.append((start, end, run_scores))
        for start, end, run_scores in shaped:
            if any(span.technique == technique and span.start < end and start < span.end for span in detected):
                continue
            if technique == "Repetition" and repetition_weight(scores.word_counts, text[start:end],
                                                               decoding.repetition_weights) == 0.0:
                continue
            found.append((start, end, technique, float(np.mean(run_scores))))
    return sorted(found)


def last_safe_cut(scores: DocumentScores, decoding: Decoding) -> int | None:
    """The last token c (0 < c < tokens) where the document can be cut in two and each part decoded alone to
    the spans of the whole, or None: span_gap_tokens + 1 tokens before c score below the extension threshold
    (no run joins across c) and token c starts where two word characters do not meet (snapping spans to
    whole words cannot make two spans meet across c). Where the decoding finds technique tagger spans, those
    tokens score below its threshold for every technique too."""
    below = scores.token_scores(decoding) < decoding.span_threshold - decoding.span_extension_margin
    if decoding.tagger_span_threshold is not None and scores.p_each_technique is not None:
        below &= scores.p_each_technique.max(axis=1) < decoding.tagger_span_threshold
    positions = np.arange(len(below))
    below_run = positions - np.maximum.accumulate(np.where(below, -1, positions))  # below-threshold tokens ending here
    offsets, text = scores.document.offsets, scores.text
    for cut in (np.flatnonzero(below_run[:-1] > decoding.span_gap_tokens) + 1)[::-1].tolist():
        if not cuts_word(text, offsets[cut][0]):
            return cut
    return None


def cuts_word(text: str, position: int) -> bool:
    """Whether a span edge at `position` falls inside a word: between two word characters, or beside a
    joiner between two ("pro|-terror", "pro-|terror")."""
    if not 0 < position < len(text):
        return False
    before, after = text[position - 1], text[position]
    if WORD_CHARACTER.match(before) and WORD_CHARACTER.match(after):
        return True
    if after in WORD_JOINERS:
        return bool(WORD_CHARACTER.match(before)) and position + 1 < len(text) and bool(WORD_CHARACTER.match(text[position + 1]))
    if before in WORD_JOINERS:
        return bool(WORD_CHARACTER.match(after)) and position >= 2 and bool(WORD_CHARACTER.match(text[position - 2]))
    return False


def snap_to_words(text: str, start: int, end: int) -> tuple[int, int]:
    """Grow a span to whole words: the tagger works on word pieces, annotators on words."""
    while cuts_word(text, start):
        start -= 1
    while cuts_word(text, end):
        end += 1
    return start, end


def sentence_end_between(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] holds a sentence end (a line break, or a space after . ! ? just before it)."""
    return SENTENCE_END.search(text, start, end) is not None


def without_dangling_words(text: str, start: int, end: int) -> int:
    """The span's end with dangling function words at its end left out ("corrupt and" -> "corrupt"); a span
    of function words alone keeps its first."""
    words = [(match.start(), match.end()) for match in WORD_PATTERN.finditer(text, start, end)]
    while len(words) > 1 and text[words[-1][0]: words[-1][1]].lower() in DANGLING_WORDS:
        words.pop()
        end = words[-1][1]
    return end


def technique_probabilities(scores: DocumentScores, spans: list[tuple[int, int]], decoding: Decoding) -> np.ndarray:
    """p(technique) for each (start, end): the technique head's, mixed with the context classifier's and the
    technique tagger's where the decoding says so, weighed by whether the span's words recur."""
    probabilities, classified = head_probabilities(scores, spans, decoding.technique_temperature)
    if decoding.context_mix:
        probabilities = mix_context(scores, spans, probabilities, decoding.context_mix, decoding.context_temperature)
    if decoding.tagger_technique_mix and scores.p_each_technique is not None:
        probabilities = mix_tagger(scores, spans, probabilities, decoding.tagger_technique_mix,
                                   decoding.tagger_technique_temperature)
    return weigh_repetition(scores.word_counts, scores.text, scores.techniques, spans, probabilities, classified,
                            decoding.repetition_weights)


def head_probabilities(scores: DocumentScores, spans: list[tuple[int, int]], temperature: float
                       ) -> tuple[np.ndarray, list[int]]:
    """(the technique head's p(technique) for each (start, end); the rows of the spans it classified, the others
    (no token to classify) being uniform)."""
    probabilities = np.full((len(spans), len(scores.techniques)), 1.0 / len(scores.techniques))
    missing = [span for span in spans if span not in scores.span_logits]
    if missing:
        raise ValueError(f"span {missing[0]} was never classified: pass the decoding or the span to "
                         "Detector.classify_candidates(scores, ...) before decoding")
    known = [row for row, span in enumerate(spans) if scores.span_logits[span] is not None]
    if known:
        logits = np.stack([scores.span_logits[spans[row]] for row in known])
        probabilities[known] = softmax(logits, temperature)
    return probabilities, known


def mix_context(scores: DocumentScores, spans: list[tuple[int, int]], probabilities: np.ndarray, mix: float,
                temperature: float) -> np.ndarray:
    """(1 - mix) x the head's p(technique) + mix x the context classifier's, for the spans it read (a span with
    no token keeps the head's)."""
    missing = [span for span in spans if span not in scores.context_logits]
    if missing:
        raise ValueError(f"span {missing[0]} was never read by a context classifier: a decoding with context_mix "
                         "needs a checkpoint with one (Detector.classify_candidates reads the spans)")
    mixed = probabilities.copy()
    for row, span in enumerate(spans):
        logits = scores.context_logits[span]
        if logits is not None:
            mixed[row] = (1.0 - mix) * probabilities[row] + mix * softmax(logits, temperature)
    return mixed


def mix_tagger(scores: DocumentScores, spans: list[tuple[int, int]], probabilities: np.ndarray, mix: float,
               temperature: float) -> np.ndarray:
    """(1 - mix) x p(technique) + mix x `tagger_probabilities` (a span with no token keeps its own)."""
    mixed = probabilities.copy()
    for row, span in enumerate(spans):
        tagged = tagger_probabilities(scores, span, temperature)
        if tagged is not None:
            mixed[row] = (1.0 - mix) * probabilities[row] + mix * tagged
    return mixed


def tagger_probabilities(scores: DocumentScores, span: tuple[int, int], temperature: float) -> np.ndarray | None:
    """The technique tagger's p(technique) of a span: the mean over its tokens of p(technique covers the
    token), to the power 1 / temperature, normalised over the techniques; None for a span with no token."""
    tokens = scores.document.tokens_overlapping(*span)
    if tokens is None:
        return None
    tempered = scores.p_each_technique[tokens[0]: tokens[1] + 1].mean(axis=0) ** (1.0 / temperature)
    return tempered / max(tempered.sum(), 1e-300)


def weigh_repetition(words: WordCounts, text: str, techniques: list[str], spans: list[tuple[int, int]],
                     probabilities: np.ndarray, rows: list[int], weights: Sequence[float]) -> np.ndarray:
    """Weigh p(Repetition) by how often each span's words occur in the document, ruling it out for those that
    occur once.

    A window shows the model only ~100 tokens, so it cannot see the other occurrence itself; and a fragment
    that occurs once repeats nothing, however the network reads it (`detect("the")` is not Repetition): its
    next technique takes its place.
    """
    if "Repetition" not in techniques:
        return probabilities
    column = techniques.index("Repetition")
    for row in rows:  # the spans the network classified; the others stay uniform
        start, end = spans[row]
        weight = repetition_weight(words, text[start:end], weights)
        if weight != 1.0 and probabilities[row].sum() > probabilities[row, column]:
            probabilities[row, column] *= weight
            probabilities[row] /= probabilities[row].sum()
    return probabilities


def repetition_weight(words: WordCounts, fragment: str, weights: Sequence[float]) -> float:
    """What p(Repetition) of a fragment is multiplied by: the weight for the times its words occur
    (`Decoding.repetition_weights`)."""
    return weights[min(words.repeats(fragment), len(weights)) - 1]


def ranked(techniques: list[str], probabilities: np.ndarray) -> list[tuple[str, float]]:
    order = np.argsort(-probabilities, kind="stable")
    return [(techniques[i], float(probabilities[i])) for i in order]


def techniques_for_span(techniques: list[str], probabilities: np.ndarray, decoding: Decoding) -> list[tuple[str, float]]:
    """The best technique always; others only above their tuned threshold (spans can carry two)."""
    ranking = ranked(techniques, probabilities)
    thresholds = decoding.technique_thresholds
    return [ranking[0]] + [(t, p) for t, p in ranking[1:] if t in thresholds and p >= thresholds[t]]


def classify_occurrences(scores: DocumentScores, occurrences: list[tuple[int, int]], decoding: Decoding
                         ) -> list[tuple[str, float]]:
    """The detector's (technique, probability) for each listed span occurrence of one scored document."""
    fragments = sorted(set(occurrences))
    rows = technique_probabilities(scores, fragments, decoding) if fragments else []
    return rank_for_occurrences(occurrences, {fragment: ranked(scores.techniques, row)
                                              for fragment, row in zip(fragments, rows)})


def rank_for_occurrences(occurrences: list[tuple[int, int]], ranked_by_fragment: dict) -> list[tuple[str, float]]:
    """One (technique, confidence) per span occurrence: the k-th listing of a fragment gets its k-th best.

    The TC gold lists a fragment once per technique it uses, so repeating the top technique
    for every listing could never score more than one of them.
    """
    seen: dict[tuple[int, int], int] = {}
    answers = []
    for fragment in occurrences:
        rank = seen.get(fragment, 0)
        seen[fragment] = rank + 1
        ranking = ranked_by_fragment[fragment]
        answers.append(ranking[min(rank, len(ranking) - 1)])
    return answers


def relabel_repetitions(words: WordCounts, spans: list[Span]) -> list[Span]:
    return [replace(span, technique="Repetition") if span.technique != "Repetition" and words.recurs(span.text)
            else span for span in spans]


def sentence_scores(scores: DocumentScores, decoding: Decoding) -> list[SentenceScore]:
    """Each sentence's calibrated P(it overlaps a span), read from its highest p(token inside a span)."""
    p_inside, _ = scores.span_probabilities(decoding.span_temperature)
    bounds = sentence_bounds(scores.text)
    peaks = [sentence_peak(scores, p_inside, start, end) for start, end in bounds]
    return calibrated_sentences(bounds, [0.0 if peak is None else peak for peak in peaks], decoding)


def sentence_peak(scores: DocumentScores, p_inside: np.ndarray, start: int, end: int) -> float | None:
    """The highest p(token inside a span) over the tokens of text[start:end]; None when it has none."""
    tokens = scores.document.tokens_overlapping(start, end)
    return float(p_inside[tokens[0]: tokens[1] + 1].max()) if tokens else None


def calibrated_sentences(bounds: Iterable[tuple[int, int]], peaks: list[float], decoding: Decoding
                         ) -> list[SentenceScore]:
    calibrated = calibrate(decoding.sentence_calibration, [min(peak, 1.0) for peak in peaks])
    return [SentenceScore(start, end, score) for (start, end), score in zip(bounds, calibrated)]


def _words(text: str):
    return (match.group() for match in re.finditer(r"\w+", text.lower()))
