"""The Detector API on a tiny random model: offsets are exact on any string, long documents are
covered end to end, batching changes nothing, and the result's views agree with its spans."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import build_tiny_checkpoint, make_article

from persuasion import TECHNIQUES
from persuasion.errors import PersuasionError
from persuasion.model.decoding import (BEGIN, INSIDE, Decoding, DocumentScores, cuts_word, decode, decode_spans,
                                      snap_to_words, tagger_spans, technique_probabilities, technique_spans)
from persuasion.model.windows import WindowFraming, batch_windows, plan_windows, tokenize_document

# Pieces that have broken offset arithmetic elsewhere: a BOM, CRLF, emoji built from several code
# points, combining marks, right-to-left scripts, CJK, zero-width and control characters.
AWKWARD_PIECES = [
    "\ufeff", "\r\n", "\n", "\r", "\t", " " * 40, "\n" * 5, "\u00a0", "\u3000",
    "😀", "👨‍👩‍👧‍👦", "👍🏽", "🏳️‍🌈", "🇺🇸",
    "e\u0301", "a\u0308\u0323", "\u0301", "Å",
    "مرحبا بالعالم", "שָׁלוֹם עולם", "\u200f", "\u202e",
    "中文字符很好。", "日本語のテキスト", "한국어",
    "\u200b", "\u200c", "\u200d", "\u2060", "\x00", "\x07", "\x1b", "\x7f", "\x85",
    "They will destroy our great nation!", "Everyone knows the truth.", "U.S.", "don't", "well-known",
    "?", "...", "!!!", "\"quoted\"", "(brackets)",
]
awkward_texts = st.lists(st.one_of(st.sampled_from(AWKWARD_PIECES), st.text(max_size=12)), max_size=30).map("".join)

def assert_well_formed(result, text: str) -> None:
    assert result.text == text
    previous_offsets, technique_ends = (0, 0), {}
    for span in result.spans:
        assert 0 <= span.start < span.end <= len(text)
        assert text[span.start: span.end] == span.text
        assert span.technique in TECHNIQUES
        assert 0.0 <= span.score <= 1.0 + 1e-9
        assert not cuts_word(text, span.start) and not cuts_word(text, span.end), "a span edge inside a word"
        assert (span.start, span.end) >= previous_offsets, "spans out of order"
        # Spans of different techniques may overlap, as in the gold; two of one technique never do.
        assert span.start >= technique_ends.get(span.technique, 0), "two spans of one technique overlap"
        previous_offsets, technique_ends[span.technique] = (span.start, span.end), span.end
    previous_end = 0
    for sentence in result.sentences:
        assert previous_end <= sentence.start < sentence.end <= len(text)
        assert text[sentence.start: sentence.end].strip()
        assert 0.0 <= sentence.score <= 1.0
        previous_end = sentence.end


def with_span_probabilities(scores: DocumentScores, p_inside, p_begin) -> DocumentScores:
    """The same document and windows, its span tagger saying p_inside and p_begin (at temperature 1)."""
    p_inside, p_begin = np.asarray(p_inside, dtype=np.float64), np.asarray(p_begin, dtype=np.float64)
    rows = np.stack([1.0 - p_inside, p_begin, p_inside - p_begin], axis=1).astype(np.float32)
    logs = np.log(np.maximum(rows, np.float32(1e-12)))
    windows = [replace(window, tag_log_probabilities=logs[window.token_start: window.token_end])
               for window in scores.windows]
    return replace(scores, windows=windows)


def assert_same_results(left, right) -> None:
    """Equal up to float noise from padding windows differently in a batch."""
    assert left.text == right.text
    assert [(s.start, s.end, s.text, s.technique) for s in left.spans] == \
        [(s.start, s.end, s.text, s.technique) for s in right.spans]
    assert [s.score for s in left.spans] == pytest.approx([s.score for s in right.spans], abs=1e-5)
    assert [(s.start, s.end) for s in left.sentences] == [(s.start, s.end) for s in right.sentences]
    assert [s.score for s in left.sentences] == pytest.approx([s.score for s in right.sentences], abs=1e-5)


# Offsets on any string


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=awkward_texts)
def test_offsets_are_exact_on_awkward_text(tiny_detector, text):
    assert_well_formed(tiny_detector.detect(text), text)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(min_size=1, max_size=300))
def test_offsets_are_exact_on_random_unicode(tiny_detector, text):
    assert_well_formed(tiny_detector.detect(text), text)


def test_spans_are_found_in_text_with_a_bom_and_crlf(tiny_detector):
    """The test model does emit spans on such text, so the checks above are not vacuous."""
    text = "\ufeffThey will destroy our great nation!\r\n\r\nEveryone knows 👨‍👩‍👧‍👦 the truth.\r\n"
    result = tiny_detector.detect(text)
    assert result.spans
    assert_well_formed(result, text)


@pytest.mark.parametrize("text", ["", " ", "\n\n\t  \r\n", "\u3000\u00a0 "])
def test_empty_and_blank_text_give_an_empty_result(tiny_detector, text):
    result = tiny_detector.detect(text)
    assert (result.text, result.spans, result.sentences, result.summary) == (text, [], [], [])
    assert result.to_dict() == {"spans": [], "sentences": [], "summary": []}


@pytest.mark.parametrize("value", [None, b"bytes are not text", 42, ["a list"]])
def test_non_text_input_is_a_type_error(tiny_detector, value):
    with pytest.raises(TypeError):
        tiny_detector.detect(value)
    with pytest.raises(TypeError):
        list(tiny_detector.detect_many(["fine", value]))


# Long documents


def test_long_document_is_covered_to_its_last_token(tiny_detector, long_article):
    scores = tiny_detector.score([long_article])[0]
    document = scores.document
    assert len(document.token_ids) > 10 * tiny_detector.settings.window_tokens
    assert document.offsets[-1][1] == len(long_article)  # the tokenizer did not truncate
    covered = np.zeros(len(document.token_ids), dtype=bool)
    for window in scores.windows:
        covered[window.token_start: window.token_end] = True
    assert covered.all()
    p_inside, _ = scores.span_probabilities(1.0)
    assert (p_inside > 0).all()  # a token no window saw would score exactly 0


def test_long_document_result_is_well_formed_to_the_end(tiny_detector, long_article):
    result = tiny_detector.detect(long_article)
    assert_well_formed(result, long_article)
    assert len(result.spans) > 100
    last = result.sentences[-1]
    assert long_article[last.start: last.end] == "This is the very last sentence"
    assert last.score > 0


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_window_probabilities_are_averaged_over_every_window_that_sees_a_token(tiny_detector, long_article,
                                                                            temperature):
    """Batched, padded windows give what each window alone gives, averaged where windows overlap."""
    detector = tiny_detector
    scores = detector.score([long_article], batch_size=7)[0]
    token_ids = scores.document.token_ids
    sums = np.zeros((len(token_ids), 3))
    counts = np.zeros(len(token_ids))
    framing = WindowFraming.of(detector.tokenizer)
    for start, end in plan_windows(len(token_ids), detector.settings.window_tokens - 2, detector.settings.window_stride):
        input_ids, attention_mask = batch_windows([token_ids[start:end]], framing)
        with torch.inference_mode():
            logits = detector.network.tag_logits(detector.network.encode(input_ids, attention_mask))
        probabilities = (logits.log_softmax(-1) / temperature).softmax(-1)[0, 1: 1 + end - start].numpy()
        sums[start:end] += probabilities
        counts[start:end] += 1
    assert counts.min() >= 1 and counts.max() >= 2  # the windows do overlap
    mean = sums / counts[:, None]
    p_inside, p_begin = scores.span_probabilities(temperature)
    np.testing.assert_allclose(p_inside, mean[:, BEGIN] + mean[:, INSIDE], atol=1e-5)
    np.testing.assert_allclose(p_begin, mean[:, BEGIN], atol=1e-5)


def test_a_span_across_window_borders_comes_back_whole(tiny_detector, long_article):
    detector = tiny_detector
    scores = detector.score([long_article])[0]
    first, last = 5, 5 + 3 * detector.settings.window_tokens  # crosses several window borders
    assert not any(w.token_start <= first and last < w.token_end for w in scores.windows)
    p_inside, p_begin = np.zeros(len(scores.document.token_ids)), np.zeros(len(scores.document.token_ids))
    p_inside[first: last + 1] = 0.9
    p_begin[first] = 0.9
    spanning = detector.classify_candidates(with_span_probabilities(scores, p_inside, p_begin), [detector.decoding])
    result = decode(spanning, detector.decoding)
    assert {(span.start, span.end) for span in result.spans} == {
        snap_to_words(long_article, scores.document.offsets[first][0], scores.document.offsets[last][1])}
    assert_well_formed(result, long_article)


def test_decoding_is_pure_and_detect_is_decode_of_score(tiny_detector, long_article):
    text = long_article[:4000]
    scores = tiny_detector.score([text])[0]
    stricter = replace(tiny_detector.decoding, span_threshold=tiny_detector.decoding.span_threshold + 0.05)
    first = decode(tiny_detector.classify_candidates(scores, [stricter]), stricter)
    assert decode(scores, tiny_detector.decoding) == tiny_detector.detect(text)
    assert decode(scores, stricter) == first  # the first decode left the scores as they were
    assert first.spans != tiny_detector.detect(text).spans  # the decoding given is the one used


# Batching


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_detect_many_keeps_order_and_matches_detect(tiny_detector, long_article, batch_size):
    texts = [long_article[:20_000], "", "Short.", make_article(40, seed=1), "\ufeffÅ 👍🏽 שלום\r\n中文。",
             "   ", make_article(900, seed=2), "They lie!", make_article(5, seed=3)]
    one_by_one = [tiny_detector.detect(text) for text in texts]
    batched = list(tiny_detector.detect_many(iter(texts), batch_size=batch_size))
    assert [result.text for result in batched] == texts
    for single, many in zip(one_by_one, batched):
        assert_same_results(single, many)


# Classifying a given span


def test_classify_ranks_all_techniques(tiny_detector, long_article):
    for start, end in [(0, 4), (10, 60), (len(long_article) - 30, len(long_article)), (5_000, 9_000)]:
        ranked = tiny_detector.classify(long_article, start, end)
        assert sorted(technique for technique, _ in ranked) == sorted(TECHNIQUES)
        probabilities = [probability for _, probability in ranked]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        assert probabilities == sorted(probabilities, reverse=True)
        assert all(0.0 <= p <= 1.0 for p in probabilities)


def test_classify_agrees_with_the_technique_detect_gives_a_span(tiny_detector):
    text = make_article(300, seed=4)
    result = tiny_detector.detect(text)
    first_label = {}
    for span in result.spans:
        first_label.setdefault((span.start, span.end), span.technique)
    assert first_label
    for (start, end), technique in list(first_label.items())[:20]:
        assert tiny_detector.classify(text, start, end)[0][0] == technique


def test_classify_a_span_of_only_whitespace_is_uniform(tiny_detector):
    ranked = tiny_detector.classify("left      right", 5, 9)
    assert [p for _, p in ranked] == pytest.approx([1 / len(TECHNIQUES)] * len(TECHNIQUES))


@pytest.mark.parametrize("start, end", [(5, 5), (6, 5), (-1, 3), (0, 13), (12, 13), (40, 50)])
def test_classify_rejects_a_span_outside_the_text(tiny_detector, start, end):
    with pytest.raises(ValueError):
        tiny_detector.classify("Twelve chars", start, end)


# The result's views


def test_summary_and_to_dict_agree_with_the_spans(tiny_detector):
    text = make_article(400, seed=5)
    result = tiny_detector.detect(text)
    assert len({span.technique for span in result.spans}) > 1
    counts = Counter(span.technique for span in result.spans)
    summary = result.summary
    assert {row.technique: row.count for row in summary} == counts
    for row in summary:
        assert row.max_score == max(span.score for span in result.spans if span.technique == row.technique)
    assert [(row.count, row.max_score) for row in summary] == sorted(
        [(row.count, row.max_score) for row in summary], reverse=True)

    record = json.loads(json.dumps(result.to_dict(include_text=True)))
    assert record["text"] == text
    assert record["spans"] == [asdict(span) for span in result.spans]
    assert record["sentences"] == [asdict(sentence) for sentence in result.sentences]
    assert record["summary"] == [asdict(row) for row in summary]
    assert all(text[s["start"]: s["end"]] == s["text"] for s in record["spans"])
    assert "text" not in result.to_dict()


# Precision: what the network computes in (model/precision.py)

# bf16 keeps 8 bits of mantissa: on the tiny model a token's span probability moves by at most this much.
BF16_PROBABILITY_TOLERANCE = 0.02


def test_auto_is_bf16_only_where_the_hardware_computes_it():
    from persuasion.model.precision import choose_precision

    assert choose_precision("auto", "cpu", bf16_is_native=False) == "fp32"
    assert choose_precision("auto", "cpu", bf16_is_native=True) == "bf16"
    assert choose_precision("fp32", "cpu", bf16_is_native=True) == "fp32"


def test_auto_on_this_machine_loads_the_precision_it_names(tiny_checkpoint):
    from persuasion import Detector
    from persuasion.model.precision import native_bf16

    detector = Detector.load(tiny_checkpoint, device="cpu")
    assert detector.precision == ("bf16" if native_bf16("cpu") else "fp32")
    expected = torch.bfloat16 if detector.precision == "bf16" else torch.float32
    assert {parameter.dtype for parameter in detector.network.encoder.parameters()} == {expected}
    assert {parameter.dtype for parameter in detector.network.tag_head.parameters()} == {torch.float32}


def test_bf16_where_it_is_not_native_is_honoured_with_a_warning():
    from persuasion.model.precision import choose_precision

    with pytest.warns(UserWarning, match="not native"):
        assert choose_precision("bf16", "cpu", bf16_is_native=False) == "bf16"


def test_bf16_gives_the_spans_of_fp32_up_to_its_tolerance(tiny_checkpoint, long_article):
    import warnings

    from persuasion import Detector

    with warnings.catch_warnings():  # bf16 may not be native here: the same numbers, only slower
        warnings.simplefilter("ignore")
        bf16 = Detector.load(tiny_checkpoint, device="cpu", precision="bf16")
    fp32 = Detector.load(tiny_checkpoint, device="cpu", precision="fp32")
    assert bf16.precision == "bf16" and fp32.precision == "fp32"
    text = long_article[:2_000]
    bf16_scores, fp32_scores = bf16.score([text])[0], fp32.score([text])[0]
    fp32_probabilities = fp32_scores.span_probabilities(1.0)[0]
    difference = bf16_scores.span_probabilities(1.0)[0] - fp32_probabilities
    assert 0 < np.abs(difference).max() < BF16_PROBABILITY_TOLERANCE  # computed in bf16, and close
    assert_well_formed(bf16.detect(text), text)
    # Under a threshold in the widest gap between the tokens' probabilities, further than the tolerance from
    # every one of them, the spans are the same; the untrained model's near-uniform technique probabilities
    # let a rare label flip.
    ordered = np.sort(fp32_probabilities)
    widest = int(np.argmax(np.diff(ordered)))
    assert ordered[widest + 1] - ordered[widest] > 2 * BF16_PROBABILITY_TOLERANCE
    decoding = replace(fp32.decoding, span_threshold=float(ordered[widest] + ordered[widest + 1]) / 2)
    fp32_spans = decode(fp32.classify_candidates(fp32_scores, [decoding]), decoding).spans
    bf16_spans = decode(bf16.classify_candidates(bf16_scores, [decoding]), decoding).spans
    assert fp32_spans and [(s.start, s.end) for s in bf16_spans] == [(s.start, s.end) for s in fp32_spans]
    assert np.mean([x.technique == y.technique for x, y in zip(fp32_spans, bf16_spans)]) >= 0.95


def test_int8_gives_well_formed_spans_close_to_fp32(tiny_checkpoint, long_article):
    from persuasion import Detector

    fp32 = Detector.load(tiny_checkpoint, device="cpu", precision="fp32")
    int8 = Detector.load(tiny_checkpoint, device="cpu", precision="int8")
    assert int8.precision == "int8"
    assert not any(type(module) is torch.nn.Linear for module in int8.network.modules())
    text = long_article[:8_000]
    result = int8.detect(text)
    assert result.spans
    assert_well_formed(result, text)
    difference = int8.score([text])[0].span_probabilities(1.0)[0] - fp32.score([text])[0].span_probabilities(1.0)[0]
    assert np.abs(difference).max() < 0.05


@pytest.mark.parametrize("device, precision, message", [
    ("cuda", "int8", "CPU only"),
    ("cpu", "fp8", "give one of auto, fp32, bf16, int8"),
])
def test_a_precision_that_cannot_run_is_a_one_line_error(tiny_checkpoint, device, precision, message):
    from persuasion import Detector

    with pytest.raises(PersuasionError, match=message) as error:
        Detector.load(tiny_checkpoint, device=device, precision=precision)
    assert "\n" not in str(error.value)


# The technique tagger and span decoding


def scored_in_one_window(detector, text: str):
    """(the detector's scores of a text short enough for one window, that window's hidden states)."""
    scores = detector.score([text])[0]
    input_ids, attention_mask = batch_windows([scores.document.token_ids], WindowFraming.of(detector.tokenizer))
    with torch.inference_mode():
        return scores, detector.network.encode(input_ids, attention_mask)


@pytest.fixture(scope="module")
def tiny_tagger_detector(tmp_path_factory):
    """The tiny detector with its per-token technique tagger kept."""
    from persuasion import Detector

    return Detector.load(build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-tagger"), technique_tagger=True),
                         device="cpu")


def test_the_technique_tagger_scores_a_token_by_whether_any_technique_covers_it(tiny_tagger_detector):
    detector = tiny_tagger_detector
    scores, hidden = scored_in_one_window(detector, "They lie about everything, a shameful betrayal.")
    with torch.inference_mode():
        logits = detector.network.token_technique_logits(hidden)
    # One window sees every token: p = 1 - prod over techniques of (1 - p(technique covers the token)).
    expected = 1 - (1 - logits[0, 1: 1 + len(scores.document.token_ids)].sigmoid()).prod(-1).numpy()
    np.testing.assert_allclose(scores.p_technique, expected, atol=1e-6)


def test_the_technique_tagger_mix_moves_token_scores_and_decoding(tiny_tagger_detector, long_article):
    detector = tiny_tagger_detector
    scores = detector.score([long_article[:3000]])[0]
    p_inside, _ = scores.span_probabilities(detector.decoding.span_temperature)
    quarter = replace(detector.decoding, technique_tag_mix=0.25)
    np.testing.assert_allclose(scores.token_scores(quarter), 0.75 * p_inside + 0.25 * scores.p_technique)
    assert scores.token_scores(replace(detector.decoding, technique_tag_mix=0.0)) is p_inside
    at_median = replace(detector.decoding, span_threshold=float(np.median(scores.p_technique)))
    alone = decode_spans(scores, replace(at_median, technique_tag_mix=0.0))
    mixed = decode_spans(scores, replace(at_median, technique_tag_mix=1.0))
    assert mixed and mixed != alone


def tagged_document(detector, text: str, runs: dict[str, list[tuple[str, float]]]) -> DocumentScores:
    """The detector's scores of a text, its technique tagger saying p for the tokens of each listed words of
    each technique and 0 elsewhere, in every window."""
    scores = detector.score([text])[0]
    p = np.zeros((len(scores.document.token_ids), len(detector.techniques)), dtype=np.float32)
    for technique, words in runs.items():
        for word, probability in words:
            start = text.index(word)
            first, last = scores.document.tokens_overlapping(start, start + len(word))
            p[first: last + 1, detector.techniques.index(technique)] = probability
    for window in scores.windows:
        window.p_techniques = p[window.token_start: window.token_end]
    return scores


def test_a_run_of_the_technique_tagger_is_a_span_of_its_technique(tiny_tagger_detector):
    text = "They lie about everything, a shameful betrayal. Treason is what they do."
    scores = tagged_document(tiny_tagger_detector, text, {
        "Loaded_Language": [("shameful", 0.7), ("betrayal", 0.7), ("Treason", 0.9)],
        "Name_Calling,Labeling": [("lie", 0.4)]})
    nothing_detected = replace(tiny_tagger_detector.decoding, span_threshold=1.1, span_calibration=())
    assert tagger_spans(scores, nothing_detected) == []  # off by default
    decoding = replace(nothing_detected, tagger_span_threshold=0.5, join_across_sentences=False)
    spans = technique_spans(tiny_tagger_detector.classify_candidates(scores, [decoding]), decoding)
    assert [(span.text, span.technique) for span in spans] == [
        ("shameful betrayal", "Loaded_Language"), ("Treason", "Loaded_Language")]  # "lie" is under 0.5
    assert spans[0].score == pytest.approx(0.7)  # the run's mean p(technique), as no calibration is fitted
    # Over a sentence end a run is cut, unless the decoding joins across sentences.
    across = tagged_document(tiny_tagger_detector, text, {"Loaded_Language": [("betrayal. Treason", 0.9)]})
    assert [text[s:e] for s, e, _, _ in tagger_spans(across, decoding)] == ["betrayal.", "Treason"]
    joined = replace(decoding, join_across_sentences=True)
    assert [text[s:e] for s, e, _, _ in tagger_spans(across, joined)] == ["betrayal. Treason"]


def test_a_detected_span_of_the_technique_leaves_out_the_taggers_span(tiny_tagger_detector):
    from persuasion.result import Span

    text = "They lie about everything, a shameful betrayal."
    scores = tagged_document(tiny_tagger_detector, text, {"Loaded_Language": [("shameful betrayal", 0.9)]})
    decoding = replace(tiny_tagger_detector.decoding, tagger_span_threshold=0.5)
    start = text.index("betrayal")
    assert tagger_spans(scores, decoding, [Span(start, start + 8, "betrayal", "Loaded_Language", 0.5)]) == []
    other = [Span(start, start + 8, "betrayal", "Name_Calling,Labeling", 0.5)]
    assert [text[s:e] for s, e, _, _ in tagger_spans(scores, decoding, other)] == ["shameful betrayal"]


def test_a_taggers_repetition_span_needs_words_that_occur_twice(tiny_tagger_detector):
    text = "Build the wall. They said it again: build the wall, and once: cheap talk."
    scores = tagged_document(tiny_tagger_detector, text, {"Repetition": [("Build the wall", 0.9), ("cheap talk", 0.9)]})
    decoding = replace(tiny_tagger_detector.decoding, tagger_span_threshold=0.5, repetition_weights=(0.0, 2.0))
    assert [text[s:e] for s, e, _, _ in tagger_spans(scores, decoding)] == ["Build the wall"]


def test_the_technique_taggers_share_moves_p_technique_toward_its_mean_over_the_span(tiny_tagger_detector):
    text = "They lie about everything, a shameful betrayal."
    scores = tagged_document(tiny_tagger_detector, text, {"Slogans": [("shameful", 0.9), ("betrayal", 0.3)],
                                                          "Doubt": [("shameful betrayal", 0.3)]})
    span = (text.index("shameful"), len(text) - 1)
    tiny_tagger_detector.classify_candidates(scores, spans=[span])
    decoding = replace(tiny_tagger_detector.decoding, repetition_weights=(1.0,))
    head = technique_probabilities(scores, [span], decoding)[0]
    # The tagger alone: its mean p(technique) over the span's tokens, normalised over the techniques.
    first, last = scores.document.tokens_overlapping(*span)
    tagged = scores.p_each_technique[first: last + 1].mean(axis=0)
    alone = technique_probabilities(scores, [span], replace(decoding, tagger_technique_mix=1.0))[0]
    np.testing.assert_allclose(alone, tagged / tagged.sum())
    assert scores.techniques[int(np.argmax(alone))] == "Slogans" and alone.sum() == pytest.approx(1.0)
    quarter = technique_probabilities(scores, [span], replace(decoding, tagger_technique_mix=0.25))[0]
    np.testing.assert_allclose(quarter, 0.75 * head + 0.25 * alone)
    sharpened = technique_probabilities(scores, [span], replace(decoding, tagger_technique_mix=1.0,
                                                                tagger_technique_temperature=0.5))[0]
    np.testing.assert_allclose(sharpened, tagged ** 2 / (tagged ** 2).sum())


def test_a_model_without_a_technique_tagger_ignores_the_mix(tiny_detector):
    scores = tiny_detector.score(["They lie. We know."])[0]
    assert scores.p_technique is None and scores.p_each_technique is None
    assert tagger_spans(scores, replace(tiny_detector.decoding, tagger_span_threshold=0.0)) == []
    tiny_detector.classify_candidates(scores, spans=[(0, 8)])
    head = technique_probabilities(scores, [(0, 8)], tiny_detector.decoding)
    np.testing.assert_array_equal(
        technique_probabilities(scores, [(0, 8)], replace(tiny_detector.decoding, tagger_technique_mix=0.5)), head)
    p_inside, _ = scores.span_probabilities(1.0)
    assert scores.token_scores(replace(tiny_detector.decoding, technique_tag_mix=0.5, span_temperature=1.0)) is p_inside


def test_a_span_grows_from_its_peak_down_to_the_extension_threshold(tiny_detector):
    text = "one two three four five six seven eight"
    scores = with_span_probabilities(tiny_detector.score([text])[0], [0.3, 0.45, 0.6, 0.45, 0.3, 0.45, 0.45, 0.3],
                                     [0.0] * 8)
    decoding = replace(tiny_detector.decoding, span_threshold=0.5, span_gap_tokens=0, span_extension_margin=0.0,
                       span_temperature=1.0)
    assert [(start, end) for start, end, _ in decode_spans(scores, decoding)] == [(8, 13)]  # "three"
    # "two three four" holds a token at 0.5 or more; "six seven" reaches only 0.45 and stays out.
    assert decode_spans(scores, replace(decoding, span_extension_margin=0.1)) == [(4, 18, pytest.approx(0.5))]


def test_a_checkpoint_saves_and_loads_its_decoding(tmp_path, tiny_detector, long_article):
    from persuasion import Detector

    tuned = tiny_detector.with_decoding(replace(tiny_detector.decoding, span_threshold=0.35, span_gap_tokens=3,
                                                technique_thresholds={"Doubt": 0.4}, min_score=0.05,
                                                span_calibration=((0.1, 0.2), (0.3, 0.4)),
                                                sentence_calibration=[[0.0, 0.1], [1.0, 0.5]]))
    again = Detector.load(tuned.save(tmp_path / "copy", half=False), device="cpu", precision="fp32")
    assert again.decoding == tuned.decoding and again.settings == tuned.settings
    assert again.detect(long_article[:3000]) == tuned.detect(long_article[:3000])
    assert tiny_detector.decoding.span_threshold == 0.3  # with_decoding made a new detector


def test_unknown_settings_in_a_checkpoint_are_an_error(tmp_path, tiny_checkpoint):
    import shutil

    from persuasion import Detector
    from persuasion.model.checkpoint import CheckpointError

    copy = Path(shutil.copytree(tiny_checkpoint, tmp_path / "copy"))
    settings = json.loads((copy / "persuasion.json").read_text())
    (copy / "persuasion.json").write_text(json.dumps(settings | {"window_size": 64}))
    with pytest.raises(CheckpointError, match="unknown setting.*window_size"):
        Detector.load(copy)
    settings["decoding"]["span_treshold"] = 0.4
    (copy / "persuasion.json").write_text(json.dumps(settings))
    with pytest.raises(PersuasionError, match="unknown decoding key.*span_treshold"):
        Detector.load(copy)


# Trivial inputs, and what a span must be


def test_detect_many_rejects_one_string_at_the_call_instead_of_scoring_each_character(tiny_detector):
    with pytest.raises(TypeError, match="not one text"):
        tiny_detector.detect_many("Wake up")


def test_a_run_of_tokens_without_a_word_character_is_no_span(tiny_detector):
    text = "Stop ! now ..."
    scores = tiny_detector.score([text])[0]
    punctuation = [text[s:e] in ("!", ".") for s, e in scores.document.offsets]
    decoding = replace(tiny_detector.decoding, span_temperature=1.0, span_gap_tokens=0)
    never_begins = [0.0] * len(punctuation)
    only_punctuation = with_span_probabilities(scores, [0.9 if p else 0.0 for p in punctuation], never_begins)
    assert decode_spans(only_punctuation, decoding) == []
    words_too = with_span_probabilities(scores, [0.9] * len(punctuation), never_begins)
    assert [text[s:e] for s, e, _ in decode_spans(words_too, decoding)] == [text]


def decoded_where_every_token_scores(detector, text: str, scoring: Callable[[str], float], **choices) -> list[str]:
    """The spans' texts when each token scores scoring(token text) and never looks like a beginning."""
    scores = detector.score([text])[0]
    tokens = [text[start:end] for start, end in scores.document.offsets]
    scores = with_span_probabilities(scores, [scoring(token) for token in tokens], [0.0] * len(tokens))
    decoding = replace(detector.decoding, span_threshold=0.5, span_extension_margin=0.0, span_gap_tokens=0,
                       span_temperature=1.0, technique_tag_mix=0.0, **choices)
    return [text[start:end] for start, end, _ in decode_spans(scores, decoding)]


