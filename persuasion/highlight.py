"""Detection results as HTML: highlighted text, a per-technique summary, a legend; one self-contained page.

Every string that comes from the caller (text, document ids, titles, error messages) goes through
`html.escape`, so a document holding markup renders as text. The web page reuses `result_html`.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from persuasion.result import DetectionResult, Span
from persuasion.taxonomy import TECHNIQUE_BY_NAME, TECHNIQUES

# Kelly's colours of maximum contrast, one per technique in taxonomy order: his first fourteen, except that
# Repetition and Thought-terminating Cliches take two later ones, since tinted behind text his #f99379 and
# #f6a600 were hard to tell from Loaded Language's and Bandwagon's.
PALETTE: dict[str, str] = dict(zip(TECHNIQUES, (
    "#f3c300", "#875692", "#f38400", "#a1caf1", "#be0032", "#c2b280", "#848482",
    "#008856", "#e68fac", "#0067a5", "#2b3d26", "#8db600", "#882d17", "#b3446c",
)))
UNKNOWN_COLOUR = "#555555"  # a label outside the 14, e.g. from a custom checkpoint
TINT_STRENGTH = 0.4  # share of the colour in a highlight's background; the rest is white, so text stays legible

STYLESHEET = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 60rem;
       padding: 0 1rem; color: #1a1a1a; line-height: 1.5; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { text-align: left; padding: 0.2rem 0.6rem; border-bottom: 1px solid #ddd; vertical-align: top; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px; margin-right: 0.4em;
          vertical-align: -0.1em; }
.document-text { white-space: pre-wrap; overflow-wrap: anywhere; font-family: Georgia, serif; font-size: 1.05rem;
                 line-height: 1.9; padding: 1rem; border: 1px solid #ddd; border-radius: 4px; background: #fff; }
.segment { border-radius: 2px; padding: 0.1em 0 0.25em; cursor: help;
           -webkit-box-decoration-break: clone; box-decoration-break: clone; }
.segment.overlap { font-weight: 600; }
.none, .error-message { color: #666; font-style: italic; }
.error-message { color: #a00000; }
details { margin: 0.5rem 0; } summary { cursor: pointer; }
.legend td:first-child { white-space: nowrap; }
.contents li { margin: 0.1rem 0; }
"""


def display_name(technique: str) -> str:
    """'Name_Calling,Labeling' -> 'Name Calling / Labeling'."""
    return technique.replace("_", " ").replace(",", " / ")


def colour(technique: str) -> str:
    return PALETTE.get(technique, UNKNOWN_COLOUR)


def tint(hex_colour: str) -> str:
    """The colour mixed with white, for backgrounds behind text."""
    red, green, blue = (int(hex_colour[i: i + 2], 16) for i in (1, 3, 5))
    mixed = (round(255 - (255 - value) * TINT_STRENGTH) for value in (red, green, blue))
    return "#" + "".join(f"{value:02x}" for value in mixed)


def segments(result: DetectionResult) -> list[tuple[int, int, list[int]]]:
    """The text cut at every span boundary: (start, end, indices of the spans covering it), in order."""
    for span in result.spans:
        if not 0 <= span.start < span.end <= len(result.text):
            raise ValueError(f"span {span.start}-{span.end} is not inside the text ({len(result.text)} characters)")
    boundaries = sorted({0, len(result.text)} | {s.start for s in result.spans} | {s.end for s in result.spans})
    pieces = []
    for start, end in zip(boundaries, boundaries[1:]):
        covering = [i for i, span in enumerate(result.spans) if span.start <= start and end <= span.end]
        pieces.append((start, end, covering))
    return pieces


def _segment_style(techniques: list[str]) -> str:
    """One technique: its tint. Several: diagonal stripes of their tints. Each adds a stacked underline."""
    tints = [tint(colour(t)) for t in techniques]
    if len(tints) == 1:
        background = f"background: {tints[0]}"
    else:
        stops = ", ".join(f"{c} {i * 8}px {(i + 1) * 8}px" for i, c in enumerate(tints))
        background = f"background: repeating-linear-gradient(135deg, {stops})"
    underlines = ", ".join(f"inset 0 -{2 * (i + 1)}px 0 {colour(t)}" for i, t in enumerate(techniques))
    return f"{background}; box-shadow: {underlines}"


def _tooltip(spans: list[Span]) -> str:
    lines = []
    for span in spans:
        info = TECHNIQUE_BY_NAME.get(span.technique)
        definition = f": {info.definition}" if info else ""
        lines.append(f"{display_name(span.technique)} ({span.score:.2f}){definition}")
    return "\n".join(lines)


