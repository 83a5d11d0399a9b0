"""Averaging several checkpoints' span scores (eval/ensemble.py), on tiny in-process detectors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import build_tiny_checkpoint, make_article, write_tiny_corpus
from persuasion.errors import PersuasionError
from persuasion.eval.ensemble import mean_analyses, score_combination


@pytest.fixture(scope="module")
def two_detectors(tmp_path_factory, tiny_detector):
    from persuasion import Detector

    other = Detector.load(build_tiny_checkpoint(tmp_path_factory.mktemp("other"), seed=1), device="cpu")
    return tiny_detector, other


def test_averaged_span_scores_are_the_token_by_token_mean_of_the_members(two_detectors):
    texts = [make_article(60, seed=1), make_article(200, seed=2)]
    first, second = (detector._analyse(texts) for detector in two_detectors)
    averaged = mean_analyses([first, second])
    for a, b, mean in zip(first, second, averaged):
        assert not np.allclose(a.p_inside, b.p_inside)  # the members differ, so the mean is not either one
        np.testing.assert_allclose(mean.p_inside, (a.p_inside + b.p_inside) / 2)
        np.testing.assert_allclose(mean.p_begin, (a.p_begin + b.p_begin) / 2)
        assert mean.windows is a.windows and mean.document is a.document


def test_members_that_tokenise_differently_are_an_error(two_detectors):
    analysis = two_detectors[0]._analyse([make_article(30)])[0]
    shifted = dataclasses.replace(analysis, document=dataclasses.replace(
        analysis.document, token_ids=analysis.document.token_ids[1:] + [0]))
    with pytest.raises(PersuasionError, match="tokenise differently"):
        mean_analyses([[analysis], [shifted]])


def test_a_member_averaged_with_a_copy_of_itself_scores_what_it_scores_alone(tmp_path, two_detectors):
    from persuasion.corpus import read_ptc_articles

    articles = read_ptc_articles(write_tiny_corpus(tmp_path / "ptc", articles=4), "train")
    validation, dev = articles[:2], articles[2:]
    detector = two_detectors[1]
    analyses = (detector._analyse([a.text for a in validation]), detector._analyse([a.text for a in dev]))
    alone = score_combination(detector, {"a": analyses}, ("a",), validation, dev)
    twice = score_combination(detector, {"a": analyses, "copy": analyses}, ("a", "copy"), validation, dev)
    assert alone["members"] == ["a"] and twice["members"] == ["a", "copy"]
    assert {key: twice[key] for key in ("span_threshold", "validation_si_f1", "dev_si_f1")} == \
           {key: alone[key] for key in ("span_threshold", "validation_si_f1", "dev_si_f1")}
    assert alone["validation_si_f1"] > 0  # the untrained tiny model still finds some overlap, so this compares numbers