def test_a_span_takes_in_the_whole_of_a_word_joined_by_a_hyphen_or_an_apostrophe(tiny_detector):
    text = "They are pro-terror thugs who won't stop."
    assert cuts_word(text, text.index("terror")) and cuts_word(text, text.index("-terror"))
    assert not cuts_word(text, text.index(" thugs")) and not cuts_word(text, 0) and not cuts_word(text, len(text))
    inside_words = decoded_where_every_token_scores(tiny_detector, text, lambda token: 0.9 if token in ("terror", "t")
                                                    else 0.0)
    assert inside_words == ["pro-terror", "won't"]


def test_runs_are_cut_at_a_sentence_end_unless_the_decoding_joins_them(tiny_detector):
    text = "Lies everywhere. Total lies now\nand forever"
    everything = lambda token: 0.9  # noqa: E731
    assert decoded_where_every_token_scores(tiny_detector, text, everything, join_across_sentences=True) == [text]
    assert decoded_where_every_token_scores(tiny_detector, text, everything, join_across_sentences=False) == [
        "Lies everywhere.", "Total lies now", "and forever"]


def test_a_span_does_not_end_on_a_dangling_function_word_when_trimmed(tiny_detector):
    text = "The corrupt and the evil of the"
    everything = lambda token: 0.9  # noqa: E731
    assert decoded_where_every_token_scores(tiny_detector, text, everything) == [text]
    assert decoded_where_every_token_scores(tiny_detector, text, everything, trim_function_words=True) == [
        "The corrupt and the evil"]
    assert decoded_where_every_token_scores(tiny_detector, "and the", everything, trim_function_words=True) == ["and"]


