"""`persuasion serve`: a local web page and a JSON API over one detector, standard library only.

    GET  /             the page: paste text or open a .txt file, see the highlighted techniques
    POST /api/detect   {"text": "..."} -> {"spans": [...], "sentences": [...], "summary": [...], "html": "..."}
    GET  /healthz      {"status": "ok", "model": ...}

Errors are JSON too: {"error": "one line"} with a 4xx status.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import urlsplit

from persuasion import __version__
from persuasion.errors import PersuasionError
from persuasion.highlight import STYLESHEET, legend_html, result_html

DEFAULT_HOST = "127.0.0.1"  # this machine only; pass --host 0.0.0.0 to serve the network
DEFAULT_PORT = 8000
MAX_REQUEST_BYTES = 2_000_000
MAX_TEXT_CHARS = 200_000  # about 30 news articles; detection holds the model lock for the whole text
READ_TIMEOUT_S = 30  # a client that stops sending mid-request frees its thread after this
LINGER_S = 2.0  # after an early error, how long to drain what the client still sends

# path -> {method: handler method name}
ROUTES: dict[str, dict[str, str]] = {
    "/": {"GET": "send_page"},
    "/page.js": {"GET": "send_script"},
    "/highlight.css": {"GET": "send_stylesheet"},
    "/healthz": {"GET": "send_health"},
    "/api/detect": {"POST": "send_detection"},
}
# Scripts only from this server, so markup that slipped through escaping still could not run.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


class RequestError(Exception):
    """A request the client got wrong; answered as {"error": message} with this status."""

    def __init__(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class DetectionServer(ThreadingHTTPServer):
    """One detector behind a threaded HTTP server; calls into the detector take turns."""

    daemon_threads = True

    def __init__(self, detector, host: str, port: int, model_name: str, max_request_bytes: int,
                 max_text_chars: int, log_requests: bool):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.detector = detector
        self.detector_lock = threading.Lock()  # torch modules and the tokenizer are shared across threads
        self.model_name = model_name
        self.max_request_bytes = max_request_bytes
        self.max_text_chars = max_text_chars
        self.log_requests = log_requests
        static = resources.files("persuasion") / "web_static"
        legend = legend_html()
        self.page = (static / "index.html").read_text(encoding="utf-8").replace("<!-- legend -->", legend).encode()
        self.script = (static / "page.js").read_bytes()
        super().__init__((host, port), DetectionHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def detect(self, text: str):
        with self.detector_lock:
            return self.detector.detect(text)


class DetectionHandler(BaseHTTPRequestHandler):
    server: DetectionServer
    server_version = f"persuasion/{__version__}"
    timeout = READ_TIMEOUT_S

    def do_GET(self):
        self.dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def dispatch(self):
        self.body_read = False
        path = urlsplit(self.path).path
        try:
            methods = ROUTES.get(path)
            if methods is None:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no page at {path}; try GET / or POST /api/detect")
            if self.command not in methods:
                allowed = ", ".join(methods)
                raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED,
                                   f"{self.command} is not allowed on {path}; use {allowed}", {"Allow": allowed})
            getattr(self, methods[self.command])()
        except RequestError as error:
            self.send_json(error.status, {"error": error.message}, error.headers)
            if not self.body_read and ("Content-Length" in self.headers or "Transfer-Encoding" in self.headers):
                self.linger()

    # Routes

    def send_page(self):
        self.send_body(self.server.page, "text/html; charset=utf-8")

    def send_script(self):
        self.send_body(self.server.script, "text/javascript; charset=utf-8")

    def send_stylesheet(self):
        self.send_body(STYLESHEET.encode(), "text/css; charset=utf-8")

    def send_health(self):
        self.send_json(HTTPStatus.OK, {"status": "ok", "model": self.server.model_name,
                                       "max_text_chars": self.server.max_text_chars})

    def send_detection(self):
        text = self.read_text()
        try:
            result = self.server.detect(text)
        except Exception:  # a bug, not the client's fault: keep serving, leave the traceback in the log
            traceback.print_exc(file=sys.stderr)
            self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "detection failed; see the server log"})
            return
        self.send_json(HTTPStatus.OK, {**result.to_dict(include_text=False), "html": result_html(result)})

    # Reading and writing

    def read_text(self) -> str:
        """The "text" field of a JSON object body, within the server's limits."""
        if "Transfer-Encoding" in self.headers:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length header, not chunked")
        declared = self.headers.get("Content-Length")
        if declared is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send the JSON body with a Content-Length header")
        if not declared.strip().isdigit():
            raise RequestError(HTTPStatus.BAD_REQUEST, f"Content-Length {declared!r} is not a number of bytes")
        length = int(declared)
        limit = self.server.max_request_bytes
        if length > limit:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"request body has {length} bytes; the limit is {limit}")
        body = self.rfile.read(length)
        self.body_read = True
        if len(body) < length:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"request body ended after {len(body)} of {length} bytes")
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"request body is not valid JSON: {error}") from None
        except RecursionError:
            raise RequestError(HTTPStatus.BAD_REQUEST, "request body is JSON nested too deeply") from None
        if not isinstance(payload, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, 'send a JSON object: {"text": "..."}')
        text = payload.get("text")
        if not isinstance(text, str):
            found = "no" if "text" not in payload else f"a {type(text).__name__} as"
            raise RequestError(HTTPStatus.BAD_REQUEST, f'{found} "text" field; send {{"text": "..."}} with a string')
        if len(text) > self.server.max_text_chars:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"text has {len(text)} characters; the limit is {self.server.max_text_chars}: "
                               "split it, or start the server with a larger --max-text-chars")
        return text

    def send_json(self, status: HTTPStatus, payload: dict, headers: dict[str, str] | None = None):
        self.send_body(json.dumps(payload).encode(), "application/json", status, headers)

    def send_body(self, body: bytes, content_type: str, status: HTTPStatus = HTTPStatus.OK,
                  headers: dict[str, str] | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code, message=None, explain=None):
        """Errors http.server raises itself (bad request line, unsupported method) as JSON too."""
        self.close_connection = True
        self.send_json(HTTPStatus(code), {"error": message or HTTPStatus(code).phrase})

    def linger(self):
        """Drain what the client is still sending, briefly, so closing does not reset the connection
        (and lose our answer) before the client reads it."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_S
            self.connection.settimeout(LINGER_S)
            while time.monotonic() < deadline and self.connection.recv(65536):
                pass
        except OSError:
            pass

    def log_message(self, format, *args):
        if self.server.log_requests:
            super().log_message(format, *args)


def make_server(detector, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, model_name: str = "custom",
                max_request_bytes: int = MAX_REQUEST_BYTES, max_text_chars: int = MAX_TEXT_CHARS,
                log_requests: bool = False) -> DetectionServer:
    """A server bound to host:port (port 0 picks a free one), not yet serving: call `serve_forever()`."""
    return DetectionServer(detector, host, port, model_name, max_request_bytes, max_text_chars, log_requests)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks one)")
    parser.add_argument("--model", metavar="PATH", help="checkpoint directory (default: the shipped model)")
    parser.add_argument("--max-text-chars", type=int, default=MAX_TEXT_CHARS,
                        help=f"longest text one request may send (default {MAX_TEXT_CHARS})")
    parser.add_argument("--quiet", action="store_true", help="do not log one line per request")


def run(args: argparse.Namespace) -> int:
    from persuasion.model.detector import Detector

    detector = Detector.load(args.model)
    max_request_bytes = max(MAX_REQUEST_BYTES, 8 * args.max_text_chars)  # JSON escapes can take 6 bytes a character
    try:
        server = make_server(detector, args.host, args.port, model_name=str(args.model or "shipped"),
                             max_request_bytes=max_request_bytes, max_text_chars=args.max_text_chars,
                             log_requests=not args.quiet)
    except OSError as error:
        raise PersuasionError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}; "
                              "choose another --port or --host") from None
    print(f"persuasion serve: open {server.url} (model: {server.model_name}); Ctrl+C stops", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
