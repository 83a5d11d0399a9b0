"""Score calibration: monotone maps fitted on validation that change the scores a user sees, never the spans."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from conftest import write_tiny_corpus


def test_monotone_knots_pool_until_the_rates_increase():
    from persuasion.train.calibration import monotone_knots

    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 1, 4000)
    knots = monotone_knots(raw, rng.uniform(0, 1, 4000) < raw, bin_size=200)
    xs, ys = zip(*knots)
    assert list(xs) == sorted(xs) and all(later > earlier for earlier, later in zip(ys, ys[1:]))
    assert len(knots) > 5
    assert np.interp([0.2, 0.5, 0.8], xs, ys) == pytest.approx([0.2, 0.5, 0.8], abs=0.07)  # calibrated already
    (pooled,) = monotone_knots([0.9, 0.8, 0.7, 0.6], [0, 0, 1, 1], bin_size=1)  # falling rates pool into one
    assert pooled == pytest.approx((0.75, 0.5))
    assert monotone_knots([], []) == ()


def test_fit_calibration_keeps_the_spans_and_reports_reliability(tmp_path, tiny_detector):
    from persuasion.corpus import read_ptc_articles
    from persuasion.model.decoding import decode
    from persuasion.train.calibration import fit_calibration

    articles = read_ptc_articles(write_tiny_corpus(tmp_path / "ptc", articles=8), "train")
    scores = tiny_detector.score([article.text for article in articles])
    decoding = replace(tiny_detector.decoding, min_score=0.1)
    calibrated, report = fit_calibration(scores, articles, decoding)
    assert calibrated.span_calibration and calibrated.sentence_calibration
    assert calibrated.min_score == 0.1  # the user's choice stays
    for document in scores:
        before = decode(document, replace(decoding, min_score=0.0))
        after = decode(document, replace(calibrated, min_score=0.0))
        assert [(s.start, s.end, s.technique) for s in after.spans] == \
            [(s.start, s.end, s.technique) for s in before.spans]
        assert all(0.0 <= s.score <= 1.0 for s in after.spans + after.sentences)
    for name in ("spans", "sentences"):
        assert report[name]["count"] > 0 and report[name]["ece"] >= 0 and report[name]["ece_raw"] >= 0
        assert sum(row["count"] for row in report[name]["reliability"]) == report[name]["count"]