def test_word_counts_count_whole_words_case_and_punctuation_aside():
    from persuasion.model.decoding import WordCounts

    words = WordCounts("The other theme. THE end, the-end!")
    assert words.occurrences("the") == 3 and words.occurrences("he") == 0
    assert words.occurrences("the end") == 2 and words.occurrences("THE END!") == 2
    assert words.recurs("the end") and not words.recurs("other theme")
    assert not WordCounts("it is it").recurs("it")  # too short to be a repetition


def test_repetition_is_weighed_by_how_often_the_fragment_occurs():
    from persuasion.model.decoding import WordCounts, repetition_weight

    text = "Stop the steal. Stop the steal! We said stop the steal, and the steal goes on: the steal, the steal."
    words, weights = WordCounts(text), (0.0, 2.0, 5.0)
    assert [words.repeats(fragment) for fragment in ("We said", "Stop the steal", "the steal", "it")] == [1, 3, 6, 1]
    assert repetition_weight(words, "We said", weights) == 0.0  # once: it repeats nothing
    assert repetition_weight(words, "stop the steal", weights) == 5.0  # 3 times: the third entry
    assert repetition_weight(words, "the steal", weights) == 5.0  # 6 times: the last entry holds for more
    assert repetition_weight(WordCounts("a b a b"), "a b", weights) == 2.0
    # A checkpoint tuned before the weights had one boost for two or more times.
    assert Decoding.from_dict({"repetition_boost": 4.0}) == Decoding(repetition_weights=(0.0, 4.0))
    assert Decoding.from_dict(Decoding(repetition_weights=[0, 3, 9]).to_dict()).repetition_weights == (0.0, 3.0, 9.0)


