"""The CRF span tagger: its likelihood and marginals against brute-force enumeration, and in the detector."""

import copy
import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch

from persuasion.model.crf import TagTransitions
from persuasion.model.network import BEGIN, INSIDE, text_token_mask
from persuasion.model.windows import batch_windows, plan_windows


def random_crf(seed: int = 0) -> TagTransitions:
    torch.manual_seed(seed)
    crf = TagTransitions(3)
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.normal_()
    return crf


def path_score(crf, emissions, positions, path) -> torch.Tensor:
    score = crf.start[path[0]] + emissions[positions[0], path[0]]
    for previous, tag, position in zip(path, path[1:], positions[1:]):
        score = score + crf.transitions[previous, tag] + emissions[position, tag]
    return score + crf.end[path[-1]]


# Window 0: a prefix-free mask, as in a window ([CLS] and [SEP] untagged); window 1: gaps inside.
MASK = torch.tensor([[0, 1, 1, 1, 1, 0], [0, 1, 0, 1, 1, 0]], dtype=torch.bool)


@torch.no_grad()
def test_likelihood_and_marginals_match_enumerating_every_tag_path():
    crf = random_crf()
    emissions = torch.randn(2, 6, 3)
    tags = torch.tensor([[-100, 1, 2, 0, 1, -100], [-100, 0, -100, 1, 2, -100]])
    likelihood = crf.log_likelihood(emissions, tags, MASK)
    marginals = crf.log_marginals(emissions, MASK).exp()
    for window in range(2):
        positions = [p for p in range(6) if MASK[window, p]]
        paths = list(itertools.product(range(3), repeat=len(positions)))
        scores = torch.stack([path_score(crf, emissions[window], positions, path) for path in paths])
        log_partition = torch.logsumexp(scores, 0)
        gold = tuple(int(tags[window, p]) for p in positions)
        assert float(likelihood[window]) == pytest.approx(float(path_score(crf, emissions[window], positions, gold)
                                                                 - log_partition), abs=1e-5)
        for index, position in enumerate(positions):
            expected = torch.zeros(3)
            for path, score in zip(paths, scores):
                expected[path[index]] += torch.exp(score - log_partition)
            np.testing.assert_allclose(marginals[window, position].numpy(), expected.numpy(), atol=1e-5)


def test_a_window_without_tagged_tokens_adds_nothing_to_the_loss():
    crf = random_crf()
    likelihood = crf.log_likelihood(torch.randn(1, 4, 3), torch.full((1, 4), -100), torch.zeros(1, 4, dtype=torch.bool))
    assert likelihood.tolist() == [0.0]


def test_text_tokens_exclude_cls_sep_and_padding(tiny_detector):
    _, attention_mask = batch_windows([[7, 8, 9], [7]], tiny_detector.tokenizer)
    assert text_token_mask(attention_mask).tolist() == [[False, True, True, True, False],
                                                        [False, True, False, False, False]]


@pytest.fixture(scope="module")
def tiny_crf_detector(tmp_path_factory):
    from conftest import build_tiny_checkpoint

    from persuasion import Detector

    return Detector.load(build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-crf"), span_crf=True), device="cpu")


def test_the_detector_averages_crf_marginals_over_the_windows_that_see_a_token(tiny_crf_detector, long_article):
    detector = tiny_crf_detector
    analysis = detector._analyse([long_article], batch_size=5)[0]
    token_ids = analysis.document.token_ids
    sums, counts = np.zeros((len(token_ids), 3)), np.zeros(len(token_ids))
    for start, end in plan_windows(len(token_ids), detector.settings.window_tokens - 2, detector.settings.window_stride):
        input_ids, attention_mask = batch_windows([token_ids[start:end]], detector.tokenizer)
        with torch.inference_mode():
            emissions = detector.network.tag_logits(detector.network.encode(input_ids, attention_mask))
            text = torch.ones(1, end - start, dtype=torch.bool)  # this window alone, without [CLS] and [SEP]
            marginals = detector.network.tag_transitions.log_marginals(emissions[:, 1: 1 + end - start], text)
        sums[start:end] += (marginals[0] / detector.settings.span_temperature).softmax(-1).numpy()
        counts[start:end] += 1
    mean = sums / counts[:, None]
    np.testing.assert_allclose(analysis.p_inside, mean[:, BEGIN] + mean[:, INSIDE], atol=1e-5)


def test_without_the_crf_setting_the_same_network_tags_by_softmax(tiny_crf_detector):
    """What the ablation measures: the CRF's emissions read alone, by a per-token softmax."""
    detector = copy.copy(tiny_crf_detector)
    detector.settings = replace(tiny_crf_detector.settings, span_crf=False, span_temperature=1.0)
    text = "They will destroy our great nation and every patriot must stand up now."
    analysis = detector._analyse([text])[0]
    input_ids, attention_mask = batch_windows([analysis.document.token_ids], detector.tokenizer)
    with torch.inference_mode():
        logits = detector.network.tag_logits(detector.network.encode(input_ids, attention_mask))
    softmax = logits.softmax(-1)[0, 1: 1 + len(analysis.document.token_ids)].numpy()
    np.testing.assert_allclose(analysis.p_inside, softmax[:, BEGIN] + softmax[:, INSIDE], atol=1e-5)
    with_crf = tiny_crf_detector._analyse([text])[0]
    assert np.abs(with_crf.p_inside - analysis.p_inside).max() > 1e-3  # the transitions do change the scores


def test_a_crf_survives_save_load_and_int8(tmp_path, tiny_crf_detector, long_article):
    from persuasion import Detector
    from persuasion.model.network import save_checkpoint

    directory = save_checkpoint(tiny_crf_detector.network, tiny_crf_detector.tokenizer, tiny_crf_detector.settings,
                                tmp_path / "copy", half=False)
    again = Detector.load(directory, device="cpu")
    text = long_article[:2000]
    assert again.settings.span_crf and again.network.tag_transitions is not None
    np.testing.assert_array_equal(again._analyse([text])[0].p_inside, tiny_crf_detector._analyse([text])[0].p_inside)
    assert again.detect(text).spans == tiny_crf_detector.detect(text).spans
    quantised = Detector.load(directory, device="cpu", quantize=True)
    difference = quantised._analyse([text])[0].p_inside - again._analyse([text])[0].p_inside
    assert np.abs(difference).max() < 0.1
