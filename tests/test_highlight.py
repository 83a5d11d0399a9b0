"""The HTML report: escaped input, every span highlighted with its technique, overlaps kept."""

from __future__ import annotations

import re
from html import escape
from html.parser import HTMLParser

from persuasion.highlight import (PALETTE, display_name, highlighted_text_html, render_document_html,
                                  render_report_html, segments)
from persuasion.result import DetectionResult, Span
from persuasion.taxonomy import TECHNIQUES


def make_result(text: str, spans: list[tuple[str, str, float]]) -> DetectionResult:
    """Spans given as (the fragment, technique, score); the fragment's first occurrence sets the offsets."""
    built = []
    for fragment, technique, score in spans:
        start = text.index(fragment)
        built.append(Span(start, start + len(fragment), fragment, technique, score))
    return DetectionResult(text, built)


class Segments(HTMLParser):
    """The text of every <mark class="segment">, with its attributes, and all the text in the document body."""

    def __init__(self):
        super().__init__()
        self.marks: list[dict] = []
        self.inside: dict | None = None
        self.in_text = 0
        self.document_text = ""
        self.script_tags = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script":
            self.script_tags += 1
        if "document-text" in (attributes.get("class") or "").split():
            self.in_text += 1
        elif self.in_text and tag == "mark":
            self.inside = {**attributes, "text": ""}

    def handle_endtag(self, tag):
        if tag == "mark" and self.inside is not None:
            self.marks.append(self.inside)
            self.inside = None
        elif tag == "div" and self.in_text:
            self.in_text -= 1

    def handle_data(self, data):
        if self.in_text:
            self.document_text += data
        if self.inside is not None:
            self.inside["text"] += data


def parse(markup: str) -> Segments:
    parser = Segments()
    parser.feed(markup)
    parser.close()
    return parser


def span_texts(marks: list[dict], index: int) -> str:
    """A span's text as the page shows it: its segments joined in order."""
    return "".join(mark["text"] for mark in marks if str(index) in mark["data-spans"].split())


def test_script_in_text_and_titles_renders_as_text():
    text = 'Before <script>alert(1)</script> & "quoted" <b>after</b>'
    result = make_result(text, [("<script>alert(1)</script>", "Loaded_Language", 0.9)])
    hostile_id = '<img src=x onerror="alert(2)">'
    for page in (render_document_html(result, title="<script>alert(3)</script>"),
                 render_report_html([(hostile_id, result), ("<i>bad</i>", "failed: <script>x</script>")],
                                    title="<b>report</b>")):
        parsed = parse(page)
        assert parsed.script_tags == 0
        assert "<img" not in page and "<b>" not in page and "<i>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert parsed.document_text == text
    assert escape(hostile_id) in page and "failed: &lt;script&gt;x&lt;/script&gt;" in page


def test_report_shows_ids_and_errors_escaped():
    result = make_result("We must act now.", [("act now", "Slogans", 0.7)])
    page = render_report_html([("doc<1>", result), ("doc-2", "could not read doc-2.txt: not UTF-8")], title="Batch")
    assert "doc&lt;1&gt;" in page
    assert "could not read doc-2.txt: not UTF-8" in page
    assert "2 documents" in page and "1 failed" in page


def test_a_report_of_one_document_shows_its_summary_once():
    result = make_result("We must act now.", [("act now", "Slogans", 0.7)])
    one = render_report_html([("doc-1", result)], title="One")
    assert one.count('<table class="summary">') == 1 and "All documents" not in one
    assert "1 document, 1 with techniques, 1 span" in one
    two = render_report_html([("doc-1", result), ("doc-2", result)], title="Two")
    assert two.count('<table class="summary">') == 3 and "All documents" in two  # the whole batch, then each


def test_every_span_is_highlighted_with_its_technique():
    text = "Only a fool would doubt it.\nThey are traitors, plain and simple. Make it great again!"
    result = make_result(text, [
        ("Only a fool", "Name_Calling,Labeling", 0.81),
        ("traitors", "Loaded_Language", 0.64),
        ("Make it great again!", "Slogans", 0.55),
    ])
    markup = highlighted_text_html(result)
    parsed = parse(markup)
    assert parsed.document_text == text  # every character once, line breaks kept
    for index, span in enumerate(result.spans):
        assert span_texts(parsed.marks, index) == span.text
        marks = [mark for mark in parsed.marks if str(index) in mark["data-spans"].split()]
        assert all(span.technique in mark["data-techniques"].split() for mark in marks)
        assert all(display_name(span.technique) in mark["title"] for mark in marks)
        assert all(f"{span.score:.2f}" in mark["title"] for mark in marks)