def test_repetition_needs_the_fragment_to_recur_in_the_document(tiny_detector):
    once = "They lie about the corrupt elite."
    twice = "They lie about the corrupt elite. Always the corrupt elite."
    span = (once.index("corrupt elite"), once.index("corrupt elite") + len("corrupt elite"))
    recurring = dict(tiny_detector.classify(twice, *span))
    assert dict(tiny_detector.classify(once, *span))["Repetition"] == 0.0
    assert recurring["Repetition"] > 0.0 and sum(recurring.values()) == pytest.approx(1.0)
    assert all(span.technique != "Repetition" for span in tiny_detector.detect("the").spans)


@pytest.mark.parametrize("start, end, error, message", [
    ("4", 18, TypeError, r"start is a character offset, an int; got '4' \(str\)"),
    (0, 2.5, TypeError, r"end is a character offset, an int; got 2.5 \(float\)"),
    (-5, 4, ValueError, r"span \(-5, 4\) is not inside the text of 12 characters; give 0 <= start < end <= 12"),
])
def test_classify_says_what_is_wrong_with_a_span(tiny_detector, start, end, error, message):
    with pytest.raises(error, match=message):
        tiny_detector.classify("Twelve chars", start, end)
    assert tiny_detector.classify("Twelve chars", np.int64(0), np.int64(6))  # numpy integers are offsets too


