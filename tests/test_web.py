"""`persuasion serve` on a real localhost server: the same answers as the Python calls, JSON errors, limits,
OpenAPI, and concurrent requests."""

from __future__ import annotations

import argparse
import http.client
import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from html import unescape

import pytest

from conftest import make_article, running_server
from persuasion import web

TEXT = ("They will destroy everything we love. Everyone knows the truth!\n"
        "Our brave soldiers never fail. What about their crimes? It is what it is.")


@pytest.fixture(scope="module")
def server(tiny_detector):
    with running_server(tiny_detector, model_name="tiny", max_request_bytes=4000, max_text_chars=1000) as server:
        yield server


def request(server, method: str, path: str, body=None, headers: dict | None = None, **options):
    """(status, headers, parsed JSON or raw bytes)"""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {}, **options)
        response = connection.getresponse()
        raw = response.read()
        is_json = response.getheader("Content-Type", "").startswith("application/json")
        return response.status, response.headers, json.loads(raw) if is_json else raw
    finally:
        connection.close()


def post_json(server, payload, path: str = "/api/detect") -> tuple[int, dict]:
    body = json.dumps(payload).encode()
    status, _, answer = request(server, "POST", path, body, {"Content-Type": "application/json"})
    return status, answer


def test_healthz(server):
    status, _, answer = request(server, "GET", "/healthz")
    assert status == 200
    assert answer["status"] == "ok" and answer["model"] == "tiny" and answer["models"][0] == "tiny"


def test_detect_matches_the_python_result(server, tiny_detector):
    status, answer = post_json(server, {"text": TEXT})
    assert status == 200
    expected = tiny_detector.detect(TEXT)
    assert expected.spans
    html = answer.pop("html")
    assert answer == expected.to_dict()
    for span in answer["spans"]:
        assert TEXT[span["start"]: span["end"]] == span["text"]
        assert f'data-technique="{span["technique"]}" data-start="{span["start"]}"' in html


