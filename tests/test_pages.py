"""Web pages as input: a saved page, a URL served on loopback by the test itself, and the server's refusals."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager, redirect_stdout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import running_server

pytest.importorskip("trafilatura", reason="the [html] extra is not installed")

from persuasion.pages import PageError, RefusedAddress, fetch_page, non_public_address  # noqa: E402

TITLE = "The Budget Vote Nobody Wanted"
PARAGRAPHS = [
    "The corrupt elite in Washington lied to you again. They promised lower taxes and delivered a mountain of debt.",
    "Wake up, America! They will flood our towns with criminals unless we act now, and only a fool would believe "
    "their fake news.",
    "Every honest citizen knows the truth: this reckless government is destroying everything our grandparents "
    "fought for.",
    "Officials met on Tuesday to discuss the budget. The vote is expected next week, after a final round of hearings.",
]
ARTICLE = "\n".join([TITLE, *PARAGRAPHS])  # the article's text alone, a paragraph a line
BOILERPLATE = ["Share on Facebook", "Tweet this", "Subscribe to our newsletter for the truth they hide from you!",
               "Disclaimer: the views expressed are the author's own and may be false or misleading.",
               "Copyright 2026 Example News. All rights reserved.", "Politics"]
PAGE = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{TITLE} | Example News</title></head><body>
<header><nav><a href="/">Home</a> <a href="/politics">{BOILERPLATE[5]}</a> <a href="/world">World</a></nav></header>
<div class="share"><a href="#">{BOILERPLATE[0]}</a> <a href="#">{BOILERPLATE[1]}</a></div>
<main><article><h1>{TITLE}</h1>
{''.join(f'<p>{paragraph}</p>' for paragraph in PARAGRAPHS)}
</article></main>
<aside class="newsletter"><p>{BOILERPLATE[2]}</p><form><input type="email"><button>Sign up</button></form></aside>
<footer><p>{BOILERPLATE[3]}</p><p>{BOILERPLATE[4]}</p></footer></body></html>"""


class PageHandler(BaseHTTPRequestHandler):
    """/article.html, /moved (a redirect to it), /elsewhere (a redirect to 127.0.0.2) and /big (2 MB)."""

    def do_GET(self):
        if self.path == "/article.html":
            self.answer(200, PAGE.encode(), "text/html; charset=utf-8")
        elif self.path == "/moved":
            self.answer(302, b"", "text/plain", Location="/article.html")
        elif self.path == "/elsewhere":
            self.answer(302, b"", "text/plain", Location=f"http://127.0.0.2:{self.server.server_address[1]}/x")
        elif self.path == "/big":
            self.answer(200, b"<p>" + b"x" * 2_000_000 + b"</p>", "text/html")
        else:
            self.answer(404, b"no such page", "text/plain")

    def answer(self, status: int, body: bytes, kind: str, **headers):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *arguments):
        pass


