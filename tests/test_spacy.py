"""The `persuasion` spaCy component on a blank English pipeline: found through its entry point, the detector's
spans snapped to tokens, scores as span attributes, sentence scores, nlp.pipe batching, displaCy."""

from __future__ import annotations

import subprocess
import sys

import pytest

spacy = pytest.importorskip("spacy", reason="the [spacy] extra is not installed")

from conftest import assert_shows_the_same_output  # noqa: E402
from persuasion.result import DetectionResult, SentenceScore, Span  # noqa: E402
from persuasion.spacy_component import PersuasionComponent  # noqa: E402


@pytest.fixture(scope="module")
def shipped():
    from persuasion.named_models import load_model

    return load_model("default")


@pytest.fixture(scope="module")
def dev_article(ptc_dir):
    from persuasion.corpus import read_ptc_articles

    return max(read_ptc_articles(ptc_dir, "dev"), key=lambda article: len(article.spans)).text


def token_snapped(doc, start: int, end: int) -> tuple[int, int] | None:
    """The first and last character of the tokens [start, end) touches, whitespace edges dropped."""
    fragment = doc.text[start:end]
    start, end = start + len(fragment) - len(fragment.lstrip()), end - (len(fragment) - len(fragment.rstrip()))
    touched = [token for token in doc if token.idx < end and start < token.idx + len(token.text)]
    return (touched[0].idx, touched[-1].idx + len(touched[-1].text)) if touched else None


def test_the_factory_is_found_through_its_entry_point_without_importing_persuasion():
    code = ("import sys, spacy; nlp = spacy.blank('en'); print(nlp.has_factory('persuasion'), "
            "'persuasion.spacy_component' in sys.modules, 'persuasion.model' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert shown.stdout.split() == ["True", "True", "False"], shown.stderr  # the model loads only in add_pipe


@pytest.mark.slow
def test_the_component_finds_the_detector_spans_snapped_to_tokens(shipped, dev_article):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("persuasion", config={"model": "default", "min_score": 0.2})
    doc = nlp(dev_article)
    expected: dict[tuple[int, int, str], float] = {}
    for span in shipped.detect(dev_article).spans:
        if span.score >= 0.2:
            key = (*token_snapped(doc, span.start, span.end), span.technique)
            expected[key] = max(expected.get(key, 0.0), span.score)
    found = doc.spans["persuasion"]
    assert len(found) >= 5
    assert sorted((s.start_char, s.end_char, s.label_) for s in found) == sorted(expected)
    for span, score in zip(found, found.attrs["scores"]):
        assert span._.persuasion_score == expected[(span.start_char, span.end_char, span.label_)] == score
    sentence_scores = [sentence._.persuasion_score for sentence in doc.sents if sentence.text.strip()]
    assert sentence_scores and all(0.0 <= score <= 1.0 for score in sentence_scores)

    html = spacy.displacy.render(doc, style="span", options={"spans_key": "persuasion"}, page=True)
    assert html.startswith("<!DOCTYPE html>")
    for span in found:
        assert span.label_ in html


@pytest.mark.slow
def test_nlp_pipe_batches_through_detect_many_with_the_same_spans(shipped, ptc_dir):
    from persuasion.corpus import read_ptc_articles

    texts = [article.text for article in read_ptc_articles(ptc_dir, "dev")[:5]]
    nlp = spacy.blank("en")
    nlp.add_pipe("persuasion")
    batched = list(nlp.pipe(texts, batch_size=2))
    assert [doc.text for doc in batched] == texts
    for doc, result in zip(batched, shipped.detect_many(texts)):
        wanted = sorted({(*token_snapped(doc, s.start, s.end), s.technique) for s in result.spans})
        assert sorted((s.start_char, s.end_char, s.label_) for s in doc.spans["persuasion"]) == wanted
    assert sum(len(doc.spans["persuasion"]) for doc in batched) > 0


def test_edges_inside_a_token_move_out_to_its_boundaries():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    text = "We don't trust the so-called experts. They lied."
    doc = nlp(text)
    inside = text.index("on't")  # starts inside "do"
    experts = text.index("experts")
    result = DetectionResult(text, [
        Span(inside, inside + 4, "on't", "Doubt", 0.5),
        Span(experts - 1, experts + 4, " expe", "Name_Calling,Labeling", 0.25),   # whitespace, then mid-token
        Span(experts, experts + 7, "experts", "Name_Calling,Labeling", 0.75),    # the same tokens: keep 0.75
        Span(experts, experts + 7, "experts", "Loaded_Language", 0.5),           # a second technique there
        Span(text.index("."), text.index(".") + 2, ". ", "Slogans", 0.9),       # "." and a space
    ], [SentenceScore(0, 37, 0.25), SentenceScore(38, len(text), 0.75)])
    PersuasionComponent(detector=None).annotate(doc, result)
    found = [(s.text, s.label_, s._.persuasion_score) for s in doc.spans["persuasion"]]
    assert found == [("don't", "Doubt", 0.5), ("experts", "Name_Calling,Labeling", 0.75),
                     ("experts", "Loaded_Language", 0.5), (".", "Slogans", 0.9)]
    assert [sentence._.persuasion_score for sentence in doc.sents] == [0.25, 0.75]


def test_min_score_is_the_detectors_and_a_pipeline_without_sentences(tiny_detector):
    from conftest import make_article

    text = make_article(300, seed=6)
    everything = tiny_detector.detect(text).spans
    cut = sorted(span.score for span in everything)[len(everything) // 2]
    component = PersuasionComponent(tiny_detector, min_score=cut)
    assert component.detector.decoding.min_score == cut and tiny_detector.decoding.min_score == 0.0
    doc = component(spacy.blank("en")(text))
    scores = [span._.persuasion_score for span in doc.spans["persuasion"]]
    assert scores and min(scores) >= cut and len(scores) < len(everything)
    assert len(PersuasionComponent(tiny_detector)(spacy.blank("en")(text)).spans["persuasion"]) > len(scores)
    assert not doc.has_annotation("SENT_START")


@pytest.mark.slow
def test_readme_spacy_example_prints_what_the_readme_shows(shipped, capsys):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    example = re.search(r"## spaCy, evaluate and datasets.*?```python\n(.*?)```.*?```text\n(.*?)```", readme, re.S)
    exec(compile(example.group(1), "README.md", "exec"), {})
    assert_shows_the_same_output(capsys.readouterr().out, example.group(2))