def test_overlapping_spans_are_both_shown():
    text = "a brutal, shameful betrayal of the nation"
    result = make_result(text, [
        ("a brutal, shameful betrayal", "Loaded_Language", 0.9),
        ("shameful betrayal of the nation", "Flag-Waving", 0.4),
    ])
    parsed = parse(highlighted_text_html(result))
    assert span_texts(parsed.marks, 0) == "a brutal, shameful betrayal"
    assert span_texts(parsed.marks, 1) == "shameful betrayal of the nation"
    shared = [mark for mark in parsed.marks if mark["data-spans"].split() == ["0", "1"]]
    assert [mark["text"] for mark in shared] == ["shameful betrayal"]
    assert shared[0]["data-techniques"].split() == ["Loaded_Language", "Flag-Waving"]  # higher score first
    assert "Loaded Language" in shared[0]["title"] and "Flag-Waving" in shared[0]["title"]
    assert PALETTE["Loaded_Language"] in shared[0]["style"] and PALETTE["Flag-Waving"] in shared[0]["style"]


def test_segments_cut_at_every_boundary():
    result = DetectionResult("abcdefgh", [Span(1, 5, "bcde", "Doubt", 0.5), Span(3, 7, "defg", "Slogans", 0.5),
                                          Span(3, 7, "defg", "Repetition", 0.3)])
    assert segments(result) == [(0, 1, []), (1, 3, [0]), (3, 5, [0, 1, 2]), (5, 7, [1, 2]), (7, 8, [])]


def test_page_has_summary_and_legend_and_no_external_assets():
    result = make_result("Leading scientists agree. Leading scientists agree.", [
        ("Leading scientists agree", "Appeal_to_Authority", 0.7),
    ])
    result.spans.append(Span(26, 50, "Leading scientists agree", "Appeal_to_Authority", 0.75))
    page = render_document_html(result)
    summary = re.search(r'<table class="summary">.*?</table>', page).group(0)
    assert re.search(r'data-technique="Appeal_to_Authority">.*?<td class="number">2</td><td class="number">0.75</td>',
                     summary)
    for technique in TECHNIQUES:
        assert f'data-technique="{technique}"' in page  # the legend lists all 14
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert len(set(PALETTE.values())) == len(TECHNIQUES) == 14


def test_no_spans_says_so():
    page = render_document_html(DetectionResult("Nothing here.", []))
    assert "No persuasion techniques found." in page
    assert parse(page).document_text == "Nothing here."


def test_real_detector_result_renders_every_span(tiny_detector):
    text = ("They will destroy everything we love. Everyone knows the truth! "
            "Our brave soldiers never fail.\n\nWhat about their crimes? It is what it is.")
    result = tiny_detector.detect(text)
    assert result.spans, "the tiny model should emit spans for the code paths under test"
    parsed = parse(render_report_html([("article-1", result)], title="tiny"))
    assert parsed.document_text == text
    for index, span in enumerate(result.spans):
        assert span_texts(parsed.marks, index) == span.text == text[span.start:span.end]
        assert all(span.technique in mark["data-techniques"].split()
                   for mark in parsed.marks if str(index) in mark["data-spans"].split())


def lab(hex_colour: str) -> tuple[float, float, float]:
    """CIELAB (D65) of an sRGB colour."""
    def linear(value: int) -> float:
        value /= 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(int(hex_colour[i: i + 2], 16)) for i in (1, 3, 5))
    x = (0.4124 * red + 0.3576 * green + 0.1805 * blue) / 0.95047
    y = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    z = (0.0193 * red + 0.1192 * green + 0.9505 * blue) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def test_every_two_techniques_highlight_in_colours_told_apart():
    """Behind text every colour is tinted; two tints closer than a CIE76 distance of 10 look alike side by side
    (Bandwagon's and Thought-terminating Cliches' oranges were 8.3 apart)."""
    import itertools
    import math

    from persuasion.highlight import tint

    for first, second in itertools.combinations(TECHNIQUES, 2):
        distance = math.dist(lab(tint(PALETTE[first])), lab(tint(PALETTE[second])))
        assert distance >= 10, (first, second, round(distance, 1))