@contextmanager
def page_server():
    """The pages on a free loopback port, for the duration of a test: yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    with socket.socket() as probe:  # nothing listens there afterwards: connecting is refused, as offline
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def detect_records(*arguments: str) -> tuple[int, list[dict]]:
    from persuasion.cli import main

    output = io.StringIO()
    with redirect_stdout(output):
        status = main(["detect", *arguments, "--quiet"])
    return status, [json.loads(line) for line in output.getvalue().splitlines()]


@pytest.mark.slow
def test_a_saved_page_and_its_url_are_scored_as_the_article_alone(tmp_path):
    """The shipped fast model on a page wrapped in navigation, share buttons, a newsletter prompt and a disclaimer:
    the record's text is the article, no span falls in the boilerplate, and the spans are those of the article's
    text scored alone."""
    from persuasion import Detector

    page = tmp_path / "page.html"
    page.write_text(PAGE, encoding="utf-8")
    with page_server() as base:
        status, records = detect_records(str(page), f"{base}/moved", "--model", "fast")
    assert status == 0
    alone = Detector.load("fast", device="cpu").detect(ARTICLE)
    assert alone.spans, "the fast model finds nothing in the article: the comparison would show nothing"
    for record in records:
        assert record["text"] == ARTICLE and record["extractor"].startswith("trafilatura ")
        assert not any(line in record["text"] for line in BOILERPLATE)
        assert [(span["start"], span["end"], span["text"], span["technique"]) for span in record["spans"]] == \
               [(span.start, span.end, span.text, span.technique) for span in alone.spans]
    assert [record["id"] for record in records] == [str(page), f"{base}/moved"]


def test_a_url_that_cannot_be_fetched_is_a_one_line_error_record(tiny_checkpoint):
    url = f"http://127.0.0.1:{closed_port()}/article.html"
    status, records = detect_records(url, "--model", str(tiny_checkpoint))
    assert status == 3  # no document could be scored
    assert records[0]["id"] == url and "cannot fetch" in records[0]["error"] and "\n" not in records[0]["error"]


def test_a_page_without_the_html_extra_is_a_one_line_error_naming_it(tmp_path):
    page = tmp_path / "page.html"
    page.write_text(PAGE, encoding="utf-8")
    (tmp_path / "hide").mkdir()
    (tmp_path / "hide" / "sitecustomize.py").write_text("import sys\nsys.modules['trafilatura'] = None\n")
    result = subprocess.run([sys.executable, "-m", "persuasion.cli", "detect", str(page)], capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=str(tmp_path / "hide")), timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"persuasion detect: error: {page}: reading web pages needs the [html] extra (trafilatura): "
        "pip install 'persuasion[html]'"]


def test_fetching_follows_redirects_and_keeps_to_the_size_limit():
    with page_server() as base:
        assert fetch_page(f"{base}/moved").body == PAGE.encode()
        with pytest.raises(PageError, match="the limit is 1,000,000"):
            fetch_page(f"{base}/big", max_bytes=1_000_000)


def test_a_redirect_to_a_refused_address_is_refused():
    """The policy is checked at every hop, not only for the URL a request names."""
    first_hop = "127.0.0.1"
    with page_server() as base:
        policy = lambda address: None if str(address) == first_hop else non_public_address(address)  # noqa: E731
        assert fetch_page(f"{base}/moved", refuse=policy).body == PAGE.encode()
        with pytest.raises(RefusedAddress, match="refused: 127.0.0.2, a loopback address"):
            fetch_page(f"{base}/elsewhere", refuse=policy)


def post(server, payload: dict) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=120)
    try:
        connection.request("POST", "/api/detect", json.dumps(payload).encode(), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_the_server_scores_a_page_sent_as_html(tiny_detector):
    with running_server(tiny_detector) as server:
        status, answer = post(server, {"html": PAGE})
    assert status == 200
    assert answer["text"] == ARTICLE and answer["extractor"].startswith("trafilatura ")
    assert answer["spans"] == tiny_detector.detect(ARTICLE).to_dict()["spans"]


def test_a_server_fetches_no_url_unless_allowed_and_never_an_address_of_its_own_network(tiny_detector):
    with page_server() as base:
        port = base.rsplit(":", 1)[1]
        with running_server(tiny_detector) as server:
            status, answer = post(server, {"url": f"{base}/article.html"})
            assert status == 403 and "--allow-urls" in answer["error"]
        with running_server(tiny_detector, allow_urls=True) as server:
            for url, reason in [(f"{base}/article.html", "127.0.0.1, a loopback address"),
                                (f"http://localhost:{port}/article.html", "localhost resolves to 127.0.0.1, a loopback"),
                                (f"http://[::1]:{port}/", "::1, a loopback address"),
                                ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address"),
                                ("http://10.0.0.1/", "10.0.0.1, a private address"),
                                ("http://[::ffff:192.168.0.1]/", "a private address")]:
                status, answer = post(server, {"url": url})
                assert status == 403 and "refused: " in answer["error"] and reason in answer["error"], answer
                assert "\n" not in answer["error"]
            status, answer = post(server, {"url": "file:///etc/passwd"})
            assert status == 422 and "only http:// and https://" in answer["error"]


@pytest.mark.parametrize("address, public", [("8.8.8.8", True), ("2001:4860:4860::8888", True), ("127.0.0.1", False),
                                             ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
                                             ("169.254.169.254", False), ("fe80::1", False), ("fc00::1", False),
                                             ("0.0.0.0", False), ("100.64.0.1", False), ("::ffff:127.0.0.1", False)])
def test_only_public_addresses_pass_the_servers_policy(address, public):
    import ipaddress

    assert (non_public_address(ipaddress.ip_address(address)) is None) == public
