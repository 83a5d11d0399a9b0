"""The web page in headless Chromium: paste, detect, see the same spans the API returns, escaped.

Set PERSUASION_SCREENSHOT=docs/web-page.png to also render the shipped model's page into that file.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from conftest import CHROMIUM, running_server
from persuasion.highlight import display_name

pytestmark = pytest.mark.browser

TEXT = ("They will destroy everything we love. Everyone knows the truth!\n\n"
        "Our brave soldiers never fail. What about their crimes? It is what it is. <script>alert(1)</script>")
SCREENSHOT_TEXT = (
    "The so-called experts have lied to you for years. Every honest citizen knows the truth: this reckless, "
    "corrupt government is destroying everything our grandparents fought for.\n\n"
    "Either we stand up now, or we lose our country forever. Leading economists agree that the new tax is the "
    "only reason prices went up. And what about the opposition's own scandals? Nobody asks about those.\n\n"
    "Enough is enough. Take back our future!"
)


@pytest.fixture(scope="module")
def server(tiny_detector):
    with running_server(tiny_detector, model_name="tiny", max_text_chars=5000) as server:
        yield server


@pytest.fixture(scope="module")
def page_errors() -> list[str]:
    """Uncaught script errors and dialogs (an alert() would mean injected markup ran)."""
    return []


@pytest.fixture(scope="module")
def page(page_errors):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        page.on("dialog", lambda dialog: page_errors.append(f"dialog opened: {dialog.message}") or dialog.dismiss())
        yield page
        browser.close()


def api_detect(server, text: str, **options) -> dict:
    request = urllib.request.Request(server.url + "api/detect", data=json.dumps({"text": text, **options}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def detect_in_page(page, server, text: str, outcome: str = "done"):
    page.goto(server.url)
    page.fill("#text", text)
    page.click("#detect")
    page.wait_for_selector(f'#result[data-state="{outcome}"]', state="attached", timeout=120_000)


def assert_page_shows_api_spans(page, server, text: str):
    """Each span the API returns is highlighted in the page, with its technique, over exactly its text."""
    expected = api_detect(server, text)
    detect_in_page(page, server, text)
    segments = page.eval_on_selector_all(
        "#result mark.segment",
        "marks => marks.map(m => ({text: m.textContent, spans: m.dataset.spans.split(' ').map(Number),"
        " techniques: m.dataset.techniques.split(' '), title: m.title}))")
    for index, span in enumerate(expected["spans"]):
        covering = [segment for segment in segments if index in segment["spans"]]
        assert "".join(segment["text"] for segment in covering) == span["text"]
        assert all(span["technique"] in segment["techniques"] for segment in covering)
        assert all(display_name(span["technique"]) in segment["title"] for segment in covering)
    rows = page.eval_on_selector_all(
        "#result tr.span",
        "rows => rows.map(r => [r.dataset.technique, Number(r.dataset.start), Number(r.dataset.end)])")
    assert rows == [[span["technique"], span["start"], span["end"]] for span in expected["spans"]]
    assert page.inner_text("#result .document-text") == text
    assert f"{len(expected['spans'])} span" in page.inner_text("#status")
    return expected


def test_page_highlights_the_spans_the_api_returns(server, page, tmp_path):
    expected = assert_page_shows_api_spans(page, server, TEXT)
    assert expected["spans"], "the tiny model should emit spans for this text"
    screenshot = tmp_path / "web-page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000


def spans_above_a_median_cut(server):
    """(every span of TEXT, a cut at the median score on the control's 0.05 steps, the spans the API keeps at it)."""
    everything = api_detect(server, TEXT)["spans"]
    cut = sorted(span["score"] for span in everything)[len(everything) // 2]
    cut = round(cut * 20) / 20  # the control moves in steps of 0.05
    expected = api_detect(server, TEXT, min_score=cut)["spans"]
    assert 0 < len(expected) < len(everything)
    return everything, cut, expected


def test_the_minimum_score_control_leaves_out_the_lower_spans(server, page):
    everything, cut, expected = spans_above_a_median_cut(server)
    page.goto(server.url)
    page.fill("#text", TEXT)
    page.eval_on_selector("#min-score", "(control, value) => { control.value = value; "
                          "control.dispatchEvent(new Event('input')); }", str(cut))
    assert page.inner_text("#min-score-value") == f"{cut:.2f}"
    page.click("#detect")
    page.wait_for_selector('#result[data-state="done"]', state="attached", timeout=120_000)
    rows = page.eval_on_selector_all("#result tr.span", "rows => rows.map(r => Number(r.dataset.start))")
    assert rows == [span["start"] for span in expected]
    assert f"{len(expected)} span" in page.inner_text("#status")


def test_moving_the_minimum_score_filters_the_last_result_without_detecting_again(server, page):
    everything, cut, expected = spans_above_a_median_cut(server)
    detect_in_page(page, server, TEXT)
    assert page.eval_on_selector_all("#result tr.span", "rows => rows.length") == len(everything)
    detections = []
    page.on("request", lambda request: detections.append(request.url) if "api/detect" in request.url else None)
    page.eval_on_selector("#min-score", "(control, value) => { control.value = value; "
                          "control.dispatchEvent(new Event('input')); }", str(cut))
    page.wait_for_selector(f'#result[data-min-score="{cut}"]', state="attached", timeout=60_000)
    rows = page.eval_on_selector_all("#result tr.span", "rows => rows.map(r => Number(r.dataset.start))")
    assert rows == [span["start"] for span in expected] and detections == []
    assert f"{len(expected)} span" in page.inner_text("#status")


def test_an_opened_web_page_is_scored_as_its_article(server, page, tmp_path):
    from test_pages import ARTICLE, PAGE

    saved = tmp_path / "article.html"
    saved.write_text(PAGE, encoding="utf-8")
    expected = api_detect(server, ARTICLE)["spans"]
    page.goto(server.url)
    page.set_input_files("#file", str(saved))
    page.wait_for_function("document.getElementById('status').textContent.includes('a web page')")
    page.click("#detect")
    page.wait_for_selector('#result[data-state="done"]', state="attached", timeout=120_000)
    assert page.inner_text("#result .document-text") == ARTICLE and page.input_value("#text") == ARTICLE
    rows = page.eval_on_selector_all(
        "#result tr.span", "rows => rows.map(r => [r.dataset.technique, Number(r.dataset.start)])")
    assert rows == [[span["technique"], span["start"]] for span in expected]


def test_script_in_the_text_renders_as_text(server, page, page_errors):
    text = "<script>alert(1)</script><img src=x onerror=alert(2)> Everyone knows the truth!"
    detect_in_page(page, server, text)
    assert page.inner_text("#result .document-text") == text
    assert page.locator("#result script, #result img").count() == 0
    assert page_errors == []


def test_errors_are_shown_not_thrown(server, page):
    detect_in_page(page, server, "x" * (server.max_text_chars + 1), outcome="error")
    assert "limit" in page.inner_text("#status")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("PERSUASION_SCREENSHOT"), reason="set PERSUASION_SCREENSHOT=path.png")
def test_screenshot_of_the_shipped_model(page):
    from persuasion import Detector

    with running_server(Detector.load(), model_name="default") as server:
        expected = assert_page_shows_api_spans(page, server, SCREENSHOT_TEXT)
    assert expected["spans"], "the shipped model found nothing in the screenshot text"
    path = Path(os.environ["PERSUASION_SCREENSHOT"])
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