def highlighted_text_html(result: DetectionResult) -> str:
    """The text with every span highlighted in its technique's colour; hover a highlight for the details.

    Each highlighted piece is a <mark class="segment"> whose data-spans lists the indices into
    `result.spans` that cover it, so overlapping spans stay visible and each span's text is the
    concatenation of its segments.
    """
    parts = []
    for start, end, covering in segments(result):
        piece = escape(result.text[start:end], quote=False)
        if not covering:
            parts.append(piece)
            continue
        spans = sorted((result.spans[i] for i in covering), key=lambda span: -span.score)
        techniques = list(dict.fromkeys(span.technique for span in spans))
        classes = "segment overlap" if len(techniques) > 1 else "segment"
        parts.append(
            f'<mark class="{classes}" data-start="{start}" data-end="{end}"'
            f' data-spans="{" ".join(map(str, covering))}" data-techniques="{escape(" ".join(techniques))}"'
            f' style="{_segment_style(techniques)}" title="{escape(_tooltip(spans))}">{piece}</mark>'
        )
    return f'<div class="document-text">{"".join(parts)}</div>'


def _technique_cell(technique: str) -> str:
    return (f'<span class="swatch" style="background: {colour(technique)}"></span>'
            f"{escape(display_name(technique))}")


def summary_html(result: DetectionResult) -> str:
    """Count and highest score per technique found, most frequent first."""
    if not result.spans:
        return '<p class="none">No persuasion techniques found.</p>'
    rows = "".join(
        f'<tr data-technique="{escape(row.technique)}"><td>{_technique_cell(row.technique)}</td>'
        f'<td class="number">{row.count}</td><td class="number">{row.max_score:.2f}</td></tr>'
        for row in result.summary
    )
    return ('<table class="summary"><thead><tr><th>Technique</th><th>Spans</th><th>Max score</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def spans_html(result: DetectionResult) -> str:
    """Every span with its offsets, collapsed under a <details>."""
    if not result.spans:
        return ""
    rows = "".join(
        f'<tr class="span" data-index="{i}" data-technique="{escape(span.technique)}" data-start="{span.start}"'
        f' data-end="{span.end}" data-score="{span.score!r}"><td>{_technique_cell(span.technique)}</td>'
        f'<td class="number">{span.score:.2f}</td><td class="number">{span.start}&ndash;{span.end}</td>'
        f"<td>{escape(span.text)}</td></tr>"
        for i, span in enumerate(result.spans)
    )
    return (f'<details class="spans"><summary>{_plural(len(result.spans), "span")} with offsets</summary><table>'
            "<thead><tr><th>Technique</th><th>Score</th><th>Characters</th><th>Text</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></details>")


def result_html(result: DetectionResult) -> str:
    """Summary, highlighted text and the span list: one document's body, shared by the report and the web page."""
    return summary_html(result) + highlighted_text_html(result) + spans_html(result)


def legend_html() -> str:
    """All 14 techniques with their colour and one-sentence definition."""
    rows = "".join(
        f'<tr data-technique="{escape(technique)}"><td>{_technique_cell(technique)}</td>'
        f"<td>{escape(TECHNIQUE_BY_NAME[technique].definition)}</td></tr>"
        for technique in TECHNIQUES
    )
    return f'<table class="legend"><tbody>{rows}</tbody></table>'


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLESHEET}</style>\n</head>\n"
        f"<body>\n<h1>{escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def render_document_html(result: DetectionResult, title: str = "Persuasion techniques") -> str:
    """One self-contained page (inline CSS, no scripts, no external assets) for one result."""
    return _page(title, result_html(result) + "<h2>Legend</h2>" + legend_html())


def render_report_html(documents: Sequence[tuple[str, DetectionResult | str]], title: str) -> str:
    """One self-contained page for many documents; a document given as a string is an error message for it."""
    results = [result for _, result in documents if isinstance(result, DetectionResult)]
    errors = len(documents) - len(results)
    overall = DetectionResult("", [span for result in results for span in result.spans])
    with_spans = sum(1 for result in results if result.spans)
    counts = (f"{_plural(len(documents), 'document')}, {with_spans} with techniques, "
              f"{_plural(len(overall.spans), 'span')}" + (f", {errors} failed" if errors else ""))
    contents = []
    sections = []
    for index, (document_id, result) in enumerate(documents):
        anchor = f"document-{index}"
        if isinstance(result, DetectionResult):
            note = _plural(len(result.spans), "span")
            body = result_html(result)
        else:
            note = "failed"
            body = f'<p class="error-message">Error: {escape(str(result))}</p>'
        contents.append(f'<li><a href="#{anchor}">{escape(str(document_id))}</a> ({note})</li>')
        sections.append(f'<section class="document" id="{anchor}"><h2>{escape(str(document_id))}</h2>{body}</section>')
    overview = ""
    if len(documents) > 1:  # for one document its own summary is the whole report's
        overview = (f'<h2>All documents</h2>{summary_html(overall)}'
                    f'<details class="contents"><summary>Documents</summary><ol>{"".join(contents)}</ol></details>')
    body = f'<p class="counts">{counts}</p>{overview}{"".join(sections)}<h2>Legend</h2>{legend_html()}'
    return _page(title, body)