def test_a_text_over_the_length_limit_is_a_one_line_error(tiny_detector):
    from persuasion.limits import MAX_DOCUMENT_CHARACTERS

    with pytest.raises(PersuasionError, match="over the 5,000,000-character limit of one document; split it"):
        tiny_detector.detect("x" * (MAX_DOCUMENT_CHARACTERS + 1))


# Calibrated scores and min_score


def test_calibration_changes_scores_not_spans_and_min_score_leaves_out_the_lower(tiny_detector, long_article):
    from persuasion.model.decoding import calibrate

    text = long_article[:6000]
    raw = tiny_detector.detect(text)
    knots = ((0.05, 0.1), (0.2, 0.3), (0.3, 0.6))
    calibrated = tiny_detector.with_decoding(replace(tiny_detector.decoding, span_calibration=knots,
                                                     sentence_calibration=((0.0, 0.2), (1.0, 0.4))))
    shown = calibrated.detect(text)
    assert [(s.start, s.end, s.technique) for s in shown.spans] == [(s.start, s.end, s.technique) for s in raw.spans]
    assert [s.score for s in shown.spans] == pytest.approx(calibrate(knots, [s.score for s in raw.spans]))
    assert [s.score for s in shown.sentences] == pytest.approx([0.2 + 0.2 * s.score for s in raw.sentences])
    order = np.argsort([s.score for s in raw.spans], kind="stable")
    assert np.all(np.diff(np.array([s.score for s in shown.spans])[order]) >= 0)  # never reordered

    cut = float(np.median([s.score for s in shown.spans]))
    kept = calibrated.with_min_score(cut).detect(text)
    assert kept.spans == [s for s in shown.spans if s.score >= cut] and 0 < len(kept.spans) < len(shown.spans)
    assert kept.sentences == shown.sentences
    with pytest.raises(PersuasionError, match="from 0 to 1"):
        calibrated.with_min_score(1.5)