def test_min_score_leaves_out_the_lower_spans(server, tiny_detector):
    spans = tiny_detector.detect(TEXT).spans
    cut = sorted(span.score for span in spans)[len(spans) // 2]
    status, answer = post_json(server, {"text": TEXT, "min_score": cut})
    assert status == 200
    assert [s["score"] for s in answer["spans"]] == [span.score for span in spans if span.score >= cut]
    assert 0 < len(answer["spans"]) < len(spans)
    assert sum(row["count"] for row in answer["summary"]) == len(answer["spans"])


def test_a_request_without_min_score_gets_the_models_and_can_lower_it(tiny_detector):
    spans = tiny_detector.detect(TEXT).spans
    cut = sorted(span.score for span in spans)[len(spans) // 2]
    with running_server(tiny_detector.with_min_score(cut), model_name="tiny") as strict:
        assert request(strict, "GET", "/healthz")[2]["min_score"] == cut
        default = post_json(strict, {"text": TEXT})[1]["spans"]
        assert default == post_json(strict, {"text": TEXT, "min_score": cut})[1]["spans"]
        assert 0 < len(default) < len(spans)
        assert len(post_json(strict, {"text": TEXT, "min_score": 0})[1]["spans"]) == len(spans)


def test_a_server_may_not_allow_more_than_the_limit_of_one_document(tiny_detector):
    from persuasion.errors import PersuasionError
    from persuasion.limits import MAX_DOCUMENT_CHARACTERS

    with pytest.raises(PersuasionError, match="limit of one document"):
        web.make_server(tiny_detector, "127.0.0.1", 0, max_text_chars=MAX_DOCUMENT_CHARACTERS + 1)


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text_finds_no_spans(server, text):
    status, answer = post_json(server, {"text": text})
    assert status == 200 and answer["spans"] == [] and answer["summary"] == []


def test_classify_ranks_the_techniques_as_the_python_call(server, tiny_detector):
    fragments = [(0, 36), (38, 63)]
    status, answer = post_json(server, {"text": TEXT, "spans": [{"start": s, "end": e} for s, e in fragments]},
                               "/api/classify")
    assert status == 200
    expected = tiny_detector.classify_spans(TEXT, fragments)
    assert len(answer["spans"]) == len(fragments)
    for (start, end), ranked, span in zip(fragments, expected, answer["spans"]):
        assert (span["start"], span["end"], span["text"]) == (start, end, TEXT[start:end])
        assert [(t["technique"], t["score"]) for t in span["techniques"]] == ranked


@pytest.mark.parametrize("spans, message", [
    ([{"start": 5, "end": 999}], "span 5-999 is not inside the text"),
    ([{"start": 7, "end": 3}], "span 7-3 is not inside the text"),
    ([{"start": -1, "end": 3}], "spans.0.start: Input should be greater than or equal to 0"),
    ([{"begin": 0, "end": 3}], "spans.0.start: Field required"),
])
def test_classify_rejects_spans_outside_the_text(server, spans, message):
    status, answer = post_json(server, {"text": TEXT, "spans": spans}, "/api/classify")
    assert status == 422 and message in answer["error"]


def test_unknown_model_is_422_naming_the_served_ones(server):
    status, answer = post_json(server, {"text": TEXT, "model": "/etc"})
    assert status == 422 and "'/etc' is not served here" in answer["error"] and "tiny" in answer["error"]
    assert answer["detail"][0]["loc"] == ["body", "model"]  # as README promises of every 422


def test_the_favicon_is_served(server):
    status, headers, icon = request(server, "GET", "/favicon.ico")
    assert status == 200 and headers["Content-Type"] == "image/svg+xml" and icon.startswith(b"<svg")


def test_render_highlights_the_spans_it_is_given_and_checks_them(server, tiny_detector):
    spans = tiny_detector.detect(TEXT).to_dict()["spans"][:1]
    status, answer = post_json(server, {"text": TEXT, "spans": spans}, "/api/render")
    assert status == 200 and answer["html"].count('<tr class="span"') == 1
    status, answer = post_json(server, {"text": TEXT, "spans": [{**spans[0], "text": "other"}]}, "/api/render")
    assert status == 422 and answer["detail"]


def test_openapi_lists_both_endpoints_with_typed_models(server):
    status, headers, page = request(server, "GET", "/docs")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"swagger" in page.lower()
    status, _, schema = request(server, "GET", "/openapi.json")
    assert status == 200
    assert {"/api/detect", "/api/classify"} <= set(schema["paths"])
    models = schema["components"]["schemas"]
    assert {"DetectRequest", "DetectResponse", "ClassifyRequest", "ClassifyResponse"} <= set(models)
    assert set(models["DetectRequest"]["properties"]) == {"text", "html", "url", "model", "min_score"}


def test_page_and_assets_are_served(server):
    status, headers, page = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert b'id="text"' in page and b'id="detect"' in page and b'id="result"' in page
    assert b'data-technique="Slogans"' in page  # the legend
    for path, kind in (("/page.js", "text/javascript"), ("/highlight.css", "text/css")):
        status, headers, _ = request(server, "GET", path)
        assert status == 200 and headers["Content-Type"].startswith(kind)


def test_script_in_text_comes_back_escaped(server):
    text = "Look: <script>alert(1)</script> now."
    status, answer = post_json(server, {"text": text})
    assert status == 200
    assert "<script" not in answer["html"]
    shown = re.search(r'<div class="document-text">(.*?)</div>', answer["html"]).group(1)
    assert unescape(re.sub(r"<[^>]*>", "", shown)) == text


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "not valid JSON"),
    (b"\xff\xfe\x00", 400, "not valid JSON"),
    (b"[1, 2]", 422, "valid dictionary"),
    (b'{"txt": "hello"}', 422, "txt: Extra inputs are not permitted"),
    (b'{}', 422, "give exactly one of text, html or url, not none"),
    (b'{"text": "hi", "url": "https://example.com/"}', 422, "give exactly one of text, html or url, not text and url"),
    (b'{"text": 42}', 422, "text: Input should be a valid string"),
    (b'{"text": "hi", "min_score": 2}', 422, "min_score: Input should be less than or equal to 1"),
    (b"", 422, "body: Field required"),
])
def test_malformed_requests_get_a_one_line_json_error(server, body, status, message):
    answer_status, _, answer = request(server, "POST", "/api/detect", body, {"Content-Type": "application/json"})
    assert answer_status == status
    assert message in answer["error"] and "\n" not in answer["error"]
    if status == 422:
        assert answer["detail"], "the validation errors, one per problem"


