"""Calibration: monotone maps from the decoder's raw scores to how often they are right on validation.

A span's raw score (p(span) x p(technique)) becomes P(a span flagged at that score overlaps a gold span of
its technique); a sentence's (its highest p(token inside a span)) becomes P(the sentence overlaps a gold
span). Each map is isotonic regression (pool adjacent violators) over bins of equal count, stored in
`Decoding` as (raw, calibrated) knots that inference reads with np.interp. Being monotone, a map never
reorders spans and changes no decoded span, only the score shown and what `min_score` leaves out.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from sklearn.isotonic import IsotonicRegression

from persuasion.corpus import Article, span_gold, technique_gold
from persuasion.eval.metrics import expected_calibration_error, overlaps_any, reliability, span_hits
from persuasion.model.decoding import Decoding, DocumentScores, sentence_scores, technique_spans

BIN_SIZE = 40  # validation points per bin before pooling: fewer make a noisy map, more a coarse one


def monotone_knots(raw, outcomes, bin_size: int = BIN_SIZE) -> tuple[tuple[float, float], ...]:
    """(mean raw score, calibrated rate) of bins of about `bin_size` points in raw-score order, with neighbouring
    bins pooled until the rates increase: isotonic regression of the bins' rates, weighted by bin size."""
    raw, outcomes = np.asarray(raw, dtype=np.float64), np.asarray(outcomes, dtype=np.float64)
    if len(raw) == 0:
        return ()
    bins = np.array_split(np.argsort(raw, kind="stable"), max(1, len(raw) // bin_size))
    sizes = np.array([len(members) for members in bins], dtype=np.float64)
    raw_sums = np.array([raw[members].sum() for members in bins])
    rates = np.array([outcomes[members].sum() for members in bins]) / sizes
    # Fitted in the bins' order rather than on their mean scores, so bins of equal mean score stay apart.
    fitted = IsotonicRegression().fit_transform(np.arange(len(bins)), rates, sample_weight=sizes)
    pools = np.flatnonzero(np.r_[True, np.diff(fitted) != 0])  # the first bin of each run of one pooled rate
    return tuple((float(raw_sum / count), float(rate)) for raw_sum, count, rate in
                 zip(np.add.reduceat(raw_sums, pools), np.add.reduceat(sizes, pools), fitted[pools]))


def span_outcomes(scores: list[DocumentScores], articles: list[Article], decoding: Decoding
                  ) -> tuple[list[float], list[bool]]:
    """(score, overlaps a gold span of its technique) for every span `detect` shows under `decoding`."""
    gold = technique_gold(articles)
    raw, hits = [], []
    for article, document in zip(articles, scores):
        spans = technique_spans(document, decoding)
        raw.extend(span.score for span in spans)
        hits.extend(span_hits([(s.start, s.end, s.technique) for s in spans], gold.get(article.article_id, [])))
    return raw, hits


def sentence_outcomes(scores: list[DocumentScores], articles: list[Article], decoding: Decoding
                      ) -> tuple[list[float], list[bool]]:
    """(score, overlaps a gold span) for every sentence."""
    gold = span_gold(articles)
    raw, hits = [], []
    for article, document in zip(articles, scores):
        for sentence in sentence_scores(document, decoding):
            raw.append(sentence.score)
            hits.append(overlaps_any(sentence.start, sentence.end, gold.get(article.article_id, [])))
    return raw, hits


def fit_calibration(scores: list[DocumentScores], articles: list[Article], decoding: Decoding
                    ) -> tuple[Decoding, dict]:
    """`decoding` with span and sentence calibration fitted on these (validation) articles; and a report of
    the expected calibration error before and after and the reliability rows after, for the model card."""
    uncalibrated = replace(decoding, span_calibration=(), sentence_calibration=(), min_score=0.0)
    spans, sentences = span_outcomes(scores, articles, uncalibrated), sentence_outcomes(scores, articles, uncalibrated)
    calibrated = replace(decoding, span_calibration=monotone_knots(*spans),
                         sentence_calibration=monotone_knots(*sentences))
    shown = replace(calibrated, min_score=0.0)
    report = {}
    for name, before, outcome in (("spans", spans, span_outcomes), ("sentences", sentences, sentence_outcomes)):
        after = outcome(scores, articles, shown)
        report[name] = {"count": len(after[0]), "ece_raw": expected_calibration_error(*before),
                        "ece": expected_calibration_error(*after), "reliability": reliability(*after)}
    return calibrated, report