# Long documents in bounded memory


def test_tokenizing_in_pieces_gives_the_whole_texts_tokens(tiny_detector, long_article):
    from persuasion.model.windows import tokenize_in_pieces

    text = long_article[:20_000] + "".join(AWKWARD_PIECES) * 20 + "  \n\n  end"
    whole = tokenize_document(tiny_detector.tokenizer, text)
    pieces = list(tokenize_in_pieces(tiny_detector.tokenizer, text, 300))
    assert len(pieces) > 20
    assert [t for piece in pieces for t in piece.token_ids] == whole.token_ids
    assert [o for piece in pieces for o in piece.offsets] == whole.offsets


@pytest.mark.parametrize("tagged", [False, True])
@pytest.mark.parametrize("batch_size", [1, 5, 32])
def test_a_streamed_document_gets_the_spans_of_score_then_decode(tiny_detector, tiny_tagger_detector, long_article,
                                                                  tagged, batch_size):
    detector = tiny_tagger_detector if tagged else tiny_detector
    text = long_article + "\n\n" + "".join(AWKWARD_PIECES)
    decoding = replace(detector.decoding, technique_tag_mix=0.5 if tagged else 0.0, repetition_weights=(0.0, 4.0, 8.0),
                       span_gap_tokens=2, span_extension_margin=0.05, span_calibration=((0.1, 0.2), (0.4, 0.5)))
    scores = detector.score([text], batch_size)[0]
    # A threshold most tokens stay under, as a trained model's: the document has places to cut.
    decoding = replace(decoding, span_threshold=float(np.quantile(scores.token_scores(decoding), 0.7)))
    if tagged:  # and spans of the technique tagger's runs, which must not be cut between stretches either
        decoding = replace(decoding, tagger_span_threshold=float(np.quantile(scores.p_each_technique.max(axis=1), 0.8)))
        assert tagger_spans(scores, decoding)
    detector = detector.with_decoding(decoding)
    done = []
    streamed = detector.detect_streamed(text, batch_size, progress=lambda characters, total: done.append(characters))
    assert len(done) > 5 and done == sorted(done) and done[-1] == len(text)  # decoded stretch by stretch
    assert_same_results(decode(detector.classify_candidates(scores, [decoding]), decoding), streamed)
    assert len(streamed.spans) > 50
    assert_well_formed(streamed, text)


