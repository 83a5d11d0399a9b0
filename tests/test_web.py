"""The local JSON API: same answers as the Python call, clear JSON errors, limits, concurrency."""

from __future__ import annotations

import argparse
import http.client
import json
import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from html import unescape

import pytest

from conftest import running_server
from persuasion import web

TEXT = ("They will destroy everything we love. Everyone knows the truth!\n"
        "Our brave soldiers never fail. What about their crimes? It is what it is.")


@pytest.fixture(scope="module")
def server(tiny_detector):
    with running_server(tiny_detector, model_name="tiny", max_request_bytes=4000, max_text_chars=1000) as server:
        yield server


def request(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, parsed JSON or raw bytes)"""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        is_json = response.getheader("Content-Type", "").startswith("application/json")
        return response.status, response.headers, json.loads(raw) if is_json else raw
    finally:
        connection.close()


def post_json(server, payload) -> tuple[int, dict]:
    body = json.dumps(payload).encode()
    status, _, answer = request(server, "POST", "/api/detect", body, {"Content-Type": "application/json"})
    return status, answer


def test_healthz(server):
    status, _, answer = request(server, "GET", "/healthz")
    assert status == 200
    assert answer["status"] == "ok" and answer["model"] == "tiny"


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


def test_page_and_assets_are_served(server):
    status, headers, page = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
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


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"txt": "hello"}', '"text"'),
    (b'{"text": 42}', '"text"'),
    (b"", "not valid JSON"),
])
def test_bad_requests_get_a_one_line_json_error(server, body, message):
    status, _, answer = request(server, "POST", "/api/detect", body, {"Content-Type": "application/json"})
    assert status == 400
    assert message in answer["error"] and "\n" not in answer["error"]


def test_bad_content_length_is_400(server):
    status, _, answer = request(server, "POST", "/api/detect", b"{}", {"Content-Length": "abc"})
    assert status == 400 and "Content-Length" in answer["error"]


def test_body_over_the_limit_is_413(server):
    status, _, answer = request(server, "POST", "/api/detect", json.dumps({"text": "x" * 300_000}).encode())
    assert status == 413 and "4000" in answer["error"]
    assert request(server, "GET", "/healthz")[0] == 200  # still serving


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


def test_concurrent_requests_all_succeed_and_agree(server, tiny_detector):
    texts = [f"Request {i}: they are lying to you, wake up! {TEXT}" for i in range(8)]
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