def test_a_body_without_content_type_is_read_as_json_and_a_form_is_415(server):
    body = json.dumps({"text": TEXT}).encode()
    status, _, answer = request(server, "POST", "/api/detect", body)
    assert status == 200 and answer["spans"]
    status, _, answer = request(server, "POST", "/api/detect", body,
                                {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415 and "Content-Type: application/json" in answer["error"]


def test_body_over_the_limit_is_413(server):
    status, _, answer = request(server, "POST", "/api/detect", b"x" * 20_000_000, {"Content-Type": "application/json"})
    assert status == 413 and "4000" in answer["error"]
    assert request(server, "GET", "/healthz")[0] == 200  # still serving


def test_chunked_body_over_the_limit_is_413(server):
    chunks = (b'{"text": "' + b"x" * 1000 + b'"}' for _ in range(10))
    status, _, answer = request(server, "POST", "/api/detect", chunks, {"Content-Type": "application/json"},
                                encode_chunked=True)
    assert status == 413 and "4000" in answer["error"]


def test_text_over_the_limit_is_413(server):
    status, answer = post_json(server, {"text": "word " * 300})
    assert status == 413 and "1000" in answer["error"]


def test_unknown_path_is_404_and_wrong_method_is_405(server):
    status, _, answer = request(server, "GET", "/nope")
    assert status == 404 and "error" in answer
    status, headers, answer = request(server, "GET", "/api/detect")
    assert status == 405 and headers["Allow"] == "POST" and "error" in answer
    status, _, answer = request(server, "DELETE", "/")
    assert status == 405


def test_twenty_concurrent_requests_all_succeed_and_agree(server, tiny_detector):
    texts = [f"Request {i}: they are lying to you, wake up! {TEXT}" for i in range(20)]
    expected = [tiny_detector.detect(text).to_dict() for text in texts]
    barrier = threading.Barrier(len(texts))

    def ask(text):
        barrier.wait()
        return post_json(server, {"text": text})

    with ThreadPoolExecutor(len(texts)) as pool:
        answers = list(pool.map(ask, texts))
    for (status, answer), wanted in zip(answers, expected):
        assert status == 200
        answer.pop("html")
        assert answer == wanted


def test_a_long_detection_blocks_neither_health_checks_nor_refusals(tiny_detector, long_article):
    """With a queue of one, a second detection is refused (503) while the first runs, and /healthz answers."""
    text = long_article  # about a second for the tiny model, most of it rendering the highlights
    with running_server(tiny_detector, max_text_chars=len(text), max_request_bytes=4 * len(text),
                        max_queue=1) as busy, ThreadPoolExecutor(1) as pool:
        long_request = pool.submit(post_json, busy, {"text": text})
        refused = None
        while refused is None:
            if long_request.done():
                if long_request.result()[0] != 503:
                    break
                # a probe below took the queue's one place first and the long detection was refused: again
                long_request = pool.submit(post_json, busy, {"text": text})
            assert request(busy, "GET", "/healthz")[0] == 200
            status, headers, answer = request(busy, "POST", "/api/detect", json.dumps({"text": "hi"}).encode())
            if status == 503:  # only while the long detection holds the queue's one place
                refused = (headers, answer)
        assert refused is not None, "the long detection ended before a second request was refused"
        assert long_request.result()[0] == 200
    headers, answer = refused
    assert headers["Retry-After"] == "1" and "busy" in answer["error"]


def test_binds_to_localhost_by_default(tiny_detector):
    parser = argparse.ArgumentParser()
    web.add_arguments(parser)
    assert parser.parse_args([]).host == "127.0.0.1"
    server = web.make_server(tiny_detector, port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()


def test_busy_port_is_a_one_line_error(tiny_checkpoint):
    from persuasion.errors import PersuasionError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        parser = argparse.ArgumentParser()
        web.add_arguments(parser)
        args = parser.parse_args(["--model", str(tiny_checkpoint), "--port", str(port)])
        with pytest.raises(PersuasionError, match=f"cannot listen on 127.0.0.1:{port}.*--port"):
            web.run(args)


@pytest.mark.slow
def test_a_short_request_answers_in_seconds_while_a_long_text_is_scored():
    """While the shipped fast model reads a 150,000-character text (a minute or more on a CPU), a one-sentence
    request answers in under 3 s, with the Python API's result; the long one is stopped when the server closes."""
    from persuasion import Detector

    detector = Detector.load("fast", device="cpu")
    long_text = make_article(30_000)[:150_000]
    short_text = "They are lying to you, wake up!"
    with ThreadPoolExecutor(1) as pool, running_server(detector, max_text_chars=len(long_text),
                                                       max_request_bytes=4 * len(long_text)) as busy:
        long_request = pool.submit(post_json, busy, {"text": long_text})
        time.sleep(3)  # the long text has reached the model (its JSON parses in milliseconds)
        assert not long_request.done()
        started = time.monotonic()
        status, answer = post_json(busy, {"text": short_text})
        elapsed = time.monotonic() - started
        assert not long_request.done(), "the long detection ended too soon to show anything"
    assert status == 200 and elapsed < 3, elapsed
    answer.pop("html")
    assert answer == detector.detect(short_text).to_dict()