def test_detect_streams_a_text_over_the_streamed_length(tiny_detector):
    from persuasion.model.streaming import STREAMED_CHARACTERS

    text = make_article(STREAMED_CHARACTERS // 5, seed=7)
    assert len(text) > STREAMED_CHARACTERS
    done = []
    results = list(tiny_detector.detect_many(["Short one.", text, "Another."],
                                             progress=lambda characters, total: done.append((characters, total))))
    assert done and done[-1] == (len(text), len(text))  # only a streamed document reports progress
    assert [result.text for result in results] == ["Short one.", text, "Another."]
    assert_same_results(decode(tiny_detector.score([text])[0], tiny_detector.decoding), results[1])


# Naming a model


def test_every_way_to_name_a_model_resolves_it_alike_with_one_error(tmp_path):
    from persuasion import Detector
    from persuasion.batch import load_detector
    from persuasion.eval.systems import load_system
    from persuasion.model.checkpoint import SHIPPED_DIR, resolve_model
    from persuasion.named_models import model_directory

    assert resolve_model(None) == resolve_model("default") == SHIPPED_DIR / "default"  # never silently the fast one
    assert resolve_model("fast") == SHIPPED_DIR / "fast"
    messages = set()
    for load in (resolve_model, model_directory, Detector.load, lambda model: load_detector(model, "cpu", "fp32"),
                 lambda model: load_system(model, tmp_path)):
        with pytest.raises(PersuasionError, match="not a persuasion checkpoint") as error:
            load(str(tmp_path / "nowhere"))
        messages.add(str(error.value))
    assert len(messages) == 1 and "\n" not in messages.pop()


def test_the_context_classifier_has_its_own_share_for_detected_spans(tmp_path, long_article):
    from conftest import add_tiny_context_classifier, build_tiny_checkpoint

    from persuasion import Detector

    checkpoint = add_tiny_context_classifier(build_tiny_checkpoint(tmp_path / "with-context"), context_mix=1.0)
    mixed = Detector.load(checkpoint, precision="fp32")
    text = long_article[:5000]
    given_only = mixed.with_decoding(replace(mixed.decoding, detection_context_mix=0.0))
    head_alone = mixed.with_context(None)
    scores = given_only.score([text])[0]
    assert scores.span_logits and not scores.context_logits  # detected spans are not read again at share 0
    assert decode(scores, given_only.decoding) == head_alone.detect(text)
    spans = [(span.start, span.end) for span in head_alone.detect(text).spans[:3]]
    assert spans and given_only.classify_spans(text, spans) == mixed.classify_spans(text, spans)
    assert given_only.classify_spans(text, spans) != head_alone.classify_spans(text, spans)  # given spans: it is read
    # A checkpoint tuned when one share served both keeps reading its detected spans as it was tuned.
    assert Decoding.from_dict({"context_mix": 0.4}).detection_context_mix == 0.4
    assert Decoding.from_dict({"context_mix": 0.4, "detection_context_mix": 0.0}).detection_context_mix == 0.0


def test_a_context_classifier_shapes_techniques_alike_whole_streamed_and_saved(tmp_path, long_article, monkeypatch):
    from conftest import add_tiny_context_classifier, build_tiny_checkpoint

    from persuasion import Detector
    from persuasion.model import detector as detector_module

    checkpoint = add_tiny_context_classifier(build_tiny_checkpoint(tmp_path / "with-context"), context_mix=1.0)
    detector = Detector.load(checkpoint, precision="fp32")
    text = long_article[:5000]
    whole = detector.detect(text)
    assert whole == decode(detector.score([text])[0], detector.decoding)
    head_alone = detector.with_context(None).detect(text)
    assert [(s.start, s.end) for s in whole.spans] == [(s.start, s.end) for s in head_alone.spans]
    assert [s.technique for s in whole.spans] != [s.technique for s in head_alone.spans]  # the classifier decides
    assert_well_formed(whole, text)

    monkeypatch.setattr(detector_module, "STREAMED_CHARACTERS", 1000)  # read the same text window by window
    assert_same_results(detector.detect(text), whole)
    again = Detector.load(detector.save(tmp_path / "copy", half=False), precision="fp32")
    assert again.context is not None and again.detect(text) == whole
